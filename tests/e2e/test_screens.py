"""The call screens for everyone, in real Chromium (issue 15): pictures, the account's logo
and colours, every shipped language (right to left in Arabic), and a whole call made with
the keyboard alone, each change said in the screens' live region.

Screenshots go to ``tests/artifacts/`` (and ``docs/images/`` with
``DIRECTCALL_UPDATE_SCREENSHOTS=1``): ``call-<screen>-<language>.png``.
"""

from __future__ import annotations

import json
import time

import pytest
from django.utils import translation
from playwright.sync_api import expect

from directcall.screen_strings import SCREEN_STRINGS
from tests.e2e import test_integration
from tests.e2e.sdk import click, outcome, overlay, screen, sign_in, slot, start_call
from tests.e2e.test_integration import VIEWPORT, assert_clean, log_in, results, save_screenshot

# The demo's logged-in people and their account (fixtures of test_integration).
session_account = test_integration.session_account
people = test_integration.people

# Pictures from an origin the account allows (issue 13: the callee's browser loads the
# caller's picture before answering, so only allowed origins' pictures reach it).
IMAGES = "https://img.example"
AVATAR = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 96 96">'
    '<rect width="96" height="96" fill="{fill}"/>'
    '<circle cx="48" cy="38" r="18" fill="#fff" opacity=".9"/>'
    '<rect x="18" y="62" width="60" height="34" rx="17" fill="#fff" opacity=".9"/></svg>'
)
LOGO = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 160 40">'
    '<rect width="160" height="40" rx="8" fill="#ffd166"/>'
    '<text x="80" y="27" font-family="sans-serif" font-size="18" text-anchor="middle" '
    'fill="#0b3d5c">TutorCo</text></svg>'
)
# Every picture of the screens has loaded.
PICTURES_LOADED = """() => [...document.querySelector('[data-directcall-screens]').shadowRoot
  .querySelectorAll('img:not([hidden])')].every((img) => img.complete && img.naturalWidth)"""


def serve_images(user) -> None:
    """Answer the picture URLs in this browser context (no network)."""

    def fulfil(route) -> None:
        name = route.request.url.rsplit("/", 1)[-1]
        if name == "logo.svg":
            body = LOGO
        else:
            body = AVATAR.format(fill="#2e7d32" if name.startswith("jane") else "#6a1b9a")
        route.fulfill(status=200, content_type="image/svg+xml", body=body)

    user.context.route(f"{IMAGES}/**", fulfil)


def t(language: str, key: str, **params: str) -> str:
    """A screen text as the server's catalog gives it in ``language``."""
    with translation.override(language):
        return str(SCREEN_STRINGS[key]) % params if params else str(SCREEN_STRINGS[key])


def shown(language: str, text: str) -> str:
    """A template text (button) in ``language``."""
    with translation.override(language):
        return translation.pgettext("call screen", text)


def card(user):
    return user.page.locator("[data-directcall-screens] .dc-card")


def live(user):
    return user.page.locator('[data-directcall-screens] [data-slot="live"]')


@pytest.fixture
def branded(e2e_account, e2e_server):
    account, key = e2e_account(
        logo_url=f"{IMAGES}/logo.svg",
        background_color="#0b3d5c",
        text_color="#f5f7fa",
        allowed_origins=f"{e2e_server.url}\n{IMAGES}",
    )
    return account, key


