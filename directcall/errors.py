"""The error codes of the original Direct Call SDK, plus the few this server adds.

Every error a client sees is ``{"code": ..., "message": ...}`` with one of these codes.
The list is documented in ``docs/errors.md``.
"""

from __future__ import annotations

from http import HTTPStatus

from django.db import InterfaceError, OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# The original SDK's codes (keep exact).
MISSING_INITPARAMETERS = "ERR_MISSING_INITPARAMETERS"
INVALID_INITPARAMETERS = "ERR_INVALID_INITPARAMETERS"
MISSING_CT_ACCOUNTID = "ERR_MISSING_CT_ACCOUNTID"
MISSING_CT_ID = "ERR_MISSING_CT_ID"
INVALID_CREDENTIALS = "ERR_INVALID_CREDENTIALS"
ALREADY_SIGNEDIN = "ERR_ALREADY_SIGNEDIN"
MIC_UNAVAILABLE = "ERR_MIC_UNAVAILABLE"
OUTGOING_CALL_IN_PROGRESS = "ERR_OUTGOING_CALL_IN_PROGRESS"
INVALID_CALL_PARAMETERS = "ERR_INVALID_CALL_PARAMETERS"
INTERNET_LOST = "ERR_INTERNET_LOST"
RECEIVER_OFFLINE = 404

# Added by this server.
ORIGIN_NOT_ALLOWED = "ERR_ORIGIN_NOT_ALLOWED"
RATE_LIMITED = "ERR_RATE_LIMITED"
METHOD_NOT_ALLOWED = "ERR_METHOD_NOT_ALLOWED"
INVALID_TOKEN = "ERR_INVALID_TOKEN"  # noqa: S105 (an error code, not a secret)
INVALID_USER_TOKEN = "ERR_INVALID_USER_TOKEN"  # noqa: S105 (an error code, not a secret)
SESSION_REVOKED = "ERR_SESSION_REVOKED"
NOT_AUTHENTICATED = "ERR_NOT_AUTHENTICATED"
BAD_FRAME = "ERR_BAD_FRAME"
FRAME_TOO_LARGE = "ERR_FRAME_TOO_LARGE"
UNKNOWN_CALL = "ERR_UNKNOWN_CALL"
CALL_STATE = "ERR_CALL_STATE"
INTERNAL = "ERR_INTERNAL"
CALL_NOT_ALLOWED = "ERR_CALL_NOT_ALLOWED"
NOT_SIGNED_IN = "ERR_NOT_SIGNED_IN"
SERVICE_UNAVAILABLE = "ERR_SERVICE_UNAVAILABLE"
INVALID_PARAMETERS = "ERR_INVALID_PARAMETERS"
NOT_FOUND = "ERR_NOT_FOUND"
FEEDBACK_DISABLED = "ERR_FEEDBACK_DISABLED"
WATCH_LIMIT = "ERR_WATCH_LIMIT"

