"""The browser SDK in Firefox: calls between Firefox and Chromium, reloads, and init's refusals.

Firefox is Debian's ``firefox-esr`` (``FIREFOX`` overrides the path), driven over WebDriver
BiDi with puppeteer-core through ``tests/e2e/firefox/driver.mjs``; Chromium is the other
tests' Playwright one. Each user has a browser context of their own. These tests run on the
recommended production server, uvicorn with directcall's WebSocket protocol
(``directcall.uvicorn_ws``), so that Firefox's WebSocket client (its extensions, its
closing handshake on a reload) meets it; the other browser tests run on daphne.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import expect

import tests.e2e.test_sdk as chromium_tests
from directcall.models import Call, CallStatus
from tests.conftest import needs_redis_server
from tests.e2e import test_cross_origin as cross_origin
from tests.e2e.conftest import _USERS, restart, serve
from tests.e2e.firefox_driver import (
    Firefox,
    FirefoxUser,
    wait_overlay_hidden,
    wait_screen,
)
from tests.e2e.firefox_driver import click as ff_click
from tests.e2e.harness import (
    BrowserUser,
    E2EServer,
    audio_stats,
    wait_for_audio,
)
from tests.e2e.sdk import (
    click,
    events,
    init_raw,
    outcome,
    overlay,
    screen,
    sign_in,
    start_call,
)
from tests.e2e.test_tabs import audio_keeps_flowing, wait_event

# Firefox's own autoplay blocking: audible media refused ("block audio", default 1), and
# allowed only from a user input's handler (blocking_policy 2): puppeteer's evaluate gives
# the page a user activation (WebDriver BiDi userActivation: true), which under the default
# policy (sticky activation) let the reloaded page play without a tap.
STRICT_AUTOPLAY = {"media.autoplay.default": 1, "media.autoplay.blocking_policy": 2}

# The call screens' "Tap to enable audio" button is shown.
ENABLE_SHOWN = """(() => {
  const root = document.querySelector('[data-directcall-screens]')?.shadowRoot;
  const button = root && root.querySelector('[data-action="enable-audio"]');
  return !!button && !button.hidden && button.offsetParent !== null;
})()"""

# The init refusals of tests/e2e/test_sdk.py, run again in Firefox.
INIT_ERROR_CASES: list[tuple[str, str]] = chromium_tests.test_init_errors.pytestmark[0].args[1]


@pytest.fixture(scope="module")
def e2e_server_process(e2e_server_process: E2EServer) -> Iterator[E2EServer]:
    """This module's server: uvicorn with directcall's WebSocket protocol, instead of the
    package's daphne (stopped meanwhile: on the in-memory layer each process has its own
    presence, and daphne's sweep would end the calls of a party it does not see)."""
    daphne = e2e_server_process
    daphne.stop()
    try:
        yield from serve("uvicorn-lean")
    finally:
        restart(daphne)


@pytest.fixture(scope="module")
def firefox() -> Iterator[Firefox]:
    executable = os.environ.get("FIREFOX", "/usr/bin/firefox-esr")
    if not os.access(executable, os.X_OK):
        pytest.fail(
            f"Firefox not found at {executable}: run scripts/test.sh (installs Debian's "
            "firefox-esr), `apt-get install firefox-esr`, or set FIREFOX=/path/to/firefox",
            pytrace=False,
        )
    browser = Firefox(executable)
    yield browser
    browser.close()


@pytest.fixture
def ff_user(request, firefox, new_user, e2e_server) -> Iterator[Callable[..., FirefoxUser]]:
    """Factory: ``ff_user(name, path="/") -> FirefoxUser``, a fresh Firefox context and page.

    Its console is shown with the Chromium users' when the test fails (conftest's report).
    """
    users: list[FirefoxUser] = []
    report = request.node.stash.setdefault(_USERS, [])

    def make(name: str, path: str | None = "/") -> FirefoxUser:
        user = FirefoxUser(f"{name} (Firefox)", firefox.new_page(e2e_server.url))
        users.append(user)
        report.append(user)
        if path is not None:
            user.page.goto(path)
        return user

    yield make
    for user in users:
        try:
            user.page.close()
        except Exception as exc:  # a crashed browser must not hide the test's own failure
            print(f"closing the Firefox page of {user.name} failed: {exc}")


