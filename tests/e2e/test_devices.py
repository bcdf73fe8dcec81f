"""Devices and feedback in Chromium (issue 15): Chromium's fake devices (three microphones,
three speakers) listed, chosen from the ongoing screen's picker during a call (the
microphone by replacing the sender's track, no renegotiation; the speaker with
setSinkId), the fall-back to the default microphone, and the rating prompt after the
call on an account that asks for feedback; the demo's "Test my setup" page."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from directcall.models import CallFeedback
from example_project.demo import ensure_demo_people
from tests.e2e import timings
from tests.e2e.harness import wait_for_audio
from tests.e2e.sdk import click, outcome, screen, sign_in, start_call
from tests.e2e.test_integration import log_in

SHADOW = "[data-directcall-screens]"

# What the call's one peer connection sends, and its description (to see it is not renegotiated).
_SENDING = """() => {
  const pcs = window.__pcs.filter((pc) => pc.connectionState !== "closed");
  const sender = pcs[0].getSenders().find((s) => s.track && s.track.kind === "audio");
  return { pcs: pcs.length, label: sender.track.label, state: sender.track.readyState,
           sdp: pcs[0].localDescription.sdp, signaling: pcs[0].signalingState };
}"""

# Audio bytes sent so far by the page's open peer connection.
_SENT = """async () => {
  const pc = window.__pcs.find((p) => p.connectionState !== "closed");
  let sent = 0;
  (await pc.getStats()).forEach((s) => {
    if (s.type === "outbound-rtp" && s.kind === "audio") sent += s.bytesSent;
  });
  return sent;
}"""


def _record(user) -> None:
    user.page.evaluate(
        """() => {
          window.deviceEvents = [];
          window.dc.addEventListener("devicechange", (e) => window.deviceEvents.push(e.detail));
        }"""
    )


def _sending_more(user, since: int) -> None:
    user.page.wait_for_function(f"async () => (await ({_SENT})()) > {since} + 2000", timeout=10_000)


def test_devices_listed_and_switched_during_a_call_then_the_rating_prompt(new_user, e2e_account):
    acct, key = e2e_account(ask_feedback=True)
    jane, sam = new_user("jane"), new_user("sam")
    assert sign_in(jane, acct, key, "tutor_jane", name="Jane") == {"ok": True}
    assert sign_in(sam, acct, key, "student_sam", name="Sam") == {"ok": True}
    _record(jane)
    listed = jane.page.evaluate("() => window.dc.listDevices()")
    assert [d["label"] for d in listed["microphones"]][:3] in (
        ["Fake Default Audio Input", "Fake Audio Input 1", "Fake Audio Input 2"],
        ["", "", ""],  # labels come once the page has had the microphone
    )
    assert len(listed["speakers"]) == 3 and listed["speakerSelection"] is True

    start_call(jane, "student_sam")
    click(sam, "answer")
    expect(screen(jane, "ongoing")).to_be_visible()
    wait_for_audio(jane.page)
    wait_for_audio(sam.page)
    before = jane.page.evaluate(_SENDING)
    assert before["label"] == "Fake Default Audio Input"

    # The picker on the ongoing screen: labels now, every device, the speaker too.
    toggle = jane.page.locator(f"{SHADOW} .dc-devices-toggle")
    expect(toggle).to_have_text("Audio devices")
    toggle.click()
    expect(toggle).to_have_attribute("aria-expanded", "true")
    mic = jane.page.locator(f'{SHADOW} select[data-device="microphone"]')
    speaker = jane.page.locator(f'{SHADOW} select[data-device="speaker"]')
    expect(mic.locator("option")).to_have_text(
        ["Default", "Fake Audio Input 1", "Fake Audio Input 2"]
    )
    expect(speaker.locator("option")).to_have_text(
        ["Default", "Fake Audio Output 1", "Fake Audio Output 2"]
    )

    sent = jane.page.evaluate(_SENT)
    mic.select_option(label="Fake Audio Input 2")
    jane.page.wait_for_function("() => window.deviceEvents.length === 1")
    event = jane.page.evaluate("() => window.deviceEvents[0]")
    assert event["kind"] == "microphone" and event["reason"] == "selected", event
    assert event["label"] == "Fake Audio Input 2", event
    after = jane.page.evaluate(_SENDING)
    # The same peer connection sends the new microphone: no new offer, nothing renegotiated.
    assert after["pcs"] == 1 and after["label"] == "Fake Audio Input 2", after
    assert after["sdp"] == before["sdp"] and after["signaling"] == "stable"
    _sending_more(jane, sent)
    wait_for_audio(sam.page, min_bytes=sent + 2000)

    speaker.select_option(label="Fake Audio Output 1")
    jane.page.wait_for_function("() => window.deviceEvents.length === 2")
    sink = jane.page.evaluate("() => window.dc.current.media.audio.sinkId")
    wanted = next(
        d
        for d in jane.page.evaluate("() => window.dc.listDevices()")["speakers"]
        if d["label"] == "Fake Audio Output 1"
    )
    assert sink == wanted["deviceId"]

    # The microphone goes away (Chromium's fake devices cannot be unplugged: its track ends
    # as an unplugged one does, and the devices changed): the default takes over.
    sent = jane.page.evaluate(_SENT)
    jane.page.evaluate(
        """() => {
          window.__pcs.find((p) => p.connectionState !== "closed").getSenders()[0].track.stop();
          navigator.mediaDevices.dispatchEvent(new Event("devicechange"));
        }"""
    )
    jane.page.wait_for_function("() => window.deviceEvents.length === 3")
    lost = jane.page.evaluate("() => window.deviceEvents[2]")
    assert lost["kind"] == "microphone" and lost["reason"] == "lost", lost
    assert jane.page.evaluate(_SENDING)["label"] == "Fake Default Audio Input"
    _sending_more(jane, sent)
    expect(mic).to_have_value("")

    # After the call: each side is asked for a rating (the account asks for feedback).
    click(jane, "hangup")
    assert outcome(jane) == {"resolved": "over"}
    for user in (jane, sam):
        expect(user.page.locator(f"{SHADOW} .dc-rating")).to_be_visible()
    prompt = jane.page.locator(f"{SHADOW} .dc-rating")
    expect(prompt.locator(".dc-rate-title")).to_have_text("How was the call with Sam?")
    send = prompt.get_by_role("button", name="Send")
    expect(send).to_be_disabled()
    prompt.get_by_role("button", name="4 of 5").click()
    expect(prompt.get_by_role("button", name="4 of 5")).to_have_attribute("aria-pressed", "true")
    expect(prompt.get_by_role("button", name="5 of 5")).to_have_attribute("aria-pressed", "false")
    prompt.get_by_label("Echo").check()
    send.click()
    expect(prompt).to_be_hidden()
    sam.page.locator(f"{SHADOW} .dc-rating").get_by_role("button", name="Not now").click()
    expect(sam.page.locator(f"{SHADOW} .dc-rating")).to_be_hidden()
    rows = list(CallFeedback.objects.values_list("role", "score", "issues"))
    assert rows == [("caller", 4, ["echo"])]
    jane.assert_no_errors()
    sam.assert_no_errors()


def test_no_rating_prompt_when_the_account_does_not_ask(new_user, e2e_account):
    acct, key = e2e_account()
    jane, sam = new_user("jane"), new_user("sam")
    assert sign_in(jane, acct, key, "tutor_jane") == {"ok": True}
    assert sign_in(sam, acct, key, "student_sam") == {"ok": True}
    start_call(jane, "student_sam")
    click(sam, "answer")
    expect(screen(jane, "ongoing")).to_be_visible()
    click(sam, "hangup")
    assert outcome(jane) == {"resolved": "over"}
    expect(screen(jane, "ongoing")).to_be_hidden()
    assert jane.page.locator(f"{SHADOW} .dc-rating").count() == 0
    refused = jane.page.evaluate("() => window.dc.postFeedback(5).catch((e) => e)")
    assert refused["code"] == "ERR_FEEDBACK_DISABLED", refused


# -- the demo's "Test my setup" page ---------------------------------------------------------


@pytest.fixture
def demo_people(e2e_account, transactional_db):
    """The demo's people, and the account their sessions belong to."""
    e2e_account(account_id=timings.SESSION_ACCOUNT, name="Tutoring", identity="verified")
    return ensure_demo_people()


def test_the_demo_test_my_setup_page(new_user, demo_people):
    sam, _ = log_in(new_user, "sam")
    sam.page.goto("/setup/")
    run = sam.page.get_by_role("button", name="Test my setup")
    expect(run).to_be_enabled()
    run.click()
    status = sam.page.locator("#status")
    expect(status).to_have_text("Your setup is ready for calls.", timeout=20_000)
    report = sam.page.locator("#report")
    expect(report).to_have_attribute("data-ok", "true")
    # This test server has no TURN server: the audio test goes direct.
    expect(sam.page.locator("#media")).to_contain_text("direct")
    expect(sam.page.locator("#microphone")).to_contain_text("picking up sound")
    expect(sam.page.locator("#grade")).to_have_text("Excellent")
    assert sam.page.evaluate("() => window.__csp") == []
    sam.assert_no_errors()
