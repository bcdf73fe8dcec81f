"""One signed-in connection's side of its calls: the routing table, the deadlines, and
keeping its client in step with the database.

A :class:`Party` belongs to one :class:`~directcall.consumers.SignalingConsumer` (one tab)
once it has signed in. Its routing table holds the live calls this tab has a part in
(filled at ``auth`` and by the server's own messages), so that relaying SDP and
candidates needs no database access: the calls ringing for the user (every tab rings),
and the calls this tab *holds* — it placed them, its ``accept`` won, or it took them back
with their call key after a reload. A call is held by one tab per side; the user's other
tabs hear its states and ignore them. Every transition it makes is told to both parties
(:mod:`directcall.transport`) in one shielded unit; a state that does not reach its own
client through the channel layer is told directly, and a state lost on the way to it is
caught up by :meth:`Party.converge` (from the sweep, a refused frame, a passed deadline).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from . import calls, dbthread, errors, presence, protocol, transport
from .errors import DirectCallError
from .models import LIVE_STATUSES, Call, CallStatus, Registration
from .sweeper import Sweeper
from .tokens import Session

logger = logging.getLogger("directcall.signaling")

Send = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]


@dataclass
class CallRoute:
    """What a connection knows of one of its live calls."""

    role: str  # "caller" or "callee"
    peer_pk: int
    peer_cuid: str
    status: str
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)
    # The channels of the peer's connections: the one that holds the call, learnt from
    # its own messages (incoming, the answered state, peer), or while it rings every tab
    # of the callee (presence); kept so a relay costs no lookup. Cleared when the peer's
    # connection drops.
    peer_channels: tuple[str, ...] = ()
    # This connection holds the call on its side (see the module docstring).
    bound: bool = False
    # The call key this tab sent an ``accept`` with, until the answered state says whose won.
    call_key: str | None = field(default=None, repr=False)
    # The call as this connection was given it (its account and parties), passed to the
    # transitions so that they do not read it again.
    call: Call | None = field(default=None, repr=False)


# How many ended calls a connection remembers (see Party.apply).
_ENDED_KEPT = 32


class Party:
    """A signed-in connection's live calls; ``send`` sends a frame to its client.

    ``registration``: the registration (with its account) loaded when it signed in, reused
    when it places a call.
    """

    # One per signed-in connection: slots.
    __slots__ = (
        "_asked",
        "_ended",
        "_routes",
        "_send",
        "channel",
        "conn",
        "left",
        "pk",
        "registration",
        "session",
        "sweeper",
    )

    def __init__(
        self,
        session: Session,
        channel: str,
        sweeper: Sweeper,
        send: Send,
        conn: str = "",
        registration: Registration | None = None,
    ) -> None:
        self.session = session
        self.registration = registration
        self.pk = session.registration_pk
        self.channel = channel
        self.conn = conn  # the connection's id in presence
        self.sweeper = sweeper
        self._send = send
        self._routes: dict[str, CallRoute] = {}
        self.left = False
        # Calls whose final state reached this connection before it knew them: an
        # ``incoming`` for one of them that comes later (messages of two processes are not
        # ordered) is not shown.
        self._ended: OrderedDict[str, None] | None = None  # made when first needed
        # Live calls the client asked about at sign-in without being handed them (no call
        # key): their final state is told to it when it comes, nothing else of them.
        self._asked: set[str] | None = None  # made when first needed

    def ask_end(self, call_id: str) -> None:
        """Tell the client the final state of this call it asked about, when it comes."""
        if self._asked is None:
            self._asked = set()
        self._asked.add(call_id)

    def take_asked(self, call_id: str) -> bool:
        """Whether the end of this call is still owed to the client (then no longer)."""
        if self._asked and call_id in self._asked:
            self._asked.discard(call_id)
            return True
        return False

    def get(self, call_id: Any) -> CallRoute | None:
        """The route of a call this connection holds, or None."""
        return self._routes.get(call_id) if isinstance(call_id, str) else None

    def add(self, call: Call, bound: bool = False) -> CallRoute:
        """Take part in a live call (again; ``bound``: this tab holds it), arm its deadline."""
        role = protocol.role_in(call, self.pk)
        peer = call.callee if role == "caller" else call.caller
        route = CallRoute(
            role=role,
            peer_pk=peer.pk,
            peer_cuid=peer.cuid,
            status=call.status,
            bound=bound,
            call=call,
        )
        self._drop(str(call.pk))
        self._routes[str(call.pk)] = route
        self._arm(str(call.pk), call.deadline.timestamp() if call.deadline else None, route)
        return route

    async def ringing(self, message: dict[str, Any]) -> bool:
        """Take part in the call of a ``dc.incoming`` message; False if known or not live.

        The message carries the call (:func:`protocol.incoming_message`): it is read from
        the database only when the message was sent again after a failure (its end may
        have been told in between) or carries none.
        """
        call_id = message["frame"]["call_id"]
        if self.get(call_id) is not None or (self._ended and call_id in self._ended):
            return False  # told already (a repeated message), or ended already
        call = (message.get(transport.LOCAL_ONLY) or {}).get("call")
        if call is None and not message.get("attempt") and message.get("call"):
            call = calls.from_carried(message["call"])
        if call is None:
            call = await dbthread.run(calls.get_call, call_id)
        if call is None or call.status not in LIVE_STATUSES or str(call.pk) != call_id:
            return False
        channel = message.get("channel")
        self.add(call).peer_channels = (channel,) if isinstance(channel, str) else ()
        return True

    async def busy(self) -> bool:
        """Whether a call of this connection is live (ends that never arrived checked first)."""
        if self.call_ids():
            # A call whose end never reached this connection must not block new ones.
            await self.check(self.call_ids())
        return bool(self.call_ids())

    def find(self, frame: dict[str, Any], role: str | None = None) -> tuple[str, CallRoute]:
        """The frame's call, if this connection holds it in ``role``; else ERR_UNKNOWN_CALL."""
        call_id = frame.get("call_id")
        # The routes are keyed by canonical call ids: a frame that spells one so is found
        # without parsing it; any other spelling is parsed (or refused) as a call id.
        route = self._routes.get(call_id) if type(call_id) is str else None
        if route is None:
            call_id = protocol.call_id_of(frame)
            route = self._routes.get(call_id)
        if route is None or (role is not None and route.role != role):
            # INFO, not WARNING: honest clients hit this in races (accept as the caller cancels).
            logger.info(
                "refused %s for call %s from %s: not a party in that role",
                *(frame.get("type"), call_id, self.who),
            )
            raise DirectCallError(errors.UNKNOWN_CALL)
        return call_id, route

    @property
    def who(self) -> str:
        """The cuid and account, for log lines."""
        return f"{self.session.cuid} (account {self.session.account_pk})"

    async def apply(self, message: dict[str, Any]) -> None:
        """A ``dc.state`` message: update the route and tell the client.

        Nothing for a call this connection has no part in, or whose end it told already. A
        deadline timer is cancelled while it waits; an expiry under way is shielded. The
        ``answered`` state makes the callee's tab whose ``accept`` won hold the call (it gets
        its call key); the callee's other tabs are told it was answered elsewhere and let
        the call go. The caller's tab learns which tab to relay to.
        """
        frame = message["frame"]
        route = self._routes.get(frame["call_id"])
        if route is None:
            if frame["status"] not in LIVE_STATUSES:
                if self.take_asked(frame["call_id"]):
                    await self._send(frame)
                if self._ended is None:
                    self._ended = OrderedDict()
                self._ended[frame["call_id"]] = None
                while len(self._ended) > _ENDED_KEPT:
                    self._ended.popitem(last=False)
            return
        if frame["status"] == CallStatus.ANSWERED and not route.bound and route.role == "callee":
            if message.get("bound") != self.channel or route.call_key is None:
                self._drop(frame["call_id"])
                await self._send(protocol.answered_elsewhere(frame))
                return
            route.bound = True
            frame = {**frame, "call_key": route.call_key}
            route.call_key = None
        elif frame["status"] == CallStatus.ANSWERED and message.get("bound"):
            route.peer_channels = (message["bound"],)
        route.status = frame["status"]
        if frame["status"] in LIVE_STATUSES:
            self._cancel_timer(route)
            self._arm(frame["call_id"], message.get("deadline"), route)
        else:
            self._drop(frame["call_id"])
        await self._send(frame)

    # -- changing calls and telling both parties --------------------------------------------

    async def change(
        self,
        transition: Callable[..., Call | None],
        *args: Any,
        extra: dict[str, dict[str, Any]] | None = None,
        bound: str | None = None,
        **kwargs: Any,
    ) -> Call | None:
        """Make a transition and tell the parties, as one unit no cancellation splits.

        ``bound``: the channel of the connection that now holds the call (an ``accept``);
        ``kwargs`` go to the transition (``call``: the call as this connection holds it).
        """

        async def change_and_tell() -> Call | None:
            call = await dbthread.run(transition, *args, **kwargs)
            if call is not None:
                await self.tell(call, extra, bound)
            return call

        return await self.sweeper.shielded(change_and_tell())

    async def tell(
        self,
        call: Call,
        extra: dict[str, dict[str, Any]] | None = None,
        bound: str | None = None,
    ) -> None:
        """Tell every tab of both parties the call's new state; this one's client in any case."""
        known = {self.pk: [self.channel]}
        route = self._routes.get(str(call.pk))
        if route is not None and route.peer_channels:
            known[route.peer_pk] = list(route.peer_channels)
        if self.channel not in await transport.announce(call, extra, known, bound):
            own = (extra or {}).get(protocol.role_in(call, self.pk), {})
            frame = {**protocol.state_frame(call), **own}
            await self.apply(protocol.state_message(call, self.pk, frame, bound))

    async def tell_peer(self, route: CallRoute, message: dict[str, Any]) -> None:
        """Send a message to the other party's tab that holds the call (relays, ``dc.peer``).

        When that tab is not known (it rings in every tab, or the peer's connection came
        back and has not said so yet), every tab of the peer gets it; the others ignore it.
        """
        channels = route.peer_channels
        if not channels:
            found = await presence.alookup(self.session.account_pk, route.peer_cuid)
            if found is None:
                return  # the peer is reconnecting; it resynchronises from its ready frame
            channels = route.peer_channels = tuple(found.channels)
        await transport.send_all(channels, message)

    async def refused(self, call_id: str, message: str) -> None:
        """A transition lost a race: say so, and tell the call's state if it has ended."""
        refusal = DirectCallError(errors.CALL_STATE, message)
        await self._send(protocol.error_frame(refusal, {"call_id": call_id}))
        await self.check([call_id])

    # -- keeping in step with the database (the sweeper calls these too) ---------------------

    def call_ids(self) -> list[str]:
        """The calls this connection holds as live."""
        return list(self._routes)

    async def converge(self, ended: dict[str, Call]) -> None:
        """Tell the client of the ``ended`` calls it still holds as live: a state was lost."""
        for call_id in [call_id for call_id in self._routes if call_id in ended]:
            call = ended[call_id]
            logger.info("call %s: %s, told to %s late", call_id, call.status, self.who)
            frame = protocol.state_frame(call)
            await self.apply(protocol.state_message(call, self.pk, frame))

    async def check(self, call_ids: list[str]) -> None:
        """Converge these calls against the database now."""
        await self.converge(await dbthread.run(calls.ended_among, call_ids))

    # -- deadlines -------------------------------------------------------------------------

    def _arm(self, call_id: str, deadline: float | None, route: CallRoute) -> None:
        """Enforce the call's deadline (epoch seconds) from this process too.

        The sweep is the backstop when no process that holds a party is left. A timer
        handle of the loop, not a task: a state told cancels and re-arms it for the cost of
        a heap entry. The expiry runs as a task of the sweeper: the state it tells may come
        back here and cancel this very timer.
        """
        if deadline is None or self.left:
            return
        delay = max(0.0, deadline - time.time()) + 0.05
        route.timer = asyncio.get_running_loop().call_later(delay, self._due, call_id)

    def _due(self, call_id: str) -> None:
        route = self._routes.get(call_id)
        if route is not None:
            route.timer = None
        if not self.left:
            self.sweeper.spawn(self._expire(call_id))

    async def _expire(self, call_id: str) -> None:
        route = self._routes.get(call_id)
        known = route.call if route is not None else None
        expired = await dbthread.run(calls.expire, call_id, call=known)
        if expired is not None:
            await self.tell(expired)
        else:  # ended elsewhere (or not due yet): make sure this client knows
            await self.check([call_id])

    def _drop(self, call_id: str) -> None:
        route = self._routes.pop(call_id, None)
        if route is not None:
            self._cancel_timer(route)

    @staticmethod
    def _cancel_timer(route: CallRoute) -> None:
        if route.timer is not None:
            route.timer.cancel()
            route.timer = None

    # -- the connection ends -----------------------------------------------------------------

    def close(self) -> None:
        """The connection ended: no more deadline timers here."""
        self.left = True
        for route in self._routes.values():
            self._cancel_timer(route)

    async def leave(
        self, holder: presence.Holder, grace: float, hold: bool = True, left_page: bool = False
    ) -> None:
        """The connection ended: release presence and apply the rules for the calls it held.

        ``grace``: how long an answered call waits for this tab to come back (PAGE_GRACE
        for a page that said it was leaving, else RECONNECT_GRACE); ``hold``: keep the
        cuid reserved for this device if this was its last connection: DEVICE_HOLD, or the
        grace if it held an answered call (nobody else may sign in while the call waits);
        ``left_page``: the page went away (``leaving``, close 1001): a call it placed that
        still rings is cancelled even if a new page of the tab took it back.
        Never raises (it runs while the connection ends, maybe in an outage): what fails
        is logged; presence then expires within PRESENCE_TTL and the sweep ends the calls.
        """
        self.close()
        session = self.session
        held = any(r.bound and r.status == CallStatus.ANSWERED for r in self._routes.values())
        try:
            await presence.arelease(
                session.account_pk, session.cuid, holder, hold, grace if held else 0
            )
        except Exception as exc:
            logger.warning("presence of %s not released, it expires: %r", self.who, exc)
        for call_id, route in list(self._routes.items()):
            if not route.bound:
                continue  # rang here too, or held by another tab: not this tab's to end
            try:
                dropped = await dbthread.run(
                    calls.party_dropped, call_id, self.pk, holder.conn, grace, left_page
                )
                if dropped.ended is not None:
                    await transport.announce(dropped.ended)
                elif dropped.waiting:
                    await self.tell_peer(route, protocol.peer_message(call_id, self.pk, False))
                    self.sweeper.spawn(_end_after_grace(call_id, session, grace))
            except Exception as exc:
                outage = errors.is_unavailable(exc)
                logger.warning("call %s: %s left: %r", call_id, self.who, exc, exc_info=not outage)


async def _end_after_grace(call_id: str, session: Session, grace: float) -> None:
    await asyncio.sleep(grace + 0.05)
    call = await dbthread.run(
        calls.end_if_still_gone, call_id, session.account_pk, session.cuid, session.registration_pk
    )
    if call is not None:
        await transport.announce(call)
