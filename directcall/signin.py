"""Signing a signaling connection in: the checks of an ``auth`` frame, and what it hands back.

The consumer calls these in order (docs/protocol.md, "Presence", "Resume"): :func:`check`
the token, the sign-in rates, the registration and the origin; :func:`claim` the cuid's
presence for the token's device; :func:`join_revocation_groups` so that a revocation
reaches the socket; then :func:`hand_back` the calls named in ``resume`` and send
``ready``. A refusal is a :class:`Refusal`: the error to send and the close code.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import math
import uuid
import weakref
from typing import Any

from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.layers import BaseChannelLayer

from . import (
    calls,
    callsql,
    errors,
    iplimit,
    presence,
    protocol,
    revocation,
    tokens,
    transport,
    watch,
)
from .conf import get_settings
from .errors import DirectCallError
from .models import LIVE_STATUSES, Account, CallStatus, Registration
from .origins import CLOSE_ORIGIN_NOT_ALLOWED, socket_origin_allowed
from .party import Party, Send
from .ratelimit import within_rate
from .sweeper import Sweeper

logger = logging.getLogger("directcall.signaling")


class Refusal(Exception):
    """An ``auth`` frame refused: ``error`` is sent (echoing the frame if ``echo``), then close."""

    def __init__(self, error: DirectCallError, close_code: int, echo: bool = False) -> None:
        super().__init__(error.code)
        self.error = error
        self.close_code = close_code
        self.echo = echo


async def check(
    frame: dict[str, Any], scope: dict[str, Any]
) -> tuple[tokens.Session, Registration, str | None]:
    """The token's session and registration, and the device key; :class:`Refusal` if not."""
    session = await tokens.averify(frame.get("token"))
    device_key = protocol.device_key_of(frame)
    if not await within_auth_rates(scope, session, device_key):
        refusal = DirectCallError(errors.RATE_LIMITED, "Too many sign-ins; try again later.")
        raise Refusal(refusal, protocol.CLOSE_RATE_LIMITED, echo=True)
    registration = await registration_of(session) if session else None
    if session is None or registration is None:
        _log_refused(scope, session)
        raise Refusal(DirectCallError(errors.INVALID_TOKEN), protocol.CLOSE_AUTH_FAILED)
    if not socket_origin_allowed(registration.account, scope):
        raise Refusal(DirectCallError(errors.ORIGIN_NOT_ALLOWED), CLOSE_ORIGIN_NOT_ALLOWED)
    registration.account = shared_account(registration.account)
    return session, registration, device_key


# The Account each signed-in connection keeps (with its registration, for the invites it
# places), one per account while it is unchanged: connections of one account share one.
_accounts: weakref.WeakValueDictionary[int, Account] = weakref.WeakValueDictionary()


def shared_account(account: Account) -> Account:
    """``account`` as just read, or the process's instance of it if every field is the same.

    What a connection gets is as fresh as its own sign-in read, as when each kept its own
    copy; connections of an account that did not change between their sign-ins share one
    instance (about 1 KiB per idle connection less; docs/performance.md).
    """
    kept = _accounts.get(account.pk)
    if kept is not None and all(
        getattr(kept, name) == getattr(account, name) for name in _account_fields()
    ):
        return kept
    _accounts[account.pk] = account
    return account


@functools.cache
def _account_fields() -> tuple[str, ...]:
    return tuple(field.attname for field in Account._meta.concrete_fields)


async def claim(
    session: tokens.Session, device_key: str | None, channel: str, scope: dict[str, Any]
) -> tuple[presence.Holder, str | None]:
    """Claim the cuid's presence for this connection: its holder, and a newly issued device key."""
    holder = presence.Holder(channel, session.device_id, uuid.uuid4().hex)
    outcome, issued = await presence.aclaim(session.account_pk, session.cuid, holder, device_key)
    if outcome is presence.Claim.REFUSED:
        _log_already_signed_in(scope, session, device_key)
        # Held by no live connection (a browser closed a moment ago): say when it is free.
        # One second more than the hold: the cache keeps whole seconds, rounded up.
        free_in = await presence.afree_in(session.account_pk, session.cuid)
        retry_after = None if free_in is None else math.ceil(free_in) + 1
        refusal = DirectCallError(errors.ALREADY_SIGNEDIN, retry_after=retry_after)
        raise Refusal(refusal, protocol.CLOSE_ALREADY_SIGNEDIN)
    holder = dataclasses.replace(holder, key=presence.hash_key(issued or device_key or ""))
    return holder, issued


