"""The shared cache (presence, the token deny-list, rates, offers): one backend per thread,
and one per process on Redis.

Django's ``cache`` gives each *context* its own backend object (``caches`` is an
``asgiref.local.Local`` that follows ``contextvars``), as fits a request. A signaling
connection runs every delivered message's handler, and every hop to the database thread,
in a fresh copy of its context, so each of them built a backend of its own: with
``RedisCache`` that is a new connection pool and a new TCP connection to Redis, about five
per call set-up (measured with Redis's ``total_connections_received``; docs/performance.md).
Here each thread keeps one backend per alias instead, made by Django's own
``caches.create_connection``: what Django promises a backend (one user thread at a time),
without one per context. Changing ``CACHES`` (``override_settings`` in tests) makes each
thread build its backend again.

A Redis backend is shared by every thread of the process: Django's ASGI handler runs each
HTTP request (``POST v1/init``) in a thread of its own that ends with the request, so a
backend per thread was a new pool and a new TCP connection to Redis per request. redis-py's
pool and client are thread-safe; the pools and client are made under a lock.

Django's ``RedisCache`` also makes a new ``redis.Redis`` client for every operation, which
costs about as much CPU as the round trip itself (its table of 170 response callbacks is
built each time). The backends made here use :class:`RedisCacheClient` instead, one client
per connection pool. :func:`count` is the one atomic counter of a time window that every
rate limit uses: one round trip on Redis.
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.base import BaseCache
from django.core.cache.backends.redis import RedisCache
from django.core.cache.backends.redis import RedisCacheClient as DjangoRedisCacheClient
from django.core.signals import setting_changed
from django.dispatch import receiver

_local = threading.local()  # .backends: {alias: backend}, .generation
_generation = 0
_shared: dict[str, BaseCache] = {}  # alias: the process's Redis backend (this generation)
_lock = threading.Lock()


def get_cache(alias: str = DEFAULT_CACHE_ALIAS) -> BaseCache:
    """This thread's backend for the cache ``alias`` (the process's, on Redis)."""
    backends = getattr(_local, "backends", None)
    if backends is None or _local.generation != _generation:
        backends = _local.backends = {}
        _local.generation = _generation
    backend = backends.get(alias)
    if backend is None:
        backend = backends[alias] = _backend(alias)
    return backend


def _backend(alias: str) -> BaseCache:
    with _lock:
        backend = _shared.get(alias)
        if backend is not None:
            return backend
        backend = caches.create_connection(alias)
        if not isinstance(backend, RedisCache):
            return backend
        # Before its client exists (``_cache`` is made on first use, here under the lock).
        # A custom backend's own client class is left as it is.
        if backend._class is DjangoRedisCacheClient:
            backend._class = RedisCacheClient
        backend._cache  # noqa: B018
        _shared[alias] = backend
        return backend


class RedisCacheClient(DjangoRedisCacheClient):
    """Django's Redis cache client, with one ``redis.Redis`` per connection pool.

    Django's makes one per operation (``get_client``); a client is thread-safe and holds
    nothing but its pool and its response callbacks, so one per pool does the same work.
    """

    # The counter of :func:`count`: INCR, and the window's expiry when INCR made the key.
    # One script, so a key is never left without its expiry (INCR then EXPIRE as two
    # commands could be cut between them, and the count would then never end).
    _COUNT = (
        "local n = redis.call('INCR', KEYS[1]) "
        "if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end "
        "return n"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}
        self._count_script: Any = None

    def _get_connection_pool(self, write: bool) -> Any:
        index = self._get_connection_pool_index(write)
        pool = self._pools.get(index)
        if pool is None:
            with _lock:  # threads share this client: one pool per server, not one each
                if index not in self._pools:
                    self._pools[index] = self._pool_class.from_url(
                        self._servers[index], **self._pool_options
                    )
                pool = self._pools[index]
        return pool

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients.setdefault(id(pool), self._client(connection_pool=pool))
        return client

    def count(self, key: str, timeout: int) -> int:
        """Add one to the counter ``key``, made with ``timeout`` seconds to live; its count."""
        client = self.get_client(key, write=True)
        if self._count_script is None:
            self._count_script = client.register_script(self._COUNT)
        # EVALSHA, and EVAL once if the server has not seen the script (redis-py's Script).
        return int(self._count_script(keys=[key], args=[timeout], client=client))


def count(key: str, timeout: int, alias: str = DEFAULT_CACHE_ALIAS) -> int:
    """Add one to the shared counter ``key`` and return its count; atomic in every process.

    A new counter lives ``timeout`` seconds, and then counts from zero again: the fixed
    windows of the rate limits (``ratelimit.within_rate``, the invite rate, the HTTP
    throttles) put the window's number in ``key``. On Redis one round trip; on other
    backends ``add`` then ``incr``, which the local-memory cache does under its lock.
    """
    backend = get_cache(alias)
    client = getattr(backend, "_cache", None) if isinstance(backend, RedisCache) else None
    if isinstance(client, RedisCacheClient):
        return client.count(backend.make_and_validate_key(key), timeout)
    backend.add(key, 0, timeout)
    try:
        return backend.incr(key)
    except ValueError:  # the window expired between add() and incr()
        backend.add(key, 1, timeout)
        return 1


class CacheProxy:
    """``django.core.cache.cache``, with :func:`get_cache`'s backend."""

    __slots__ = ("_alias",)

    def __init__(self, alias: str = DEFAULT_CACHE_ALIAS) -> None:
        self._alias = alias

    def __getattr__(self, name: str) -> Any:
        return getattr(get_cache(self._alias), name)


cache = CacheProxy()


@receiver(setting_changed)
def _forget_backends(*, setting: str, **kwargs: Any) -> None:
    global _generation
    if setting == "CACHES":
        with _lock:
            _generation += 1
            _shared.clear()
