"""System checks (``manage.py check``). Each id is listed in ``docs/checks.md``."""

from __future__ import annotations

import importlib.util
import math
import re
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.utils.module_loading import import_string

from .conf import DEFAULTS, user_settings
from .ice import is_turn_url, server_urls

_PROCESS_LOCAL_CACHES = (
    "django.core.cache.backends.locmem.LocMemCache",
    "django.core.cache.backends.dummy.DummyCache",
    "django.core.cache.backends.filebased.FileBasedCache",
)
_IN_MEMORY_LAYER = "channels.layers.InMemoryChannelLayer"


def _layer_backend() -> str | None:
    layers = getattr(settings, "CHANNEL_LAYERS", None) or {}
    return (layers.get("default") or {}).get("BACKEND")


def _cache_backend() -> str:
    return (settings.CACHES.get("default") or {}).get("BACKEND", "")


def _is_redis_layer(backend: str | None) -> bool:
    return bool(backend) and backend.startswith("channels_redis.")


def _is_ice_server(server: Any) -> bool:
    """A dict whose ``urls`` is a URL string or a non-empty list of them."""
    if not isinstance(server, dict):
        return False
    urls = server.get("urls")
    if isinstance(urls, str):
        return bool(urls)
    return (
        isinstance(urls, list | tuple)
        and bool(urls)
        and all(isinstance(url, str) and url for url in urls)
    )


