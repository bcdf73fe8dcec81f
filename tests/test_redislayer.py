"""directcall's pub/sub channel layer (directcall/redislayer.py) against a real Redis.

Two layer instances stand for two server processes (each has its own connections). The
consumer suites run on this layer too (the ``dclayer`` case of ``channel_backend`` in
conftest.py), and the multi-process, fault and outage tests run their servers on it
(tests/mp_settings.py).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator

import pytest
import redis
from asgiref.sync import async_to_sync

from directcall import errors
from directcall.redislayer import RedisPubSubLayer, _LoopLayer, _Subscriber

REDIS_URL = os.environ.get("REDIS_URL")
pytestmark = pytest.mark.skipif(not REDIS_URL, reason="REDIS_URL is not set")


@pytest.fixture(autouse=True)
def clean_cache() -> None:
    """Override conftest's: these tests use no cache."""


def pair(url: str | None = None, **config) -> tuple[RedisPubSubLayer, RedisPubSubLayer]:
    """Two layers on one prefix, as two processes of one site."""
    prefix = f"dcl{uuid.uuid4().hex[:8]}"
    hosts = [{"address": url or REDIS_URL, "socket_timeout": None}]
    return (
        RedisPubSubLayer(hosts=hosts, prefix=prefix, **config),
        RedisPubSubLayer(hosts=hosts, prefix=prefix, **config),
    )


def subscribers(url: str, name: str) -> int:
    with redis.Redis.from_url(url) as client:
        return dict(client.pubsub_numsub(name)).get(name.encode(), 0)


async def until_subscribed(channel: str, count: int, url: str | None = None) -> None:
    """Wait (up to 5 s) until Redis counts ``count`` subscribers of ``channel``."""
    for _ in range(500):
        if subscribers(url or REDIS_URL, channel) == count:
            return
        await asyncio.sleep(0.01)
    assert subscribers(url or REDIS_URL, channel) == count


@pytest.fixture
async def layers() -> AsyncIterator[tuple[RedisPubSubLayer, RedisPubSubLayer]]:
    """:func:`pair` on the shared Redis, flushed after the test."""
    a, b = pair()
    yield a, b
    await a.flush()
    await b.flush()


async def test_a_message_reaches_a_channel_of_another_process_as_sent(layers) -> None:
    a, b = layers
    channel = await b.new_channel()
    # Subscribed once new_channel returns: a message sent at once is not lost.
    message = {"type": "dc.relay", "frame": {"n": 1, "t": "é"}, "raw": b"\x00\xff", "x": None}
    await a.send(channel, message)
    assert await asyncio.wait_for(b.receive(channel), 5) == message


async def test_messages_of_one_sender_arrive_in_order_and_in_one_write_per_tick(layers) -> None:
    a, b = layers
    channel = await b.new_channel()
    writes = []
    await a.send(channel, {"type": "warm"})
    await asyncio.wait_for(b.receive(channel), 5)
    publisher = a._layer().publishers[0]
    real_write = publisher.transport.write
    publisher.transport.write = lambda data: (writes.append(data), real_write(data))
    for i in range(50):
        await a.send(channel, {"type": "m", "i": i})
    await asyncio.sleep(0)
    assert len(writes) == 1 and writes[0].count(b"PUBLISH") == 50
    for i in range(200):  # and across ticks
        await a.send(channel, {"type": "m", "i": 50 + i})
        if i % 7 == 0:
            await asyncio.sleep(0)
    got = [(await asyncio.wait_for(b.receive(channel), 5))["i"] for _ in range(250)]
    assert got == list(range(250))


async def test_groups_reach_every_member_in_every_process_until_discarded(layers) -> None:
    a, b = layers
    here, there, other = await a.new_channel(), await b.new_channel(), await b.new_channel()
    await a.group_add("directcall.watch.1.jane", here)
    await b.group_add("directcall.watch.1.jane", there)
    await b.group_send("directcall.watch.1.jane", {"type": "dc.watched", "cuid": "jane"})
    assert (await asyncio.wait_for(a.receive(here), 5))["cuid"] == "jane"
    assert (await asyncio.wait_for(b.receive(there), 5))["cuid"] == "jane"
    await b.group_discard("directcall.watch.1.jane", there)
    await b.group_discard("directcall.watch.1.jane", there)  # twice: nothing happens
    await a.group_send("directcall.watch.1.jane", {"type": "dc.watched", "cuid": "again"})
    await b.send(there, {"type": "direct"})
    assert (await asyncio.wait_for(a.receive(here), 5))["cuid"] == "again"
    assert (await asyncio.wait_for(b.receive(there), 5))["type"] == "direct"
    assert not b._layer().boxes[other].items
    with pytest.raises(RuntimeError):
        await a.group_add("directcall.watch.1.jane", there)  # not a channel of a


