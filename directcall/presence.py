"""Who is online where, shared by every server process through the Django cache.

One cache entry per signed-in cuid: the device that holds it, the hash of that device's
key, and the device's live connections (one per tab)::

    {"device": D, "key": sha256(device_key), "conns": {conn: channel}, "seen": {conn: t}}

A cuid is *online* while its entry has at least one connection. The entry lives
``PRESENCE_TTL`` seconds and every connection renews it (putting itself back when a
read-modify-write race between two tabs left it out, and dropping connections that have
not renewed for ``PRESENCE_TTL``: those of a process that died). ``cache.add`` is atomic,
so of two devices signing in at once exactly one wins.

A connection signs in with :func:`claim` (docs/protocol.md, "Presence"):

- no entry: the cuid is *claimed* for the connection's device, and a new random device key
  is issued (the SDK keeps it in ``localStorage``, shared by the browser's tabs);
- an entry of the same device whose key matches the one presented: the connection *joins*;
- anything else is *refused* (``ERR_ALREADY_SIGNEDIN``): a device id is the client's
  choice and proves nothing, the device key does. With ``MULTIPLE_DEVICES`` on, a device
  the entry does not know yet is added to it instead (``"others": {device: key hash}``)
  and issued a key of its own: every connection of every device rings.

When the last connection leaves (not by logout), the entry stays for ``DEVICE_HOLD``
seconds with no connections: a *reservation*, so that during a reload or a navigation
only the same device can sign the cuid in again.

A second, per-call entry ("gone") records when a party of an answered call lost the
connection that held the call, and how long the call waits for it (``RECONNECT_GRACE``,
or ``PAGE_GRACE`` for a page that said it was leaving), so that any process can end the
call once that grace is over. A third ("bound") names the connection a call was handed
back to, so that the old connection's late departure does not count against it.

Every function has an async twin named with Django's ``a`` prefix (``aclaim``,
``alookup``, ...) for the consumer's event loop.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.core.cache.backends.locmem import LocMemCache

from .caching import cache, get_cache
from .conf import get_settings

logger = logging.getLogger("directcall.presence")

_PREFIX = "directcall:presence"


@dataclass(frozen=True, slots=True)
class Holder:
    """One signed-in connection (a tab): its channel, device, id and its device's key hash."""

    channel: str
    device: str
    conn: str
    # sha256 of the device key this connection signed in with (see claim); "" before.
    key: str = field(default="", repr=False)


@dataclass(frozen=True)
class Presence:
    """A cuid's presence entry: the device holding it and that device's live connections."""

    device: str
    key: str = field(repr=False)
    conns: Mapping[str, str]  # connection id -> channel
    # The other devices signed in as this cuid (MULTIPLE_DEVICES): device -> key hash.
    others: Mapping[str, str] = field(default_factory=dict, repr=False)

    @property
    def channels(self) -> list[str]:
        """The channels of the live connections (every tab of the device)."""
        return list(self.conns.values())

    def admits(self, device: str, device_key: str | None) -> bool:
        """Whether a connection of ``device`` presenting ``device_key`` is this device (or
        one of the others signed in with it)."""
        expected = self.key if device == self.device else self.others.get(device)
        return (
            expected is not None
            and isinstance(device_key, str)
            and bool(device_key)
            and hmac.compare_digest(expected, hash_key(device_key))
        )


class Claim(Enum):
    """Outcome of :func:`claim`."""

    CLAIMED = "claimed"  # nobody held it: a new device key is issued
    JOINED = "joined"  # the same device, with its key, holds it: one more tab
    REFUSED = "refused"  # another device (or no proof of being this one): ERR_ALREADY_SIGNEDIN


def hash_key(device_key: str) -> str:
    """The form a device key is kept in (sha256, hex)."""
    return hashlib.sha256(device_key.encode("utf-8", "surrogatepass")).hexdigest()


def new_device_key() -> str:
    """A new random device key (URL-safe, 43 characters)."""
    return secrets.token_urlsafe(32)


def _key(account_pk: int, cuid: str) -> str:
    return f"{_PREFIX}:{account_pk}:{cuid}"


def _whole(seconds: float) -> int:
    # Rounded up: Redis keeps whole-second expiries (Django's RedisCache truncates with
    # int(), so 0.5 would expire at once and nobody would ever be online).
    return math.ceil(seconds)


