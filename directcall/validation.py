"""The parameter rules of ``initDirectCall`` and ``call()`` — one source for every entry point.

The init API, the signaling consumer and (through ``tests/validation_cases.json``,
which the browser SDK's tests read too) the JavaScript SDK all follow these rules.
Lengths count Unicode code points after trimming surrounding whitespace.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import URLValidator

from . import errors
from .errors import DirectCallError

CUID_MIN, CUID_MAX = 5, 50
NAME_MIN, NAME_MAX = 3, 50
CONTEXT_MAX = 280
URL_MAX = 2048

_CUID = re.compile(rf"[A-Za-z0-9_]{{{CUID_MIN},{CUID_MAX}}}")
# "number_number": digits, an underscore, digits (91_8899555) — refused by the original SDK.
_NUMBER_NUMBER = re.compile(r"[0-9]+(?:_[0-9]+)+")
_ACCOUNT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_API_KEY = re.compile(r"[A-Za-z0-9_.-]{1,128}")
_DEVICE_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")
_CT_ACCOUNT_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CT_ID = re.compile(r"[\x21-\x7e]{1,128}")  # printable ASCII, no spaces
# A JWT in compact form: three base64url parts (the last, the signature, may be empty: an
# unsigned token is refused when it is verified, with ERR_INVALID_USER_TOKEN).
USER_TOKEN_MAX = 4096
_USER_TOKEN = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Lone surrogates: JSON carries them as "\udXXX" escapes, but they are no text. They cannot
# be encoded as UTF-8, so storing, relaying or rendering a string holding one fails.
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_url_validator = URLValidator(schemes=["http", "https"])


def _has_unsafe_characters(value: str) -> bool:
    """Control characters (NUL included: PostgreSQL refuses it) or lone surrogates."""
    return _CONTROL.search(value) is not None or _SURROGATE.search(value) is not None


def is_valid_cuid(value: Any) -> bool:
    """5–50 letters, digits or ``_``; case-sensitive; not "number_number"."""
    return (
        isinstance(value, str)
        and _CUID.fullmatch(value) is not None
        and _NUMBER_NUMBER.fullmatch(value) is None
    )


def is_valid_account_id(value: Any) -> bool:
    """1–64 letters, digits, ``_`` or ``-``."""
    return isinstance(value, str) and _ACCOUNT_ID.fullmatch(value) is not None


def is_valid_api_key(value: Any) -> bool:
    """1–128 letters, digits, ``_``, ``.`` or ``-`` (keys are issued as ``prefix.secret``)."""
    return isinstance(value, str) and _API_KEY.fullmatch(value) is not None


def is_valid_device_id(value: Any) -> bool:
    """8–64 letters, digits, ``_`` or ``-`` (the SDK keeps a random one in localStorage)."""
    return isinstance(value, str) and _DEVICE_ID.fullmatch(value) is not None


def is_valid_ct_account_id(value: Any) -> bool:
    """1–64 letters, digits, ``_`` or ``-`` (``clevertap.getAccountID()``)."""
    return isinstance(value, str) and _CT_ACCOUNT_ID.fullmatch(value) is not None


def is_valid_ct_id(value: Any) -> bool:
    """1–128 printable ASCII characters, no spaces (``clevertap.getCleverTapID()``)."""
    return isinstance(value, str) and _CT_ID.fullmatch(value) is not None


def is_valid_user_token(value: Any) -> bool:
    """A JWT's compact form (``header.payload.signature``), at most 4096 characters."""
    return (
        isinstance(value, str)
        and len(value) <= USER_TOKEN_MAX
        and _USER_TOKEN.fullmatch(value) is not None
    )


def is_valid_name(value: Any) -> bool:
    """3–50 characters after trimming, no control characters (nor lone surrogates)."""
    if not isinstance(value, str):
        return False
    trimmed = value.strip()
    return NAME_MIN <= len(trimmed) <= NAME_MAX and not _has_unsafe_characters(trimmed)


def is_valid_context(value: Any) -> bool:
    """1–280 characters after trimming, no control characters (nor lone surrogates)."""
    if not isinstance(value, str):
        return False
    trimmed = value.strip()
    return 1 <= len(trimmed) <= CONTEXT_MAX and not _has_unsafe_characters(trimmed)


def is_valid_url(value: Any) -> bool:
    """An absolute ``http``/``https`` URL of at most 2048 characters, no control characters.

    Django's URLValidator lets NUL, other control characters and lone surrogates through
    in the path (and surrogates in the host); they are refused here.
    """
    if not isinstance(value, str) or len(value) > URL_MAX or value != value.strip():
        return False
    if _has_unsafe_characters(value):
        return False
    try:
        _url_validator(value)
    except ValidationError:
        return False
    return True


def is_blank(value: Any) -> bool:
    """None, ``""`` or only whitespace: an optional field with such a value counts as absent."""
    return value is None or (isinstance(value, str) and value.strip() == "")


