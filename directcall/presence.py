"""Who is online where, shared by every server process through the Django cache.

One cache entry per signed-in cuid: ``{"channel", "device", "conn"}`` with a TTL of
``PRESENCE_TTL`` seconds, renewed by the connection that holds it. ``cache.add`` is
atomic, so of two devices signing in at once exactly one wins; a process that dies
stops renewing and its entries expire within ``PRESENCE_TTL`` seconds.

A second, per-call entry ("gone since") records when a party of an answered call lost
its connection, so that any process can end the call once the reconnect grace is over.

Every function has an async twin named with Django's ``a`` prefix (``aclaim``,
``alookup``, ...) for the consumer's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import ParamSpec, TypeVar

from asgiref.sync import sync_to_async
from django.core.cache import cache

from .conf import get_settings

logger = logging.getLogger("directcall.presence")

_PREFIX = "directcall:presence"


@dataclass(frozen=True)
class Holder:
    """The connection that holds a cuid's presence."""

    channel: str
    device: str
    conn: str


class Claim(Enum):
    """Outcome of :func:`claim`."""

    CLAIMED = "claimed"  # nobody held it
    TAKEN_OVER = "taken_over"  # the same device held it (page reload, network blip)
    REFUSED = "refused"  # another device holds it: ERR_ALREADY_SIGNEDIN


def _key(account_pk: int, cuid: str) -> str:
    return f"{_PREFIX}:{account_pk}:{cuid}"


def _ttl() -> int:
    # Rounded up: Redis keeps whole-second expiries (Django's RedisCache truncates with
    # int(), so 0.5 would expire at once and nobody would ever be online).
    return math.ceil(get_settings().PRESENCE_TTL)


def _holder(value: object) -> Holder | None:
    if isinstance(value, dict):
        try:
            return Holder(value["channel"], value["device"], value["conn"])
        except KeyError:
            return None
    return None


def claim(account_pk: int, cuid: str, holder: Holder) -> tuple[Claim, Holder | None]:
    """Take a cuid's presence for ``holder``; return the outcome and the replaced holder."""
    key = _key(account_pk, cuid)
    value = {"channel": holder.channel, "device": holder.device, "conn": holder.conn}
    if cache.add(key, value, _ttl()):
        return Claim.CLAIMED, None
    current = _holder(cache.get(key))
    if current is None:
        # It expired (or held junk) between add() and get(): try once more.
        if cache.add(key, value, _ttl()):
            return Claim.CLAIMED, None
        current = _holder(cache.get(key))
    if current is not None and current.device != holder.device:
        return Claim.REFUSED, current
    cache.set(key, value, _ttl())
    return Claim.TAKEN_OVER, current


def renew(account_pk: int, cuid: str, holder: Holder) -> bool:
    """Extend ``holder``'s presence; re-add it if it lapsed. False if someone else holds it."""
    key = _key(account_pk, cuid)
    current = _holder(cache.get(key))
    if current is None:
        value = {"channel": holder.channel, "device": holder.device, "conn": holder.conn}
        return cache.add(key, value, _ttl())
    if current.conn != holder.conn:
        return False
    return cache.touch(key, _ttl())


def release(account_pk: int, cuid: str, holder: Holder) -> None:
    """Drop ``holder``'s presence (only if it still holds it)."""
    key = _key(account_pk, cuid)
    current = _holder(cache.get(key))
    if current is not None and current.conn == holder.conn:
        cache.delete(key)


def lookup(account_pk: int, cuid: str) -> Holder | None:
    """The connection holding a cuid's presence in this account, or None if offline."""
    return _holder(cache.get(_key(account_pk, cuid)))


def lookup_many(account_pk: int, cuids: list[str]) -> dict[str, Holder]:
    """Presence of several cuids of one account at once (one cache round trip)."""
    found = online((account_pk, cuid) for cuid in cuids)
    return {cuid: found[account_pk, cuid] for cuid in cuids if (account_pk, cuid) in found}


