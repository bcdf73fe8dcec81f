"""The browser SDK's contract in real Chromium: two browser contexts are two users."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from directcall.models import Call, CallStatus
from tests.e2e import timings
from tests.e2e.harness import wait_for_audio
from tests.e2e.sdk import (
    click,
    events,
    outcome,
    overlay,
    screen,
    sign_in,
    slot,
    start_call,
)


@pytest.fixture
def account(e2e_account):
    return e2e_account()


@pytest.fixture
def pair(new_user, account):
    """Jane (a tutor) and Sam (a student), each signed in in their own browser context."""
    acct, key = account
    jane, sam = new_user("jane"), new_user("sam")
    assert sign_in(jane, acct, key, "tutor_jane", name="Jane Tutor") == {"ok": True}
    assert sign_in(sam, acct, key, "student_sam", name="Sam Student") == {"ok": True}
    return jane, sam


def test_a_full_call_carries_audio_both_ways(pair):
    jane, sam = pair
    start_call(jane, "student_sam", "Tutor is calling about homework")
    expect(screen(jane, "outgoing")).to_be_visible()
    expect(screen(sam, "incoming")).to_be_visible()
    expect(slot(sam, "name")).to_have_text("Jane Tutor")
    expect(slot(sam, "context")).to_have_text("Tutor is calling about homework")
    expect(slot(jane, "status")).to_have_text("Ringing…")
    click(sam, "answer")
    expect(screen(sam, "ongoing")).to_be_visible()
    expect(screen(jane, "ongoing")).to_be_visible()
    wait_for_audio(jane.page)
    wait_for_audio(sam.page)
    expect(slot(jane, "timer")).to_have_text("00:01", timeout=5000)
    click(jane, "hangup")
    expect(overlay(jane)).to_be_hidden()
    expect(overlay(sam)).to_be_hidden()
    assert outcome(jane) == {"resolved": "over"}
    call = Call.objects.get()
    assert call.status == CallStatus.OVER and call.end_reason == "user_hangup"
    assert call.duration is not None and call.duration.total_seconds() >= 1
    assert call.caller.cuid == "tutor_jane" and call.callee.cuid == "student_sam"
    jane.assert_no_errors()
    sam.assert_no_errors()


def test_the_callee_hangs_up(pair):
    jane, sam = pair
    start_call(jane, "student_sam")
    click(sam, "answer")
    wait_for_audio(sam.page)
    click(sam, "hangup")
    assert outcome(jane) == {"resolved": "over"}
    expect(overlay(jane)).to_be_hidden()
    expect(overlay(sam)).to_be_hidden()
    assert [e["status"] for e in events(sam, "callend")] == ["over"]


def test_declined(pair):
    jane, sam = pair
    start_call(jane, "student_sam")
    click(sam, "decline")
    assert outcome(jane) == {"rejected": "declined"}
    expect(overlay(jane)).to_be_hidden()
    expect(overlay(sam)).to_be_hidden()
    assert Call.objects.get().status == CallStatus.DECLINED


def test_missed_after_the_ring_timeout(pair):
    jane, sam = pair
    start_call(jane, "student_sam")
    expect(screen(sam, "incoming")).to_be_visible()
    assert outcome(jane, timeout_ms=(timings.RING_TIMEOUT + 5) * 1000) == {"rejected": "missed"}
    expect(overlay(sam)).to_be_hidden()
    assert Call.objects.get().status == CallStatus.MISSED


def test_cancelled(pair):
    jane, sam = pair
    start_call(jane, "student_sam")
    expect(screen(sam, "incoming")).to_be_visible()
    click(jane, "cancel")
    assert outcome(jane) == {"rejected": "cancelled"}
    expect(overlay(sam)).to_be_hidden()
    assert Call.objects.get().status == CallStatus.CANCELLED


def test_busy(new_user, account, pair):
    jane, sam = pair
    acct, key = account
    gil = new_user("gil")
    assert sign_in(gil, acct, key, "grocer_gil") == {"ok": True}
    start_call(jane, "student_sam")
    expect(screen(sam, "incoming")).to_be_visible()
    start_call(gil, "student_sam", "Grocer is calling")
    assert outcome(gil) == {"rejected": "busy"}
    expect(overlay(gil)).to_be_hidden()
    expect(screen(sam, "incoming")).to_be_visible()  # the first call still rings
    assert sorted(Call.objects.values_list("status", flat=True)) == ["busy", "ringing"]


def test_offline_receiver_is_404(pair):
    jane, _sam = pair
    start_call(jane, "nobody_home")
    rejected = outcome(jane)["rejected"]
    assert rejected["code"] == 404 and rejected["message"]
    expect(overlay(jane)).to_be_hidden()
    assert not Call.objects.exists()


def test_outgoing_call_in_progress(pair):
    jane, sam = pair
    start_call(jane, "student_sam")
    second = jane.page.evaluate(
        "() => window.dc.call('student_sam', 'again').then((v) => ({v}), (e) => ({e}))"
    )
    assert second["e"]["code"] == "ERR_OUTGOING_CALL_IN_PROGRESS"
    expect(screen(sam, "incoming")).to_be_visible()


@pytest.mark.parametrize(
    "args,problem",
    [
        ("'91_8899555', 'hi'", "receiver"),
        ("'tutor_jane', 'hi'", "yourself"),
        ("'student_sam', ''", "context"),
        ("'student_sam', 'x'.repeat(281)", "context"),
        ("'student_sam', 'hi', {receiver_image: 'javascript:alert(1)'}", "receiver_image"),
        ("'student_sam', 'hi', 'options'", "callOptions"),
    ],
)
def test_invalid_call_parameters(pair, args, problem):
    jane, _sam = pair
    result = jane.page.evaluate(
        f"() => window.dc.call({args}).then((v) => ({{v}}), (e) => ({{e}}))"
    )
    assert result["e"]["code"] == "ERR_INVALID_CALL_PARAMETERS"
    assert problem in result["e"]["message"]
    expect(overlay(jane)).to_be_hidden()


def test_a_second_device_gets_already_signed_in(new_user, account, pair):
    acct, key = account
    jane, sam = pair
    other_device = new_user("jane-phone")
    result = sign_in(other_device, acct, key, "tutor_jane")
    assert result["error"]["code"] == "ERR_ALREADY_SIGNEDIN"
    # The first device still works.
    start_call(sam, "tutor_jane")
    expect(screen(jane, "incoming")).to_be_visible()


def test_a_page_reload_takes_its_place_back(new_user, account, pair):
    acct, key = account
    jane, sam = pair
    jane.page.reload()
    assert sign_in(jane, acct, key, "tutor_jane", name="Jane Tutor") == {"ok": True}
    start_call(sam, "tutor_jane")
    expect(screen(jane, "incoming")).to_be_visible()
    click(jane, "answer")
    wait_for_audio(jane.page)
    click(jane, "hangup")
    assert outcome(sam) == {"resolved": "over"}


def test_logout_refuses_later_calls(pair):
    jane, sam = pair
    jane.page.evaluate("() => window.dc.logout()")
    result = jane.page.evaluate(
        "() => window.dc.call('student_sam', 'hi').then((v) => ({v}), (e) => ({e}))"
    )
    assert result["e"]["code"] == "ERR_NOT_INITIALIZED"
    expect(jane.page.locator("[data-directcall-screens]")).to_have_count(0)
    # Jane is offline now: calling her is a 404.
    start_call(sam, "tutor_jane")
    assert outcome(sam)["rejected"]["code"] == 404


def test_logout_during_a_call_ends_it(pair):
    jane, sam = pair
    start_call(jane, "student_sam")
    click(sam, "answer")
    wait_for_audio(jane.page)
    sam.page.evaluate("() => window.dc.logout()")
    assert outcome(jane) == {"resolved": "over"}
    expect(overlay(jane)).to_be_hidden()