@pytest.fixture
def account(e2e_account):
    return e2e_account()


def _totals(page) -> tuple[int, int]:
    """The largest audio byte counts (received, sent) over the page's peer connections."""
    rows = audio_stats(page)
    return (
        max((row["received"] for row in rows), default=0),
        max((row["sent"] for row in rows), default=0),
    )


def _wait_for_growth(page, by: int = 3000, timeout_ms: int = 15_000) -> None:
    """Wait until the page both received and sent ``by`` more audio bytes than now."""
    received, sent = _totals(page)
    page.wait_for_function(
        """([r, s]) => (window.__audioStats || []).some(
             (row) => row.received >= r && row.sent >= s)""",
        arg=[received + by, sent + by],
        timeout=timeout_ms,
    )


def _audio_both_ways(*pages) -> None:
    """Audio flows, and keeps flowing, in and out of every page."""
    for page in pages:
        wait_for_audio(page)
    for page in pages:
        _wait_for_growth(page)


def test_chromium_calls_firefox(new_user, ff_user, account, firefox):
    acct, key = account
    jane = new_user("jane")
    sam = ff_user("sam")
    assert firefox.version.startswith("firefox/")
    assert sign_in(jane, acct, key, "tutor_jane", name="Jane Tutor") == {"ok": True}
    assert sign_in(sam, acct, key, "student_sam", name="Sam Student") == {"ok": True}
    start_call(jane, "student_sam", "Tutor is calling about homework")
    expect(screen(jane, "outgoing")).to_be_visible()
    wait_screen(sam, "incoming")
    shown = sam.page.evaluate(
        """() => {
          const root = document.querySelector('[data-directcall-screens]').shadowRoot;
          const text = (slot) => root.querySelector(`[data-slot="${slot}"]`).textContent;
          return [text('name'), text('context')];
        }"""
    )
    assert shown == ["Jane Tutor", "Tutor is calling about homework"]
    ff_click(sam, "answer")
    wait_screen(sam, "ongoing")
    expect(screen(jane, "ongoing")).to_be_visible()
    _audio_both_ways(jane.page, sam.page)
    ff_click(sam, "hangup")
    wait_overlay_hidden(sam)
    expect(overlay(jane)).to_be_hidden()
    assert outcome(jane) == {"resolved": "over"}
    assert [e["status"] for e in events(sam, "callend")] == ["over"]
    call = Call.objects.get()
    assert (call.status, call.end_reason) == (CallStatus.OVER, "user_hangup")
    assert (call.caller.cuid, call.callee.cuid) == ("tutor_jane", "student_sam")
    # Firefox measured the call too (issue 15): its summary came with its hangup.
    firefox_side = call.quality["callee"]
    assert firefox_side["samples"] > 0 and firefox_side["codec"] == "opus", firefox_side
    assert firefox_side["mosAvg"] > 4 and firefox_side["rttAvg"] is not None, firefox_side
    assert firefox_side["relayed"] is False, firefox_side
    jane.assert_no_errors()
    sam.assert_no_errors()


def _sam_at_firefox_and_jane(new_user, ff_user, account) -> tuple[FirefoxUser, BrowserUser]:
    """Sam Student in Firefox and Jane Tutor in Chromium, both signed in."""
    acct, key = account
    sam = ff_user("sam")
    jane = new_user("jane")
    assert sign_in(sam, acct, key, "student_sam", name="Sam Student") == {"ok": True}
    assert sign_in(jane, acct, key, "tutor_jane", name="Jane Tutor") == {"ok": True}
    return sam, jane


