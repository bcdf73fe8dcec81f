"""Production settings of the demo site behind a TLS proxy (docs/deployment.md).

The demo's settings (``example_project/settings.py``) made production-shaped, everything
read from the environment so that every worker process of every machine runs the same
file:

- ``DJANGO_SECRET_KEY``, ``DATABASE_URL`` (PostgreSQL), ``REDIS_URL``: required.
- ``DJANGO_ALLOWED_HOSTS``: the host names the proxy serves (comma-separated).
- ``DIRECTCALL_CHANNEL_LAYER``: ``directcall`` (default: directcall's own pub/sub layer,
  ``directcall.redislayer.RedisPubSubLayer``), ``pubsub`` (channels_redis's
  ``RedisPubSubChannelLayer``: Sentinel, encryption) or ``redis`` (``RedisChannelLayer``).
- ``DIRECTCALL_TURN_URLS`` (comma-separated ``turn:``/``turns:`` URLs) and
  ``DIRECTCALL_TURN_SECRET`` (coturn's ``static-auth-secret``): TURN with ephemeral
  credentials. ``DIRECTCALL_STUN_URLS`` adds STUN servers.
- ``DIRECTCALL_ICE_TRANSPORT_POLICY``: ``all`` (default) or ``relay``.
- ``DIRECTCALL_WEBHOOK_ALLOW_PRIVATE=1``: let webhooks reach private addresses (off).
- ``DJANGO_STATIC_ROOT``: where ``collectstatic`` puts the files the proxy serves.
- ``DIRECTCALL_REDIS_PREFIX``: a prefix for every Redis key and channel (several sites,
  or a benchmark, sharing one Redis).

The proxy terminates TLS and sets ``X-Forwarded-Proto`` and ``X-Forwarded-For`` (one
trusted proxy: ``NUM_PROXIES = 1``).
"""

import os

from django.core.exceptions import ImproperlyConfigured

from example_project.settings import *  # noqa: F403
from example_project.settings import DIRECTCALL as DEMO_DIRECTCALL


def _required(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ImproperlyConfigured(f"deploy.settings needs {name} in the environment")
    return value


def _list(name: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, "").split(",") if item.strip()]


SECRET_KEY = _required("DJANGO_SECRET_KEY")
DEBUG = False
ALLOWED_HOSTS = _list("DJANGO_ALLOWED_HOSTS") or ["localhost"]
STATIC_ROOT = os.environ.get("DJANGO_STATIC_ROOT") or STATIC_ROOT  # noqa: F405

# PostgreSQL (DATABASE_URL, read by example_project.settings). Persistent connections: a
# worker's socket handlers run their queries in one thread, which would otherwise open
# and close a connection around each (docs/performance.md). No health checks: they cost
# a SELECT 1 before each of those calls; after a database restart the first query on an
# old connection fails (ERR_SERVICE_UNAVAILABLE, the client retries) and is replaced.
DATABASES = {"default": dict(DATABASES["default"])}  # noqa: F405 (a copy: not the demo's)
DATABASES["default"].update(CONN_MAX_AGE=600, CONN_HEALTH_CHECKS=False)

REDIS_URL = _required("REDIS_URL")
_LAYERS = {
    "directcall": "directcall.redislayer.RedisPubSubLayer",
    "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
    "redis": "channels_redis.core.RedisChannelLayer",
}
_layer = os.environ.get("DIRECTCALL_CHANNEL_LAYER", "directcall")
if _layer not in _LAYERS:
    raise ImproperlyConfigured(
        f"DIRECTCALL_CHANNEL_LAYER must be directcall, pubsub or redis, not {_layer!r}"
    )
_prefix = os.environ.get("DIRECTCALL_REDIS_PREFIX", "")
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": _LAYERS[_layer],
        # socket_timeout None: redis-py 8's 5 s default kills channels_redis's idle
        # receivers (check W007); directcall's layer reads no option but the address.
        "CONFIG": {
            "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
            "prefix": f"{_prefix}asgi",
        },
    }
}
if _layer == "redis":
    # Per process, all its consumers together (docs/performance.md).
    CHANNEL_LAYERS["default"]["CONFIG"]["capacity"] = 1000
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": _prefix,
    }
}

# The proxy terminates TLS: it says so in X-Forwarded-Proto (it overwrites whatever the
# client sent), and puts the client's address in X-Forwarded-For.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
REST_FRAMEWORK = {**REST_FRAMEWORK, "NUM_PROXIES": 1}  # noqa: F405
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
# The proxy redirects http:// to https:// and sends Strict-Transport-Security itself.
SILENCED_SYSTEM_CHECKS = ["security.W004", "security.W008"]

_ice: list[dict] = []
if _list("DIRECTCALL_STUN_URLS"):
    _ice.append({"urls": _list("DIRECTCALL_STUN_URLS")})
if _list("DIRECTCALL_TURN_URLS"):
    _ice.append({"urls": _list("DIRECTCALL_TURN_URLS")})

DIRECTCALL = {
    **DEMO_DIRECTCALL,
    "ICE_SERVERS": _ice,
    "TURN_SECRET": os.environ.get("DIRECTCALL_TURN_SECRET") or None,
    "ICE_TRANSPORT_POLICY": os.environ.get("DIRECTCALL_ICE_TRANSPORT_POLICY", "all"),
    # Webhooks to private, loopback and link-local addresses are refused in production
    # (the demo's settings allow them for its own receiver on this machine).
    "WEBHOOK_ALLOW_PRIVATE": os.environ.get("DIRECTCALL_WEBHOOK_ALLOW_PRIVATE") == "1",
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "directcall": {"handlers": ["console"], "level": "INFO"},
        "django.request": {"handlers": ["console"], "level": "WARNING"},
    },
}
