"""Short-lived signed session tokens: what the init endpoint hands out and the socket accepts.

A token names the account, the registration and the device it was issued to; identity on
the signaling connection comes from it alone, never from a frame. Each token has an id
(``jti``) and its issue time; one issued by ``v1/session`` also carries a hash of the
Django session it came from and the user's pk, one issued for a user token that token's
``jti``. Tokens can be revoked before they expire (:mod:`directcall.revocation`): a
deny-list in the shared cache, checked by :func:`verify`, refuses a token by its id, by
the id of the user token it was issued for, by its Django session, or every token issued
up to a moment to an account, a registration or a user. Entries live ``TOKEN_TTL``
seconds, as long as any token they could refuse.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass, field

from asgiref.sync import sync_to_async
from django.core import signing
from django.utils.crypto import salted_hmac

from .caching import cache
from .conf import get_settings

_SALT = "directcall.session.v1"
_DENY = "directcall:revoked"


@dataclass(frozen=True, slots=True)
class Session:
    """Who a valid token speaks for (the first four fields), and what the token is.

    Slots: every signed-in socket keeps one for its life."""

    account_pk: int
    registration_pk: int
    cuid: str
    device_id: str
    # The token's id, its issue time (epoch seconds), whether the host vouched for the
    # identity (v1/session or a user token), for v1/session tokens the Django session's
    # hash (see session_hash) and the user's pk, and for tokens issued for a user token
    # that user token's jti (revoking it reaches them too).
    jti: str = field(default="", compare=False)
    issued_at: float = field(default=0.0, compare=False)
    verified: bool = field(default=False, compare=False)
    sid: str = field(default="", compare=False)
    user_pk: str = field(default="", compare=False)
    user_jti: str = field(default="", compare=False)


def session_hash(session_key: str) -> str:
    """A stand-in for a Django session key in tokens and deny-lists (never the key itself)."""
    return salted_hmac("directcall.sid", session_key).hexdigest()[:32]


def issue(
    account_pk: int,
    registration_pk: int,
    cuid: str,
    device_id: str,
    *,
    verified: bool = False,
    sid: str = "",
    user_pk: object = None,
    user_jti: str = "",
) -> str:
    """Return a signed, timestamped token for this registration and device.

    ``user_jti``: the ``jti`` of the user token this session was issued for, so that
    revoking that user token (:func:`directcall.revocation.revoke_user_token`) refuses
    this token too.
    """
    payload: dict[str, object] = {
        "a": account_pk,
        "r": registration_pk,
        "c": cuid,
        "d": device_id,
        "j": secrets.token_urlsafe(12),
        # Milliseconds, rounded down: never later than the moment of issue, so that a
        # revocation made after it always refuses it.
        "t": math.floor(time.time() * 1000) / 1000,
    }
    if verified:
        payload["v"] = 1
    if sid:
        payload["s"] = sid
    if user_pk is not None:
        payload["u"] = str(user_pk)
    if user_jti:
        payload["uj"] = user_jti
    return signing.dumps(payload, salt=_SALT, compress=True)


def decode(token: object) -> Session | None:
    """The session a token carries if its signature and age are good (no deny-list check)."""
    if not isinstance(token, str) or len(token) > 1024:
        return None
    try:
        data = signing.loads(token, salt=_SALT, max_age=get_settings().TOKEN_TTL)
        return Session(
            account_pk=int(data["a"]),
            registration_pk=int(data["r"]),
            cuid=str(data["c"]),
            device_id=str(data["d"]),
            jti=str(data.get("j", "")),
            issued_at=float(data.get("t", 0)),
            verified=bool(data.get("v")),
            sid=str(data.get("s", "")),
            user_pk=str(data.get("u", "")),
            user_jti=str(data.get("uj", "")),
        )
    except (signing.BadSignature, KeyError, TypeError, ValueError, AttributeError):
        return None


def verify(token: object) -> Session | None:
    """Return the session a token carries, or None if it is malformed, tampered, expired
    or revoked (one cache round trip for the deny-list)."""
    session = decode(token)
    if session is None or is_revoked(session):
        return None
    return session


async def averify(token: object) -> Session | None:
    """:func:`verify` for async code (the deny-list lookup does not block the event loop)."""
    session = decode(token)
    if session is None or await ais_revoked(session):
        return None
    return session


# -- the deny-list ----------------------------------------------------------------------------


def _keys(session: Session) -> dict[str, str]:
    """The deny-list entries that could refuse ``session``: key -> kind."""
    keys = {
        f"{_DENY}:account:{session.account_pk}": "before",
        f"{_DENY}:registration:{session.registration_pk}": "before",
    }
    if session.jti:
        keys[f"{_DENY}:jti:{session.jti}"] = "always"
    if session.user_jti:
        # The user token it was issued for: revoke_token() of that id refuses both.
        keys[f"{_DENY}:jti:{session.user_jti}"] = "always"
    if session.sid:
        keys[f"{_DENY}:sid:{session.sid}"] = "always"
    if session.user_pk:
        keys[f"{_DENY}:user:{session.user_pk}"] = "before"
    return keys


def _refused(session: Session, kinds: dict[str, str], found: dict[str, object]) -> bool:
    for key, value in found.items():
        if kinds.get(key) == "always":
            return True
        # "before": every token issued up to that moment (inclusive) is refused.
        if isinstance(value, int | float) and session.issued_at <= value:
            return True
    return False


def is_revoked(session: Session) -> bool:
    """Whether a deny-list entry refuses this session's token."""
    kinds = _keys(session)
    return _refused(session, kinds, cache.get_many(list(kinds)))


