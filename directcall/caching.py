"""The shared cache (presence, the token deny-list, rates, offers): one backend per thread.

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
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.cache import DEFAULT_CACHE_ALIAS, caches
from django.core.cache.backends.base import BaseCache
from django.core.signals import setting_changed
from django.dispatch import receiver

_local = threading.local()  # .backends: {alias: backend}, .generation
_generation = 0


def get_cache(alias: str = DEFAULT_CACHE_ALIAS) -> BaseCache:
    """This thread's backend for the cache ``alias``."""
    backends = getattr(_local, "backends", None)
    if backends is None or _local.generation != _generation:
        backends = _local.backends = {}
        _local.generation = _generation
    backend = backends.get(alias)
    if backend is None:
        backend = backends[alias] = caches.create_connection(alias)
    return backend


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
        _generation += 1
