"""A browser that refuses to play sound before a user gesture: "Tap to enable audio".

Headless Chromium plays sound without a gesture whatever ``--autoplay-policy`` says (seen with
Debian's Chromium: ``document-user-activation-required`` and ``user-gesture-required`` are
both ignored), so an init script gives these pages the policy Chrome applies to a site the
user has not interacted with, and iOS Safari to every page: ``play()`` (and the ``autoplay``
attribute) refuse with ``NotAllowedError`` until the page has had a real user activation
(a trusted pointer or key event: ``navigator.userActivation`` cannot serve, since Playwright's
``page.evaluate`` runs as a user gesture). Only the page's media elements are stubbed; the
pages are driven through ``page.evaluate``, and the tap is a real click.
"""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.harness import wait_for_audio
from tests.e2e.sdk import click, outcome, screen, sign_in, start_call

ENABLE = '[data-directcall-screens] [data-action="enable-audio"]'

AUTOPLAY_POLICY = """
(() => {
  let activated = false;
  for (const type of ["pointerdown", "mousedown", "keydown", "touchend"]) {
    window.addEventListener(type, (e) => { if (e.isTrusted) activated = true; }, true);
  }
  const refused = () => !activated;
  const play = HTMLMediaElement.prototype.play;
  HTMLMediaElement.prototype.play = function () {
    if (refused()) {
      return Promise.reject(new DOMException(
        "play() failed because the user didn't interact with the document first.",
        "NotAllowedError"));
    }
    return play.call(this);
  };
  const autoplay = Object.getOwnPropertyDescriptor(HTMLMediaElement.prototype, "autoplay");
  Object.defineProperty(HTMLMediaElement.prototype, "autoplay", {
    get() { return autoplay.get.call(this); },
    set(on) { autoplay.set.call(this, on && !refused()); },
    configurable: true,
  });
})();
"""


@pytest.fixture
def strict_user(new_user):
    """A browser user whose pages may play sound only after a user gesture."""

    def make(name: str):
        user = new_user(name, path=None)
        user.context.add_init_script(AUTOPLAY_POLICY)
        user.page.goto("/")
        return user

    return make


@pytest.fixture
def account(e2e_account):
    return e2e_account()


def test_a_refused_ringtone_shows_the_button_and_a_click_plays_it(strict_user, new_user, account):
    acct, key = account
    jane, sam = new_user("jane"), strict_user("sam")
    assert sign_in(jane, acct, key, "tutor_jane") == {"ok": True}
    assert sign_in(sam, acct, key, "student_sam") == {"ok": True}
    sam.page.evaluate(
        """() => { window.blocked = [];
                   window.dc.addEventListener('audioblocked', (e) => window.blocked.push(e.detail));
                 }"""
    )
    start_call(jane, "student_sam")
    expect(screen(sam, "incoming")).to_be_visible()
    button = sam.page.locator(ENABLE)
    expect(button).to_be_visible()
    expect(button).to_have_text("Tap to enable audio")
    assert sam.page.evaluate("() => window.dc.screens.audio.paused") is True
    assert sam.page.evaluate("() => window.blocked.map((d) => d.kind)") == ["ringtone"]
    button.click()
    expect(button).to_be_hidden()
    sam.page.wait_for_function("() => !window.dc.screens.audio.paused")
    # The tap made the page's user activation: answering and the call's audio need no other.
    click(sam, "answer")
    wait_for_audio(sam.page)
    sam.page.wait_for_function("() => !window.dc.current.media.audio.paused")
    expect(sam.page.locator(ENABLE)).to_be_hidden()
    click(sam, "hangup")
    assert outcome(jane) == {"resolved": "over"}


def test_refused_call_audio_shows_the_button_on_the_ongoing_screen(strict_user, new_user, account):
    acct, key = account
    # Jane never touches her page: her call is placed by script, so the callee's voice is refused.
    jane, sam = strict_user("jane"), new_user("sam")
    assert sign_in(jane, acct, key, "tutor_jane") == {"ok": True}
    assert sign_in(sam, acct, key, "student_sam") == {"ok": True}
    start_call(jane, "student_sam")
    click(sam, "answer")
    expect(screen(jane, "ongoing")).to_be_visible()
    wait_for_audio(jane.page)  # bytes arrive: the connection is fine, only playback is held
    button = jane.page.locator(ENABLE)
    expect(button).to_be_visible()
    assert jane.page.evaluate("() => window.dc.current.media.audio.paused") is True
    button.click()
    expect(button).to_be_hidden()
    jane.page.wait_for_function("() => !window.dc.current.media.audio.paused")
    jane.page.evaluate("() => window.dc.hangup()")
    assert outcome(jane) == {"resolved": "over"}
    jane.assert_no_errors()
