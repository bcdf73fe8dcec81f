"""System checks (``manage.py check``). Each id is listed in ``docs/checks.md``."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.utils.module_loading import import_string

from .adapter import DefaultCallAdapter
from .conf import DEFAULTS, SettingError, convert, user_settings
from .ice import is_turn_url, server_urls

_PROCESS_LOCAL_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
    "django.core.cache.backends.filebased.FileBasedCache",
)
_IN_MEMORY_LAYERS = (
    "channels.layers.InMemoryChannelLayer",
    "directcall.layers.InMemoryChannelLayer",
)


def _layer_backend() -> str | None:
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    return (layers.get("default") or {}).get("BACKEND")


def _cache_backend() -> str:
    return (settings.CACHES.get("default") or {}).get("BACKEND", "")


def process_local_cache() -> str | None:
    """The default cache's backend when each process has its own (so presence, which
    lives there, is not shared), else None."""
    backend = _cache_backend()
    return backend if backend in _PROCESS_LOCAL_CACHES else None


def _is_redis_layer(backend: str | None) -> bool:
    """channels_redis's layers (they read Redis through redis-py)."""
    return bool(backend) and backend.startswith("channels_redis.")


def _is_shared_layer(backend: str | None) -> bool:
    """A layer that reaches every process: channels_redis's, or directcall's on Redis."""
    return _is_redis_layer(backend) or backend == "directcall.redislayer.RedisPubSubLayer"


@register(Tags.compatibility)
def check_channels(app_configs: Any = None, **kwargs: Any) -> list:
    """E001/E002/W001/W011: channels and daphne installed and wired up."""
    problems = []
    if importlib.util.find_spec("channels") is None:
        problems.append(
            Error(
                "The 'channels' package is not installed.",
                hint="pip install channels daphne (django-directcall depends on them).",
                id="directcall.E001",
            )
        )
    if not getattr(settings, "ASGI_APPLICATION", None):
        problems.append(
            Error(
                "ASGI_APPLICATION is not set, so no WebSocket signaling can be served.",
                hint="Set ASGI_APPLICATION to your asgi module's 'application' and route "
                "directcall.routing.websocket_urlpatterns there (see README.md).",
                id="directcall.E002",
            )
        )
    problem = _asgi_websocket_problem()
    if problem:
        problems.append(
            Warning(
                problem,
                hint="Wrap it in channels.routing.ProtocolTypeRouter with a 'websocket' entry "
                "routing directcall.routing.websocket_urlpatterns (docs/integration.md, step 4).",
                id="directcall.W011",
            )
        )
    if "daphne" not in settings.INSTALLED_APPS:
        problems.append(
            Warning(
                "'daphne' is not in INSTALLED_APPS: 'manage.py runserver' will not serve "
                "WebSockets.",
                hint="Put 'daphne' first in INSTALLED_APPS, or serve the ASGI application "
                "with daphne or uvicorn.",
                id="directcall.W001",
            )
        )
    return problems


