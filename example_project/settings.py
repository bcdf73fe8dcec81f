"""Settings of the demo host site.

With nothing configured it runs in one process on SQLite, the in-memory channel layer
and the local-memory cache. ``DATABASE_URL`` (e.g. postgres://postgres@127.0.0.1:5432/directcall)
and ``REDIS_URL`` (e.g. redis://127.0.0.1:6379/0) switch to PostgreSQL and Redis.
"""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent

# The demo's key is public; a real site reads its own from the environment.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "demo-only-insecure-key-change-me")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]").split(",")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    # Webhook deliveries run as background tasks (docs/webhooks.md): django-tasks with the
    # database backend; `manage.py db_worker` runs them (scripts/demo.sh starts one).
    "django_tasks",
    "django_tasks_db",
    "directcall",
    "example_project",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # A strict policy (no inline script or style) on the demo's pages: directcall needs none.
    "example_project.middleware.ContentSecurityPolicyMiddleware",
]

ROOT_URLCONF = "example_project.urls"
ASGI_APPLICATION = "example_project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Persistent connections: the signaling consumer's queries all run in the one thread of
# channels' database_sync_to_async, which would otherwise open and close a connection
# around each of them (a third of a call set-up's CPU, docs/performance.md). No health
# checks: on PostgreSQL they cost a SELECT 1 before every one of those calls; after a
# database restart the first query on the old connection fails (the client is answered
# ERR_SERVICE_UNAVAILABLE and tries again) and Django replaces the connection.
DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}", conn_max_age=600
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Transactions take SQLite's write lock at BEGIN, so concurrent call set-ups serialise
    # (PostgreSQL gets the same from SELECT ... FOR UPDATE in directcall.calls.start).
    # WAL with synchronous=NORMAL: a commit appends to the log without an fsync (readers
    # never wait for the writer); a power cut may lose the last commits, never the file.
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

REDIS_URL = os.environ.get("REDIS_URL")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # socket_timeout None: redis-py 8 defaults it to 5 s, which equals the blocking
            # BZPOPMIN channels_redis waits on, so a process that got no message for 5 s had
            # its receive time out and the consumer die (close 1011). redis/redis-py#4091.
            "CONFIG": {
                "hosts": [{"address": REDIS_URL, "socket_timeout": None}],
                # Per channel; the default 100 fills under load (docs/performance.md).
                "capacity": 1000,
            },
        }
    }
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "directcall.layers.InMemoryChannelLayer"}}
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            # The default 300 entries would cull the presence of online users.
            "OPTIONS": {"MAX_ENTRIES": 100_000},
        }
    }

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "directcall API",
    "DESCRIPTION": "HTTP API of directcall, self-hosted in-app voice calling for Django.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
}

TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

DIRECTCALL = {
    "RING_TIMEOUT": int(os.environ.get("DIRECTCALL_RING_TIMEOUT", "30")),
    # The demo's webhook receivers run on this machine (a real site leaves this off).
    "WEBHOOK_ALLOW_PRIVATE": True,
    # Logged-in users ({% directcall_session %}) sign in under the demo's session account
    # (example_project.demo.SESSION_ACCOUNT_ID; the /call/ page's key is for another
    # account); students may call only tutors.
    "SESSION_ACCOUNT": "demo_account",
    "ADAPTER": "example_project.calling.DemoCallAdapter",
}

# The /people/ page needs a login; the demo logs people in without a password.
LOGIN_URL = "login_as"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "directcall": {"handlers": ["console"], "level": "INFO"},
        "example_project": {"handlers": ["console"], "level": "INFO"},
    },
}
