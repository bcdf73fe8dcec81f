"""Tabs, reloads and page navigation in real Chromium (issue 12).

Two pages of one browser context share ``localStorage``, like two tabs of one browser: they
are one device (``directcall.deviceKey``). Each page has its own ``sessionStorage``, which a
reload keeps, like a tab. Audio is counted from ``getStats()`` of every peer connection a
page made (``window.__pcs``, the harness's init script); after a reload the page's counters
start again from zero.
"""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from directcall.models import RINGING_STATUSES, Call, CallStatus
from tests.e2e import timings
from tests.e2e.harness import BrowserUser, audio_stats, wait_for_audio
from tests.e2e.sdk import click, events, outcome, overlay, screen, sign_in, slot, start_call
from tests.e2e.test_integration import call_button, log_in, people, session_account  # noqa: F401

# The server's grace for a page that said it is leaving (a reload, a link, a closed tab).
PAGE_GRACE = timings.PAGE_GRACE


@pytest.fixture
def account(e2e_account):
    return e2e_account()


def open_tab(user: BrowserUser, name: str, path: str = "/") -> BrowserUser:
    """Another tab of ``user``'s browser: a new page of the same context (same localStorage).

    Its console errors are collected in ``user.errors`` (the context watches every page).
    """
    page = user.context.new_page()
    page.goto(path)
    return BrowserUser(name, user.context, page)


def audio_keeps_flowing(tab: BrowserUser, min_bytes: int = 2000, timeout_ms: int = 15000) -> None:
    """Wait until one of the page's peer connections received and sent ``min_bytes`` more
    than when this was called (a connection made after the call counts from zero)."""
    before = {row["index"]: row for row in audio_stats(tab.page)}
    tab.page.wait_for_function(
        """([before, min]) => (window.__audioStats || []).some((row) => {
             const was = before[row.index] || { received: 0, sent: 0 };
             return row.received >= was.received + min && row.sent >= was.sent + min;
           })""",
        arg=[{str(k): v for k, v in before.items()}, min_bytes],
        timeout=timeout_ms,
        polling=100,
    )


def wait_event(tab: BrowserUser, kind: str, timeout_ms: int = 15000) -> dict:
    """The first ``kind`` event the page's client fired (waits for it)."""
    tab.page.wait_for_function(
        "(kind) => (window.dcEvents || []).some((e) => e[0] === kind)", arg=kind, timeout=timeout_ms
    )
    return events(tab, kind)[0]


def answered_call(jane: BrowserUser, sam: BrowserUser) -> None:
    """Jane calls Sam, Sam answers on his screen, audio flows both ways."""
    start_call(jane, "student_sam", "Homework")
    click(sam, "answer")
    expect(screen(jane, "ongoing")).to_be_visible()
    wait_for_audio(jane.page)
    wait_for_audio(sam.page)


@pytest.fixture
def pair(new_user, account):
    acct, key = account
    jane, sam = new_user("jane"), new_user("sam")
    assert sign_in(jane, acct, key, "tutor_jane", name="Jane Tutor") == {"ok": True}
    assert sign_in(sam, acct, key, "student_sam", name="Sam Student") == {"ok": True}
    return jane, sam


# -- tabs ------------------------------------------------------------------------------------


def test_new_tabs_during_an_answered_call_leave_it_alone(pair, account):
    acct, key = account
    jane, sam = pair
    answered_call(jane, sam)
    tabs = []
    for n in (2, 3):
        tab = open_tab(sam, f"sam-tab{n}")
        # Signed in as the same cuid on the same device: no ERR_ALREADY_SIGNEDIN, no takeover.
        assert sign_in(tab, acct, key, "student_sam", name="Sam Student") == {"ok": True}
        assert tab.page.evaluate("() => window.dc.activeCall") is None
        tabs.append(tab)
    # The call goes on in the tab that answered it: audio keeps flowing both ways.
    audio_keeps_flowing(sam)
    audio_keeps_flowing(jane)
    expect(screen(sam, "ongoing")).to_be_visible()
    expect(slot(jane, "status")).to_have_text("")
    assert sam.page.evaluate("() => window.dc.activeCall.status") == "answered"
    for tab in tabs:
        expect(overlay(tab)).to_be_hidden()
    # Closing a new tab touches nothing either.
    tabs[0].page.close()
    audio_keeps_flowing(jane)
    click(sam, "hangup")
    assert outcome(jane) == {"resolved": "over"}
    assert Call.objects.get().end_reason == "user_hangup"
    # The other tabs saw nothing of it.
    assert events(tabs[1], "callend") == []
    sam.assert_no_errors()


