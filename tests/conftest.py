"""Shared fixtures: accounts with known keys, an API client, a clean cache per test."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

from directcall.models import Account, Registration

TESTS_DIR = Path(__file__).resolve().parent


def needs_redis_server() -> pytest.MarkDecorator:
    """For the tests that start (and kill) a redis-server of their own: skipped where the
    binary is missing, except under CI (``CI`` set, as ``.ci/run`` does), where they fail —
    scripts/test.sh installs it, so a missing one is a broken set-up, not a reason to skip."""
    missing = shutil.which("redis-server") is None
    if missing and os.environ.get("CI"):
        return pytest.mark.usefixtures("_redis_server_missing")
    return pytest.mark.skipif(missing, reason="redis-server is not installed")


def require_postgres_server(what: str) -> None:
    """Skip unless a PostgreSQL server answers where ``what`` makes its own database
    (``deploy.topology.postgres_server_url``); under CI fail instead: ``.ci/run`` has one."""
    from deploy.topology import postgres_answers, postgres_server_url

    server = postgres_server_url()
    if not postgres_answers(server):
        message = f"{what} runs on PostgreSQL and none answers at {server}"
        if os.environ.get("CI"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture
def _redis_server_missing() -> None:
    pytest.fail("redis-server is not on the PATH (CI is set: this test must run)", pytrace=False)


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None) -> Iterator[None]:
    """pytest-django's test database, whose teardown first closes the database connection
    of asgiref's thread-sensitive thread.

    Consumers and ``database_sync_to_async`` run their queries in that thread, with a
    connection of its own that no test's clean-up closes. Left open, it kept PostgreSQL
    from dropping the test database at the end of a run ("being accessed by other users"):
    seen in runs of ``tests/test_revocation.py`` alone.
    """
    yield
    from asgiref.sync import SyncToAsync
    from django.db import connections

    executor = SyncToAsync.single_thread_executor
    if not getattr(executor, "_shutdown", False):
        executor.submit(connections.close_all).result(timeout=30)


@pytest.fixture(autouse=True, scope="session")
def _flush_survives_a_deadlock() -> Iterator[None]:
    """A transactional test's clean-up (``flush``: one ``TRUNCATE`` of every table) tried
    again when PostgreSQL chose it as a deadlock's victim.

    The browser and multi-process tests keep servers running on the test database. Their
    work as a test ends (a closed page's call ended, a sweep) can hold a lock on one
    table and want another that the ``TRUNCATE`` holds: PostgreSQL aborts one of the two,
    and when that is the ``TRUNCATE`` (CI, once: "deadlock detected" at the teardown of an
    e2e test) nothing was flushed, so trying again is safe.
    """
    from django.core.management.base import CommandError
    from django.core.management.commands import flush
    from django.db import OperationalError

    original = flush.Command.handle

    def handle(self, **options: Any) -> Any:
        attempts = 3
        while True:
            try:
                return original(self, **options)
            except CommandError as exc:
                attempts -= 1
                cause = exc.__cause__
                deadlock = isinstance(cause, OperationalError) and "deadlock detected" in str(cause)
                if not deadlock or not attempts:
                    raise

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(flush.Command, "handle", handle)
        yield


def _clear_cache() -> None:
    """Empty this run's part of the cache (never another run's keys in a shared Redis)."""
    from django.core.cache import caches
    from django.core.cache.backends.redis import RedisCache

    backend = caches["default"]  # `cache` is a proxy: look at the real backend
    if isinstance(backend, RedisCache):
        client = backend._cache.get_client(write=True)
        keys = list(client.scan_iter(match=f"{settings.RUN_PREFIX}:*", count=1000))
        if keys:
            client.delete(*keys)
    else:
        backend.clear()


@pytest.fixture(autouse=True)
def clean_cache():
    """Throttle counters and presence start empty in every test."""
    _clear_cache()
    yield
    _clear_cache()


@pytest.fixture
def validation_cases() -> dict[str, Any]:
    """The shared valid/invalid parameter cases (also read by the browser SDK's tests)."""
    return json.loads((TESTS_DIR / "validation_cases.json").read_text())


@pytest.fixture
def make_account(db) -> Callable[..., tuple[Account, str]]:
    """Factory: ``make_account(**fields) -> (account, api_key)``.

    A page-identity account unless ``identity`` is given: most tests sign in with the key.
    """

    def make(**fields: Any) -> tuple[Account, str]:
        fields.setdefault("name", "Test account")
        fields.setdefault("require_clevertap", False)
        fields.setdefault("identity", "page")
        account = Account(**fields)
        key = account.set_new_api_key()
        account.save()
        return account, key

    return make


@pytest.fixture
def api_client():
    """A DRF test client."""
    from rest_framework.test import APIClient

    return APIClient()


# -- signaling ------------------------------------------------------------------------------

SIGNALING_SETTINGS = {
    "ICE_SERVERS": [{"urls": ["stun:127.0.0.1:3478"]}],
    "RING_TIMEOUT": 30,
    "PRESENCE_TTL": 3,
    "RECONNECT_GRACE": 1,
    "SWEEP_INTERVAL": 0.25,
    # A busy machine can take more than a second from a socket's opening to its auth frame
    # being handled; the tests of the deadline itself set their own (1 s or less).
    "AUTH_TIMEOUT": 5,
    # Tests call the same person again and again after unanswered calls; the backoff has
    # its own tests (test_ring_backoff.py), which turn it on.
    "RING_BACKOFF": None,
}


@pytest.fixture(params=["memory", "redis", "dclayer"])
def channel_backend(request, settings, monkeypatch):
    """Run a signaling test on the in-memory layer + local cache, then on Redis for both:
    with channels_redis's ``RedisChannelLayer`` ("redis") and with directcall's own pub/sub
    layer ("dclayer", :mod:`directcall.redislayer`, the one production uses).

    In-memory, messages between the test's connections (all in this process) take the
    same-process path (directcall.transport); on Redis the path is off, so that every
    message crosses the channel layer as between two server processes.
    """
    import os

    from directcall import transport

    monkeypatch.setattr(transport, "same_process_path", request.param == "memory")

    if request.param in ("redis", "dclayer"):
        url = os.environ.get("REDIS_URL")
        if not url:
            pytest.skip("REDIS_URL is not set (scripts/test.sh always sets it)")
        settings.CHANNEL_LAYERS = {
            "default": {
                "BACKEND": "channels_redis.core.RedisChannelLayer"
                if request.param == "redis"
                else "directcall.redislayer.RedisPubSubLayer",
                # socket_timeout None: see example_project/settings.py (redis-py 8).
                "CONFIG": {
                    "hosts": [{"address": url, "socket_timeout": None}],
                    "prefix": settings.RUN_PREFIX,
                },
            }
        }
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": url,
                "KEY_PREFIX": settings.RUN_PREFIX,
            }
        }
    else:
        settings.CHANNEL_LAYERS = {"default": {"BACKEND": "directcall.layers.InMemoryChannelLayer"}}
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                "OPTIONS": {"MAX_ENTRIES": 100_000},  # not culled (directcall.W012)
            }
        }
    settings.DIRECTCALL = dict(SIGNALING_SETTINGS)
    _clear_cache()
    yield request.param
    _clear_cache()