def _ttl() -> int:
    return _whole(get_settings().PRESENCE_TTL)


@dataclass
class _Entry:
    """A presence entry as read from the cache, to change and write back."""

    device: str
    key: str
    conns: dict[str, str]
    seen: dict[str, float]
    others: dict[str, str] = field(default_factory=dict)
    held_until: float | None = None  # when a reservation (no connection) ends

    @classmethod
    def read(cls, value: object) -> _Entry | None:
        fields = _fields(value)
        if fields is None or not isinstance(value, dict):
            return None
        seen = value.get("seen")
        held_until = value.get("held_until")
        if not isinstance(held_until, float | int) or isinstance(held_until, bool):
            held_until = None
        seen = dict(seen) if isinstance(seen, dict) else {}
        return cls(*fields[:3], seen, fields[3], held_until)

    def value(self) -> dict[str, Any]:
        value = {"device": self.device, "key": self.key, "conns": self.conns, "seen": self.seen}
        if self.others:
            value["others"] = self.others
        if self.held_until is not None and not self.conns:
            value["held_until"] = self.held_until
        return value

    def put(self, holder: Holder, now: float) -> None:
        self.conns[holder.conn] = holder.channel
        self.seen[holder.conn] = now
        self.held_until = None

    def prune(self, now: float) -> None:
        """Drop connections that stopped renewing (their process died)."""
        stale = now - get_settings().PRESENCE_TTL
        for conn in [c for c in self.conns if self.seen.get(c, 0) < stale]:
            del self.conns[conn]
            self.seen.pop(conn, None)
        for conn in [c for c in self.seen if c not in self.conns]:
            del self.seen[conn]

    def presence(self) -> Presence:
        conns = MappingProxyType(dict(self.conns))
        return Presence(self.device, self.key, conns, MappingProxyType(dict(self.others)))

    def owned_by(self, holder: Holder) -> bool:
        expected = self.key if holder.device == self.device else self.others.get(holder.device)
        if expected is None and get_settings().MULTIPLE_DEVICES:
            # Several devices may hold the cuid: one a racing write left out comes back.
            self.others[holder.device] = expected = holder.key
        return expected is not None and hmac.compare_digest(holder.key, expected)


def _fields(value: object) -> tuple[str, str, dict[str, str], dict[str, str]] | None:
    """A cached entry's device, key hash, connections and other devices (copies), or None
    for junk or an entry of an older version (it expires)."""
    if not isinstance(value, dict):
        return None
    device, key, conns = value.get("device"), value.get("key"), value.get("conns")
    if not (isinstance(device, str) and isinstance(key, str) and isinstance(conns, dict)):
        return None
    others = value.get("others")
    return device, key, dict(conns), dict(others) if isinstance(others, dict) else {}


def _fresh(holder: Holder, key_hash: str) -> dict[str, Any]:
    now = time.time()
    return {
        "device": holder.device,
        "key": key_hash,
        "conns": {holder.conn: holder.channel},
        "seen": {holder.conn: now},
    }


def claim(
    account_pk: int, cuid: str, holder: Holder, device_key: str | None = None
) -> tuple[Claim, str | None]:
    """Sign ``holder`` in as ``cuid``, presenting ``device_key``; return the outcome and,
    when the cuid was claimed, the new device key (the connection's key hash is then that
    key's; after a join, the presented key's)."""
    key = _key(account_pk, cuid)
    issued = new_device_key()
    if cache.add(key, _fresh(holder, hash_key(issued)), _ttl()):
        return Claim.CLAIMED, issued
    entry = _Entry.read(cache.get(key))
    if entry is None:
        # It expired (or held junk) between add() and get(): try once more.
        if cache.add(key, _fresh(holder, hash_key(issued)), _ttl()):
            return Claim.CLAIMED, issued
        entry = _Entry.read(cache.get(key))
    if entry is None:
        return Claim.REFUSED, None
    known = holder.device == entry.device or holder.device in entry.others
    if not known and get_settings().MULTIPLE_DEVICES:
        # Another device, and several may sign in: it joins the entry with a key of its own.
        now = time.time()
        entry.prune(now)
        entry.others[holder.device] = hash_key(issued)
        entry.put(holder, now)
        cache.set(key, entry.value(), _ttl())
        return Claim.CLAIMED, issued
    if not entry.presence().admits(holder.device, device_key):
        return Claim.REFUSED, None
    now = time.time()
    entry.prune(now)
    entry.put(holder, now)
    cache.set(key, entry.value(), _ttl())
    return Claim.JOINED, None


