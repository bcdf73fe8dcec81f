"""A server process's background work: the sweep, the connections' timers, and the tasks
that outlive one connection.

Each event loop that serves signaling connections has one :class:`Sweeper`, started by
its first connection (:func:`running_sweeper`) and owned by the app config. Its
:class:`Timers` run every connection's own deadlines (the sign-in deadline, presence
renewal, the idle close) from one task, so that an idle connection has no task of its own.
Every ``SWEEP_INTERVAL`` seconds it

* finalizes calls left behind (:func:`directcall.calls.sweep`) and tells their parties;
* converges the connections it watches: a connection whose call ended without the state
  reaching it (a message lost in a Redis restart, a full channel) is told now.

``manage.py directcall_sweep --loop`` runs a sweeper on its own, for deployments that
want the sweep apart from the servers as well.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import math
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol, TypeVar

from channels.db import database_sync_to_async
from django.apps import apps

from . import calls, errors, transport
from .conf import get_settings
from .models import Call

logger = logging.getLogger("directcall.sweeper")

_T = TypeVar("_T")


class Watched(Protocol):
    """A connection the sweeper keeps in step with the database."""

    def call_ids(self) -> list[str]:
        """The calls this connection holds as live."""

    async def converge(self, ended: dict[str, Call]) -> None:
        """Tell this connection's client of the ``ended`` calls it still holds as live."""


class Timed(Protocol):
    """What :class:`Timers` keeps: an object with a slot for its place in the schedule."""

    timer_slot: int | None

    def on_timer(self, now: float) -> float | None:
        """Its time came (``time.monotonic()``): act, and say when next (None: never)."""


