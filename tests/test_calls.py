"""The call state machine (directcall.calls), synchronously: the transition table, the entry
points (placing a call, a party dropping and coming back), the sweep, and races between
threads that must leave exactly one winner.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from functools import partial

import pytest
from django.db import connection
from django.utils import timezone

from directcall import calls, presence, signals
from directcall.adapter import DefaultCallAdapter
from directcall.errors import DirectCallError
from directcall.models import LIVE_STATUSES, Call, CallStatus, Registration
from directcall.tokens import Session
from directcall.validation import clean_call_params

from .conftest import _clear_cache
from .wsclient import make_registration

pytestmark = pytest.mark.django_db

INITIATED, RINGING, ANSWERED = CallStatus.INITIATED, CallStatus.RINGING, CallStatus.ANSWERED
FINAL = [s for s in CallStatus if s not in LIVE_STATUSES]


# The call keys make_call gives each side (what the holding tabs would have been given).
CALLER_KEY, CALLEE_KEY = "caller-key-0123456789abcdef", "callee-key-0123456789abcdef"


def make_call(caller, callee, status=INITIATED, deadline_in: float | None = 30) -> Call:
    """A call in ``status``, written straight to the database (no signal)."""
    now = timezone.now()
    live = status in LIVE_STATUSES
    answered = status in (ANSWERED, CallStatus.OVER, CallStatus.FAILED)
    return Call.objects.create(
        caller_key_hash=calls.call_key_hash(CALLER_KEY),
        callee_key_hash=calls.call_key_hash(CALLEE_KEY) if answered else "",
        account=caller.account,
        caller=caller,
        callee=callee,
        context="hi",
        status=status,
        deadline=now + timedelta(seconds=deadline_in) if live and deadline_in is not None else None,
        answered_at=now if status in (ANSWERED, CallStatus.OVER, CallStatus.FAILED) else None,
        ended_at=None if live else now,
    )


@pytest.fixture
def sent():
    """Names of the signals sent during the test, in order."""
    names = []

    def noting(name):
        def receiver(sender, **kwargs):
            names.append(name)

        return receiver

    names_and_receivers = [
        (name, noting(name))
        for name in ("call_initiated", "call_ringing", "call_answered", "call_ended")
    ]
    for name, receiver in names_and_receivers:
        getattr(signals, name).connect(receiver)
    yield names
    for name, receiver in names_and_receivers:
        getattr(signals, name).disconnect(receiver)


# -- the transition table --------------------------------------------------------------------

CALLER, CALLEE, STRANGER = "caller", "callee", "stranger"

# (status before, transition, who asks, its arguments) → (status after, reason) or None
# when the transition is refused and changes nothing.
TABLE = [
    (INITIATED, calls.ring, CALLEE, (), (RINGING, "")),
    (INITIATED, calls.ring, CALLER, (), None),
    (RINGING, calls.ring, CALLEE, (), None),  # a repeat
    (INITIATED, calls.accept, CALLEE, (), (ANSWERED, "")),
    (RINGING, calls.accept, CALLEE, (), (ANSWERED, "")),
    (RINGING, calls.accept, CALLER, (), None),
    (ANSWERED, calls.accept, CALLEE, (), None),
    (INITIATED, calls.decline, CALLEE, (), (CallStatus.DECLINED, "user_declined")),
    (RINGING, calls.decline, CALLEE, ("user_busy",), (CallStatus.DECLINED, "user_busy")),
    (RINGING, calls.decline, CALLER, (), None),
    (ANSWERED, calls.decline, CALLEE, (), None),
    (RINGING, calls.cancel, CALLER, (), (CallStatus.CANCELLED, "caller_cancelled")),
    (RINGING, calls.cancel, CALLEE, (), None),
    (ANSWERED, calls.cancel, CALLER, (), None),
    (ANSWERED, calls.hang_up, CALLER, (), (CallStatus.OVER, "user_hangup")),
    (ANSWERED, calls.hang_up, CALLEE, (), (CallStatus.OVER, "user_hangup")),
    (ANSWERED, calls.hang_up, CALLEE, ("ice_failed",), (CallStatus.FAILED, "ice_failed")),
    (
        ANSWERED,
        calls.hang_up,
        CALLER,
        ("user_media_failed",),
        (CallStatus.FAILED, "user_media_failed"),
    ),
    (ANSWERED, calls.hang_up, STRANGER, (), None),
    (RINGING, calls.hang_up, CALLER, (), None),
    (RINGING, calls.leave, CALLER, (), (CallStatus.CANCELLED, "caller_cancelled")),
    (RINGING, calls.leave, CALLEE, (), (CallStatus.DECLINED, "user_declined")),
    (
        INITIATED,
        calls.leave,
        CALLER,
        ("connection_lost",),
        (CallStatus.CANCELLED, "connection_lost"),
    ),
    (ANSWERED, calls.leave, CALLER, (), (CallStatus.OVER, "user_hangup")),
    (ANSWERED, calls.leave, CALLEE, ("ice_failed",), (CallStatus.FAILED, "ice_failed")),
    (RINGING, calls.leave, STRANGER, (), None),
    (ANSWERED, calls.lose_connection, None, (), (CallStatus.OVER, "connection_lost")),
    (RINGING, calls.lose_connection, None, (), None),
]


@pytest.mark.parametrize(
    "before,transition,who,args,after",
    TABLE,
    ids=[f"{row[0]}-{row[1].__name__}-{row[2]}-{'-'.join(row[3])}" for row in TABLE],
)
def test_transition_table(people, sent, before, transition, who, args, after):
    jane, sam, gil = people["tutor_jane"], people["student_sam"], people["grocer_gil"]
    call = make_call(jane, sam, before)
    party = {CALLER: jane, CALLEE: sam, STRANGER: gil}.get(who)
    result = transition(call.pk, *([party.pk] if party else []), *args)
    row = Call.objects.get(pk=call.pk)
    if after is None:
        assert result is None and row.status == before and sent == []
        return
    assert (result.status, result.end_reason) == after == (row.status, row.end_reason)
    assert sent == (["call_ended"] if row.status not in LIVE_STATUSES else [f"call_{row.status}"])
    if row.status not in LIVE_STATUSES:
        assert row.ended_at is not None and row.deadline is None


@pytest.mark.parametrize("status", FINAL)
@pytest.mark.parametrize("transition", [calls.ring, calls.accept, calls.decline, calls.leave])
def test_a_final_call_never_changes(people, sent, status, transition):
    call = make_call(people["tutor_jane"], people["student_sam"], status)
    assert transition(call.pk, people["student_sam"].pk) is None
    assert calls.expire(call.pk, timezone.now() + timedelta(days=1)) is None
    assert Call.objects.get(pk=call.pk).status == status and sent == []


def test_accept_needs_the_ring_deadline_not_passed(people):
    call = make_call(people["tutor_jane"], people["student_sam"], RINGING, deadline_in=-1)
    assert calls.accept(call.pk, people["student_sam"].pk) is None


def test_accept_sets_the_maximum_duration_as_the_deadline(people, settings):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "MAX_CALL_DURATION": 60}
    call = make_call(people["tutor_jane"], people["student_sam"], RINGING)
    answered = calls.accept(call.pk, people["student_sam"].pk)
    assert 59 <= (answered.deadline - answered.answered_at).total_seconds() <= 60


@pytest.mark.parametrize(
    "status,due,after",
    [
        (INITIATED, True, (CallStatus.MISSED, "invite_timeout")),
        (RINGING, True, (CallStatus.MISSED, "invite_timeout")),
        (RINGING, False, None),
        (ANSWERED, True, (CallStatus.OVER, "max_duration")),
        (ANSWERED, False, None),
    ],
)
def test_expire(people, status, due, after):
    call = make_call(people["tutor_jane"], people["student_sam"], status, deadline_in=10)
    now = timezone.now() + timedelta(seconds=11 if due else 0)
    result = calls.expire(call.pk, now)
    assert (result and (result.status, result.end_reason)) == after


def test_an_answered_call_without_a_deadline_never_expires(people):
    call = make_call(people["tutor_jane"], people["student_sam"], ANSWERED, deadline_in=None)
    assert calls.expire(call.pk, timezone.now() + timedelta(days=365)) is None


# -- placing a call ---------------------------------------------------------------------------


def session_of(registration) -> Session:
    return Session(registration.account_id, registration.pk, registration.cuid, "device-0001")


def online(registration, channel: str = "chan") -> None:
    holder = presence.Holder(f"{channel}-{registration.pk}", f"dev-{registration.pk}", "conn")
    presence.claim(registration.account_id, registration.cuid, holder)


def test_place_call_rings_an_online_receiver_and_keeps_the_offer(people, sent):
    jane, sam = people["tutor_jane"], people["student_sam"]
    online(sam)
    placed = calls.place_call(session_of(jane), clean_call_params("student_sam", "hi"), "v=0")
    assert placed.call.status == INITIATED and placed.callee_channels == (f"chan-{sam.pk}",)
    assert calls.offer_of(placed.call.pk) == "v=0" and sent == ["call_initiated"]


@pytest.mark.parametrize("has_webhooks", [False, True])
def test_the_winner_hook_sees_the_accounts_webhook_switch_as_it_is_now(
    people, monkeypatch, has_webhooks
):
    """The invite reuses the caller's registration loaded at sign-in, and a transition the
    call its party holds; _won still sees has_webhooks as the database has it now (read by
    the invite's callee query and by each UPDATE ... RETURNING), with no extra query."""
    from directcall.models import Account

    jane, sam = people["tutor_jane"], people["student_sam"]
    signed_in = Registration.objects.select_related("account").get(pk=jane.pk)
    Account.objects.filter(pk=jane.account_id).update(has_webhooks=has_webhooks)
    seen = []
    monkeypatch.setattr(
        calls,
        "_won",
        lambda call, created=False: seen.append((call.status, call.account.has_webhooks)),
    )
    online(sam)
    params = clean_call_params("student_sam", "hi")
    placed = calls.place_call(session_of(jane), params, "v=0", caller_row=signed_in)
    Account.objects.filter(pk=jane.account_id).update(has_webhooks=not has_webhooks)
    calls.ring(placed.call.pk, sam.pk, call=placed.call)
    assert seen == [(INITIATED, has_webhooks), (RINGING, not has_webhooks)]


def test_place_call_to_an_offline_or_unknown_receiver_is_404_and_records_nothing(people):
    for receiver in ("student_sam", "nobody_here"):
        with pytest.raises(DirectCallError) as refused:
            calls.place_call(
                session_of(people["tutor_jane"]), clean_call_params(receiver, "hi"), "v=0"
            )
        assert refused.value.code == 404
    assert not Call.objects.exists()


def test_calling_yourself_is_refused(people):
    jane = people["tutor_jane"]
    with pytest.raises(DirectCallError) as refused:
        calls.place_call(session_of(jane), clean_call_params("tutor_jane", "hi"), "v=0")
    assert refused.value.code == "ERR_INVALID_CALL_PARAMETERS"
    assert "yourself" in refused.value.message and not Call.objects.exists()


class NobodyCallsGil(DefaultCallAdapter):
    """An adapter whose can_call refuses calls to grocer_gil."""

    def can_call(self, caller, callee) -> bool:
        return callee.cuid != "grocer_gil"


def test_a_refused_callee_is_refused_before_presence_is_read(people, settings):
    """ERR_CALL_NOT_ALLOWED whether gil is online or not: a refusal tells nothing more."""
    settings.DIRECTCALL = {**settings.DIRECTCALL, "ADAPTER": f"{__name__}.NobodyCallsGil"}
    jane, gil = people["tutor_jane"], people["grocer_gil"]
    for _ in ("offline", "online"):
        with pytest.raises(DirectCallError) as refused:
            calls.place_call(session_of(jane), clean_call_params("grocer_gil", "hi"), "v=0")
        assert refused.value.code == "ERR_CALL_NOT_ALLOWED"
        online(gil)
    assert not Call.objects.exists()


def test_a_busy_callee_gets_a_busy_record_and_no_offer(people, sent):
    jane, sam, gil = people["tutor_jane"], people["student_sam"], people["grocer_gil"]
    make_call(jane, sam, RINGING)
    online(sam)
    placed = calls.place_call(session_of(gil), clean_call_params("student_sam", "hi"), "v=0")
    call = placed.call
    assert (call.status, call.end_reason) == (CallStatus.BUSY, "user_busy")
    assert calls.offer_of(call.pk) is None and sent == ["call_ended"]


def test_a_caller_in_a_call_may_not_place_another(people):
    jane, sam, gil = people["tutor_jane"], people["student_sam"], people["grocer_gil"]
    make_call(sam, jane, ANSWERED)  # jane is the callee of a live call
    online(gil)
    with pytest.raises(DirectCallError) as refused:
        calls.place_call(session_of(jane), clean_call_params("grocer_gil", "hi"), "v=0")
    assert refused.value.code == "ERR_OUTGOING_CALL_IN_PROGRESS"


def test_the_invite_rate_counts_every_invite(people, settings):
    # Counted in fixed windows: a day-long one keeps the three invites in one window.
    settings.DIRECTCALL = {**settings.DIRECTCALL, "CALL_RATE": "2/day"}
    jane = people["tutor_jane"]
    for _ in range(2):  # offline receivers count too: no probing who is online
        with pytest.raises(DirectCallError):
            calls.place_call(session_of(jane), clean_call_params("student_sam", "hi"), "v=0")
    with pytest.raises(DirectCallError) as refused:
        calls.place_call(session_of(jane), clean_call_params("student_sam", "hi"), "v=0")
    assert refused.value.code == "ERR_RATE_LIMITED"


def test_the_invite_window_passes(people, settings):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "CALL_RATE": "2/min"}
    account_pk = people["tutor_jane"].account_id
    start = 1_000_020.0  # the start of a 60 s window
    calls.check_invite_rate(account_pk, "tutor_jane", now=start)
    calls.check_invite_rate(account_pk, "tutor_jane", now=start + 1)
    with pytest.raises(DirectCallError):
        calls.check_invite_rate(account_pk, "tutor_jane", now=start + 2)
    calls.check_invite_rate(account_pk, "tutor_jane", now=start + 61)  # next window


