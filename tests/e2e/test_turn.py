"""A call forced through a real TURN relay (coturn with the shipped
``docs/coturn/turnserver.conf``, use-auth-secret) with the credentials from init; expired
credentials are refused by the TURN server itself."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from playwright.sync_api import expect

from directcall.ice import turn_credentials
from tests.coturn import LOOPBACK_RELAY_FOR_TESTS, start_coturn
from tests.e2e import timings
from tests.e2e.harness import (
    INIT_SCRIPT,
    BrowserUser,
    SiteDatabase,
    env_var,
    start_server,
)
from tests.e2e.sdk import click, outcome, sign_in, start_call
from tests.e2e.test_sdk import screen

SECRET = "coturn-test-static-secret"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def coturn(tmp_path_factory) -> Iterator[int]:
    """coturn on 127.0.0.1 with the shipped configuration; yields its port.

    ``docs/coturn/turnserver.conf`` refuses loopback peers; both browsers run here, so each
    one's relay must reach the other's relay at 127.0.0.1: the test adds exactly that
    (``tests/coturn.py``), and ``tests/test_turn_peers.py`` shows the shipped file without
    it refuses 127.0.0.1.
    """
    server = start_coturn(
        "e2e", tmp_path_factory.mktemp("coturn"), SECRET, extra=LOOPBACK_RELAY_FOR_TESTS
    )
    try:
        yield server.port
    finally:
        server.stop()


@pytest.fixture(scope="module")
def turn_server(coturn, tmp_path_factory):
    """A directcall server that hands out coturn credentials and forces relay-only ICE.

    It gets a database of its own: the package's main test server sweeps the shared test
    database and, not seeing this server's users in its own presence store, would end
    their calls (in production every process shares one presence store).
    Yields ``(server, account_id, api_key)``.
    """
    from django.conf import settings

    db = tmp_path_factory.mktemp("turn") / "turn.sqlite3"
    site = SiteDatabase.create(db, "TURN")
    account_id, api_key = site.account_id, site.api_key
    directcall = {
        **timings.DIRECTCALL,
        "ICE_SERVERS": [
            {
                "urls": [
                    f"turn:127.0.0.1:{coturn}?transport=udp",
                    f"turn:127.0.0.1:{coturn}?transport=tcp",
                ]
            }
        ],
        "TURN_SECRET": SECRET,
        "TURN_TTL": 600,
        "ICE_TRANSPORT_POLICY": "relay",
    }
    with env_var("DATABASE_URL", f"sqlite:///{db}"):
        server = start_server(
            str(db), run_prefix=settings.RUN_PREFIX + "turn", directcall=directcall, name="turn"
        )
    yield server, account_id, api_key
    server.stop()


def _user(browser, server, name) -> BrowserUser:
    context = browser.new_context(base_url=server.url)
    context.grant_permissions(["microphone"], origin=server.url)
    context.add_init_script(INIT_SCRIPT)
    page = context.new_page()
    user = BrowserUser(name, context, page)
    user.watch(page)
    page.goto("/")
    return user


# The candidate types of the pair each connection selected, and its audio bytes received.
_SELECTED_PAIR = """async () => {
  for (const pc of window.__pcs || []) {
    const stats = await pc.getStats();
    let pair = null;
    let received = 0;
    stats.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) {
        pair = stats.get(s.selectedCandidatePairId);
      }
      if (s.type === "inbound-rtp" && s.kind === "audio") received += s.bytesReceived;
    });
    if (!pair) continue;
    const local = stats.get(pair.localCandidateId);
    const remote = stats.get(pair.remoteCandidateId);
    return { local: local.candidateType, remote: remote.candidateType, received };
  }
  return null;
}"""


# Poll (inside the page) until the selected pair has carried audio; 20 s at most.
_WAIT_FOR_MEDIA = f"""async () => {{
  const selected = {_SELECTED_PAIR};
  const until = Date.now() + 20000;
  let pair = null;
  while (Date.now() < until) {{
    pair = await selected();
    if (pair && pair.received > 2000) return pair;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }}
  return pair;
}}"""


def test_a_call_through_the_turn_relay(browser, turn_server):
    server, account_id, key = turn_server
    acct = SimpleNamespace(account_id=account_id)
    jane, sam = _user(browser, server, "jane"), _user(browser, server, "sam")
    try:
        assert sign_in(jane, acct, key, "tutor_jane") == {"ok": True}
        assert sign_in(sam, acct, key, "student_sam") == {"ok": True}
        servers = jane.page.evaluate("() => window.dc.session.iceServers")
        assert servers[0]["username"].endswith(":tutor_jane") and servers[0]["credential"]
        start_call(jane, "student_sam")
        click(sam, "answer")
        expect(screen(jane, "ongoing")).to_be_visible()
        for user in (jane, sam):
            pair = user.page.evaluate(_WAIT_FOR_MEDIA)
            assert pair and pair["received"] > 2000, pair
            assert pair["local"] == "relay", pair  # media went through coturn
        click(jane, "hangup")
        assert outcome(jane) == {"resolved": "over"}
    finally:
        jane.context.close()
        sam.context.close()


_GATHER = """async ({ url, username, credential }) => {
  const pc = new RTCPeerConnection({
    iceServers: [{ urls: [url], username, credential }], iceTransportPolicy: "relay" });
  const relays = [];
  const errors = [];
  pc.onicecandidate = (e) => {
    if (e.candidate && e.candidate.type === "relay") relays.push(e.candidate.candidate);
  };
  pc.onicecandidateerror = (e) => errors.push(e.errorCode);
  pc.addTransceiver("audio");
  const done = new Promise((resolve) => {
    pc.onicegatheringstatechange = () => { if (pc.iceGatheringState === "complete") resolve(); };
  });
  await pc.setLocalDescription(await pc.createOffer());
  await done;
  pc.close();
  return { relays: relays.length, errors };
}"""


def test_expired_turn_credentials_are_refused_by_coturn(browser, turn_server, coturn):
    user = _user(browser, turn_server[0], "probe")
    url = f"turn:127.0.0.1:{coturn}?transport=udp"
    try:
        fresh = turn_credentials(SECRET, "tutor_jane", ttl=600)
        good = user.page.evaluate(
            _GATHER, {"url": url, "username": fresh["username"], "credential": fresh["credential"]}
        )
        assert good["relays"] >= 1, good
        expired = turn_credentials(SECRET, "tutor_jane", ttl=60, now=time.time() - 3600)
        bad = user.page.evaluate(
            _GATHER,
            {"url": url, "username": expired["username"], "credential": expired["credential"]},
        )
        assert bad["relays"] == 0 and 401 in bad["errors"], bad
        wrong = user.page.evaluate(
            _GATHER, {"url": url, "username": fresh["username"], "credential": "d3Jvbmc="}
        )
        assert wrong["relays"] == 0 and 401 in wrong["errors"], wrong
    finally:
        user.context.close()
