"""A call survives a reload in Firefox (issue 12): the page that holds an answered call
reloads, signs in again with its device and call keys, and audio flows again both ways.

Firefox pages are driven as in ``test_firefox.py`` (whose fixtures these are); the other
party is Chromium. The page reload must bring the call back within the server's grace.
"""

from __future__ import annotations

from playwright.sync_api import expect

from directcall.models import Call, CallStatus
from tests.e2e.firefox_driver import click as ff_click
from tests.e2e.firefox_driver import wait_overlay_hidden, wait_screen
from tests.e2e.sdk import click, events, outcome, overlay, screen, sign_in, start_call
from tests.e2e.test_firefox import _audio_both_ways, account, ff_user, firefox  # noqa: F401


def _resumed(user) -> dict:
    """The page's ``resumed`` event (waits for it)."""
    user.page.wait_for_function(
        "() => (window.dcEvents || []).some((e) => e[0] === 'resumed')", timeout=15_000
    )
    return events(user, "resumed")[0]


def test_a_firefox_callee_reloads_and_the_call_comes_back(new_user, ff_user, account):  # noqa: F811
    acct, key = account
    jane, sam = new_user("jane"), ff_user("sam")
    assert sign_in(jane, acct, key, "tutor_jane", name="Jane Tutor") == {"ok": True}
    assert sign_in(sam, acct, key, "student_sam", name="Sam Student") == {"ok": True}
    start_call(jane, "student_sam", "Homework")
    wait_screen(sam, "incoming")
    ff_click(sam, "answer")
    expect(screen(jane, "ongoing")).to_be_visible()
    _audio_both_ways(jane.page, sam.page)
    sam.page.reload()
    assert sign_in(sam, acct, key, "student_sam", name="Sam Student") == {"ok": True}
    resumed = _resumed(sam)
    assert resumed["role"] == "callee" and resumed["peer"]["cuid"] == "tutor_jane"
    wait_screen(sam, "ongoing")
    # New peer connections on the Firefox side, audio both ways again.
    _audio_both_ways(jane.page, sam.page)
    assert jane.page.evaluate("() => window.outcome") is None  # Jane's call() goes on
    click(jane, "hangup")
    assert outcome(jane) == {"resolved": "over"}
    wait_overlay_hidden(sam)
    call = Call.objects.get()
    assert (call.status, call.end_reason) == (CallStatus.OVER, "user_hangup")


def test_a_firefox_caller_reloads_and_the_call_comes_back(new_user, ff_user, account):  # noqa: F811
    acct, key = account
    jane, sam = ff_user("jane"), new_user("sam")
    assert sign_in(jane, acct, key, "tutor_jane", name="Jane Tutor") == {"ok": True}
    assert sign_in(sam, acct, key, "student_sam", name="Sam Student") == {"ok": True}
    start_call(jane, "student_sam", "Homework")
    expect(screen(sam, "incoming")).to_be_visible()
    click(sam, "answer")
    wait_screen(jane, "ongoing")
    _audio_both_ways(jane.page, sam.page)
    jane.page.reload()
    assert sign_in(jane, acct, key, "tutor_jane", name="Jane Tutor") == {"ok": True}
    assert _resumed(jane)["role"] == "caller"
    wait_screen(jane, "ongoing")
    _audio_both_ways(jane.page, sam.page)
    click(sam, "hangup")
    expect(overlay(sam)).to_be_hidden()
    wait_overlay_hidden(jane)
    assert [e["status"] for e in events(jane, "callend")] == ["over"]
    assert Call.objects.get().end_reason == "user_hangup"
