"""Authentication of the host's servers on the calls API: the account's server key.

``Authorization: Bearer dcsk_<prefix>.<secret>``. The prefix finds the account, the
secret is compared with the stored hash in constant time. Not the API key: that one is in
every page that calls ``initDirectCall``. The key is never logged, only the prefix.
"""

from __future__ import annotations

import logging
import secrets
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission

from ..models import Account, hash_api_key_secret, split_server_key

logger = logging.getLogger("directcall.api")

_DUMMY_HASH = hash_api_key_secret("directcall-no-such-server-key")


class InvalidServerKey(exceptions.AuthenticationFailed):
    """A missing, malformed, unknown or revoked server key, or an inactive account (401)."""

    default_detail = "The server key is missing or incorrect."


class ServerPrincipal:
    """``request.user`` of a request authenticated with a server key: the account's servers."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, account: Account) -> None:
        self.account = account
        self.pk = None

    def __str__(self) -> str:
        return f"server of {self.account.account_id}"


class ServerKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer <server key>``; ``request.auth`` is the Account."""

    keyword = "Bearer"

    def authenticate(self, request: Any) -> tuple[ServerPrincipal, Account]:
        """The account whose server key this is; raise InvalidServerKey otherwise."""
        header = get_authorization_header(request).split()
        if len(header) != 2 or header[0].lower() != self.keyword.lower().encode():
            raise InvalidServerKey("Send Authorization: Bearer <server key>.")
        try:
            key = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise InvalidServerKey() from None
        prefix, secret = split_server_key(key)
        account = Account.objects.filter(server_key_prefix=prefix).first() if prefix else None
        if account is None:
            secrets.compare_digest(hash_api_key_secret(secret), _DUMMY_HASH)
            reason = "unknown key"
        elif not account.check_server_key(secret):
            reason = "wrong key"
        elif not account.is_active:
            reason = "inactive account"
        else:
            return ServerPrincipal(account), account
        # The prefix only (it names the key, it does not open anything); never the key.
        logger.warning("calls API refused a server key (prefix %r): %s", prefix[:16], reason)
        raise InvalidServerKey()

    def authenticate_header(self, request: Any) -> str:
        """What a 401 asks for (``WWW-Authenticate``)."""
        return self.keyword


class HasServerKey(BasePermission):
    """The request was authenticated with a server key."""

    def has_permission(self, request: Any, view: Any) -> bool:
        return isinstance(request.auth, Account)


class ServerKeyScheme(OpenApiAuthenticationExtension):
    """The server key in the OpenAPI schema: an HTTP bearer scheme."""

    target_class = ServerKeyAuthentication
    name = "serverKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "The account's server key, dcsk_<prefix>.<secret> (docs/api.md).",
        }
