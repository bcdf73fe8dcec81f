"""Settings of the daphne server that the browser tests start (``tests/e2e/conftest.py``).

The test settings, pointed at pytest-django's test database (its name comes from
``DIRECTCALL_E2E_DB_NAME``, set by the fixture that starts the server), with short
``DIRECTCALL`` timings. One process: the in-memory channel layer and the local-memory
cache, unless ``DIRECTCALL_E2E_REDIS=1`` asks for Redis (``REDIS_URL``), in which case keys
and channels get the prefix in ``DIRECTCALL_E2E_PREFIX`` (the test process's own, so that
tests can see the server's cache).
"""

import json
import os

from django.core.exceptions import ImproperlyConfigured

from tests.e2e.timings import DIRECTCALL as E2E_DIRECTCALL
from tests.settings import *  # noqa: F403
from tests.settings import DATABASES, REDIS_URL

DEBUG = False
ASGI_APPLICATION = "tests.e2e_asgi.application"

try:
    DATABASES["default"]["NAME"] = os.environ["DIRECTCALL_E2E_DB_NAME"]
except KeyError:
    raise ImproperlyConfigured(
        "tests.e2e_settings serves pytest-django's test database: set DIRECTCALL_E2E_DB_NAME "
        "(the e2e_server fixture in tests/e2e/conftest.py does)"
    ) from None

# The DIRECTCALL dict the fixture started this server with (tests/e2e/harness.py).
DIRECTCALL = json.loads(os.environ.get("DIRECTCALL_E2E_SETTINGS") or "null") or dict(E2E_DIRECTCALL)

if os.environ.get("DIRECTCALL_E2E_REDIS") == "1":
    if not REDIS_URL:
        raise ImproperlyConfigured("DIRECTCALL_E2E_REDIS=1 needs REDIS_URL")
    RUN_PREFIX = os.environ.get("DIRECTCALL_E2E_PREFIX", "dce2e")
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                # socket_timeout None, as in example_project/settings.py (redis-py 8 would
                # time out channels_redis's blocking receive after 5 s).
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                # Not "<prefix>:", so the tests' per-test cache clean-up leaves the layer alone.
                "prefix": f"{RUN_PREFIX}-e2e",
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": RUN_PREFIX,
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "OPTIONS": {"MAX_ENTRIES": 100_000},  # not culled (directcall.W012)
        }
    }

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "directcall": {"handlers": ["stderr"], "level": "DEBUG", "propagate": False},
        "django.request": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
    },
}
