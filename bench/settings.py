"""Settings of the server processes that the benchmarks start (``bench/*.py``).

The demo site's settings with the limits that would get in a load test's way raised (init
throttles, flood limits, idle timeout, token lifetime) and the channel layer picked by
``BENCH_LAYER``:

- ``memory``: ``InMemoryChannelLayer`` and the local-memory cache (one process only);
- ``redis``: ``channels_redis.core.RedisChannelLayer`` and Redis's cache (``REDIS_URL``);
- ``pubsub``: ``channels_redis.pubsub.RedisPubSubChannelLayer`` and Redis's cache;
- ``dclayer``: directcall's own pub/sub layer (``directcall.redislayer.RedisPubSubLayer``)
  and Redis's cache.

Redis keys and channels get the prefix in ``BENCH_PREFIX`` (one per run), so a run leaves
the rest of a shared Redis alone and can delete its own keys afterwards. The database is
``DATABASE_URL`` (the benchmark points it at a fresh SQLite file or PostgreSQL database).
Presence TTL, sweep interval and ring timeout keep their production defaults, so their
background work is part of what is measured.
"""

import os

from django.core.exceptions import ImproperlyConfigured

from example_project.settings import *  # noqa: F403
from example_project.settings import INSTALLED_APPS, MIDDLEWARE, REDIS_URL

SECRET_KEY = os.environ.get("BENCH_SECRET_KEY", "bench-only-secret-key")
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
ASGI_APPLICATION = "bench.asgi.application"
# directcall alone: the demo site's own app (its billing receiver, adapter, pages and
# middleware) is host-site code, not part of what is measured.
INSTALLED_APPS = [app for app in INSTALLED_APPS if not app.startswith("example_project")]
MIDDLEWARE = [m for m in MIDDLEWARE if not m.startswith("example_project")]
ROOT_URLCONF = "bench.urls"

BENCH_LAYER = os.environ.get("BENCH_LAYER", "memory")
BENCH_PREFIX = os.environ.get("BENCH_PREFIX", "dcbench")

if BENCH_LAYER == "memory":
    CHANNEL_LAYERS = {"default": {"BACKEND": "directcall.layers.InMemoryChannelLayer"}}
    # MAX_ENTRIES: LocMemCache's default (300) culls a third of the entries when full, and
    # presence lives in the cache: past ~300 signed-in users, online users would look
    # offline (invites answered 404) until their next renewal.
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "OPTIONS": {"MAX_ENTRIES": 1_000_000},
        }
    }
elif BENCH_LAYER in ("redis", "pubsub", "dclayer"):
    if not REDIS_URL:
        raise ImproperlyConfigured(f"BENCH_LAYER={BENCH_LAYER} needs REDIS_URL")
    backend = {
        "redis": "channels_redis.core.RedisChannelLayer",
        "pubsub": "channels_redis.pubsub.RedisPubSubChannelLayer",
        "dclayer": "directcall.redislayer.RedisPubSubLayer",
    }[BENCH_LAYER]
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": backend,
            "CONFIG": {
                # The layers take the same hosts format (channels_redis.utils.decode_hosts);
                # socket_timeout None as in example_project/settings.py.
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                "prefix": f"{BENCH_PREFIX}-layer",
            },
        }
    }
    if BENCH_LAYER == "redis":
        # RedisChannelLayer keeps one sorted set per *process* (the part of a consumer's
        # channel name before "!"), and its default capacity of 100 messages counts every
        # consumer of that process together: a process that falls ~100 messages behind
        # answers ChannelFull to every sender (the relay's ERR_INTERNAL). The benchmark
        # raises it so it can measure throughput; see docs/performance.md.
        CHANNEL_LAYERS["default"]["CONFIG"]["capacity"] = 10_000
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": BENCH_PREFIX,
        }
    }
else:
    raise ImproperlyConfigured(
        f"BENCH_LAYER must be memory, redis, pubsub or dclayer, not {BENCH_LAYER!r}"
    )

DIRECTCALL = {
    # A load generator signs thousands of users in from 127.0.0.1 within seconds.
    "THROTTLE_RATES": {
        "directcall_init_ip": "1000000/min",
        "directcall_init_ip_new": "1000000/min",
        "directcall_init_account": "1000000/min",
    },
    # Load clients send candidates as fast as the socket takes them.
    "FLOOD_RATE": 1_000_000,
    "FLOOD_BURST": 1_000_000,
    # Idle connections of the memory measurement send nothing.
    "IDLE_TIMEOUT": 24 * 3600,
    "AUTH_TIMEOUT": 120,
    # Tokens are minted once per run and used for every configuration.
    "TOKEN_TTL": 24 * 3600,
    # Thousands of sockets from 127.0.0.1, calling the same people again and again.
    "MAX_CONNECTIONS_PER_IP": None,
    "RING_BACKOFF": None,
    # Pairs place calls back to back: a fast server passes CALL_RATE's 20 a minute.
    "CALL_RATE": None,
    # ...and signing each of them in from there.
    "AUTH_RATE_IP": None,
    "AUTH_RATE_CUID": None,
}

# Production-like: INFO and above, to the process's stderr (the benchmark's log file).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"directcall": {"handlers": ["console"], "level": "INFO"}},
}
