"""Telling the parties: the server's messages to connections, through the channel layer.

A connection is reached at the channel its presence entry names. Sending is best effort
with a bound: a state message that cannot be handed to the channel layer (the peer's
channel is full, or Redis is restarting and a pooled connection is stale) is retried a
few times, then given up and logged. No function here raises: a party that missed a
state still converges — its connection checks its calls against the database when the
sweep runs, when a frame about the call is refused, when its deadline passes and when
it signs in again (docs/protocol.md, "Delivery").

**The same-process path.** A connection served by this very process is reached without the
channel layer: :func:`send` hands the message to its consumer (registered here while it is
connected), which runs the same handler the channel layer's message would have run, with
the same checks (the receiver only takes a relay from the other party of a live call it
holds; the sender's frame passed the allow-list and the size limits before anything was
sent). The consumer keeps channels' one-message-at-a-time order: a message that arrives
while it is busy with another waits for it
(:meth:`~directcall.connection.OrderedConsumer.deliver`). A channel
not registered here — another process's, or one that just closed — goes through the
channel layer as before; nothing correct depends on the registry, it only saves the trip
(docs/performance.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Protocol

from channels.exceptions import ChannelFull
from channels.layers import get_channel_layer

from . import errors, presence, protocol
from .conf import get_settings
from .models import Call

logger = logging.getLogger("directcall.transport")

# Pauses between the attempts at one state message: about 1.5 s in all, longer than a
# channels_redis reconnect after a Redis restart and short next to a ring timeout.
STATE_RETRY_DELAYS = (0.05, 0.2, 0.5, 0.75)

# How long one attempt at a send may wait for the channel layer. A Redis that stops
# answering (hung, or cut off without a reset) would hold a send for ever: the layer's
# connections have no read timeout (checks W007), which their blocking reads need.
SEND_TIMEOUT = 5.0

# Keys of a message that only a consumer of this process gets (objects the channel layer
# cannot serialise, such as the Call itself); they are left out of what the layer carries.
LOCAL_ONLY = "_local"


class Receiver(Protocol):
    """A connection of this process that takes messages on the same-process path."""

    def deliver(self, message: dict[str, Any]) -> None:
        """Handle ``message`` as if the channel layer had brought it (never raises)."""


_local: dict[str, Receiver] = {}
# Off: every message goes through the channel layer (the tests that check the layer
# itself turn it off; connections registered before keep it).
same_process_path = True


def register(channel: str, receiver: Receiver) -> None:
    """Reach ``channel`` on the same-process path while its connection lasts."""
    if same_process_path:
        _local[channel] = receiver


def unregister(channel: str) -> None:
    """``channel``'s connection ended: messages to it go through the channel layer again."""
    _local.pop(channel, None)


def local_count() -> int:
    """How many connections of this process take messages on the same-process path."""
    return len(_local)


async def send(channel: str, message: dict[str, Any], retry_delays: tuple[float, ...] = ()) -> bool:
    """Hand ``message`` to ``channel``'s connection; False if it could not be.

    A connection of this process gets it at once (the same-process path, see the module
    docstring); any other through the channel layer. Each delay in ``retry_delays`` allows
    one more attempt after a failure of the channel layer, with the message marked
    ``attempt``: n. redis-py drops a connection that failed, so a retry goes out on a
    fresh one. An attempt that gets no answer within :data:`SEND_TIMEOUT` failed, and is
    the last.
    """
    receiver = _local.get(channel)
    if receiver is not None:
        receiver.deliver(message)
        return True
    if LOCAL_ONLY in message:
        message = {key: value for key, value in message.items() if key != LOCAL_ONLY}
    layer = get_channel_layer()
    for attempt in range(len(retry_delays) + 1):
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await layer.send(
                    channel, message if not attempt else {**message, "attempt": attempt}
                )
            return True
        except ChannelFull:
            problem = "channel full"
        except TimeoutError:
            # A layer silent for that long is not back a moment later: no more attempts.
            problem = f"no answer from the channel layer within {SEND_TIMEOUT:g} s"
            break
        except Exception as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if attempt < len(retry_delays):
            await asyncio.sleep(retry_delays[attempt])
    logger.warning(
        "could not send %s to %s after %d attempt(s) (%s)",
        message.get("type"),
        channel,
        attempt + 1,
        problem,
    )
    return False


