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
    raw_client,
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
    expect(slot(jane, "name")).to_have_text("Sam Student")
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


def test_a_browser_opened_as_another_closes_signs_in_when_its_hold_ends(new_user, account):
    """Jane closes one browser and opens another at once: the cuid is still reserved for
    the first (DEVICE_HOLD, 10 s), the refusal says when it ends, and the new page's
    ``initDirectCall`` waits it out and signs in, instead of rejecting
    ERR_ALREADY_SIGNEDIN and leaving her uncallable until a reload."""
    acct, key = account
    first = new_user("jane-laptop")
    assert sign_in(first, acct, key, "tutor_jane") == {"ok": True}
    first.page.close()  # the browser closed: its socket goes, its hold stays
    second = new_user("jane-desktop")
    refusals: list[str] = []
    second.page.on(
        "websocket",
        lambda ws: ws.on(
            "framereceived",
            lambda frame: refusals.append(frame) if "ERR_ALREADY_SIGNEDIN" in str(frame) else None,
        ),
    )
    assert sign_in(second, acct, key, "tutor_jane") == {"ok": True}
    assert refusals, "the first attempt should have met the hold"
    assert '"retry_after"' in str(refusals[0])
    sam = new_user("sam")
    assert sign_in(sam, acct, key, "student_sam") == {"ok": True}
    start_call(sam, "tutor_jane")
    expect(screen(second, "incoming")).to_be_visible()
    click(second, "decline")
    assert outcome(sam) == {"rejected": "declined"}


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


# -- init errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options,code",
    [
        ("undefined", "ERR_MISSING_INITPARAMETERS"),
        ("{apikey: 'a.b', cuid: 'tutor_jane', clevertap: null}", "ERR_MISSING_INITPARAMETERS"),
        ("{accountId: 'x', cuid: 'tutor_jane', clevertap: null}", "ERR_MISSING_INITPARAMETERS"),
        ("{accountId: 'x', apikey: 'a.b', clevertap: null}", "ERR_MISSING_INITPARAMETERS"),
        ("{accountId: 'x', apikey: 'a.b', cuid: 'tutor_jane'}", "ERR_MISSING_INITPARAMETERS"),
        (
            "{accountId: 'x', apikey: 'a.b', cuid: '91_8899555', clevertap: null}",
            "ERR_INVALID_INITPARAMETERS",
        ),
        (
            "{accountId: 'x', apikey: 'a.b', cuid: 'abc', clevertap: null}",
            "ERR_INVALID_INITPARAMETERS",
        ),
        (
            "{accountId: 'x', apikey: 'a.b', cuid: 'tutor_jane', name: 'ab', clevertap: null}",
            "ERR_INVALID_INITPARAMETERS",
        ),
        (
            "{accountId: 'x', apikey: 'a.b', cuid: 'tutor_jane', ringtone: 'javascript:x',"
            " clevertap: null}",
            "ERR_INVALID_INITPARAMETERS",
        ),
        (
            "{accountId: 'x', apikey: 'a.b', cuid: 'tutor_jane',"
            " clevertap: {getCleverTapID: () => 'g'}}",
            "ERR_MISSING_CT_ACCOUNTID",
        ),
        (
            "{accountId: 'x', apikey: 'a.b', cuid: 'tutor_jane',"
            " clevertap: {getAccountID: () => 'ACC', getCleverTapID: () => null}}",
            "ERR_MISSING_CT_ID",
        ),
        (
            "{accountId: 'nope', apikey: 'a.b', cuid: 'tutor_jane', clevertap: null}",
            "ERR_INVALID_CREDENTIALS",
        ),
    ],
)
def test_init_errors(new_user, options, code):
    from tests.e2e.sdk import init_raw

    user = new_user()
    result = init_raw(user, options)
    assert result["error"]["code"] == code and result["error"]["message"]


def test_init_errors_from_the_server(new_user, e2e_account):
    ct_account, ct_key = e2e_account(require_clevertap=True)
    inactive, inactive_key = e2e_account(is_active=False)
    user = new_user()
    assert sign_in(user, inactive, inactive_key, "tutor_jane")["error"]["code"] == (
        "ERR_INVALID_CREDENTIALS"
    )
    # The account requires CleverTap, and the page passed none.
    assert sign_in(user, ct_account, ct_key, "tutor_jane")["error"]["code"] == (
        "ERR_MISSING_CT_ACCOUNTID"
    )
    assert not Call.objects.exists()