# -- a party drops, a party comes back ------------------------------------------------------------


def test_a_caller_dropping_cancels_a_ringing_call(people):
    call = make_call(people["tutor_jane"], people["student_sam"], RINGING)
    dropped = calls.party_dropped(call.pk, people["tutor_jane"].pk)
    assert not dropped.waiting
    assert (dropped.ended.status, dropped.ended.end_reason) == ("cancelled", "connection_lost")


def test_a_callee_dropping_leaves_the_call_ringing(people):
    call = make_call(people["tutor_jane"], people["student_sam"], RINGING)
    assert calls.party_dropped(call.pk, people["student_sam"].pk) == calls.Dropped()
    assert Call.objects.get(pk=call.pk).status == RINGING


@pytest.mark.parametrize("who", ["tutor_jane", "student_sam"])
def test_an_answered_call_waits_for_a_party_who_dropped(people, who):
    call = make_call(people["tutor_jane"], people["student_sam"], ANSWERED)
    party = people[who]
    assert calls.party_dropped(call.pk, party.pk) == calls.Dropped(waiting=True)
    assert presence.gone_since(str(call.pk), party.pk) is not None
    assert Call.objects.get(pk=call.pk).status == ANSWERED
    # Signing in again without the call key (another tab, or someone with a copied token)
    # is handed nothing of it; nor with the other side's key.
    other_key = CALLEE_KEY if who == "tutor_jane" else CALLER_KEY
    assert calls.party_back(party.pk) == []
    assert calls.party_back(party.pk, {str(call.pk): other_key}) == []
    assert presence.gone_since(str(call.pk), party.pk) is not None
    # Back within the grace with the key: no longer waited for, and the call carries on.
    own_key = CALLER_KEY if who == "tutor_jane" else CALLEE_KEY
    (rejoined,) = calls.party_back(party.pk, {str(call.pk): own_key}, "conn-2")
    assert rejoined.call.pk == call.pk and rejoined.offer is None
    assert presence.gone_since(str(call.pk), party.pk) is None
    # The old connection's end, seen late, does not count against the call.
    assert calls.party_dropped(call.pk, party.pk, "conn-1") == calls.Dropped()
    assert presence.gone_since(str(call.pk), party.pk) is None