class Timers:
    """Every connection's next deadline, run by one task of the event loop.

    A timing wheel: deadlines are rounded up to :data:`TICK` and kept in one bucket per
    tick (a dict used as an ordered set, so that moving or cancelling one is O(1)); a heap
    of the buckets' numbers tells the task when to wake. An object costs a reference in a
    bucket and its ``timer_slot``, where a task per connection cost a task, its coroutine,
    a sleeping future and a timer handle (about 1.4 KiB; docs/performance.md). Callbacks
    are synchronous and quick: what must wait (a socket to close, a cache to renew) goes
    to a task, or to a :meth:`batch` that one task runs for all the objects due together.
    """

    TICK = 0.05  # seconds: deadlines are kept at most this late

    def __init__(self, spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]]) -> None:
        self._spawn = spawn
        self._buckets: dict[int, dict[Timed, None]] = {}
        self._slots: list[int] = []  # heap of the buckets' numbers
        self._batches: dict[Callable[[list[Any]], Coroutine[Any, Any, None]], list[Any]] = {}
        self._wake: asyncio.Future[None] | None = None
        self._waking_at: int | None = None  # the slot the task sleeps until

    def __len__(self) -> int:
        return sum(len(bucket) for bucket in self._buckets.values())

    def at(self, item: Timed, when: float) -> None:
        """Call ``item.on_timer`` at ``when`` (``time.monotonic()``) instead of before."""
        slot = math.ceil(when / self.TICK)
        if item.timer_slot == slot:
            return
        self.cancel(item)
        bucket = self._buckets.get(slot)
        if bucket is None:
            bucket = self._buckets[slot] = {}
            heapq.heappush(self._slots, slot)
            if self._wake is not None and (self._waking_at is None or slot < self._waking_at):
                _set(self._wake)  # the task sleeps past this slot: wake it
        bucket[item] = None
        item.timer_slot = slot

    def cancel(self, item: Timed) -> None:
        """No more calls for ``item`` (until :meth:`at` again)."""
        slot = item.timer_slot
        if slot is not None:
            item.timer_slot = None
            bucket = self._buckets.get(slot)
            if bucket is not None:
                bucket.pop(item, None)

    def batch(self, run: Callable[[list[Any]], Coroutine[Any, Any, None]], item: Any) -> None:
        """From a callback: ``run`` gets ``item`` with the others batched in the same round,
        in one task, once the round is over."""
        self._batches.setdefault(run, []).append(item)

    async def run_forever(self) -> None:
        """Call every object whose time came, in order, until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            while self._slots and not self._buckets.get(self._slots[0]):
                self._buckets.pop(heapq.heappop(self._slots), None)  # emptied by cancel()
            self._wake = loop.create_future()
            if not self._slots:
                self._waking_at = None
                await self._wake
                continue
            slot = self._slots[0]
            delay = slot * self.TICK - time.monotonic()
            if delay > 0:
                self._waking_at = slot
                handle = loop.call_later(delay, _set, self._wake)
                try:
                    await self._wake
                finally:
                    handle.cancel()
                continue
            self._wake = None
            heapq.heappop(self._slots)
            self._round(self._buckets.pop(slot, {}))

    def _round(self, bucket: dict[Timed, None]) -> None:
        now = time.monotonic()
        for item in bucket:
            item.timer_slot = None
            try:
                when = item.on_timer(now)
            except Exception:
                logger.exception("a timer failed")
                continue
            if when is not None:
                self.at(item, when)
        batches, self._batches = self._batches, {}
        for run, items in batches.items():
            self._spawn(run(items))


def _set(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class Sweeper:
    """The sweep loop and the timers of one event loop, and a home for tasks no connection
    may cancel."""

    def __init__(self) -> None:
        # The signed-in connections (their parties), each removed by forget() when it ends.
        self.watched: dict[Watched, None] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._timers_task: asyncio.Task[None] | None = None
        self.timers = Timers(self.spawn)
        self.stopped = False

    def start(self) -> None:
        """Start the sweep loop and the timers on the running event loop (once)."""
        if self._loop_task is None:
            loop = asyncio.get_running_loop()
            self._loop_task = loop.create_task(self.run_forever())
            self._timers_task = loop.create_task(self.timers.run_forever())

    async def stop(self) -> None:
        """Cancel the sweep loop, the timers and every task spawned here; wait for them."""
        self.stopped = True
        tasks = [*self._tasks, *filter(None, [self._loop_task, self._timers_task])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def watch(self, connection: Watched) -> None:
        """Converge ``connection`` at every sweep, until :meth:`forget`."""
        self.watched[connection] = None

    def forget(self, connection: Watched) -> None:
        """Stop converging ``connection``."""
        self.watched.pop(connection, None)

    def spawn(self, coro: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        """Run ``coro`` as a task of this process, not of any one connection."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def shielded(self, coro: Coroutine[Any, Any, _T]) -> _T:
        """Await ``coro``, which runs to its end even if the awaiting task is cancelled.

        For a transition and the telling of its parties: a connection that ends, or a
        handler that cancels a timer, must not cut them apart.
        """
        return await asyncio.shield(self.spawn(coro))

    async def run_forever(self) -> None:
        """Sweep every ``SWEEP_INTERVAL`` seconds until cancelled."""
        while True:
            await asyncio.sleep(get_settings().SWEEP_INTERVAL)
            try:
                await self.sweep_once()
            except Exception as exc:
                if errors.is_unavailable(exc):
                    logger.warning("call sweep failed, retrying at the next interval: %r", exc)
                else:
                    logger.error("call sweep failed; retrying at the next interval", exc_info=True)

    async def sweep_once(self) -> list[Call]:
        """One sweep: finalize calls left behind, tell their parties, converge connections.

        The parties are told in tasks of their own, waited for at most ``SWEEP_INTERVAL``:
        a channel layer that stops answering (a Redis that hangs, a network partition)
        holds up the telling of those calls, each attempt for at most
        ``transport.SEND_TIMEOUT``, and never the next sweeps, which keep ending overdue
        calls in the database. This process's own connections hear of their calls' ends
        through :meth:`converge` in any case.
        """
        ended = await database_sync_to_async(calls.sweep)()
        telling = [self.spawn(transport.announce(call)) for call in ended]
        if telling:
            await asyncio.wait(telling, timeout=get_settings().SWEEP_INTERVAL)
        await self.converge()
        return ended

    async def drain(self) -> None:
        """Wait for every task spawned here to end (a one-off sweep before its loop ends)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def converge(self) -> None:
        """Tell the watched connections of their calls that ended (one query for all)."""
        connections = list(self.watched)
        held = {call_id for connection in connections for call_id in connection.call_ids()}
        if not held:
            return
        ended = await database_sync_to_async(calls.ended_among)(held)
        if ended:
            for connection in connections:
                await connection.converge(ended)


def running_sweeper() -> Sweeper:
    """The running event loop's sweeper, started on first use."""
    return apps.get_app_config("directcall").sweeper_of(asyncio.get_running_loop())


async def stop_running_sweeper() -> None:
    """Stop the running event loop's sweeper, if it has one (tests end their loops so)."""
    await apps.get_app_config("directcall").stop_sweeper_of(asyncio.get_running_loop())
