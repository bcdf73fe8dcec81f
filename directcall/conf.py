"""directcall settings: one ``DIRECTCALL`` dict in the host's settings, merged over ``DEFAULTS``.

Read values through :func:`get_settings` (cached; the cache is cleared when a test
changes ``DIRECTCALL`` with ``override_settings``)::

    from directcall.conf import get_settings
    get_settings()["RING_TIMEOUT"]

Every key is documented in ``docs/settings.md``; the system checks (``directcall.checks``)
verify their types.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

DEFAULTS: dict[str, Any] = {
    # Seconds a call may ring before the server marks it missed.
    "RING_TIMEOUT": 30,
    # Seconds an answered call may last before the server ends it (None: no limit).
    "MAX_CALL_DURATION": None,
    # RTCIceServer dicts handed to browsers, e.g. [{"urls": ["stun:stun.example.org:3478"]}].
    # Every key is passed through; "urls" may be a string and is always sent as a list.
    "ICE_SERVERS": [],
    # Shared secret of a coturn server running with use-auth-secret (None: no TURN credentials).
    "TURN_SECRET": None,
    # Lifetime in seconds of the ephemeral TURN credentials.
    "TURN_TTL": 3600,
    # Lifetime in seconds of the session token returned by the init endpoint.
    "TOKEN_TTL": 900,
    # Absolute WebSocket URL handed to browsers; None builds it from the request and WEBSOCKET_PATH.
    "WEBSOCKET_URL": None,
    # Path of the signaling WebSocket route (see directcall.routing).
    "WEBSOCKET_PATH": "ws/directcall/v1/",
    # Seconds a signed-in cuid stays present without renewal (bounds how long a dead
    # process's users look online).
    "PRESENCE_TTL": 30,
    # Seconds an answered call waits for a party whose connection dropped to come back
    # before it ends with reason connection_lost.
    "RECONNECT_GRACE": 20,
    # Seconds between sweeps that finalize calls left behind by dead processes.
    "SWEEP_INTERVAL": 5,
    # Seconds a new socket has to send its auth frame.
    "AUTH_TIMEOUT": 10,
    # Seconds without any frame from the client before the server closes the socket
    # (the SDK sends a ping every 15 s).
    "IDLE_TIMEOUT": 60,
    # Largest accepted frame, in bytes of UTF-8 text.
    "MAX_FRAME_BYTES": 65536,
    # Frames per second one connection may send (sustained), and the burst allowed above it.
    "FLOOD_RATE": 50,
    "FLOOD_BURST": 200,
    # Invites one cuid may send (whoever it calls, answered or not), as "N/period" with
    # period s, min, h or day; None: no limit. Counted across all server processes.
    "CALL_RATE": "20/min",
    # "relay" makes browsers use only TURN relay candidates (hides users' IP addresses from
    # each other; needs a TURN server); "all" also allows direct and STUN candidates.
    "ICE_TRANSPORT_POLICY": "all",
    # Dotted path of the adapter class: which cuid and name a Django user has, who may
    # call whom (directcall.adapter.DefaultCallAdapter).
    "ADAPTER": "directcall.adapter.DefaultCallAdapter",
    # Account id under which signed-in users get server-minted sessions (template tags).
    "SESSION_ACCOUNT": None,
    # DRF throttle rates of the init endpoint, per client IP (REMOTE_ADDR unless
    # REST_FRAMEWORK["NUM_PROXIES"] is set) and per account (valid credentials only).
    "THROTTLE_RATES": {
        "directcall_init_ip": "60/min",
        "directcall_init_account": "600/min",
    },
}


@cache
def get_settings() -> dict[str, Any]:
    """Return ``DEFAULTS`` updated with the project's ``DIRECTCALL`` dict."""
    merged = dict(DEFAULTS)
    user = getattr(settings, "DIRECTCALL", None) or {}
    merged.update(user)
    # Nested dicts merge one level deep, so a site may override a single rate.
    merged["THROTTLE_RATES"] = {**DEFAULTS["THROTTLE_RATES"], **user.get("THROTTLE_RATES", {})}
    return merged


def user_settings() -> dict[str, Any]:
    """Return the ``DIRECTCALL`` dict exactly as the project wrote it (for system checks)."""
    return dict(getattr(settings, "DIRECTCALL", None) or {})


@receiver(setting_changed)
def _reset_settings_cache(*, setting: str, **kwargs: Any) -> None:
    if setting == "DIRECTCALL":
        get_settings.cache_clear()
