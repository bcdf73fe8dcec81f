"""A Redis pub/sub channel layer that speaks RESP itself: the cheapest way across processes.

Same semantics as ``channels_redis.pubsub.RedisPubSubChannelLayer`` (at most once, no
capacity, groups as Redis subscriptions, a reconnect after a Redis restart), at a fraction
of its CPU per message (docs/deployment.md, "Which channel layer"). What it saves:

- **No client library in the hot path.** Each process (each event loop) holds two
  connections per Redis host, both plain asyncio protocols: one that publishes, one that
  is subscribed. A ``send`` is a ``msgpack`` dump and a ``PUBLISH`` appended to a buffer;
  redis-py's pool, lock, command packing, response parsing and per-command round trip are
  gone.
- **One write per event-loop tick.** Every ``PUBLISH`` made while the loop runs its ready
  callbacks goes out in one ``write`` when they are done (pipelining), so a burst of frames
  costs one system call and one wake-up of Redis instead of one per frame. ``send`` does
  not wait for Redis, and the publishing connection asks for no replies at all
  (``CLIENT REPLY OFF``): nothing wakes the process up after a send.
- **The subscription is read in the protocol's callback**: no reader task and no
  ``asyncio.Queue``. A connection subscribed to its channel
  (:meth:`~RedisPubSubLayer.subscribe`, as directcall's consumers are) is handed its
  messages right there, so that it needs no task waiting in ``receive()`` (a task, its
  coroutines and a future per idle connection, and a wake-up of that task per message);
  other channels' messages go to their mailbox, where ``receive()`` takes them.

Trade-offs (also in docs/deployment.md):

- At most once, as with any pub/sub layer: a message reaches a channel subscribed at that
  moment. ``send`` raises (``redis.exceptions.ConnectionError``, which directcall's
  transport retries) when no connection to Redis can be made; a message written on a
  connection that breaks before Redis reads it is lost without an error (logged) —
  channels_redis's layer reports that case to the sender instead.
- No Redis Sentinel (give a managed endpoint's URL, or use channels_redis's layer), no
  symmetric encryption of messages (channels_redis's ``symmetric_encryption_keys``).
- A channel keeps at most ``capacity`` unread messages (default 10 000); past that, new ones
  are dropped with a warning (channels_redis's pub/sub layer has no bound at all).

Configuration, as channels_redis's (``hosts`` takes URLs — ``redis://``, ``rediss://``,
``unix://`` — ``{"address": URL, ...}`` dicts, whose other keys are ignored, or
``(host, port)`` pairs; channels are spread over several hosts by the same hash)::

    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "directcall.redislayer.RedisPubSubLayer",
            "CONFIG": {"hosts": ["redis://10.0.2.1:6379/0"], "prefix": "mysite"},
        }
    }

Redis pub/sub channels do not belong to a database: sites that share one Redis need
different prefixes.
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import functools
import logging
import socket
import ssl
import types
import uuid
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

import msgpack
from channels.layers import BaseChannelLayer
from redis.exceptions import ConnectionError as RedisConnectionError

if TYPE_CHECKING:
    from .layers import Subscriber

logger = logging.getLogger("directcall.redislayer")

CONNECT_TIMEOUT = 5.0
# Pauses between attempts to get the subscription back after it broke (a Redis restart).
RECONNECT_DELAYS = (0.05, 0.1, 0.2, 0.5, 1.0)
# Channels per SUBSCRIBE command when a connection subscribes to everything again.
SUBSCRIBE_CHUNK = 1000

_MESSAGE = b"*3\r\n$7\r\nmessage\r\n"
_REPLY_OFF = b"*3\r\n$6\r\nCLIENT\r\n$5\r\nREPLY\r\n$3\r\nOFF\r\n"


def _command(*parts: bytes) -> bytes:
    return b"".join(
        [b"*%d\r\n" % len(parts), *(b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)]
    )


def _consistent_hash(value: str, ring_size: int) -> int:
    """channels_redis's hash of a channel name to one of ``ring_size`` hosts."""
    if ring_size == 1:
        return 0
    return int((binascii.crc32(value.encode()) & 0xFFF) / (4096 / ring_size))