@pytest.mark.parametrize("language", ["es", "hi", "ar"])
def test_the_screens_in_each_shipped_language(new_user, branded, language):
    account, key = branded
    jane, sam = new_user("jane"), new_user("sam")
    for user in (jane, sam):
        user.page.set_viewport_size(VIEWPORT)
        serve_images(user)
    # One through the init option, the other through the page's <html lang>.
    sam.page.evaluate("(lang) => { document.documentElement.lang = lang; }", language)
    assert sign_in(jane, account, key, "tutor_jane", name="Jane Tutor", language=language) == {
        "ok": True
    }
    assert sign_in(sam, account, key, "student_sam", name="Sam Student") == {"ok": True}
    start_call(
        jane,
        "student_sam",
        "Homework, chapter 3",
        receiver_image=f"{IMAGES}/sam.svg",
        initiator_image=f"{IMAGES}/jane.svg",
    )
    # Outgoing: the receiver's picture, the logo, "Ringing…" in the language.
    expect(screen(jane, "outgoing")).to_be_visible()
    expect(slot(jane, "status")).to_have_text(t(language, "ringing"))
    expect(slot(jane, "image")).to_have_attribute("src", f"{IMAGES}/sam.svg")
    expect(slot(jane, "logo")).to_be_visible()
    expect(jane.page.locator('[data-directcall-screens] [data-action="cancel"]')).to_have_text(
        shown(language, "Cancel")
    )
    # Incoming: the caller's picture, Answer / Decline labelled in the language.
    expect(screen(sam, "incoming")).to_be_visible()
    expect(slot(sam, "image")).to_have_attribute("src", f"{IMAGES}/jane.svg")
    answer = sam.page.locator('[data-directcall-screens] [data-action="answer"]')
    expect(answer).to_have_text(shown(language, "Answer"))
    expect(answer).to_have_attribute("aria-label", t(language, "answerLabel", name="Jane Tutor"))
    for user in (jane, sam):
        expect(overlay(user)).to_have_attribute("lang", language)
        expect(card(user)).to_have_css("background-color", "rgb(11, 61, 92)")
        # Wait for the pictures, then photograph.
        user.page.wait_for_function(PICTURES_LOADED)
    save_screenshot(jane.page, f"call-outgoing-{language}")
    save_screenshot(sam.page, f"call-incoming-{language}")
    click(sam, "answer")
    for user in (jane, sam):
        expect(screen(user, "ongoing")).to_be_visible()
    expect(slot(sam, "timer")).to_have_text("00:01", timeout=5000)
    expect(sam.page.locator('[data-directcall-screens] [data-action="mute"]')).to_have_text(
        shown(language, "Mute")
    )
    direction = card(sam).evaluate("(el) => getComputedStyle(el).direction")
    box = card(sam).bounding_box()
    if language == "ar":
        # Right to left: the text, and the docked card in the bottom-left corner.
        assert direction == "rtl"
        assert box["x"] + box["width"] / 2 < VIEWPORT["width"] / 2
        # The digits of the timer still read left to right.
        assert slot(sam, "timer").evaluate("(el) => getComputedStyle(el).direction") == "ltr"
    else:
        assert direction == "ltr"
        assert box["x"] + box["width"] / 2 > VIEWPORT["width"] / 2
    save_screenshot(sam.page, f"call-ongoing-{language}")
    click(jane, "hangup")
    for user in (jane, sam):
        expect(overlay(user)).to_be_hidden()
        user.assert_no_errors()


def focused(user) -> dict:
    """What has the keyboard focus: the page's element, or the element in the screens."""
    return user.page.evaluate(
        """() => {
          const host = document.querySelector('[data-directcall-screens]');
          const inner = host && host.shadowRoot.activeElement;
          const el = inner || document.activeElement;
          return { inScreens: !!inner, action: el.dataset.action || null,
                   card: el.classList.contains('dc-card'), label: el.getAttribute('aria-label'),
                   text: el.textContent.trim(), call: el.dataset.directcallCall || null };
        }"""
    )


def tab_to(user, predicate, limit: int = 15) -> dict:
    """Press Tab until ``predicate(focused)`` holds; return what has the focus."""
    for _ in range(limit):
        user.page.keyboard.press("Tab")
        now = focused(user)
        if predicate(now):
            return now
    raise AssertionError(f"{user.name}: Tab never reached it; focus on {focused(user)}")