def test_a_stranger_dropping_changes_nothing(people):
    call = make_call(people["tutor_jane"], people["student_sam"], RINGING)
    assert calls.party_dropped(call.pk, people["grocer_gil"].pk) == calls.Dropped()


def test_a_callee_back_while_it_rings_gets_the_offer(people):
    call = make_call(people["tutor_jane"], people["student_sam"], RINGING)
    calls.remember_offer(call, "v=0 offer")
    (rejoined,) = calls.party_back(people["student_sam"].pk)
    assert rejoined.offer == "v=0 offer"
    # The caller's ringing call goes back only to a connection with its key (the tab that
    # placed it, reconnecting after a network drop or a server process that died).
    jane = people["tutor_jane"]
    assert calls.party_back(jane.pk) == []
    (back,) = calls.party_back(jane.pk, {str(call.pk): CALLER_KEY}, "conn-2")
    assert back.call.pk == call.pk and back.offer is None
    # Its old connection's end, seen late, does not cancel it; a page that left does.
    assert calls.party_dropped(call.pk, jane.pk, "conn-1") == calls.Dropped()
    assert Call.objects.get(pk=call.pk).status == RINGING
    dropped = calls.party_dropped(call.pk, jane.pk, "conn-1", left_page=True)
    assert (dropped.ended.status, dropped.ended.end_reason) == ("cancelled", "connection_lost")