async def test_a_cancelled_receive_unsubscribes_its_channel(layers) -> None:
    a, b = layers
    channel = await b.new_channel()
    assert subscribers(REDIS_URL, channel) == 1
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(b.receive(channel), 0.05)
    await a.send(channel, {"type": "late"})  # at most once: nobody listens
    await until_subscribed(channel, 0)
    assert channel not in b._layer().boxes


def test_sync_code_can_send_to_a_group_and_leaves_no_connection_open() -> None:
    """revocation.py sends from sync code (a new event loop per async_to_sync call)."""
    a, b = pair()
    received = []

    async def listen() -> None:
        channel = await b.new_channel()
        await b.group_add("revoked", channel)
        await asyncio.to_thread(async_to_sync(a.group_send), "revoked", {"type": "dc.revoked"})
        received.append(await asyncio.wait_for(b.receive(channel), 5))
        await b.flush()

    for _ in range(3):
        async_to_sync(a.group_send)("revoked", {"type": "nobody"})
    asyncio.run(listen())
    assert received == [{"type": "dc.revoked"}]
    assert a._layers == {}  # each short-lived loop closed its connections with it


def test_a_message_cut_anywhere_by_the_socket_is_read_whole() -> None:
    layer = _LoopLayer([], "p", capacity=10)
    got = []
    layer.deliver = lambda name, data: got.append((name, data))
    subscriber = _Subscriber(None, layer)
    stream = (
        b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n"
        b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nab\r\nc\r\n"
        b"*3\r\n$7\r\nmessage\r\n$4\r\ngrp1\r\n$0\r\n\r\n"
        b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n"
        b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$3\r\nxyz\r\n"
    )
    expected = [(b"ch", b"ab\r\nc"), (b"grp1", b""), (b"ch", b"xyz")]
    for step in (1, 2, 3, 5, 7, 11, len(stream)):
        got.clear()
        subscriber.buf = b""
        for start in range(0, len(stream), step):
            subscriber.data_received(stream[start : start + step])
        assert got == expected, step
        assert subscriber.buf == b""


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
async def test_a_redis_restart_breaks_sends_for_a_moment_then_everything_works_again(
    tmp_path,
) -> None:
    from .test_outages import KillableRedis

    server = KillableRedis(tmp_path)
    server.start()
    a, b = pair(server.url)
    try:
        channel = await b.new_channel()
        await b.group_add("g", channel)
        await a.send(channel, {"type": "before"})
        assert (await asyncio.wait_for(b.receive(channel), 5))["type"] == "before"
        await asyncio.to_thread(server.kill)
        await asyncio.sleep(0.05)  # the layers see their connections close
        with pytest.raises(redis.ConnectionError) as failed:
            await a.send(channel, {"type": "lost"})
        assert errors.is_unavailable(failed.value)  # what directcall's transport retries
        await asyncio.to_thread(server.start)  # empty: no subscriptions
        # The subscription comes back by itself (its receive never failed); a sender retries.
        await until_subscribed(channel, 1, server.url)
        await until_subscribed(f"{a.prefix}__group__g", 1, server.url)
        await a.send(channel, {"type": "after"})
        await a.group_send("g", {"type": "group after"})
        assert (await asyncio.wait_for(b.receive(channel), 5))["type"] == "after"
        assert (await asyncio.wait_for(b.receive(channel), 5))["type"] == "group after"
    finally:
        await a.flush()
        await b.flush()
        server.stop()


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
async def test_new_channels_fail_clearly_while_redis_is_down(tmp_path) -> None:
    from .test_outages import KillableRedis

    server = KillableRedis(tmp_path)
    server.start()
    port = server.port
    await asyncio.to_thread(server.kill)
    a, _b = pair(f"redis://127.0.0.1:{port}/0")
    try:
        with pytest.raises(redis.ConnectionError):
            await a.new_channel()
        assert a._layer().boxes == {}
    finally:
        await a.flush()