@register(Tags.caches)
def check_shared_state(app_configs: Any = None, **kwargs: Any) -> list:
    """E003/E004/W002/W003/W012: presence and messages shared by every process, and kept."""
    problems = []
    layer = _layer_backend()
    cache = _cache_backend()
    if layer is None:
        problems.append(
            Error(
                "No default channel layer is configured; calls cannot be signaled.",
                hint='For one process: CHANNEL_LAYERS = {"default": {"BACKEND": '
                '"directcall.layers.InMemoryChannelLayer"}}; with several, '
                "directcall.redislayer.RedisPubSubLayer on Redis (docs/deployment.md).",
                id="directcall.E003",
            )
        )
    if cache == "django.core.cache.backends.dummy.DummyCache":
        problems.append(
            Error(
                "The default cache is DummyCache; presence (who is online) cannot be stored.",
                hint="Use Redis (django.core.cache.backends.redis.RedisCache) or, for one "
                "process, LocMemCache.",
                id="directcall.E004",
            )
        )
    elif _is_shared_layer(layer) and cache in _PROCESS_LOCAL_CACHES:
        problems.append(
            Warning(
                "The channel layer is Redis but the default cache is process-local: each "
                "server process would keep its own idea of who is online.",
                hint="Use django.core.cache.backends.redis.RedisCache for CACHES['default'].",
                id="directcall.W002",
            )
        )
    entries = _locmem_max_entries()
    if entries is not None and entries < LOCMEM_MIN_ENTRIES:
        problems.append(
            Warning(
                f"The default cache is LocMemCache with MAX_ENTRIES {entries}: when full it "
                "culls a third of its entries, presence among them, and people who are "
                "signed in show offline and cannot be called.",
                hint='Set CACHES["default"]["OPTIONS"] = {"MAX_ENTRIES": 100_000} (well above '
                "the number of users), or use Redis.",
                id="directcall.W012",
            )
        )
    if layer in _IN_MEMORY_LAYERS and cache not in _PROCESS_LOCAL_CACHES:
        problems.append(
            Warning(
                "The default cache is shared between processes but the channel layer is "
                "in-memory: a caller and a callee on different processes cannot reach "
                "each other.",
                hint="Use directcall.redislayer.RedisPubSubLayer when running several processes.",
                id="directcall.W003",
            )
        )
    return problems


# LocMemCache's own default is 300: presence, rate-limit and throttle counters share it.
LOCMEM_MIN_ENTRIES = 1000


def _locmem_max_entries() -> int | None:
    """The default cache's MAX_ENTRIES when it is LocMemCache (Django's default: 300)."""
    if _cache_backend() != "django.core.cache.backends.locmem.LocMemCache":
        return None
    config = settings.CACHES.get("default") or {}
    try:
        return int((config.get("OPTIONS") or {}).get("MAX_ENTRIES", 300))
    except (TypeError, ValueError):
        return None  # Django's own cache code reports it


def _asgi_websocket_problem() -> str | None:
    """Why ``ASGI_APPLICATION`` surely serves no WebSocket, or None (also when unsure).

    Judged from the module's source, without importing it: importing a site's ``asgi.py``
    runs ``django.setup()`` again (logging configured anew) and whatever else it does,
    in every command that runs the checks. A module that builds its application with
    ``get_asgi_application()`` and never says ``websocket`` (``startproject``'s, or a
    ``ProtocolTypeRouter`` with "http" alone) serves no WebSocket; a module that takes its
    application from elsewhere is not judged.
    """
    path = getattr(settings, "ASGI_APPLICATION", None)
    module_name = path.rpartition(".")[0] if isinstance(path, str) else ""
    if not module_name:
        return None
    try:
        spec = importlib.util.find_spec(module_name)
        source = Path(spec.origin).read_text(encoding="utf-8") if spec and spec.origin else ""
    except (ImportError, ValueError, OSError, UnicodeDecodeError):
        return None
    if "get_asgi_application" not in source or "websocket" in source.lower():
        return None
    return (
        f"ASGI_APPLICATION {path!r} serves HTTP alone (its module builds it with "
        "get_asgi_application() and routes no 'websocket'): the signaling socket would be "
        "answered with a server error and no page could sign in."
    )


def _adapter_problem(path: str) -> str | None:
    """Why the adapter's dotted path is unusable, or None."""
    try:
        adapter_class = import_string(path)
    except ImportError as error:
        return f"DIRECTCALL['ADAPTER'] {path!r} cannot be imported ({error})."
    if not (isinstance(adapter_class, type) and issubclass(adapter_class, DefaultCallAdapter)):
        return (
            f"DIRECTCALL['ADAPTER'] {path!r} is not a subclass of "
            "directcall.adapter.DefaultCallAdapter."
        )
    return None


