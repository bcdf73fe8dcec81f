"""Throttles of the init endpoint: per client IP and per account, rates from DIRECTCALL."""

from __future__ import annotations

from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle

from ..caching import cache
from ..conf import Rate, get_settings, parse_rate


class _ConfiguredRateThrottle(SimpleRateThrottle):
    # The thread's cache backend, not DRF's ``default_cache`` (a backend per request's
    # context: with Redis, a new connection per request): directcall.caching.
    cache = cache

    def get_rate(self) -> str | None:
        return get_settings().THROTTLE_RATES.get(self.scope)

    def parse_rate(self, rate: str | None) -> Rate | tuple[None, None]:
        """DRF's ``(count, seconds)``, read with directcall's one rate grammar."""
        return (None, None) if rate is None else parse_rate(rate)


class InitIPThrottle(_ConfiguredRateThrottle):
    """Init requests per client IP (``THROTTLE_RATES["directcall_init_ip"]``).

    The client IP is ``REMOTE_ADDR``. Only when ``REST_FRAMEWORK["NUM_PROXIES"]`` is
    configured is ``X-Forwarded-For`` consulted (DRF's rules); otherwise a client could
    pick its own identity by sending that header.
    """

    scope = "directcall_init_ip"

    def get_ident(self, request) -> str | None:
        if api_settings.NUM_PROXIES is not None:
            return super().get_ident(request)
        return request.META.get("REMOTE_ADDR")

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class InitAccountThrottle(_ConfiguredRateThrottle):
    """Init requests per account (``THROTTLE_RATES["directcall_init_account"]``).

    Not a view-level throttle: the view checks it after the credentials, for the
    authenticated account only, so that wrong keys (anyone knows the public account id)
    cannot use up an account's budget. Guessing keys is limited by the per-IP throttle.
    """

    scope = "directcall_init_account"

    def __init__(self, account_id: str) -> None:
        super().__init__()
        self.account_id = account_id

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.account_id}


class ApiIPThrottle(InitIPThrottle):
    """Calls API requests per client IP (``THROTTLE_RATES["directcall_api_ip"]``).

    Checked before authentication (``CallsAPIView.initial``), so wrong keys count too.
    """

    scope = "directcall_api_ip"


class ApiKeyThrottle(_ConfiguredRateThrottle):
    """Calls API requests per account's server key (``THROTTLE_RATES["directcall_api_key"]``)."""

    scope = "directcall_api_key"

    def get_cache_key(self, request, view) -> str | None:
        account = request.auth
        if account is None:
            return None
        return self.cache_format % {"scope": self.scope, "ident": account.pk}


class ApiUserThrottle(_ConfiguredRateThrottle):
    """Calls API requests per logged-in user (``THROTTLE_RATES["directcall_api_user"]``)."""

    scope = "directcall_api_user"

    def get_cache_key(self, request, view) -> str | None:
        user = request.user
        if not user.is_authenticated:
            return None
        return self.cache_format % {"scope": self.scope, "ident": user.pk}
