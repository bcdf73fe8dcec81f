"""A server process's background work: the sweep, and the tasks that outlive one connection.

Each event loop that serves signaling connections has one :class:`Sweeper`, started by
its first connection (:func:`running_sweeper`) and owned by the app config. Every
``SWEEP_INTERVAL`` seconds it

* finalizes calls left behind (:func:`directcall.calls.sweep`) and tells their parties;
* converges the connections it watches: a connection whose call ended without the state
  reaching it (a message lost in a Redis restart, a full channel) is told now.

``manage.py directcall_sweep --loop`` runs a sweeper on its own, for deployments that
want the sweep apart from the servers as well.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Coroutine
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


class Sweeper:
    """The sweep loop of one event loop, and a home for tasks no connection may cancel."""

    def __init__(self) -> None:
        self.watched: weakref.WeakSet[Watched] = weakref.WeakSet()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self.stopped = False

    def start(self) -> None:
        """Start the sweep loop on the running event loop (once)."""
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self.run_forever())

    async def stop(self) -> None:
        """Cancel the sweep loop and every task spawned here, and wait for them to end."""
        self.stopped = True
        tasks = [*self._tasks, *filter(None, [self._loop_task])]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def watch(self, connection: Watched) -> None:
        """Converge ``connection`` at every sweep, until :meth:`forget` (or it is collected)."""
        self.watched.add(connection)

    def forget(self, connection: Watched) -> None:
        """Stop converging ``connection``."""
        self.watched.discard(connection)

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
        """One sweep: finalize calls left behind, tell their parties, converge connections."""
        ended = await database_sync_to_async(calls.sweep)()
        for call in ended:
            await transport.announce(call)
        await self.converge()
        return ended

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