def test_firefox_calls_chromium(new_user, ff_user, account):
    sam, jane = _sam_at_firefox_and_jane(new_user, ff_user, account)
    start_call(sam, "tutor_jane", "Student is calling")
    wait_screen(sam, "outgoing")
    expect(screen(jane, "incoming")).to_be_visible()
    click(jane, "answer")
    expect(screen(jane, "ongoing")).to_be_visible()
    wait_screen(sam, "ongoing")
    _audio_both_ways(sam.page, jane.page)
    # Mute in Firefox: the call goes on (the peer connection stays up).
    sam.page.evaluate("() => window.dc.mute()")
    sam.page.evaluate("() => window.dc.unmute()")
    _wait_for_growth(jane.page)
    click(jane, "hangup")
    assert outcome(sam) == {"resolved": "over"}
    wait_overlay_hidden(sam)
    expect(overlay(jane)).to_be_hidden()
    call = Call.objects.get()
    assert (call.status, call.end_reason) == (CallStatus.OVER, "user_hangup")
    assert (call.caller.cuid, call.callee.cuid) == ("student_sam", "tutor_jane")
    sam.assert_no_errors()
    jane.assert_no_errors()


def test_firefox_declines_and_cancels(new_user, ff_user, account):
    acct, key = account
    sam = ff_user("sam")
    jane = new_user("jane")
    assert sign_in(sam, acct, key, "student_sam") == {"ok": True}
    assert sign_in(jane, acct, key, "tutor_jane") == {"ok": True}
    start_call(jane, "student_sam")
    wait_screen(sam, "incoming")
    ff_click(sam, "decline")
    assert outcome(jane) == {"rejected": "declined"}
    wait_overlay_hidden(sam)
    start_call(sam, "tutor_jane")
    expect(screen(jane, "incoming")).to_be_visible()
    ff_click(sam, "cancel")
    assert outcome(sam) == {"rejected": "cancelled"}
    expect(overlay(jane)).to_be_hidden()
    assert sorted(Call.objects.values_list("status", flat=True)) == ["cancelled", "declined"]


# -- the "ended" screen: how an unanswered call ended, for a few seconds ------------------------

# The "ended" screen, once it shows: its texts, the buttons one can see, and when (the page's
# clock, read by the polling itself: no driver round trip in it). Null until then.
ENDED_SHOWN = """() => {
  const root = document.querySelector('[data-directcall-screens]')?.shadowRoot;
  const overlay = root && root.querySelector('.dc-overlay');
  const actions = root && root.querySelector('[data-screen="ended"]');
  if (!overlay || overlay.hidden || !actions || actions.hidden) return null;
  const text = (slot) => root.querySelector(`[data-slot="${slot}"]`).textContent;
  const shown = (el) => !el.hidden && el.offsetParent !== null;
  return {
    at: performance.now(),
    status: text('status'),
    name: text('name'),
    buttons: [...root.querySelectorAll('[data-action]')].filter(shown)
      .map((button) => [button.dataset.action, button.textContent.trim()]),
  };
}"""

# The screens have closed: when (the page's clock).
OVERLAY_HIDDEN_AT = """() => {
  const overlay = document.querySelector('[data-directcall-screens]')
    .shadowRoot.querySelector('.dc-overlay');
  return overlay.hidden ? performance.now() : null;
}"""

# What the screens' live region says now.
LIVE_TEXT = """() => document.querySelector('[data-directcall-screens]')
  .shadowRoot.querySelector('[data-slot="live"]').textContent"""


def _wait_ended(user: FirefoxUser) -> dict:
    """Wait until the "ended" screen shows; what it shows (``ENDED_SHOWN``)."""
    return user.page.wait_for_function(ENDED_SHOWN).json_value()


def _wait_said(user: FirefoxUser, text: str) -> None:
    """Wait until the live region says something; it says ``text``."""
    said = user.page.wait_for_function(f"() => ({LIVE_TEXT})() || null").json_value()
    assert said == text, said


