"""The call state machine: atomic transitions, deadlines, the sweep.

::

    initiated ──ring──▶ ringing ──accept──▶ answered ──hang_up / max_duration / lost──▶ over
        │                  │                    └──hang_up(ice_failed, user_media_failed)──▶ failed
        ├─ decline ────────┴──▶ declined
        ├─ cancel / caller gone ──▶ cancelled
        └─ ring deadline ─────────▶ missed         (start() on a busy callee: busy)

Every transition is one conditional ``UPDATE ... WHERE status IN (...)``: when two
processes race (an accept against the ring timeout, both parties hanging up at once) the
database lets exactly one of them change the row, and only that one sends the signal and
tells the parties. Functions here are synchronous (ORM and cache) and touch no socket and
no channel layer: the consumer and the sweeper run them through ``database_sync_to_async``
and tell the parties with :mod:`directcall.transport`.

Three entry points carry the rules around the transitions: :func:`place_call` (an
invite), :func:`party_dropped` (a party's connection ended) and :func:`party_back` (it
signed in again).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

from django.db import DEFAULT_DB_ALIAS
from django.utils import timezone

from . import backoff, caching, callsql, errors, presence, signals
from .adapter import DefaultCallAdapter, get_adapter
from .caching import cache
from .conf import get_settings
from .errors import DirectCallError
from .identity import invite_images
from .models import (
    LIVE_STATUSES,
    RINGING_STATUSES,
    Account,
    Call,
    CallStatus,
    EndReason,
    Registration,
)
from .origins import Origin
from .tokens import Session
from .validation import CallParams
from .webhooks import outbox as webhooks

logger = logging.getLogger("directcall.calls")

_FAILURE_REASONS = (EndReason.ICE_FAILED, EndReason.USER_MEDIA_FAILED)


def _load(call_id: UUID | str) -> Call:
    return Call.objects.select_related("account", "caller", "callee").get(pk=call_id)


def _send_signal(call: Call) -> None:
    if call.status == CallStatus.INITIATED:
        signals.call_initiated.send(sender=Call, call=call)
    elif call.status == CallStatus.RINGING:
        signals.call_ringing.send(sender=Call, call=call)
    elif call.status == CallStatus.ANSWERED:
        signals.call_answered.send(sender=Call, call=call)
    else:
        signals.call_ended.send(
            sender=Call,
            call=call,
            status=call.status,
            reason=call.end_reason,
            duration=call.duration,
        )


def _won(call: Call, created: bool = False) -> None:
    """The transition that put ``call`` in its status won: runs INSIDE its transaction.

    The one place where a transition's winner is known before it commits: work that must
    commit with the state change or not at all (a transactional outbox) goes here. ``call``
    is the row as the winning statement left it, with ``account``, ``caller`` and ``callee`` set
    and ``call.account.has_webhooks`` read by that same statement. ``created``: the call
    was just recorded (:func:`_record`). Losers never get here; the signal is sent after
    the commit, once per winner.

    The ``call.*`` webhooks are queued here (a transactional outbox, docs/webhooks.md);
    an account without an active endpoint costs nothing.
    """
    if call.account.has_webhooks:
        webhooks.emit_call(call)


def _with_parties(call: Call, known: Call) -> Call:
    """``call`` (a row just read) with the account and parties of ``known`` (no query)."""
    cache_ = call._state.fields_cache
    cache_["account"], cache_["caller"], cache_["callee"] = (
        known.account,
        known.caller,
        known.callee,
    )
    return call


def _transition(
    call_id: UUID | str,
    to: CallStatus,
    sources: tuple[str, ...],
    party: tuple[str, int] | None = None,
    reason: str = "",
    now: datetime | None = None,
    due: tuple[str, datetime] | None = None,
    known: Call | None = None,
    **fields: Any,
) -> Call | None:
    """Move a call from one of ``sources`` to ``to`` in one conditional UPDATE.

    ``party``: who asks, ``(side, registration pk)`` with side ``caller``, ``callee`` or
    ``either``; ``due``: ``("<" or ">=", when)``, a condition on the call's deadline.
    ``known``: the call as its party already holds it (its account and parties are taken
    from it instead of read again). Return the updated call, or None when another
    transition got there first (or who asks may not do this, or the deadline says no).
    """
    now = now or timezone.now()
    values: dict[str, Any] = {"status": to, **fields}
    if to not in LIVE_STATUSES:
        values.update(ended_at=now, end_reason=reason, deadline=None)
    if known is not None and str(known.pk) != str(call_id):
        known = None
    if known is not None and not known.account.has_webhooks and callsql.alone():
        # No outbox to write with it: the UPDATE alone, if the account still has no
        # endpoint when it runs; else (or when it lost) the transaction below decides.
        changed = callsql.update(call_id, sources, values, party, due, unless_webhooks=True)
        if changed is not None:
            call = _with_parties(changed[0], known)
            call.account.has_webhooks = False
            _send_signal(call)
            return call
    with callsql.atomic():
        changed = callsql.update(call_id, sources, values, party, due)
        if changed is None:
            return None
        call, has_webhooks = changed
        if known is not None:
            call = _with_parties(call, known)
        else:  # nobody passed the call along: its account and parties, read once
            call = _with_parties(call, _load(call_id))
        call.account.has_webhooks = has_webhooks
        _won(call)
    _send_signal(call)
    return call


# -- starting a call -----------------------------------------------------------------


def check_invite_rate(account_pk: int, cuid: str, now: float | None = None) -> None:
    """Count one invite by ``cuid``; raise ``ERR_RATE_LIMITED`` past ``CALL_RATE``.

    A fixed window in the shared cache, counted atomically (:func:`caching.count`), so
    every server process sees the same count. Invites to offline or unknown receivers count
    too, which also limits probing who is online.
    """
    rate = get_settings().CALL_RATE  # a conf.Rate, parsed once
    if rate is None:
        return
    limit, window = rate
    slot = int((now if now is not None else time.time()) // window)
    if caching.count(f"directcall:invites:{account_pk}:{cuid}:{slot}", window + 1) > limit:
        logger.warning("invite rate limit hit by %s (account %s)", cuid, account_pk)
        raise DirectCallError(
            errors.RATE_LIMITED, f"Too many calls; at most {limit} per {window} s."
        )


# -- call keys ---------------------------------------------------------------------------------
# A call is held on each side by one tab: the caller's inviting tab, the callee's accepting
# tab. That tab is given a random call key; the call row keeps only its hash. A page that
# reloads (or navigates) presents the key at sign-in to get its call back (party_back).


def new_call_key() -> tuple[str, str]:
    """A new call key and its hash: the key goes to the tab, the hash onto the call."""
    key = secrets.token_urlsafe(32)
    return key, call_key_hash(key)


def call_key_hash(key: str) -> str:
    """The form a call key is kept in (sha256, hex)."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def holds_key(call: Call, registration_pk: int, key: object) -> bool:
    """Whether ``key`` is the call key of ``registration_pk``'s side (constant time)."""
    stored = call.caller_key_hash if call.caller_id == registration_pk else call.callee_key_hash
    if not (stored and isinstance(key, str) and key):
        return False
    return hmac.compare_digest(stored, call_key_hash(key))