# -- CleverTap ------------------------------------------------------------------------------------


def _load_real_clevertap(user, guid: str | None = None) -> None:
    """Serve the npm package clevertap-web-sdk to the page; nothing leaves 127.0.0.1.

    ``guid``: pretend CleverTap's servers assigned this id on an earlier visit (the SDK
    keeps it in localStorage as WZRK_G).
    """
    import os
    from pathlib import Path

    sdk = Path(
        os.environ.get("CLEVERTAP_SDK", ".cache/npm/node_modules/clevertap-web-sdk/clevertap.js")
    )
    if not sdk.is_file():
        pytest.fail(f"clevertap-web-sdk not found at {sdk}: run scripts/test.sh", pytrace=False)

    def only_loopback(route):
        host = route.request.url.split("/")[2].split(":")[0]
        if host == "127.0.0.1":
            route.continue_()
        else:
            route.abort()

    user.context.route("**/*", only_loopback)
    if guid:
        user.page.evaluate(
            "(g) => localStorage.setItem('WZRK_G', encodeURIComponent(JSON.stringify(g)))", guid
        )
    user.page.route(
        "**/test-assets/clevertap.js",
        lambda route: route.fulfill(path=str(sdk), content_type="application/javascript"),
    )
    user.page.add_script_tag(url="/test-assets/clevertap.js")
    user.page.evaluate("() => window.clevertap.init('TEST-R78-ZZK-955Z', 'eu1')")


def test_a_real_clevertap_instance_without_an_id_gives_missing_ct_id(new_user, account):
    acct, key = account
    user = new_user()
    _load_real_clevertap(user)
    assert user.page.evaluate("() => window.clevertap.getAccountID()") == "TEST-R78-ZZK-955Z"
    result = sign_in(user, acct, key, "tutor_jane", clevertap="real")
    assert result["error"]["code"] == "ERR_MISSING_CT_ID"


def test_a_real_clevertap_instance_is_accepted_once_it_has_an_id(new_user, e2e_account):
    acct, key = e2e_account(require_clevertap=True)
    user = new_user()
    guid = "a1b2c3d4e5f60718293a4b5c6d7e8f90"
    _load_real_clevertap(user, guid=guid)
    assert user.page.evaluate("() => window.clevertap.getCleverTapID()") == guid
    assert sign_in(user, acct, key, "tutor_jane", clevertap="real") == {"ok": True}
    from directcall.models import Registration

    registration = Registration.objects.get(account=acct, cuid="tutor_jane")
    assert (registration.ct_account_id, registration.ct_id) == ("TEST-R78-ZZK-955Z", guid)


def test_clevertap_events_are_pushed(new_user, account):
    acct, key = account
    jane, sam = new_user("jane"), new_user("sam")
    assert sign_in(jane, acct, key, "tutor_jane", clevertap="recorder") == {"ok": True}
    assert sign_in(sam, acct, key, "student_sam", clevertap="recorder") == {"ok": True}
    start_call(jane, "student_sam", "Tutor is calling")
    click(sam, "answer")
    wait_for_audio(jane.page)
    click(jane, "hangup")
    assert outcome(jane) == {"resolved": "over"}
    call_id = str(Call.objects.get().pk)
    sam.page.wait_for_function("() => window.ctEvents.length >= 2")
    jane_events = jane.page.evaluate("() => window.ctEvents")
    sam_events = sam.page.evaluate("() => window.ctEvents")
    assert [e[0] for e in jane_events] == ["DCOutgoing", "DCEnd"]
    assert [e[0] for e in sam_events] == ["DCIncoming", "DCEnd"]
    outgoing = jane_events[0][1]
    assert outgoing["dc_account_id"] == acct.account_id
    assert outgoing["ct_account_id"] == "CT-ACCOUNT-1" and outgoing["guid"] == "ct_guid_1"
    assert outgoing["call_id"] == call_id and outgoing["cuid"] == "tutor_jane"
    assert outgoing["context"] == "Tutor is calling" and outgoing["epoch"] > 1_600_000_000_000
    assert jane_events[1][1]["call_status"] == "over"
    assert sam_events[1][1]["cuid"] == "student_sam"


# -- microphone ----------------------------------------------------------------------------------


