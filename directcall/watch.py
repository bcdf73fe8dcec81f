"""Who is online: a connection watches cuids of its account and is told as they come online,
go offline, and enter and leave calls (``watch`` / ``unwatch`` frames, docs/protocol.md).

A watched person's state is, in this order:

- ``busy``: in a live call (ringing or answered), so that an invite would get ``busy``;
- ``online``: their presence entry exists (a connected tab, or the cuid reserved for its
  device for ``DEVICE_HOLD`` during a reload or a link to another page);
- ``offline``: anything else.

Only people the watcher may call are looked up (the adapter's ``callable_among``:
``can_call`` and not blocked by them). Any other cuid — refused, another account's, the
watcher's own — is answered ``offline`` and never changes: the same answer whether that
person is online or not, and the same as for a cuid nobody uses yet, so a watch tells
nothing an invite would not. (A cuid nobody uses is followed: once someone signs in as
it and the watcher may call them, they are looked up like the others.)

Across processes: every change that can move a state (a sign-in or sign-out, a call placed
or ended: the ``call_initiated`` and ``call_ended`` signals, from whichever process or
command made it) sends ``dc.watched`` to the group ``directcall.watch.<account pk>.<cuid>``. Each
process has one :class:`Hub` per event loop, which joins the groups of the people its
connections watch (one message per process, not per watcher), looks the nudged people up
again in one batch (one cache round trip, one query) and tells the watchers whose state
changed. Because a process that dies sends nothing (its users' presence just expires), the
hub also looks every watched person up again every ``PRESENCE_TTL / 2`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any

from asgiref.sync import SyncToAsync, async_to_sync, sync_to_async
from channels.db import database_sync_to_async
from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.db import transaction
from django.db.models import Q

from . import dbthread, errors, presence, protocol, transport
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


def group(person: Person) -> str:
    """The channel-layer group that hears about changes of ``(account pk, cuid)``."""
    account_pk, cuid = person
    return f"directcall.watch.{account_pk}.{cuid}"


async def changed(*people: Person) -> None:
    """Tell the processes that watch these people to look them up again. Never raises."""
    layer = get_channel_layer()
    for person in _watched(layer, people):
        try:
            await layer.group_send(group(person), protocol.watched_message(*person))
        except Exception as exc:  # the periodic look-up catches up
            logger.info("could not announce a presence change of %s: %r", person, exc)


async def changed_later(delay: float, *people: Person) -> None:
    """:func:`changed`, ``delay`` seconds from now (when a reservation has run out)."""
    await asyncio.sleep(delay + 0.25)
    await changed(*people)


def call_changed(call: Call) -> None:
    """A call began or ended (the ``call_initiated`` / ``call_ended`` receivers): its parties'
    watchers look again once the transaction commits. Called in the ORM's thread."""
    if call.status == CallStatus.BUSY:
        return  # recorded already over: nobody's state moved
    people = ((call.account_id, call.caller.cuid), (call.account_id, call.callee.cuid))
    transaction.on_commit(partial(changed_from_thread, *people))


# Announcements handed to an event loop by changed_from_thread, kept until they are done.
_announcing: set[asyncio.Task] = set()


def changed_from_thread(*people: Person) -> None:
    """:func:`changed`, from synchronous code. Never raises.

    In a thread that runs an event loop's database work (``database_sync_to_async``: the
    consumers' transitions, the sweep), the announcement is handed to that loop and not
    waited for: the transition's hop back to the loop is not held up by a round trip to it
    (it was ~0.5 ms of each call set-up, docs/performance.md). A hop of
    :func:`directcall.dbthread.run` (the consumers' transitions) takes it back with its
    result, which spares a wake-up of the loop. Elsewhere (a management command, a view)
    it is made in place with ``async_to_sync``.
    """
    if dbthread.call_on_loop(_announce, people):
        return
    loop = _loop_of_this_thread()
    if loop is None:
        async_to_sync(changed)(*people)
        return
    with contextlib.suppress(RuntimeError):  # the loop closed meanwhile, with its connections
        # In a context of its own, as dbthread's callbacks: the hop's copy of its caller's
        # carries asgiref's deadlock flag (any database hop the task made would raise "would
        # deadlock") and, under async_to_sync, an executor that quits when the hop returns.
        loop.call_soon_threadsafe(_announce, people, context=contextvars.Context())


def _loop_of_this_thread() -> asyncio.AbstractEventLoop | None:
    """The running event loop whose ``sync_to_async`` work this thread is doing, if any."""
    local = SyncToAsync.threadlocal  # set by asgiref (and dbthread) for each hop
    loop = getattr(local, "main_event_loop", None)
    if loop is None or getattr(local, "main_event_loop_pid", None) != os.getpid():
        return None
    if loop.is_closed() or not loop.is_running():
        return None
    return loop