MESSAGES: dict[str | int, str] = {
    MISSING_INITPARAMETERS: "One or more mandatory initialization parameters are missing.",
    INVALID_INITPARAMETERS: "Initialization parameters are not valid.",
    MISSING_CT_ACCOUNTID: "Unable to find the CleverTap account id.",
    MISSING_CT_ID: "Unable to find the CleverTap id.",
    INVALID_CREDENTIALS: "The account id or API key is incorrect.",
    ALREADY_SIGNEDIN: "This cuid is currently connected elsewhere.",
    MIC_UNAVAILABLE: "Microphone permission denied.",
    OUTGOING_CALL_IN_PROGRESS: "A call is already in progress.",
    INVALID_CALL_PARAMETERS: "The call parameters are not valid.",
    INTERNET_LOST: "The call could not continue because the internet connection was lost.",
    RECEIVER_OFFLINE: "The receiver is offline.",
    ORIGIN_NOT_ALLOWED: "This origin is not allowed for this account.",
    RATE_LIMITED: "Too many requests; try again later.",
    METHOD_NOT_ALLOWED: "Method not allowed.",
    INVALID_TOKEN: "The session token is invalid or has expired.",
    INVALID_USER_TOKEN: "The user token is missing, invalid or expired.",
    SESSION_REVOKED: "This session was revoked; sign in again.",
    NOT_AUTHENTICATED: "Send an auth frame with a session token first.",
    BAD_FRAME: "The frame is not valid.",
    FRAME_TOO_LARGE: "The frame is too large.",
    UNKNOWN_CALL: "No such call for this connection.",
    CALL_STATE: "The call is not in a state that allows this.",
    INTERNAL: "The server could not handle this frame.",
    CALL_NOT_ALLOWED: "You may not call this person.",
    NOT_SIGNED_IN: "Sign in to the site to make and receive calls.",
    SERVICE_UNAVAILABLE: "The service is briefly unavailable; try again in a few seconds.",
    INVALID_PARAMETERS: "The request's parameters are not valid.",
    NOT_FOUND: "Not found.",
    FEEDBACK_DISABLED: "This account does not collect call feedback.",
    WATCH_LIMIT: "Too many people watched on one connection.",
}


# The HTTP status of each code the HTTP API answers with (docs/api.md); any other code is
# a 400 there. The socket sends no status, only {code, message}.
HTTP_STATUS: dict[str | int, int] = {
    MISSING_INITPARAMETERS: HTTPStatus.BAD_REQUEST,
    INVALID_INITPARAMETERS: HTTPStatus.BAD_REQUEST,
    MISSING_CT_ACCOUNTID: HTTPStatus.BAD_REQUEST,
    MISSING_CT_ID: HTTPStatus.BAD_REQUEST,
    INVALID_CREDENTIALS: HTTPStatus.UNAUTHORIZED,
    INVALID_USER_TOKEN: HTTPStatus.UNAUTHORIZED,
    ORIGIN_NOT_ALLOWED: HTTPStatus.FORBIDDEN,
    NOT_SIGNED_IN: HTTPStatus.FORBIDDEN,
    METHOD_NOT_ALLOWED: HTTPStatus.METHOD_NOT_ALLOWED,
    RATE_LIMITED: HTTPStatus.TOO_MANY_REQUESTS,
    SERVICE_UNAVAILABLE: HTTPStatus.SERVICE_UNAVAILABLE,
    INVALID_PARAMETERS: HTTPStatus.BAD_REQUEST,
    NOT_FOUND: HTTPStatus.NOT_FOUND,
    INTERNAL: HTTPStatus.INTERNAL_SERVER_ERROR,
}


class DirectCallError(Exception):
    """An error a client is told about as ``{code, message}``.

    Like DRF's ``APIException`` it carries its HTTP status (``status_code``): the one of
    its code in :data:`HTTP_STATUS` unless given, 400 for a code not in that table.
    """

    default_status_code = HTTPStatus.BAD_REQUEST

    def __init__(
        self,
        code: str | int,
        message: str | None = None,
        status_code: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        self.code = code
        self.message = message or MESSAGES[code]
        self.retry_after = retry_after
        self.status_code = int(
            status_code
            if status_code is not None
            else HTTP_STATUS.get(code, self.default_status_code)
        )
        super().__init__(f"{code}: {self.message}")

    def as_dict(self) -> dict[str, str | int]:
        """Return the wire form ``{"code": ..., "message": ...}``, with ``retry_after``
        (seconds) when the refusal knows when trying again will work."""
        wire: dict[str, str | int] = {"code": self.code, "message": self.message}
        if self.retry_after is not None:
            wire["retry_after"] = self.retry_after
        return wire


# What a backing service that cannot be reached right now raises: Redis (cache, channel
# layer) restarting, the database gone away. Not a bug: the request may succeed later.
_OUTAGES = (RedisConnectionError, RedisTimeoutError, OperationalError, InterfaceError, OSError)


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` means Redis or the database cannot be reached now (retry later)."""
    return isinstance(exc, _OUTAGES)