@pytest.fixture
def denying_browser(browser):
    """A second Chromium whose media prompt always says no."""
    from tests.e2e.harness import CHROMIUM_ARGS

    args = [a for a in CHROMIUM_ARGS if not a.startswith("--use-fake-ui-for-media-stream")]
    import os

    denying = browser.browser_type.launch(
        executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
        args=[*args, "--use-fake-ui-for-media-stream=deny"],
        headless=True,
    )
    yield denying
    denying.close()


def _user_in(browser_, e2e_server, name):
    from tests.e2e.harness import INIT_SCRIPT, BrowserUser

    context = browser_.new_context(base_url=e2e_server.url)
    context.add_init_script(INIT_SCRIPT)
    page = context.new_page()
    user = BrowserUser(name, context, page)
    user.watch(page)
    page.goto("/")
    return user


def test_microphone_denied_for_the_caller(denying_browser, e2e_server, account, new_user):
    acct, key = account
    jane = _user_in(denying_browser, e2e_server, "jane")
    sam = new_user("sam")
    assert sign_in(jane, acct, key, "tutor_jane") == {"ok": True}
    assert sign_in(sam, acct, key, "student_sam") == {"ok": True}
    start_call(jane, "student_sam")
    assert outcome(jane)["rejected"]["code"] == "ERR_MIC_UNAVAILABLE"
    expect(overlay(jane)).to_be_hidden()
    assert not Call.objects.exists()  # nothing rang
    jane.context.close()


def test_microphone_denied_for_the_callee_declines(denying_browser, e2e_server, account, new_user):
    acct, key = account
    sam = _user_in(denying_browser, e2e_server, "sam")
    jane = new_user("jane")
    assert sign_in(jane, acct, key, "tutor_jane") == {"ok": True}
    assert sign_in(sam, acct, key, "student_sam") == {"ok": True}
    start_call(jane, "student_sam")
    click(sam, "answer")
    assert outcome(jane) == {"rejected": "declined"}
    call = Call.objects.get()
    assert (call.status, call.end_reason) == ("declined", "user_media_failed")
    assert events(sam, "error")[0]["code"] == "ERR_MIC_UNAVAILABLE"
    sam.context.close()


# -- what the other side controls is inert -------------------------------------------------------


def test_html_in_name_and_context_shows_as_text(new_user, account, e2e_server):
    acct, key = account
    # A caller's picture reaches the callee only from an origin the account allows (issue
    # 13: the callee's browser loads it before answering); the pages' own origin signs in.
    acct.allowed_origins = f"{e2e_server.url}\nhttps://127.0.0.1:1"
    acct.save()
    payload_name = '<img src=x onerror="window.__xss=1">'
    payload_context = "<script>window.__xss=2</script><b>bold</b>"
    jane, sam = new_user("jane"), new_user("sam")
    assert sign_in(jane, acct, key, "tutor_jane", name=payload_name) == {"ok": True}
    assert sign_in(sam, acct, key, "student_sam") == {"ok": True}
    start_call(
        jane,
        "student_sam",
        payload_context,
        initiator_image='https://127.0.0.1:1/a.png?"><script>window.__xss=3</script>',
    )
    expect(screen(sam, "incoming")).to_be_visible()
    expect(slot(sam, "name")).to_have_text(payload_name)
    expect(slot(sam, "context")).to_have_text(payload_context)
    shadow_html = sam.page.evaluate(
        "() => document.querySelector('[data-directcall-screens]').shadowRoot.innerHTML"
    )
    assert shadow_html.count("<img") == 2  # the logo and the avatar of the template
    counts = sam.page.evaluate(
        """() => {
          const root = document.querySelector('[data-directcall-screens]').shadowRoot;
          // Scripts besides the screens' texts (JSON data, never run).
          const code = root.querySelectorAll(
            'script:not([type="application/json"][data-directcall-strings])');
          return [code.length, root.querySelectorAll('[onerror]').length,
                  root.querySelector('[data-slot="image"]').getAttribute('src')];
        }"""
    )
    # The URL arrives resolved by the caller's SDK (new URL(...).href), so percent-encoded.
    assert counts == [
        0,
        0,
        "https://127.0.0.1:1/a.png?%22%3E%3Cscript%3Ewindow.__xss=3%3C/script%3E",
    ]
    assert sam.page.evaluate("() => window.__xss") is None
    assert sam.page.locator("[data-directcall-screens] b").count() == 0
    click(sam, "decline")
    assert outcome(jane) == {"rejected": "declined"}