def online(people: Iterable[tuple[int, str]]) -> dict[tuple[int, str], Holder]:
    """Presence of ``(account_pk, cuid)`` pairs in any accounts (one cache round trip)."""
    keys = {_key(account_pk, cuid): (account_pk, cuid) for account_pk, cuid in people}
    if not keys:
        return {}
    found = cache.get_many(list(keys))
    return {person: holder for key, person in keys.items() if (holder := _holder(found.get(key)))}


# -- parties of answered calls who lost their connection ----------------------------------


def _gone_key(call_id: str, registration_pk: int) -> str:
    return f"{_PREFIX}:gone:{call_id}:{registration_pk}"


def mark_gone(call_id: str, registration_pk: int) -> float:
    """Record that a party of a call lost its connection; return since when (first mark wins)."""
    key = _gone_key(call_id, registration_pk)
    now = time.time()
    timeout = math.ceil(get_settings().RECONNECT_GRACE * 4) + 60
    if cache.add(key, now, timeout):
        return now
    since = cache.get(key)
    return since if isinstance(since, float | int) else now


def gone_since(call_id: str, registration_pk: int) -> float | None:
    """When the party was first seen gone, or None if it is not marked gone."""
    since = cache.get(_gone_key(call_id, registration_pk))
    return since if isinstance(since, float | int) else None


def gone_since_many(parties: Iterable[tuple[str, int]]) -> dict[tuple[str, int], float]:
    """:func:`gone_since` of several ``(call_id, registration_pk)`` at once."""
    keys = {_gone_key(call_id, pk): (call_id, pk) for call_id, pk in parties}
    if not keys:
        return {}
    found = cache.get_many(list(keys))
    return {
        party: since
        for key, party in keys.items()
        if isinstance(since := found.get(key), float | int)
    }


def mark_back(call_id: str, registration_pk: int) -> None:
    """The party is connected again."""
    cache.delete(_gone_key(call_id, registration_pk))


# -- async twins ------------------------------------------------------------------------------
# Each runs its sync function in a worker thread. Not thread_sensitive, and not Django's
# cache.aget() & co.: those run in the one shared thread of thread_sensitive=True, so every
# connection of the process would wait in one queue for the cache.

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _twin(function: Callable[_P, _R]) -> Callable[_P, _R]:
    return sync_to_async(function, thread_sensitive=False)  # type: ignore[return-value]


async def aclaim(account_pk: int, cuid: str, holder: Holder) -> tuple[Claim, Holder | None]:
    """Async :func:`claim`."""
    return await _twin(claim)(account_pk, cuid, holder)


async def arenew(account_pk: int, cuid: str, holder: Holder) -> bool:
    """Async :func:`renew`."""
    return await _twin(renew)(account_pk, cuid, holder)


async def arelease(account_pk: int, cuid: str, holder: Holder) -> None:
    """Async :func:`release`."""
    await _twin(release)(account_pk, cuid, holder)


async def alookup(account_pk: int, cuid: str) -> Holder | None:
    """Async :func:`lookup`."""
    return await _twin(lookup)(account_pk, cuid)


async def alookup_many(account_pk: int, cuids: list[str]) -> dict[str, Holder]:
    """Async :func:`lookup_many`."""
    return await _twin(lookup_many)(account_pk, cuids)


async def amark_gone(call_id: str, registration_pk: int) -> float:
    """Async :func:`mark_gone`."""
    return await _twin(mark_gone)(call_id, registration_pk)


async def amark_back(call_id: str, registration_pk: int) -> None:
    """Async :func:`mark_back`."""
    await _twin(mark_back)(call_id, registration_pk)


async def akeep(account_pk: int, cuid: str, holder: Holder) -> None:
    """Renew ``holder``'s presence every PRESENCE_TTL/3; return once another connection holds it.

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