@dataclass(frozen=True)
class Placed:
    """A call placed by :func:`place_call`."""

    call: Call
    # The callee's connections (every tab), where the ``incoming`` frame goes (unused for
    # a busy call).
    callee_channels: tuple[str, ...]


def place_call(
    caller: Session,
    params: CallParams,
    offer: str,
    key_hash: str = "",
    site_origin: Origin | None = None,
    caller_row: Registration | None = None,
    conn: str | None = None,
) -> Placed:
    """The invite rules: the invite rate, who may be called, the receiver online, the call
    recorded (:func:`start`, with the hash of the inviting tab's call key), the offer kept
    while it rings.

    ``caller_row``: the caller's registration (with its account) as loaded when the
    connection signed in, reused instead of read again (a change to the registration or
    the account that matters revokes the session, docs/security.md#revocation).
    ``conn``: the inviting connection, which holds the call on the caller's side.
    Raises ``ERR_RATE_LIMITED``, what :func:`parties` raises, ``404`` when the receiver
    is not online, and ``ERR_OUTGOING_CALL_IN_PROGRESS``; nothing is recorded then. The
    presence lookup comes after ``can_call``, so that a refusal does not tell whether the
    receiver is online.
    """
    check_invite_rate(caller.account_pk, caller.cuid)
    caller_row, callee_row = parties(caller.registration_pk, params.receiver, caller_row)
    # After the refusals (saying nothing of presence), before presence (nor does this).
    backoff.check(caller_row, callee_row)
    # Only pictures the callee's browser may load as it rings (before any answer): the
    # registrations' own, or page-chosen URLs of the site (``site_origin``, the socket's)
    # or of origins the account allows.
    shown = invite_images(
        caller_row, callee_row, params.initiator_image, params.receiver_image, site_origin
    )
    params = replace(params, initiator_image=shown[0] or None, receiver_image=shown[1] or None)
    callee = presence.lookup(caller.account_pk, params.receiver)
    if callee is None:
        raise DirectCallError(errors.RECEIVER_OFFLINE)
    call = _record(caller_row, callee_row, params, key_hash)
    if call.status != CallStatus.BUSY:
        try:
            remember_offer(call, offer)
        except Exception:
            # The call is placed: an offer lost to a cache outage only means a callee who
            # reloads while it rings cannot answer it.
            logger.warning("could not keep the offer of call %s", call.pk, exc_info=True)
        if conn is not None:
            _hold(call, caller.registration_pk, conn)
    return Placed(call, tuple(callee.channels))


