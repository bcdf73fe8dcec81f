"""Settings of the daphne processes that the soak test starts (``bench/soak.py``).

The demo site's production path — ``DATABASE_URL`` (PostgreSQL, or a SQLite file) and
``REDIS_URL`` (the soak's own private redis-server) for the channel layer and the cache —
with directcall alone installed (the demo's own app is host-site code) and short timings,
each overridable from the environment so the soak and its checks agree on them:

- ``SOAK_RING_TIMEOUT`` (default 8 s), ``SOAK_PRESENCE_TTL`` (2 s),
  ``SOAK_SWEEP_INTERVAL`` (0.5 s), ``SOAK_RECONNECT_GRACE`` (3 s).

Limits a load test would trip over on purpose (the init throttle, ``CALL_RATE``) are
raised; everything else keeps its default, the idle timeout included (the soak's clients
ping like the SDK). Logs go to stderr: directcall at INFO, and ``django.request`` errors,
so a 500 shows in the log even with ``DEBUG`` off.
"""

import os

from example_project.settings import *  # noqa: F403
from example_project.settings import INSTALLED_APPS, MIDDLEWARE

SECRET_KEY = os.environ.get("SOAK_SECRET_KEY", "soak-only-secret-key")
DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
INSTALLED_APPS = [app for app in INSTALLED_APPS if not app.startswith("example_project")]
MIDDLEWARE = [m for m in MIDDLEWARE if not m.startswith("example_project")]
ROOT_URLCONF = "bench.urls"
ASGI_APPLICATION = "bench.asgi.application"

DIRECTCALL = {
    "RING_TIMEOUT": int(os.environ.get("SOAK_RING_TIMEOUT", "8")),
    "PRESENCE_TTL": float(os.environ.get("SOAK_PRESENCE_TTL", "2")),
    "SWEEP_INTERVAL": float(os.environ.get("SOAK_SWEEP_INTERVAL", "0.5")),
    "RECONNECT_GRACE": float(os.environ.get("SOAK_RECONNECT_GRACE", "3")),
    # Every client signs in again after each fault, all from 127.0.0.1.
    "THROTTLE_RATES": {
        "directcall_init_ip": "1000000/min",
        "directcall_init_ip_new": "1000000/min",
        "directcall_init_account": "1000000/min",
    },
    # Quick declines and cancels let a pair place more than 20 calls a minute.
    "CALL_RATE": None,
    # Every client signs in from 127.0.0.1, again after each reload, kill and restart.
    "AUTH_RATE_IP": None,
    "AUTH_RATE_CUID": None,
    # Pairs call each other again right after declined, missed and cancelled calls.
    "RING_BACKOFF": None,
    # Every client connects from 127.0.0.1.
    "MAX_CONNECTIONS_PER_IP": None,
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        # Not propagated: daphne's own root handler would print every line twice.
        "directcall": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}