@pytest.fixture
def people(make_account) -> dict[str, Any]:
    """jane, sam and gil in one account; in a second account mallory and another student_sam."""
    from .wsclient import make_registration

    account, _key = make_account()
    other, _key = make_account(name="Other account")
    people = {
        cuid: make_registration(account, cuid, name)
        for cuid, name in [("tutor_jane", "Jane"), ("student_sam", "Sam"), ("grocer_gil", "Gil")]
    }
    people["mallory_m"] = make_registration(other, "mallory_m", "Mallory")
    people["other_sam"] = make_registration(other, "student_sam", "Other Sam")
    return people


@pytest.fixture
def ended_signals() -> Iterator[list[tuple]]:
    """``(call_id, status, reason, duration)`` of every ``call_ended`` sent during the test."""
    from directcall import signals

    received = []

    def receiver(sender, call, status, reason, duration, **kwargs):
        received.append((str(call.pk), status, reason, duration))

    signals.call_ended.connect(receiver)
    yield received
    signals.call_ended.disconnect(receiver)


@pytest.fixture
async def clients(signaling) -> AsyncIterator[Any]:
    """Opens signaling clients (``await clients.sign_in(registration)``); all are closed at
    the end of the test, whether it passed or not."""
    from .wsclient import Clients

    opened = Clients()
    yield opened
    await opened.close_all()


@pytest.fixture
async def signaling(channel_backend):
    """The backend fixture; this event loop's sweeper (and its tasks) stop at the end."""
    from directcall.sweeper import stop_running_sweeper

    yield channel_backend
    await stop_running_sweeper()


@pytest.fixture
def side():
    """An account with two registrations in the "sqlite" database (the test settings'
    SQLite file, whatever "default" is); its connection. Tests that use it ask for
    ``databases=["default", "sqlite"]``."""
    from django.db import connections

    account = Account(name="Side", require_clevertap=False, identity="page")
    account.set_new_api_key()
    account.save(using="sqlite")
    jane = Registration.objects.using("sqlite").create(account=account, cuid="tutor_jane")
    sam = Registration.objects.using("sqlite").create(account=account, cuid="student_sam")
    return connections["sqlite"], account, jane, sam
