"""Short-lived signed session tokens: what the init endpoint hands out and the socket accepts.

A token names the account, the registration and the device it was issued to; identity on
the signaling connection comes from it alone, never from a frame.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core import signing

from .conf import get_settings

_SALT = "directcall.session.v1"


@dataclass(frozen=True)
class Session:
    """Who a valid token speaks for."""

    account_pk: int
    registration_pk: int
    cuid: str
    device_id: str


def issue(account_pk: int, registration_pk: int, cuid: str, device_id: str) -> str:
    """Return a signed, timestamped token for this registration and device."""
    payload = {"a": account_pk, "r": registration_pk, "c": cuid, "d": device_id}
    return signing.dumps(payload, salt=_SALT, compress=True)


def verify(token: object) -> Session | None:
    """Return the session a token carries, or None if it is malformed, tampered or expired."""
    if not isinstance(token, str) or len(token) > 1024:
        return None
    try:
        data = signing.loads(token, salt=_SALT, max_age=get_settings().TOKEN_TTL)
        return Session(
            account_pk=int(data["a"]),
            registration_pk=int(data["r"]),
            cuid=str(data["c"]),
            device_id=str(data["d"]),
        )
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return None
