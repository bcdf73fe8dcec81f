"""directcall.dbthread: the signaling hot path's hop to the database thread goes to the thread
(and so the connection) that channels' database_sync_to_async would use, and back."""

from __future__ import annotations

import asyncio
import threading

import pytest
from asgiref.sync import AsyncToSync, SyncToAsync, async_to_sync, sync_to_async
from channels.db import database_sync_to_async
from django.db import connections

from directcall import dbthread


def _thread() -> int:
    return threading.get_ident()


async def test_it_runs_in_the_thread_database_sync_to_async_uses():
    assert dbthread._single_thread_executor(asyncio.get_running_loop()) is not None
    assert await dbthread.run(_thread) == await database_sync_to_async(_thread)()
    assert await dbthread.run(_thread) != threading.get_ident()


async def test_arguments_results_and_errors_come_back():
    def add(a: int, b: int = 0) -> int:
        if a < 0:
            raise ValueError("negative")
        return a + b

    assert await dbthread.run(add, 2, b=3) == 5
    with pytest.raises(ValueError, match="negative"):
        await dbthread.run(add, -1)


async def test_the_callers_context_variables_are_seen():
    import contextvars

    var = contextvars.ContextVar("dbthread_test")
    var.set("from the loop")
    assert await dbthread.run(var.get) == "from the loop"


async def test_async_to_sync_in_the_thread_runs_in_the_callers_loop():
    loop = asyncio.get_running_loop()

    async def which_loop() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    assert await dbthread.run(async_to_sync(which_loop)) is loop


async def test_a_cancelled_caller_does_not_break_the_thread():
    started, release = threading.Event(), threading.Event()

    def slow() -> str:
        started.set()
        release.wait(5)
        return "done"

    task = asyncio.ensure_future(dbthread.run(slow))
    await asyncio.get_running_loop().run_in_executor(None, started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    release.set()
    assert await dbthread.run(lambda: "next") == "next"


def test_under_async_to_sync_it_leaves_the_choice_to_asgiref():
    """A sync caller of async code (tests, sync views): the ORM work runs in that caller's
    thread, as with database_sync_to_async (its connection, its transaction)."""

    async def both() -> tuple[int, int, bool]:
        assert dbthread._outer_sync_executor()
        here = await dbthread.run(_thread)
        there = await database_sync_to_async(_thread)()
        return here, there, dbthread._single_thread_executor(asyncio.get_running_loop()) is None

    here, there, fell_back = async_to_sync(both)()
    assert here == there == threading.get_ident()
    assert fell_back


@pytest.mark.parametrize("under_async_to_sync", [False, True])
def test_the_quick_check_agrees_with_asgiref(under_async_to_sync):
    async def check() -> tuple[bool, bool]:
        public = getattr(AsyncToSync.executors, "current", None) is not None
        return dbthread._outer_sync_executor(), public

    if under_async_to_sync:
        quick, public = async_to_sync(check)()
    else:
        quick, public = asyncio.run(check())
    assert quick == public == under_async_to_sync


@pytest.mark.django_db(transaction=True)
async def test_the_connection_is_the_one_database_sync_to_async_uses():
    def connection_id() -> int:
        return id(connections["default"])

    assert await dbthread.run(connection_id) == await sync_to_async(connection_id)()
    # asgiref's thread-local loop for async_to_sync is the caller's, as its own hop sets it
    assert await dbthread.run(lambda: SyncToAsync.threadlocal.main_event_loop) is (
        asyncio.get_running_loop()
    )


async def test_work_can_leave_callbacks_for_the_loop():
    loop_thread = threading.get_ident()
    ran: list[tuple[str, int]] = []

    def queue(name: str, fail: bool = False) -> bool:
        queued = dbthread.call_on_loop(lambda: ran.append((name, threading.get_ident())))
        if fail:
            raise RuntimeError("after queueing")
        return queued

    assert await dbthread.run(queue, "first") is True
    assert ran == [("first", loop_thread)]
    with pytest.raises(RuntimeError):
        await dbthread.run(queue, "second", True)
    assert ran[-1] == ("second", loop_thread)
    # Not in a hop of dbthread.run: nothing is queued.
    assert await database_sync_to_async(queue)("third") is False
    assert dbthread.call_on_loop(print) is False
    assert len(ran) == 2
