"""Settings of the daphne processes started by ``tests/test_multiprocess.py``.

The demo site's settings (``DATABASE_URL`` and ``REDIS_URL`` from the environment), with
short presence/sweep timings so that a killed process is noticed within seconds, and a
Redis key/channel prefix from ``DIRECTCALL_MP_PREFIX`` so that parallel runs sharing one
Redis do not see each other. Every process of one run gets the same prefix and key.
``DIRECTCALL_MP_LAYER`` picks the channel layer: ``redis`` (channels_redis's
``RedisChannelLayer``, the default) or ``dclayer`` (directcall's pub/sub layer,
:mod:`directcall.redislayer`); the test modules run their servers on both.
"""

import os

from example_project.settings import *  # noqa: F403
from example_project.settings import REDIS_URL

SECRET_KEY = os.environ.get("DIRECTCALL_MP_SECRET", "multiprocess-tests-only-secret-key")
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
MP_PREFIX = os.environ.get("DIRECTCALL_MP_PREFIX", "dcmp")

MP_LAYER = os.environ.get("DIRECTCALL_MP_LAYER", "redis")

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": {
                "redis": "channels_redis.core.RedisChannelLayer",
                "dclayer": "directcall.redislayer.RedisPubSubLayer",
            }[MP_LAYER],
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                "prefix": MP_PREFIX,
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": MP_PREFIX,
        }
    }

DIRECTCALL = {
    "RING_TIMEOUT": 30,
    "PRESENCE_TTL": 2,
    "SWEEP_INTERVAL": 0.5,
    "RECONNECT_GRACE": 2,
    "AUTH_TIMEOUT": 5,
    # The fault tests shorten it to see a silent client dropped.
    "IDLE_TIMEOUT": float(os.environ.get("DIRECTCALL_MP_IDLE_TIMEOUT", "60")),
    # Generous: these tests create a handful of sessions from one IP within seconds.
    "THROTTLE_RATES": {"directcall_init_ip": "600/min", "directcall_init_ip_new": "600/min"},
    "AUTH_RATE_IP": "600/min",
    # Tests call the same person again right after a declined or missed call.
    "RING_BACKOFF": None,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"directcall": {"handlers": ["console"], "level": "DEBUG"}},
}
