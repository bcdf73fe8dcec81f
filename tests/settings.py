"""Test settings: the demo site's, with Redis when REDIS_URL is set (the test script sets it).

Keys and channel names get a per-process prefix so that several test runs can share one
Redis without seeing each other.
"""

import tempfile
import uuid
from pathlib import Path

from example_project.settings import *  # noqa: F403
from example_project.settings import DATABASES, REDIS_URL

SECRET_KEY = "tests-only-secret-key"
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
RUN_PREFIX = f"dct{uuid.uuid4().hex[:8]}"
DEMO_CREDENTIALS_FILE = Path(tempfile.gettempdir()) / f"{RUN_PREFIX}-demo-credentials"

if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                "prefix": RUN_PREFIX,
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

DIRECTCALL = {"ICE_SERVERS": [{"urls": ["stun:127.0.0.1:3478"]}]}
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"directcall": {"level": "DEBUG", "propagate": True}},
}

# A connection per test, as before: persistent ones (the demo's) would stay open in the
# sync thread between tests and keep PostgreSQL from dropping the test database.
DATABASES["default"]["CONN_MAX_AGE"] = 0

if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not shared-cache memory: signaling tests reach the database from several
    # threads at once, and SQLite's busy timeout only works between connections to a file.
    DATABASES["default"]["TEST"] = {
        "NAME": str(Path(tempfile.gettempdir()) / f"{RUN_PREFIX}-test.sqlite3")
    }

# Always SQLite, whatever "default" is: the tests of what directcall does only on SQLite
# (callsql's driver path, tests/test_callsql.py) run on it when the suite runs on
# PostgreSQL. Set up only for the tests that ask for it (databases=[..., "sqlite"]).
DATABASES["sqlite"] = {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": str(Path(tempfile.gettempdir()) / f"{RUN_PREFIX}-side.sqlite3"),
    "CONN_MAX_AGE": 0,
    "OPTIONS": {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    },
    "TEST": {"NAME": str(Path(tempfile.gettempdir()) / f"{RUN_PREFIX}-side-test.sqlite3")},
}