def _wait_closed_by_itself(user: FirefoxUser, ended: dict) -> None:
    """Wait until the screens close, untouched, after showing the "ended" screen for a
    while (ENDED_SCREEN_MS, 2.5 s), not at once."""
    hidden_at = user.page.wait_for_function(OVERLAY_HIDDEN_AT, timeout=15000).json_value()
    lasted = (hidden_at - ended["at"]) / 1000
    assert lasted > 1.5, lasted


def test_a_firefox_caller_sees_declined_then_the_screen_closes(new_user, ff_user, account):
    sam, jane = _sam_at_firefox_and_jane(new_user, ff_user, account)

    # Declined in Chromium: Sam's Firefox says so, with only Close, and closes by itself.
    start_call(sam, "tutor_jane", "Student is calling")
    wait_screen(sam, "outgoing")
    expect(screen(jane, "incoming")).to_be_visible()
    click(jane, "decline")
    expect(overlay(jane)).to_be_hidden()  # her own decline: nothing to tell her
    ended = _wait_ended(sam)
    assert (ended["status"], ended["name"]) == ("Declined", "Jane Tutor"), ended
    assert ended["buttons"] == [["close", "Close"]], ended
    _wait_said(sam, "Declined")
    assert outcome(sam) == {"rejected": "declined"}
    _wait_closed_by_itself(sam, ended)

    # Declined again: Close (a real click in Firefox) closes it at once.
    start_call(sam, "tutor_jane", "Student is calling")
    expect(screen(jane, "incoming")).to_be_visible()
    click(jane, "decline")
    ended = _wait_ended(sam)
    assert ended["status"] == "Declined"
    ff_click(sam, "close")
    hidden_at = sam.page.wait_for_function(OVERLAY_HIDDEN_AT).json_value()
    # By the page's clock, before the 2.5 s it would have shown by itself.
    assert hidden_at - ended["at"] < 2500, hidden_at - ended["at"]
    assert outcome(sam) == {"rejected": "declined"}
    assert Call.objects.filter(status=CallStatus.DECLINED).count() == 2
    sam.assert_no_errors()
    jane.assert_no_errors()


def test_a_firefox_caller_sees_busy(new_user, ff_user, account):
    sam, jane = _sam_at_firefox_and_jane(new_user, ff_user, account)
    gil = new_user("gil")
    assert sign_in(gil, *account, "grocer_gil") == {"ok": True}
    # Jane is on the phone with Gil (answered: no ring timeout runs out meanwhile), so
    # Sam's call finds her busy.
    start_call(gil, "tutor_jane", "Grocer is calling")
    expect(screen(jane, "incoming")).to_be_visible()
    click(jane, "answer")
    expect(screen(gil, "ongoing")).to_be_visible()
    start_call(sam, "tutor_jane", "Student is calling")
    ended = _wait_ended(sam)
    assert ended["status"] == "Busy", ended
    assert ended["buttons"] == [["close", "Close"]], ended
    assert outcome(sam) == {"rejected": "busy"}
    _wait_said(sam, "Busy")
    _wait_closed_by_itself(sam, ended)
    # Jane's call with Gil went on all along.
    expect(screen(jane, "ongoing")).to_be_visible()
    assert sorted(Call.objects.values_list("status", flat=True)) == ["answered", "busy"]
    click(gil, "hangup")
    expect(overlay(jane)).to_be_hidden()
    sam.assert_no_errors()
    jane.assert_no_errors()
    gil.assert_no_errors()


def test_init_errors_in_firefox(ff_user, e2e_account):
    user = ff_user("anon")
    assert len(INIT_ERROR_CASES) >= 10
    wrong = []
    for options, code in INIT_ERROR_CASES:
        result = init_raw(user, options)
        error = result.get("error") or {}
        if error.get("code") != code or not error.get("message"):
            wrong.append((options, code, result))
    assert not wrong, wrong
    # The server's refusals: an inactive account, and an account that requires CleverTap.
    ct_account, ct_key = e2e_account(require_clevertap=True)
    inactive, inactive_key = e2e_account(is_active=False)
    refused = sign_in(user, inactive, inactive_key, "tutor_jane")
    assert refused["error"]["code"] == "ERR_INVALID_CREDENTIALS"
    refused = sign_in(user, ct_account, ct_key, "tutor_jane")
    assert refused["error"]["code"] == "ERR_MISSING_CT_ACCOUNTID"


