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
