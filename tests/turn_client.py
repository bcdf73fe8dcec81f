"""A minimal TURN client (RFC 8656, formerly 5766) for tests: just enough to ask a real
coturn for a relay and to ask that relay for peers.

It talks to the server over TCP (no retransmissions to manage; the relay itself is UDP,
REQUESTED-TRANSPORT 17) with long-term credentials (RFC 8489 section 9.2): the first
request is answered 401 with a REALM and a NONCE, and every later request carries
USERNAME, REALM, NONCE and a MESSAGE-INTEGRITY keyed with MD5(username:realm:password).
With directcall's ephemeral credentials the password is the ``credential`` string itself.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field

MAGIC_COOKIE = 0x2112A442

# Message types (method | class bits).
ALLOCATE = 0x0003
REFRESH = 0x0004
CREATE_PERMISSION = 0x0008
CHANNEL_BIND = 0x0009
SEND_INDICATION = 0x0016
DATA_INDICATION = 0x0017
SUCCESS = 0x0100
ERROR = 0x0110

# Attributes.
USERNAME = 0x0006
MESSAGE_INTEGRITY = 0x0008
ERROR_CODE = 0x0009
CHANNEL_NUMBER = 0x000C
LIFETIME = 0x000D
XOR_PEER_ADDRESS = 0x0012
DATA = 0x0013
REALM = 0x0014
NONCE = 0x0015
XOR_RELAYED_ADDRESS = 0x0016
REQUESTED_ADDRESS_FAMILY = 0x0017
REQUESTED_TRANSPORT = 0x0019

UDP = 17
IPV4, IPV6 = 0x01, 0x02


class TurnError(Exception):
    """A TURN request answered with an error response."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


@dataclass
class Message:
    """A decoded STUN message: its type, transaction id and attributes (type, value)."""

    type: int
    transaction_id: bytes
    attributes: list[tuple[int, bytes]] = field(default_factory=list)

    def get(self, attribute: int) -> bytes | None:
        """The value of the first attribute of that type, or None."""
        for kind, value in self.attributes:
            if kind == attribute:
                return value
        return None

    def error(self) -> tuple[int, str] | None:
        """``(code, reason)`` of an ERROR-CODE attribute, or None."""
        value = self.get(ERROR_CODE)
        if value is None:
            return None
        return (value[2] & 0x7) * 100 + value[3], value[4:].decode("utf-8", "replace")


def _attribute(kind: int, value: bytes) -> bytes:
    padding = b"\0" * (-len(value) % 4)
    return struct.pack("!HH", kind, len(value)) + value + padding


def xor_address(ip: str, port: int, transaction_id: bytes) -> bytes:
    """The value of an XOR-PEER-ADDRESS (or any XOR-*-ADDRESS) attribute."""
    address = ipaddress.ip_address(ip)
    xport = port ^ (MAGIC_COOKIE >> 16)
    mask = struct.pack("!I", MAGIC_COOKIE) + (transaction_id if address.version == 6 else b"")
    raw = bytes(a ^ b for a, b in zip(address.packed, mask, strict=False))
    family = IPV4 if address.version == 4 else IPV6
    return struct.pack("!BBH", 0, family, xport) + raw


def parse_xor_address(value: bytes, transaction_id: bytes) -> tuple[str, int]:
    """``(ip, port)`` of an XOR-*-ADDRESS attribute's value."""
    _, family, xport = struct.unpack("!BBH", value[:4])
    mask = struct.pack("!I", MAGIC_COOKIE) + (transaction_id if family == IPV6 else b"")
    raw = bytes(a ^ b for a, b in zip(value[4:], mask, strict=False))
    return str(ipaddress.ip_address(raw)), xport ^ (MAGIC_COOKIE >> 16)


def encode(
    kind: int, transaction_id: bytes, attributes: list[tuple[int, bytes]], key: bytes | None
) -> bytes:
    """A STUN message; with ``key``, MESSAGE-INTEGRITY (HMAC-SHA1) is appended."""
    body = b"".join(_attribute(k, v) for k, v in attributes)
    if key is None:
        return struct.pack("!HHI", kind, len(body), MAGIC_COOKIE) + transaction_id + body
    # The HMAC covers the message with its length already counting MESSAGE-INTEGRITY.
    header = struct.pack("!HHI", kind, len(body) + 24, MAGIC_COOKIE) + transaction_id
    digest = hmac.new(key, header + body, hashlib.sha1).digest()
    return header + body + _attribute(MESSAGE_INTEGRITY, digest)


def decode(data: bytes) -> Message:
    """Decode one STUN message (header and attributes)."""
    kind, length, cookie = struct.unpack("!HHI", data[:8])
    if cookie != MAGIC_COOKIE:
        raise ValueError("not a STUN message")
    message = Message(kind, data[8:20])
    offset = 20
    while offset < 20 + length:
        attribute, size = struct.unpack("!HH", data[offset : offset + 4])
        message.attributes.append((attribute, data[offset + 4 : offset + 4 + size]))
        offset += 4 + size + (-size % 4)
    return message


