"""Standard Webhooks signatures: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``.

The signed content is ``{id}.{timestamp}.{body}``; the signature is the base64 of its
HMAC-SHA256 under the secret's key (the base64 after ``whsec_``), sent as ``v1,<sig>``.
While an endpoint's previous secret is still valid (a rotation), the header carries one
signature per secret, space-separated: a receiver that knows either one verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping

from .models import SECRET_PREFIX

# Seconds a receiver accepts a timestamp away from its own clock (the specification's 5 min).
TOLERANCE = 300


class InvalidSignature(Exception):
    """A delivery whose headers do not verify."""


def secret_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret (the base64 after the prefix)."""
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError) as error:
        raise ValueError("A webhook secret is whsec_ followed by base64.") from error


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one message under one secret."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), content, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(
    secrets: Iterable[str], msg_id: str, body: bytes, timestamp: int | None = None
) -> dict[str, str]:
    """The three headers of a delivery, signed with every secret in ``secrets``."""
    timestamp = int(time.time()) if timestamp is None else timestamp
    signatures = " ".join(sign(secret, msg_id, timestamp, body) for secret in secrets)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
    }


def verify(
    secret: str,
    received: Mapping[str, str],
    body: bytes,
    tolerance: int = TOLERANCE,
    now: float | None = None,
) -> str:
    """Check a delivery as a receiver does; return its ``webhook-id`` or raise InvalidSignature.

    ``received``: the request's headers (names in lower case). The timestamp must be within
    ``tolerance`` seconds of ``now``, and one of the ``v1`` signatures must match.
    """
    msg_id = received.get("webhook-id", "")
    stamp = received.get("webhook-timestamp", "")
    signatures = received.get("webhook-signature", "")
    if not (msg_id and stamp.isdigit() and signatures):
        raise InvalidSignature("missing or malformed webhook headers")
    now = time.time() if now is None else now
    if abs(now - int(stamp)) > tolerance:
        raise InvalidSignature("timestamp outside the tolerance")
    expected = sign(secret, msg_id, int(stamp), body)
    for candidate in signatures.split(" "):
        if hmac.compare_digest(candidate.encode(), expected.encode()):
            return msg_id
    raise InvalidSignature("no signature matches")
