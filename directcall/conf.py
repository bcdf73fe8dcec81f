"""directcall settings: one ``DIRECTCALL`` dict in the host's settings, merged over ``DEFAULTS``.

Read values through :func:`get_settings`, which converts them once into a frozen
:class:`Settings` (cached; the cache is cleared when a test changes ``DIRECTCALL`` with
``override_settings``)::

    from directcall.conf import get_settings
    get_settings().RING_TIMEOUT          # 30 (int, seconds)
    get_settings().PRESENCE_TTL          # 30.0 (float, seconds)
    get_settings().CALL_RATE             # Rate(count=20, seconds=60) or None

Every key is documented in ``docs/settings.md``. The system checks (``directcall.checks``)
report a bad value with the same conversion (:func:`convert`); :func:`get_settings` uses
the default in its place, so that a process started without the checks still runs.
"""

from __future__ import annotations

import copy
import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from functools import cache
from types import MappingProxyType
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

logger = logging.getLogger("directcall.conf")

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
    # Seconds an answered call waits for a page that said it is leaving (a reload, a link to
    # another page of the site, a closed tab: the ``leaving`` frame or close code 1001) to
    # come back before it ends with reason connection_lost.
    "PAGE_GRACE": 8,
    # Seconds a device keeps its cuid reserved after its last connection ended (not by
    # logout): during a reload or a navigation only the same device, with its device key,
    # can sign that cuid in.
    "DEVICE_HOLD": 10,
    # Whether several devices (browsers) may be signed in as one cuid at once: each gets a
    # device key of its own, an incoming call rings in every connection of every device and
    # the first to answer takes it. False, as in the original SDK: another device gets
    # ERR_ALREADY_SIGNEDIN.
    "MULTIPLE_DEVICES": False,
    # Socket sign-ins (auth frames) per client IP and per cuid, as "N/period", counted
    # across all server processes; None: no limit. A tab presenting the device key of the
    # device that holds the cuid is never counted. Per IP as generous as the init
    # requests that issue the tokens (a school or an office arrives from one address).
    "AUTH_RATE_IP": "600/min",
    "AUTH_RATE_CUID": "20/min",
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
    # Seconds a caller waits before calling the same person again after a call that person
    # did not answer (declined, missed, cancelled); doubled by each further unanswered call
    # up to RING_BACKOFF_MAX, forgotten after an answered call between the two or
    # RING_BACKOFF_RESET seconds without a new one. None: no backoff. In the shared cache.
    "RING_BACKOFF": 30,
    "RING_BACKOFF_MAX": 900,
    "RING_BACKOFF_RESET": 3600,
    # Signaling sockets one client IP may hold open at once on one server process
    # (None: no limit).
    "MAX_CONNECTIONS_PER_IP": 500,
    # Who is online (client.watch()): how many cuids one connection may watch, and how many
    # watch frames one cuid may send, as "N/period" across all processes (None: no limit).
    "WATCH_MAX": 100,
    "WATCH_RATE": "30/min",
    # "relay" makes browsers use only TURN relay candidates (hides users' IP addresses from
    # each other; needs a TURN server); "all" also allows direct and STUN candidates.
    "ICE_TRANSPORT_POLICY": "all",
    # Dotted path of the adapter class: which cuid and name a Django user has, who may
    # call whom (directcall.adapter.DefaultCallAdapter).
    "ADAPTER": "directcall.adapter.DefaultCallAdapter",
    # Account id under which signed-in users get server-minted sessions (template tags).
    "SESSION_ACCOUNT": None,
    # DRF throttle rates of the init endpoint: every request per client IP (REMOTE_ADDR
    # unless REST_FRAMEWORK["NUM_PROXIES"] is set; every page view is one), and sign-ins
    # of new cuids per client IP and per account.
    "THROTTLE_RATES": {
        "directcall_init_ip": "600/min",
        "directcall_init_ip_new": "60/min",
        "directcall_init_account": "600/min",
        # The calls API (docs/api.md#calls-api): every request per client IP (wrong keys
        # too), per server key, and per logged-in user.
        "directcall_api_ip": "600/min",
        "directcall_api_key": "1200/min",
        "directcall_api_user": "120/min",
    },
    # Webhooks (docs/webhooks.md). Seconds one delivery attempt may take (connect, send,
    # read the answer).
    "WEBHOOK_TIMEOUT": 10,
    # Seconds after an event during which a failed delivery is tried again, then marked
    # failed; the first retry waits WEBHOOK_RETRY_DELAY, each next one twice as long (with
    # jitter) up to WEBHOOK_RETRY_MAX_DELAY.
    "WEBHOOK_RETRY_WINDOW": 86400,
    "WEBHOOK_RETRY_DELAY": 5,
    "WEBHOOK_RETRY_MAX_DELAY": 3600,
    # Seconds an endpoint's previous secret still signs deliveries after a rotation.
    "WEBHOOK_SECRET_GRACE": 86400,
    # Whether endpoints may resolve to private, loopback, link-local or other non-public
    # addresses (off: such a delivery is refused; tests and the demo turn it on).
    "WEBHOOK_ALLOW_PRIVATE": False,
}