async def announce(
    call: Call,
    extra: dict[str, dict[str, Any]] | None = None,
    channels: dict[int, list[str]] | None = None,
    bound: str | None = None,
) -> set[str]:
    """Send the call's ``state`` to every connection of each party; return the channels reached.

    Every tab of a party is told; a connection that does not hold the call ignores it.
    ``extra`` adds fields for one side (``{"caller": {"sdp": ...}}``). The connections are
    looked up in presence; ``channels`` (registration pk → channels) are added to them, and
    stand in when the cache cannot be read. ``bound``: the channel of the connection that
    made an ``accept`` win, which now holds the call on the callee's side.
    """
    frame = protocol.state_frame(call)
    parties = (("caller", call.caller), ("callee", call.callee))
    # Presence says where each party is; a channel the caller knows fills a gap (an entry
    # not renewed yet after a Redis restart) or stands in when the cache is unreachable.
    targets: dict[int, set[str]] = {pk: set(known) for pk, known in (channels or {}).items()}
    try:
        found = await presence.alookup_many(call.account_id, [p.cuid for _, p in parties])
        for _, party in parties:
            if party.cuid in found:
                targets.setdefault(party.pk, set()).update(found[party.cuid].channels)
    except Exception as exc:
        logger.warning("presence unreadable while telling call %s's state: %r", call.pk, exc)
    reached = set()
    remote = {}
    for side, party in parties:
        message = protocol.state_message(
            call, party.pk, {**frame, **(extra or {}).get(side, {})}, bound
        )
        for channel in sorted(targets.get(party.pk, ())):
            receiver = _local.get(channel)
            if receiver is not None:  # the same-process path: no task, no layer
                receiver.deliver(message)
                reached.add(channel)
            else:
                remote[channel] = send(channel, message, STATE_RETRY_DELAYS)
    results = await asyncio.gather(*remote.values()) if remote else []
    return reached | {channel for channel, sent in zip(remote, results, strict=True) if sent}


async def send_all(
    channels: list[str] | tuple[str, ...],
    message: dict[str, Any],
    retry_delays: tuple[float, ...] = (),
) -> bool:
    """:func:`send` one message to several connections; True if it reached any."""
    if len(channels) == 1:
        return await send(channels[0], message, retry_delays)
    results = await asyncio.gather(*(send(c, message, retry_delays) for c in channels))
    return any(results)


async def join(group: str, channel: str) -> None:
    """Add ``channel`` to ``group``, tried again like a state message; raise if it fails."""
    layer = get_channel_layer()
    for delay in (*STATE_RETRY_DELAYS, None):
        try:
            await layer.group_add(group, channel)
            return
        except Exception as exc:
            if delay is None or not errors.is_unavailable(exc):
                raise
            await asyncio.sleep(delay)


async def receive(channel: str) -> dict[str, Any]:
    """The next channel-layer message for ``channel``, waiting out a short outage.

    A Redis restart breaks every connection's blocking read at once; each read is tried
    again (redis-py reconnects) for up to ``PRESENCE_TTL`` seconds, after which the error
    is raised and the connection ends.
    """
    layer = get_channel_layer()
    failing_since, delay = None, 0.1
    while True:
        try:
            return await layer.receive(channel)
        except Exception as exc:
            now = time.monotonic()
            failing_since = failing_since or now
            if not errors.is_unavailable(exc) or now - failing_since > get_settings().PRESENCE_TTL:
                raise
            logger.info("channel layer unreachable (%s); trying again", exc)
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)
