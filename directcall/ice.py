"""ICE servers for browsers, with ephemeral TURN credentials (the coturn REST scheme).

coturn started with ``use-auth-secret`` and ``static-auth-secret=SECRET`` accepts the
username ``"<expiry unix time>:<cuid>"`` with the password
``base64(HMAC-SHA1(SECRET, username))`` until the expiry passes.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import time
from typing import Any

from .conf import get_settings


def is_turn_url(url: str) -> bool:
    """Whether an ICE URL names a TURN server (``turn:`` or ``turns:``)."""
    return url.lower().startswith(("turn:", "turns:"))


def server_urls(server: dict[str, Any]) -> list[str]:
    """The ``urls`` of an RTCIceServer dict as a list."""
    urls = server.get("urls", [])
    return [urls] if isinstance(urls, str) else list(urls)


def turn_credentials(secret: str, cuid: str, ttl: int, now: float | None = None) -> dict[str, Any]:
    """Return ``{"username", "credential", "expiresAt"}`` valid for ``ttl`` seconds."""
    expires_at = int(now if now is not None else time.time()) + ttl
    username = f"{expires_at}:{cuid}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return {
        "username": username,
        "credential": base64.b64encode(digest).decode(),
        "expiresAt": expires_at,
    }


def ice_servers_for(cuid: str, now: float | None = None) -> list[dict[str, Any]]:
    """The configured ICE servers for a browser, every key kept, ``urls`` always a list.

    TURN entries without a ``username`` get ephemeral credentials when ``TURN_SECRET``
    is set. The settings are never modified (each call works on a deep copy).
    """
    conf = get_settings()
    servers = copy.deepcopy([dict(server) for server in conf.ICE_SERVERS])
    for server in servers:
        server["urls"] = server_urls(server)
    secret = conf.TURN_SECRET
    if not secret:
        return servers
    creds = turn_credentials(secret, cuid, conf.TURN_TTL, now=now)
    for server in servers:
        if "username" not in server and any(is_turn_url(u) for u in server_urls(server)):
            server["username"] = creds["username"]
            server["credential"] = creds["credential"]
    return servers
