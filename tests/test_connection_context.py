"""A delivered message's handler runs in its connection's context, never its sender's.

The same-process path (:mod:`directcall.transport`) hands a message to the receiving
connection's :meth:`~directcall.connection.OrderedConsumer.deliver`, which starts the
handler at once. A sender in synchronous code — a view or a management command calling
``async_to_sync`` from a ``sync_to_async`` thread — runs its coroutine in a context that
carries that call's thread-sensitive executor; the executor quits when the call returns. A
handler that inherited it failed its next database hop with "CurrentThreadExecutor already
quit" (what a27de80, af01793 and 9a83ce8 each worked around for one sender).
"""

from __future__ import annotations

import asyncio
import contextvars

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator

from directcall import dbthread, transport
from directcall.connection import OrderedConsumer

pytestmark = pytest.mark.parametrize("channel_backend", ["memory"], indirect=True)

WHO = contextvars.ContextVar("who", default="nobody")


async def _database_sync_to_async(function):
    return await database_sync_to_async(function)()


async def _dbthread_run(function):
    return await dbthread.run(function)


HOPS = {"database_sync_to_async": _database_sync_to_async, "dbthread.run": _dbthread_run}


class Probe(OrderedConsumer):
    """Handles ``dc.probe``: waits until the test lets it go on, then hops to the database
    thread, and reports what it saw."""

    release: asyncio.Event
    outcome: asyncio.Future
    hop = staticmethod(_database_sync_to_async)

    async def connect(self) -> None:
        await self.accept()
        await self.send(text_data=self.channel_name)

    async def dc_probe(self, message: dict) -> None:
        seen = [WHO.get()]
        try:
            await self.release.wait()  # the sender has returned by now
            seen.append(WHO.get())
            seen.append(await self.hop(lambda: "hopped"))
        except Exception as exc:
            self.outcome.set_exception(exc)
        else:
            self.outcome.set_result(seen)


@pytest.fixture
async def probe(signaling):
    loop = asyncio.get_running_loop()
    Probe.release, Probe.outcome = asyncio.Event(), loop.create_future()
    communicator = WebsocketCommunicator(Probe.as_asgi(), "/ws/")
    connected, _ = await communicator.connect()
    assert connected
    channel = await communicator.receive_from()
    yield channel
    await communicator.disconnect()


def _a_view(send, channel: str) -> None:
    """Synchronous code sending to a connection, as a Django view or a command does."""
    WHO.set("the sender")
    async_to_sync(send)(channel, {"type": "dc.probe"})


async def _send(channel: str, message: dict) -> None:
    assert await transport.send(channel, message)


async def _deliver(channel: str, message: dict) -> None:
    # What transport.announce does for a connection of this process.
    transport._local[channel].deliver(message)


async def _layer_send(channel: str, message: dict) -> None:
    # The in-memory layer hands it to the subscribed connection, in a copy of this context.
    await get_channel_layer().send(channel, message)


async def _group_send(channel: str, message: dict) -> None:
    # What revocation does (dc.revoke to an account's or registration's group).
    layer = get_channel_layer()
    await layer.group_add("probe", channel)
    await layer.group_send("probe", message)


SENDERS = {
    "transport.send": _send,
    "deliver": _deliver,
    "layer.send": _layer_send,
    "layer.group_send": _group_send,
}


@pytest.mark.parametrize("hop", HOPS)
@pytest.mark.parametrize("send", SENDERS)
async def test_a_sync_sender_s_context_does_not_reach_the_handler(probe, send, hop, monkeypatch):
    """A view sends; the connection's handler hops to the database after the view returned."""
    monkeypatch.setattr(Probe, "hop", staticmethod(HOPS[hop]))
    assert probe in transport._local  # the same-process path
    await sync_to_async(_a_view)(SENDERS[send], probe)  # returns while the handler waits
    Probe.release.set()
    seen = await asyncio.wait_for(Probe.outcome, 5)
    assert seen == ["nobody", "nobody", "hopped"]


async def test_a_sender_s_context_changes_do_not_reach_the_handler(probe):
    """An async sender, in a context of its own: the handler still sees its connection's."""

    async def sender() -> None:
        WHO.set("the sender")
        await transport.send(probe, {"type": "dc.probe"})

    await asyncio.get_running_loop().create_task(sender(), context=contextvars.Context())
    Probe.release.set()
    seen = await asyncio.wait_for(Probe.outcome, 5)
    assert seen == ["nobody", "nobody", "hopped"]
