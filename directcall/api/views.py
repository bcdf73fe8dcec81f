"""The HTTP side of the SDK contract: ``POST v1/init`` and ``POST v1/session``."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models.signals import post_save, pre_save
from django.http import HttpRequest
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import exceptions, status
from rest_framework.authentication import SessionAuthentication
from rest_framework.parsers import JSONParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .. import callsql, errors, ice, tokens
from ..adapter import get_adapter
from ..conf import get_settings
from ..errors import DirectCallError
from ..identity import verify_user_token
from ..models import Account, Registration, hash_api_key_secret
from ..validation import (
    InitParams,
    clean_init_params,
    clean_session_params,
    is_valid_cuid,
    is_valid_url,
)
from ..webhooks import outbox as webhooks
from ..webhooks.models import Event
from .exceptions import exception_handler
from .records import RegistrationSerializer
from .serializers import (
    ErrorSerializer,
    InitRequestSerializer,
    InitResponseSerializer,
    SessionRequestSerializer,
)
from .throttling import InitAccountThrottle, InitIPNewThrottle, InitIPThrottle

logger = logging.getLogger("directcall.api")

# A hash to compare against when the account does not exist, so that an unknown account
# costs the same work as a wrong key.
_DUMMY_HASH = hash_api_key_secret("directcall-no-such-account")


def authenticate(params: InitParams) -> Account:
    """Return the active account whose key matches, or raise ``ERR_INVALID_CREDENTIALS``.

    An unknown account, a wrong or revoked key and an inactive account are one answer.
    """
    account = callsql.account_by_id(params.account_id)
    if account is None:
        secrets.compare_digest(hash_api_key_secret(params.api_key), _DUMMY_HASH)
        reason = "unknown account"
    elif not account.check_api_key(params.api_key):
        reason = "revoked key" if account.key_is_revoked else "wrong key"
    elif not account.is_active:
        reason = "inactive account"
    else:
        return account
    # Never log the key; the account id is public.
    logger.warning("init refused for account %r: %s", params.account_id, reason)
    raise DirectCallError(errors.INVALID_CREDENTIALS)


def websocket_url(request: HttpRequest) -> str:
    """The signaling URL for this request: ``WEBSOCKET_URL`` or built from the host."""
    conf = get_settings()
    if conf.WEBSOCKET_URL:
        return conf.WEBSOCKET_URL
    scheme = "wss" if request.is_secure() else "ws"
    return f"{scheme}://{request.get_host()}/{conf.WEBSOCKET_PATH.lstrip('/')}"


def session_body(
    request: HttpRequest,
    account: Account,
    registration: Registration,
    device_id: str,
    ringtone: str | None = None,
    **token_fields: object,
) -> dict:
    """What the SDK needs after signing in: token, socket URL, ICE servers, timings, branding.

    ``token_fields`` go to :func:`directcall.tokens.issue` (``verified``, ``sid``, ``user_pk``,
    ``user_jti``).
    """
    conf = get_settings()
    token = tokens.issue(account.pk, registration.pk, registration.cuid, device_id, **token_fields)
    body = {
        "token": token,
        "tokenExpiresIn": conf.TOKEN_TTL,
        "websocketUrl": websocket_url(request),
        "accountId": account.account_id,
        "cuid": registration.cuid,
        # Only what this sign-in said (upsert_registration stores exactly that), never a
        # name stored by an earlier one: anyone with a page's key could read it.
        "name": registration.display_name,
        "image": registration.image_url or None,
        "deviceId": device_id,
        "ringtone": ringtone,
        "iceServers": ice.ice_servers_for(registration.cuid),
        "iceTransportPolicy": conf.ICE_TRANSPORT_POLICY,
        "ringTimeout": account.effective_ring_timeout(),
        "maxCallDuration": account.effective_max_call_duration(),
        "branding": account.branding(),
    }
    return InitResponseSerializer(body).data


def check_clevertap(account: Account, ct_account_id: str | None, ct_id: str | None) -> None:
    """Refuse a sign-in without CleverTap ids when the account requires them."""
    if account.require_clevertap:
        if not ct_account_id:
            raise DirectCallError(errors.MISSING_CT_ACCOUNTID)
        if not ct_id:
            raise DirectCallError(errors.MISSING_CT_ID)


# A sign-in that changes nothing writes nothing unless the stored last_seen_at is older.
LAST_SEEN_PRECISION = timedelta(minutes=1)


def _unchanged(registration: Registration, values: dict[str, Any]) -> bool:
    """Whether ``values`` would change nothing of ``registration`` but a recent last seen."""
    if registration.last_seen_at < values["last_seen_at"] - LAST_SEEN_PRECISION:
        return False
    return all(
        getattr(registration, name) == value
        for name, value in values.items()
        if name != "last_seen_at"
    )


def upsert_registration(
    account: Account,
    cuid: str,
    admit_new: Callable[[], None] | None = None,
    **fields: str,
) -> Registration:
    """Create or update the registration of ``cuid`` with what this sign-in says.

    A blank ``name`` or ``image_url`` clears the stored one: a sign-in never inherits a
    name or picture it was not given (the init response would hand it to whoever holds
    the key). ``admit_new`` is called before a registration is created, never for a cuid
    the account knows; it raises to refuse (the view's budget of new registrations).
    """
    defaults = {"last_seen_at": timezone.now(), "name": "", "image_url": "", **fields}
    known = None
    if not (pre_save.has_listeners(Registration) or post_save.has_listeners(Registration)):
        # A sign-in of a known cuid, the usual one: its row read, and written only if
        # something changed or its last_seen_at is older than LAST_SEEN_PRECISION (every
        # page view of a browsing user signs in: a read, not a write and its commit), with
        # one UPDATE that nobody could tell from update_or_create's (no receiver of its
        # signals; no webhook event for an update). A new cuid, or a database without
        # RETURNING, is created below.
        current = callsql.registration_by_cuid(account, cuid)
        if current is None:
            known = False
        elif _unchanged(current, defaults):
            return current
        else:
            registration = callsql.update_registration(account, cuid, defaults)
            if registration is not None:
                return registration
            if not callsql.supports_returning(connections[DEFAULT_DB_ALIAS]):
                known = True  # the read found it; the UPDATE was not tried
    if admit_new is not None:
        if known is None:
            known = Registration.objects.filter(account=account, cuid=cuid).exists()
        if not known:
            admit_new()
    with transaction.atomic():
        registration, created = Registration.objects.update_or_create(
            account=account, cuid=cuid, defaults=defaults
        )
        if created and account.has_webhooks:
            # In the same transaction (the outbox): docs/webhooks.md.
            webhooks.emit(
                account, Event.REGISTRATION_CREATED, RegistrationSerializer(registration).data
            )
    return registration


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser; a body nested too deeply is a parse error (400), not a 500.

    ``json`` raises RecursionError, not ValueError, past about a thousand levels of
    nesting (``[[[[...]]]]``, a few kilobytes), and DRF's parser only catches ValueError.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise exceptions.ParseError("JSON parse error - nested too deeply.") from None


class DirectCallAPIView(APIView):
    """JSON only, and every refusal as ``{code, message}`` (see :mod:`.exceptions`)."""

    parser_classes = [BoundedJSONParser]
    # JSON only, whatever the host's REST_FRAMEWORK says: no browsable API, and an Accept
    # header that excludes JSON gets a 406 in {code, message} form.
    renderer_classes = [JSONRenderer]
    schema = AutoSchema()

    def get_exception_handler(self):
        """One handler, one table: ``directcall.api.exceptions``, whatever REST_FRAMEWORK says."""
        return exception_handler


class InitView(DirectCallAPIView):
    """Sign a cuid in: check credentials, upsert its registration, return a session token."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    # Every request per IP before anything else; a new cuid per IP and per account in
    # post(), once every other check has passed.
    throttle_classes = [InitIPThrottle]

    @extend_schema(
        operation_id="directcall_init",
        summary="Sign a cuid in (initDirectCall)",
        request=InitRequestSerializer,
        responses={
            200: InitResponseSerializer,
            400: OpenApiResponse(
                ErrorSerializer,
                description="ERR_MISSING_INITPARAMETERS, ERR_INVALID_INITPARAMETERS, "
                "ERR_MISSING_CT_ACCOUNTID or ERR_MISSING_CT_ID",
            ),
            401: OpenApiResponse(
                ErrorSerializer,
                description="ERR_INVALID_CREDENTIALS, or ERR_INVALID_USER_TOKEN (a verified "
                "account without a valid userToken for this cuid)",
            ),
            403: OpenApiResponse(ErrorSerializer, description="ERR_ORIGIN_NOT_ALLOWED"),
            405: OpenApiResponse(ErrorSerializer, description="ERR_METHOD_NOT_ALLOWED"),
            406: OpenApiResponse(
                ErrorSerializer,
                description="ERR_INVALID_INITPARAMETERS (the Accept header excludes JSON)",
            ),
            415: OpenApiResponse(ErrorSerializer, description="ERR_INVALID_INITPARAMETERS"),
            429: OpenApiResponse(ErrorSerializer, description="ERR_RATE_LIMITED"),
            503: OpenApiResponse(
                ErrorSerializer,
                description="ERR_SERVICE_UNAVAILABLE (Redis or the database is unreachable; "
                "retry after Retry-After seconds)",
            ),
        },
        examples=[
            OpenApiExample(
                "init",
                request_only=True,
                value={
                    "accountId": "5f0c9e1a2b3c4d5e6f70",
                    "apikey": "1a2b3c4d5e6f.secret",
                    "cuid": "tutor_jane",
                    "name": "Jane",
                    "ctAccountId": "TEST-R78-ZZK-955Z",
                    "ctId": "__g5c8f3a1b2",
                    "deviceId": "k9X2mQ7pL4vR8sT1",
                },
            )
        ],
    )
    def post(self, request: Request) -> Response:
        """Validate, authenticate, check origin, user token and CleverTap ids; issue a session.

        A verified account needs a ``userToken`` for this cuid, and the name and picture
        come from it (the page's ``name`` is ignored). A page account takes the page's
        word, unless it sends a user token too (then that is checked and used).
        """
        params = clean_init_params(request.data)
        account = authenticate(params)
        origin = request.headers.get("Origin")
        if not account.origin_allowed(origin):
            # Said here, where the site's developer looks: the page is only told it may not.
            logger.warning(
                "init refused for account %r: origin %r is not among its allowed origins",
                account.account_id,
                origin,
            )
            raise DirectCallError(errors.ORIGIN_NOT_ALLOWED)
        claims = None
        if account.is_verified or params.user_token:
            claims = verify_user_token(account, params.user_token, params.cuid)
        check_clevertap(account, params.ct_account_id, params.ct_id)
        device_id = params.device_id or secrets.token_urlsafe(12)
        registration = upsert_registration(
            account,
            params.cuid,
            name=(claims.name if claims else params.name) or "",
            image_url=(claims.image if claims else None) or "",
            ct_account_id=params.ct_account_id or "",
            ct_id=params.ct_id or "",
            device_id=device_id,
            admit_new=lambda: self.admit_new_registration(request, account),
        )
        body = session_body(
            request,
            account,
            registration,
            device_id,
            params.ringtone,
            verified=bool(claims),
            # Revoking the user token (revocation.revoke_user_token) reaches this session.
            user_jti=(claims.jti if claims else None) or "",
        )
        return Response(body)

    def admit_new_registration(self, request: Request, account: Account) -> None:
        """Count a new registration against its address's and its account's budgets, or
        refuse it (429).

        Only a sign-in that would create a registration is counted, once every other check
        has passed. The page's key is public: a budget that every sign-in used up would let
        whoever reads it lock every user of the site out from a few addresses. A known
        cuid's sign-in is bounded only by the per-address limit on every request.
        """
        for throttle in (InitIPNewThrottle(), InitAccountThrottle(account.account_id)):
            if not throttle.allow_request(request, self):
                raise exceptions.Throttled(throttle.wait())

    def options(self, request: Request, *args, **kwargs) -> Response:
        """CORS preflight: the real check is the account's origin allow-list on POST."""
        return Response(status=status.HTTP_204_NO_CONTENT)

    def finalize_response(self, request, response, *args, **kwargs):
        """Add CORS headers: the SDK may be served from another origin than this server."""
        response = super().finalize_response(request, response, *args, **kwargs)
        # Added to (never replacing) any Vary already set, on every response: whether
        # CORS headers are sent depends on the Origin header.
        patch_vary_headers(response, ["Origin"])
        origin = request.headers.get("Origin")
        if origin:
            response["Access-Control-Allow-Origin"] = origin
            response["Access-Control-Allow-Methods"] = "POST, OPTIONS"
            response["Access-Control-Allow-Headers"] = "Content-Type"
            response["Access-Control-Max-Age"] = "600"
            # Not a CORS-safelisted response header: without this, a page of another origin
            # cannot read how long to wait before it tries a 429 or a 503 again.
            response["Access-Control-Expose-Headers"] = "Retry-After"
        return response


class SessionView(DirectCallAPIView):
    """Sign the logged-in Django user in, without an API key in the page.

    The adapter decides the account, cuid, name and picture; the browser sends only its
    device id (and CleverTap ids when the account requires them). Session authentication
    with CSRF protection: the page gets the CSRF token from ``{% directcall_session %}``.
    """

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = [InitIPThrottle]

    @extend_schema(
        operation_id="directcall_session",
        summary="Sign the logged-in user in (server-minted session)",
        request=SessionRequestSerializer,
        responses={
            200: InitResponseSerializer,
            400: OpenApiResponse(
                ErrorSerializer,
                description="ERR_INVALID_INITPARAMETERS, ERR_MISSING_CT_ACCOUNTID or "
                "ERR_MISSING_CT_ID",
            ),
            403: OpenApiResponse(
                ErrorSerializer, description="ERR_NOT_SIGNED_IN (no login, or CSRF failed)"
            ),
            405: OpenApiResponse(ErrorSerializer, description="ERR_METHOD_NOT_ALLOWED"),
            406: OpenApiResponse(
                ErrorSerializer,
                description="ERR_INVALID_INITPARAMETERS (the Accept header excludes JSON)",
            ),
            415: OpenApiResponse(ErrorSerializer, description="ERR_INVALID_INITPARAMETERS"),
            429: OpenApiResponse(ErrorSerializer, description="ERR_RATE_LIMITED"),
            500: OpenApiResponse(
                ErrorSerializer,
                description="ERR_INTERNAL (the site's configuration: no SESSION_ACCOUNT, "
                "one naming no account or a page account; the server's log says which)",
            ),
            503: OpenApiResponse(
                ErrorSerializer,
                description="ERR_SERVICE_UNAVAILABLE (Redis or the database is unreachable; "
                "retry after Retry-After seconds)",
            ),
        },
    )
    def post(self, request: Request) -> Response:
        """Issue a session for ``request.user`` as the adapter maps it.

        The token is bound to this Django session and user, so that logging out can
        revoke it.
        """
        params = clean_session_params(request.data)
        adapter = get_adapter()
        account = adapter.get_account(request)
        if not account.is_verified:
            # System check E008 says so too; refusing here keeps the key of a page account
            # from ever signing anyone in as a logged-in user of the site.
            raise ImproperlyConfigured(
                f"The session account {account.account_id!r} takes page identities; set it "
                "to verified (docs/checks.md#directcalle008)."
            )
        if not account.is_active:
            raise DirectCallError(errors.INVALID_CREDENTIALS)
        check_clevertap(account, params.ct_account_id, params.ct_id)
        user = request.user
        cuid = adapter.get_cuid(user)
        if not is_valid_cuid(cuid):
            raise ImproperlyConfigured(f"The adapter gave user {user.pk} an invalid cuid.")
        image = adapter.get_image_url(user) or ""
        if image and not is_valid_url(image):
            logger.warning("the adapter gave user %s a picture that is no http(s) URL", user.pk)
            image = ""
        device_id = params.device_id or secrets.token_urlsafe(12)
        registration = upsert_registration(
            account,
            cuid,
            name=adapter.get_display_name(user),
            image_url=image,
            ct_account_id=params.ct_account_id or "",
            ct_id=params.ct_id or "",
            device_id=device_id,
        )
        session_key = request.session.session_key
        body = session_body(
            request,
            account,
            registration,
            device_id,
            params.ringtone,
            verified=True,
            sid=tokens.session_hash(session_key) if session_key else "",
            user_pk=user.pk,
        )
        return Response(body)
