"""One exception handler for the HTTP API: every refusal becomes ``{code, message}``.

:class:`~directcall.errors.DirectCallError` carries its own status. DRF's exceptions are
translated through one table, :data:`DRF_ERRORS`, and keep DRF's status code (DRF has
already turned a ``NotAuthenticated`` without an authentication scheme into a 403, and it
sets the ``Allow`` header of a 405 itself). A DRF exception missing from the table gets
DRF's own answer. Redis or the database out of reach is ``ERR_SERVICE_UNAVAILABLE`` (503,
retry later); a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` is ``ERR_INVALID_INITPARAMETERS``
(413); the site's own misconfiguration (``ImproperlyConfigured``: no session account, say)
is ``ERR_INTERNAL`` (500), its reason logged and not shown; any other exception is not
caught (a server error).
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, RequestDataTooBig
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .. import errors
from ..errors import DirectCallError
from .auth import InvalidServerKey

logger = logging.getLogger("directcall.api")

# Seconds a client is asked to wait when Redis or the database is out of reach (a restart).
UNAVAILABLE_RETRY_AFTER = 5

# What a page is told when the site's configuration is at fault (the log says what).
MISCONFIGURED = "The calling service is not set up correctly; the server's log says why."

# The response's message: the code's own (None), a fixed text, or DRF's detail (DETAIL).
DETAIL = object()

DRF_ERRORS: dict[type[exceptions.APIException], tuple[str, Any]] = {
    # The calls API's server key (before AuthenticationFailed: the most derived class wins).
    # Its own message ("The server key is missing or incorrect.", or how to send one): no
    # account id or API key was sent, so the code's own message would mislead.
    InvalidServerKey: (errors.INVALID_CREDENTIALS, DETAIL),
    exceptions.NotFound: (errors.NOT_FOUND, None),
    # "Authentication credentials were not provided." or "CSRF Failed: ...": says which.
    exceptions.NotAuthenticated: (errors.NOT_SIGNED_IN, DETAIL),
    exceptions.AuthenticationFailed: (errors.NOT_SIGNED_IN, DETAIL),
    exceptions.PermissionDenied: (errors.NOT_SIGNED_IN, DETAIL),
    exceptions.Throttled: (errors.RATE_LIMITED, None),
    exceptions.MethodNotAllowed: (errors.METHOD_NOT_ALLOWED, None),
    exceptions.NotAcceptable: (
        errors.INVALID_INITPARAMETERS,
        "The response is JSON only: the Accept header must allow application/json.",
    ),
    exceptions.ParseError: (errors.INVALID_INITPARAMETERS, "The request body is not valid JSON."),
    exceptions.UnsupportedMediaType: (
        errors.INVALID_INITPARAMETERS,
        "The request body must be JSON (Content-Type: application/json).",
    ),
    exceptions.ValidationError: (errors.INVALID_INITPARAMETERS, None),
}


def from_drf(exc: exceptions.APIException) -> DirectCallError | None:
    """The ``{code, message}`` error for one of DRF's exceptions, with DRF's status; or None."""
    for cls in type(exc).__mro__:
        if cls in DRF_ERRORS:
            code, message = DRF_ERRORS[cls]
            if message is DETAIL:
                message = exc.detail if isinstance(exc.detail, str) else None
            return DirectCallError(code, message, status_code=exc.status_code)
    return None


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """DRF's ``EXCEPTION_HANDLER`` for directcall's views; None lets the error through (500)."""
    error = from_drf(exc) if isinstance(exc, exceptions.APIException) else exc
    headers = {}
    if isinstance(exc, RequestDataTooBig):
        # Django's own answer would be its HTML "Bad Request (400)" page.
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        error = DirectCallError(
            errors.INVALID_INITPARAMETERS,
            f"The request body is larger than {limit} bytes.",
            status_code=413,
        )
    if errors.is_unavailable(exc):
        # The throttles' cache, presence or the database: the request may succeed later.
        logger.warning("API request failed, a backing service is unreachable: %r", exc)
        error = DirectCallError(errors.SERVICE_UNAVAILABLE)
        headers["Retry-After"] = str(UNAVAILABLE_RETRY_AFTER)
    if isinstance(exc, ImproperlyConfigured):
        # The site's settings, not the request: the reason goes to the log, where the site's
        # developer looks; the page gets a code of ours instead of Django's HTML 500 page.
        logger.error(
            "API request failed, directcall is not set up correctly: %s", exc, exc_info=exc
        )
        error = DirectCallError(errors.INTERNAL, MISCONFIGURED)
    if not isinstance(error, DirectCallError):
        return drf_exception_handler(exc, context)
    view_code = getattr(context.get("view"), "invalid_request_code", None)
    if view_code and error.code == errors.INVALID_INITPARAMETERS:
        # The calls API has no init parameters: its refusals of a request say so.
        default = errors.MESSAGES[errors.INVALID_INITPARAMETERS]
        message = None if error.message == default else error.message
        error = DirectCallError(view_code, message, status_code=error.status_code)
    if isinstance(exc, exceptions.Throttled) and exc.wait is not None:
        # DRF's wait, already rounded up to whole seconds, plus one (docs/api.md): the
        # throttle's estimate is to the instant, and a client retrying on it can be early.
        headers["Retry-After"] = str(int(exc.wait) + 1)
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    return Response(error.as_dict(), status=error.status_code, headers=headers)
