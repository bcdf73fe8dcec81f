"""Who is online where, shared by every server process through the Django cache.

One cache entry per signed-in cuid: ``{"channel", "device", "conn"}`` with a TTL of
``PRESENCE_TTL`` seconds, renewed by the connection that holds it. ``cache.add`` is
atomic, so of two devices signing in at once exactly one wins; a process that dies
stops renewing and its entries expire within ``PRESENCE_TTL`` seconds.

A second, per-call entry ("gone since") records when a party of an answered call lost
its connection, so that any process can end the call once the reconnect grace is over.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from enum import Enum

from django.core.cache import cache

from .conf import get_settings

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
    """Presence of several cuids at once (one cache round trip)."""
    found = cache.get_many([_key(account_pk, cuid) for cuid in cuids])
    result = {}
    for cuid in cuids:
        holder = _holder(found.get(_key(account_pk, cuid)))
        if holder is not None:
            result[cuid] = holder
    return result


# -- parties of answered calls who lost their connection ----------------------------------


def _gone_key(call_id: str, registration_pk: int) -> str:
    return f"{_PREFIX}:gone:{call_id}:{registration_pk}"


def mark_gone(call_id: str, registration_pk: int) -> float:
    """Record that a party of a call lost its connection; return since when (first mark wins)."""
    key = _gone_key(call_id, registration_pk)
    now = time.time()
    timeout = int(get_settings()["RECONNECT_GRACE"]) * 4 + 60
    if cache.add(key, now, timeout):
        return now
    since = cache.get(key)
    return since if isinstance(since, float | int) else now


def gone_since(call_id: str, registration_pk: int) -> float | None:
    """When the party was first seen gone, or None if it is not marked gone."""
    since = cache.get(_gone_key(call_id, registration_pk))
    return since if isinstance(since, float | int) else None


def mark_back(call_id: str, registration_pk: int) -> None:
    """The party is connected again."""
    cache.delete(_gone_key(call_id, registration_pk))
