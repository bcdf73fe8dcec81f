"""Issue 13, 4 — ring-bombing: one caller kept a user busy for good by inviting again the
moment each ring ended (2 invites a minute, far under ``CALL_RATE``); every other caller
got ``busy`` and declining did not help. Now each unanswered call from A to B makes A wait
before calling B again (``RING_BACKOFF``, doubling up to ``RING_BACKOFF_MAX``), in the shared
cache; an answered call between them forgets it.

The consumer tests run on the in-memory layer + local-memory cache and on Redis for both.
"""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async
from django.test import override_settings

from directcall import backoff
from directcall.models import Call, CallStatus, EndReason

from .wsclient import ANSWER, answered_call

pytestmark = [pytest.mark.django_db(transaction=True)]

DEFAULTS = {"RING_BACKOFF": 30, "RING_BACKOFF_MAX": 900, "RING_BACKOFF_RESET": 3600}


@pytest.fixture
def signaling(signaling, settings):
    """The consumer tests' settings with the backoff at its defaults (conftest turns it off)."""
    settings.DIRECTCALL = {**settings.DIRECTCALL, **DEFAULTS}
    return signaling


async def declined(caller, callee, reason: str | None = None) -> str:
    """``caller`` invites ``callee``, who declines (with ``reason``, if given); the call id."""
    call_id = (await caller.invite(callee.cuid))["call_id"]
    await callee.next("incoming", call_id=call_id)
    extra = {"reason": reason} if reason else {}
    await callee.send(type="decline", call_id=call_id, **extra)
    await caller.next("state", call_id=call_id, status="declined")
    return call_id


async def refused(caller, receiver: str, ref: str = "again") -> dict:
    """An invite from ``caller`` to ``receiver`` that the backoff refuses; the error frame."""
    await caller.send(type="invite", ref=ref, receiver=receiver, context="x", sdp=ANSWER)
    error = await caller.next("error", ref=ref)
    assert error["code"] == "ERR_RATE_LIMITED", error
    return error


async def hang_up(caller, callee, call_id: str) -> None:
    await caller.send(type="hangup", call_id=call_id)
    await callee.next("state", call_id=call_id, status="over")


# -- the attack, through the consumer -------------------------------------------------------------