async def ais_revoked(session: Session) -> bool:
    """:func:`is_revoked` for async code.

    In a worker thread of its own (not Django's ``cache.aget_many``, which queues every
    connection of the process in the one thread-sensitive thread; see presence.py).
    """
    return await sync_to_async(is_revoked, thread_sensitive=False)(session)


def _timeout() -> int:
    # Long enough to outlive every token issued before now; one second for rounding.
    return get_settings().TOKEN_TTL + 1


def revoke_token(jti: str, until: float | None = None) -> None:
    """Refuse the token (session or user token) with this id until ``until`` (epoch s).

    Without ``until``: for ``TOKEN_TTL`` seconds, the longest a session token lives. A user
    token's id also refuses the session tokens issued for it (their ``user_jti``), which
    may outlive its ``exp`` by ``TOKEN_TTL``: use
    :func:`directcall.revocation.revoke_user_token`, which picks ``until`` so and closes
    the sockets signed in with them too.
    """
    timeout = _timeout() if until is None else max(1, int(until - time.time()) + 1)
    cache.set(f"{_DENY}:jti:{jti}", True, timeout)


def is_jti_revoked(jti: str) -> bool:
    """Whether the token with this id has been revoked."""
    return cache.get(f"{_DENY}:jti:{jti}") is not None


def revoke_session_key_hash(sid: str) -> None:
    """Refuse every token issued for the Django session with this :func:`session_hash`."""
    cache.set(f"{_DENY}:sid:{sid}", True, _timeout())


def revoke_issued_before(scope: str, pk: object, moment: float | None = None) -> float:
    """Refuse every token of an account, registration or user issued up to ``moment``.

    ``scope`` is ``"account"``, ``"registration"`` or ``"user"``. Returns the moment used.
    """
    if scope not in ("account", "registration", "user"):
        raise ValueError(f"Unknown revocation scope {scope!r}.")
    moment = time.time() if moment is None else moment
    key = f"{_DENY}:{scope}:{pk}"
    # A later moment refuses more; never move it back (two revocations racing).
    previous = cache.get(key)
    if isinstance(previous, int | float) and previous > moment:
        return previous
    cache.set(key, moment, _timeout())
    return moment