def renew(account_pk: int, cuid: str, holder: Holder) -> bool:
    """Keep ``holder`` in its cuid's entry (putting it back, or the lapsed entry, if need
    be); False when another device (or key) holds the cuid now."""
    key = _key(account_pk, cuid)
    entry = _Entry.read(cache.get(key))
    if entry is None:
        if cache.add(key, _fresh(holder, holder.key), _ttl()):
            return True
        entry = _Entry.read(cache.get(key))
        if entry is None:
            return False
    if not entry.owned_by(holder):
        return False
    now = time.time()
    entry.prune(now)
    entry.put(holder, now)
    cache.set(key, entry.value(), _ttl())
    return True


# How many connections' renewals share two cache round trips (renew_many).
RENEW_BATCH = 100


def renew_many(people: list[tuple[int, str, Holder]]) -> list[bool | Exception]:
    """:func:`renew` for several ``(account_pk, cuid, holder)``; each one's outcome, or the
    exception it raised (one failing does not stop the others).

    Two cache round trips for up to :data:`RENEW_BATCH` of them (``get_many``, then
    ``set_many``), where :func:`renew` costs two each: besides its client's pings, this
    renewal every PRESENCE_TTL/3 is what an idle connection costs its server, and on
    Redis the round trips were nearly all of it (docs/performance.md, run S). The batch
    bounds how long an entry is between its read and its write (a tab that joins or
    leaves meanwhile is put back or pruned as after any race, see the module docstring).
    Tabs of one cuid renewed together write its entry once. An entry that lapsed (or
    holds junk) is put back by :func:`renew`, one by one, with ``add()``'s atomicity.
    """
    outcomes: list[bool | Exception] = []
    for start in range(0, len(people), RENEW_BATCH):
        outcomes += _renew_batch(people[start : start + RENEW_BATCH])
    return outcomes


def _renew_batch(people: list[tuple[int, str, Holder]]) -> list[bool | Exception]:
    keys = [_key(account_pk, cuid) for account_pk, cuid, _ in people]
    try:
        values = cache.get_many(list(dict.fromkeys(keys)))
    except Exception as exc:
        return [exc] * len(people)
    outcomes: list[bool | Exception | None] = [None] * len(people)
    entries: dict[str, _Entry] = {}
    lapsed: set[str] = set()
    now = time.time()
    for i, (key, (_, _, holder)) in enumerate(zip(keys, people, strict=True)):
        entry = entries.get(key)
        if entry is None and key not in lapsed:
            entry = _Entry.read(values.get(key))
            if entry is None:
                lapsed.add(key)
            else:
                entry.prune(now)
                entries[key] = entry
        if entry is None:
            continue  # one by one, below
        if entry.owned_by(holder):
            entry.put(holder, now)
            outcomes[i] = True
        else:
            outcomes[i] = False
    renewed = {key for key, outcome in zip(keys, outcomes, strict=True) if outcome is True}
    written = {key: entry for key, entry in entries.items() if key in renewed}
    if written:
        try:
            failed = set(cache.set_many({k: e.value() for k, e in written.items()}, _ttl()) or ())
        except Exception as exc:
            failed, error = set(written), exc
        else:
            error = RuntimeError("the cache did not store the entry")
        for i, key in enumerate(keys):
            if key in failed and outcomes[i] is True:
                outcomes[i] = error
    for i, (account_pk, cuid, holder) in enumerate(people):
        if outcomes[i] is None:
            try:
                outcomes[i] = renew(account_pk, cuid, holder)
            except Exception as exc:
                outcomes[i] = exc
    return outcomes  # type: ignore[return-value]  # every None was replaced