def past_grace(call: Call, party: Registration) -> None:
    """Return once the party's gone mark has run out (a grace of a millisecond or so)."""
    mark = presence.gone(str(call.pk), party.pk)
    assert mark is not None, "not marked gone"
    while time.time() < mark.until:
        pass  # at most the grace: a millisecond


def test_end_if_still_gone(people, settings):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "RECONNECT_GRACE": 0.001}
    jane, sam = people["tutor_jane"], people["student_sam"]
    call = make_call(jane, sam, ANSWERED)
    calls.party_dropped(call.pk, sam.pk, "conn-1")
    calls.party_back(sam.pk, {str(call.pk): CALLEE_KEY}, "conn-2")  # took it back
    assert calls.end_if_still_gone(call.pk, sam.account_id, sam.cuid, sam.pk) is None
    calls.party_dropped(call.pk, sam.pk, "conn-2")
    online(sam)  # another tab of sam's is online: that does not bring the call back
    past_grace(call, sam)
    ended = calls.end_if_still_gone(call.pk, sam.account_id, sam.cuid, sam.pk)
    assert (ended.status, ended.end_reason) == ("over", "connection_lost")


@pytest.mark.parametrize("ended_by", ["end_if_still_gone", "sweep"])
def test_a_call_lost_ends_when_the_party_left_not_when_the_grace_ran_out(
    people, settings, ended_by
):
    """The grace is dead air spent waiting for a party who never came back: the call's end
    (and so its talk time, what a site bills) is when that party's connection went."""
    settings.DIRECTCALL = {**settings.DIRECTCALL, "RECONNECT_GRACE": 0.25}
    jane, sam = people["tutor_jane"], people["student_sam"]
    call = make_call(jane, sam, ANSWERED, deadline_in=None)
    online(jane)
    left = time.time()
    calls.party_dropped(call.pk, sam.pk, "conn-1")
    past_grace(call, sam)
    if ended_by == "sweep":
        (ended,) = calls.sweep()
    else:
        ended = calls.end_if_still_gone(call.pk, sam.account_id, sam.cuid, sam.pk)
    assert (ended.status, ended.end_reason) == ("over", "connection_lost")
    assert abs(ended.ended_at.timestamp() - left) < 0.1, (ended.ended_at, left)
    assert ended.duration == ended.ended_at - call.answered_at
    assert Call.objects.get(pk=call.pk).ended_at == ended.ended_at
    assert time.time() - ended.ended_at.timestamp() >= 0.25  # the grace is not in it


