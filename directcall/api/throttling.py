"""Throttles of the init endpoint: per client IP and per account, rates from DIRECTCALL."""

from __future__ import annotations

from rest_framework.throttling import SimpleRateThrottle

from ..conf import get_settings
from ..validation import is_valid_account_id


class _ConfiguredRateThrottle(SimpleRateThrottle):
    def get_rate(self) -> str | None:
        return get_settings()["THROTTLE_RATES"].get(self.scope)


class InitIPThrottle(_ConfiguredRateThrottle):
    """Init requests per client IP (``THROTTLE_RATES["directcall_init_ip"]``)."""

    scope = "directcall_init_ip"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}


class InitAccountThrottle(_ConfiguredRateThrottle):
    """Init requests per account id (``THROTTLE_RATES["directcall_init_account"]``)."""

    scope = "directcall_init_account"

    def get_cache_key(self, request, view) -> str | None:
        data = request.data
        account_id = data.get("accountId") if isinstance(data, dict) else None
        if not is_valid_account_id(account_id):
            return None
        return self.cache_format % {"scope": self.scope, "ident": account_id}
