"""The browser harness itself: the daphne server serves pages and static files, and two
browser contexts carry a WebRTC audio call between them (plain JavaScript, no SDK)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import wait_for_audio

AUDIO = Path(__file__).resolve().parents[2] / "directcall" / "static" / "directcall" / "audio"

# Caller and callee each get the fake microphone and a peer connection with host
# candidates only; ICE candidates travel inside the SDP (gathering is awaited).
SETUP = """
async () => {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
  const pc = new RTCPeerConnection({ iceServers: [] });
  for (const track of stream.getTracks()) pc.addTrack(track, stream);
  window.testPc = pc;
  window.gathered = (p) => p.iceGatheringState === "complete"
    ? Promise.resolve()
    : new Promise((resolve) => p.addEventListener("icegatheringstatechange", () => {
        if (p.iceGatheringState === "complete") resolve();
      }));
  return window.__pcs.length;
}
"""
OFFER = """
async () => {
  const pc = window.testPc;
  await pc.setLocalDescription(await pc.createOffer());
  await window.gathered(pc);
  return { type: pc.localDescription.type, sdp: pc.localDescription.sdp };
}
"""
ANSWER = """
async (offer) => {
  const pc = window.testPc;
  await pc.setRemoteDescription(offer);
  await pc.setLocalDescription(await pc.createAnswer());
  await window.gathered(pc);
  return { type: pc.localDescription.type, sdp: pc.localDescription.sdp };
}
"""
ACCEPT = "async (answer) => { await window.testPc.setRemoteDescription(answer); }"


def test_home_page_and_static_files_through_daphne(e2e_server, new_user):
    user = new_user(path=None)
    response = user.page.goto("/")
    assert response.status == 200
    assert user.page.title() == "directcall demo"
    css = user.page.locator("link[rel=stylesheet]").get_attribute("href")
    assert css.startswith("/static/")
    assert user.page.request.get(css).status == 200
    # A static file of the app itself (by its absolute URL), and a missing one.
    wav = user.page.request.get(f"{e2e_server.url}/static/directcall/audio/ringback.wav")
    assert wav.status == 200
    assert wav.headers["content-type"].startswith("audio/")
    assert wav.body() == (AUDIO / "ringback.wav").read_bytes()
    assert user.page.request.get("/static/directcall/no-such-file.js").status == 404
    user.assert_no_errors()


def test_peer_connection_wrapper_keeps_the_native_api(new_user):
    page = new_user().page
    result = page.evaluate(
        """async () => {
          const pc = new RTCPeerConnection({ iceServers: [] });
          const cert = await RTCPeerConnection.generateCertificate(
            { name: "ECDSA", namedCurve: "P-256" });
          const out = {
            kept: window.__pcs.length === 1 && window.__pcs[0] === pc,
            instance: pc instanceof RTCPeerConnection,
            prototype: typeof RTCPeerConnection.prototype.createOffer === "function",
            name: RTCPeerConnection.name,
            certificate: cert.expires > Date.now(),
          };
          pc.close();
          return out;
        }"""
    )
    assert result == {
        "kept": True,
        "instance": True,
        "prototype": True,
        "name": "RTCPeerConnection",
        "certificate": True,
    }


def test_two_browsers_carry_a_webrtc_audio_call(new_user):
    alice, bob = new_user("alice"), new_user("bob")
    assert alice.page.evaluate(SETUP) == 1
    assert bob.page.evaluate(SETUP) == 1

    offer = alice.page.evaluate(OFFER)
    assert "typ host" in offer["sdp"]
    answer = bob.page.evaluate(ANSWER, offer)
    alice.page.evaluate(ACCEPT, answer)

    for user in (alice, bob):
        row = wait_for_audio(user.page)
        assert row["received"] >= 2000 and row["sent"] >= 2000
        assert row["connectionState"] == "connected"
        user.assert_no_errors()


def test_wait_for_audio_fails_clearly_without_media(new_user):
    page = new_user().page
    with pytest.raises(AssertionError, match="no audio both ways"):
        wait_for_audio(page, timeout_ms=500)


def test_server_and_test_share_the_database(new_user, e2e_account):
    """What the test commits, the server reads; what the server writes, the test reads."""
    from directcall.models import Registration

    account, key = e2e_account()
    page = new_user().page
    response = page.request.post(
        "/directcall/v1/init",
        data={"accountId": account.account_id, "apikey": key, "cuid": "harness_user"},
    )
    assert response.status == 200, response.text()
    assert Registration.objects.filter(account=account, cuid="harness_user").exists()