def test_a_page_that_said_it_was_leaving_is_waited_for_its_own_grace(people, settings):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "RECONNECT_GRACE": 60, "PAGE_GRACE": 0.001}
    jane, sam = people["tutor_jane"], people["student_sam"]
    call = make_call(jane, sam, ANSWERED)
    calls.party_dropped(call.pk, sam.pk, "conn-1", grace=0.001)
    past_grace(call, sam)
    ended = calls.end_if_still_gone(call.pk, sam.account_id, sam.cuid, sam.pk)
    assert (ended.status, ended.end_reason) == ("over", "connection_lost")


def test_ended_among(people):
    jane, sam = people["tutor_jane"], people["student_sam"]
    live, over = make_call(jane, sam, ANSWERED), make_call(jane, sam, CallStatus.OVER)
    ended = calls.ended_among([str(live.pk), str(over.pk), "00000000-0000-0000-0000-000000000000"])
    assert list(ended) == [str(over.pk)] and ended[str(over.pk)].caller == jane


# -- the sweep ------------------------------------------------------------------------------------


class CacheReads:
    """The real cache, noting which reading methods are called."""

    def __init__(self, cache) -> None:
        self.cache, self.reads = cache, []

    def __getattr__(self, name: str):
        if name in ("get", "get_many"):
            self.reads.append(name)
        return getattr(self.cache, name)


