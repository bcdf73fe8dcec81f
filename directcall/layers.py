"""An in-memory channel layer whose cost per message does not grow with the connections.

channels' ``InMemoryChannelLayer`` runs ``_clean_expired()`` — a pass over every channel
of the process and every member of every group — in each ``receive()``; every connected
consumer waits in ``receive()`` on a channel of its own, so with 5 000 idle connections a
relayed frame cost 7.6 ms instead of 0.3 ms (docs/performance.md). This one

- does that pass at most once per ``clean_interval`` seconds (default 1): messages and group
  memberships still expire, up to that much later than their ``expiry`` / ``group_expiry``
  (60 s and a day by default), and the pass costs O(connections) per second instead of per
  message;
- keeps a channel's messages in a small mailbox (a list and the waiting receiver's future)
  instead of an ``asyncio.Queue`` (three deques and an event, ~2.5 KiB per connection),
  made once per channel rather than on every ``send``;
- lets a connection :meth:`~InMemoryChannelLayer.subscribe` its channel: its messages are
  handed to it as they are sent (in its event loop, in order), so that it needs no task
  waiting in ``receive()`` (a task, its coroutines and a future: ~1.3 KiB per idle
  connection).

Same API and semantics otherwise: capacity (``ChannelFull``), expiry, groups, flush.

Use it for a single process (the embedded default)::

    CHANNEL_LAYERS = {"default": {"BACKEND": "directcall.layers.InMemoryChannelLayer"}}

Between connections of one process directcall does not use the channel layer for its own
messages at all (the same-process path, :mod:`directcall.transport`); the layer still
carries what goes to groups (revocations) and to channels that have just closed.
"""

from __future__ import annotations

import asyncio
import time
from copy import deepcopy
from typing import Any, Protocol

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer


class _Mailbox:
    """One channel's messages ``(expires_at, message)``, and who waits for them."""

    __slots__ = ("items", "waiters")

    def __init__(self) -> None:
        self.items: list[tuple[float, dict[str, Any]]] = []
        self.waiters: list[asyncio.Future[None]] = []

    def idle(self) -> bool:
        return not self.items and not self.waiters


class Subscriber(Protocol):
    """What :meth:`InMemoryChannelLayer.subscribe` hands a channel's messages to."""

    def deliver(self, message: dict[str, Any]) -> None:
        """Handle ``message`` (called in the subscriber's event loop; never raises)."""


class InMemoryChannelLayer(ChannelsInMemoryChannelLayer):
    """channels' in-memory layer: expiry once a second, light per-channel mailboxes,
    subscriptions instead of a waiting ``receive()``."""

    def __init__(self, *args: Any, clean_interval: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clean_interval = clean_interval
        self._cleaned_at = 0.0
        self._subscribers: dict[str, tuple[Subscriber, asyncio.AbstractEventLoop]] = {}

    def subscribe(self, channel: str, subscriber: Subscriber) -> None:
        """From now on, hand ``channel``'s messages to ``subscriber.deliver`` as they are sent
        (soon after, in the running event loop, in the order sent) instead of keeping them
        for :meth:`receive`. Messages kept before are handed over at once.

        ``deliver`` is called in a copy of the sender's context: the subscriber runs what it
        starts in a context of its own (:meth:`directcall.connection.OrderedConsumer.deliver`).
        """
        self.require_valid_channel_name(channel)
        loop = asyncio.get_running_loop()
        self._subscribers[channel] = (subscriber, loop)
        box = self.channels.get(channel)
        if box is not None and box.items:
            for _expires, message in box.items:
                loop.call_soon(subscriber.deliver, message)
            box.items.clear()
            if box.idle():
                del self.channels[channel]

    def unsubscribe(self, channel: str) -> None:
        """Messages for ``channel`` are kept for :meth:`receive` again (until they expire)."""
        self._subscribers.pop(channel, None)

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        """Put a message on a channel (``ChannelFull`` past its capacity)."""
        assert isinstance(message, dict), "message is not a dict"
        self.require_valid_channel_name(channel)
        assert "__asgi_channel__" not in message
        subscribed = self._subscribers.get(channel)
        if subscribed is not None:
            # Never inline: the sender may be iterating a group that the handler changes.
            subscriber, loop = subscribed
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            call = loop.call_soon if running is loop else loop.call_soon_threadsafe
            call(subscriber.deliver, deepcopy(message))
            return
        box = self.channels.get(channel)
        if box is None:
            box = self.channels[channel] = _Mailbox()
        if len(box.items) >= self.get_capacity(channel):
            raise ChannelFull(channel)
        box.items.append((time.time() + self.expiry, deepcopy(message)))
        for waiter in box.waiters:
            if not waiter.done():
                waiter.set_result(None)
                break

    async def receive(self, channel: str) -> dict[str, Any]:
        """The next message on the channel, once there is one."""
        self.require_valid_channel_name(channel)
        self._clean_expired()
        box = self.channels.get(channel)
        if box is None:
            box = self.channels[channel] = _Mailbox()
        try:
            while not box.items:
                waiter = asyncio.get_running_loop().create_future()
                box.waiters.append(waiter)
                try:
                    await waiter
                finally:
                    box.waiters.remove(waiter)
            return box.items.pop(0)[1]
        finally:
            if box.idle() and self.channels.get(channel) is box:
                del self.channels[channel]

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._cleaned_at < self.clean_interval:
            return
        self._cleaned_at = now
        wall = time.time()
        for channel, box in list(self.channels.items()):
            expired = 0
            while expired < len(box.items) and box.items[expired][0] < wall:
                expired += 1
            if expired:
                del box.items[:expired]
                self._remove_from_groups(channel)  # any expired message ends its memberships
            if box.idle():
                self.channels.pop(channel, None)
        timeout = int(wall) - self.group_expiry
        for members in self.groups.values():
            for name, joined in list(members.items()):
                if joined and joined < timeout:
                    members.pop(name, None)