# -- connectivity ----------------------------------------------------------------------------------


def _bytes_received(user) -> int:
    from tests.e2e.harness import audio_stats

    return max((row["received"] for row in audio_stats(user.page)), default=0)


def test_an_answered_call_survives_a_signaling_drop(pair):
    jane, sam = pair
    start_call(jane, "student_sam")
    click(sam, "answer")
    wait_for_audio(jane.page)
    # The signaling socket drops (as on a network blip); media is peer-to-peer.
    jane.page.evaluate("() => window.dc.signaling.ws.close()")
    jane.page.wait_for_function(
        "() => window.dcEvents.some((e) => e[0] === 'connection' && e[1].state === 'up')"
    )
    expect(screen(jane, "ongoing")).to_be_visible()
    before = _bytes_received(jane)
    jane.page.wait_for_function(
        "(n) => (window.__audioStats || []).some((row) => row.received > n + 2000)", arg=before
    )
    # The call still works end to end after the reconnect.
    click(sam, "hangup")
    assert outcome(jane) == {"resolved": "over"}
    assert Call.objects.get().end_reason == "user_hangup"


def test_internet_lost_when_the_connection_does_not_come_back(pair):
    jane, sam = pair
    start_call(jane, "student_sam")
    click(sam, "answer")
    wait_for_audio(jane.page)
    # From now on jane's signaling cannot reconnect.
    jane.page.route_web_socket("**/ws/directcall/**", lambda ws: ws.close())
    jane.page.evaluate("() => window.dc.signaling.ws.close()")
    expect(slot(jane, "status")).to_have_text("Reconnecting…")
    limit = (timings.RECONNECT_GRACE + 8) * 1000
    assert outcome(jane, timeout_ms=limit)["rejected"]["code"] == "ERR_INTERNET_LOST"
    expect(overlay(jane)).to_be_hidden()
    # The server ended the call for the other side after its grace period.
    expect(overlay(sam)).to_be_hidden(timeout=limit)
    call = Call.objects.get()
    assert (call.status, call.end_reason) == ("over", "connection_lost")
    assert [e["reason"] for e in events(sam, "callend")] == ["connection_lost"]


def test_a_notification_when_a_call_rings_in_a_hidden_tab(new_user, account):
    acct, key = account
    jane, sam = new_user("jane"), new_user("sam")
    # Record notifications, and make sam's tab hidden (headless pages are always visible).
    sam.page.evaluate(
        """() => {
          window.__notes = [];
          const Native = window.Notification;
          window.Notification = class extends Native {
            constructor(title, options) {
              super(title, options);
              window.__notes.push([title, options.body]);
            }
          };
          Object.defineProperty(document, 'hidden', { get: () => true });
        }"""
    )
    assert sign_in(jane, acct, key, "tutor_jane", name="Jane Tutor") == {"ok": True}
    assert sign_in(sam, acct, key, "student_sam") == {"ok": True}
    start_call(jane, "student_sam", "About <b>homework</b>")
    sam.page.wait_for_function("() => window.__notes.length === 1")
    assert sam.page.evaluate("() => window.__notes") == [
        ["Incoming call", "Jane Tutor: About <b>homework</b>"]
    ]


# -- media descriptions the browser cannot use -------------------------------------------------


def test_an_offer_the_browser_cannot_use_declines_with_an_error(e2e_server, account, new_user):
    acct, key = account
    sam = new_user("sam")
    assert sign_in(sam, acct, key, "student_sam") == {"ok": True}
    # The caller is no browser: it invites with an offer that is no SDP at all.
    with raw_client(e2e_server, acct, key, "tutor_jane") as jane:
        jane.send(
            type="invite", ref="1", receiver="student_sam", context="Homework", sdp="not an SDP"
        )
        jane.next("invited")
        expect(screen(sam, "incoming")).to_be_visible()
        click(sam, "answer")
        # Declined at once with a reason (before: stuck on "Connecting…" until missed).
        assert jane.next("state", status="declined")["reason"] == "user_media_failed"
    expect(overlay(sam)).to_be_hidden()
    assert [e["code"] for e in events(sam, "error")] == ["ERR_MEDIA_FAILED"]
    ends = [(e["status"], e["reason"]) for e in events(sam, "callend")]
    assert ends == [("declined", "user_media_failed")]
    call = Call.objects.get()
    assert (call.status, call.end_reason) == ("declined", "user_media_failed")
    sam.assert_no_errors()  # no unhandled rejection


