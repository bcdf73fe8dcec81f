"""The calls API (docs/api.md#calls-api): call records for the host's users and servers.

- ``GET v1/me/calls`` — the logged-in user's own calls (Django session), newest first,
  with the other party's display name.
- ``GET v1/calls`` — the account's calls, for the host's servers (server key), filtered
  by ``cuid``, ``status`` and a ``since``/``until`` range of when calls were placed;
  ``GET v1/calls/{id}``; ``GET v1/registrations/{cuid}``.

Lists are cursor-paginated, newest first (stable while new calls come in). Every query
starts from the authenticated account (or the user's registration in the session
account): nothing of another account can be named, an id of another account is a 404.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import generics
from rest_framework.authentication import SessionAuthentication
from rest_framework.pagination import CursorPagination
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request

from .. import errors
from ..adapter import get_adapter
from ..errors import DirectCallError
from ..models import Call, CallStatus, Registration
from ..validation import is_valid_cuid
from .auth import HasServerKey, ServerKeyAuthentication
from .records import CallSerializer, MyCallSerializer, RegistrationSerializer
from .serializers import ErrorSerializer
from .throttling import ApiIPThrottle, ApiKeyThrottle, ApiUserThrottle
from .views import DirectCallAPIView


class NewestFirst(CursorPagination):
    """Newest first, ``limit`` per page (1–200, default 50), an opaque ``cursor`` for the next.

    A ``limit`` that is no whole number in that range is refused (DRF would quietly use
    the default instead).
    """

    ordering = ("-created_at", "-id")
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200

    def get_page_size(self, request: Request) -> int:
        value = request.query_params.get(self.page_size_query_param)
        if value is None:
            return self.page_size
        if not (value.isascii() and value.isdigit() and 1 <= int(value) <= self.max_page_size):
            raise DirectCallError(errors.INVALID_PARAMETERS, "Invalid parameters: limit.")
        return int(value)


LIMIT = OpenApiParameter(
    "limit",
    {"type": "integer", "minimum": 1, "maximum": NewestFirst.max_page_size},
    description="Calls per page (default 50)",
)


def _errors(*extra: tuple[int, str]) -> dict[int, OpenApiResponse]:
    """The refusals every calls API operation may answer, plus ``extra``."""
    documented = {
        400: "ERR_INVALID_PARAMETERS (a query parameter breaks its rule; the message says which)",
        404: "ERR_NOT_FOUND (no such call or cuid in this account, or a bad cursor)",
        405: "ERR_METHOD_NOT_ALLOWED",
        406: "ERR_INVALID_PARAMETERS (the Accept header excludes JSON)",
        429: "ERR_RATE_LIMITED",
        503: "ERR_SERVICE_UNAVAILABLE (Redis or the database is unreachable; retry after "
        "Retry-After seconds)",
    }
    documented.update(dict(extra))
    return {
        status: OpenApiResponse(ErrorSerializer, description=text)
        for status, text in sorted(documented.items())
    }


SERVER_REFUSALS = (401, "ERR_INVALID_CREDENTIALS (no server key, or a wrong or revoked one)")
USER_REFUSALS = (403, "ERR_NOT_SIGNED_IN (no Django login)")


class CallsAPIView(DirectCallAPIView, generics.GenericAPIView):
    """JSON, ``{code, message}`` refusals; the per-IP throttle before authentication."""

    invalid_request_code = errors.INVALID_PARAMETERS

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        """Count the request per IP first, so that wrong keys are throttled too."""
        throttle = ApiIPThrottle()
        if not throttle.allow_request(request, self):
            self.throttled(request, throttle.wait())
        super().initial(request, *args, **kwargs)


class ServerView(CallsAPIView):
    """Authenticated with the account's server key; ``request.auth`` is the account."""

    authentication_classes = [ServerKeyAuthentication]
    permission_classes = [HasServerKey]
    throttle_classes = [ApiKeyThrottle]


# -- the logged-in user's calls -------------------------------------------------------------


class MyCallsView(CallsAPIView, generics.ListAPIView):
    """The logged-in user's calls in the session account, newest first."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = [ApiUserThrottle]
    serializer_class = MyCallSerializer
    pagination_class = NewestFirst

    @extend_schema(
        operation_id="directcall_my_calls",
        summary="The logged-in user's calls, newest first",
        parameters=[LIMIT],
        responses={200: MyCallSerializer(many=True), **_errors(USER_REFUSALS)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        """A page of the user's calls; `next` holds the URL of the following page."""
        return self.list(request, *args, **kwargs)

    def _registration_pk(self) -> int | None:
        adapter = get_adapter()
        account = adapter.get_account(self.request)
        cuid = adapter.get_cuid(self.request.user)
        return (
            Registration.objects.filter(account=account, cuid=cuid)
            .values_list("pk", flat=True)
            .first()
        )

    def get_queryset(self) -> QuerySet[Call]:
        pk = self._registration_pk()
        self._pk = pk
        if pk is None:
            return Call.objects.none()
        return Call.objects.filter(Q(caller_id=pk) | Q(callee_id=pk)).select_related(
            "caller", "callee"
        )

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "registration_pk": getattr(self, "_pk", None)}


