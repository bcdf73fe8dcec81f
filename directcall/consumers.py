"""The signaling WebSocket: one connection per signed-in device (protocol: docs/protocol.md).

Thin on purpose: it checks each frame against the allow-list and size limits, then hands
the work to :mod:`directcall.calls` (state) and :mod:`directcall.presence` (who is where).
Identity comes only from the session token of the ``auth`` frame. A connection keeps a
small routing table of the live calls its user is a party of (filled from the database at
auth and by the server's own messages), so that relaying SDP and candidates needs no
database access: a presence lookup and one channel-layer send.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import ChannelFull
from channels.generic.websocket import AsyncWebsocketConsumer

from . import calls, errors, presence, tokens
from .conf import get_settings
from .errors import DirectCallError
from .models import LIVE_STATUSES, Call, CallStatus, EndReason, Registration
from .validation import clean_call_params

logger = logging.getLogger("directcall.signaling")

# Close codes (4000-4999 are the application's).
CLOSE_AUTH_FAILED = 4001
CLOSE_ALREADY_SIGNEDIN = 4002
CLOSE_REPLACED = 4003
CLOSE_IDLE = 4008

MAX_SDP_CHARS = 32_768
MAX_CANDIDATES = 64
MAX_CANDIDATE_CHARS = 1024
HANGUP_REASONS = {EndReason.USER_HANGUP, EndReason.ICE_FAILED, EndReason.USER_MEDIA_FAILED}
DECLINE_REASONS = {EndReason.USER_DECLINED, EndReason.USER_MEDIA_FAILED, EndReason.USER_BUSY}

_presence = {
    name: sync_to_async(getattr(presence, name), thread_sensitive=False)
    for name in ("claim", "renew", "release", "lookup", "mark_gone", "mark_back")
}
_background: set[asyncio.Task] = set()  # keeps process-level tasks referenced until done
_sweepers: dict[int, asyncio.Task] = {}  # one sweep loop per event loop


def _spawn_background(coro: Awaitable[Any]) -> None:
    task = asyncio.ensure_future(coro)
    _background.add(task)
    task.add_done_callback(_background.discard)


async def _sweep_forever() -> None:
    """Finalize calls left behind by dead processes, every SWEEP_INTERVAL seconds."""
    while True:
        await asyncio.sleep(float(get_settings()["SWEEP_INTERVAL"]))
        try:
            for call in await database_sync_to_async(calls.sweep)():
                await calls.announce(call)
        except Exception:
            logger.exception("call sweep failed; retrying at the next interval")


def ensure_sweeper() -> None:
    """Start this event loop's sweep task if it is not running."""
    loop = asyncio.get_running_loop()
    task = _sweepers.get(id(loop))
    if task is None or task.done():
        _sweepers[id(loop)] = loop.create_task(_sweep_forever())


@dataclass
class _CallRoute:
    """What a connection knows of one of its live calls."""

    role: str  # "caller" or "callee"
    peer_pk: int
    peer_cuid: str
    status: str
    timer: asyncio.Task | None = field(default=None, repr=False)
    # The channel of the peer's connection, learnt from its own messages (incoming, peer)
    # or a presence lookup; kept so a relay is one channel-layer send. Cleared when the
    # peer's connection drops.
    peer_channel: str | None = None


def _uuid(value: Any) -> str | None:
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


def _sdp(frame: dict[str, Any]) -> str:
    sdp = frame.get("sdp")
    if not isinstance(sdp, str) or not sdp or len(sdp) > MAX_SDP_CHARS:
        raise DirectCallError(errors.BAD_FRAME, "Field 'sdp' must be an SDP string.")
    return sdp


def _is_text(frame: Any) -> bool:
    """No lone surrogate anywhere: a "\\ud800" escape parses, but is no UTF-8 text."""
    try:
        json.dumps(frame, ensure_ascii=False).encode()
    except (UnicodeEncodeError, RecursionError):
        return False
    return True


