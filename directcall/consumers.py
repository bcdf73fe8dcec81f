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
import contextvars
import logging
import time
from typing import Any

from channels.db import database_sync_to_async

from . import (
    blocks,
    calls,
    dbthread,
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
from .connection import OrderedConsumer
from .errors import DirectCallError
from .models import CallStatus, EndReason
from .origins import site_origin
from .party import CallRoute, Party
from .ratelimit import TokenBucket
from .sweeper import Sweeper, running_sweeper

logger = logging.getLogger("directcall.signaling")


class SignalingConsumer(OrderedConsumer):
    """One signed-in tab: frames from its browser, messages from the server's processes.

    Its state starts as class attributes (an idle connection's instance holds only what
    changed), and it has no task of its own: the process's timers
    (:class:`~directcall.sweeper.Timers`) run its sign-in deadline, then its presence
    renewal and idle close (:meth:`on_timer`).
    """

    handlers: dict[str, str] = {kind: f"on_{kind}" for kind in protocol.CLIENT_FRAMES}

    party: Party | None = None  # set by a successful auth
    watching: watch.Watching | None = None  # the cuids it watches (who is online), once it does
    holder: presence.Holder | None = None
    counted_address: str | None = None  # counted against MAX_CONNECTIONS_PER_IP
    refused = False  # closed before sign-in: frames still in flight are ignored
    sweeper: Sweeper | None = None
    # How the socket closed (the browser's code; 4011 when its session was revoked here),
    # and whether the page said it is leaving: an answered call then waits PAGE_GRACE for
    # it, not RECONNECT_GRACE.
    close_code: int | None = None
    leaving = False
    # The process's timers: this connection's place in them, and when it renews presence.
    timer_slot: int | None = None
    renew_at = 0.0
    last_flood_error = 0.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # All of them now, in one order (see OrderedConsumer.__init__).
        self.max_frame = 0
        self.bucket: TokenBucket | None = None
        self.last_frame_at = self.last_flood_error = self.renew_at = 0.0
        self.counted_address = self.site_origin = self.sweeper = self.timer_slot = None
        self.party = self.holder = self.watching = self.close_code = None
        self.refused = self.leaving = False

    # -- connection lifecycle ---------------------------------------------------------

    async def connect(self) -> None:
        conf = get_settings()
        self.sweeper = running_sweeper()
        self.max_frame = conf.MAX_FRAME_BYTES
        self.bucket = TokenBucket(conf.FLOOD_RATE, conf.FLOOD_BURST)
        self.last_frame_at = time.monotonic()
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
        self.sweeper.timers.at(self, self.last_frame_at + conf.AUTH_TIMEOUT)  # on_timer

    async def _refuse(self, error: DirectCallError, close_code: int) -> None:
        """Before sign-in: say why, close, and handle nothing more from this socket."""
        self.refused = True
        await self._send(protocol.error_frame(error))
        await self.close(close_code)

    async def disconnect(self, code: int) -> None:
        if self.close_code is None:  # not closed here for a revocation
            self.close_code = code
        await self._finish()

    async def _finish(self) -> None:
        """End the connection's work, once: its tasks, its presence, the rules for its calls."""
        if self.finished:
            return
        await super()._finish()
        if self.sweeper is not None:
            self.sweeper.timers.cancel(self)
        if self.counted_address is not None:
            iplimit.connections.release(self.counted_address)
            self.counted_address = None
        if self.watching is not None:
            self.watching.close()
        if self.party is not None:
            layer, code = self.channel_layer, self.close_code
            await signin.sign_out(self.party, self.holder, self.sweeper, layer, code, self.leaving)

    def on_timer(self, now: float) -> float | None:
        """The process's timers: before sign-in, the AUTH_TIMEOUT deadline; once signed in,
        presence renewal and the idle close (:func:`signin.upkeep`). Returns when next."""
        if self.finished:
            return None
        if self.party is None:
            self._spawn(self._reject(errors.NOT_AUTHENTICATED, protocol.CLOSE_AUTH_FAILED))
            return None
        return signin.upkeep(self, now)

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
        # In a copy of this connection's context, which ends with the sign-in: what its
        # steps leave in context-local storage (a Django cache handle per context, asgiref's
        # bookkeeping of thread hops: ~0.7 KiB) is not kept by the idle connection.
        sign_in = self._sign_in(frame)
        await asyncio.get_running_loop().create_task(sign_in, context=contextvars.copy_context())

    async def _sign_in(self, frame: dict[str, Any]) -> None:
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
        self.renew_at = signin.next_renewal(time.monotonic())
        self.sweeper.timers.at(self, self.renew_at)  # on_timer: no sign-in deadline now
        self.sweeper.watch(self.party)
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
        if self.watching is None:  # made on first use: most connections never watch
            self.watching = watch.Watching(self.party.session, self._send)
        await self.watching.watch(frame)

    async def on_unwatch(self, frame: dict[str, Any]) -> None:
        """``unwatch {ref?, cuids?}``: stop following them (all of them without ``cuids``)."""
        if self.watching is None:
            self.watching = watch.Watching(self.party.session, self._send)
        await self.watching.unwatch(frame)

    async def on_invite(self, frame: dict[str, Any]) -> None:
        """``invite {ref, receiver, context, receiver_image?, initiator_image?, sdp}``."""
        party = self.party
        if await party.busy():
            raise DirectCallError(errors.OUTGOING_CALL_IN_PROGRESS)
        invite = protocol.invite_of(frame)
        call_key, key_hash = calls.new_call_key()  # this tab holds the call on its side
        placed = await dbthread.run(
            calls.place_call,
            party.session,
            invite.params,
            invite.sdp,
            key_hash,
            site_origin=self.site_origin,
            caller_row=party.registration,
            conn=self.holder.conn,
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
            conn=self.holder.conn,
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
        # Signed out for good (the SDK does not come back with it): whatever code the
        # browser's close echoes, the sign-out keeps no reservation for this device.
        self.close_code = protocol.CLOSE_REVOKED
        await self._reject(errors.SESSION_REVOKED, protocol.CLOSE_REVOKED)

    # -- helpers ------------------------------------------------------------------------

    def _is_mine(self, message: dict[str, Any]) -> bool:
        return self.party is not None and message.get("registration") == self.party.pk

    async def _send(self, frame: dict[str, Any]) -> None:
        if not self.finished:
            # What channels' send(text_data=...) sends, without its two wrapper coroutines.
            await self.base_send({"type": "websocket.send", "text": protocol.dumps(frame)})