def parties(
    caller_pk: int, receiver: str, caller: Registration | None = None
) -> tuple[Registration, Registration]:
    """The caller and the registration of ``receiver`` in its account, if it may be called.

    ``caller``: the caller's registration with its account, if already loaded. Raises
    ``ERR_INVALID_CALL_PARAMETERS`` (calling yourself), ``404`` (no such cuid in this
    account) or ``ERR_CALL_NOT_ALLOWED`` (the callee blocked the caller, or the adapter's
    ``can_call`` says no: the same answer, so a caller cannot tell which).
    """
    if caller is None or caller.pk != caller_pk:
        caller = Registration.objects.select_related("account").get(pk=caller_pk)
    if receiver == caller.cuid:
        raise DirectCallError(errors.INVALID_CALL_PARAMETERS, "You cannot call yourself.")
    adapter = get_adapter()
    # The callee and, for the default adapter, whether it blocked the caller: one query.
    found = callsql.callee_of(caller.account_id, receiver, caller.pk)
    if found is None:
        raise DirectCallError(errors.RECEIVER_OFFLINE)
    callee, blocked, has_webhooks = found
    # The same account; its webhook switch as it is now (the caller's account may have
    # been loaded at sign-in).
    caller.account.has_webhooks = has_webhooks
    callee._state.fields_cache["account"] = caller.account
    if type(adapter).is_blocked is not DefaultCallAdapter.is_blocked:
        blocked = adapter.is_blocked(caller, callee)
    if blocked or not adapter.can_call(caller, callee):
        raise DirectCallError(errors.CALL_NOT_ALLOWED)
    return caller, callee


def start(caller_pk: int, params: CallParams) -> Call:
    """Record a call from a registration to ``params.receiver`` (:func:`parties` checks who).

    Raises what :func:`parties` raises, or ``ERR_OUTGOING_CALL_IN_PROGRESS`` (the caller
    is in a live call). A callee already in a live call gives a call recorded as ``busy``.
    """
    return _record(*parties(caller_pk, params.receiver), params)