class _Incomplete(Exception):
    """The buffer ends inside a reply."""


class _ReplyError(Exception):
    """Redis answered ``-ERR ...``."""


def _parse(buf: bytes, pos: int) -> tuple[Any, int]:
    """One RESP2 reply at ``buf[pos:]``: (value, the position after it)."""
    end = buf.find(b"\r\n", pos)
    if end < 0:
        raise _Incomplete
    kind, head = buf[pos : pos + 1], buf[pos + 1 : end]
    if kind == b"$":
        size = int(head)
        if size < 0:
            return None, end + 2
        stop = end + 2 + size
        if len(buf) < stop + 2:
            raise _Incomplete
        return buf[end + 2 : stop], stop + 2
    if kind == b"*":
        items = []
        pos = end + 2
        for _ in range(int(head)):
            item, pos = _parse(buf, pos)
            items.append(item)
        return items, pos
    if kind == b":":
        return int(head), end + 2
    if kind == b"+":
        return head, end + 2
    if kind == b"-":
        return _ReplyError(head.decode(errors="replace")), end + 2
    raise RedisConnectionError(f"unexpected reply from Redis: {buf[pos : pos + 40]!r}")


class _Host:
    """Where one Redis is, parsed from a channels_redis ``hosts`` entry."""

    def __init__(self, entry: Any) -> None:
        if isinstance(entry, dict):
            if "address" not in entry:
                raise ValueError(
                    "directcall.redislayer takes hosts as URLs or {'address': URL}; for "
                    "Sentinel use a managed endpoint or channels_redis's layer"
                )
            entry = entry["address"]
        if isinstance(entry, (tuple, list)):
            entry = f"redis://{entry[0]}:{entry[1]}"
        url = urlsplit(entry)
        query = parse_qs(url.query)
        self.path = url.path if url.scheme == "unix" else None
        self.host = url.hostname or "localhost"
        self.port = url.port or 6379
        self.username = unquote(url.username) if url.username else None
        password = url.password or (query.get("password") or [None])[0]
        self.password = unquote(password) if password else None
        self.ssl: ssl.SSLContext | None = None
        if url.scheme == "rediss":
            self.ssl = ssl.create_default_context()
            if (query.get("ssl_cert_reqs") or [""])[0].lower() == "none":
                self.ssl.check_hostname = False
                self.ssl.verify_mode = ssl.CERT_NONE
        elif url.scheme not in ("redis", "unix"):
            raise ValueError(f"not a Redis URL: {entry!r}")
        self.label = self.path or f"{self.host}:{self.port}"

    def auth(self) -> bytes | None:
        if self.password is None:
            return None
        if self.username:
            return _command(b"AUTH", self.username.encode(), self.password.encode())
        return _command(b"AUTH", self.password.encode())

    async def connect(self, protocol: _Connection) -> asyncio.Transport:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                if self.path:
                    transport, _ = await loop.create_unix_connection(lambda: protocol, self.path)
                else:
                    transport, _ = await loop.create_connection(
                        lambda: protocol, self.host, self.port, ssl=self.ssl
                    )
                sock = transport.get_extra_info("socket")
                if sock is not None and sock.family != socket.AF_UNIX:
                    # A Redis that vanishes without closing (its machine died) is noticed.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                auth = self.auth()
                if auth is not None:
                    protocol.handshake = loop.create_future()
                    transport.write(auth)
                    reply = await protocol.handshake
                    if isinstance(reply, _ReplyError):
                        transport.abort()
                        raise RedisConnectionError(f"Redis at {self.label}: {reply}")
        except (OSError, TimeoutError) as exc:
            raise RedisConnectionError(f"Error connecting to Redis at {self.label}: {exc}") from exc
        return transport


