"""The hop from the event loop to the database thread, for the signaling hot path.

Every transition of a call is synchronous ORM work (:mod:`directcall.calls`) that the
consumer runs in asgiref's thread-sensitive thread, the one whose database connection all
of channels' ``database_sync_to_async`` calls share. :func:`run` makes that same hop, to
that same thread, with the same connection clean-up around it, for less: asgiref's
``SyncToAsync`` picks the thread anew on every call (an ``asgiref.local.Local`` look-up that
raises and catches ``AttributeError``: ~19 µs on the benchmark machine), wraps the call in
several partials, a shield and a chained future, and copies its ``Local`` storage into the
thread and back. Four hops per call set-up made that a visible share of its server CPU
(docs/performance.md). The thread wakes the loop once, with the result, and with whatever
the work asked to run in the loop once it is back (:func:`call_on_loop`): waking an event
loop from another thread costs far more than running a callback in it (~0.1 ms on the
benchmark machine, a VM on two busy cores).

Where asgiref would pick another thread — under ``async_to_sync`` (tests, a sync view
calling async code), in a ``ThreadSensitiveContext`` — :func:`run` hands the call to
``database_sync_to_async`` itself, so the thread (and so the connection and its
transaction) is always the one asgiref would have used.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import AsyncToSync, SyncToAsync
from channels.db import database_sync_to_async
from django.db import close_old_connections

logger = logging.getLogger("directcall.dbthread")

_P = ParamSpec("_P")
_R = TypeVar("_R")


async def run(function: Callable[_P, _R], *args: _P.args, **kwargs: _P.kwargs) -> _R:
    """``await database_sync_to_async(function)(*args, **kwargs)``, with a leaner hop."""
    loop = asyncio.get_running_loop()
    executor = _single_thread_executor(loop)
    if executor is None:
        return await database_sync_to_async(function)(*args, **kwargs)
    future = loop.create_future()
    context = contextvars.copy_context()
    executor.submit(_work, loop, future, context, function, args, kwargs)
    return await future


def _single_thread_executor(loop: asyncio.AbstractEventLoop) -> Executor | None:
    """asgiref's one thread-sensitive executor, if asgiref would pick it here; else None.

    The same tests, in the same order, as ``SyncToAsync.__call__`` (asgiref 3.8–3.13).
    """
    if _outer_sync_executor() or SyncToAsync.thread_sensitive_context.get(None) is not None:
        return None
    if loop in AsyncToSync.loop_thread_executors or SyncToAsync.deadlock_context.get(False):
        return None
    return SyncToAsync.single_thread_executor


def _outer_sync_executor() -> bool:
    """Whether ``AsyncToSync.executors.current`` is set: this code runs under ``async_to_sync``.

    Read from the ``Local``'s storage directly: the public ``getattr(..., None)`` raises and
    catches ``AttributeError`` twice when it is not set (the usual case here). An asgiref
    whose ``Local`` is built otherwise is asked the public way.
    """
    executors = AsyncToSync.executors
    try:
        storage = executors._storage._data.get(None)  # _DefaultLocal -> _CVar -> ContextVar
        if storage is None or storage.thread_id != threading.get_ident():
            return False
        return storage.data.get("current") is not None
    except AttributeError:
        return getattr(executors, "current", None) is not None


_hop = threading.local()  # .after: callbacks for the loop, while this thread runs a hop


def call_on_loop(callback: Callable[..., Any], *args: Any) -> bool:
    """Run ``callback(*args)`` in the event loop of the hop this thread is running, once
    the hop is back there (even if it raised). False, and nothing done, when this thread
    is not running a hop of :func:`run`."""
    after = getattr(_hop, "after", None)
    if after is None:
        return False
    after.append((callback, args))
    return True


def _work(
    loop: asyncio.AbstractEventLoop,
    future: asyncio.Future,
    context: contextvars.Context,
    function: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> None:
    """In the database thread: run ``function`` as ``database_sync_to_async`` would."""
    # What asgiref's thread_handler sets: async_to_sync in this thread (a signal receiver)
    # runs its coroutine in the loop that made this hop.
    local = SyncToAsync.threadlocal
    local.main_event_loop = loop
    local.main_event_loop_pid = os.getpid()
    local.task_context = []
    result: Any = None
    error: BaseException | None = None
    after: list[tuple[Callable[..., Any], tuple[Any, ...]]] = []
    _hop.after = after
    try:
        # Before the work, as database_sync_to_async does; after it only when it raised (a
        # connection an error may have broken goes at once). A connection that merely
        # outlived CONN_MAX_AGE is closed by the next user of this thread, which checks
        # first as well (this hop, database_sync_to_async, Django's request_started).
        close_old_connections()
        result = context.run(function, *args, **kwargs)
    except BaseException as exc:  # handed to the awaiting task, as asgiref does
        error = exc
        with contextlib.suppress(Exception):
            close_old_connections()
    finally:
        _hop.after = None
    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: nobody waits now
        loop.call_soon_threadsafe(_settle, future, result, error, after)


def _settle(
    future: asyncio.Future,
    result: Any,
    error: BaseException | None,
    after: list[tuple[Callable[..., Any], tuple[Any, ...]]],
) -> None:
    for callback, args in after:
        try:
            callback(*args)
        except Exception:
            logger.exception("a callback after a database hop failed")
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