def _record(
    caller: Registration, callee: Registration, params: CallParams, key_hash: str = ""
) -> Call:
    now = timezone.now()
    call = Call(
        account=caller.account,
        caller=caller,
        callee=callee,
        context=params.context,
        caller_image=params.initiator_image or "",
        receiver_image=params.receiver_image or "",
        created_at=now,
        caller_key_hash=key_hash,
    )
    with callsql.atomic():
        # Lock both parties (in pk order, so two invites crossing cannot deadlock): of two
        # invites to one callee, the second sees the first's live call and gets "busy".
        callsql.lock_parties([caller.pk, callee.pk])
        busy = callsql.in_live_calls([caller.pk, callee.pk])
        if caller.pk in busy:
            raise DirectCallError(errors.OUTGOING_CALL_IN_PROGRESS)
        if callee.pk in busy:
            call.status, call.end_reason, call.ended_at = (
                CallStatus.BUSY,
                EndReason.USER_BUSY,
                now,
            )
        else:
            ring = timedelta(seconds=caller.account.effective_ring_timeout())
            call.status, call.deadline = CallStatus.INITIATED, now + ring
        callsql.insert(call)
        _won(call, created=True)
    _send_signal(call)
    return call


# -- transitions requested by a party -------------------------------------------------


def ring(call_id: UUID | str, callee_pk: int, *, call: Call | None = None) -> Call | None:
    """The callee's client is ringing (``call``: the call as the callee holds it)."""
    return _transition(
        call_id, CallStatus.RINGING, (CallStatus.INITIATED,), ("callee", callee_pk), known=call
    )


def accept(
    call_id: UUID | str,
    callee_pk: int,
    key_hash: str = "",
    *,
    call: Call | None = None,
    conn: str | None = None,
) -> Call | None:
    """The callee answers, if the call still rings and its ring deadline has not passed;
    ``key_hash``: the hash of the call key of the tab that answers (:func:`new_call_key`),
    ``conn`` its connection, which then holds the call on the callee's side.

    The maximum duration is the account's as loaded with ``call`` (when the call was
    placed or handed to this connection), or read now without it.
    """
    now = timezone.now()
    if call is None or str(call.pk) != str(call_id):
        call = Call.objects.filter(pk=call_id).select_related("account", "caller", "callee").first()
        if call is None:
            return None
    limit = call.account.effective_max_call_duration()
    answered = _transition(
        call_id,
        CallStatus.ANSWERED,
        RINGING_STATUSES,
        ("callee", callee_pk),
        now=now,
        due=(">=", now),  # the ring deadline, as the row had it before this UPDATE
        known=call,
        answered_at=now,
        callee_key_hash=key_hash,
        deadline=now + timedelta(seconds=limit) if limit else None,
    )
    if answered is not None and conn is not None:
        _hold(answered, callee_pk, conn)
    return answered


def _hold(call: Call, party_pk: int, conn: str) -> None:
    """Record the connection holding ``call`` on a party's side (:func:`presence.hold`)."""
    try:
        presence.hold(str(call.pk), party_pk, conn)
    except Exception:
        # Committed already: without the record, the sweep goes by the party's presence.
        logger.warning("could not record who holds call %s", call.pk, exc_info=True)


def _holds(found: presence.Presence | None, conn: str | None) -> bool:
    """Whether a party with presence ``found`` still holds a call held by ``conn`` (when
    known: that connection is still in the party's entry; a dead one leaves it within
    ``PRESENCE_TTL`` once another connection of the party renews the entry)."""
    return found is not None and (conn is None or conn in found.conns)


def decline(
    call_id: UUID | str,
    callee_pk: int,
    reason: str = EndReason.USER_DECLINED,
    *,
    call: Call | None = None,
) -> Call | None:
    """The callee declines a ringing call (``user_declined``, ``user_media_failed``, ...)."""
    return _transition(
        call_id,
        CallStatus.DECLINED,
        RINGING_STATUSES,
        ("callee", callee_pk),
        reason=reason,
        known=call,
    )


