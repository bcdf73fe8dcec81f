"""Throttles of the HTTP API: per client IP, per account, per key and per user, rates
from ``DIRECTCALL["THROTTLE_RATES"]``.

Fixed windows counted in the shared cache (:func:`directcall.caching.count`), as the
socket's rate limits are. DRF's ``SimpleRateThrottle`` keeps instead a list of every
request's time in the window under one cache key, read and written back whole by each
request: its cost grows with the rate (600 floats pickled twice per request at the
account's default budget), and two server processes that read the same list both write
it back, so one of the two requests is lost from the count.
"""

from __future__ import annotations

import time

from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from .. import errors
from ..caching import count
from ..conf import Rate, get_settings, parse_rate


class _ConfiguredRateThrottle(BaseThrottle):
    """At most ``THROTTLE_RATES[scope]`` requests per window; every request counts."""

    scope: str
    cache_format = "throttle_%(scope)s_%(ident)s"
    timer = staticmethod(time.time)

    def __init__(self) -> None:
        self._wait: float | None = None

    def get_cache_key(self, request, view) -> str | None:
        """The key of the client counted, or None to leave the request uncounted."""
        raise NotImplementedError

    def get_rate(self) -> Rate | None:
        rate = get_settings().THROTTLE_RATES.get(self.scope)
        return None if rate is None else parse_rate(rate)

    def allow_request(self, request, view) -> bool:
        rate = self.get_rate()
        key = None if rate is None else self.get_cache_key(request, view)
        if key is None:
            return True
        limit, window = rate
        now = self.timer()
        slot = int(now // window)
        if count(f"{key}:{slot}", window + 1) <= limit:
            return True
        self._wait = (slot + 1) * window - now
        return False

    def wait(self) -> float | None:
        """Seconds until this client's window ends (``Retry-After``), once refused."""
        return self._wait


class InitIPThrottle(_ConfiguredRateThrottle):
    """Init requests per client IP (``THROTTLE_RATES["directcall_init_ip"]``), all of them.

    A bound on the work one address can ask for. Every page view of a signed-in user is a
    request, and a school or an office sends all of its users' from one address, so the
    default is generous; new cuids have their own, stricter budget (below). The client IP
    is ``REMOTE_ADDR``. Only when ``REST_FRAMEWORK["NUM_PROXIES"]`` is configured is
    ``X-Forwarded-For`` consulted (DRF's rules); otherwise a client could pick its own
    identity by sending that header.
    """

    scope = "directcall_init_ip"

    def allow_request(self, request, view) -> bool:
        """Counted as every request; but a CORS preflight is let through when the counter
        cannot be reached. It does nothing but answer headers, and a browser cannot read a
        refused one (the page's request fails as a network error): the request after it
        gets the 503 with its ``Retry-After`` instead, which the page can read."""
        try:
            return super().allow_request(request, view)
        except Exception as exc:
            if request.method != "OPTIONS" or not errors.is_unavailable(exc):
                raise
            return True

    def get_ident(self, request) -> str | None:
        if api_settings.NUM_PROXIES is not None:
            return super().get_ident(request)
        return request.META.get("REMOTE_ADDR")

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class InitIPNewThrottle(InitIPThrottle):
    """New registrations per client IP (``THROTTLE_RATES["directcall_init_ip_new"]``).

    Not a view-level throttle: counted, like the account's budget below, only for a
    sign-in that would register a cuid the account does not know yet, so that one
    address cannot spend the account's budget on its own, and a returning user's sign-in
    never waits for it.
    """

    scope = "directcall_init_ip_new"


class InitAccountThrottle(_ConfiguredRateThrottle):
    """New registrations per account (``THROTTLE_RATES["directcall_init_account"]``).

    Not a view-level throttle: the view counts only a sign-in that passed every check and
    would register a cuid the account does not know yet. Anyone holding the page's key
    can use up this budget, so it stops new cuids only; a known cuid's sign-in (every page
    view of a returning user) never counts.
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