def test_an_incoming_call_rings_in_every_tab_and_one_answers(pair, account):
    acct, key = account
    jane, sam = pair
    sam2 = open_tab(sam, "sam-tab2")
    assert sign_in(sam2, acct, key, "student_sam") == {"ok": True}
    start_call(jane, "student_sam", "Homework")
    expect(screen(sam, "incoming")).to_be_visible()
    expect(screen(sam2, "incoming")).to_be_visible()
    # A third tab opened while it rings is signed in and rings too.
    sam3 = open_tab(sam, "sam-tab3")
    assert sign_in(sam3, acct, key, "student_sam") == {"ok": True}
    expect(screen(sam3, "incoming")).to_be_visible()
    click(sam2, "answer")
    expect(screen(sam2, "ongoing")).to_be_visible()
    # The others stop at once, hide their screens and say why.
    for tab in (sam, sam3):
        expect(overlay(tab)).to_be_hidden()
        end = wait_event(tab, "callend")
        assert (end["status"], end["reason"]) == ("answered_elsewhere", "answered_elsewhere")
        assert tab.page.evaluate("() => window.dc.activeCall") is None
        assert tab.page.evaluate("() => window.dc.screens.audio") is None  # the ringtone stopped
    wait_for_audio(sam2.page)
    wait_for_audio(jane.page)
    # A tab opened during the answered call is signed in; the call goes on.
    sam4 = open_tab(sam, "sam-tab4")
    assert sign_in(sam4, acct, key, "student_sam") == {"ok": True}
    audio_keeps_flowing(sam2)
    audio_keeps_flowing(jane)
    # The tab that answered holds the call: hanging up there ends it for Jane.
    click(sam2, "hangup")
    assert outcome(jane) == {"resolved": "over"}
    call = Call.objects.get()
    assert (call.status, call.end_reason) == (CallStatus.OVER, "user_hangup")
    sam.assert_no_errors()


def test_a_call_declined_in_one_tab_ends_in_all(pair, account):
    acct, key = account
    jane, sam = pair
    sam2 = open_tab(sam, "sam-tab2")
    assert sign_in(sam2, acct, key, "student_sam") == {"ok": True}
    start_call(jane, "student_sam")
    expect(screen(sam2, "incoming")).to_be_visible()
    click(sam, "decline")
    assert outcome(jane) == {"rejected": "declined"}
    expect(overlay(sam2)).to_be_hidden()
    assert [e["status"] for e in [wait_event(sam2, "callend")]] == ["declined"]


def test_a_call_cancelled_or_missed_ends_in_all_tabs(pair, account):
    acct, key = account
    jane, sam = pair
    sam2 = open_tab(sam, "sam-tab2")
    assert sign_in(sam2, acct, key, "student_sam") == {"ok": True}
    start_call(jane, "student_sam")
    expect(screen(sam2, "incoming")).to_be_visible()
    jane.page.evaluate("() => window.dc.hangup()")
    assert outcome(jane) == {"rejected": "cancelled"}
    for tab in (sam, sam2):
        expect(overlay(tab)).to_be_hidden()
    start_call(jane, "student_sam")
    expect(screen(sam2, "incoming")).to_be_visible()
    assert outcome(jane, timeout_ms=(timings.RING_TIMEOUT + 5) * 1000) == {"rejected": "missed"}
    for tab in (sam, sam2):
        expect(overlay(tab)).to_be_hidden()
        assert [e["status"] for e in events(tab, "callend")] == ["cancelled", "missed"]


def test_one_call_per_cuid_across_tabs(pair, account):
    acct, key = account
    jane, sam = pair
    jane2 = open_tab(jane, "jane-tab2")
    assert sign_in(jane2, acct, key, "tutor_jane") == {"ok": True}
    answered_call(jane, sam)
    refused = jane2.page.evaluate(
        "() => window.dc.call('student_sam', 'again').then((v) => ({v}), (e) => ({e}))"
    )
    assert refused["e"]["code"] == "ERR_OUTGOING_CALL_IN_PROGRESS"
    audio_keeps_flowing(jane)
    click(jane, "hangup")
    assert outcome(jane) == {"resolved": "over"}