@pytest.mark.usefixtures("signaling")
async def test_inviting_again_the_moment_each_ring_ends_is_refused(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    gil = await clients.sign_in(people["grocer_gil"])
    # Declined: the attacker invites again at once.
    await declined(jane, sam)
    assert (await refused(jane, "student_sam"))["message"] == (
        "Your last call to Sam was not answered: you may call them again in 30 s."
    )
    # Nothing rang, nothing was recorded.
    await jane.alive()
    assert [f for f in await sam.drain() if f["type"] == "incoming"] == []
    assert await database_sync_to_async(Call.objects.count)() == 1
    # Another caller still reaches sam at once, and sam answers.
    await hang_up(gil, sam, await answered_call(gil, sam))
    # The attacker's backoff is its own: still refused.
    await refused(jane, "student_sam", ref="again2")


@pytest.mark.usefixtures("signaling")
async def test_a_cancelled_ring_counts_and_the_wait_doubles(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    # Ring for a while and cancel: as much a ring as a missed one.
    await jane.send(type="cancel", call_id=call_id)
    await jane.next("state", call_id=call_id, status="cancelled")
    sam_pk, jane_pk = people["student_sam"].pk, people["tutor_jane"].pk
    assert 29 < await database_sync_to_async(backoff.seconds_left)(jane_pk, sam_pk) <= 30
    # A second unanswered call (here: recorded directly, as the sweep would after a
    # missed ring) doubles the wait.
    await database_sync_to_async(backoff.unanswered)(jane_pk, sam_pk)
    assert "again in 60 s" in (await refused(jane, "student_sam"))["message"]


@pytest.mark.usefixtures("signaling")
async def test_an_answered_call_between_them_resets_the_backoff(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    await declined(jane, sam)
    await refused(jane, "student_sam")
    # Sam calls jane back and she answers: they are in touch, jane may call sam again.
    await hang_up(sam, jane, await answered_call(sam, jane))
    invited = await jane.invite("student_sam")
    await sam.next("incoming", call_id=invited["call_id"])


@pytest.mark.usefixtures("signaling")
async def test_busy_calls_and_declines_that_are_not_a_choice_do_not_count(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    gil = await clients.sign_in(people["grocer_gil"])
    talking = await answered_call(gil, sam)
    busy = await jane.invite("student_sam")
    assert (await jane.next("state", call_id=busy["call_id"]))["status"] == "busy"
    await hang_up(gil, sam, talking)
    # The SDK declines user_busy when its page is already in a call; not sam's choice.
    await declined(jane, sam, reason="user_busy")
    invited = await jane.invite("student_sam")
    await sam.next("incoming", call_id=invited["call_id"])


@pytest.mark.usefixtures("signaling")
async def test_off_with_none(people, clients, settings):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "RING_BACKOFF": None}
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    for _ in range(3):
        await declined(jane, sam)


# -- the rule, with an explicit clock ----------------------------------------------------------


def test_the_wait_doubles_up_to_the_cap():
    with override_settings(DIRECTCALL={**DEFAULTS, "RING_BACKOFF_MAX": 200}):
        assert [backoff.wait_after(n) for n in range(6)] == [0, 30, 60, 120, 200, 200]
        assert backoff.wait_after(10_000) == 200  # no overflow


def test_the_wait_runs_from_the_end_of_the_ring(clean_cache):
    with override_settings(DIRECTCALL={**DEFAULTS, "RING_BACKOFF_RESET": 600}):
        t = 1_000_000.0
        assert backoff.unanswered(1, 2, now=t) == 30
        assert backoff.seconds_left(1, 2, now=t + 10) == 20
        assert backoff.seconds_left(1, 2, now=t + 30) == 0
        assert backoff.seconds_left(2, 1, now=t) == 0  # the other way is not limited
        assert backoff.unanswered(1, 2, now=t + 40) == 60
        assert backoff.unanswered(1, 2, now=t + 200) == 120
        backoff.answered(2, 1)  # an answered call either way forgets it
        assert backoff.seconds_left(1, 2, now=t + 200) == 0
        assert backoff.unanswered(1, 2, now=t + 300) == 30


def test_strikes_are_forgotten_after_the_quiet_period(clean_cache):
    with override_settings(DIRECTCALL={**DEFAULTS, "RING_BACKOFF_RESET": 600}):
        t = 1_000_000.0
        assert backoff.unanswered(1, 2, now=t) == 30
        assert backoff.unanswered(1, 2, now=t + 100) == 60  # within 30 + 600 s
        # The wait ended at t + 160; 600 quiet seconds later the count starts again.
        assert backoff.unanswered(1, 2, now=t + 759) == 120
        assert backoff.unanswered(1, 2, now=t + 759 + 240 + 600) == 30


@pytest.mark.parametrize(
    "status,reason,answered,counted",
    [
        (CallStatus.DECLINED, EndReason.USER_DECLINED, False, True),
        (CallStatus.MISSED, EndReason.INVITE_TIMEOUT, False, True),
        (CallStatus.CANCELLED, EndReason.CALLER_CANCELLED, False, True),
        (CallStatus.CANCELLED, EndReason.CONNECTION_LOST, False, True),
        (CallStatus.DECLINED, EndReason.USER_BUSY, False, False),
        (CallStatus.DECLINED, EndReason.USER_MEDIA_FAILED, False, False),
        (CallStatus.BUSY, EndReason.USER_BUSY, False, False),
        (CallStatus.OVER, EndReason.USER_HANGUP, True, False),
        (CallStatus.FAILED, EndReason.ICE_FAILED, True, False),
    ],
)
def test_what_counts_as_unanswered(status, reason, answered, counted):
    from django.utils import timezone

    call = Call(status=status, end_reason=reason, answered_at=timezone.now() if answered else None)
    assert backoff.counts(call) is counted


def test_settings_are_typed():
    from directcall.conf import get_settings

    with override_settings(DIRECTCALL={}):
        conf = get_settings()
        assert (conf.RING_BACKOFF, conf.RING_BACKOFF_MAX, conf.RING_BACKOFF_RESET) == (
            30.0,
            900.0,
            3600.0,
        )
        assert type(conf.RING_BACKOFF) is float
    with override_settings(DIRECTCALL={"RING_BACKOFF": None, "RING_BACKOFF_MAX": "x"}):
        assert get_settings().RING_BACKOFF is None
        assert get_settings().RING_BACKOFF_MAX == 900.0  # a bad value: the default
