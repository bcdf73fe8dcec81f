"""How many signaling sockets each client address holds open on this server process.

``DIRECTCALL["MAX_CONNECTIONS_PER_IP"]`` (default 500) caps them: one address could
otherwise open thousands of sockets (issue 13 measured 2000 unauthenticated ones), each
holding memory, a file descriptor and a place on the event loop until ``AUTH_TIMEOUT``.

Counted per process, in memory, not in the shared cache, because:

- what the cap protects — sockets, memory, the event loop — belongs to one process, and a
  process-local count is exact: a socket counts from its handshake to its end, always;
- a shared counter would be left too high by every process that dies (SIGKILL, OOM)
  holding sockets, locking their addresses out until some expiry, and would cost a cache
  round trip on every handshake, which is the operation a flood repeats.

So with N processes behind a balancer one address may hold up to N times the cap in all.
The address is the ASGI ``client`` (``REMOTE_ADDR``); ``X-Forwarded-For`` is read only when
``REST_FRAMEWORK["NUM_PROXIES"]`` is set, exactly as the init endpoint's per-IP throttle
does, so a client cannot pick its own address. A socket whose address is unknown (a Unix
socket server without proxy headers) is not counted.
"""

from __future__ import annotations

import logging
from collections import Counter
from typing import Any

from rest_framework.settings import api_settings

logger = logging.getLogger("directcall.signaling")


def client_ip(scope: dict[str, Any]) -> str | None:
    """The client address of a WebSocket scope, by the rules of the init endpoint's throttle."""
    client = scope.get("client")
    remote = str(client[0]) if client else None
    num_proxies = api_settings.NUM_PROXIES
    if num_proxies is None:
        return remote
    # DRF's SimpleRateThrottle.get_ident, on the scope's headers.
    values = [v for k, v in scope.get("headers", []) if k.lower() == b"x-forwarded-for"]
    if num_proxies == 0 or not values:
        return remote
    addresses = b",".join(values).decode("latin-1").split(",")
    return addresses[-min(num_proxies, len(addresses))].strip() or remote


class ConnectionCounter:
    """Open sockets per client address in this process (one event loop: no lock needed)."""

    def __init__(self) -> None:
        self._open: Counter[str] = Counter()

    def acquire(self, address: str, limit: int) -> bool:
        """Count one more socket of ``address``; False (nothing counted) at ``limit``."""
        if self._open[address] >= limit:
            return False
        self._open[address] += 1
        return True

    def release(self, address: str) -> None:
        """One socket of ``address`` (counted by :meth:`acquire`) has ended."""
        if address not in self._open:
            return
        self._open[address] -= 1
        if self._open[address] <= 0:
            del self._open[address]

    def open_count(self, address: str) -> int:
        """Sockets of ``address`` open now."""
        return self._open[address]


connections = ConnectionCounter()


def admit(scope: dict[str, Any], limit: int | None) -> tuple[bool, str | None]:
    """Count a new socket against its address's cap: (admitted, the address to release)."""
    address = client_ip(scope)
    if limit is None or address is None:
        return True, None
    if not connections.acquire(address, limit):
        client = (scope.get("client") or ["?"])[0]
        logger.warning("socket refused: %s has %d open (client %s)", address, limit, client)
        return False, None
    return True, address