def _redis_py_major() -> int:
    try:
        import redis

        return int(redis.__version__.split(".")[0])
    except (ImportError, ValueError, AttributeError):
        return 0


@register(Tags.compatibility)
def check_redis_socket_timeout(app_configs: Any = None, **kwargs: Any) -> list:
    """W007: redis-py 8's 5 s socket timeout kills idle channels_redis receivers."""
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    layer = layers.get("default") or {}
    if not _is_redis_layer(layer.get("BACKEND")) or _redis_py_major() < 8:
        return []
    hosts = (layer.get("CONFIG") or {}).get("hosts") or ["redis://localhost:6379"]
    exposed = [h for h in hosts if not (isinstance(h, dict) and "socket_timeout" in h)]
    if not exposed:
        return []
    return [
        Warning(
            "redis-py 8 times out socket reads after 5 s, the same time channels_redis blocks "
            "waiting for a message: a process that receives nothing for 5 s drops its "
            "WebSocket connections (redis/redis-py#4091).",
            hint='Give each host as {"address": URL, "socket_timeout": None} in '
            "CHANNEL_LAYERS['default']['CONFIG']['hosts'].",
            id="directcall.W007",
        )
    ]


@register()
def check_directcall_settings(app_configs: Any = None, **kwargs: Any) -> list:
    """E005-E007, W004-W006, W008: the DIRECTCALL dict is well-formed and consistent."""
    problems = []
    user = user_settings()
    unknown = sorted(set(user) - set(DEFAULTS))
    if unknown:
        problems.append(
            Error(
                f"Unknown DIRECTCALL setting(s): {', '.join(unknown)}.",
                hint="See docs/settings.md for the list of settings.",
                id="directcall.E005",
            )
        )
    conf = {**DEFAULTS, **user}
    ice_problems = []
    for key, default in DEFAULTS.items():
        try:
            convert(key, user.get(key, default))
        except SettingError as error:
            if key == "ICE_SERVERS":
                ice_problems.extend(error.messages)
            else:
                problems.extend(
                    Error(message, hint="See docs/settings.md.", id="directcall.E006")
                    for message in error.messages
                )
            continue
        if key == "ADAPTER":
            message = _adapter_problem(user.get(key, default))
            if message:
                problems.append(Error(message, hint="See docs/settings.md.", id="directcall.E006"))
    if ice_problems:
        problems.append(
            Error(
                ice_problems[0],
                hint='e.g. [{"urls": ["stun:stun.example.org:3478"]}]',
                id="directcall.E007",
            )
        )
        # W004-W008 are about the servers' contents: nothing sensible to say about them.
        return problems
    servers = conf["ICE_SERVERS"]
    turn_servers = [s for s in servers if any(is_turn_url(u) for u in server_urls(s))]
    if conf["TURN_SECRET"] and not turn_servers:
        problems.append(
            Warning(
                "DIRECTCALL['TURN_SECRET'] is set but ICE_SERVERS names no turn: or turns: URL.",
                hint='Add your TURN server, e.g. {"urls": ["turn:turn.example.org:3478"]}.',
                id="directcall.W004",
            )
        )
    if conf["ICE_TRANSPORT_POLICY"] == "relay" and not turn_servers:
        problems.append(
            Warning(
                "DIRECTCALL['ICE_TRANSPORT_POLICY'] is 'relay' but ICE_SERVERS names no TURN "
                "server: no call can connect.",
                hint="Add a turn: server (and TURN_SECRET), or use 'all'.",
                id="directcall.W008",
            )
        )
    uncredentialed = [s for s in turn_servers if "username" not in s]
    if uncredentialed and not conf["TURN_SECRET"]:
        problems.append(
            Warning(
                "A TURN server in ICE_SERVERS has no credentials and TURN_SECRET is not set.",
                hint="Set DIRECTCALL['TURN_SECRET'] to coturn's static-auth-secret.",
                id="directcall.W005",
            )
        )
    if not servers and not settings.DEBUG:
        problems.append(
            Warning(
                "DIRECTCALL['ICE_SERVERS'] is empty: calls between browsers behind different "
                "NATs will not connect.",
                hint='Set DIRECTCALL["ICE_SERVERS"], at least a STUN server, e.g. '
                '[{"urls": ["stun:stun.example.org:3478"]}], and a TURN server for strict '
                "networks (docs/settings.md, ICE_SERVERS).",
                id="directcall.W006",
            )
        )
    return problems


