"""Which page origins may open the signaling socket, and sign in under which account.

Two checks, because the socket's account is known only once its ``auth`` frame arrives:

1. :class:`DirectCallOriginValidator`, in the host's ASGI router, at the handshake: the
   ``Origin`` must be the site's own (the scheme, host and port the socket was opened on,
   with a host in ``ALLOWED_HOSTS``), one of ``CSRF_TRUSTED_ORIGINS``, or on the allowed
   origins of an active account. Anything else is accepted only to be told why: an
   ``error`` frame ``ERR_ORIGIN_NOT_ALLOWED``, then close code 4010 (a refused handshake
   would reach the page as a bare 1006, which the SDK cannot tell from a network failure).
2. :func:`socket_origin_allowed`, at ``auth``: the site's own origins, or an origin that the
   token's account allows (:func:`origin_allowed`).

Origins are compared as (scheme, host, port), the port made explicit (``http://x`` is
``http://x:80``): ``http://localhost:9999`` is not ``http://localhost:8000``, and
``https://app.example.com`` is not ``http://app.example.com``.

Usage (``mysite/asgi.py``)::

    from directcall.origins import DirectCallOriginValidator
    application = ProtocolTypeRouter({
        "http": django_asgi_app,
        "websocket": DirectCallOriginValidator(URLRouter(websocket_urlpatterns)),
    })
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.http.request import split_domain_port, validate_host
from django.utils.http import is_same_domain

from . import errors

if TYPE_CHECKING:
    from .models import Account

logger = logging.getLogger("directcall.origins")

#: Close code of a socket whose page origin is refused (docs/protocol.md).
CLOSE_ORIGIN_NOT_ALLOWED = 4010

_DEFAULT_PORTS = {"http": 80, "https": 443}
# What Django's HttpRequest.get_host() allows with DEBUG on and ALLOWED_HOSTS empty.
_DEBUG_HOSTS = [".localhost", "127.0.0.1", "[::1]"]


class Origin(NamedTuple):
    """A web origin with its port made explicit."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = _DEFAULT_PORTS.get(self.scheme)
        return f"{self.scheme}://{host}" + ("" if self.port == default else f":{self.port}")


def parse_origin(value: str | None) -> Origin | None:
    """``scheme://host[:port]`` (http or https) as an :class:`Origin`; None for anything else.

    ``null`` (sandboxed frames, ``file:`` pages), paths, user info and bad ports are no
    origin. A trailing ``/`` is tolerated, as in the accounts' allowed origins.
    """
    if not value or not isinstance(value, str):
        return None
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname or "@" in parts.netloc:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    return Origin(scheme, parts.hostname.lower(), port or _DEFAULT_PORTS[scheme])


def origin_allowed(account: Account, origin: str | None) -> bool:
    """Whether ``account``'s allowed origins admit ``origin`` (an empty list admits any).

    The comparison is exact on scheme, host and port. A non-empty list refuses a missing
    or malformed ``Origin``. This is the account half of the check; the site's own
    origins are admitted by :func:`socket_origin_allowed`.
    """
    entries = account.allowed_origins.split()
    if not entries:
        return True
    parsed = parse_origin(origin)
    return parsed is not None and parsed in {parse_origin(entry) for entry in entries}


# -- the site's own origins ------------------------------------------------------------------


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    values = [value for key, value in scope.get("headers", []) if key.lower() == name]
    if len(values) != 1:
        return None  # absent, or sent twice: no single answer to trust
    try:
        return values[0].decode("latin-1")
    except UnicodeDecodeError:  # pragma: no cover - latin-1 decodes every byte
        return None


def scope_origin(scope: dict[str, Any]) -> str | None:
    """The ``Origin`` header of a WebSocket scope (None if absent or repeated)."""
    return _header(scope, b"origin")