def _ref(frame: dict[str, Any]) -> str | None:
    ref = frame.get("ref")
    if ref is None:
        return None
    if not isinstance(ref, str | int) or isinstance(ref, bool) or len(str(ref)) > 64:
        raise DirectCallError(errors.BAD_FRAME, "Field 'ref' must be a short string.")
    return str(ref)


def _candidates(frame: dict[str, Any]) -> list[dict[str, Any]]:
    raw = frame.get("candidates", [])
    if not isinstance(raw, list) or len(raw) > MAX_CANDIDATES:
        raise DirectCallError(
            errors.BAD_FRAME, f"'candidates' must be a list of ≤ {MAX_CANDIDATES}."
        )
    clean = []
    for item in raw:
        if not isinstance(item, dict):
            raise DirectCallError(errors.BAD_FRAME, "Each candidate must be an object.")
        candidate = item.get("candidate")
        mid = item.get("sdpMid")
        index = item.get("sdpMLineIndex")
        ufrag = item.get("usernameFragment")
        if (
            not isinstance(candidate, str)
            or len(candidate) > MAX_CANDIDATE_CHARS
            or not (mid is None or (isinstance(mid, str) and len(mid) <= 64))
            or not (index is None or (type(index) is int and 0 <= index < 256))
            or not (ufrag is None or (isinstance(ufrag, str) and len(ufrag) <= 256))
        ):
            raise DirectCallError(errors.BAD_FRAME, "A candidate has invalid fields.")
        clean.append(
            {
                "candidate": candidate,
                "sdpMid": mid,
                "sdpMLineIndex": index,
                "usernameFragment": ufrag,
            }
        )
    return clean


