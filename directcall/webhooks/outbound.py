"""Safe outbound HTTP for webhook deliveries: timeouts, no redirects, public addresses only.

The host name is resolved here and every address it resolves to is checked: one that is
private, loopback, link-local, multicast or otherwise not globally routable refuses the
whole delivery (unless ``WEBHOOK_ALLOW_PRIVATE``). The connection is then made to one of
the checked addresses (the name is not resolved a second time, so a DNS answer that
changes in between cannot point the request elsewhere); TLS still verifies the
certificate against the host name. Redirects are never followed: a 3xx is a failed
attempt. Proxy environment variables are not used.
"""

from __future__ import annotations

import http.client
import io
import ipaddress
import socket
import ssl
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

# How much of an answer's body is read (and the start of it kept for the delivery log).
MAX_BODY = 64 * 1024
EXCERPT = 200


class RefusedURL(Exception):
    """A URL this server will not send to (scheme, or a non-public address): not retried."""


class DeliveryFailed(Exception):
    """The request could not be made or answered (DNS, connection, timeout): tried again."""


@dataclass(frozen=True)
class Answer:
    """What the receiver answered."""

    status: int
    excerpt: str


# NAT64 (RFC 6052): the well-known prefix carries an IPv4 address in its last 32 bits, and
# a NAT64 gateway on the way relays to it; the local-use prefix (RFC 8215) is never public.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_NAT64_LOCAL = ipaddress.ip_network("64:ff9b:1::/48")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address leads to: NAT64, 6to4 (2002::/16), Teredo."""
    found = []
    if ip in _NAT64:
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.sixtofour is not None:
        found.append(ip.sixtofour)
    if ip.teredo is not None:
        found.extend(ip.teredo)  # (server, client)
    return found


def is_public(address: str) -> bool:
    """Whether an IP address is globally routable (not private, loopback, link-local...).

    An IPv6 address that carries an IPv4 one (IPv4-mapped, NAT64, 6to4, Teredo) is public
    only if that IPv4 address is: ``64:ff9b::7f00:1`` reaches 127.0.0.1 through a NAT64.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in _NAT64_LOCAL or not all(map(_is_public_ip, _embedded_ipv4(ip))):
            return False
    return _is_public_ip(ip)


def _is_public_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return ip.is_global and not ip.is_multicast


def check_url(url: str) -> tuple[str, str, int]:
    """``(scheme, host, port)`` of a URL that may be sent to, or raise RefusedURL."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise RefusedURL(f"not a valid URL: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RefusedURL("only http and https URLs with a host")
    if parts.username is not None or parts.password is not None:
        raise RefusedURL("no user info in webhook URLs")
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80)


def resolve(host: str, port: int, allow_private: bool) -> list[str]:
    """Every address ``host`` resolves to, all checked; raise RefusedURL or DeliveryFailed."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise DeliveryFailed(f"cannot resolve {host}: {error}") from None
    addresses = list(dict.fromkeys(info[4][0] for info in infos))
    if not addresses:
        raise DeliveryFailed(f"{host} resolves to no address")
    if not allow_private:
        refused = [address for address in addresses if not is_public(address)]
        if refused:
            raise RefusedURL(
                f"{host} resolves to a non-public address ({refused[0]}); "
                "DIRECTCALL['WEBHOOK_ALLOW_PRIVATE'] allows it"
            )
    return addresses


def _remaining(deadline: float) -> float:
    """Seconds left before ``deadline`` (monotonic); TimeoutError once it has passed."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("timed out")
    return remaining