async def join_revocation_groups(session: tokens.Session, channel: str) -> None:
    """Join the groups a revocation is sent to; :class:`Refusal` if revoked before that."""
    for group in revocation_groups(session):
        await transport.join(group, channel)
    if await tokens.ais_revoked(session):  # revoked before the groups were joined
        raise Refusal(DirectCallError(errors.SESSION_REVOKED), protocol.CLOSE_REVOKED)


async def sign_out(
    party: Party,
    holder: presence.Holder,
    sweeper: Sweeper,
    layer: BaseChannelLayer,
    close_code: int | None,
    leaving: bool,
) -> None:
    """The signed-in connection ended: its presence and calls by how it closed, its groups."""
    party.close()
    sweeper.forget(party)
    conf = get_settings()
    left_page = leaving or close_code == protocol.CLOSE_GOING_AWAY
    grace = conf.PAGE_GRACE if left_page else conf.RECONNECT_GRACE
    # A logout gives the cuid up at once, and watchers see the user offline at once: the
    # SDK's logout() (1000) or the host site's (the session revoked: 4011, and the SDK
    # signs out for good). Any other end keeps it for this device for DEVICE_HOLD (a
    # reload, a link, a network drop).
    hold = close_code not in (protocol.CLOSE_NORMAL, protocol.CLOSE_REVOKED)
    await sweeper.shielded(party.leave(holder, grace, hold, left_page))
    with contextlib.suppress(Exception):  # memberships also expire on their own
        for group in revocation_groups(party.session):
            await layer.group_discard(group, party.channel)
    # Watchers look again now, and once a reservation for a reload has run out.
    person = (party.session.account_pk, party.session.cuid)
    await watch.changed(person)
    if hold:
        sweeper.spawn(watch.changed_later(conf.DEVICE_HOLD, person))


def renewal_interval() -> float:
    """How often a signed-in connection renews its presence: PRESENCE_TTL / 3."""
    return max(0.2, get_settings().PRESENCE_TTL / 3)


def next_renewal(now: float) -> float:
    """When a connection renewing (or signed in) at ``now`` renews next: a renewal interval
    later, rounded up to a tenth of it (at most a second). The renewals of a process's
    connections fall on a few moments, renewed together (:func:`renew`: two cache round
    trips for a batch, where each connection alone cost two), instead of one every few
    milliseconds; an entry is renewed at most a tenth of an interval late, with two
    intervals to spare."""
    interval = renewal_interval()
    grid = min(1.0, interval / 10)
    return math.ceil((now + interval) / grid) * grid


def upkeep(conn: Any, now: float) -> float | None:
    """A signed-in connection's timer (``conn``: its SignalingConsumer, called by the
    process's :class:`~directcall.sweeper.Timers`): close it once idle for IDLE_TIMEOUT,
    renew its presence every PRESENCE_TTL/3 (:func:`next_renewal`; with the others due at
    the same moment: :func:`renew`). Returns when it is due next."""
    idle_at = conn.last_frame_at + get_settings().IDLE_TIMEOUT
    if now >= idle_at:
        conn._spawn(conn.close(protocol.CLOSE_IDLE))
        return None
    if now >= conn.renew_at:
        conn.renew_at = next_renewal(now)
        conn.sweeper.timers.batch(renew, conn)
    return min(idle_at, conn.renew_at)


async def renew(conns: list[Any]) -> None:
    """Renew the presence of these signed-in connections (:func:`presence.arenew_many`: one
    call for all). An unreachable cache is tried again at the next renewal: a live call is
    not dropped for it, and the entry is put back when the cache is back. A connection
    whose cuid another device holds now closes (``ERR_ALREADY_SIGNEDIN``): its entry lapsed
    (a cache outage longer than PRESENCE_TTL, or an eviction) and another device signed in.
    """
    conns = [conn for conn in conns if not conn.finished]
    people = [(conn.party.session, conn.holder) for conn in conns]
    try:
        outcomes = await presence.arenew_many(
            [(session.account_pk, session.cuid, holder) for session, holder in people]
        )
    except Exception as exc:
        logger.warning("presence renewal failed for %d connection(s): %r", len(conns), exc)
        return
    for conn, kept in zip(conns, outcomes, strict=True):
        if isinstance(kept, Exception):
            logger.warning("presence renewal failed for %s: %r", conn.party.who, kept)
        elif not kept and not conn.finished:
            logger.warning("%s: presence taken by another device; closing", conn.party.who)
            conn._spawn(conn._reject(errors.ALREADY_SIGNEDIN, protocol.CLOSE_ALREADY_SIGNEDIN))


def revocation_groups(session: tokens.Session) -> list[str]:
    """The channel-layer groups through which a revocation of ``session`` arrives."""
    return [
        revocation.account_group(session.account_pk),
        revocation.registration_group(session.registration_pk),
    ]