async def test_a_password_is_sent(tmp_path) -> None:
    """AUTH before anything else, from the URL; a wrong one is a clear connection error."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    from .test_outages import KillableRedis

    server = KillableRedis(tmp_path)
    server.start()
    try:
        with redis.Redis.from_url(server.url) as client:
            client.config_set("requirepass", "s3cret")
        a, b = pair(f"redis://:s3cret@127.0.0.1:{server.port}/0")
        channel = await b.new_channel()
        await a.send(channel, {"type": "ok"})
        assert (await asyncio.wait_for(b.receive(channel), 5))["type"] == "ok"
        await a.flush()
        await b.flush()
        wrong, _ = pair(f"redis://:nope@127.0.0.1:{server.port}/0")
        with pytest.raises(redis.ConnectionError):
            await wrong.send("x", {"type": "no"})
        await wrong.flush()
    finally:
        server.stop()


# -- subscriptions: a connection's messages handed to it, no task waiting in receive() ---------


class Inbox:
    """A subscriber (what OrderedConsumer.deliver is to the layer)."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.got: list[dict] = []
        self.loops: list[asyncio.AbstractEventLoop] = []
        self.arrived = asyncio.Event()
        self.fail_on = fail_on

    def deliver(self, message: dict) -> None:
        self.got.append(message)
        self.loops.append(asyncio.get_running_loop())
        self.arrived.set()
        if message.get("type") == self.fail_on:
            raise RuntimeError("a handler failed")

    async def count(self, n: int) -> list[dict]:
        while len(self.got) < n:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 5)
        return self.got


async def test_a_subscribed_channel_gets_its_messages_in_order_with_no_task(layers) -> None:
    a, b = layers
    channel = await b.new_channel()
    await a.send(channel, {"type": "dc.kept", "n": 0})  # before: kept, then handed over
    while not b._layer().boxes[channel].items:
        await asyncio.sleep(0.01)
    inbox = Inbox()
    b.subscribe(channel, inbox)
    assert inbox.got == []  # soon after, not inside subscribe()
    assert not b._layer().boxes[channel].items
    await b.group_add("people", channel)
    for n in range(1, 200):
        await a.send(channel, {"type": "dc.state", "n": n, "raw": b"\x00"})
    await a.group_send("people", {"type": "dc.revoke", "n": 200})
    got = await inbox.count(201)
    assert [m["n"] for m in got] == list(range(201))
    assert got[1] == {"type": "dc.state", "n": 1, "raw": b"\x00"}
    assert set(inbox.loops) == {asyncio.get_running_loop()}
    assert not b._layer().boxes[channel].items  # nothing kept for receive()
    # The Redis subscription is the one new_channel made: one per channel, as before.
    assert subscribers(REDIS_URL, channel) == 1


async def test_unsubscribing_stops_delivery_and_the_redis_subscription(layers) -> None:
    a, b = layers
    channel = await b.new_channel()
    inbox = Inbox()
    b.subscribe(channel, inbox)
    await a.send(channel, {"type": "dc.one"})
    await inbox.count(1)
    b.unsubscribe(channel)
    b.unsubscribe(channel)  # twice: nothing happens
    assert channel not in b._layer().boxes
    await until_subscribed(channel, 0)  # UNSUBSCRIBE, as when a consumer's receive() was cancelled
    await a.send(channel, {"type": "dc.late"})  # at most once: nobody listens
    # A receive() afterwards subscribes the channel again, as for any channel.
    receiving = asyncio.ensure_future(b.receive(channel))
    await until_subscribed(channel, 1)
    await a.send(channel, {"type": "dc.again"})
    assert (await asyncio.wait_for(receiving, 5))["type"] == "dc.again"
    assert [m["type"] for m in inbox.got] == ["dc.one"]


async def test_after_unsubscribing_a_waiting_receive_gets_the_messages(layers) -> None:
    a, b = layers
    channel = await b.new_channel()
    inbox = Inbox()
    b.subscribe(channel, inbox)
    receiving = asyncio.ensure_future(b.receive(channel))
    await asyncio.sleep(0)  # waiting
    b.unsubscribe(channel)
    await a.send(channel, {"type": "dc.late"})
    assert (await asyncio.wait_for(receiving, 5))["type"] == "dc.late"
    assert inbox.got == []