def release(
    account_pk: int, cuid: str, holder: Holder, hold: bool = True, hold_for: float = 0
) -> None:
    """Take ``holder`` out of its cuid's entry. The last connection to leave leaves a
    reservation for ``DEVICE_HOLD`` seconds (or ``hold_for``, if longer: the grace of a call
    it held), unless ``hold`` is False (a logout)."""
    key = _key(account_pk, cuid)
    entry = _Entry.read(cache.get(key))
    if entry is None or not (holder.conn in entry.conns or entry.owned_by(holder)):
        return  # another device's entry (this one's lapsed and was claimed)
    entry.conns.pop(holder.conn, None)
    entry.prune(time.time())
    if entry.conns:
        cache.set(key, entry.value(), _ttl())
    elif hold:
        seconds = max(get_settings().DEVICE_HOLD, hold_for)
        entry.held_until = time.time() + seconds
        cache.set(key, entry.value(), _whole(seconds))
    else:
        cache.delete(key)


def free_in(account_pk: int, cuid: str) -> float | None:
    """Seconds until a cuid that no live connection holds is free to claim: the rest of a
    reservation (:func:`release`), or at most ``PRESENCE_TTL`` for the entry of connections
    that stopped renewing (their process died). None while a connection of it is live, or
    if nothing holds it.

    What a refused sign-in of another device is told to wait (``retry_after``): a user who
    closed one browser and opened another is signed in when the first one's hold ends.
    """
    entry = _Entry.read(cache.get(_key(account_pk, cuid)))
    if entry is None:
        return None
    now = time.time()
    ttl = get_settings().PRESENCE_TTL
    if any(entry.seen.get(conn, 0) >= now - ttl for conn in entry.conns):
        return None
    if not entry.conns and entry.held_until is not None:
        return max(0.0, entry.held_until - now)
    # Connections that stopped renewing: the entry lapses PRESENCE_TTL after its last write,
    # which another tab's departure may have made after their last renewal. At most that.
    return float(ttl) if entry.conns else None


def lookup(account_pk: int, cuid: str) -> Presence | None:
    """A cuid's presence in this account, or None if it is offline (no live connection)."""
    return _online(cache.get(_key(account_pk, cuid)))


def _online(value: object) -> Presence | None:
    """``_Entry.read(value).presence()`` of an entry with live connections, else None:
    made straight from the cached value, for the look-ups of every call's states."""
    fields = _fields(value)
    if fields is None or not fields[2]:
        return None
    device, key, conns, others = fields
    return Presence(device, key, MappingProxyType(conns), MappingProxyType(others))


def held(account_pk: int, cuid: str) -> Presence | None:
    """A cuid's entry even without connections (a reservation), or None."""
    entry = _Entry.read(cache.get(_key(account_pk, cuid)))
    return entry.presence() if entry is not None else None


def lookup_many(account_pk: int, cuids: list[str]) -> dict[str, Presence]:
    """Presence of several cuids of one account at once (one cache round trip)."""
    found = online((account_pk, cuid) for cuid in cuids)
    return {cuid: found[account_pk, cuid] for cuid in cuids if (account_pk, cuid) in found}


def online(people: Iterable[tuple[int, str]]) -> dict[tuple[int, str], Presence]:
    """Presence of ``(account_pk, cuid)`` pairs in any accounts (one cache round trip)."""
    keys = {_key(account_pk, cuid): (account_pk, cuid) for account_pk, cuid in people}
    if not keys:
        return {}
    found = cache.get_many(list(keys))
    result = {}
    for key, person in keys.items():
        presence = _online(found.get(key))
        if presence is not None:
            result[person] = presence
    return result


def held_many(people: Iterable[tuple[int, str]]) -> set[tuple[int, str]]:
    """The ``(account_pk, cuid)`` pairs that have an entry, connected or reserved for their
    device during a reload (one cache round trip): who-is-online's *online*."""
    keys = {_key(account_pk, cuid): (account_pk, cuid) for account_pk, cuid in people}
    if not keys:
        return set()
    found = cache.get_many(list(keys))
    return {person for key, person in keys.items() if _Entry.read(found.get(key)) is not None}


# -- parties of answered calls who lost their connection ----------------------------------


def _gone_key(call_id: str, registration_pk: int) -> str:
    return f"{_PREFIX}:gone:{call_id}:{registration_pk}"


def _bound_key(call_id: str, registration_pk: int) -> str:
    return f"{_PREFIX}:bound:{call_id}:{registration_pk}"