def test_the_sweep(people, settings, monkeypatch):
    """Overdue calls expire; a ringing call whose caller stayed gone past the grace is
    cancelled; an answered call whose party stayed gone past the grace ends; presence is
    read in one round trip for all live calls, and "gone since" in one more."""
    settings.DIRECTCALL = {**settings.DIRECTCALL, "RECONNECT_GRACE": 0.001}
    jane, sam, gil = people["tutor_jane"], people["student_sam"], people["grocer_gil"]
    mallory, other_sam = people["mallory_m"], people["other_sam"]
    rob, ann, tom = (make_registration(jane.account, cuid) for cuid in ("rob_r", "ann_a", "tom_t"))
    overdue = make_call(jane, sam, RINGING, deadline_in=-1)
    caller_gone = make_call(rob, gil, RINGING)
    party_gone = make_call(mallory, other_sam, ANSWERED, deadline_in=None)
    all_here = make_call(ann, tom, ANSWERED, deadline_in=None)
    for registration in (jane, sam, gil, mallory, ann, tom):
        online(registration)
    calls.party_dropped(party_gone.pk, other_sam.pk)  # gone since before this sweep
    past_grace(party_gone, other_sam)
    presence.hold(str(caller_gone.pk), rob.pk, "conn-rob")  # placed by a connection now gone
    spy = CacheReads(presence.cache)
    monkeypatch.setattr(presence, "cache", spy)
    ended = {str(call.pk): (call.status, call.end_reason) for call in calls.sweep()}
    assert ended == {
        str(overdue.pk): ("missed", "invite_timeout"),
        str(caller_gone.pk): ("cancelled", "connection_lost"),
        str(party_gone.pk): ("over", "connection_lost"),
    }
    assert spy.reads == ["get_many", "get_many"]
    assert Call.objects.get(pk=all_here.pk).status == ANSWERED


def test_a_cache_restart_does_not_cancel_the_calls_ringing_then(people, settings):
    """A cache restarted empty forgets every caller's presence until their connections
    renew it: the sweep waits the grace before it believes a ringing caller gone."""
    settings.DIRECTCALL = {**settings.DIRECTCALL, "RECONNECT_GRACE": 60}
    jane, sam = people["tutor_jane"], people["student_sam"]
    call = make_call(jane, sam, RINGING)
    presence.hold(str(call.pk), jane.pk, "conn-jane")  # as place_call does
    online(jane)
    online(sam)
    assert calls.sweep() == []
    _clear_cache()  # Redis restarted without persistence (this run's keys)
    assert calls.sweep() == [] and calls.sweep() == []
    assert Call.objects.get(pk=call.pk).status == RINGING
    ringing = calls._ringing_mark(call)
    assert presence.gone(*ringing) is not None  # missed, not believed yet
    online(jane)  # the caller's connection renews its entry
    assert calls.sweep() == []
    assert presence.gone(*ringing) is None  # seen back
    # The answered call's grace owes nothing to the ring's marks.
    assert presence.gone(str(call.pk), jane.pk) is None


def test_a_ringing_call_whose_caller_stays_gone_is_cancelled_after_the_grace(people, settings):
    """No record of which connection placed it, and no presence of the caller: the sweep
    waits the grace (the cache may have been emptied), then cancels."""
    settings.DIRECTCALL = {**settings.DIRECTCALL, "RECONNECT_GRACE": 60}
    jane, sam = people["tutor_jane"], people["student_sam"]
    call = make_call(jane, sam, RINGING)
    online(sam)
    assert calls.sweep() == []  # marked missing, within the grace
    ringing = calls._ringing_mark(call)
    assert presence.gone(*ringing).until > time.time() + 50
    presence.mark_back(*ringing)
    presence.mark_gone(*ringing, grace=0.001)  # as if marked a grace ago
    mark = presence.gone(*ringing)
    while time.time() < mark.until:
        pass  # a millisecond
    [ended] = calls.sweep()
    assert (ended.pk, ended.status, ended.end_reason) == (call.pk, "cancelled", "connection_lost")