def cancel(
    call_id: UUID | str,
    caller_pk: int,
    reason: str = EndReason.CALLER_CANCELLED,
    *,
    call: Call | None = None,
) -> Call | None:
    """The caller gives up before an answer."""
    return _transition(
        call_id,
        CallStatus.CANCELLED,
        RINGING_STATUSES,
        ("caller", caller_pk),
        reason=reason,
        known=call,
    )


def hang_up(
    call_id: UUID | str,
    party_pk: int,
    reason: str = EndReason.USER_HANGUP,
    *,
    call: Call | None = None,
) -> Call | None:
    """A party ends an answered call; a media failure ends it as ``failed``."""
    status = CallStatus.FAILED if reason in _FAILURE_REASONS else CallStatus.OVER
    return _transition(
        call_id,
        status,
        (CallStatus.ANSWERED,),
        ("either", party_pk),
        reason=reason,
        known=call,
    )


def leave(
    call_id: UUID | str,
    party_pk: int,
    reason: str = EndReason.USER_HANGUP,
    *,
    call: Call | None = None,
    status: str | None = None,
) -> Call | None:
    """A party wants out, whatever the state: cancel, decline or hang up as fits.

    The state may change under the request (the callee answers as the caller cancels),
    so each fitting transition is tried in turn; at most one succeeds. ``call``: the call
    as the party holds it (its parties are not read again); ``status``: the state the
    party last heard, which picks the transition tried first.
    """
    if call is not None and str(call.pk) == str(call_id):
        caller_id, callee_id = call.caller_id, call.callee_id
    else:
        call = None
        row = Call.objects.filter(pk=call_id).values("caller_id", "callee_id").first()
        if row is None:
            return None
        caller_id, callee_id = row["caller_id"], row["callee_id"]
    if caller_id == party_pk:
        ringing_reason = EndReason.CALLER_CANCELLED if reason == EndReason.USER_HANGUP else reason
        ringing = partial(cancel, call_id, party_pk, ringing_reason, call=call)
    elif callee_id == party_pk:
        ringing_reason = EndReason.USER_DECLINED if reason == EndReason.USER_HANGUP else reason
        ringing = partial(decline, call_id, party_pk, ringing_reason, call=call)
    else:
        return None
    answered = partial(hang_up, call_id, party_pk, reason, call=call)
    if status == CallStatus.ANSWERED:
        return answered() or ringing()
    return ringing() or answered()


# -- transitions the server makes -------------------------------------------------------


def expire(
    call_id: UUID | str, now: datetime | None = None, *, call: Call | None = None
) -> Call | None:
    """Enforce a passed deadline: a ringing call is missed, an answered one is over."""
    now = now or timezone.now()
    overdue = ("<", now)
    return _transition(
        call_id,
        CallStatus.MISSED,
        RINGING_STATUSES,
        reason=EndReason.INVITE_TIMEOUT,
        now=now,
        due=overdue,
        known=call,
    ) or _transition(
        call_id,
        CallStatus.OVER,
        (CallStatus.ANSWERED,),
        reason=EndReason.MAX_DURATION,
        now=now,
        due=overdue,
        known=call,
    )


def lose_connection(call_id: UUID | str, since: float | None = None) -> Call | None:
    """End an answered call whose party did not come back within the reconnect grace.

    ``since``: when that party's connection went (its gone mark). The call ends then, not
    now: the grace was spent waiting for a party who never came back, dead air that the
    talk time (``duration``, what a site bills) must not count. Never before the answer.
    """
    now = timezone.now()
    if since is not None:
        now = min(now, datetime.fromtimestamp(since, tz=UTC))
        answered_at = Call.objects.filter(pk=call_id).values_list("answered_at", flat=True).first()
        if answered_at is not None and now < answered_at:
            now = answered_at
    return _transition(
        call_id,
        CallStatus.OVER,
        (CallStatus.ANSWERED,),
        reason=EndReason.CONNECTION_LOST,
        now=now,
    )


