"""directcall.caching: one cache backend per thread, whatever the context.

Before it, a signaling connection built a new ``RedisCache`` (a new connection pool, a new
TCP connection to Redis) in each fresh context: every delivered message's handler and
every hop to the database thread, about five per call set-up. Counted here on the real
Redis, with its own ``total_connections_received`` (the suite runs one test at a time).
"""

from __future__ import annotations

import contextvars
import os
import threading

import pytest
import redis
from django.core.cache import caches

from directcall import caching, presence

from .wsclient import full_call

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def redis_url() -> str:
    url = os.environ.get("REDIS_URL")
    if not url:
        pytest.skip("REDIS_URL is not set (scripts/test.sh always sets it)")
    return url


def connections_received(url: str) -> int:
    """How many connections the Redis server has accepted since it started."""
    client = redis.Redis.from_url(url)
    try:
        return client.info("stats")["total_connections_received"]
    finally:
        client.close()


def use_redis(settings, url: str) -> None:
    """Redis's cache backend, under this run's key prefix."""
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": settings.RUN_PREFIX,
        }
    }


def in_fresh_context(function, *args):
    return contextvars.Context().run(function, *args)


def test_one_backend_per_thread_whatever_the_context(settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    here = caching.get_cache()
    assert all(in_fresh_context(caching.get_cache) is here for _ in range(5))
    # Django's own handler builds one per context (what this module avoids).
    assert in_fresh_context(lambda: caches["default"]) is not in_fresh_context(
        lambda: caches["default"]
    )
    other = []
    thread = threading.Thread(target=lambda: other.append(caching.get_cache()))
    thread.start()
    thread.join()
    assert other[0] is not here
    assert type(other[0]) is type(here)


def test_a_change_of_caches_builds_the_backend_again(settings, tmp_path):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    before = caching.get_cache()
    caching.cache.set("k", "locmem")
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path),
        }
    }
    after = caching.get_cache()
    assert after is not before
    assert type(after).__name__ == "FileBasedCache"
    assert caching.cache.get("k") is None
    caching.cache.set("k", "file")
    assert caches["default"].get("k") == "file"  # the same store as Django's cache


def test_fresh_contexts_share_one_redis_connection(settings, redis_url):
    use_redis(settings, redis_url)
    presence.lookup(1, "warm_up")
    before = connections_received(redis_url)
    for n in range(20):
        assert in_fresh_context(presence.lookup, 1, f"nobody_{n}") is None
    # One more for connections_received's own client (and room for one from elsewhere on a
    # shared Redis); none for the lookups: 21 before.
    assert connections_received(redis_url) - before <= 2


@pytest.mark.parametrize("channel_backend", ["dclayer"], indirect=True)
async def test_calls_open_no_redis_connections(people, clients, signaling, redis_url):
    """Whole calls through the signaling consumer on Redis (directcall's layer, Redis's
    cache): once the first call has warmed up the threads, later calls connect no more."""
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])

    await full_call(jane, sam)
    before = connections_received(redis_url)
    for _ in range(3):
        await full_call(jane, sam)
    # Before directcall.caching: about five new connections per call.
    assert connections_received(redis_url) - before <= 2


@pytest.fixture
def redis_cache(settings, redis_url):
    use_redis(settings, redis_url)
    return caching.get_cache()


def test_a_redis_backend_makes_one_client_per_pool(redis_cache):
    """Django's client makes a ``redis.Redis`` per operation; this thread's makes one."""
    made = []
    client_class = redis_cache._cache._client
    redis_cache._cache._client = lambda **kwargs: made.append(1) or client_class(**kwargs)
    for n in range(10):
        caching.cache.set(f"one_client:{n}", n, 30)
        assert caching.cache.get(f"one_client:{n}") == n
        assert caching.cache.get_many([f"one_client:{n}"]) == {f"one_client:{n}": n}
    assert len(made) <= 1
    # Django's own backend is untouched: the host's cache keeps Django's client.
    assert type(caches["default"]._cache).__module__ == "django.core.cache.backends.redis"


def count_in_threads(key: str, threads: int, each: int) -> list[int]:
    counts: list[int] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [caching.count(key, 30) for _ in range(each)]
        with lock:
            counts.extend(mine)

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return counts


@pytest.mark.parametrize("backend", ["redis", "locmem"])
def test_count_is_atomic_across_threads(backend, settings, redis_url):
    """Every count is seen once: no two callers get the same number, none is lost."""
    if backend == "redis":
        use_redis(settings, redis_url)
    else:
        settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    counts = count_in_threads(f"atomic:{backend}", threads=8, each=40)
    assert sorted(counts) == list(range(1, 321))
    assert caching.cache.get(f"atomic:{backend}") == 320  # readable as the cache's value


def test_count_on_redis_is_one_round_trip_and_always_expires(redis_cache, redis_url, monkeypatch):
    raw = redis.Redis.from_url(redis_url)
    key = redis_cache.make_and_validate_key("expires")
    sent = []
    send = redis.connection.Connection.send_packed_command
    try:
        caching.count("expires", 30)
        monkeypatch.setattr(
            redis.connection.Connection,
            "send_packed_command",
            lambda self, *args, **kwargs: sent.append(1) or send(self, *args, **kwargs),
        )
        for _ in range(20):
            caching.count("expires", 30)
        monkeypatch.undo()
        assert len(sent) == 20  # add, exists and incr made it three per count
        assert caching.cache.get("expires") == 21
        assert 0 < raw.ttl(key) <= 30
        # A window that ended starts again from one, with its expiry: a counter is never
        # left to live (and refuse) forever.
        raw.delete(key)
        assert caching.count("expires", 30) == 1
        assert 0 < raw.ttl(key) <= 30
        # A server that lost its scripts (a restart, SCRIPT FLUSH) is sent the script again.
        raw.script_flush()
        assert caching.count("expires", 30) == 2
    finally:
        raw.delete(key)
        raw.close()


async def test_requests_in_threads_of_their_own_share_one_redis_connection(
    settings, redis_url, make_account
):
    """``POST v1/init`` through Django's ASGI handler, as a server runs it: each request in a
    context and a thread of its own (``ThreadSensitiveContext``) that end with it. Its
    throttles, the session's deny-list and the rest of its cache work use the process's
    Redis backend: five requests open no new connection (one each with a backend per
    thread, one per context before that)."""
    from asgiref.sync import sync_to_async
    from django.db import connections

    from .asgi_http import init_body, post_init

    use_redis(settings, redis_url)
    account, key = await sync_to_async(make_account)(require_clevertap=False)
    body = init_body(account, key)

    async def init() -> None:
        status, response = await post_init(body)
        assert status == 200, response

    try:
        await init()
        before = connections_received(redis_url)
        for _ in range(5):
            await init()
        assert connections_received(redis_url) - before <= 2
    finally:
        await sync_to_async(connections.close_all)()
