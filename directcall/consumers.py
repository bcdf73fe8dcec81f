"""The signaling WebSocket: one connection per signed-in tab (protocol: docs/protocol.md).

It only speaks the protocol: it authenticates the connection, parses each frame
(:mod:`directcall.protocol`), asks the state machine (:mod:`directcall.calls`) and sends
what comes back. Identity comes only from the session token of the ``auth`` frame; the
steps of signing in and out (token, throttles, origin, presence, revocation groups, calls
handed back, ``ready``) are :mod:`directcall.signin`'s, the per-address socket cap is
:mod:`directcall.iplimit`'s. Once signed in, the connection's calls are kept by its
:class:`~directcall.party.Party` (routing table, deadlines, telling both parties), and
background work that must outlive it goes to the process's sweeper.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer

from . import (
    blocks,
    calls,
    errors,
    iplimit,
    presence,
    protocol,
    quality,
    revocation,
    signin,
    transport,
    watch,
)
from .conf import get_settings
from .errors import DirectCallError
from .models import CallStatus, EndReason
from .origins import site_origin
from .party import CallRoute, Party
from .ratelimit import TokenBucket
from .sweeper import Sweeper, running_sweeper
from .tokens import Session

logger = logging.getLogger("directcall.signaling")


class SignalingConsumer(AsyncWebsocketConsumer):
    """One signed-in tab: frames from its browser, messages from the server's processes."""

    handlers: dict[str, str] = {kind: f"on_{kind}" for kind in protocol.CLIENT_FRAMES}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.party: Party | None = None  # set by a successful auth
        self.watching: watch.Watching | None = None  # the cuids it watches (who is online)
        self.holder: presence.Holder | None = None
        self.counted_address: str | None = None  # counted against MAX_CONNECTIONS_PER_IP
        self.refused = False  # closed before sign-in: frames still in flight are ignored
        self.sweeper: Sweeper | None = None
        self.tasks: set[asyncio.Task] = set()
        self.finished = False
        # How the browser closed the socket, and whether the page said it is leaving: an
        # answered call then waits PAGE_GRACE for it, not RECONNECT_GRACE.
        self.close_code: int | None = None
        self.leaving = False
        # The same-process path (transport.send): how many of this connection's handlers
        # are running, and the messages delivered meanwhile, which wait for them.
        self.handling = 0
        self.backlog: deque[dict[str, Any]] | None = None  # made when first needed
        self.auth_deadline: asyncio.Task | None = None
        # The browser's next frame waits for a delivered message's handler to end.
        self.idle_waiter: asyncio.Future[None] | None = None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        """channels' ``AsyncConsumer.__call__``, changed in three ways.

        The browser's frames are read and handled in this task, one at a time; the channel
        layer's messages are read by a second task and handed over like same-process ones
        (:meth:`deliver`), so no handler of this connection ever interleaves with another
        and no message costs channels' ``await_many_dispatch`` round (a new task and an
        ``asyncio.wait`` per message). The channel layer's receive waits out a short outage
        (a Redis restart) instead of killing the connection; and however the connection
        ends, its tasks end and its presence goes (channels calls ``disconnect()`` only on
        a ``websocket.disconnect``). tests/test_consumers.py fails when channels changes
        its own, so that this copy is checked again.
        """
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.base_send = send
        transport.register(self.channel_name, self)
        listener = asyncio.ensure_future(self._listen())
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        except Exception:
            logger.error("signaling connection ended by an error", exc_info=True)
            with contextlib.suppress(Exception):
                await self.close(protocol.CLOSE_UNAVAILABLE)
        finally:
            listener.cancel()
            await self._finish()

    async def _listen(self) -> None:
        """The channel layer's messages for this connection, handed to :meth:`deliver`."""
        try:
            while True:
                self.deliver(await transport.receive(self.channel_name))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The channel layer stayed unreachable: end in order; the client reconnects.
            if errors.is_unavailable(exc):
                logger.warning("signaling connection ended: channel layer unreachable: %r", exc)
            else:
                logger.error("signaling connection ended by an error", exc_info=True)
            with contextlib.suppress(Exception):
                await self.close(protocol.CLOSE_UNAVAILABLE)

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Route a message to its handler, without channels' per-message connection clean-up.

        channels runs ``aclose_old_connections()`` — a thread hop — before every handler.
        Every ORM call here goes through ``database_sync_to_async``, which closes stale
        connections around itself already, so that hop only cost time: about two thirds of
        a relayed frame's server CPU (docs/performance.md). tests/test_consumers.py fails
        when channels changes its own ``dispatch``, so that this copy is checked again.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        while self.handling:  # a delivered message's handler is waiting on its socket
            self.idle_waiter = asyncio.get_running_loop().create_future()
            await self.idle_waiter
        self.handling += 1
        try:
            await handler(message)
        finally:
            await self._handled()

    # -- the same-process path (directcall.transport) ---------------------------------

    def deliver(self, message: dict[str, Any]) -> None:
        """A ``dc.*`` message from a connection of this process, without the channel layer.

        Handled at once, in the sender's task, by the handler the channel layer would have
        run (with the same checks), when this connection is between messages: as with
        channels, no two of its handlers interleave. While one runs, the message waits in
        order and is handled right after it, in this connection's task. A handler that
        must wait (its socket's write buffer is full) goes on in a task of this connection,
        so that the sender never waits for the receiver.
        """
        if self.finished:
            return
        if self.handling:
            if self.backlog is None:
                self.backlog = deque()
            self.backlog.append(message)
            return
        try:
            handler = getattr(self, get_handler_name(message), None)
        except ValueError:
            handler = None
        # The handler itself (_handle only when there is none: it logs why).
        step = handler(message) if handler is not None else self._handle(message)
        try:
            waiting = step.send(None)
        except StopIteration:
            return
        except Exception:
            logger.exception("a %s message failed", message.get("type"))
            return
        self.handling += 1
        self._spawn(self._go_on(step, waiting))

    async def _go_on(self, step: Coroutine[Any, Any, None], waiting: Any) -> None:
        try:
            await _GoOn(step, waiting)
        except Exception:
            logger.exception("a delivered message failed")
        finally:
            await self._handled()

    async def _handle(self, message: dict[str, Any]) -> None:
        try:
            handler = getattr(self, get_handler_name(message), None)
            if handler is None:
                raise ValueError(f"No handler for message type {message.get('type')}")
            await handler(message)
        except Exception:
            logger.exception("a %s message failed", message.get("type"))

    async def _handled(self) -> None:
        """A handler ended: handle what was delivered meanwhile, then be free again."""
        try:
            while self.backlog and self.handling == 1:
                await self._handle(self.backlog.popleft())
        finally:
            self.handling -= 1
            waiter, self.idle_waiter = self.idle_waiter, None
            if not self.handling and waiter is not None and not waiter.done():
                waiter.set_result(None)

    # -- connection lifecycle ---------------------------------------------------------

    async def connect(self) -> None:
        conf = get_settings()
        self.sweeper = running_sweeper()
        self.max_frame = conf.MAX_FRAME_BYTES
        self.bucket = TokenBucket(conf.FLOOD_RATE, conf.FLOOD_BURST)
        self.last_frame_at = time.monotonic()
        self.last_flood_error = 0.0
        await self.accept()
        admitted, self.counted_address = iplimit.admit(self.scope, conf.MAX_CONNECTIONS_PER_IP)
        if not admitted:
            # Accepted only to say why: a refused handshake reaches the page as a bare 1006.
            refusal = DirectCallError(
                errors.RATE_LIMITED, "Too many connections from your address; try again later."
            )
            await self._refuse(refusal, protocol.CLOSE_TOO_MANY_CONNECTIONS)
            return
        # The site this socket was opened on: pictures it serves may show as a call rings.
        self.site_origin = site_origin(self.scope)
        self.auth_deadline = self._spawn(self._auth_deadline(conf.AUTH_TIMEOUT))

    async def _refuse(self, error: DirectCallError, close_code: int) -> None:
        """Before sign-in: say why, close, and handle nothing more from this socket."""
        self.refused = True
        await self._send(protocol.error_frame(error))
        await self.close(close_code)

    async def disconnect(self, code: int) -> None:
        self.close_code = code
        await self._finish()

    async def _finish(self) -> None:
        """End the connection's work, once: its tasks, its presence, the rules for its calls."""
        if self.finished:
            return
        self.finished = True
        transport.unregister(self.channel_name)
        self.backlog = None
        if self.counted_address is not None:
            iplimit.connections.release(self.counted_address)
            self.counted_address = None
        for task in self.tasks:
            task.cancel()
        if self.watching is not None:
            self.watching.close()
        if self.party is not None:
            layer, code = self.channel_layer, self.close_code
            await signin.sign_out(self.party, self.holder, self.sweeper, layer, code, self.leaving)
            # Watchers look again now, and once a reservation for a reload has run out.
            person = (self.party.session.account_pk, self.party.session.cuid)
            await watch.changed(person)
            if code != protocol.CLOSE_NORMAL:
                self.sweeper.spawn(watch.changed_later(get_settings().DEVICE_HOLD, person))

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _auth_deadline(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if self.party is None:
            await self._reject(errors.NOT_AUTHENTICATED, protocol.CLOSE_AUTH_FAILED)

    async def _upkeep(self, session: Session, holder: presence.Holder) -> None:
        """A signed-in connection's one timer task: renew its presence every PRESENCE_TTL/3
        (:func:`presence.akeep`'s rules) and close it once idle for IDLE_TIMEOUT."""
        conf = get_settings()
        every = max(0.2, conf.PRESENCE_TTL / 3)
        renew_at = time.monotonic() + every
        while True:
            now = time.monotonic()
            idle_at = self.last_frame_at + conf.IDLE_TIMEOUT
            if now >= idle_at:
                await self.close(protocol.CLOSE_IDLE)
                return
            if now < renew_at:
                await asyncio.sleep(min(idle_at, renew_at) - now)
                continue
            renew_at = now + every
            try:
                kept = await presence.arenew(session.account_pk, session.cuid, holder)
            except Exception as exc:  # the cache is unreachable: try again next time
                logger.warning("presence renewal failed for %s: %r", self.party.who, exc)
                continue
            if not kept:
                # Another device holds the cuid now (this device's entry lapsed: a cache
                # outage longer than PRESENCE_TTL, or an eviction, and another device
                # signed in).
                logger.warning("%s: presence taken by another device; closing", self.party.who)
                await self._reject(errors.ALREADY_SIGNEDIN, protocol.CLOSE_ALREADY_SIGNEDIN)
                return

    # -- frames from the browser --------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.refused:
            return
        self.last_frame_at = time.monotonic()
        if not self.bucket.take():
            await self._flooded()
            return
        if self.party is None and protocol.exceeds(text_data, protocol.MAX_AUTH_FRAME_BYTES):
            # Checked before any parsing, and the socket ends: a stranger cannot make the
            # server parse big frames (honest clients send a ~1 KB auth frame).
            too_large = DirectCallError(
                errors.FRAME_TOO_LARGE,
                f"Frames before sign-in are limited to {protocol.MAX_AUTH_FRAME_BYTES} bytes.",
            )
            await self._refuse(too_large, protocol.CLOSE_FRAME_TOO_LARGE)
            return
        frame: Any = None
        try:
            frame = protocol.decode(text_data, bytes_data, self.max_frame)
            kind = protocol.frame_type(frame)
            if self.party is None and kind != "auth":
                raise DirectCallError(errors.NOT_AUTHENTICATED)
            await getattr(self, self.handlers[kind])(frame)
        except DirectCallError as exc:
            await self._send(protocol.error_frame(exc, getattr(exc, "frame", frame)))
        except Exception as exc:
            if not errors.is_unavailable(exc):
                logger.exception("unhandled error in a %s frame", type(frame).__name__)
                await self._send(protocol.error_frame(DirectCallError(errors.INTERNAL), frame))
                return
            logger.warning("a frame failed: %s", exc)
            unavailable = DirectCallError(errors.SERVICE_UNAVAILABLE)
            await self._send(protocol.error_frame(unavailable, frame))
            if isinstance(frame, dict) and frame.get("type") == "auth":
                await self.close(protocol.CLOSE_UNAVAILABLE)  # the client retries with backoff

    async def _flooded(self) -> None:
        now = time.monotonic()
        if now - self.last_flood_error < 1:
            return
        self.last_flood_error = now
        logger.warning(
            "flood limit reached by %s: dropping frames",
            self.party.who if self.party is not None else "an unauthenticated socket",
        )
        await self._send(protocol.error_frame(DirectCallError(errors.RATE_LIMITED)))

    async def _reject(self, code: str, close_code: int) -> None:
        await self._send(protocol.error_frame(DirectCallError(code)))
        await self.close(close_code)

    async def on_auth(self, frame: dict[str, Any]) -> None:
        """``auth {token, device_key?, resume?}``: sign this tab in as the token's registration.

        The cuid's presence is claimed for the token's device, or joined with the device
        key (docs/protocol.md, "Presence"); the answered calls named in ``resume`` with
        their call keys are handed back to this connection (:mod:`directcall.signin`).
        """
        if self.party is not None:
            raise DirectCallError(errors.BAD_FRAME, "This connection is already authenticated.")
        try:
            session, registration, device_key = await signin.check(frame, self.scope)
            self.holder, issued = await signin.claim(
                session, device_key, self.channel_name, self.scope
            )
            self.party = Party(
                session,
                self.channel_name,
                self.sweeper,
                self._send,
                conn=self.holder.conn,
                registration=registration,
            )
            await signin.join_revocation_groups(session, self.channel_name)
        except signin.Refusal as refusal:
            await self._send(protocol.error_frame(refusal.error, frame if refusal.echo else None))
            await self.close(refusal.close_code)
            return
        if self.auth_deadline is not None:
            self.auth_deadline.cancel()  # signed in: one timer task is enough
        self._spawn(self._upkeep(session, self.holder))
        self.sweeper.watch(self.party)
        self.watching = watch.Watching(session, self._send)
        await watch.changed((session.account_pk, session.cuid))
        resume = protocol.resume_of(frame)
        await signin.hand_back(self.party, registration, resume, issued, self._send)

    async def on_ping(self, frame: dict[str, Any]) -> None:
        """``ping``: keep-alive; answered with ``pong``."""
        await self._send(protocol.PONG)

    async def on_block(self, frame: dict[str, Any]) -> None:
        """``block {cuid, ref?}``: this user refuses calls from ``cuid``; answered ``blocked``."""
        cuid = protocol.block_of(frame)
        ref = protocol.ref_of(frame)
        blocked_pk = await database_sync_to_async(blocks.block)(self.party.pk, cuid)
        await self._send(protocol.blocked_frame(ref, cuid))
        if blocked_pk is not None:  # its connections stop watching this user
            with contextlib.suppress(Exception):
                group = revocation.registration_group(blocked_pk)
                await self.channel_layer.group_send(group, protocol.blocked_message(self.party.pk))

    async def on_watch(self, frame: dict[str, Any]) -> None:
        """``watch {ref?, cuids}``: follow who of ``cuids`` is online; answered ``watching``."""
        await self.watching.watch(frame)

    async def on_unwatch(self, frame: dict[str, Any]) -> None:
        """``unwatch {ref?, cuids?}``: stop following them (all of them without ``cuids``)."""
        await self.watching.unwatch(frame)

    async def on_invite(self, frame: dict[str, Any]) -> None:
        """``invite {ref, receiver, context, receiver_image?, initiator_image?, sdp}``."""
        party = self.party
        if await party.busy():
            raise DirectCallError(errors.OUTGOING_CALL_IN_PROGRESS)
        invite = protocol.invite_of(frame)
        call_key, key_hash = calls.new_call_key()  # this tab holds the call on its side
        placed = await database_sync_to_async(calls.place_call)(
            party.session,
            invite.params,
            invite.sdp,
            key_hash,
            site_origin=self.site_origin,
            caller_row=party.registration,
        )
        call = placed.call
        if call.status == CallStatus.BUSY:
            await self._send(protocol.invited_frame(invite.ref, call))
            await self._send(protocol.state_frame(call))
            return
        await self._send(protocol.invited_frame(invite.ref, call, call_key))
        party.add(call, bound=True)
        # It rings in every tab of the callee; relays reach them through presence until
        # one answers (a tab opened meanwhile rings and hears them too).
        incoming = protocol.incoming_frame(call, invite.sdp)
        message = protocol.incoming_message(call, self.channel_name, incoming, calls.carried(call))
        await transport.send_all(placed.callee_channels, message, transport.STATE_RETRY_DELAYS)

    async def on_ringing(self, frame: dict[str, Any]) -> None:
        """``ringing {call_id}`` from the callee (a repeat changes nothing)."""
        call_id, route = self.party.find(frame, role="callee")
        if await self.party.change(calls.ring, call_id, self.party.pk, call=route.call) is None:
            await self.party.check([call_id])

    async def on_accept(self, frame: dict[str, Any]) -> None:
        """``accept {call_id, sdp}`` from the callee: the SDP answer goes to the caller.

        Of the callee's tabs, the first accept wins (a conditional UPDATE); that tab holds
        the call and gets its call key with the ``answered`` state.
        """
        call_id, route = self.party.find(frame, role="callee")
        extra = {"caller": {"sdp": protocol.sdp_of(frame)}}
        if route.call_key is None:  # a repeated accept uses the same key
            route.call_key = calls.new_call_key()[0]
        key_hash = calls.call_key_hash(route.call_key)
        accepted = await self.party.change(
            calls.accept,
            call_id,
            self.party.pk,
            key_hash,
            extra=extra,
            bound=self.channel_name,
            call=route.call,
        )
        if accepted is None:
            await self.party.refused(call_id, "The call is no longer ringing.")

    async def on_decline(self, frame: dict[str, Any]) -> None:
        """``decline {call_id, reason?}`` from the callee."""
        call_id, route = self.party.find(frame, role="callee")
        reason = protocol.reason_of(frame, protocol.DECLINE_REASONS, EndReason.USER_DECLINED)
        change = self.party.change(calls.decline, call_id, self.party.pk, reason, call=route.call)
        if await change is None:
            await self.party.refused(call_id, "The call is no longer ringing.")

    async def on_cancel(self, frame: dict[str, Any]) -> None:
        """``cancel {call_id}`` from the caller (an already answered call is hung up)."""
        call_id, route = self.party.find(frame, role="caller")
        await self._leave(call_id, route, EndReason.USER_HANGUP)

    async def on_hangup(self, frame: dict[str, Any]) -> None:
        """``hangup {call_id, reason?, quality?}`` from either party.

        ``quality``: the party's summary of an answered call, stored before the call ends
        (so that ``call_ended`` carries it). One the server refuses is dropped and logged:
        the hangup goes ahead all the same.
        """
        call_id, route = self.party.find(frame)
        reason = protocol.reason_of(frame, protocol.HANGUP_REASONS, EndReason.USER_HANGUP)
        if "quality" in frame and route.status == CallStatus.ANSWERED:
            try:
                summary = protocol.summary_of(frame)
                await database_sync_to_async(quality.report)(call_id, self.party.pk, summary)
            except DirectCallError as exc:
                logger.info("call %s: quality of %s not kept: %s", call_id, self.party.who, exc)
        await self._leave(call_id, route, reason)

    async def _leave(self, call_id: str, route: CallRoute, reason: str) -> None:
        change = self.party.change(
            calls.leave, call_id, self.party.pk, reason, call=route.call, status=route.status
        )
        if await change is None:
            await self.party.refused(call_id, "The call has already ended.")

    async def on_candidates(self, frame: dict[str, Any]) -> None:
        """``candidates {call_id, candidates: [...], end?}``: relayed to the other party."""
        call_id, route = self.party.find(frame)
        payload = protocol.candidates_of(frame)
        await self.party.tell_peer(route, protocol.relay_message(call_id, self.party.pk, payload))

    async def on_renegotiate(self, frame: dict[str, Any]) -> None:
        """``renegotiate {call_id, sdp_type, sdp}``: an ICE-restart offer or its answer."""
        call_id, route = self.party.find(frame)
        if route.status != CallStatus.ANSWERED:
            raise DirectCallError(errors.CALL_STATE, "Only an answered call can renegotiate.")
        payload = protocol.renegotiation_of(frame)
        await self.party.tell_peer(route, protocol.relay_message(call_id, self.party.pk, payload))

    async def on_quality(self, frame: dict[str, Any]) -> None:
        """``quality {call_id, quality, ref?}``: a party's summary of an answered call (once
        per side; after the end, when its hangup did not carry it); answered ``saved``."""
        call_id, ref = protocol.call_id_of(frame), protocol.ref_of(frame)
        summary = protocol.summary_of(frame)
        await database_sync_to_async(quality.report)(call_id, self.party.pk, summary)
        await self._send(protocol.saved_frame(ref, call_id))

    async def on_feedback(self, frame: dict[str, Any]) -> None:
        """``feedback {call_id, score, issues?, ref?}``: a party rates an answered call that
        ended (accounts that ask for feedback); answered ``saved``."""
        call_id, ref = protocol.call_id_of(frame), protocol.ref_of(frame)
        score, issues = protocol.feedback_of(frame)
        await database_sync_to_async(quality.post_feedback)(call_id, self.party.pk, score, issues)
        await self._send(protocol.saved_frame(ref, call_id))

    async def on_leaving(self, frame: dict[str, Any]) -> None:
        """``leaving``: the page is going away (reload, link, closed tab), sent on ``pagehide``.

        The answered call this tab holds then waits only PAGE_GRACE for the page to come
        back (a close with 1001 means the same).
        """
        self.leaving = True

    # -- messages from the server's processes (channel layer) ---------------------------

    async def dc_incoming(self, message: dict[str, Any]) -> None:
        """A call to this connection's user: remember it and show it."""
        if self._is_mine(message) and await self.party.ringing(message):
            await self._send(message["frame"])

    async def dc_state(self, message: dict[str, Any]) -> None:
        """A call of this connection changed state."""
        if self._is_mine(message):
            await self.party.apply(message)

    async def dc_relay(self, message: dict[str, Any]) -> None:
        """SDP or candidates from the other party of one of this user's calls."""
        route = self.party.get(message.get("call_id")) if self.party is not None else None
        if route is not None and message.get("from") == route.peer_pk:
            await self._send({**message["frame"], "call_id": message["call_id"]})

    async def dc_peer(self, message: dict[str, Any]) -> None:
        """The other party's signaling connection dropped or came back."""
        route = self.party.get(message.get("call_id")) if self.party is not None else None
        if route is None or message.get("from") != route.peer_pk:
            return
        channel = message.get("channel")
        connected = message["connected"] and isinstance(channel, str)
        route.peer_channels = (channel,) if connected else ()
        if route.status == CallStatus.ANSWERED:
            await self._send(protocol.peer_frame(message["call_id"], message["connected"]))

    async def dc_blocked(self, message: dict[str, Any]) -> None:
        """A user this connection watches blocked it: it is no longer told of them."""
        if self.watching is not None and isinstance(message.get("blocker"), int):
            await self.watching.blocked_by(message["blocker"])

    async def dc_revoke(self, message: dict[str, Any]) -> None:
        """This connection's session was revoked: its calls end (``revoked``), it closes."""
        if self.party is None or not revocation.concerns(message, self.party.session):
            return
        for call_id in self.party.call_ids():
            await self.party.change(calls.leave, call_id, self.party.pk, EndReason.REVOKED)
        await self._reject(errors.SESSION_REVOKED, protocol.CLOSE_REVOKED)

    # -- helpers ------------------------------------------------------------------------

    def _is_mine(self, message: dict[str, Any]) -> bool:
        return self.party is not None and message.get("registration") == self.party.pk

    async def _send(self, frame: dict[str, Any]) -> None:
        if not self.finished:
            # What channels' send(text_data=...) sends, without its two wrapper coroutines.
            await self.base_send({"type": "websocket.send", "text": protocol.dumps(frame)})

    async def websocket_receive(self, message: dict[str, Any]) -> None:
        """channels' ``websocket_receive``: the frame's text or bytes to :meth:`receive`."""
        text = message.get("text")
        if text is not None:
            await self.receive(text_data=text)
        else:
            await self.receive(bytes_data=message.get("bytes"))


class _GoOn:
    """Awaitable: a handler coroutine stepped once by hand, waiting on ``waiting``, finished
    in the task that awaits this (see :meth:`SignalingConsumer.deliver`)."""

    def __init__(self, step: Coroutine[Any, Any, None], waiting: Any) -> None:
        self.step = step
        self.waiting = waiting

    def __await__(self) -> Generator[Any, None, None]:
        yield self.waiting  # what the handler waits on: the task resumes us once it is done
        return (yield from self.step.__await__())