class SignalingConsumer(AsyncWebsocketConsumer):
    """One signed-in device: frames from its browser, messages from the server's processes."""

    handlers: dict[str, str] = {
        "auth": "on_auth",
        "ping": "on_ping",
        "invite": "on_invite",
        "ringing": "on_ringing",
        "accept": "on_accept",
        "decline": "on_decline",
        "cancel": "on_cancel",
        "hangup": "on_hangup",
        "candidates": "on_candidates",
        "renegotiate": "on_renegotiate",
    }

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Route a message to its handler, without channels' per-message connection clean-up.

        channels runs ``aclose_old_connections()`` — a thread hop — before every handler.
        Every ORM call here goes through ``database_sync_to_async``, which closes stale
        connections around itself already, so that hop only cost time: about two thirds of
        a relayed frame's server CPU (docs/performance.md).
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    # -- connection lifecycle ---------------------------------------------------------

    async def connect(self) -> None:
        self.session: tokens.Session | None = None
        self.registration: Registration | None = None
        self.holder: presence.Holder | None = None
        self.routes: dict[str, _CallRoute] = {}
        self.replaced = False
        self.tasks: set[asyncio.Task] = set()
        conf = get_settings()
        self.max_frame = int(conf["MAX_FRAME_BYTES"])
        self.flood_rate = float(conf["FLOOD_RATE"])
        self.flood_burst = float(conf["FLOOD_BURST"])
        self.tokens = self.flood_burst
        self.last_refill = self.last_frame_at = time.monotonic()
        self.last_flood_error = 0.0
        await self.accept()
        ensure_sweeper()
        self._spawn(self._auth_deadline(float(conf["AUTH_TIMEOUT"])))

    async def disconnect(self, code: int) -> None:
        for task in list(self.tasks):
            task.cancel()
        for route in self.routes.values():
            if route.timer is not None:
                route.timer.cancel()
        if self.session is None or self.holder is None or self.replaced:
            return
        session, holder = self.session, self.holder
        current = await _presence["lookup"](session.account_pk, session.cuid)
        if current is not None and current.conn != holder.conn:
            return  # this cuid is already back on a newer connection, which owns its calls
        await _presence["release"](session.account_pk, session.cuid, holder)
        for call_id, route in list(self.routes.items()):
            if route.status == CallStatus.ANSWERED:
                await _presence["mark_gone"](call_id, session.registration_pk)
                await self._send_to_peer(route, "dc.peer", call_id, {"connected": False})
                _spawn_background(self._end_after_grace(call_id, session))
            elif route.role == "caller":
                call = await database_sync_to_async(calls.leave)(
                    call_id, session.registration_pk, EndReason.CONNECTION_LOST
                )
                if call is not None:
                    await calls.announce(call)

    @staticmethod
    async def _end_after_grace(call_id: str, session: tokens.Session) -> None:
        await asyncio.sleep(float(get_settings()["RECONNECT_GRACE"]) + 0.05)
        call = await database_sync_to_async(calls.end_if_still_gone)(
            call_id, session.account_pk, session.cuid, session.registration_pk
        )
        if call is not None:
            await calls.announce(call)

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def _auth_deadline(self, seconds: float) -> None:
        await asyncio.sleep(seconds)
        if self.session is None:
            await self._send_error(DirectCallError(errors.NOT_AUTHENTICATED))
            await self.close(CLOSE_AUTH_FAILED)

    async def _keep_presence(self) -> None:
        """Renew presence every PRESENCE_TTL/3 and close connections that went quiet."""
        conf = get_settings()
        interval = max(0.2, float(conf["PRESENCE_TTL"]) / 3)
        idle = float(conf["IDLE_TIMEOUT"])
        session, holder = self.session, self.holder
        while True:
            await asyncio.sleep(interval)
            if time.monotonic() - self.last_frame_at > idle:
                await self.close(CLOSE_IDLE)
                return
            try:
                still_mine = await _presence["renew"](session.account_pk, session.cuid, holder)
            except Exception:
                # The cache is unreachable (e.g. Redis restarting): keep the socket and
                # try again at the next interval rather than dropping a live call.
                logger.warning("presence renewal failed for %s", session.cuid, exc_info=True)
                continue
            if not still_mine:
                self.replaced = True
                await self._send({"type": "replaced"})
                await self.close(CLOSE_REPLACED)
                return

    # -- frames from the browser --------------------------------------------------------

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        now = time.monotonic()
        self.last_frame_at = now
        self.tokens = min(
            self.flood_burst, self.tokens + (now - self.last_refill) * self.flood_rate
        )
        self.last_refill = now
        if self.tokens < 1:
            if now - self.last_flood_error >= 1:
                self.last_flood_error = now
                logger.warning(
                    "flood limit reached by %s (account %s): dropping frames",
                    self.session.cuid if self.session else "an unauthenticated socket",
                    self.session.account_pk if self.session else "-",
                )
                await self._send_error(DirectCallError(errors.RATE_LIMITED))
            return
        self.tokens -= 1
        frame: Any = None
        try:
            if text_data is None:
                raise DirectCallError(errors.BAD_FRAME, "Binary frames are not accepted.")
            size = len(text_data.encode("utf-8", "surrogatepass"))
            if len(text_data) > self.max_frame or size > self.max_frame:
                raise DirectCallError(
                    errors.FRAME_TOO_LARGE, f"Frames are limited to {self.max_frame} bytes."
                )
            try:
                frame = json.loads(text_data)
            except (ValueError, RecursionError):
                raise DirectCallError(errors.BAD_FRAME, "The frame is not JSON.") from None
            if not _is_text(frame):
                raise DirectCallError(errors.BAD_FRAME, "The frame is not UTF-8 text.")
            kind = frame.get("type") if isinstance(frame, dict) else None
            handler = self.handlers.get(kind) if isinstance(kind, str) else None
            if handler is None:
                raise DirectCallError(errors.BAD_FRAME, "Unknown or missing frame type.")
            if self.session is None and kind != "auth":
                raise DirectCallError(errors.NOT_AUTHENTICATED)
            await getattr(self, handler)(frame)
        except DirectCallError as exc:
            await self._send_error(exc, frame)
        except Exception:
            logger.exception("unhandled error in a %s frame", type(frame).__name__)
            await self._send_error(DirectCallError(errors.INTERNAL), frame)

    async def on_auth(self, frame: dict[str, Any]) -> None:
        """``auth {token, resume?}``: sign this connection in as the token's registration."""
        if self.session is not None:
            raise DirectCallError(errors.BAD_FRAME, "This connection is already authenticated.")
        session = tokens.verify(frame.get("token"))
        registration = await self._registration(session) if session else None
        if session is None or registration is None:
            client = (self.scope.get("client") or ["?"])[0]
            if session is None:
                logger.info("socket auth refused: invalid or expired token (client %s)", client)
            else:
                logger.warning(
                    "socket auth refused for account %s registration %s cuid %r: "
                    "registration gone or account inactive (client %s)",
                    session.account_pk,
                    session.registration_pk,
                    session.cuid,
                    client,
                )
            await self._send_error(DirectCallError(errors.INVALID_TOKEN))
            await self.close(CLOSE_AUTH_FAILED)
            return
        holder = presence.Holder(self.channel_name, session.device_id, uuid.uuid4().hex)
        outcome, previous = await _presence["claim"](session.account_pk, session.cuid, holder)
        if outcome is presence.Claim.REFUSED:
            await self._send_error(DirectCallError(errors.ALREADY_SIGNEDIN))
            await self.close(CLOSE_ALREADY_SIGNEDIN)
            return
        if previous is not None and previous.channel != self.channel_name:
            await self.channel_layer.send(
                previous.channel, {"type": "dc.replaced", "conn": previous.conn}
            )
        self.session, self.registration, self.holder = session, registration, holder
        self._spawn(self._keep_presence())
        live = await database_sync_to_async(calls.live_calls_of)(session.registration_pk)
        summaries = []
        for call in live:
            route = self._add_route(call)
            summaries.append(self._summary(call, route))
            if call.status == CallStatus.ANSWERED:
                await _presence["mark_back"](str(call.pk), session.registration_pk)
            # Tell the peer where this user is now, so its relays reach this connection.
            await self._send_to_peer(
                route, "dc.peer", str(call.pk), {"connected": True, "channel": self.channel_name}
            )
        await self._send(
            {
                "type": "ready",
                "cuid": registration.cuid,
                "name": registration.display_name,
                "calls": summaries,
                "reconnect_grace": float(get_settings()["RECONNECT_GRACE"]),
            }
        )
        for call in live:
            if call.status in calls.RINGING_STATUSES and call.callee_id == registration.pk:
                offer = await sync_to_async(calls.offer_of, thread_sensitive=False)(call.pk)
                if offer:
                    await self._send(self._incoming_frame(call, offer))
        resume = frame.get("resume")
        if isinstance(resume, list):
            for value in resume[:8]:
                call_id = _uuid(value)
                if call_id and call_id not in self.routes:
                    await self._send_state_of(call_id)

    @database_sync_to_async
    def _registration(self, session: tokens.Session) -> Registration | None:
        return (
            Registration.objects.select_related("account")
            .filter(
                pk=session.registration_pk,
                account_id=session.account_pk,
                cuid=session.cuid,
                account__is_active=True,
            )
            .first()
        )

    async def on_ping(self, frame: dict[str, Any]) -> None:
        """``ping``: keep-alive; answered with ``pong``."""
        await self._send({"type": "pong"})

    async def on_invite(self, frame: dict[str, Any]) -> None:
        """``invite {ref, receiver, context, receiver_image?, initiator_image?, sdp}``."""
        session = self.session
        if any(route.status in LIVE_STATUSES for route in self.routes.values()):
            raise DirectCallError(errors.OUTGOING_CALL_IN_PROGRESS)
        params = clean_call_params(
            frame.get("receiver"),
            frame.get("context"),
            {key: frame.get(key) for key in ("receiver_image", "initiator_image")},
        )
        sdp = _sdp(frame)
        ref = _ref(frame)
        if params.receiver == session.cuid:
            raise DirectCallError(errors.INVALID_CALL_PARAMETERS, "You cannot call yourself.")
        await sync_to_async(calls.check_invite_rate, thread_sensitive=False)(
            session.account_pk, session.cuid
        )
        callee = await _presence["lookup"](session.account_pk, params.receiver)
        if callee is None:
            raise DirectCallError(errors.RECEIVER_OFFLINE)
        call = await database_sync_to_async(calls.start)(session.registration_pk, params)
        await self._send(
            {
                "type": "invited",
                "ref": ref,
                "call_id": str(call.pk),
                "receiver": {"cuid": call.callee.cuid, "name": call.callee.display_name},
            }
        )
        if call.status == CallStatus.BUSY:
            await self._send(calls.state_frame(call))
            return
        await sync_to_async(calls.remember_offer, thread_sensitive=False)(call, sdp)
        self._add_route(call).peer_channel = callee.channel
        await self.channel_layer.send(
            callee.channel,
            {
                "type": "dc.incoming",
                "registration": call.callee_id,
                "channel": self.channel_name,
                "frame": self._incoming_frame(call, sdp),
            },
        )

    async def on_ringing(self, frame: dict[str, Any]) -> None:
        """``ringing {call_id}`` from the callee."""
        call_id, _route = self._route(frame, role="callee")
        call = await database_sync_to_async(calls.ring)(call_id, self.session.registration_pk)
        if call is not None:
            await calls.announce(call)

    async def on_accept(self, frame: dict[str, Any]) -> None:
        """``accept {call_id, sdp}`` from the callee: the SDP answer goes to the caller."""
        call_id, _route = self._route(frame, role="callee")
        sdp = _sdp(frame)
        call = await database_sync_to_async(calls.accept)(call_id, self.session.registration_pk)
        if call is None:
            await self._refused(call_id, "The call is no longer ringing.")
            return
        await calls.announce(call, extra={"caller": {"sdp": sdp}})

    async def on_decline(self, frame: dict[str, Any]) -> None:
        """``decline {call_id, reason?}`` from the callee."""
        call_id, _route = self._route(frame, role="callee")
        reason = frame.get("reason") or EndReason.USER_DECLINED
        if reason not in DECLINE_REASONS:
            raise DirectCallError(errors.BAD_FRAME, "Unknown decline reason.")
        call = await database_sync_to_async(calls.decline)(
            call_id, self.session.registration_pk, reason
        )
        if call is None:
            await self._refused(call_id, "The call is no longer ringing.")
            return
        await calls.announce(call)

    async def on_cancel(self, frame: dict[str, Any]) -> None:
        """``cancel {call_id}`` from the caller (an already answered call is hung up)."""
        call_id, _route = self._route(frame, role="caller")
        await self._leave(call_id, EndReason.USER_HANGUP)

    async def on_hangup(self, frame: dict[str, Any]) -> None:
        """``hangup {call_id, reason?}`` from either party."""
        call_id, _route = self._route(frame)
        reason = frame.get("reason") or EndReason.USER_HANGUP
        if reason not in HANGUP_REASONS:
            raise DirectCallError(errors.BAD_FRAME, "Unknown hangup reason.")
        await self._leave(call_id, reason)

    async def _leave(self, call_id: str, reason: str) -> None:
        call = await database_sync_to_async(calls.leave)(
            call_id, self.session.registration_pk, reason
        )
        if call is None:
            await self._refused(call_id, "The call has already ended.")
            return
        await calls.announce(call)

    async def on_candidates(self, frame: dict[str, Any]) -> None:
        """``candidates {call_id, candidates: [...], end?}``: relayed to the other party."""
        call_id, route = self._route(frame)
        end = frame.get("end", False)
        if not isinstance(end, bool):
            raise DirectCallError(errors.BAD_FRAME, "Field 'end' must be a boolean.")
        payload = {"candidates": _candidates(frame), "end": end}
        await self._send_to_peer(route, "dc.relay", call_id, {"type": "candidates", **payload})

    async def on_renegotiate(self, frame: dict[str, Any]) -> None:
        """``renegotiate {call_id, sdp_type, sdp}``: an ICE-restart offer or its answer."""
        call_id, route = self._route(frame)
        if route.status != CallStatus.ANSWERED:
            raise DirectCallError(errors.CALL_STATE, "Only an answered call can renegotiate.")
        sdp_type = frame.get("sdp_type")
        if sdp_type not in ("offer", "answer"):
            raise DirectCallError(errors.BAD_FRAME, "Field 'sdp_type' must be offer or answer.")
        payload = {"type": "renegotiate", "sdp_type": sdp_type, "sdp": _sdp(frame)}
        await self._send_to_peer(route, "dc.relay", call_id, payload)

    # -- messages from the server's processes (channel layer) ---------------------------

    async def dc_incoming(self, message: dict[str, Any]) -> None:
        """A call to this connection's user: remember it and show it."""
        if not self._is_mine(message):
            return
        frame = message["frame"]
        call = await database_sync_to_async(calls.get_call)(frame["call_id"])
        if call is None or call.status not in LIVE_STATUSES:
            return
        self._add_route(call).peer_channel = message.get("channel")
        await self._send(frame)

    async def dc_state(self, message: dict[str, Any]) -> None:
        """A call of this user changed state."""
        if not self._is_mine(message):
            return
        frame = message["frame"]
        route = self.routes.get(frame["call_id"])
        if route is not None:
            route.status = frame["status"]
            if route.timer is not None:
                route.timer.cancel()
                route.timer = None
            if frame["status"] in LIVE_STATUSES:
                self._arm_deadline(frame["call_id"], message.get("deadline"), route)
            else:
                del self.routes[frame["call_id"]]
        await self._send(frame)

    async def dc_relay(self, message: dict[str, Any]) -> None:
        """SDP or candidates from the other party of one of this user's calls."""
        route = self.routes.get(message.get("call_id"))
        if route is None or message.get("from") != route.peer_pk:
            return
        await self._send({**message["frame"], "call_id": message["call_id"]})

    async def dc_peer(self, message: dict[str, Any]) -> None:
        """The other party's signaling connection dropped or came back."""
        route = self.routes.get(message.get("call_id"))
        if route is None or message.get("from") != route.peer_pk:
            return
        route.peer_channel = message.get("channel") if message["connected"] else None
        if route.status == CallStatus.ANSWERED:
            await self._send(
                {"type": "peer", "call_id": message["call_id"], "connected": message["connected"]}
            )

    async def dc_replaced(self, message: dict[str, Any]) -> None:
        """The same device signed in again on a new connection: this one steps aside."""
        if self.holder is None or message.get("conn") != self.holder.conn:
            return
        self.replaced = True
        await self._send({"type": "replaced"})
        await self.close(CLOSE_REPLACED)

    # -- helpers ------------------------------------------------------------------------

    def _is_mine(self, message: dict[str, Any]) -> bool:
        return self.session is not None and message.get("registration") == (
            self.session.registration_pk
        )

    def _route(self, frame: dict[str, Any], role: str | None = None) -> tuple[str, _CallRoute]:
        call_id = _uuid(frame.get("call_id"))
        if call_id is None:
            raise DirectCallError(errors.BAD_FRAME, "Field 'call_id' must be a call id.")
        route = self.routes.get(call_id)
        if route is None or (role is not None and route.role != role):
            # INFO, not WARNING: honest clients hit this in races (accept as the caller cancels).
            logger.info(
                "refused %s for call %s from %s (account %s): not a party in that role",
                frame.get("type"),
                call_id,
                self.session.cuid,
                self.session.account_pk,
            )
            raise DirectCallError(errors.UNKNOWN_CALL)
        return call_id, route

    def _add_route(self, call: Call) -> _CallRoute:
        mine = self.session.registration_pk
        role = "caller" if call.caller_id == mine else "callee"
        peer = call.callee if role == "caller" else call.caller
        route = _CallRoute(role=role, peer_pk=peer.pk, peer_cuid=peer.cuid, status=call.status)
        old = self.routes.get(str(call.pk))
        if old is not None and old.timer is not None:
            old.timer.cancel()
        self.routes[str(call.pk)] = route
        deadline = call.deadline.timestamp() if call.deadline else None
        self._arm_deadline(str(call.pk), deadline, route)
        return route

    def _arm_deadline(self, call_id: str, deadline: float | None, route: _CallRoute) -> None:
        """Enforce the call's deadline (epoch seconds) from this process too.

        The sweep is the backstop when no process that holds a party is left.
        """
        if deadline is None:
            return
        delay = max(0.0, deadline - time.time()) + 0.05

        async def fire() -> None:
            await asyncio.sleep(delay)
            expired = await database_sync_to_async(calls.expire)(call_id)
            if expired is not None:
                await calls.announce(expired)

        route.timer = self._spawn(fire())

    async def _send_to_peer(
        self, route: _CallRoute, kind: str, call_id: str, payload: dict[str, Any]
    ) -> None:
        channel = route.peer_channel
        if channel is None:
            holder = await _presence["lookup"](self.session.account_pk, route.peer_cuid)
            if holder is None:
                return  # the peer is reconnecting; it resynchronises from its ready frame
            channel = route.peer_channel = holder.channel
        message = {"type": kind, "call_id": call_id, "from": self.session.registration_pk}
        if kind == "dc.relay":
            message["frame"] = payload
        else:
            message.update(payload)
        try:
            await self.channel_layer.send(channel, message)
        except ChannelFull:
            # The peer's process is not keeping up: drop this relay (ICE retries) rather
            # than fail the sender's frame.
            logger.warning("channel of %s full: dropped a %s", route.peer_cuid, kind)

    def _summary(self, call: Call, route: _CallRoute) -> dict[str, Any]:
        peer = call.callee if route.role == "caller" else call.caller
        return {
            "call_id": str(call.pk),
            "status": call.status,
            "role": route.role,
            "peer": {"cuid": peer.cuid, "name": peer.display_name},
            "context": call.context,
        }

    @staticmethod
    def _incoming_frame(call: Call, sdp: str) -> dict[str, Any]:
        remaining = (call.deadline.timestamp() - time.time()) if call.deadline else 0
        return {
            "type": "incoming",
            "call_id": str(call.pk),
            "caller": {
                "cuid": call.caller.cuid,
                "name": call.caller.display_name,
                "image": call.caller_image or None,
            },
            "receiver_image": call.receiver_image or None,
            "context": call.context,
            "sdp": sdp,
            "ring_timeout": max(0, round(remaining, 3)),
        }

    async def _send_state_of(self, call_id: str) -> None:
        call = await database_sync_to_async(calls.get_call)(call_id)
        mine = self.session.registration_pk
        if call is not None and mine in (call.caller_id, call.callee_id):
            await self._send(calls.state_frame(call))

    async def _refused(self, call_id: str, message: str) -> None:
        """A transition lost a race: say so (the winner's ``state`` frame is on its way)."""
        await self._send_error(DirectCallError(errors.CALL_STATE, message), {"call_id": call_id})

    async def _send(self, frame: dict[str, Any]) -> None:
        await self.send(text_data=json.dumps(frame, separators=(",", ":")))

    async def _send_error(self, exc: DirectCallError, frame: Any = None) -> None:
        error: dict[str, Any] = {"type": "error", **exc.as_dict()}
        if isinstance(frame, dict):
            for key in ("ref", "call_id"):
                value = frame.get(key)
                if isinstance(value, str | int) and not isinstance(value, bool):
                    error[key] = str(value)[:64]
            if isinstance(frame.get("type"), str):
                error["in_reply_to"] = frame["type"][:32]
        await self._send(error)