def test_a_renegotiation_the_browser_cannot_use_is_an_error_not_the_end(pair):
    jane, sam = pair
    start_call(jane, "student_sam")
    click(sam, "answer")
    wait_for_audio(jane.page)
    wait_for_audio(sam.page)
    call_id = str(Call.objects.get().pk)
    send = """([id, type]) => window.dc.signaling.send(
        {type: "renegotiate", call_id: id, sdp_type: type, sdp: "not an SDP"})"""
    # Each page sends what its SDK never would: an ICE-restart offer, an answer, that are no SDP.
    jane.page.evaluate(send, [call_id, "offer"])
    sam.page.wait_for_function("() => window.dcEvents.some((e) => e[0] === 'error')")
    sam.page.evaluate(send, [call_id, "answer"])
    jane.page.wait_for_function("() => window.dcEvents.some((e) => e[0] === 'error')")
    for user in (jane, sam):
        assert [e["code"] for e in events(user, "error")] == ["ERR_MEDIA_FAILED"]
        assert "Renegotiation failed" in events(user, "error")[0]["message"]
    # Their media path was up and stays up: audio flows on, and the call ends normally.
    before = _bytes_received(sam)
    sam.page.wait_for_function(
        "(n) => (window.__audioStats || []).some((row) => row.received > n + 2000)", arg=before
    )
    expect(slot(sam, "status")).to_have_text("")
    click(sam, "hangup")
    assert outcome(jane) == {"resolved": "over"}
    assert Call.objects.get().end_reason == "user_hangup"
    jane.assert_no_errors()
    sam.assert_no_errors()


# -- the client's methods outside the screens ------------------------------------------------------


def test_hangup_called_directly_ends_an_answered_call(pair):
    jane, sam = pair
    start_call(jane, "student_sam")
    click(sam, "answer")
    wait_for_audio(jane.page)
    jane.page.evaluate("() => window.dc.hangup()")
    assert outcome(jane) == {"resolved": "over"}
    expect(overlay(jane)).to_be_hidden()
    expect(overlay(sam)).to_be_hidden()
    sam.page.wait_for_function("() => window.dcEvents.some((e) => e[0] === 'callend')")
    assert [(e["status"], e["reason"]) for e in events(sam, "callend")] == [("over", "user_hangup")]
    call = Call.objects.get()
    assert (call.status, call.end_reason) == ("over", "user_hangup")
    assert jane.page.evaluate("() => window.dc.activeCall") is None


def test_hangup_called_directly_cancels_a_ringing_call(pair):
    jane, sam = pair
    start_call(jane, "student_sam")
    expect(screen(sam, "incoming")).to_be_visible()
    jane.page.evaluate("() => window.dc.hangup()")
    assert outcome(jane) == {"rejected": "cancelled"}
    expect(overlay(sam)).to_be_hidden()


_COUNT_FRAMES = """() => {
  const ws = window.dc.signaling.ws;
  window.__framesSent = [];
  const send = ws.send.bind(ws);
  ws.send = (text) => { window.__framesSent.push(JSON.parse(text).type); send(text); };
}"""


def test_hangup_with_no_call_throws_nothing_and_sends_nothing(pair):
    jane, sam = pair
    jane.page.evaluate(_COUNT_FRAMES)
    assert jane.page.evaluate("() => { window.dc.hangup(); return window.dc.activeCall; }") is None
    # After a call has ended, too.
    start_call(jane, "student_sam")
    click(sam, "decline")
    assert outcome(jane) == {"rejected": "declined"}
    sent = jane.page.evaluate("() => window.__framesSent.length")
    jane.page.evaluate("() => window.dc.hangup()")
    # A ping may go out meanwhile; nothing about a call does.
    later = jane.page.evaluate("() => window.__framesSent")[sent:]
    assert [t for t in later if t != "ping"] == []
    jane.assert_no_errors()