def test_a_copy_of_the_tab_holding_a_call_does_not_take_it(pair, account):
    """``window.open(location.href)`` keeping the opener (like "Duplicate tab") copies the
    tab's sessionStorage, call record and key included, while the page holding the call
    lives on: the copy signs in without the call, the original keeps its audio."""
    acct, key = account
    jane, sam = pair
    answered_call(jane, sam)
    call_id = str(Call.objects.get().pk)
    with sam.context.expect_page() as info:
        sam.page.evaluate("() => { window.open(location.href); }")
    copy = BrowserUser("sam-copy", sam.context, info.value)
    copy.page.wait_for_load_state()
    copied = "() => JSON.parse(sessionStorage.getItem('directcall.call') || 'null')"
    assert copy.page.evaluate(copied)["call_id"] == call_id  # the key came along
    assert sign_in(copy, acct, key, "student_sam", name="Sam Student") == {"ok": True}
    # Signed in without the call, and the copied record is forgotten.
    assert copy.page.evaluate("() => window.dc.activeCall") is None
    assert copy.page.evaluate(copied) is None
    # The original tab keeps the call: audio keeps flowing both ways on the same connections.
    audio_keeps_flowing(sam)
    audio_keeps_flowing(jane)
    pcs = "() => (window.__pcs || []).map((pc) => pc.connectionState)"
    assert jane.page.evaluate(pcs) == ["connected"]
    assert sam.page.evaluate(pcs) == ["connected"]
    assert copy.page.evaluate(pcs) == []
    assert events(copy, "resumed") == []
    expect(overlay(copy)).to_be_hidden()
    assert sam.page.evaluate("() => window.dc.activeCall.status") == "answered"
    assert sam.page.evaluate(copied)["call_id"] == call_id
    click(sam, "hangup")
    assert outcome(jane) == {"resolved": "over"}
    assert Call.objects.get().end_reason == "user_hangup"


def test_a_notification_only_when_every_tab_is_hidden(pair, account):
    """A call rings in every tab; a hidden tab shows a notification only when no tab of the
    device shows the call visibly, and then one tab of them shows it (one per call)."""
    acct, key = account
    jane, sam = pair
    sam2 = open_tab(sam, "sam-tab2")
    record = """() => {
      window.__notes = [];
      const Native = window.Notification;
      window.Notification = class extends Native {
        constructor(title, options) { super(title, options); window.__notes.push(options.tag); }
      };
    }"""
    hide = "() => Object.defineProperty(document, 'hidden', { get: () => true })"
    # The tab decided (call.notified), or showed a notification at once (as before issue 12's fix).
    decided = """() => window.__notes.length > 0
      || (window.dc.current !== null && typeof window.dc.current.notified === 'boolean')"""
    for tab in (sam, sam2):
        tab.page.evaluate(record)
    sam2.page.evaluate(hide)
    assert sign_in(sam2, acct, key, "student_sam") == {"ok": True}
    # Sam's first tab is visible and shows the incoming screen: the hidden tab stays quiet.
    start_call(jane, "student_sam")
    expect(screen(sam, "incoming")).to_be_visible()
    sam2.page.wait_for_function(decided)
    assert sam2.page.evaluate("() => window.__notes") == []
    assert sam2.page.evaluate("() => window.dc.current.notified") is False
    click(sam, "answer")
    assert wait_event(sam2, "callend")["status"] == "answered_elsewhere"
    assert sam2.page.evaluate("() => window.__notes") == []
    assert sam.page.evaluate("() => window.__notes") == []
    click(sam, "hangup")
    assert outcome(jane) == {"resolved": "over"}
    # Both tabs hidden: one notification for the call, from one of them.
    sam.page.evaluate(hide)
    jane.page.evaluate("() => { window.outcome = undefined; }")
    start_call(jane, "student_sam")
    for tab in (sam, sam2):
        tab.page.wait_for_function(decided)
    call_id = str(Call.objects.get(status__in=RINGING_STATUSES).pk)
    shown = sam.page.evaluate("() => window.__notes") + sam2.page.evaluate("() => window.__notes")
    assert shown == [f"directcall-{call_id}"]
    click(jane, "cancel")
    assert outcome(jane) == {"rejected": "cancelled"}


# -- a reload during an answered call -----------------------------------------------------------