def test_a_whole_call_with_the_keyboard_alone(new_user, e2e_server, session_account, people):
    sam, _ = log_in(new_user, "sam")
    jane, _ = log_in(new_user, "jane")
    jane_cuid = f"user_{people['jane'].pk}"
    button = sam.page.locator(f'[data-directcall-call="{jane_cuid}"]')
    expect(button).to_have_attribute("data-directcall-presence", "online")

    # Sam tabs to Jane's call button and presses Enter.
    sam.page.locator("body").focus()
    tab_to(sam, lambda f: f["call"] == jane_cuid)
    sam.page.keyboard.press("Enter")
    expect(screen(sam, "outgoing")).to_be_visible()
    # Focus is on the card (the dialog's name and status are read), not on Cancel.
    assert focused(sam)["card"] and focused(sam)["inScreens"]
    expect(live(sam)).to_have_text("Calling Jane Tutor")
    cancel = tab_to(sam, lambda f: f["action"] == "cancel")
    assert cancel["label"] == "Cancel the call to Jane Tutor"

    # Jane: the incoming screen takes the focus; Tab stays inside it (a modal dialog).
    expect(screen(jane, "incoming")).to_be_visible()
    expect(live(jane)).to_have_text("Incoming call from Sam Student")
    assert focused(jane)["card"]
    assert tab_to(jane, lambda f: f["action"] == "answer")["label"] == (
        "Answer the call from Sam Student"
    )
    assert tab_to(jane, lambda f: f["action"] == "decline")["label"] == (
        "Decline the call from Sam Student"
    )
    jane.page.keyboard.press("Tab")
    assert focused(jane)["action"] == "answer"  # wrapped around, still in the dialog
    jane.page.keyboard.press("Enter")

    # Both ongoing; the focus moved from the ringing screen's buttons to the docked card.
    for user in (sam, jane):
        expect(screen(user, "ongoing")).to_be_visible()
    expect(live(jane)).to_have_text("Call connected with Sam Student")
    assert focused(jane)["card"] and focused(sam)["card"]
    mute = tab_to(jane, lambda f: f["action"] == "mute")
    assert (mute["text"], mute["label"]) == ("Mute", "Mute the microphone")
    jane.page.keyboard.press("Space")
    expect(live(jane)).to_have_text("Microphone muted")
    assert (focused(jane)["text"], focused(jane)["label"]) == ("Unmute", "Unmute the microphone")
    jane.page.keyboard.press("Space")
    expect(live(jane)).to_have_text("Microphone on")
    hangup = tab_to(jane, lambda f: f["action"] == "hangup")
    assert hangup["label"] == "Hang up the call with Sam Student"
    jane.page.keyboard.press("Enter")

    # Over: both told ("Call ended" on the screen for a moment, the call's length stays), and
    # Sam's focus is back on the button he called from once the screen has closed by itself.
    expect(slot(sam, "status")).to_have_text("Call ended")
    expect(slot(sam, "timer")).to_be_visible()
    for user in (sam, jane):
        expect(overlay(user)).to_be_hidden()
        expect(live(user)).to_have_text("Call ended")
    assert focused(sam)["call"] == jane_cuid
    for user in (sam, jane):
        assert_clean(user)


# -- how a call ended ---------------------------------------------------------------------------


def call_from_button(user, cuid: str):
    """Press the page's call button for ``cuid`` (focus on it first, as a user would)."""
    button = user.page.locator(f'[data-directcall-call="{cuid}"]')
    expect(button).to_have_attribute("data-directcall-presence", "online")
    button.focus()
    user.page.keyboard.press("Enter")
    return button


def test_the_caller_sees_declined_then_the_screen_closes_by_itself(
    new_user, e2e_server, session_account, people
):
    sam, _ = log_in(new_user, "sam")
    jane, _ = log_in(new_user, "jane")
    jane_cuid = f"user_{people['jane'].pk}"
    call_from_button(sam, jane_cuid)
    expect(screen(jane, "incoming")).to_be_visible()
    expect(slot(sam, "status")).to_have_text("Ringing…")
    click(jane, "decline")
    expect(overlay(jane)).to_be_hidden()  # her own decline: nothing to tell her

    # Sam is told, on the screen and in the live region; only Close is left.
    expect(slot(sam, "status")).to_have_text("Declined")
    shown_at = time.monotonic()
    expect(live(sam)).to_have_text("Declined")
    expect(slot(sam, "name")).to_have_text("Jane Tutor")
    expect(screen(sam, "ended")).to_be_visible()
    expect(screen(sam, "outgoing")).to_be_hidden()
    close = sam.page.locator('[data-directcall-screens] [data-action="close"]')
    expect(close).to_have_text("Close")
    assert focused(sam)["card"] and focused(sam)["inScreens"]
    # Tab stays in the (still modal) screen: the Close button.
    assert tab_to(sam, lambda f: f["action"] == "close", limit=3)["text"] == "Close"

    # Then it closes by itself after a few seconds, and the focus is back on the button.
    expect(overlay(sam)).to_be_hidden(timeout=6000)
    lasted = time.monotonic() - shown_at
    assert 1.5 < lasted < 5, lasted
    assert focused(sam)["call"] == jane_cuid
    assert results(sam)[0]["detail"] == {"error": "declined"}
    for user in (sam, jane):
        assert_clean(user)