class _Connection(asyncio.Protocol):
    """What both connections share: connecting once at a time, the handshake's reply."""

    def __init__(self, host: _Host) -> None:
        self.host = host
        self.transport: asyncio.Transport | None = None
        self.connecting: asyncio.Future[None] | None = None
        self.handshake: asyncio.Future[Any] | None = None
        self.closed = False
        self.buf = b""

    async def ensure(self) -> None:
        """Connect unless connected (raises ``redis.exceptions.ConnectionError``)."""
        while self.transport is None:
            if self.closed:
                raise RedisConnectionError("the channel layer was closed")
            if self.connecting is None:
                self.connecting = asyncio.ensure_future(self._connect())
                self.connecting.add_done_callback(self._connected)
            await asyncio.shield(self.connecting)

    def _connected(self, future: asyncio.Future[None]) -> None:
        self.connecting = None
        if not future.cancelled():
            future.exception()  # retrieved: each waiter raises it

    async def _connect(self) -> None:
        self.buf = b""
        transport = await self.host.connect(self)
        if transport.is_closing():
            raise RedisConnectionError(f"Redis at {self.host.label} closed the connection")
        if self.closed:
            transport.abort()
            raise RedisConnectionError("the channel layer was closed")
        self.transport = transport
        self.ready()

    def ready(self) -> None:
        """Connected (and authenticated)."""

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.handshake is not None and not self.handshake.done():
            self.handshake.set_exception(RedisConnectionError("connection closed by Redis"))

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
            self.transport = None


class _Publisher(_Connection):
    """Sends ``PUBLISH`` commands, all of one event-loop tick in one write, and asks Redis
    for no replies (``CLIENT REPLY OFF``): nothing wakes this process up after a send, and
    Redis makes one write fewer per message. A Redis (or proxy) that refuses the command
    answers every ``PUBLISH`` instead; the answers are read and dropped."""

    def __init__(self, host: _Host) -> None:
        super().__init__(host)
        self.out: list[bytes] = []
        self.scheduled = False
        self.writable: asyncio.Future[None] | None = None  # set while Redis reads slowly

    def ready(self) -> None:
        self.transport.write(_REPLY_OFF)

    async def publish(self, channel: bytes, data: bytes) -> None:
        if self.transport is None:
            await self.ensure()
        if self.writable is not None:
            await asyncio.shield(self.writable)
        self.out.append(
            b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n"
            % (len(channel), channel, len(data), data)
        )
        if not self.scheduled:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self.scheduled = False
        out, self.out = self.out, []
        if not out:
            return
        if self.transport is None:
            logger.info("%d message(s) lost: the connection to Redis broke", len(out))
            return
        self.transport.write(out[0] if len(out) == 1 else b"".join(out))

    def data_received(self, data: bytes) -> None:
        if self.handshake is not None and not self.handshake.done():
            self.buf += data
            with contextlib.suppress(_Incomplete):
                reply, pos = _parse(self.buf, 0)
                self.buf = self.buf[pos:]
                self.handshake.set_result(reply)
            return
        # Only when replies are on: ":<subscribers>\r\n", or "-ERR ...\r\n".
        if self.buf:
            data, self.buf = self.buf + data, b""
        if not data.endswith(b"\r\n"):
            self.buf = data[data.rfind(b"\r\n") + 2 :]
        if b"-" in data:
            for line in data.split(b"\r\n"):
                if line.startswith(b"-"):
                    logger.info("Redis answered: %s", line[1:].decode(errors="replace"))

    def pause_writing(self) -> None:
        if self.writable is None:
            self.writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        writable, self.writable = self.writable, None
        if writable is not None and not writable.done():
            writable.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.closed:
            logger.info("the connection to Redis broke; the last messages may be lost")
        writable, self.writable = self.writable, None
        if writable is not None and not writable.done():
            writable.set_exception(RedisConnectionError("connection closed by Redis"))
            writable.exception()