def _is_secure(scope: dict[str, Any]) -> bool:
    # As Django's HttpRequest.is_secure(): SECURE_PROXY_SSL_HEADER, when set and sent, decides.
    proxy_header = getattr(settings, "SECURE_PROXY_SSL_HEADER", None)
    if proxy_header:
        meta_name, secure_value = proxy_header
        name = meta_name.removeprefix("HTTP_").lower().replace("_", "-").encode("latin-1")
        value = _header(scope, name)
        if value is not None:
            return value.split(",", 1)[0].strip() == secure_value
    return scope.get("scheme") in ("wss", "https")


def site_origin(scope: dict[str, Any]) -> Origin | None:
    """The origin of the site the socket was opened on, if its host is in ``ALLOWED_HOSTS``.

    Built the way Django builds it for its CSRF origin check: ``https`` if the connection
    is secure (``SECURE_PROXY_SSL_HEADER`` honoured), and the ``Host`` header
    (``X-Forwarded-Host`` with ``USE_X_FORWARDED_HOST``), port included.
    """
    host = None
    if getattr(settings, "USE_X_FORWARDED_HOST", False):
        host = _header(scope, b"x-forwarded-host")
    host = host or _header(scope, b"host")
    if not host:
        return None
    domain, _port = split_domain_port(host)
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = _DEBUG_HOSTS
    if not domain or not validate_host(domain, allowed_hosts):
        return None
    return _site_origin(f"{'https' if _is_secure(scope) else 'http'}://{host}")


@functools.lru_cache(maxsize=64)
def _site_origin(value: str) -> Origin | None:
    # One Origin per site host, shared by its connections (each kept its own).
    return parse_origin(value)


def _trusted(origin: Origin, trusted: Iterable[str]) -> bool:
    """Whether ``CSRF_TRUSTED_ORIGINS`` (Django's syntax, ``https://*.example.com``) has it."""
    for entry in trusted:
        if "*" not in entry:
            if parse_origin(entry) == origin:
                return True
            continue
        parts = urlsplit(entry)
        if parts.scheme.lower() != origin.scheme:
            continue
        # As Django: the Origin's netloc (a port only when not the default) against the
        # entry's netloc without its "*" (".example.com" is example.com and its subdomains).
        netloc = str(origin).split("://", 1)[1]
        if is_same_domain(netloc, parts.netloc.lstrip("*").lower()):
            return True
    return False


def is_own_origin(origin: str | None, scope: dict[str, Any]) -> bool:
    """Whether ``origin`` is the site's own: the socket's scheme, host and port, or trusted.

    Trusted: an entry of ``CSRF_TRUSTED_ORIGINS``, which a site sets for the origins it
    serves its own pages from (Django's CSRF check accepts the same ones).
    """
    parsed = parse_origin(origin)
    if parsed is None:
        return False
    return parsed == site_origin(scope) or _trusted(
        parsed, getattr(settings, "CSRF_TRUSTED_ORIGINS", [])
    )


def socket_origin_allowed(account: Account, scope: dict[str, Any]) -> bool:
    """At ``auth``: whether this socket's page may sign in under ``account``.

    The site's own origins always may (its pages use the session account whatever that
    account's list says); other origins only if the account allows them.
    """
    origin = scope_origin(scope)
    return is_own_origin(origin, scope) or origin_allowed(account, origin)


# -- the origins that accounts list ----------------------------------------------------------


