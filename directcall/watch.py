"""Who is online: a connection watches cuids of its account and is told as they come online,
go offline, and enter and leave calls (``watch`` / ``unwatch`` frames, docs/protocol.md).

A watched person's state is, in this order:

- ``busy``: in a live call (ringing or answered), so that an invite would get ``busy``;
- ``online``: their presence entry exists (a connected tab, or the cuid reserved for its
  device for ``DEVICE_HOLD`` during a reload or a link to another page);
- ``offline``: anything else.

Only people the watcher may call are looked up (the adapter's ``callable_among``:
``can_call`` and not blocked by them). Any other cuid — refused, of nobody in the account,
the watcher's own — is answered ``offline`` and never changes: the same answer whether
that person exists or is online, so a watch tells nothing an invite would not.

Across processes: every change that can move a state (a sign-in or sign-out, a call placed
or ended: the ``call_initiated`` and ``call_ended`` signals, from whichever process or
command made it) sends ``dc.watched`` to the group ``directcall.watch.<registration pk>``. Each
process has one :class:`Hub` per event loop, which joins the groups of the people its
connections watch (one message per process, not per watcher), looks the nudged people up
again in one batch (one cache round trip, one query) and tells the watchers whose state
changed. Because a process that dies sends nothing (its users' presence just expires), the
hub also looks every watched person up again every ``PRESENCE_TTL / 2`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.db import transaction
from django.db.models import Q

from . import errors, presence, protocol, transport
from .adapter import get_adapter
from .conf import get_settings
from .errors import DirectCallError
from .models import Call, CallStatus, Registration
from .ratelimit import within_rate
from .tokens import Session

logger = logging.getLogger("directcall.watch")

ONLINE = "online"
OFFLINE = "offline"
BUSY = "busy"

# Group memberships expire in the channel layer (channels_redis: a day); renewed this often.
_REJOIN_AFTER = 3600.0

Person = tuple[int, str]  # (account pk, cuid)


def group(registration_pk: int) -> str:
    """The channel-layer group that hears about changes of ``registration_pk``."""
    return f"directcall.watch.{registration_pk}"


async def changed(*registration_pks: int) -> None:
    """Tell the processes that watch these people to look them up again. Never raises."""
    layer = get_channel_layer()
    for pk in dict.fromkeys(registration_pks):
        try:
            await layer.group_send(group(pk), protocol.watched_message(pk))
        except Exception as exc:  # the periodic look-up catches up
            logger.info("could not announce a presence change of %s: %r", pk, exc)


async def changed_later(delay: float, *registration_pks: int) -> None:
    """:func:`changed`, ``delay`` seconds from now (when a reservation has run out)."""
    await asyncio.sleep(delay + 0.25)
    await changed(*registration_pks)


def call_changed(call: Call) -> None:
    """A call began or ended (the ``call_initiated`` / ``call_ended`` receivers): its parties'
    watchers look again once the transaction commits. Called in the ORM's thread."""
    if call.status == CallStatus.BUSY:
        return  # recorded already over: nobody's state moved
    pks = (call.caller_id, call.callee_id)
    transaction.on_commit(lambda: async_to_sync(changed)(*pks))


# -- looking people up (synchronous: cache and ORM) -------------------------------------------


def callable_people(watcher_pk: int, cuids: list[str]) -> dict[str, int]:
    """The cuids (of ``cuids``) that the watcher may call, with their registration pks."""
    watcher = Registration.objects.select_related("account").get(pk=watcher_pk)
    rows = list(
        Registration.objects.filter(account_id=watcher.account_id, cuid__in=cuids).exclude(
            pk=watcher.pk
        )
    )
    allowed = get_adapter().callable_among(watcher, rows) if rows else set()
    return {row.cuid: row.pk for row in rows if row.pk in allowed}


def states(people: dict[int, Person]) -> dict[int, str]:
    """The state of each person (registration pk → (account pk, cuid)), in one batch."""
    if not people:
        return {}
    pks = list(people)
    held = presence.held_many(people.values())
    busy = set()
    live = Call.objects.live().filter(Q(caller_id__in=pks) | Q(callee_id__in=pks))
    for caller_pk, callee_pk in live.values_list("caller_id", "callee_id"):
        busy.update((caller_pk, callee_pk))
    return {
        pk: BUSY if pk in busy else ONLINE if person in held else OFFLINE
        for pk, person in people.items()
    }