THROTTLE_SCOPES = (
    "directcall_init_ip",
    "directcall_init_ip_new",
    "directcall_init_account",
    "directcall_api_ip",
    "directcall_api_key",
    "directcall_api_user",
)


# -- rates ------------------------------------------------------------------------------------

# The period spellings DRF documents for its throttle rates. DRF reads only the first
# letter, so each of these means to DRF exactly what it means here; anything else (a typo
# such as "20/mni", which DRF would read as per minute) is refused.
_PERIODS = {
    "s": 1,
    "sec": 1,
    "second": 1,
    "m": 60,
    "min": 60,
    "minute": 60,
    "h": 3600,
    "hour": 3600,
    "d": 86400,
    "day": 86400,
}
_RATE = re.compile(r"([1-9][0-9]*)/([a-z]+)")


class Rate(NamedTuple):
    """At most ``count`` events per ``seconds`` (unpacks like DRF's ``parse_rate`` result)."""

    count: int
    seconds: int


def parse_rate(rate: str) -> Rate:
    """``"20/min"`` → ``Rate(20, 60)``; raise ValueError for anything that is not a rate.

    The grammar of DRF's throttle rates: ``"<N>/<period>"`` with N a whole number above
    zero and the period ``s``, ``sec``, ``second``, ``m``, ``min``, ``minute``, ``h``,
    ``hour``, ``d`` or ``day``. The one parser for ``CALL_RATE``, ``THROTTLE_RATES`` and
    the system checks.
    """
    match = _RATE.fullmatch(rate) if isinstance(rate, str) else None
    if match is None or match[2] not in _PERIODS:
        raise ValueError(f"{rate!r} is not a rate such as '20/min'.")
    return Rate(int(match[1]), _PERIODS[match[2]])


# -- conversion ---------------------------------------------------------------------------


class SettingError(ValueError):
    """A ``DIRECTCALL`` value that cannot be used; ``messages`` says why (one line each)."""

    def __init__(self, *messages: str) -> None:
        self.messages = list(messages)
        super().__init__(" ".join(messages))


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_positive_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _whole_seconds(key: str, value: Any) -> int:
    if not _is_positive_int(value):
        raise SettingError(
            f"DIRECTCALL['{key}'] must be a positive whole number of seconds, not {value!r}."
        )
    return int(value)


def _optional_whole_seconds(key: str, value: Any) -> int | None:
    if value is not None and not _is_positive_int(value):
        raise SettingError(
            f"DIRECTCALL['{key}'] must be None or a positive whole number of seconds, "
            f"not {value!r}."
        )
    return None if value is None else int(value)


def _seconds(key: str, value: Any) -> float:
    if not _is_positive_number(value):
        raise SettingError(f"DIRECTCALL['{key}'] must be a positive number, not {value!r}.")
    return float(value)


def _optional_seconds(key: str, value: Any) -> float | None:
    if value is not None and not _is_positive_number(value):
        raise SettingError(f"DIRECTCALL['{key}'] must be None or a positive number, not {value!r}.")
    return None if value is None else float(value)


def _optional_positive_int(key: str, value: Any) -> int | None:
    if value is not None and not _is_positive_int(value):
        raise SettingError(
            f"DIRECTCALL['{key}'] must be None or a positive integer, not {value!r}."
        )
    return None if value is None else int(value)


def _positive_int(key: str, value: Any) -> int:
    if not _is_positive_int(value):
        raise SettingError(f"DIRECTCALL['{key}'] must be a positive integer, not {value!r}.")
    return int(value)