def test_the_ended_screen_closes_with_escape_and_gives_way_to_a_new_call(
    new_user, e2e_server, session_account, people
):
    sam, _ = log_in(new_user, "sam")
    jane, _ = log_in(new_user, "jane")
    jane_cuid, sam_cuid = f"user_{people['jane'].pk}", f"user_{people['sam'].pk}"

    # Escape closes it at once.
    call_from_button(sam, jane_cuid)
    expect(screen(jane, "incoming")).to_be_visible()
    click(jane, "decline")
    expect(slot(sam, "status")).to_have_text("Declined")
    sam.page.keyboard.press("Escape")
    expect(overlay(sam)).to_be_hidden(timeout=1000)
    assert focused(sam)["call"] == jane_cuid

    # A call that comes in while Sam reads "Declined" replaces it at once, and stays.
    call_from_button(sam, jane_cuid)
    expect(screen(jane, "incoming")).to_be_visible()
    click(jane, "decline")
    expect(slot(sam, "status")).to_have_text("Declined")
    call_from_button(jane, sam_cuid)
    expect(screen(sam, "incoming")).to_be_visible(timeout=2000)
    expect(screen(sam, "ended")).to_be_hidden()
    expect(slot(sam, "status")).to_have_text("Incoming call")
    sam.page.wait_for_timeout(3000)  # past the pause of the screen it replaced
    expect(screen(sam, "incoming")).to_be_visible()
    expect(live(sam)).to_have_text("Incoming call from Jane Tutor")
    click(sam, "decline")
    expect(overlay(sam)).to_be_hidden()
    expect(slot(jane, "status")).to_have_text("Declined")
    expect(overlay(jane)).to_be_hidden(timeout=6000)
    for user in (sam, jane):
        assert_clean(user)


RATE_LIMITED = "Your last call to Sam was not answered: you may call them again in 30 s."


def refuse_invites(user) -> None:
    """Between the page and the server: every ``invite`` is answered ERR_RATE_LIMITED (the
    ring backoff's answer; the test server runs without the backoff)."""

    def route(ws) -> None:
        server = ws.connect_to_server()

        def from_page(message) -> None:
            frame = json.loads(message) if isinstance(message, str) else {}
            if frame.get("type") != "invite":
                server.send(message)
                return
            refusal = {
                "type": "error",
                "ref": frame.get("ref"),
                "in_reply_to": "invite",
                "code": "ERR_RATE_LIMITED",
                "message": RATE_LIMITED,
            }
            ws.send(json.dumps(refusal))

        ws.on_message(from_page)

    user.page.route_web_socket("**/ws/directcall/**", route)


def test_a_refused_call_shows_the_servers_message(new_user, e2e_account, e2e_server):
    account, key = e2e_account(allowed_origins=e2e_server.url)
    jane = new_user("jane")
    refuse_invites(jane)
    assert sign_in(jane, account, key, "tutor_jane", name="Jane Tutor") == {"ok": True}
    start_call(jane, "student_sam")
    # Not a flash of "Calling…": the reason stays on the screen and is said.
    expect(slot(jane, "status")).to_have_text(RATE_LIMITED)
    expect(live(jane)).to_have_text(RATE_LIMITED)
    expect(screen(jane, "ended")).to_be_visible()
    assert outcome(jane)["rejected"] == {"code": "ERR_RATE_LIMITED", "message": RATE_LIMITED}
    jane.page.wait_for_timeout(1000)
    expect(slot(jane, "status")).to_have_text(RATE_LIMITED)  # still there a second later
    click(jane, "close")
    expect(overlay(jane)).to_be_hidden(timeout=1000)
    jane.assert_no_errors()


def test_the_outgoing_screen_shows_the_buttons_name_from_the_start(
    new_user, e2e_server, session_account, people
):
    sam, _ = log_in(new_user, "sam")
    jane, _ = log_in(new_user, "jane")
    jane_cuid = f"user_{people['jane'].pk}"
    # A call button written by hand (with the page's nonce) that names its receiver.
    sam.page.evaluate(
        """(cuid) => {
          const nonce = JSON.parse(document.getElementById("directcall-buttons").textContent).nonce;
          const button = document.createElement("button");
          button.type = "button";
          button.id = "named-call";
          button.textContent = "Call";
          Object.assign(button.dataset, { directcallCall: cuid, directcallContext: "Hi",
                                          directcallNonce: nonce, directcallName: "Jane Tutor" });
          document.body.prepend(button);
          // Every text the screens' name slot is given, in order.
          const name = document.querySelector("[data-directcall-screens]").shadowRoot
            .querySelector('[data-slot="name"]');
          window.__names = [];
          new MutationObserver((records) => {
            for (const record of records) {
              for (const node of record.addedNodes) window.__names.push(node.textContent);
            }
          }).observe(name, { childList: true });
        }""",
        jane_cuid,
    )
    sam.page.locator("#named-call").click()
    expect(screen(jane, "incoming")).to_be_visible()
    expect(slot(sam, "status")).to_have_text("Ringing…")
    names = sam.page.evaluate("() => window.__names")
    assert names[0] == "Jane Tutor" and jane_cuid not in names, names
    click(sam, "cancel")
    expect(overlay(sam)).to_be_hidden(timeout=1000)  # one's own cancel: closed at once
    expect(overlay(jane)).to_be_hidden()
    for user in (sam, jane):
        assert_clean(user)