class _DeadlineReader(io.RawIOBase):
    """The socket as a raw stream whose every read may take only what is left of the attempt.

    A socket timeout bounds each ``recv`` alone: a receiver sending a byte now and then
    (of its status line, headers or body) kept an attempt busy for as long as it liked.
    Before each read the timeout is set to what remains, and past the deadline the read
    fails.
    """

    def __init__(self, raw: io.RawIOBase, sock: socket.socket, deadline: float) -> None:
        super().__init__()
        # The socket's own raw file (sock.makefile): holding it keeps the socket open after
        # http.client closes the connection (as it does for "Connection: close").
        self.raw = raw
        self.sock = sock
        self.deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int | None:
        self.sock.settimeout(_remaining(self.deadline))
        return self.raw.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            self.raw.close()
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    """An HTTP response read through :class:`_DeadlineReader` (status line, headers, body)."""

    def __init__(self, sock: socket.socket, *args, deadline: float, **kwargs) -> None:
        super().__init__(sock, *args, **kwargs)
        raw = self.fp.detach()  # the raw socket file under http.client's buffered one
        self.fp = io.BufferedReader(_DeadlineReader(raw, sock, deadline))


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """An HTTP connection to a checked address, with the URL's host in the Host header.

    Everything it does (connecting, sending, reading the answer) ends by ``deadline``.
    """

    def __init__(self, host: str, port: int, address: str, deadline: float) -> None:
        super().__init__(host, port, timeout=_remaining(deadline))
        self.address = address
        self.deadline = deadline

    def response_class(self, sock: socket.socket, *args, **kwargs) -> http.client.HTTPResponse:
        """What ``getresponse()`` reads the answer with: bounded by the deadline."""
        return _DeadlineResponse(sock, *args, deadline=self.deadline, **kwargs)

    def send(self, data) -> None:
        """Send with the socket's timeout set to what remains (``sendall`` is bounded by it
        as a whole)."""
        if self.sock is not None:
            self.sock.settimeout(_remaining(self.deadline))
        super().send(data)

    def _open_socket(self) -> socket.socket:
        sock = socket.create_connection((self.address, self.port), _remaining(self.deadline))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # What is left for what follows (a TLS handshake is bounded by it as a whole).
        sock.settimeout(_remaining(self.deadline))
        return sock

    def connect(self) -> None:
        self.sock = self._open_socket()


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    """The same over TLS: the certificate is verified against the URL's host name."""

    default_port = 443
    context = ssl.create_default_context()

    def connect(self) -> None:
        self.sock = self.context.wrap_socket(self._open_socket(), server_hostname=self.host)


def post(
    url: str,
    body: bytes,
    headers: dict[str, str],
    timeout: float,
    allow_private: bool = False,
) -> Answer:
    """POST ``body`` to ``url`` safely (see the module's docstring); the receiver's answer.

    ``timeout`` bounds the whole attempt after name resolution: connecting (to every
    address tried), the TLS handshake, sending, and reading the status line, headers and
    up to ``MAX_BODY`` of the body, however slowly the receiver sends them.
    Raises RefusedURL (never sent) or DeliveryFailed (DNS, connection, TLS, timeout).
    """
    scheme, host, port = check_url(url)
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    deadline = time.monotonic() + timeout
    kind = _PinnedHTTPSConnection if scheme == "https" else _PinnedHTTPConnection
    last_error: Exception | None = None
    for address in resolve(host, port, allow_private):
        if deadline - time.monotonic() <= 0:
            break
        connection = kind(host, port, address, deadline)
        try:
            connection.connect()
        except OSError as error:  # try the next address: nothing was sent
            last_error = error
            connection.close()
            continue
        try:
            # Once connected, the request goes to this address only. Sending and every
            # read of the answer take only what is left of ``timeout`` (_DeadlineReader).
            connection.request("POST", target, body=body, headers=headers)
            response = connection.getresponse()
            content = response.read(MAX_BODY)
            return Answer(response.status, content[:EXCERPT].decode("utf-8", "replace"))
        except (OSError, http.client.HTTPException) as error:
            raise DeliveryFailed(_describe(error)) from None
        finally:
            connection.close()
    raise DeliveryFailed(_describe(last_error) if last_error else "timed out")


def _describe(error: Exception) -> str:
    if isinstance(error, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ssl.SSLError):
        return f"TLS error: {error.reason or error}"
    return f"{type(error).__name__}: {error}"[:200]