def test_a_ringing_call_whose_callers_process_died_is_cancelled_at_once(people, settings):
    """The cache still knows the connection that placed the call and the caller has no
    presence: its connections are gone (their process died, its entries expired)."""
    settings.DIRECTCALL = {**settings.DIRECTCALL, "RECONNECT_GRACE": 60}
    jane, sam = people["tutor_jane"], people["student_sam"]
    call = make_call(jane, sam, RINGING)
    presence.hold(str(call.pk), jane.pk, "conn-jane")
    online(sam)
    [ended] = calls.sweep()
    assert (ended.pk, ended.status, ended.end_reason) == (call.pk, "cancelled", "connection_lost")


def test_the_sweep_waits_the_grace_for_a_party_gone(people, settings):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "RECONNECT_GRACE": 60}
    jane, sam = people["tutor_jane"], people["student_sam"]
    call = make_call(jane, sam, ANSWERED, deadline_in=None)
    online(jane)
    assert calls.sweep() == []
    assert presence.gone_since(str(call.pk), sam.pk) is not None  # marked gone, still up
    online(sam)
    assert calls.sweep() == []
    assert presence.gone_since(str(call.pk), sam.pk) is None  # seen back


def test_the_sweep_ends_a_call_whose_tab_left_though_another_tab_is_online(people, settings):
    """Presence of the cuid (another tab) does not bring back a party seen leaving: only
    taking the call back with its key does."""
    settings.DIRECTCALL = {**settings.DIRECTCALL, "RECONNECT_GRACE": 0.001}
    jane, sam = people["tutor_jane"], people["student_sam"]
    call = make_call(jane, sam, ANSWERED, deadline_in=None)
    online(jane)
    online(sam)
    calls.party_dropped(call.pk, sam.pk, "conn-1")
    past_grace(call, sam)
    ended = calls.sweep()
    assert [(c.pk, c.status, c.end_reason) for c in ended] == [(call.pk, "over", "connection_lost")]


# -- races: exactly one winner -------------------------------------------------------------------


def race(*actions):
    """Run the actions in threads released at the same instant; return their results."""
    barrier = threading.Barrier(len(actions))
    results = [None] * len(actions)

    def run(index, action):
        barrier.wait()
        try:
            results[index] = action()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=item) for item in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


@pytest.mark.django_db(transaction=True)
def test_accept_racing_expire_has_one_winner(people, ended_signals):
    """Accept and the ring timeout fired at the same instant from two threads, 20 times."""
    jane, sam = people["tutor_jane"], people["student_sam"]
    for _ in range(20):
        call = calls.start(jane.pk, clean_call_params("student_sam", "race"))
        deadline = timezone.now() + timedelta(milliseconds=5)
        Call.objects.filter(pk=call.pk).update(deadline=deadline)
        accepted, expired = race(
            partial(calls.accept, call.pk, sam.pk),
            partial(calls.expire, call.pk, deadline + timedelta(seconds=1)),
        )
        assert (accepted is None) != (expired is None)
        final = Call.objects.get(pk=call.pk)
        assert final.status == (ANSWERED if accepted else CallStatus.MISSED)
        calls.leave(call.pk, jane.pk)  # end it so the next round may start
    assert len(ended_signals) == 20  # one call_ended per call, never two
    assert len({s[0] for s in ended_signals}) == 20


def held(call: Call) -> Call:
    """``call`` as a party's connection holds it: with its account and parties."""
    return Call.objects.select_related("account", "caller", "callee").get(pk=call.pk)