def test_the_callee_reloads_and_the_call_comes_back(pair, account):
    acct, key = account
    jane, sam = pair
    answered_call(jane, sam)
    answered_at = Call.objects.get().answered_at
    sam.page.reload()
    started = time.monotonic()
    assert sign_in(sam, acct, key, "student_sam", name="Sam Student") == {"ok": True}
    resumed = wait_event(sam, "resumed")
    assert resumed["role"] == "callee" and resumed["peer"]["cuid"] == "tutor_jane"
    assert resumed["callId"] == str(Call.objects.get().pk)
    # The ongoing screen, its timer counting from the answer, not from the reload.
    expect(screen(sam, "ongoing")).to_be_visible()
    expect(slot(sam, "name")).to_have_text("Jane Tutor")
    shown = sam.page.evaluate("() => window.dc.current.answeredAt")
    assert abs(shown / 1000 - answered_at.timestamp()) < 1.5
    # Audio both ways again, from new peer connections.
    wait_for_audio(sam.page)
    audio_keeps_flowing(jane)
    print(f"reload → audio both ways: {time.monotonic() - started:.1f} s")
    expect(slot(jane, "status")).to_have_text("")
    expect(slot(sam, "status")).to_have_text("")
    # Jane's call() is the same promise, still pending; it resolves when the call ends.
    assert jane.page.evaluate("() => window.outcome") is None
    sam.page.evaluate("() => window.dc.hangup()")
    assert outcome(jane) == {"resolved": "over"}
    expect(overlay(sam)).to_be_hidden()
    call = Call.objects.get()
    assert (call.status, call.end_reason) == (CallStatus.OVER, "user_hangup")
    assert sam.page.evaluate("() => sessionStorage.getItem('directcall.call')") is None


def test_the_caller_reloads_and_the_call_comes_back(pair, account):
    acct, key = account
    jane, sam = pair
    answered_call(jane, sam)
    jane.page.reload()
    assert sign_in(jane, acct, key, "tutor_jane", name="Jane Tutor") == {"ok": True}
    resumed = wait_event(jane, "resumed")
    assert resumed["role"] == "caller" and resumed["peer"]["cuid"] == "student_sam"
    assert jane.page.evaluate("() => window.dc.activeCall.status") == "answered"
    expect(screen(jane, "ongoing")).to_be_visible()
    wait_for_audio(jane.page)
    audio_keeps_flowing(sam)
    # The reloaded page has no call() promise; the end is a callend event on both sides.
    click(sam, "hangup")
    assert wait_event(jane, "callend")["status"] == "over"
    assert wait_event(sam, "callend")["status"] == "over"
    expect(overlay(jane)).to_be_hidden()
    assert Call.objects.get().end_reason == "user_hangup"


def test_reloading_a_tab_that_does_not_hold_the_call_leaves_it_alone(pair, account):
    """Sam's second tab reloads (and later closes) during the call his first tab answered:
    it signs in again without the call, and the call's audio goes on."""
    acct, key = account
    jane, sam = pair
    sam2 = open_tab(sam, "sam-tab2")
    assert sign_in(sam2, acct, key, "student_sam") == {"ok": True}
    answered_call(jane, sam)
    sam2.page.reload()
    assert sign_in(sam2, acct, key, "student_sam") == {"ok": True}
    assert sam2.page.evaluate("() => window.dc.activeCall") is None
    audio_keeps_flowing(sam)
    audio_keeps_flowing(jane)
    assert jane.page.evaluate("() => (window.__pcs || []).length") == 1  # never replaced
    assert events(sam2, "resumed") == []
    assert events(sam, "callend") == []
    sam2.page.close()
    audio_keeps_flowing(jane)
    expect(slot(jane, "status")).to_have_text("")
    click(sam, "hangup")
    assert outcome(jane) == {"resolved": "over"}
    assert Call.objects.get().end_reason == "user_hangup"


def test_both_reload_at_once_and_the_call_comes_back(pair, account):
    acct, key = account
    jane, sam = pair
    answered_call(jane, sam)
    jane.page.reload()
    sam.page.reload()
    assert sign_in(sam, acct, key, "student_sam") == {"ok": True}
    assert sign_in(jane, acct, key, "tutor_jane") == {"ok": True}
    wait_for_audio(jane.page)
    wait_for_audio(sam.page)
    jane.page.evaluate("() => window.dc.hangup()")
    assert wait_event(sam, "callend")["status"] == "over"