# -- one connection's watch list -----------------------------------------------------------------


class Watching:
    """The cuids one signed-in connection watches, and what its client was told of them."""

    def __init__(self, session: Session, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self.session = session
        self._send = send
        self.cuids: dict[str, int | None] = {}  # watched cuid -> pk, None if not callable
        self.told: dict[int, str] = {}  # pk -> the state its client has

    @property
    def people(self) -> dict[int, Person]:
        """The callable people watched: registration pk → (account pk, cuid)."""
        account = self.session.account_pk
        return {pk: (account, cuid) for cuid, pk in self.cuids.items() if pk is not None}

    async def watch(self, frame: dict[str, Any]) -> None:
        """``watch {ref?, cuids}``: add cuids; answer ``watching`` with each one's state."""
        conf = get_settings()
        cuids = protocol.cuids_of(frame, conf.WATCH_MAX)
        ref = protocol.ref_of(frame)
        if len(self.cuids.keys() | set(cuids)) > conf.WATCH_MAX:
            raise DirectCallError(
                errors.WATCH_LIMIT, f"At most {conf.WATCH_MAX} cuids per connection."
            )
        name = f"watch:{self.session.account_pk}:{self.session.cuid}"
        count = sync_to_async(within_rate, thread_sensitive=False)  # the cache only
        if not await count(name, conf.WATCH_RATE):
            logger.warning("watch rate limit hit by %s", self.session.cuid)
            raise DirectCallError(errors.RATE_LIMITED, "Too many watch frames; try again later.")
        new = [cuid for cuid in cuids if cuid not in self.cuids]
        if new:
            found = await database_sync_to_async(callable_people)(self.session.registration_pk, new)
            for cuid in new:
                self.cuids[cuid] = found.get(cuid)
        people = {pk: p for pk, p in self.people.items() if p[1] in cuids}
        # Joined before the look-up: a change after it is heard.
        await hub().add(self, people)
        found_states = await database_sync_to_async(states)(people)
        answer = {}
        for cuid in cuids:
            pk = self.cuids[cuid]
            state = found_states.get(pk, OFFLINE) if pk is not None else OFFLINE
            if pk is not None:
                self.told[pk] = state
            answer[cuid] = state
        await self._send(protocol.watching_frame(ref, answer))

    async def unwatch(self, frame: dict[str, Any]) -> None:
        """``unwatch {ref?, cuids?}``: stop watching these cuids (all without ``cuids``)."""
        cuids = protocol.cuids_of(frame, get_settings().WATCH_MAX, required=False)
        ref = protocol.ref_of(frame)
        dropped = list(self.cuids) if cuids is None else [c for c in cuids if c in self.cuids]
        self._forget(dropped)
        await self._send(protocol.unwatched_frame(ref, dropped if cuids is None else cuids))

    def _forget(self, cuids: Iterable[str]) -> None:
        pks = []
        for cuid in cuids:
            pk = self.cuids.pop(cuid, None)
            if pk is not None:
                self.told.pop(pk, None)
                pks.append(pk)
        if pks:
            hub().remove(self, pks)

    async def update(self, found: dict[int, str]) -> None:
        """New states from the hub: tell the client those that changed (``presence``)."""
        changes = {}
        for cuid, pk in self.cuids.items():
            # Not told yet: its watch is being answered with a fresher look-up.
            if pk is None or pk not in found or pk not in self.told:
                continue
            if self.told[pk] != found[pk]:
                self.told[pk] = found[pk]
                changes[cuid] = found[pk]
        if changes:
            await self._send(protocol.presence_frame(changes))

    async def blocked_by(self, blocker_pk: int) -> None:
        """The watched person ``blocker_pk`` blocked this user: no longer callable, offline."""
        cuids = [cuid for cuid, pk in self.cuids.items() if pk == blocker_pk]
        if not cuids:
            return
        was = self.told.get(blocker_pk)
        self._forget(cuids)
        for cuid in cuids:
            self.cuids[cuid] = None  # still watched, as any refused cuid
        if was is not None and was != OFFLINE:
            await self._send(protocol.presence_frame(dict.fromkeys(cuids, OFFLINE)))

    def close(self) -> None:
        """The connection ended."""
        self._forget(list(self.cuids))


# -- the process's side: one hub per event loop ------------------------------------------------


class Hub:
    """The watched people of one event loop's connections, kept up to date."""

    def __init__(self) -> None:
        self.watchers: dict[int, weakref.WeakSet[Watching]] = {}
        self.people: dict[int, Person] = {}
        self.joined: dict[int, float] = {}  # pk -> when its group was joined
        self.channel: str | None = None
        self.nudged: set[int] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._leaving: set[asyncio.Task] = set()

    async def add(self, watcher: Watching, people: dict[int, Person]) -> None:
        """``watcher`` watches ``people`` (pk → person); join their groups."""
        if not self._tasks:
            await self._start()
        joins = []
        for pk, person in people.items():
            self.watchers.setdefault(pk, weakref.WeakSet()).add(watcher)
            self.people[pk] = person
            if pk not in self.joined:
                self.joined[pk] = time.monotonic()
                joins.append(transport.join(group(pk), self.channel))
        await asyncio.gather(*joins)

    def remove(self, watcher: Watching, pks: Iterable[int]) -> None:
        """``watcher`` stops watching ``pks``; groups nobody here needs are left."""
        gone = []
        for pk in pks:
            watchers = self.watchers.get(pk)
            if watchers is not None:
                watchers.discard(watcher)
                if not watchers:
                    gone.append(pk)
        for pk in gone:
            del self.watchers[pk]
            self.people.pop(pk, None)
            self.nudged.discard(pk)
            if self.joined.pop(pk, None) is not None and self.channel is not None:
                task = asyncio.ensure_future(self._leave(group(pk), self.channel))
                self._leaving.add(task)
                task.add_done_callback(self._leaving.discard)
        if not self.watchers:
            self._stop()

    async def _leave(self, name: str, channel: str) -> None:
        with contextlib.suppress(Exception):  # memberships also expire on their own
            await get_channel_layer().group_discard(name, channel)

    async def _start(self) -> None:
        # The layer's default prefix, as the consumers': channels_redis reads every channel
        # of one prefix in one loop (another prefix would wait behind their blocking reads).
        self.channel = await get_channel_layer().new_channel()
        self._tasks = [
            asyncio.ensure_future(self._listen(self.channel)),
            asyncio.ensure_future(self._look_up_loop()),
        ]

    def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        self.channel = None
        self.joined.clear()

    def nudge(self, pks: Iterable[int]) -> None:
        """Look these people up again soon (batched with others nudged meanwhile)."""
        self.nudged.update(pk for pk in pks if pk in self.people)
        if self.nudged:
            self._wake.set()

    async def _listen(self, channel: str) -> None:
        while True:
            try:
                message = await transport.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an outage longer than PRESENCE_TTL: keep trying
                logger.warning("watch channel unreadable: %r", exc)
                await asyncio.sleep(1)
                continue
            if message.get("type") == "dc.watched" and isinstance(message.get("registration"), int):
                self.nudge([message["registration"]])

    async def _look_up_loop(self) -> None:
        every = max(0.5, get_settings().PRESENCE_TTL / 2)
        next_full = time.monotonic() + every
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_full - time.monotonic()))
            self._wake.clear()
            if time.monotonic() >= next_full:
                next_full = time.monotonic() + every
                self.nudged.update(self.people)
                await self._rejoin()
            try:
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                level = logging.WARNING if errors.is_unavailable(exc) else logging.ERROR
                logger.log(level, "watched people not looked up: %r", exc, exc_info=level > 30)

    async def flush(self) -> None:
        """Look the nudged people up in one batch and tell their watchers."""
        pks, self.nudged = self.nudged, set()
        people = {pk: self.people[pk] for pk in pks if pk in self.people}
        if not people:
            return
        found = await database_sync_to_async(states)(people)
        watchers = {w for pk in found for w in self.watchers.get(pk, ())}
        for watcher in watchers:
            await watcher.update(found)

    async def _rejoin(self) -> None:
        old = time.monotonic() - _REJOIN_AFTER
        for pk in [pk for pk, at in self.joined.items() if at < old]:
            with contextlib.suppress(Exception):
                await transport.join(group(pk), self.channel)
                self.joined[pk] = time.monotonic()


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def hub() -> Hub:
    """The running event loop's hub (process-local bookkeeping of local connections only)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = Hub()
    return found