@pytest.mark.parametrize("known", [False, True], ids=["read", "held"])
@pytest.mark.django_db(transaction=True)
def test_hangups_racing_from_both_sides_have_one_winner(people, ended_signals, known):
    """``held``: each side passes the call it holds, as the consumers do (on PostgreSQL,
    each hang-up is then its UPDATE alone, with no transaction around it)."""
    jane, sam = people["tutor_jane"], people["student_sam"]
    for _ in range(10):
        call = calls.start(jane.pk, clean_call_params("student_sam", "race"))
        calls.accept(call.pk, sam.pk)
        results = race(
            partial(calls.hang_up, call.pk, jane.pk, call=held(call) if known else None),
            partial(calls.hang_up, call.pk, sam.pk, call=held(call) if known else None),
        )
        assert sum(result is not None for result in results) == 1
    assert len(ended_signals) == 10


@pytest.mark.django_db(transaction=True)
def test_a_transition_is_its_update_alone_unless_the_account_has_webhooks_now(people, monkeypatch):
    """On PostgreSQL a transition of a call whose account has no webhook endpoint is one
    statement, with no BEGIN or COMMIT (two round trips); when the account has endpoints
    by the time it runs (the party's copy of the call says not), the statement changes
    nothing and the transition is made in its transaction, outbox hook included. On SQLite
    it is always made in its transaction (BEGIN IMMEDIATE takes the write lock first)."""
    from django.test.utils import CaptureQueriesContext

    from directcall.models import Account

    jane, sam = people["tutor_jane"], people["student_sam"]
    call = calls.start(jane.pk, clean_call_params("student_sam", "alone"))
    known = held(call)
    assert not known.account.has_webhooks
    seen = []
    monkeypatch.setattr(
        calls,
        "_won",
        lambda call, created=False: seen.append((call.status, call.account.has_webhooks)),
    )
    postgres = connection.vendor == "postgresql"
    with CaptureQueriesContext(connection) as ring:
        assert calls.ring(call.pk, sam.pk, call=known).status == RINGING
    statements = [query["sql"].split()[0] for query in ring.captured_queries]
    assert statements == (["UPDATE"] if postgres else ["BEGIN", "UPDATE", "COMMIT"])
    assert seen == ([] if postgres else [(RINGING, False)])  # _won: nothing to write

    Account.objects.filter(pk=jane.account_id).update(has_webhooks=True)
    seen.clear()
    with CaptureQueriesContext(connection) as accept:
        answered = calls.accept(call.pk, sam.pk, call=known)
    assert answered.status == ANSWERED and answered.account.has_webhooks
    assert seen == [(ANSWERED, True)]
    statements = [query["sql"].split()[0] for query in accept.captured_queries]
    in_transaction = ["BEGIN", "UPDATE", "COMMIT"]
    assert statements == (["UPDATE", *in_transaction] if postgres else in_transaction)
    assert Call.objects.get(pk=call.pk).status == ANSWERED


@pytest.mark.django_db(transaction=True)
def test_concurrent_invites_to_one_callee_one_rings(people):
    jane, gil = people["tutor_jane"], people["grocer_gil"]
    for _ in range(10):
        first, second = race(
            partial(calls.start, jane.pk, clean_call_params("student_sam", "one")),
            partial(calls.start, gil.pk, clean_call_params("student_sam", "two")),
        )
        assert sorted([first.status, second.status]) == [CallStatus.BUSY, INITIATED]
        ringing = first if first.status == INITIATED else second
        calls.leave(ringing.pk, ringing.caller_id)
    assert not Call.objects.live().exists()


@pytest.mark.django_db(transaction=True)
def test_a_ringing_caller_dropping_racing_an_accept_leaves_one_outcome(people):
    """The caller's connection drops as the callee answers: cancelled, or answered and
    waiting for the caller, never both."""
    jane, sam = people["tutor_jane"], people["student_sam"]
    for _ in range(10):
        call = calls.start(jane.pk, clean_call_params("student_sam", "race"))
        dropped, accepted = race(
            partial(calls.party_dropped, call.pk, jane.pk), partial(calls.accept, call.pk, sam.pk)
        )
        final = Call.objects.get(pk=call.pk)
        if accepted is None:
            assert dropped.ended is not None and final.status == CallStatus.CANCELLED
        else:
            assert dropped.ended is None and final.status == ANSWERED
            assert dropped.waiting and presence.gone_since(str(call.pk), jane.pk) is not None
            calls.leave(call.pk, jane.pk)
