"""directcall's in-memory channel layer (directcall.layers): subscriptions, which hand a
channel's messages to its connection as they are sent, so that it needs no task waiting in
``receive()``."""

from __future__ import annotations

import asyncio
import threading

from asgiref.sync import async_to_sync

from directcall.layers import InMemoryChannelLayer


class Inbox:
    def __init__(self) -> None:
        self.got: list[dict] = []
        self.loops: list[asyncio.AbstractEventLoop] = []
        self.arrived = asyncio.Event()

    def deliver(self, message: dict) -> None:
        self.got.append(message)
        self.loops.append(asyncio.get_running_loop())
        self.arrived.set()

    async def count(self, n: int) -> list[dict]:
        while len(self.got) < n:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 5)
        return self.got


async def test_a_subscribed_channel_gets_its_messages_in_order_never_inline():
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    await layer.send(channel, {"type": "dc.kept", "n": 0})  # before: handed over at once
    inbox = Inbox()
    layer.subscribe(channel, inbox)
    message = {"type": "dc.state", "n": 1}
    await layer.send(channel, message)
    assert len(inbox.got) == 0  # soon after the send, not inside it
    await layer.group_add("people", channel)
    await layer.group_send("people", {"type": "dc.revoke", "n": 2})
    got = await inbox.count(3)
    assert [m["n"] for m in got] == [0, 1, 2]
    assert got[1] == message and got[1] is not message  # a copy, as receive() gives
    assert channel not in layer.channels  # nothing kept for it


async def test_after_unsubscribing_messages_wait_for_receive_again():
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    inbox = Inbox()
    layer.subscribe(channel, inbox)
    layer.unsubscribe(channel)
    await layer.send(channel, {"type": "dc.late"})
    assert (await asyncio.wait_for(layer.receive(channel), 1))["type"] == "dc.late"
    assert inbox.got == []


async def test_a_message_sent_from_another_thread_arrives_in_the_subscriber_s_loop():
    layer = InMemoryChannelLayer()
    channel = await layer.new_channel()
    inbox = Inbox()
    layer.subscribe(channel, inbox)
    thread = threading.Thread(
        target=lambda: async_to_sync(layer.send)(channel, {"type": "dc.revoke"})
    )
    thread.start()
    await asyncio.to_thread(thread.join)
    got = await inbox.count(1)
    assert got == [{"type": "dc.revoke"}] and inbox.loops == [asyncio.get_running_loop()]