class _Subscriber(_Connection):
    """The subscribed connection: messages go to the layer's mailboxes as they are read."""

    def __init__(self, host: _Host, layer: _LoopLayer) -> None:
        super().__init__(host)
        self.layer = layer
        self.wanted: set[bytes] = set()  # subscribed, or to be once connected
        self.confirmed: set[bytes] = set()
        self.waiting: dict[bytes, list[asyncio.Future[None]]] = {}
        self.reconnecting: asyncio.Task[None] | None = None

    async def subscribe(self, name: bytes) -> None:
        """Subscribe to ``name``; return once Redis confirmed it."""
        self.wanted.add(name)
        if name in self.confirmed:
            return
        waiter = asyncio.get_running_loop().create_future()
        waiters = self.waiting.setdefault(name, [])
        waiters.append(waiter)
        try:
            if self.transport is None:
                await self.ensure()  # subscribes to everything wanted once connected
            elif len(waiters) == 1:
                self.transport.write(_command(b"SUBSCRIBE", name))
            await waiter
        finally:
            if waiter in waiters:
                waiters.remove(waiter)
            if not waiters and self.waiting.get(name) is waiters:
                del self.waiting[name]

    def unsubscribe(self, name: bytes) -> None:
        self.wanted.discard(name)
        self.confirmed.discard(name)
        if self.transport is not None:
            self.transport.write(_command(b"UNSUBSCRIBE", name))

    def ready(self) -> None:
        names = sorted(self.wanted)
        for start in range(0, len(names), SUBSCRIBE_CHUNK):
            self.transport.write(_command(b"SUBSCRIBE", *names[start : start + SUBSCRIBE_CHUNK]))

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        pos = start = 0
        size = len(buf)
        deliver = self.layer.deliver
        try:
            while pos < size:
                start = pos
                if buf.startswith(_MESSAGE, pos):  # the common case, parsed inline
                    pos += 17
                    end = buf.index(b"\r\n", pos)  # ValueError: not all there yet
                    stop = end + 2 + int(buf[pos + 1 : end])
                    if size < stop + 2:
                        raise _Incomplete
                    channel = buf[end + 2 : stop]
                    pos = stop + 2
                    end = buf.index(b"\r\n", pos)
                    stop = end + 2 + int(buf[pos + 1 : end])
                    if size < stop + 2:
                        raise _Incomplete
                    deliver(channel, buf[end + 2 : stop])
                    pos = stop + 2
                else:
                    reply, pos = _parse(buf, pos)
                    self._reply(reply)
        except (_Incomplete, ValueError):
            self.buf = buf[start:]
            return
        self.buf = b""

    def _reply(self, reply: Any) -> None:
        if self.handshake is not None and not self.handshake.done():
            self.handshake.set_result(reply)
            return
        if isinstance(reply, _ReplyError):
            logger.warning("Redis refused a subscription command: %s", reply)
            return
        if isinstance(reply, list) and len(reply) == 3 and reply[0] == b"message":
            self.layer.deliver(reply[1], reply[2])
        elif isinstance(reply, list) and reply and reply[0] == b"subscribe":
            name = reply[1]
            if name in self.wanted:
                self.confirmed.add(name)
            for waiter in self.waiting.pop(name, ()):
                if not waiter.done():
                    waiter.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        self.confirmed.clear()
        waiting, self.waiting = self.waiting, {}
        for waiters in waiting.values():
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_exception(RedisConnectionError("connection closed by Redis"))
                    waiter.exception()
        if not self.closed and self.wanted:
            logger.warning("subscription to Redis at %s broke; reconnecting", self.host.label)
            if self.reconnecting is None or self.reconnecting.done():
                self.reconnecting = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        attempt = 0
        while not self.closed and self.wanted and self.transport is None:
            try:
                await self.ensure()
            except RedisConnectionError as exc:
                delay = RECONNECT_DELAYS[min(attempt, len(RECONNECT_DELAYS) - 1)]
                attempt += 1
                logger.info(
                    "Redis at %s unreachable (%s); again in %.2f s", self.host.label, exc, delay
                )
                await asyncio.sleep(delay)
            else:
                logger.warning("subscription to Redis at %s is back", self.host.label)

    def close(self) -> None:
        super().close()
        if self.reconnecting is not None:
            self.reconnecting.cancel()