@dataclass(frozen=True)
class FieldRule:
    """One field of a request body: the rule its value must pass, and whether it is required."""

    check: Callable[[Any], bool]
    required: bool


# Every init field in the order errors name them. The API's request serializers are built
# from these tables (directcall.api.serializers), so the schema cannot drift from the rules.
INIT_FIELDS: dict[str, FieldRule] = {
    "accountId": FieldRule(is_valid_account_id, required=True),
    "apikey": FieldRule(is_valid_api_key, required=True),
    "cuid": FieldRule(is_valid_cuid, required=True),
    "name": FieldRule(is_valid_name, required=False),
    "ringtone": FieldRule(is_valid_url, required=False),
    "ctAccountId": FieldRule(is_valid_ct_account_id, required=False),
    "ctId": FieldRule(is_valid_ct_id, required=False),
    "deviceId": FieldRule(is_valid_device_id, required=False),
    # Required by verified accounts (checked once the account is known): directcall.identity.
    "userToken": FieldRule(is_valid_user_token, required=False),
}
# A server-minted session: only the client-side, optional fields of init.
SESSION_FIELDS: dict[str, FieldRule] = {
    key: INIT_FIELDS[key] for key in ("ringtone", "ctAccountId", "ctId", "deviceId")
}


@dataclass(frozen=True)
class InitParams:
    """The cleaned parameters of an init request."""

    account_id: str
    api_key: str
    cuid: str
    name: str | None
    ringtone: str | None
    ct_account_id: str | None
    ct_id: str | None
    device_id: str | None
    user_token: str | None = None


def _check_fields(data: Any, fields: dict[str, FieldRule]) -> None:
    if not isinstance(data, dict):
        raise DirectCallError(
            errors.INVALID_INITPARAMETERS, "The request body must be a JSON object."
        )
    missing = [key for key, rule in fields.items() if rule.required and is_blank(data.get(key))]
    if missing:
        raise DirectCallError(
            errors.MISSING_INITPARAMETERS, f"Missing parameters: {', '.join(missing)}."
        )
    invalid = [
        key
        for key, rule in fields.items()
        if (rule.required or not is_blank(data.get(key))) and not rule.check(data.get(key))
    ]
    if invalid:
        raise DirectCallError(
            errors.INVALID_INITPARAMETERS, f"Invalid parameters: {', '.join(invalid)}."
        )


def _optional(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    return None if is_blank(value) else value.strip()


def clean_init_params(data: Any) -> InitParams:
    """Check an init request body; raise :class:`DirectCallError` with the seed's code."""
    _check_fields(data, INIT_FIELDS)
    return InitParams(
        account_id=data["accountId"],
        api_key=data["apikey"],
        cuid=data["cuid"],
        name=_optional(data, "name"),
        ringtone=_optional(data, "ringtone"),
        ct_account_id=_optional(data, "ctAccountId"),
        ct_id=_optional(data, "ctId"),
        device_id=_optional(data, "deviceId"),
        user_token=_optional(data, "userToken"),
    )


@dataclass(frozen=True)
class SessionParams:
    """The cleaned body of a server-minted session request (the user comes from the login)."""

    ringtone: str | None
    ct_account_id: str | None
    ct_id: str | None
    device_id: str | None


def clean_session_params(data: Any) -> SessionParams:
    """Check a session request body: only the optional, client-side fields of init."""
    _check_fields(data, SESSION_FIELDS)
    return SessionParams(
        ringtone=_optional(data, "ringtone"),
        ct_account_id=_optional(data, "ctAccountId"),
        ct_id=_optional(data, "ctId"),
        device_id=_optional(data, "deviceId"),
    )


@dataclass(frozen=True)
class CallParams:
    """The cleaned parameters of ``call(receiver, context, callOptions)``."""

    receiver: str
    context: str
    receiver_image: str | None
    initiator_image: str | None


def clean_call_params(receiver: Any, context: Any, options: Any = None) -> CallParams:
    """Check ``call()`` parameters; raise ``ERR_INVALID_CALL_PARAMETERS`` naming what is wrong."""
    problems = []
    if not is_valid_cuid(receiver):
        problems.append("receiver")
    if not is_valid_context(context):
        problems.append("context")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        problems.append("callOptions")
        options = {}
    images = {}
    for key in ("receiver_image", "initiator_image"):
        value = options.get(key)
        if is_blank(value):
            images[key] = None
        elif is_valid_url(value):
            images[key] = value
        else:
            problems.append(key)
    if problems:
        raise DirectCallError(
            errors.INVALID_CALL_PARAMETERS, f"Invalid call parameters: {', '.join(problems)}."
        )
    return CallParams(
        receiver=receiver,
        context=context.strip(),
        receiver_image=images["receiver_image"],
        initiator_image=images["initiator_image"],
    )