def _string(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise SettingError(f"DIRECTCALL['{key}'] must be a string, not {value!r}.")
    return value


def _dotted_path(key: str, value: Any) -> str:
    # Whether it imports is for the system check: importing here could be circular.
    if not isinstance(value, str):
        raise SettingError(f"DIRECTCALL['{key}'] must be a dotted path, not {value!r}.")
    return value


def _account_id(key: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        raise SettingError(f"DIRECTCALL['{key}'] must be None or an account id, not {value!r}.")
    return value


def _secret(key: str, value: Any) -> str | None:
    if value is not None and not isinstance(value, str):
        # Never echo the value: it is (meant to be) a secret.
        raise SettingError(f"DIRECTCALL['{key}'] must be a string or None.")
    return value


def _boolean(key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise SettingError(f"DIRECTCALL['{key}'] must be True or False, not {value!r}.")
    return value


def _websocket_url(key: str, value: Any) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    if not (
        parts is not None
        and parts.scheme in ("ws", "wss")
        and bool(parts.netloc)
        and value == value.strip()
    ):
        raise SettingError(
            f"DIRECTCALL['{key}'] must be None or a ws:// or wss:// URL, not {value!r}."
        )
    return value


def _call_rate(key: str, value: Any) -> Rate | None:
    if value is None:
        return None
    try:
        return parse_rate(value)
    except ValueError:
        raise SettingError(
            f"DIRECTCALL['{key}'] must be None or a rate such as '20/min', not {value!r}."
        ) from None


def _ice_transport_policy(key: str, value: Any) -> str:
    if value not in ("all", "relay"):
        raise SettingError(f"DIRECTCALL['{key}'] must be 'all' or 'relay', not {value!r}.")
    return value


def is_ice_server(server: Any) -> bool:
    """A dict whose ``urls`` is a URL string or a non-empty list of them."""
    if not isinstance(server, dict):
        return False
    urls = server.get("urls")
    if isinstance(urls, str):
        return bool(urls)
    return (
        isinstance(urls, list | tuple)
        and bool(urls)
        and all(isinstance(url, str) and url for url in urls)
    )


def _ice_servers(key: str, value: Any) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list | tuple) or not all(is_ice_server(s) for s in value):
        raise SettingError(f"DIRECTCALL['{key}'] must be a list of RTCIceServer dicts with 'urls'.")
    # A copy: nothing done with the settings object reaches the project's own dict.
    return tuple(copy.deepcopy(dict(server)) for server in value)


def _throttle_rates(key: str, value: Any) -> Mapping[str, str | None]:
    if not isinstance(value, dict):
        raise SettingError(f"DIRECTCALL['{key}'] must be a dict of scope to rate, not {value!r}.")
    problems = []
    for scope, rate in value.items():
        if scope not in THROTTLE_SCOPES:
            problems.append(
                f"DIRECTCALL['{key}'] has an unknown scope {scope!r} "
                f"(known: {', '.join(THROTTLE_SCOPES)})."
            )
            continue
        try:
            if rate is not None:
                parse_rate(rate)
        except ValueError:
            problems.append(
                f"DIRECTCALL['{key}'][{scope!r}] must be None or a rate such as "
                f"'60/min', not {rate!r}."
            )
    if problems:
        raise SettingError(*problems)
    # Merged one level deep, so that a site may override a single scope. Strings, as
    # DRF's throttles expect (they parse them with directcall.api.throttling).
    return MappingProxyType({**DEFAULTS[key], **value})


_CONVERTERS: dict[str, Callable[[str, Any], Any]] = {
    "RING_TIMEOUT": _whole_seconds,
    "MAX_CALL_DURATION": _optional_whole_seconds,
    "ICE_SERVERS": _ice_servers,
    "TURN_SECRET": _secret,
    "TURN_TTL": _whole_seconds,
    "TOKEN_TTL": _whole_seconds,
    "WEBSOCKET_URL": _websocket_url,
    "WEBSOCKET_PATH": _string,
    "PRESENCE_TTL": _seconds,
    "RECONNECT_GRACE": _seconds,
    "PAGE_GRACE": _seconds,
    "DEVICE_HOLD": _seconds,
    "MULTIPLE_DEVICES": _boolean,
    "AUTH_RATE_IP": _call_rate,
    "AUTH_RATE_CUID": _call_rate,
    "SWEEP_INTERVAL": _seconds,
    "AUTH_TIMEOUT": _seconds,
    "IDLE_TIMEOUT": _seconds,
    "MAX_FRAME_BYTES": _positive_int,
    "FLOOD_RATE": _seconds,
    "FLOOD_BURST": _positive_int,
    "CALL_RATE": _call_rate,
    "RING_BACKOFF": _optional_seconds,
    "RING_BACKOFF_MAX": _seconds,
    "RING_BACKOFF_RESET": _seconds,
    "MAX_CONNECTIONS_PER_IP": _optional_positive_int,
    "WATCH_MAX": _positive_int,
    "WATCH_RATE": _call_rate,
    "ICE_TRANSPORT_POLICY": _ice_transport_policy,
    "ADAPTER": _dotted_path,
    "SESSION_ACCOUNT": _account_id,
    "THROTTLE_RATES": _throttle_rates,
    "WEBHOOK_TIMEOUT": _seconds,
    "WEBHOOK_RETRY_WINDOW": _seconds,
    "WEBHOOK_RETRY_DELAY": _seconds,
    "WEBHOOK_RETRY_MAX_DELAY": _seconds,
    "WEBHOOK_SECRET_GRACE": _seconds,
    "WEBHOOK_ALLOW_PRIVATE": _boolean,
}


def convert(key: str, value: Any) -> Any:
    """The typed form of the value of ``DIRECTCALL[key]``; raise :class:`SettingError`."""
    return _CONVERTERS[key](key, value)


# -- the settings object ------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """The ``DIRECTCALL`` settings, typed; attributes are named like the keys.

    ``settings["KEY"]`` returns the same value as ``settings.KEY``. Whole-second settings
    are ``int``; the others in seconds are ``float``. Do not mutate the containers.
    """

    RING_TIMEOUT: int
    MAX_CALL_DURATION: int | None
    ICE_SERVERS: tuple[dict[str, Any], ...]
    TURN_SECRET: str | None
    TURN_TTL: int
    TOKEN_TTL: int
    WEBSOCKET_URL: str | None
    WEBSOCKET_PATH: str
    PRESENCE_TTL: float
    RECONNECT_GRACE: float
    PAGE_GRACE: float
    DEVICE_HOLD: float
    MULTIPLE_DEVICES: bool
    AUTH_RATE_IP: Rate | None
    AUTH_RATE_CUID: Rate | None
    SWEEP_INTERVAL: float
    AUTH_TIMEOUT: float
    IDLE_TIMEOUT: float
    MAX_FRAME_BYTES: int
    FLOOD_RATE: float
    FLOOD_BURST: int
    CALL_RATE: Rate | None
    RING_BACKOFF: float | None
    RING_BACKOFF_MAX: float
    RING_BACKOFF_RESET: float
    MAX_CONNECTIONS_PER_IP: int | None
    WATCH_MAX: int
    WATCH_RATE: Rate | None
    ICE_TRANSPORT_POLICY: str
    ADAPTER: str
    SESSION_ACCOUNT: str | None
    THROTTLE_RATES: Mapping[str, str | None]
    WEBHOOK_TIMEOUT: float
    WEBHOOK_RETRY_WINDOW: float
    WEBHOOK_RETRY_DELAY: float
    WEBHOOK_RETRY_MAX_DELAY: float
    WEBHOOK_SECRET_GRACE: float
    WEBHOOK_ALLOW_PRIVATE: bool

    def __getitem__(self, key: str) -> Any:
        """``settings["RING_TIMEOUT"]``: the typed value, like the attribute."""
        if key not in _KEYS:
            raise KeyError(key)
        return getattr(self, key)


_KEYS = frozenset(field.name for field in fields(Settings))


@cache
def get_settings() -> Settings:
    """The project's ``DIRECTCALL`` dict over ``DEFAULTS``, converted once.

    A value that cannot be converted is replaced by its default and logged; the system
    check ``directcall.E006`` (or ``E007``) reports it.
    """
    user = user_settings()
    values = {}
    for key, default in DEFAULTS.items():
        try:
            values[key] = convert(key, user.get(key, default))
        except SettingError as error:
            logger.error("%s Using the default instead (see docs/settings.md).", error)
            values[key] = convert(key, default)
    return Settings(**values)


def user_settings() -> dict[str, Any]:
    """Return the ``DIRECTCALL`` dict exactly as the project wrote it (for system checks)."""
    return dict(getattr(settings, "DIRECTCALL", None) or {})


@receiver(setting_changed)
def _reset_settings_cache(*, setting: str, **kwargs: Any) -> None:
    if setting == "DIRECTCALL":
        get_settings.cache_clear()