def test_a_page_that_does_not_come_back_ends_the_call_promptly(pair):
    jane, sam = pair
    answered_call(jane, sam)
    # Sam leaves the site: the page is gone, nothing signs in again.
    left = time.monotonic()
    sam.page.goto("about:blank")
    expect(overlay(jane)).to_be_hidden(timeout=(PAGE_GRACE + 10) * 1000)
    took = time.monotonic() - left
    assert outcome(jane) == {"resolved": "over"}
    call = Call.objects.get()
    assert (call.status, call.end_reason) == (CallStatus.OVER, "connection_lost")
    assert [e["reason"] for e in events(jane, "callend")] == ["connection_lost"]
    # Promptly: the page grace (it said it was leaving), not the network's reconnect grace.
    assert took < PAGE_GRACE + 4, f"ended {took:.1f} s after the page left"


def test_a_closed_tab_ends_its_call_promptly(pair):
    jane, sam = pair
    answered_call(jane, sam)
    left = time.monotonic()
    sam.page.close(run_before_unload=True)
    assert outcome(jane, timeout_ms=(PAGE_GRACE + 10) * 1000) == {"resolved": "over"}
    assert time.monotonic() - left < PAGE_GRACE + 4
    assert Call.objects.get().end_reason == "connection_lost"


# -- navigation to another page of the site -------------------------------------------------------


def test_following_a_link_mid_call_keeps_the_call(new_user, e2e_server, session_account, people):  # noqa: F811
    sam, _ = log_in(new_user, "sam")
    jane, _ = log_in(new_user, "jane")
    call_button(sam, people["jane"]).click()
    click(jane, "answer")
    expect(screen(sam, "ongoing")).to_be_visible()
    wait_for_audio(sam.page)
    wait_for_audio(jane.page)
    # Sam follows the demo's link to the home page, which signs in from {% directcall_session %}.
    with sam.page.expect_navigation():
        sam.page.get_by_role("link", name="directcall").click()
    expect(sam.page).to_have_url(f"{e2e_server.url}/")
    sam.page.wait_for_function("() => window.DirectCall && window.DirectCall.client")
    resumed = sam.page.evaluate(
        """() => window.DirectCall.client.then((c) => new Promise((resolve) => {
             if (c.activeCall) return resolve(c.activeCall);
             c.addEventListener('resumed', () => resolve(c.activeCall), { once: true });
           }))"""
    )
    assert resumed["status"] == "answered" and resumed["role"] == "caller"
    expect(screen(sam, "ongoing")).to_be_visible()
    expect(slot(sam, "name")).to_have_text("Jane Tutor")
    wait_for_audio(sam.page)
    audio_keeps_flowing(jane)
    click(jane, "hangup")
    expect(overlay(sam)).to_be_hidden()
    call = Call.objects.get()
    assert (call.status, call.end_reason) == (CallStatus.OVER, "user_hangup")
    sam.assert_no_errors()
    jane.assert_no_errors()


def test_each_clevertap_event_is_pushed_by_one_tab(new_user, account):
    """Both tabs ring and both end when the caller cancels; DCIncoming and DCEnd are pushed
    once for the device (Web Locks + localStorage), not once per tab."""
    acct, key = account
    jane, sam = new_user("jane"), new_user("sam")
    sam2 = open_tab(sam, "sam-tab2")
    assert sign_in(jane, acct, key, "tutor_jane", clevertap="recorder") == {"ok": True}
    for tab in (sam, sam2):
        assert sign_in(tab, acct, key, "student_sam", clevertap="recorder") == {"ok": True}
    start_call(jane, "student_sam", "Homework")
    for tab in (sam, sam2):
        expect(screen(tab, "incoming")).to_be_visible()
    click(jane, "cancel")
    assert outcome(jane) == {"rejected": "cancelled"}
    for tab in (sam, sam2):
        assert wait_event(tab, "callend")["status"] == "cancelled"
    # Whichever tab reports notes it in the shared localStorage, then pushes.
    sam.page.wait_for_function(
        """() => ["DCIncoming", "DCEnd"].every((name) => (
             localStorage.getItem("directcall.reported") || "").includes(`student_sam:${name}:`))"""
    )
    pushed = lambda tab: tab.page.evaluate("() => window.ctEvents.map((e) => e[0])")  # noqa: E731
    both = sorted(pushed(sam) + pushed(sam2))
    assert both == ["DCEnd", "DCIncoming"], both
    assert pushed(jane) == ["DCOutgoing", "DCEnd"]
    sam.assert_no_errors()