@register(Tags.compatibility)
def check_channels(app_configs: Any = None, **kwargs: Any) -> list:
    """E001/E002/W001: channels and daphne installed and wired up."""
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
    """E003/E004/W002/W003: presence and messages must be shared by every process."""
    problems = []
    layer = _layer_backend()
    cache = _cache_backend()
    if layer is None:
        problems.append(
            Error(
                "No default channel layer is configured; calls cannot be signaled.",
                hint="Set CHANNEL_LAYERS: channels_redis.core.RedisChannelLayer in production, "
                "channels.layers.InMemoryChannelLayer for a single process.",
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
    elif _is_redis_layer(layer) and cache in _PROCESS_LOCAL_CACHES:
        problems.append(
            Warning(
                "The channel layer is Redis but the default cache is process-local: each "
                "server process would keep its own idea of who is online.",
                hint="Use django.core.cache.backends.redis.RedisCache for CACHES['default'].",
                id="directcall.W002",
            )
        )
    if layer == _IN_MEMORY_LAYER and cache not in _PROCESS_LOCAL_CACHES:
        problems.append(
            Warning(
                "The default cache is shared between processes but the channel layer is "
                "in-memory: a caller and a callee on different processes cannot reach "
                "each other.",
                hint="Use channels_redis.core.RedisChannelLayer when running several processes.",
                id="directcall.W003",
            )
        )
    return problems


_RATE = re.compile(r"[1-9][0-9]*/(?:s|sec|second|m|min|minute|h|hour|d|day)")
_THROTTLE_SCOPES = ("directcall_init_ip", "directcall_init_account")
_POSITIVE_INT_SECONDS = ("RING_TIMEOUT", "TURN_TTL", "TOKEN_TTL")
_POSITIVE_NUMBERS = (
    "PRESENCE_TTL",
    "RECONNECT_GRACE",
    "SWEEP_INTERVAL",
    "AUTH_TIMEOUT",
    "IDLE_TIMEOUT",
    "FLOOD_RATE",
)
_POSITIVE_INTS = ("MAX_FRAME_BYTES", "FLOOD_BURST")


def _is_positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_positive_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _is_websocket_url(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("ws", "wss") and bool(parts.netloc) and value == value.strip()


def _value_problems(conf: dict[str, Any], throttle_rates: Any) -> list[str]:
    """What is wrong with the values of ``conf`` (ICE_SERVERS aside), one line each."""
    problems = []
    for key in _POSITIVE_INT_SECONDS:
        if not _is_positive_int(conf[key]):
            problems.append(
                f"DIRECTCALL['{key}'] must be a positive whole number of seconds, "
                f"not {conf[key]!r}."
            )
    value = conf["MAX_CALL_DURATION"]
    if value is not None and not _is_positive_int(value):
        problems.append(
            "DIRECTCALL['MAX_CALL_DURATION'] must be None or a positive whole number of "
            f"seconds, not {value!r}."
        )
    for key in _POSITIVE_NUMBERS:
        if not _is_positive_number(conf[key]):
            problems.append(f"DIRECTCALL['{key}'] must be a positive number, not {conf[key]!r}.")
    for key in _POSITIVE_INTS:
        if not _is_positive_int(conf[key]):
            problems.append(f"DIRECTCALL['{key}'] must be a positive integer, not {conf[key]!r}.")
    if conf["TURN_SECRET"] is not None and not isinstance(conf["TURN_SECRET"], str):
        # Never echo the value: it is (meant to be) a secret.
        problems.append("DIRECTCALL['TURN_SECRET'] must be a string or None.")
    value = conf["WEBSOCKET_URL"]
    if value is not None and not _is_websocket_url(value):
        problems.append(
            f"DIRECTCALL['WEBSOCKET_URL'] must be None or a ws:// or wss:// URL, not {value!r}."
        )
    value = conf["CALL_RATE"]
    if value is not None and not (isinstance(value, str) and _RATE.fullmatch(value)):
        problems.append(
            f"DIRECTCALL['CALL_RATE'] must be None or a rate such as '20/min', not {value!r}."
        )
    if conf["ICE_TRANSPORT_POLICY"] not in ("all", "relay"):
        problems.append(
            "DIRECTCALL['ICE_TRANSPORT_POLICY'] must be 'all' or 'relay', "
            f"not {conf['ICE_TRANSPORT_POLICY']!r}."
        )
    if not isinstance(conf["ADAPTER"], str):
        problems.append(f"DIRECTCALL['ADAPTER'] must be a dotted path, not {conf['ADAPTER']!r}.")
    else:
        try:
            from .adapter import DefaultCallAdapter

            adapter_class = import_string(conf["ADAPTER"])
            if not (
                isinstance(adapter_class, type) and issubclass(adapter_class, DefaultCallAdapter)
            ):
                problems.append(
                    f"DIRECTCALL['ADAPTER'] {conf['ADAPTER']!r} is not a subclass of "
                    "directcall.adapter.DefaultCallAdapter."
                )
        except ImportError:
            problems.append(f"DIRECTCALL['ADAPTER'] {conf['ADAPTER']!r} cannot be imported.")
    value = conf["SESSION_ACCOUNT"]
    if value is not None and not isinstance(value, str):
        problems.append(
            f"DIRECTCALL['SESSION_ACCOUNT'] must be None or an account id, not {value!r}."
        )
    if not isinstance(conf["WEBSOCKET_PATH"], str):
        problems.append(
            f"DIRECTCALL['WEBSOCKET_PATH'] must be a string, not {conf['WEBSOCKET_PATH']!r}."
        )
    if not isinstance(throttle_rates, dict):
        problems.append(
            f"DIRECTCALL['THROTTLE_RATES'] must be a dict of scope to rate, not {throttle_rates!r}."
        )
        return problems
    for scope, rate in throttle_rates.items():
        if scope not in _THROTTLE_SCOPES:
            problems.append(
                f"DIRECTCALL['THROTTLE_RATES'] has an unknown scope {scope!r} "
                f"(known: {', '.join(_THROTTLE_SCOPES)})."
            )
        elif rate is not None and not (isinstance(rate, str) and _RATE.fullmatch(rate)):
            problems.append(
                f"DIRECTCALL['THROTTLE_RATES'][{scope!r}] must be None or a rate such as "
                f"'60/min', not {rate!r}."
            )
    return problems


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
    """E005/E006/E007/W004/W005/W006: the DIRECTCALL dict is well-formed and consistent."""
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
    # Merged here rather than with get_settings(), which cannot merge a THROTTLE_RATES
    # that is not a dict.
    conf = {**DEFAULTS, **user}
    for message in _value_problems(conf, user.get("THROTTLE_RATES", {})):
        problems.append(Error(message, hint="See docs/settings.md.", id="directcall.E006"))
    servers = conf["ICE_SERVERS"]
    if not isinstance(servers, list | tuple) or not all(_is_ice_server(s) for s in servers):
        problems.append(
            Error(
                "DIRECTCALL['ICE_SERVERS'] must be a list of RTCIceServer dicts with 'urls'.",
                hint='e.g. [{"urls": ["stun:stun.example.org:3478"]}]',
                id="directcall.E007",
            )
        )
        # W004-W006 are about the servers' contents: nothing sensible to say about them.
        return problems
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
                hint="Configure at least a STUN server, and a TURN server for strict networks.",
                id="directcall.W006",
            )
        )
    return problems