def test_the_same_cuid_in_another_browser_is_already_signed_in(new_user, ff_user, account):
    acct, key = account
    jane = new_user("jane")
    assert sign_in(jane, acct, key, "tutor_jane") == {"ok": True}
    other = ff_user("jane-firefox")
    assert sign_in(other, acct, key, "tutor_jane")["error"]["code"] == "ERR_ALREADY_SIGNEDIN"
    # The first browser is still the one that is called.
    sam = ff_user("sam")
    assert sign_in(sam, acct, key, "student_sam") == {"ok": True}
    start_call(sam, "tutor_jane")
    expect(screen(jane, "incoming")).to_be_visible()
    click(jane, "decline")
    assert outcome(sam) == {"rejected": "declined"}


def test_a_firefox_callee_reloads_and_the_call_comes_back(new_user, ff_user, account):
    acct, key = account
    jane = new_user("jane")
    sam = ff_user("sam")
    assert sign_in(jane, acct, key, "tutor_jane", name="Jane Tutor") == {"ok": True}
    assert sign_in(sam, acct, key, "student_sam", name="Sam Student") == {"ok": True}
    start_call(jane, "student_sam", "Homework")
    wait_screen(sam, "incoming")
    ff_click(sam, "answer")
    wait_screen(sam, "ongoing")
    expect(screen(jane, "ongoing")).to_be_visible()
    _audio_both_ways(jane.page, sam.page)
    call_id = str(Call.objects.get().pk)
    sam.page.reload()
    # The reloaded page signs in again as it did first; the tab's call key brings the call back.
    assert sign_in(sam, acct, key, "student_sam", name="Sam Student") == {"ok": True}
    resumed = wait_event(sam, "resumed")
    assert resumed["role"] == "callee" and resumed["peer"]["cuid"] == "tutor_jane"
    assert resumed["callId"] == call_id
    wait_screen(sam, "ongoing")
    active = sam.page.evaluate("() => window.dc.activeCall")
    assert active["status"] == "answered" and active["role"] == "callee"
    # New peer connections in Firefox (counters from zero); audio grows again on both sides.
    wait_for_audio(sam.page)
    audio_keeps_flowing(sam)
    audio_keeps_flowing(jane)
    # Jane's call() is the same promise, still pending until the call ends.
    assert jane.page.evaluate("() => window.outcome") is None
    click(jane, "hangup")
    assert outcome(jane) == {"resolved": "over"}
    expect(overlay(jane)).to_be_hidden()
    wait_overlay_hidden(sam)
    assert [e["status"] for e in events(sam, "callend")] == ["over"]
    call = Call.objects.get()
    assert (call.status, call.end_reason) == (CallStatus.OVER, "user_hangup")
    jane.assert_no_errors()
    sam.assert_no_errors()


def test_a_firefox_caller_reloads_and_the_call_comes_back(new_user, ff_user, account):
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
    assert wait_event(jane, "resumed")["role"] == "caller"
    wait_screen(jane, "ongoing")
    _audio_both_ways(jane.page, sam.page)
    click(sam, "hangup")
    expect(overlay(sam)).to_be_hidden()
    wait_overlay_hidden(jane)
    assert [e["status"] for e in events(jane, "callend")] == ["over"]
    assert Call.objects.get().end_reason == "user_hangup"