class TurnClient:
    """One TURN allocation over a TCP connection to the server."""

    def __init__(self, host: str, port: int, username: str, password: str) -> None:
        self.sock = socket.create_connection((host, port), timeout=10)
        self.username = username
        self.password = password
        self.realm: bytes | None = None
        self.nonce: bytes | None = None
        self.relayed: tuple[str, int] | None = None
        self.indications: list[Message] = []

    def close(self) -> None:
        """Close the connection (coturn then frees the allocation)."""
        self.sock.close()

    def __enter__(self) -> TurnClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- wire ---------------------------------------------------------------------------

    def _read_exact(self, size: int) -> bytes:
        chunks = b""
        while len(chunks) < size:
            chunk = self.sock.recv(size - len(chunks))
            if not chunk:
                raise ConnectionError("the TURN server closed the connection")
            chunks += chunk
        return chunks

    def _read_message(self) -> Message:
        header = self._read_exact(20)
        (length,) = struct.unpack("!H", header[2:4])
        return decode(header + self._read_exact(length))

    def _key(self) -> bytes:
        assert self.realm is not None
        secret = f"{self.username}:{self.realm.decode()}:{self.password}"
        return hashlib.md5(secret.encode()).digest()  # noqa: S324 (RFC 8489's long-term key)

    def _auth(self) -> list[tuple[int, bytes]]:
        assert self.realm is not None and self.nonce is not None
        return [(USERNAME, self.username.encode()), (REALM, self.realm), (NONCE, self.nonce)]

    def request(
        self,
        method: int,
        attributes: list[tuple[int, bytes]] | Callable[[bytes], list[tuple[int, bytes]]],
    ) -> Message:
        """Send a request and return its success response; raise TurnError on an error.

        ``attributes`` may be a function of the transaction id (XOR-PEER-ADDRESS of an
        IPv6 peer depends on it). The first request learns REALM and NONCE from the 401
        and is sent again with credentials; a 438 (stale nonce) is retried with the new
        nonce.
        """
        for _attempt in range(3):
            transaction_id = os.urandom(12)
            attrs = list(attributes(transaction_id) if callable(attributes) else attributes)
            key = None
            if self.realm is not None:
                attrs += self._auth()
                key = self._key()
            self.sock.sendall(encode(method, transaction_id, attrs, key))
            while True:
                reply = self._read_message()
                if reply.transaction_id == transaction_id:
                    break
                self.indications.append(reply)  # a Data indication from a peer
            if reply.type == method | SUCCESS:
                return reply
            code, reason = reply.error() or (0, "no ERROR-CODE")
            if code in (401, 438) and reply.get(NONCE) is not None:
                retry = self.realm is None or code == 438
                self.realm = reply.get(REALM) or self.realm
                self.nonce = reply.get(NONCE)
                if retry:
                    continue
            raise TurnError(code, reason)
        raise TurnError(0, "authentication did not settle")

    # -- TURN ---------------------------------------------------------------------------

    def allocate(self, family: int = IPV4) -> tuple[str, int]:
        """Ask for a UDP relay of ``family``; return its (ip, port)."""
        attributes = [(REQUESTED_TRANSPORT, struct.pack("!B3x", UDP))]
        if family == IPV6:
            attributes.append((REQUESTED_ADDRESS_FAMILY, struct.pack("!B3x", IPV6)))
        reply = self.request(ALLOCATE, attributes)
        self.relayed = parse_xor_address(reply.get(XOR_RELAYED_ADDRESS), reply.transaction_id)
        return self.relayed

    def create_permission(self, peer_ip: str) -> None:
        """Install a permission for ``peer_ip``; TurnError (403 for a refused peer) if not."""
        self.request(
            CREATE_PERMISSION, lambda tid: [(XOR_PEER_ADDRESS, xor_address(peer_ip, 0, tid))]
        )

    def channel_bind(self, peer_ip: str, peer_port: int, channel: int = 0x4000) -> None:
        """Bind ``channel`` to the peer; TurnError if refused."""
        self.request(
            CHANNEL_BIND,
            lambda tid: [
                (CHANNEL_NUMBER, struct.pack("!H2x", channel)),
                (XOR_PEER_ADDRESS, xor_address(peer_ip, peer_port, tid)),
            ],
        )

    def send(self, peer_ip: str, peer_port: int, data: bytes) -> None:
        """A Send indication: ask the relay to send ``data`` to the peer (no answer comes)."""
        transaction_id = os.urandom(12)
        attributes = [
            (XOR_PEER_ADDRESS, xor_address(peer_ip, peer_port, transaction_id)),
            (DATA, data),
        ]
        self.sock.sendall(encode(SEND_INDICATION, transaction_id, attributes, None))

    def refresh(self) -> int:
        """A Refresh request; returns the allocation's remaining LIFETIME in seconds.

        coturn handles one connection's messages in order, so once this answer is back,
        every Send indication written before it has been relayed or dropped.
        """
        reply = self.request(REFRESH, [(LIFETIME, struct.pack("!I", 600))])
        return struct.unpack("!I", reply.get(LIFETIME))[0]

    def data_from(self, peer_ip: str) -> bytes:
        """Wait for a Data indication from ``peer_ip`` (up to the socket timeout)."""
        while True:
            for message in self.indications:
                ip, _port = parse_xor_address(message.get(XOR_PEER_ADDRESS), message.transaction_id)
                if message.type == DATA_INDICATION and ip == peer_ip:
                    self.indications.remove(message)
                    return message.get(DATA)
            self.indications.append(self._read_message())