def _watched(layer: Any, people: Iterable[Person]) -> list[Person]:
    """``people`` (once each), less those nobody can be watching.

    channels' in-memory layer keeps its groups in this process: a group nobody joined (no
    connection here watches that person) gets nothing, and its group_send still costs a
    clean-up pass and an as_completed round (~0.1 ms of each call set-up, twice). Any other
    layer may have watchers in other processes.
    """
    people = list(dict.fromkeys(people))
    if isinstance(layer, InMemoryChannelLayer):
        return [person for person in people if group(person) in layer.groups]
    return people


def _announce(people: tuple[Person, ...]) -> None:
    if not _watched(get_channel_layer(), people):
        return  # nobody watches them: not even a task (two per call on the embedded default)
    task = asyncio.ensure_future(changed(*people))
    _announcing.add(task)
    task.add_done_callback(_announcing.discard)


# -- looking people up (synchronous: cache and ORM) -------------------------------------------


def callable_people(watcher_pk: int, cuids: list[str]) -> tuple[dict[str, int], set[str]]:
    """Of ``cuids``: those the watcher may call (with their registration pks), and those
    that have no registration in its account (yet)."""
    watcher = Registration.objects.select_related("account").get(pk=watcher_pk)
    rows = list(Registration.objects.filter(account_id=watcher.account_id, cuid__in=cuids))
    others = [row for row in rows if row.pk != watcher.pk]
    allowed = get_adapter().callable_among(watcher, others) if others else set()
    unknown = set(cuids) - {row.cuid for row in rows}
    return {row.cuid: row.pk for row in others if row.pk in allowed}, unknown


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
    """The cuids one signed-in connection watches, and what its client was told of them.

    A cuid nobody has signed in as yet is followed too: when someone does, it is looked up
    like any other (and told only if the watcher may call it).
    """

    def __init__(self, session: Session, send: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self.session = session
        self._send = send
        self.cuids: dict[str, int | None] = {}  # watched cuid -> pk, None if not callable
        self.unknown: set[str] = set()  # watched cuids without a registration (yet)
        self.told: dict[int, str] = {}  # pk -> the state its client has

    def _person(self, cuid: str) -> Person:
        return (self.session.account_pk, cuid)

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
            allowed, unknown = await database_sync_to_async(callable_people)(
                self.session.registration_pk, new
            )
            for cuid in new:
                self.cuids[cuid] = allowed.get(cuid)
            self.unknown |= unknown
        followed = {
            self._person(cuid): self.cuids[cuid]
            for cuid in cuids
            if self.cuids[cuid] is not None or cuid in self.unknown
        }
        # Joined before the look-up: a change after it is heard.
        await hub().add(self, followed)
        found = await self._look_up([cuid for cuid in cuids if self.cuids[cuid] is not None])
        answer = {cuid: found.get(cuid, OFFLINE) for cuid in cuids}
        await self._send(protocol.watching_frame(ref, answer))

    async def _look_up(self, cuids: list[str]) -> dict[str, str]:
        """The states of callable watched cuids, now; what the client is told from here on."""
        pks = {self.cuids[cuid]: cuid for cuid in cuids}
        people = {pk: self._person(cuid) for pk, cuid in pks.items()}
        found = await database_sync_to_async(states)(people)
        self.told.update(found)
        return {pks[pk]: state for pk, state in found.items()}

    async def unwatch(self, frame: dict[str, Any]) -> None:
        """``unwatch {ref?, cuids?}``: stop watching these cuids (all without ``cuids``)."""
        cuids = protocol.cuids_of(frame, get_settings().WATCH_MAX, required=False)
        ref = protocol.ref_of(frame)
        dropped = list(self.cuids) if cuids is None else [c for c in cuids if c in self.cuids]
        self._forget(dropped)
        await self._send(protocol.unwatched_frame(ref, dropped if cuids is None else cuids))

    def _forget(self, cuids: Iterable[str]) -> None:
        for cuid in cuids:
            pk = self.cuids.pop(cuid, None)
            self.unknown.discard(cuid)
            if pk is not None:
                self.told.pop(pk, None)
        if cuids:
            hub().remove(self, [self._person(cuid) for cuid in cuids])

    async def update(self, found: dict[Person, str]) -> None:
        """New states from the hub: tell the client those that changed (``presence``)."""
        changes = {}
        for (_account, cuid), state in found.items():
            pk = self.cuids.get(cuid)
            # Not told yet: its watch is being answered with a fresher look-up.
            if pk is None or pk not in self.told or self.told[pk] == state:
                continue
            self.told[pk] = state
            changes[cuid] = state
        if changes:
            await self._send(protocol.presence_frame(changes))

    async def appeared(self, cuids: list[str]) -> dict[Person, int]:
        """Watched cuids that had no registration may have one now (someone signed in as
        them): those the watcher may call are looked up and told; return them (person → pk)."""
        cuids = [cuid for cuid in cuids if cuid in self.unknown]
        if not cuids:
            return {}
        allowed, unknown = await database_sync_to_async(callable_people)(
            self.session.registration_pk, cuids
        )
        for cuid in cuids:
            if cuid not in unknown:  # it exists now: callable, or refused for good
                self.unknown.discard(cuid)
                self.cuids[cuid] = allowed.get(cuid)
                if cuid not in allowed:
                    hub().remove(self, [self._person(cuid)])
        if not allowed:
            return {}
        found = await self._look_up(list(allowed))
        changes = {cuid: state for cuid, state in found.items() if state != OFFLINE}
        if changes:  # the client was told offline when it watched
            await self._send(protocol.presence_frame(changes))
        return {self._person(cuid): pk for cuid, pk in allowed.items()}

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
        self.watchers: dict[Person, weakref.WeakSet[Watching]] = {}
        self.pks: dict[Person, int | None] = {}  # None: no registration known yet
        self.joined: dict[Person, float] = {}  # when its group was joined
        self.channel: str | None = None
        self.nudged: set[Person] = set()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []
        self._leaving: set[asyncio.Task] = set()

    async def add(self, watcher: Watching, people: dict[Person, int | None]) -> None:
        """``watcher`` follows ``people`` (person → registration pk); join their groups."""
        if not self._tasks:
            await self._start()
        joins = []
        for person, pk in people.items():
            self.watchers.setdefault(person, weakref.WeakSet()).add(watcher)
            if pk is not None or person not in self.pks:
                self.pks[person] = pk
            if person not in self.joined:
                self.joined[person] = time.monotonic()
                joins.append(transport.join(group(person), self.channel))
        await asyncio.gather(*joins)

    def remove(self, watcher: Watching, people: Iterable[Person]) -> None:
        """``watcher`` stops following ``people``; groups nobody here needs are left."""
        gone = []
        for person in people:
            watchers = self.watchers.get(person)
            if watchers is not None:
                watchers.discard(watcher)
                if not watchers:
                    gone.append(person)
        for person in gone:
            del self.watchers[person]
            self.pks.pop(person, None)
            self.nudged.discard(person)
            if self.joined.pop(person, None) is not None and self.channel is not None:
                task = asyncio.ensure_future(self._leave(group(person), self.channel))
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

    def nudge(self, people: Iterable[Person]) -> None:
        """Look these people up again soon (batched with others nudged meanwhile)."""
        self.nudged.update(person for person in people if person in self.watchers)
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
            account, cuid = message.get("account"), message.get("cuid")
            if message.get("type") == "dc.watched" and isinstance(account, int):
                self.nudge([(account, cuid)])

    async def _look_up_loop(self) -> None:
        every = max(0.5, get_settings().PRESENCE_TTL / 2)
        next_full = time.monotonic() + every
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, next_full - time.monotonic()))
            self._wake.clear()
            if time.monotonic() >= next_full:
                next_full = time.monotonic() + every
                # Everyone known, for the users of a process that died (no message came).
                self.nudged.update(p for p, pk in self.pks.items() if pk is not None)
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
        nudged, self.nudged = self.nudged, set()
        for person in nudged:  # someone signed in as a cuid that had no registration before?
            for watcher in [w for w in self.watchers.get(person, ()) if person[1] in w.unknown]:
                for found, pk in (await watcher.appeared([person[1]])).items():
                    self.pks[found] = pk
        people = {self.pks[p]: p for p in nudged if self.pks.get(p) is not None}
        if not people:
            return
        found = await database_sync_to_async(states)(people)
        by_person = {people[pk]: state for pk, state in found.items()}
        watchers = {w for person in by_person for w in self.watchers.get(person, ())}
        for watcher in watchers:
            await watcher.update(by_person)

    async def _rejoin(self) -> None:
        old = time.monotonic() - _REJOIN_AFTER
        for person in [person for person, at in self.joined.items() if at < old]:
            with contextlib.suppress(Exception):
                await transport.join(group(person), self.channel)
                self.joined[person] = time.monotonic()


_hubs: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = weakref.WeakKeyDictionary()


def hub() -> Hub:
    """The running event loop's hub (process-local bookkeeping of local connections only)."""
    loop = asyncio.get_running_loop()
    found = _hubs.get(loop)
    if found is None:
        found = _hubs[loop] = Hub()
    return found