def test_a_reloaded_firefox_callee_taps_to_enable_audio(
    request, new_user, account, e2e_server, monkeypatch
):
    """Firefox refusing sound before a gesture (``media.autoplay.default: 1``, its "block
    audio" setting): after a reload, the call's audio is held back until "Tap to enable
    audio" is clicked."""
    acct, key = account
    monkeypatch.setenv("FIREFOX_PREFS", json.dumps(STRICT_AUTOPLAY))
    strict = Firefox(os.environ.get("FIREFOX", "/usr/bin/firefox-esr"))
    try:
        jane = new_user("jane")
        sam = FirefoxUser("sam (Firefox, sound after a gesture)", strict.new_page(e2e_server.url))
        request.node.stash.setdefault(_USERS, []).append(sam)
        sam.page.goto("/")
        assert sign_in(jane, acct, key, "tutor_jane", name="Jane Tutor") == {"ok": True}
        assert sign_in(sam, acct, key, "student_sam", name="Sam Student") == {"ok": True}
        start_call(jane, "student_sam", "Homework")
        wait_screen(sam, "incoming")
        ff_click(sam, "answer")
        wait_screen(sam, "ongoing")
        _audio_both_ways(jane.page, sam.page)
        sam.page.reload()
        assert sign_in(sam, acct, key, "student_sam", name="Sam Student") == {"ok": True}
        wait_event(sam, "resumed")
        wait_screen(sam, "ongoing")
        wait_for_audio(sam.page)  # bytes arrive: only playback is held back
        sam.page.wait_for_function(f"() => {ENABLE_SHOWN}")
        assert sam.page.evaluate("() => window.dc.current.media.audio.paused") is True
        assert [e["kind"] for e in events(sam, "audioblocked")] == ["remote"]
        ff_click(sam, "enable-audio")
        sam.page.wait_for_function(f"() => !({ENABLE_SHOWN})")
        sam.page.wait_for_function("() => !window.dc.current.media.audio.paused")
        audio_keeps_flowing(sam)
        click(jane, "hangup")
        assert outcome(jane) == {"resolved": "over"}
        wait_overlay_hidden(sam)
        sam.assert_no_errors()
    finally:
        strict.close()


# -- a page on another origin that loads while the server's Redis restarts --------------------

spa = cross_origin.spa  # the fixture: a server of the other origin

# The init requests' answers, as the page's code sees them: a status, or "threw" when the
# request failed as a network error (as a refused CORS preflight makes it).
_RECORD_INIT_ANSWERS = """() => {
  const original = window.fetch;
  window.initAnswers = [];
  window.fetch = async (input, init) => {
    if (!String(input.url || input).includes('/v1/init')) return original(input, init);
    try {
      const response = await original(input, init);
      window.initAnswers.push(response.status);
      return response;
    } catch (error) {
      window.initAnswers.push('threw');
      throw error;
    }
  };
}"""


@needs_redis_server()
def test_a_firefox_page_that_loads_while_redis_restarts_signs_in_once_it_is_back(
    tmp_path, firefox, spa
):
    """The Chromium test of test_cross_origin.py, in Firefox: with the server's Redis
    down as the SPA's page calls initDirectCall, Firefox's preflight is answered, the
    page reads the 503 (not a network error), and the sign-in goes through once Redis is
    back."""
    with cross_origin.outage_site(tmp_path, spa, "ffoutage") as (redis_server, site, server):
        page = firefox.new_page(spa.url)
        try:
            page.goto("/")
            page.evaluate(_RECORD_INIT_ANSWERS)
            redis_server.kill()
            page.evaluate(cross_origin._START_SIGN_IN, cross_origin.outage_options(site, server))
            page.wait_for_function("() => window.initAnswers.length > 0")
            redis_server.start()
            page.wait_for_function("() => window.signedIn !== undefined", timeout=30_000)
            assert page.evaluate("() => window.signedIn") == {"ok": True}, server.log_tail()
            answers = page.evaluate("() => window.initAnswers")
            assert answers[0] == 503 and answers[-1] == 200, answers
            page.evaluate("() => window.dc.logout()")
        finally:
            page.close()
