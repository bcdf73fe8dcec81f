"""Verified identities: user tokens that the host's backend signs and ``v1/init`` checks.

An account with verified identities (``Account.identity == "verified"``) signs nobody in on
the page's word: ``v1/init`` needs a ``userToken``, a JWT (HS256) signed with the account's
signing secret, naming the account (``iss``) and the cuid (``sub``), valid at most an hour.
The host's backend mints it for the user it has logged in, the way Twilio access tokens
and Stream user tokens work; the page passes it to ``initDirectCall({..., userToken})``.

Python (Django or not)::

    from directcall.identity import mint_user_token
    token = mint_user_token(account, "tutor_jane", name="Jane", ttl=600)

Other backends: docs/accounts.md#user-tokens (PyJWT and Node ``jsonwebtoken`` examples).
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import jwt

from . import errors, tokens
from .errors import DirectCallError
from .models import Account, Registration
from .origins import Origin, parse_origin
from .validation import is_valid_cuid, is_valid_name, is_valid_url

logger = logging.getLogger("directcall.identity")

ALGORITHM = "HS256"
# The longest a user token may live: it is a bearer credential for one user.
MAX_TTL = 3600
DEFAULT_TTL = 600
# Clock skew allowed between the host's backend and this server, in seconds.
LEEWAY = 10
_JTI_MAX = 64


@dataclass(frozen=True)
class UserClaims:
    """What a valid user token says about its user."""

    cuid: str
    name: str | None
    image: str | None
    jti: str | None
    expires_at: int


def mint_user_token(
    account: Account,
    cuid: str,
    *,
    name: str | None = None,
    image: str | None = None,
    ttl: int = DEFAULT_TTL,
) -> str:
    """A user token for ``cuid`` of ``account``, valid ``ttl`` seconds (at most 3600).

    ``name`` (3–50 characters) and ``image`` (an http(s) URL) are what the other party is
    shown. Raises ValueError for an invalid cuid, name, image or ttl, or an account
    without a signing secret.
    """
    if not account.signing_secret:
        raise ValueError("The account has no signing secret: rotate it first.")
    if not is_valid_cuid(cuid):
        raise ValueError(f"{cuid!r} is not a valid cuid.")
    if name is not None and not is_valid_name(name):
        raise ValueError("name must be 3-50 characters without control characters.")
    if image is not None and not is_valid_url(image):
        raise ValueError("image must be an absolute http(s) URL.")
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 < ttl <= MAX_TTL:
        raise ValueError(f"ttl must be a whole number of seconds from 1 to {MAX_TTL}.")
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": account.account_id,
        "sub": cuid,
        "iat": now,
        "exp": now + ttl,
        "jti": secrets.token_urlsafe(12),
    }
    if name is not None:
        claims["name"] = name.strip()
    if image is not None:
        claims["image"] = image
    return jwt.encode(claims, account.signing_secret, algorithm=ALGORITHM)


def _refuse(account: Account, reason: str, message: str) -> DirectCallError:
    # The account id is public; the token never goes to the log.
    logger.warning("user token refused for account %r: %s", account.account_id, reason)
    return DirectCallError(errors.INVALID_USER_TOKEN, message)


def verify_user_token(account: Account, token: str | None, cuid: str) -> UserClaims:
    """The claims of ``token`` if it is ``account``'s valid token for ``cuid``.

    Raises ``ERR_INVALID_USER_TOKEN`` (401) for a missing token, another algorithm than
    HS256 (``none`` included), a bad signature, another account (``iss``) or cuid
    (``sub``), no ``exp``, an expired token, one that lives longer than an hour, bad
    ``name``/``image`` claims, or a revoked ``jti``.
    """
    if not token:
        raise _refuse(
            account,
            "no user token",
            "This account signs users in with a user token from your server (userToken).",
        )
    if not account.signing_secret:
        raise _refuse(
            account,
            "no signing secret",
            "This account has no signing secret yet; rotate it to sign user tokens.",
        )
    try:
        claims = jwt.decode(
            token,
            account.signing_secret,
            algorithms=[ALGORITHM],
            issuer=account.account_id,
            leeway=LEEWAY,
            options={"require": ["exp", "iss", "sub"]},
        )
    except jwt.ExpiredSignatureError:
        raise _refuse(account, "expired", "The user token has expired.") from None
    except jwt.InvalidIssuerError:
        raise _refuse(account, "other account", "The user token is for another account.") from None
    except jwt.InvalidTokenError as exc:
        # Wrong algorithm (none, HS512, RS256...), bad signature, malformed, missing claim.
        raise _refuse(account, type(exc).__name__, "The user token is not valid.") from None
    now = time.time()
    # PyJWT has checked that both convert to int (a numeric string does too).
    exp = int(claims["exp"])
    iat = int(claims["iat"]) if "iat" in claims else None
    if exp - now > MAX_TTL + LEEWAY or (iat is not None and exp - iat > MAX_TTL):
        raise _refuse(
            account, "lives too long", "A user token may be valid for one hour at most (exp)."
        )
    if claims["sub"] != cuid:
        raise _refuse(account, "other cuid", "The user token is for another cuid.")
    name, image, jti = claims.get("name"), claims.get("image"), claims.get("jti")
    if name is not None and not is_valid_name(name):
        raise _refuse(account, "bad name", "The user token's name is not a valid name.")
    if image is not None and not is_valid_url(image):
        raise _refuse(account, "bad image", "The user token's image is not an http(s) URL.")
    if jti is not None and (not isinstance(jti, str) or len(jti) > _JTI_MAX):
        raise _refuse(account, "bad jti", "The user token's jti is not valid.")
    if jti is not None and tokens.is_jti_revoked(jti):
        raise _refuse(account, "revoked jti", "The user token has been revoked.")
    return UserClaims(
        cuid=cuid,
        name=name.strip() if name is not None else None,
        image=image,
        jti=jti,
        expires_at=exp,
    )


def invite_images(
    caller: Registration,
    callee: Registration,
    initiator_image: str | None,
    receiver_image: str | None,
    site_origin: Origin | None = None,
) -> tuple[str, str]:
    """The pictures a call shows: ``(caller's, callee's)``, "" for none.

    In an account with verified identities they are the registrations' own (from the user
    token or the adapter, stored at sign-in), whatever the caller's ``call()`` options
    say: a caller cannot put a URL of its choosing on the callee's screen, nor pass
    itself off with another picture. Page identities keep the original SDK's options,
    but only URLs served from ``site_origin`` (the site the signaling socket was opened
    on) or from an origin the account allows: the callee's browser loads the caller's
    picture as the call rings, and any other server would learn the callee's IP address
    (and User-Agent) before an answer.
    """
    if caller.account.is_verified:
        return caller.image_url, callee.image_url
    trusted = {parse_origin(entry) for entry in caller.account.allowed_origins.split()}
    if site_origin is not None:
        trusted.add(site_origin)
    trusted.discard(None)
    return (
        _served_from(initiator_image, trusted),
        _served_from(receiver_image, trusted),
    )


def _served_from(url: str | None, origins: set[Origin | None]) -> str:
    """``url`` if its scheme, host and port are one of ``origins``, else ""."""
    if not url:
        return ""
    try:
        parts = urlsplit(url)
        origin = parse_origin(f"{parts.scheme}://{parts.netloc}")
    except ValueError:
        return ""
    return url if origin is not None and origin in origins else ""