def live_calls_of(registration_pk: int) -> list[Call]:
    """The live calls a registration is a party of (normally at most one), newest first,
    with their accounts and parties."""
    return callsql.live_calls_of(registration_pk)


# -- a call passed along in messages -----------------------------------------------------------
# The ``dc.incoming`` message carries what the callee's connection needs of the call, so that
# it does not read it back: the ids, status and deadline, and the fields of the account and
# the parties that signaling reads. Anything else of them is loaded if someone asks (the
# instances are built with Django's deferred fields).

_CARRIED = {
    Account: ("id", "account_id", "ring_timeout", "max_call_duration", "has_webhooks"),
    Registration: ("id", "account_id", "cuid", "name", "image_url"),
}


def _values(instance: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {name: getattr(instance, name) for name in names}


def _deferred(model: type, values: dict[str, Any]) -> Any:
    fields = model._meta.concrete_fields
    names = [f.attname for f in fields if f.attname in values]
    return model.from_db(DEFAULT_DB_ALIAS, names, [values[name] for name in names])


def carried(call: Call) -> dict[str, Any]:
    """The call as plain values for a channel-layer message (see :func:`from_carried`)."""
    return {
        "id": str(call.pk),
        "status": call.status,
        "deadline": call.deadline.timestamp() if call.deadline else None,
        "account": _values(call.account, _CARRIED[Account]),
        "caller": _values(call.caller, _CARRIED[Registration]),
        "callee": _values(call.callee, _CARRIED[Registration]),
    }


def from_carried(data: dict[str, Any]) -> Call | None:
    """The call of :func:`carried` (other fields deferred), or None if ``data`` is not one."""
    try:
        deadline = data["deadline"]
        call = _deferred(
            Call,
            {
                "id": UUID(data["id"]),
                "account_id": data["account"]["id"],
                "caller_id": data["caller"]["id"],
                "callee_id": data["callee"]["id"],
                "status": data["status"],
                "deadline": (
                    datetime.fromtimestamp(deadline, tz=UTC) if deadline is not None else None
                ),
            },
        )
        account = _deferred(Account, data["account"])
        caller = _deferred(Registration, data["caller"])
        callee = _deferred(Registration, data["callee"])
    except (KeyError, TypeError, ValueError):
        return None
    for party in (caller, callee):
        party._state.fields_cache["account"] = account
    call._state.fields_cache.update(account=account, caller=caller, callee=callee)
    return call


def get_call(call_id: UUID | str) -> Call | None:
    """A call with its parties, or None."""
    return Call.objects.filter(pk=call_id).select_related("account", "caller", "callee").first()


def ended_among(call_ids: Iterable[UUID | str]) -> dict[str, Call]:
    """The calls among ``call_ids`` that have ended, by call id (a query per 500 ids)."""
    ids = list(call_ids)
    ended = {}
    for start in range(0, len(ids), 500):
        rows = (
            Call.objects.filter(pk__in=ids[start : start + 500])
            .exclude(status__in=LIVE_STATUSES)
            .select_related("account", "caller", "callee")
        )
        ended.update({str(call.pk): call for call in rows})
    return ended


# -- a party's connection ends, or comes back ------------------------------------------------


@dataclass(frozen=True)
class Dropped:
    """What became of a call when the connection holding it ended."""

    ended: Call | None = None  # a ringing caller left: the call is cancelled
    waiting: bool = False  # an answered call waits a grace period for the party


def party_dropped(
    call_id: UUID | str,
    party_pk: int,
    conn: str | None = None,
    grace: float | None = None,
    left_page: bool = False,
) -> Dropped:
    """The connection ``conn`` of a party, which held the call, ended without hanging up.

    An answered call waits for the party ``grace`` seconds (default ``RECONNECT_GRACE``;
    marked gone: :func:`end_if_still_gone` or the sweep ends it then), unless the call
    was handed back to a newer connection of the party meanwhile (a reloaded page that
    signed in before the old one's end was seen). A ringing call is cancelled
    (``connection_lost``) when the caller left — unless, after a network drop, a newer
    connection of the caller already took it back; a page that left (``left_page``: a
    reload, a link) takes its ringing call with it — and keeps ringing when the callee
    did: a callee who reloads the page is shown the call again.
    """
    row = Call.objects.filter(pk=call_id).values("status", "caller_id", "callee_id").first()
    if row is None or party_pk not in (row["caller_id"], row["callee_id"]):
        return Dropped()
    status = row["status"]
    moved = conn is not None and presence.bound_elsewhere(str(call_id), party_pk, conn)
    if status in RINGING_STATUSES and row["caller_id"] == party_pk and moved and not left_page:
        return Dropped()
    if status in RINGING_STATUSES and row["caller_id"] == party_pk:
        ended = cancel(call_id, party_pk, EndReason.CONNECTION_LOST)
        if ended is not None:
            return Dropped(ended=ended)
        # The callee answered in the meantime: the call waits for the caller instead.
        status = Call.objects.values_list("status", flat=True).get(pk=call_id)
    if status == CallStatus.ANSWERED:
        presence.mark_gone(str(call_id), party_pk, grace, left=True)
        # Marked first, looked second: a newer connection that took the call back
        # (party_back) either cleared this mark after it was made, or is seen here.
        if conn is not None and presence.bound_elsewhere(str(call_id), party_pk, conn):
            presence.mark_back(str(call_id), party_pk)
            return Dropped()
        return Dropped(waiting=True)
    return Dropped()


@dataclass(frozen=True)
class Rejoined:
    """A live call handed to a connection that signed in."""

    call: Call
    offer: str | None  # the caller's offer, when the call rings for this party


def party_back(
    registration_pk: int, keys: dict[str, str] | None = None, conn: str | None = None
) -> list[Rejoined]:
    """A connection of a party signed in: the live calls it gets.

    A call ringing for the party as callee rings in every connection (with the caller's
    offer). A call the party holds — answered, or ringing as its caller (its connection
    dropped: a network blip, a server process that died) — is handed back only to a
    connection presenting its side's call key (``keys``: call id → key, from
    ``auth.resume``): it is no longer waited for, and ``conn`` now holds it. Without the
    key nothing of it is handed over.
    """
    keys = keys or {}
    rejoined = []
    for call in live_calls_of(registration_pk):
        if call.status == CallStatus.ANSWERED or call.caller_id == registration_pk:
            if holds_key(call, registration_pk, keys.get(str(call.pk))):
                presence.mark_back(str(call.pk), registration_pk, conn)
                rejoined.append(Rejoined(call, None))
        else:
            rejoined.append(Rejoined(call, offer_of(call.pk)))
    return rejoined


def end_if_still_gone(
    call_id: UUID | str, account_pk: int, cuid: str, registration_pk: int
) -> Call | None:
    """After the grace: end the call if the party has not taken it back.

    A party seen leaving is back only once a connection took the call back with its key
    (:func:`party_back`): another tab of the user being online does not count. A party
    only missing from presence (the sweep's mark) is back when presence is.
    """
    mark = presence.gone(str(call_id), registration_pk)
    if mark is None or time.time() < mark.until:
        return None
    holder = presence.holding(str(call_id), registration_pk)
    if not mark.left and _holds(presence.lookup(account_pk, cuid), holder):
        presence.mark_back(str(call_id), registration_pk)
        return None
    call = lose_connection(call_id, since=mark.since)
    if call is not None:
        presence.mark_back(str(call_id), registration_pk)
    return call


def sweep(now: datetime | None = None) -> list[Call]:
    """Finalize calls left behind: overdue ones, and those whose parties are gone.

    Run every ``SWEEP_INTERVAL`` seconds by each server process that holds connections
    (:mod:`directcall.sweeper`) and by ``manage.py directcall_sweep``; concurrent sweeps
    are safe, since each transition is conditional. Presence is read in one cache round
    trip for all live calls, the gone marks (and who holds each call) in one more.

    An answered call whose party has no connection at all (its process died), or whose
    connection holding the call is no longer in the party's presence (that process died
    while another tab or a new page of the party is online without the call), is marked
    gone for ``RECONNECT_GRACE``; presence coming back clears that mark. A party seen
    leaving is waited for until its mark's grace ends (``party_dropped``).

    A ringing call whose caller has no presence at all is cancelled (``connection_lost``):
    at once when the cache still knows which connection placed it (the caller's
    connections are gone: their process died and its entries expired), and otherwise
    only once the caller has stayed missing for ``RECONNECT_GRACE``. A cache restarted
    empty (Redis without persistence) forgets both until the connections renew their
    presence (every ``PRESENCE_TTL`` / 3): cancelling at once then ended every call
    ringing. That wait has a mark of its own (:func:`_ringing_mark`). A caller seen
    leaving ends its ringing call at once (``party_dropped``), never here.
    """
    now = now or timezone.now()
    ended = [
        call
        for call_id in Call.objects.overdue(now).values_list("pk", flat=True)
        if (call := expire(call_id, now)) is not None
    ]
    live = list(Call.objects.live().select_related("caller", "callee"))
    present = presence.online(
        (call.account_id, party.cuid) for call in live for party in (call.caller, call.callee)
    )
    gone, holders = presence.gone_and_holding_many(
        key
        for call in live
        for key in (
            ((str(call.pk), call.caller_id), _ringing_mark(call))
            if call.status in RINGING_STATUSES
            else ((str(call.pk), call.caller_id), (str(call.pk), call.callee_id))
        )
    )
    for call in live:
        if call.status in RINGING_STATUSES:
            ringing = _ringing_mark(call)
            mark = gone.get(ringing)
            if (call.account_id, call.caller.cuid) in present:
                if mark is not None:
                    presence.mark_back(*ringing)
                continue
            if holders.get((str(call.pk), call.caller_id)) is None:
                # The cache knows nothing of the call: emptied under it, maybe.
                if mark is None:
                    since = presence.mark_gone(*ringing)
                    mark = presence.Gone(since, since + get_settings().RECONNECT_GRACE, False)
                if time.time() < mark.until:
                    continue
            result = cancel(call.pk, call.caller_id, EndReason.CONNECTION_LOST)
            if result is not None:
                ended.append(result)
            continue
        for party in (call.caller, call.callee):
            key = (str(call.pk), party.pk)
            here = _holds(present.get((call.account_id, party.cuid)), holders.get(key))
            mark = gone.get(key)
            if mark is None:
                if here:
                    continue
                since = presence.mark_gone(*key)
                mark = presence.Gone(since, since + get_settings().RECONNECT_GRACE, False)
            elif here and not mark.left:
                presence.mark_back(*key)
                continue
            if time.time() >= mark.until:
                result = lose_connection(call.pk, since=mark.since)
                if result is not None:
                    ended.append(result)
                    break
    return ended


def _ringing_mark(call: Call) -> tuple[str, int]:
    """The key of the mark a ringing call's missing caller gets (:func:`sweep`): apart
    from the marks of an answered call, so that one left from the ring never shortens the
    grace a party gets once the call is answered."""
    return (f"{call.pk}:ringing", call.caller_id)


# -- the offer of a ringing call ------------------------------------------------------------
# Kept in the cache until the ring deadline, so that a callee who reloads the page while
# the call rings is shown the call again and can still answer it.


def _offer_key(call_id: UUID | str) -> str:
    return f"directcall:offer:{call_id}"


def remember_offer(call: Call, sdp: str) -> None:
    """Keep the caller's SDP offer while the call rings."""
    ttl = max(1, int((call.deadline - timezone.now()).total_seconds()) + 5) if call.deadline else 60
    cache.set(_offer_key(call.pk), sdp, ttl)


def offer_of(call_id: UUID | str) -> str | None:
    """The SDP offer of a ringing call, if still kept."""
    return cache.get(_offer_key(call_id))