def _subscribed(channel: str, future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.warning(
            "channel %s is not subscribed yet (%r); it is once Redis is back",
            channel,
            future.exception(),
        )


class _Mailbox:
    """One channel's unread messages (serialised), who waits for them, and the subscriber
    they are handed to instead (:meth:`RedisPubSubLayer.subscribe`)."""

    __slots__ = ("dropped", "items", "subscriber", "waiters")

    def __init__(self) -> None:
        # A deque once there is a message to keep: a subscribed channel never has one,
        # and an empty deque is ~0.6 KiB per connection.
        self.items: deque[bytes] | tuple[()] = ()
        self.waiters: list[asyncio.Future[None]] = []
        self.dropped = 0
        self.subscriber: Subscriber | None = None


class _LoopLayer:
    """The layer's state in one event loop: its connections, mailboxes and groups."""

    def __init__(self, hosts: list[_Host], prefix: str, capacity: int) -> None:
        self.prefix = prefix
        self.capacity = capacity
        self.publishers = [_Publisher(host) for host in hosts]
        self.subscribers = [_Subscriber(host, self) for host in hosts]
        self.boxes: dict[str, _Mailbox] = {}
        self.groups: dict[str, set[str]] = {}  # a group's Redis channel -> member channels
        # One packer per loop (not thread-safe): a third cheaper than msgpack.packb().
        self.pack = msgpack.Packer(use_bin_type=True).pack

    def shard(self, name: str) -> int:
        return _consistent_hash(name, len(self.publishers))

    def deliver(self, name: bytes, data: bytes) -> None:
        channel = name.decode()
        box = self.boxes.get(channel)
        if box is not None:
            self._put(channel, box, data)
            return
        members = self.groups.get(channel)
        if members:
            # A copy: a subscriber's handler may leave the group (group_discard) at once.
            for member in tuple(members):
                box = self.boxes.get(member)
                if box is not None:
                    self._put(member, box, data)

    def _put(self, channel: str, box: _Mailbox, data: bytes) -> None:
        subscriber = box.subscriber
        if subscriber is not None:
            # Handed over here, in the reader's callback: no task waits for it.
            try:
                subscriber.deliver(msgpack.unpackb(data, raw=False))
            except Exception:  # one subscriber's failure is not the others'
                logger.exception("a subscriber of channel %s failed a message", channel)
            return
        if len(box.items) >= self.capacity:
            if not box.dropped % 1000:
                logger.warning(
                    "channel %s has %d unread messages: new ones are dropped (%d so far)",
                    channel,
                    self.capacity,
                    box.dropped + 1,
                )
            box.dropped += 1
            return
        items = box.items
        if items.__class__ is not deque:
            items = box.items = deque()
        items.append(data)
        for waiter in box.waiters:
            if not waiter.done():
                waiter.set_result(None)
                break

    def attach(self, channel: str, subscriber: Subscriber) -> None:
        box = self.boxes.get(channel)
        if box is None:  # not a channel of new_channel(), or dropped: subscribe it now
            box = self.boxes[channel] = _Mailbox()
            subscribing = asyncio.ensure_future(
                self.subscribers[self.shard(channel)].subscribe(channel.encode())
            )
            subscribing.add_done_callback(functools.partial(_subscribed, channel))
        box.subscriber = subscriber
        if box.items:
            call_soon = asyncio.get_running_loop().call_soon
            for data in box.items:
                call_soon(self._hand_over, channel, subscriber, data)
            box.items = ()

    def _hand_over(self, channel: str, subscriber: Subscriber, data: bytes) -> None:
        try:
            subscriber.deliver(msgpack.unpackb(data, raw=False))
        except Exception:
            logger.exception("a subscriber of channel %s failed a message", channel)

    def detach(self, channel: str) -> None:
        box = self.boxes.get(channel)
        if box is None:
            return
        box.subscriber = None
        if not box.waiters:
            self.drop(channel)

    async def subscribe(self, channel: str) -> _Mailbox:
        box = self.boxes.get(channel)
        if box is None:
            box = self.boxes[channel] = _Mailbox()
        try:
            await self.subscribers[self.shard(channel)].subscribe(channel.encode())
        except BaseException:
            if self.boxes.get(channel) is box and not box.waiters:
                self.drop(channel)
            raise
        return box

    def drop(self, channel: str) -> None:
        self.boxes.pop(channel, None)
        self.subscribers[self.shard(channel)].unsubscribe(channel.encode())

    async def close(self) -> None:
        for connection in (*self.publishers, *self.subscribers):
            connection.close()
        await asyncio.sleep(0)  # the transports' connection_lost callbacks run


class RedisPubSubLayer(BaseChannelLayer):
    """A channels layer on Redis pub/sub that speaks RESP itself (see the module docstring)."""

    extensions = ["groups", "flush"]

    def __init__(
        self,
        hosts: list[Any] | None = None,
        prefix: str = "asgi",
        capacity: int = 10_000,
        expiry: int = 60,
        group_expiry: int = 86400,
        channel_capacity: Any = None,
        **ignored: Any,
    ) -> None:
        super().__init__(expiry=expiry, capacity=capacity, channel_capacity=channel_capacity)
        if isinstance(hosts, (str, bytes)):
            raise ValueError("hosts is a list, even of one Redis")
        self.hosts = [_Host(entry) for entry in hosts or ["redis://localhost:6379"]]
        self.prefix = prefix
        self.group_expiry = group_expiry
        self._layers: dict[asyncio.AbstractEventLoop, _LoopLayer] = {}
        self._current: tuple[asyncio.AbstractEventLoop | None, _LoopLayer | None] = (None, None)

    def _layer(self) -> _LoopLayer:
        loop = asyncio.get_running_loop()
        current = self._current  # one read: another thread's loop may replace it
        if current[0] is loop:
            return current[1]
        layer = self._layers.get(loop)
        if layer is None:
            layer = self._layers[loop] = _LoopLayer(self.hosts, self.prefix, self.capacity)
            self._close_with(loop)
        self._current = (loop, layer)
        return layer

    def _close_with(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close the loop's connections when the loop closes (asgiref's loops of
        ``async_to_sync`` come and go), as channels_redis does."""
        close = loop.close

        def closing(self_: asyncio.AbstractEventLoop) -> None:
            layer = self._layers.pop(loop, None)
            if self._current[0] is loop:
                self._current = (None, None)
            if layer is not None and not loop.is_running() and not loop.is_closed():
                loop.run_until_complete(layer.close())
            self_.close = close
            close()

        try:
            loop.close = types.MethodType(closing, loop)
        except AttributeError:  # a loop class that does not allow it: closed with the process
            logger.debug("cannot close the channel layer's connections with %r", loop)

    # -- the channel layer API ----------------------------------------------------------

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Publish ``message`` to ``channel`` (at most once; see the module docstring)."""
        layer = self._layer()
        publishers = layer.publishers
        publisher = publishers[0] if len(publishers) == 1 else publishers[layer.shard(channel)]
        await publisher.publish(channel.encode(), layer.pack(message))

    async def new_channel(self, prefix: str = "specific.") -> str:
        """A new channel of this process, subscribed once this returns."""
        channel = f"{self.prefix}{prefix}{uuid.uuid4().hex}"
        await self._layer().subscribe(channel)
        return channel

    async def receive(self, channel: str) -> dict[str, Any]:
        """The next message on ``channel`` (subscribing to it first if needed).

        Cancelled, it unsubscribes the channel, as channels_redis's layer does: channels
        cancels a consumer's receive only when the consumer ends.
        """
        layer = self._layer()
        box = layer.boxes.get(channel)
        if box is None:
            box = await layer.subscribe(channel)
        if not box.items:
            loop = asyncio.get_running_loop()
            try:
                while not box.items:
                    waiter = loop.create_future()
                    box.waiters.append(waiter)
                    try:
                        await waiter
                    finally:
                        box.waiters.remove(waiter)
            except (asyncio.CancelledError, GeneratorExit):
                if layer.boxes.get(channel) is box and not box.waiters:
                    layer.drop(channel)
                raise
        return msgpack.unpackb(box.items.popleft(), raw=False)

    def subscribe(self, channel: str, subscriber: Subscriber) -> None:
        """From now on, hand ``channel``'s messages to ``subscriber.deliver`` as they are
        read from Redis (in the running event loop, in the order Redis sent them) instead of
        keeping them for :meth:`receive`, so that the connection needs no task waiting in
        ``receive()``. Messages kept before are handed over at once (soon after, in order).
        The same contract as :meth:`directcall.layers.InMemoryChannelLayer.subscribe`.

        ``deliver`` is called in the reader's callback, whose context is nobody's in
        particular: the subscriber runs what it starts in a context of its own
        (:meth:`directcall.connection.OrderedConsumer.deliver`). An exception in it is
        logged; the other channels' messages go on. A channel of :meth:`new_channel` is
        subscribed in Redis already; another is subscribed from now on (in the background).
        """
        self.require_valid_channel_name(channel)
        self._layer().attach(channel, subscriber)

    def unsubscribe(self, channel: str) -> None:
        """Stop handing ``channel``'s messages to its subscriber, and unsubscribe the
        channel in Redis, as a cancelled :meth:`receive` does (at most once: a message sent
        afterwards reaches nobody), unless a :meth:`receive` is waiting on it, which then
        gets them. A later :meth:`receive` subscribes the channel again."""
        self._layer().detach(channel)

    def _group_channel(self, group: str) -> str:
        return f"{self.prefix}__group__{group}"

    async def group_add(self, group: str, channel: str) -> None:
        """Add a channel of this process to ``group``; subscribed once this returns."""
        self.require_valid_group_name(group)
        layer = self._layer()
        if channel not in layer.boxes:
            raise RuntimeError(
                "You can only call group_add() on channels that exist in-process "
                f"(self.channel_layer.group_add({group!r}, self.channel_name))"
            )
        name = self._group_channel(group)
        members = layer.groups.setdefault(name, set())
        members.add(channel)
        await layer.subscribers[layer.shard(name)].subscribe(name.encode())

    async def group_discard(self, group: str, channel: str) -> None:
        """Remove ``channel`` from ``group`` (nothing if it is not in it)."""
        layer = self._layer()
        name = self._group_channel(group)
        members = layer.groups.get(name)
        if members is None or channel not in members:
            return
        members.discard(channel)
        if not members:
            del layer.groups[name]
            layer.subscribers[layer.shard(name)].unsubscribe(name.encode())

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        """Publish ``message`` to every channel of ``group``, in any process."""
        await self.send(self._group_channel(group), message)

    async def flush(self) -> None:
        """Close this loop's connections and forget its channels and groups."""
        loop = asyncio.get_running_loop()
        layer = self._layers.pop(loop, None)
        if self._current[0] is loop:
            self._current = (None, None)
        if layer is not None:
            await layer.close()