def _mark_timeout() -> int:
    conf = get_settings()
    return math.ceil(max(conf.RECONNECT_GRACE, conf.PAGE_GRACE) * 4) + 60


@dataclass(frozen=True)
class Gone:
    """A party of an answered call whose connection holding the call is gone."""

    since: float  # epoch seconds
    until: float  # when the grace ends
    # Seen leaving (its connection ended), not only missing from presence (the sweep's
    # mark, which presence coming back clears, as after a cache restart).
    left: bool


def _gone(value: object) -> Gone | None:
    if isinstance(value, dict):
        since, until = value.get("since"), value.get("until")
        if isinstance(since, float | int) and isinstance(until, float | int):
            return Gone(float(since), float(until), bool(value.get("left")))
        return None
    if isinstance(value, float | int) and not isinstance(value, bool):  # an older version's
        return Gone(float(value), float(value) + get_settings().RECONNECT_GRACE, False)
    return None


def mark_gone(
    call_id: str, registration_pk: int, grace: float | None = None, left: bool = False
) -> float:
    """Record that a party of a call lost its connection, which the call waits ``grace``
    seconds for (default ``RECONNECT_GRACE``); ``left``: its connection was seen ending.
    Return since when it is gone (the first mark wins; seeing it leave makes it final)."""
    key = _gone_key(call_id, registration_pk)
    now = time.time()
    grace = get_settings().RECONNECT_GRACE if grace is None else grace
    if cache.add(key, {"since": now, "until": now + grace, "left": left}, _mark_timeout()):
        return now
    mark = _gone(cache.get(key))
    if mark is None:
        cache.set(key, {"since": now, "until": now + grace, "left": left}, _mark_timeout())
        return now
    if left and not mark.left:
        value = {"since": mark.since, "until": mark.since + grace, "left": True}
        cache.set(key, value, _mark_timeout())
    return mark.since


def gone(call_id: str, registration_pk: int) -> Gone | None:
    """The party's gone mark, or None if it is not marked gone."""
    return _gone(cache.get(_gone_key(call_id, registration_pk)))


def gone_since(call_id: str, registration_pk: int) -> float | None:
    """When the party was first seen gone, or None if it is not marked gone."""
    mark = gone(call_id, registration_pk)
    return mark.since if mark else None


def gone_many(parties: Iterable[tuple[str, int]]) -> dict[tuple[str, int], Gone]:
    """:func:`gone` of several ``(call_id, registration_pk)`` at once (one round trip)."""
    keys = {_gone_key(call_id, pk): (call_id, pk) for call_id, pk in parties}
    if not keys:
        return {}
    found = cache.get_many(list(keys))
    return {party: mark for key, party in keys.items() if (mark := _gone(found.get(key)))}


def gone_since_many(parties: Iterable[tuple[str, int]]) -> dict[tuple[str, int], float]:
    """:func:`gone_since` of several ``(call_id, registration_pk)`` at once."""
    return {party: mark.since for party, mark in gone_many(parties).items()}


def hold(call_id: str, registration_pk: int, conn: str) -> None:
    """The connection ``conn`` holds the call on the party's side: it placed it, answered
    it, or took it back. The sweep checks that connection, not just the party's presence:
    another tab of the party being online does not keep a call whose tab is gone."""
    # For the call's life (a call longer than a day falls back to the party's presence).
    cache.set(_bound_key(call_id, registration_pk), conn, 24 * 3600)


def holding(call_id: str, registration_pk: int) -> str | None:
    """The connection holding the call on the party's side, if known."""
    conn = cache.get(_bound_key(call_id, registration_pk))
    return conn if isinstance(conn, str) else None


def gone_and_holding_many(
    parties: Iterable[tuple[str, int]],
) -> tuple[dict[tuple[str, int], Gone], dict[tuple[str, int], str]]:
    """:func:`gone` and :func:`holding` of several ``(call_id, registration_pk)`` at once
    (one cache round trip for both)."""
    parties = list(parties)
    gone_keys = {_gone_key(call_id, pk): (call_id, pk) for call_id, pk in parties}
    bound_keys = {_bound_key(call_id, pk): (call_id, pk) for call_id, pk in parties}
    if not parties:
        return {}, {}
    found = cache.get_many([*gone_keys, *bound_keys])
    marks = {party: mark for key, party in gone_keys.items() if (mark := _gone(found.get(key)))}
    holders = {
        party: conn for key, party in bound_keys.items() if isinstance(conn := found.get(key), str)
    }
    return marks, holders