@register(Tags.database)
def check_identities(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list:
    """E008/W009: the session account takes verified identities; page accounts are named.

    A database check: run by ``migrate`` and ``check --database default``, not by plain
    ``check`` (it reads the accounts).
    """
    if not databases:
        return []
    from django.db import DatabaseError

    from .models import Account, Identity

    problems = []
    session_account = user_settings().get("SESSION_ACCOUNT")
    try:
        if isinstance(session_account, str) and session_account:
            identity = (
                Account.objects.filter(account_id=session_account)
                .values_list("identity", flat=True)
                .first()
            )
            if identity == Identity.PAGE:
                problems.append(
                    Error(
                        f"The session account {session_account!r} takes page identities: "
                        "anyone with its API key could sign in as any logged-in user of the "
                        "site, and v1/session refuses to serve it.",
                        hint=f"manage.py directcall_account identity {session_account} "
                        "verified (or set it in the admin). Give the key-mode pages an "
                        "account of their own.",
                        id="directcall.E008",
                    )
                )
        pages = list(
            Account.objects.filter(identity=Identity.PAGE, is_active=True)
            .order_by("account_id")
            .values_list("account_id", flat=True)[:6]
        )
    except DatabaseError:
        return problems  # not migrated yet: migrate runs the checks before migrating
    if pages:
        named = ", ".join(pages[:5]) + (", …" if len(pages) > 5 else "")
        problems.append(
            Warning(
                f"Active account(s) with page identities: {named}. Anyone who reads a page "
                "with such an account's API key can sign in as any of its users.",
                hint="Switch them to verified identities (user tokens or v1/session) once "
                "your pages send a userToken; see docs/security.md.",
                id="directcall.W009",
            )
        )
    return problems


def webhook_backend_problem() -> str | None:
    """Why the default task backend cannot deliver webhooks in the background, or None."""
    try:
        from django_tasks import task_backends

        backend = task_backends["default"]
    except Exception as error:  # an import or configuration error of TASKS
        return f"The default task backend cannot be loaded ({error})."
    name = f"{type(backend).__module__}.{type(backend).__qualname__}"
    if name.startswith("django_tasks.backends.immediate."):
        return (
            f"The default task backend ({name}) would send webhooks inside the request or "
            "socket handler that made the event (without TASKS, django-tasks uses it)."
        )
    if name.startswith("django_tasks.backends.dummy."):
        return f"The default task backend ({name}) never runs tasks: no webhook is sent."
    if not backend.supports_defer:
        return f"The default task backend ({name}) cannot defer tasks: no retry is made."
    return None


@register(Tags.database)
def check_webhook_tasks(app_configs: Any = None, databases: Any = None, **kwargs: Any) -> list:
    """W010: an active webhook endpoint, and no task backend that delivers in the background.

    A database check (it reads whether any endpoint is active), like E008/W009: a site
    without webhooks needs no task backend.
    """
    if not databases:
        return []
    problem = webhook_backend_problem()
    if problem is None:
        return []
    from django.db import DatabaseError

    from .webhooks.models import WebhookEndpoint

    try:
        if not WebhookEndpoint.objects.filter(is_active=True).exists():
            return []
    except DatabaseError:  # before migrate
        return []
    return [
        Warning(
            problem + " Webhook endpoints are active.",
            hint='Set TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}} '
            "and run `manage.py db_worker` (docs/webhooks.md).",
            id="directcall.W010",
        )
    ]