class ListedOrigins:
    """The allowed origins of every active account, read from the database now and then.

    The handshake check needs the union over all accounts (the account is unknown until
    ``auth``); a query per connection would cost every socket a database round trip.
    A listed origin is served from memory for ``ttl`` seconds. An origin not in the copy
    makes it read again, at most once every ``recheck`` seconds, so that a newly listed
    origin works within a moment while a flood of refused sockets costs at most one query
    per ``recheck``. Saving or deleting an account clears this process's copy; an origin
    removed in another process stays admitted here for up to ``ttl`` seconds (the
    account check at ``auth`` reads the account itself). ``clock`` is injectable for tests.
    """

    def __init__(
        self, ttl: float = 10.0, recheck: float = 0.5, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.recheck = recheck
        self.clock = clock
        self._origins: frozenset[Origin] = frozenset()
        self._loaded_at = float("-inf")

    def forget(self) -> None:
        """Read the accounts again at the next check."""
        self._loaded_at = float("-inf")

    def _answer(self, origin: Origin) -> bool | None:
        """The answer from memory, or None when the accounts must be read again."""
        age = self.clock() - self._loaded_at
        if age < self.ttl and (origin in self._origins or age < self.recheck):
            return origin in self._origins
        return None

    def load(self) -> frozenset[Origin]:
        """Read the accounts now (synchronous; the database)."""
        from .models import Account

        lists = (
            Account.objects.filter(is_active=True)
            .exclude(allowed_origins="")
            .values_list("allowed_origins", flat=True)
        )
        origins = {parse_origin(entry) for text in lists for entry in text.split()}
        origins.discard(None)
        self._origins = frozenset(origins)
        self._loaded_at = self.clock()
        return self._origins

    def contains(self, origin: Origin) -> bool:
        """Whether an active account lists ``origin`` (synchronous)."""
        answer = self._answer(origin)
        return answer if answer is not None else origin in self.load()

    async def acontains(self, origin: Origin) -> bool:
        """Whether an active account lists ``origin``; the database only when needed."""
        answer = self._answer(origin)
        if answer is not None:
            return answer
        return origin in await database_sync_to_async(self.load)()


listed_origins = ListedOrigins()


@receiver(post_save, sender="directcall.Account", dispatch_uid="directcall.origins.forget")
@receiver(post_delete, sender="directcall.Account", dispatch_uid="directcall.origins.forget_del")
def _forget_listed_origins(**kwargs: Any) -> None:
    listed_origins.forget()


# -- the ASGI middleware ---------------------------------------------------------------------


class DirectCallOriginValidator:
    """Let a WebSocket through when its page's origin is the site's own or an account's.

    Replaces Channels' ``AllowedHostsOriginValidator``, which knows only ``ALLOWED_HOSTS``
    and compares hosts without scheme or port. A refused socket gets an ``error`` frame
    (``ERR_ORIGIN_NOT_ALLOWED``) and close code 4010, so the SDK can say why.
    """

    # An ASGI 3 application, though __call__ is not a coroutine function (see __call__).
    _asgi_single_callable = True

    def __init__(self, application: Callable, origins: ListedOrigins | None = None) -> None:
        self.application = application
        self.origins = origins or listed_origins

    def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> Awaitable[Any]:
        """The application's own coroutine for the site's own origins: no frame of this
        validator stays on the stack while the connection lives (about 0.4 KiB of each idle
        connection's memory); any other origin is checked in :meth:`_check`."""
        if scope["type"] != "websocket":
            raise ValueError("DirectCallOriginValidator is for WebSocket connections only.")
        origin = scope_origin(scope)
        if is_own_origin(origin, scope):
            return self.application(scope, receive, send)
        return self._check(origin, scope, receive, send)

    async def _check(
        self, origin: str | None, scope: dict[str, Any], receive: Callable, send: Callable
    ) -> Any:
        parsed = parse_origin(origin)
        if parsed is not None and await self.origins.acontains(parsed):
            return await self.application(scope, receive, send)
        client = (scope.get("client") or ["?"])[0]
        logger.info("socket refused: origin %r is not allowed (client %s)", origin, client)
        await refuse(receive, send)
        return None


async def refuse(receive: Callable, send: Callable) -> None:
    """Accept the handshake, say ``ERR_ORIGIN_NOT_ALLOWED``, close with 4010."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return  # the client went away before its handshake was answered
    error = errors.DirectCallError(
        errors.ORIGIN_NOT_ALLOWED,
        "This page's origin may not open the signaling socket: it is not the site's own "
        "and no active account lists it in its allowed origins.",
    )
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": json.dumps({"type": "error", **error.as_dict()})})
    await send({"type": "websocket.close", "code": CLOSE_ORIGIN_NOT_ALLOWED})