def mark_back(call_id: str, registration_pk: int, conn: str | None = None) -> None:
    """The party is connected again; ``conn``: the connection the call was handed back to."""
    if conn is not None:
        hold(call_id, registration_pk, conn)
    cache.delete(_gone_key(call_id, registration_pk))


def bound_elsewhere(call_id: str, registration_pk: int, conn: str) -> bool:
    """Whether the call was handed back to a connection of the party other than ``conn``."""
    bound = cache.get(_bound_key(call_id, registration_pk))
    return isinstance(bound, str) and bound != conn


# -- async twins ------------------------------------------------------------------------------
# Each runs its sync function in a worker thread. Not thread_sensitive, and not Django's
# cache.aget() & co.: those run in the one shared thread of thread_sensitive=True, so every
# connection of the process would wait in one queue for the cache. With a cache held in
# this process's memory (LocMemCache: no I/O, a lock held for a dict operation) the
# function runs in the event loop instead: the hop to a thread cost more than the lookup.

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _in_process_cache() -> bool:
    return isinstance(get_cache(), LocMemCache)


@functools.cache
def _twin(function: Callable[_P, _R]) -> Callable[_P, _R]:
    threaded = sync_to_async(function, thread_sensitive=False)

    async def twin(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        if _in_process_cache():
            return function(*args, **kwargs)
        return await threaded(*args, **kwargs)

    return twin  # type: ignore[return-value]


async def aclaim(
    account_pk: int, cuid: str, holder: Holder, device_key: str | None = None
) -> tuple[Claim, str | None]:
    """Async :func:`claim`."""
    return await _twin(claim)(account_pk, cuid, holder, device_key)


async def arenew(account_pk: int, cuid: str, holder: Holder) -> bool:
    """Async :func:`renew`."""
    return await _twin(renew)(account_pk, cuid, holder)


async def arenew_many(people: list[tuple[int, str, Holder]]) -> list[bool | Exception]:
    """Async :func:`renew_many` (one hop to a worker thread for all of them)."""
    return await _twin(renew_many)(people)


async def arelease(
    account_pk: int, cuid: str, holder: Holder, hold: bool = True, hold_for: float = 0
) -> None:
    """Async :func:`release`."""
    await _twin(release)(account_pk, cuid, holder, hold, hold_for)


async def alookup(account_pk: int, cuid: str) -> Presence | None:
    """Async :func:`lookup`."""
    return await _twin(lookup)(account_pk, cuid)


async def aheld(account_pk: int, cuid: str) -> Presence | None:
    """Async :func:`held`."""
    return await _twin(held)(account_pk, cuid)


async def afree_in(account_pk: int, cuid: str) -> float | None:
    """Async :func:`free_in`."""
    return await _twin(free_in)(account_pk, cuid)


async def alookup_many(account_pk: int, cuids: list[str]) -> dict[str, Presence]:
    """Async :func:`lookup_many`."""
    return await _twin(lookup_many)(account_pk, cuids)


async def amark_gone(
    call_id: str, registration_pk: int, grace: float | None = None, left: bool = False
) -> float:
    """Async :func:`mark_gone`."""
    return await _twin(mark_gone)(call_id, registration_pk, grace, left)


async def amark_back(call_id: str, registration_pk: int, conn: str | None = None) -> None:
    """Async :func:`mark_back`."""
    await _twin(mark_back)(call_id, registration_pk, conn)


async def akeep(account_pk: int, cuid: str, holder: Holder) -> None:
    """Renew ``holder``'s presence every PRESENCE_TTL/3; return once another device holds it.

    An unreachable cache (Redis restarting) is tried again at the next interval: a live call
    is not dropped for it, and the entry is re-added when the cache is back.
    """
    while True:
        await asyncio.sleep(max(0.2, get_settings().PRESENCE_TTL / 3))
        try:
            if not await arenew(account_pk, cuid, holder):
                return
        except Exception as exc:
            logger.warning("presence renewal failed for %s (account %s): %r", cuid, account_pk, exc)
