"""The database connections of HTTP requests, kept for the next request on PostgreSQL.

Django's ASGI handler runs each request's synchronous code (``POST v1/init``, the calls
API, the admin) in a thread of its own (``ThreadSensitiveContext``) that ends with the
request. Django's connections belong to a thread, so each such request opened a new one,
and directcall closed it when the request finished (before, it stayed open until the
thread was collected: docs/deployment.md). On PostgreSQL, opening one (TCP, start-up,
authentication, Django's set-up of the session) cost the server a backend process forked
for it, 7-8 ms of its CPU per ``POST v1/init``, and the worker a good part of its own
(docs/performance.md, run U).

Here a request thread's PostgreSQL connection is *parked* when the request finishes, if it
is idle (no transaction, autocommit, no error seen, not past ``CONN_MAX_AGE``), and the
next request thread's first query takes it instead of connecting: Django's own
``connect()`` runs as ever (its bookkeeping, ``init_connection_state``, the
``connection_created`` signal), with the parked connection in place of a new one. At most
:data:`PARKED` per database alias and process; past that, and for any connection that is
not idle, the request's connection is closed as before. The signaling consumer's database
thread keeps its own connection; SQLite (a file, opened in microseconds), Django's own pool
(``OPTIONS["pool"]``), ``CONN_MAX_AGE = 0`` and WSGI (no such thread) are left to Django.

A connection parked for more than :data:`QUIET` seconds is checked (``SELECT 1``) before
it is reused: a database restart during a quiet spell goes unseen by the requests. One
broken within those seconds (a restart while the worker is busy) fails its first query, as
the consumer thread's does: that request is answered ``ERR_SERVICE_UNAVAILABLE`` and the
connection is closed, not parked again.
"""

from __future__ import annotations

import contextlib
import threading
import time
from typing import Any

from asgiref.sync import SyncToAsync
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

PARKED = 4  # connections kept per database alias and process
QUIET = 5.0  # seconds parked after which a connection is checked before it is reused

_parked: dict[str, list[tuple[Any, float, float]]] = {}  # alias: [(connection, opened, parked)]
_lock = threading.Lock()


def in_request_thread() -> bool:
    """Whether this code runs in a thread that Django's ASGI handler made for one request."""
    return SyncToAsync.thread_sensitive_context.get(None) is not None


def _parkable(wrapper: BaseDatabaseWrapper) -> bool:
    """Whether the connections of ``wrapper``'s database can be parked at all."""
    max_age = wrapper.settings_dict.get("CONN_MAX_AGE", 0)
    return (
        wrapper.vendor == "postgresql"
        and max_age != 0
        and not wrapper.settings_dict.get("OPTIONS", {}).get("pool")
    )


def take_parked(sender: Any = None, **kwargs: Any) -> None:
    """At a request's start in a request thread: let its connections reuse parked ones."""
    if not in_request_thread():
        return
    for wrapper in connections.all():
        if _parkable(wrapper) and "get_new_connection" not in wrapper.__dict__:
            wrapper.get_new_connection = _reusing(wrapper)


def _reusing(wrapper: BaseDatabaseWrapper) -> Any:
    new_connection = type(wrapper).get_new_connection

    def get_new_connection(conn_params: dict[str, Any]) -> Any:
        while True:
            with _lock:
                parked = _parked.get(wrapper.alias)
                entry = parked.pop() if parked else None
            if entry is None:
                break
            connection, opened_at, parked_at = entry
            if _alive(connection, parked_at):
                wrapper._directcall_opened_at = opened_at
                return connection
            with contextlib.suppress(Exception):
                connection.close()
        wrapper._directcall_opened_at = time.monotonic()
        return new_connection(wrapper, conn_params)

    return get_new_connection


def park_or_close(sender: Any = None, **kwargs: Any) -> None:
    """At a request's end in a request thread: park its idle connections, close the rest."""
    if not in_request_thread():
        return
    for wrapper in connections.all(initialized_only=True):
        raw = wrapper.connection
        if raw is None:
            continue
        opened_at = getattr(wrapper, "_directcall_opened_at", None)
        if opened_at is not None and _idle(wrapper, raw, opened_at):
            with _lock:
                parked = _parked.setdefault(wrapper.alias, [])
                if len(parked) < PARKED:
                    parked.append((raw, opened_at, time.monotonic()))
                    # Detached, not closed: the wrapper forgets it as close() would.
                    wrapper.run_on_commit = []
                    wrapper.connection = None
                    continue
        wrapper.close()


def _idle(wrapper: BaseDatabaseWrapper, raw: Any, opened_at: float) -> bool:
    """Whether ``raw`` can serve the next request as a new connection would."""
    from psycopg.pq import TransactionStatus

    max_age = wrapper.settings_dict.get("CONN_MAX_AGE", 0)
    return (
        _parkable(wrapper)
        and not wrapper.in_atomic_block
        and wrapper.autocommit
        and not wrapper.errors_occurred
        and not wrapper.needs_rollback
        and not raw.closed
        and raw.info.transaction_status == TransactionStatus.IDLE
        and (max_age is None or time.monotonic() < opened_at + max_age)
    )


def _alive(raw: Any, parked_at: float) -> bool:
    """Whether a parked connection still works: asked of the server (one round trip) only
    after :data:`QUIET` seconds parked, when a restart of the database may have ended it
    unseen; a busy worker reuses its connections within milliseconds."""
    if raw.closed:
        return False
    if time.monotonic() - parked_at < QUIET:
        return True
    try:
        raw.execute("SELECT 1")
    except Exception:
        return False
    return True


def close_parked() -> None:
    """Close every parked connection (tests; a process that stops using the database)."""
    with _lock:
        parked = [entry[0] for entries in _parked.values() for entry in entries]
        _parked.clear()
    for raw in parked:
        raw.close()