async def hand_back(
    party: Party,
    registration: Registration,
    resume: protocol.Resume,
    issued: str | None,
    send: Send,
) -> None:
    """Give the signed-in connection its calls back and send ``ready`` and what follows it."""
    rejoined = await database_sync_to_async(calls.party_back)(party.pk, resume.keys, party.conn)
    summaries = []
    for item in rejoined:
        # Handed back by its key (answered, or placed by this tab), or ringing here too.
        held = item.call.status == CallStatus.ANSWERED or item.call.caller_id == party.pk
        route = party.add(item.call, bound=held)
        summaries.append(protocol.call_summary(item.call, route.role))
        if held:
            # Tell the peer where this user is now, so its relays reach this connection.
            back = protocol.peer_message(str(item.call.pk), party.pk, True, party.channel)
            await party.tell_peer(route, back)
    conf = get_settings()
    await send(
        protocol.ready_frame(
            registration.cuid,
            registration.display_name,
            summaries,
            conf.RECONNECT_GRACE,
            conf.PAGE_GRACE,
            issued,
            feedback=registration.account.ask_feedback,
        )
    )
    for item in rejoined:
        if item.offer:
            await send(protocol.incoming_frame(item.call, item.offer))
    for call_id in resume.call_ids:
        if party.get(call_id) is None:
            await _send_end_of(party, call_id, send)


async def _send_end_of(party: Party, call_id: str, send: Send) -> None:
    """The final state of a call the client had before reconnecting (``auth.resume``).

    A live call this connection was not handed (no call key, or another tab holds it)
    is told when it ends, and nothing else of it: no SDP, candidates or live states reach a
    connection that cannot prove it held the call, but a page whose ``accept`` won while
    its connection died (the answered state and its key lost with it) still learns how
    the call ended, instead of showing it until its own ring bound.
    """
    party.ask_end(call_id)  # before the read: an end told meanwhile is sent by Party.apply
    call = await database_sync_to_async(calls.get_call)(call_id)
    if call is None or party.pk not in (call.caller_id, call.callee_id):
        party.take_asked(call_id)
    elif call.status not in LIVE_STATUSES and party.take_asked(call_id):
        await send(protocol.state_frame(call))


async def within_auth_rates(
    scope: dict[str, Any], session: tokens.Session | None, device_key: str | None
) -> bool:
    """Count this sign-in against AUTH_RATE_IP and AUTH_RATE_CUID; False past either.

    A tab presenting the device key of the device that holds the cuid is not counted:
    floods of sign-ins for a cuid cannot lock its own tabs out (nor reloads, nor a
    busy address such as an office's).
    """
    conf = get_settings()
    if session is not None and device_key is not None:
        held = await presence.aheld(session.account_pk, session.cuid)
        if held is not None and held.admits(session.device_id, device_key):
            return True
    address = iplimit.client_ip(scope)
    checks = []
    if address is not None:
        checks.append((f"auth-ip:{address}", conf.AUTH_RATE_IP))
    if session is not None:
        checks.append((f"auth-cuid:{session.account_pk}:{session.cuid}", conf.AUTH_RATE_CUID))
    count = sync_to_async(within_rate, thread_sensitive=False)
    within = all([await count(name, rate) for name, rate in checks])
    if not within:
        logger.warning(
            "socket auth refused: too many sign-ins (client %s, cuid %r)",
            address,
            session.cuid if session else None,
        )
    return within


@database_sync_to_async
def registration_of(session: tokens.Session) -> Registration | None:
    """The token's registration (with its account), if it still exists under that account
    and cuid, and the account is active."""
    return callsql.registration_of(session.registration_pk, session.account_pk, session.cuid)


def _log_already_signed_in(
    scope: dict[str, Any], session: tokens.Session, device_key: str | None
) -> None:
    client = (scope.get("client") or ["?"])[0]
    logger.info(
        "socket auth refused for cuid %r (account %s): held by another device or key "
        "(device %r, key %s; client %s)",
        *(session.cuid, session.account_pk, session.device_id),
        "presented" if device_key else "absent",
        client,
    )


def _log_refused(scope: dict[str, Any], session: tokens.Session | None) -> None:
    client = (scope.get("client") or ["?"])[0]
    if session is None:
        logger.info("socket auth refused: invalid or expired token (client %s)", client)
    else:
        logger.warning(
            "socket auth refused for account %s registration %s cuid %r: "
            "registration gone or account inactive (client %s)",
            *(session.account_pk, session.registration_pk, session.cuid, client),
        )