def test_call_while_a_call_is_incoming_is_refused(pair):
    jane, sam = pair
    start_call(jane, "student_sam")
    expect(screen(sam, "incoming")).to_be_visible()
    refused = sam.page.evaluate(
        "() => window.dc.call('tutor_jane', 'calling back').then((v) => ({v}), (e) => ({e}))"
    )
    assert refused["e"]["code"] == "ERR_OUTGOING_CALL_IN_PROGRESS" and refused["e"]["message"]
    # The incoming call is untouched and can be answered.
    expect(screen(sam, "incoming")).to_be_visible()
    click(sam, "answer")
    wait_for_audio(sam.page)
    click(sam, "hangup")
    assert outcome(jane) == {"resolved": "over"}
    assert Call.objects.count() == 1


def test_init_twice_in_one_page_is_already_signed_in_until_logout(pair, account):
    acct, key = account
    jane, sam = pair
    second = sign_in(jane, acct, key, "tutor_jane")
    assert second["error"]["code"] == "ERR_ALREADY_SIGNEDIN"
    assert "already signed in" in second["error"]["message"]
    # The same for another cuid: one client per page.
    assert sign_in(jane, acct, key, "tutor_other")["error"]["code"] == "ERR_ALREADY_SIGNEDIN"
    # The first client is untouched: it is called and shows one screen.
    start_call(sam, "tutor_jane")
    expect(screen(jane, "incoming")).to_be_visible()
    assert jane.page.locator("[data-directcall-screens]").count() == 1
    click(jane, "decline")
    assert outcome(sam) == {"rejected": "declined"}
    # After logout() the page may sign in again.
    jane.page.evaluate("() => window.dc.logout()")
    assert sign_in(jane, acct, key, "tutor_jane") == {"ok": True}
    start_call(sam, "tutor_jane")
    expect(screen(jane, "incoming")).to_be_visible()


# -- URLs relative to the page, and errors that are {code, message} -------------------------------


def test_relative_ringtone_and_images_resolve_against_the_page(new_user, account):
    acct, key = account
    jane, sam = new_user("jane"), new_user("sam")
    assert sign_in(jane, acct, key, "tutor_jane") == {"ok": True}
    ringtone = "/static/directcall/audio/ringback.wav"
    assert sign_in(sam, acct, key, "student_sam", ringtone=ringtone) == {"ok": True}
    assert sam.page.evaluate("() => window.dc.config.ringtone") == jane.page.evaluate(
        "(path) => new URL(path, location.href).href", ringtone
    )
    start_call(jane, "student_sam", initiator_image="pictures/jane.png")
    expect(screen(sam, "incoming")).to_be_visible()
    src = sam.page.evaluate(
        """() => document.querySelector('[data-directcall-screens]').shadowRoot
                 .querySelector('[data-slot="image"]').getAttribute('src')"""
    )
    assert src == jane.page.evaluate("() => new URL('pictures/jane.png', location.href).href")
    assert Call.objects.get().caller_image == src
    click(sam, "decline")
    assert outcome(jane) == {"rejected": "declined"}


def test_screens_that_cannot_be_loaded_reject_init_with_a_code(new_user, account):
    acct, key = account
    user = new_user()
    # The SDK asks for the page's language (v1/screens?lang=en): any query string.
    screens = "**/directcall/v1/screens*"
    user.page.route(screens, lambda route: route.abort())
    error = sign_in(user, acct, key, "tutor_jane")["error"]
    assert sorted(error) == ["code", "message"]
    assert error["code"] == "ERR_INTERNET_LOST" and "screens" in error["message"]
    user.page.unroute(screens)
    user.page.route(screens, lambda route: route.fulfill(status=404, body="no"))
    error = sign_in(user, acct, key, "tutor_jane")["error"]
    assert error["code"] == "ERR_INTERNET_LOST" and "HTTP 404" in error["message"]


def test_a_websocket_the_browser_refuses_is_a_code_not_a_dom_exception(new_user, account):
    import json

    acct, key = account
    user = new_user()

    def bad_socket_url(route):
        # The real init answer, with a socket URL no browser opens (the constructor throws).
        response = route.fetch()
        body = response.json()
        body["websocketUrl"] = "ftp://127.0.0.1/ws/"
        route.fulfill(response=response, body=json.dumps(body))

    user.page.route("**/directcall/v1/init", bad_socket_url)
    error = sign_in(user, acct, key, "tutor_jane")["error"]
    assert sorted(error) == ["code", "message"]
    assert error["code"] == "ERR_INTERNET_LOST"
    assert "SyntaxError" in error["message"]