async def test_a_failing_subscriber_does_not_stop_the_others(caplog, layers) -> None:
    a, b = layers
    bad, good = await b.new_channel(), await b.new_channel()
    failing, inbox = Inbox(fail_on="dc.boom"), Inbox()
    b.subscribe(bad, failing)
    b.subscribe(good, inbox)
    await b.group_add("room", bad)
    await b.group_add("room", good)
    await a.send(bad, {"type": "dc.boom"})
    await a.group_send("room", {"type": "dc.boom"})
    await a.send(good, {"type": "dc.fine"})
    await a.send(bad, {"type": "dc.after"})
    assert [m["type"] for m in await inbox.count(2)] == ["dc.boom", "dc.fine"]
    assert [m["type"] for m in await failing.count(3)] == ["dc.boom", "dc.boom", "dc.after"]
    assert "a subscriber of channel" in caplog.text


async def test_a_subscriber_that_leaves_its_group_while_handling_it() -> None:
    """A handler may group_discard at once (before its first await): the reader goes on
    with the group's other members."""
    a, b = pair()
    try:
        channels = [await b.new_channel() for _ in range(3)]
        inboxes = []
        for channel in channels:
            inbox = Inbox()

            def deliver(message, inbox=inbox, channel=channel):
                Inbox.deliver(inbox, message)
                b._layer().groups[b._group_channel("room")].discard(channel)

            inbox.deliver = deliver
            inboxes.append(inbox)
            b.subscribe(channel, inbox)
            await b.group_add("room", channel)
        await a.group_send("room", {"type": "dc.left"})
        for inbox in inboxes:
            assert [m["type"] for m in await inbox.count(1)] == ["dc.left"]
    finally:
        await a.flush()
        await b.flush()


async def test_subscribing_a_channel_not_made_here_subscribes_it_in_redis(layers) -> None:
    a, b = layers
    channel = f"{b.prefix}specific.elsewhere"
    inbox = Inbox()
    b.subscribe(channel, inbox)
    await until_subscribed(channel, 1)
    await a.send(channel, {"type": "dc.here"})
    assert (await inbox.count(1))[0]["type"] == "dc.here"
    b.unsubscribe(channel)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
async def test_a_subscription_comes_back_after_a_redis_restart(tmp_path) -> None:
    from .test_outages import KillableRedis

    server = KillableRedis(tmp_path)
    server.start()
    a, b = pair(server.url)
    try:
        channel = await b.new_channel()
        inbox = Inbox()
        b.subscribe(channel, inbox)
        await b.group_add("g", channel)
        await a.send(channel, {"type": "before"})
        await inbox.count(1)
        await asyncio.to_thread(server.kill)
        await asyncio.to_thread(server.start)  # empty: no subscriptions
        await until_subscribed(channel, 1, server.url)
        await until_subscribed(f"{a.prefix}__group__g", 1, server.url)
        for _ in range(100):  # the sender's connection comes back on a later send
            try:
                await a.send(channel, {"type": "after"})
                break
            except redis.ConnectionError:
                await asyncio.sleep(0.05)
        await a.group_send("g", {"type": "group after"})
        got = await inbox.count(3)
        assert [m["type"] for m in got] == ["before", "after", "group after"]
    finally:
        await a.flush()
        await b.flush()
        server.stop()


async def test_capacity_bounds_kept_messages_not_subscribed_ones() -> None:
    a, b = pair(capacity=3)
    try:
        channel = await b.new_channel()
        assert b._layer().boxes[channel].items == ()  # no deque until a message is kept
        for n in range(5):
            await a.send(channel, {"type": "m", "n": n})
        await a.send(channel, {"type": "last"})
        for _ in range(100):
            if b._layer().boxes[channel].dropped == 3:
                break
            await asyncio.sleep(0.01)
        assert [(await b.receive(channel))["n"] for _ in range(3)] == [0, 1, 2]
        inbox = Inbox()
        b.subscribe(channel, inbox)
        for n in range(10):  # handed over as read: nothing kept, nothing dropped
            await a.send(channel, {"type": "m", "n": n})
        assert [m["n"] for m in await inbox.count(10)] == list(range(10))
        assert b._layer().boxes[channel].dropped == 3
    finally:
        await a.flush()
        await b.flush()