# -- the host's servers ---------------------------------------------------------------------


def _parse_moment(name: str, value: str) -> Any:
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        if day is not None:
            moment = timezone.make_aware(
                timezone.datetime(day.year, day.month, day.day), timezone.get_current_timezone()
            )
    if moment is None:
        raise ValueError(name)
    if timezone.is_naive(moment):
        moment = timezone.make_aware(moment, timezone.get_current_timezone())
    return moment


def call_filters(params: Any) -> Q:
    """The ``Q`` of the list's query parameters; raise ERR_INVALID_PARAMETERS naming the bad."""
    query, bad = Q(), []
    cuid = params.get("cuid")
    if cuid is not None:
        if is_valid_cuid(cuid):
            query &= Q(caller__cuid=cuid) | Q(callee__cuid=cuid)
        else:
            bad.append("cuid")
    status = params.get("status")
    if status is not None:
        wanted = status.split(",")
        if wanted and all(value in CallStatus.values for value in wanted):
            query &= Q(status__in=wanted)
        else:
            bad.append("status")
    for name, lookup in (("since", "created_at__gte"), ("until", "created_at__lt")):
        value = params.get(name)
        if value is not None:
            try:
                query &= Q(**{lookup: _parse_moment(name, value)})
            except (ValueError, OverflowError):
                bad.append(name)
    if bad:
        raise DirectCallError(errors.INVALID_PARAMETERS, f"Invalid parameters: {', '.join(bad)}.")
    return query


class AccountCallsView(ServerView, generics.ListAPIView):
    """The account's calls, newest first, filtered."""

    serializer_class = CallSerializer
    pagination_class = NewestFirst

    @extend_schema(
        operation_id="directcall_calls",
        summary="The account's calls, newest first (server key)",
        parameters=[
            OpenApiParameter(
                "cuid", OpenApiTypes.STR, description="Calls this cuid placed or received"
            ),
            OpenApiParameter(
                "status",
                OpenApiTypes.STR,
                description="A status, or several separated by commas: "
                + ", ".join(CallStatus.values),
            ),
            OpenApiParameter(
                "since",
                OpenApiTypes.STR,
                description="Calls placed at or after this moment: an ISO 8601 date-time "
                "(without a zone: the site's time zone) or a date (its midnight)",
            ),
            OpenApiParameter(
                "until",
                OpenApiTypes.STR,
                description="Calls placed before this moment (the same forms as since)",
            ),
            LIMIT,
        ],
        responses={200: CallSerializer(many=True), **_errors(SERVER_REFUSALS)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        """A page of the account's calls; `next` holds the URL of the following page."""
        return self.list(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[Call]:
        filters = call_filters(self.request.query_params)
        return (
            Call.objects.filter(account=self.request.auth)
            .filter(filters)
            .select_related("account", "caller", "callee")
        )


class AccountCallView(ServerView, generics.RetrieveAPIView):
    """One call of the account, by id."""

    serializer_class = CallSerializer
    lookup_url_kwarg = "call_id"

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "call_id", OpenApiTypes.UUID, OpenApiParameter.PATH, description="The call's id"
            )
        ],
        operation_id="directcall_call",
        summary="One call of the account (server key)",
        responses={200: CallSerializer, **_errors(SERVER_REFUSALS)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        """The call, or 404 when this account has no call with that id."""
        return self.retrieve(request, *args, **kwargs)

    def get_object(self) -> Call:
        try:
            call_id = uuid.UUID(self.kwargs["call_id"])
        except ValueError:
            call_id = None
        call = (
            Call.objects.filter(account=self.request.auth, pk=call_id)
            .select_related("account", "caller", "callee")
            .first()
            if call_id
            else None
        )
        if call is None:
            raise DirectCallError(errors.NOT_FOUND, "No such call in this account.")
        return call


class RegistrationView(ServerView, generics.RetrieveAPIView):
    """The registration of a cuid in the account."""

    serializer_class = RegistrationSerializer

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "cuid",
                {"type": "string", "pattern": "^[A-Za-z0-9_]{5,50}$"},
                OpenApiParameter.PATH,
                description="The cuid",
            )
        ],
        operation_id="directcall_registration",
        summary="The registration of a cuid (server key)",
        responses={200: RegistrationSerializer, **_errors(SERVER_REFUSALS)},
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Any:
        """The cuid's registration, or 404 when it never signed in to this account."""
        return self.retrieve(request, *args, **kwargs)

    def get_object(self) -> Registration:
        cuid = self.kwargs["cuid"]
        registration = None
        if is_valid_cuid(cuid):
            registration = (
                Registration.objects.filter(account=self.request.auth, cuid=cuid)
                .select_related("account")
                .first()
            )
        if registration is None:
            raise DirectCallError(errors.NOT_FOUND, "No such cuid in this account.")
        return registration
