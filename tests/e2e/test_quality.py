"""Call quality and preflight under real packet-level impairment (issue 15).

The browsers' only TURN server sits behind an impaired path (``tests/impairment.py``): a
network namespace with coturn and a delaying UDP relay in front of it, and nftables
dropping a share of the packets. ICE is relay-only, so every media packet crosses it.
Nothing fakes getStats(): the warnings come from what the browsers measure.

The dead-microphone warning comes from real microphones: Chromium launched with a fake
capture device playing a WAV file (silence, or a steady white noise).
"""

from __future__ import annotations

import json
import math
import os
import random
import sqlite3
import statistics
import struct
import wave
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from playwright.sync_api import expect

from tests.e2e import timings
from tests.e2e.harness import (
    CHROMIUM_ARGS,
    INIT_SCRIPT,
    BrowserUser,
    SiteDatabase,
    env_var,
    start_server,
    wait_for_audio,
)
from tests.e2e.sdk import click, outcome, screen, sign_in, start_call
from tests.impairment import ImpairedTurn

SECRET = "impaired-turn-static-secret"
ROOT = Path(__file__).resolve().parents[2]
ADMIN_PASSWORD = "quality-admin-pw-1"

# Listens for the quality events of the signed-in client (window.dc) into window.qEvents.
_RECORD = """() => {
  window.qEvents = [];
  for (const type of ["quality", "warning", "warningcleared", "callend"]) {
    window.dc.addEventListener(type, (e) => window.qEvents.push([type, e.detail]));
  }
}"""


@pytest.fixture(scope="module")
def impaired(tmp_path_factory) -> Iterator[ImpairedTurn]:
    path = ImpairedTurn(tmp_path_factory.mktemp("impaired"), SECRET)
    try:
        yield path
    finally:
        path.close()


@pytest.fixture(scope="module")
def quality_server(impaired, tmp_path_factory):
    """A directcall server whose only ICE server is the impaired TURN, relay-only ICE.

    A database of its own (as in test_turn.py), an account asking for feedback, and an
    admin. Yields ``(server, account, api_key, db_path)``.
    """
    from django.conf import settings

    db = tmp_path_factory.mktemp("quality") / "quality.sqlite3"
    site = SiteDatabase.create(db, "Quality", DJANGO_SUPERUSER_PASSWORD=ADMIN_PASSWORD)
    manage, account_id, api_key = site.manage, site.account_id, site.api_key
    manage("createsuperuser", "--noinput", "--username", "qadmin", "--email", "q@example.com")
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE directcall_account SET ask_feedback = 1")
    directcall = {
        **timings.DIRECTCALL,
        "ICE_SERVERS": [{"urls": [impaired.url]}],
        "TURN_SECRET": SECRET,
        "TURN_TTL": 600,
        "ICE_TRANSPORT_POLICY": "relay",
    }
    with env_var("DATABASE_URL", f"sqlite:///{db}"):
        server = start_server(
            str(db),
            run_prefix=settings.RUN_PREFIX + "quality",
            directcall=directcall,
            name="quality",
        )
    yield server, SimpleNamespace(account_id=account_id), api_key, db
    server.stop()


@pytest.fixture
def users(browser, quality_server) -> Iterator[list[BrowserUser]]:
    made: list[BrowserUser] = []

    def make(name: str) -> BrowserUser:
        context = browser.new_context(base_url=quality_server[0].url)
        context.grant_permissions(["microphone"], origin=quality_server[0].url)
        context.set_default_timeout(15_000)
        context.add_init_script(INIT_SCRIPT)
        page = context.new_page()
        user = BrowserUser(name, context, page)
        user.watch(page)
        page.goto("/")
        made.append(user)
        return user

    yield make
    for user in made:
        user.context.close()


@pytest.fixture
def clean_path(impaired) -> Iterator[ImpairedTurn]:
    impaired.set_loss(0)
    impaired.set_delay(0)
    yield impaired
    impaired.set_loss(0)
    impaired.set_delay(0)


def _names(user, kind: str) -> set[str]:
    return set(
        user.page.evaluate(
            "(kind) => window.qEvents.filter((e) => e[0] === kind).map((e) => e[1].name)", kind
        )
    )


def _wait_names(user, kind: str, names: set[str], timeout_ms: int) -> None:
    user.page.wait_for_function(
        """([kind, names]) => {
          const seen = new Set(window.qEvents.filter((e) => e[0] === kind).map((e) => e[1].name));
          return names.every((n) => seen.has(n));
        }""",
        arg=[kind, sorted(names)],
        timeout=timeout_ms,
        polling=200,
    )


def test_preflight_through_the_turn_server(users, quality_server, clean_path):
    _server, account, key, _db = quality_server
    user = users("tester")
    assert sign_in(user, account, key, "setup_tester") == {"ok": True}
    report = user.page.evaluate("() => window.dc.preflight({duration: 3000})")
    assert report["ok"] is True, report
    assert report["grade"] in ("excellent", "great"), report
    assert report["microphone"]["ok"] and report["microphone"]["level"] > 0.001, report
    assert report["signaling"]["ok"] and 0 < report["signaling"]["rtt"] < 500, report
    media = report["media"]
    assert media["turn"] is True and media["relayed"] is True, media
    assert media["samples"] == 3 and media["codec"] == "opus", media
    assert media["mos"]["avg"] > 4.1 and media["rtt"]["avg"] < 100 and media["loss"] == 0, media
    assert report["warnings"] == []
    user.assert_no_errors()


def test_preflight_with_the_turn_server_unreachable(users, quality_server, clean_path):
    _server, account, key, _db = quality_server
    clean_path.set_loss(100)  # nothing reaches the TURN server any more
    user = users("tester2")
    assert sign_in(user, account, key, "setup_tester2") == {"ok": True}
    report = user.page.evaluate("() => window.dc.preflight({duration: 2000, timeout: 4000})")
    assert report["ok"] is False and report["grade"] is None, report
    assert report["signaling"]["ok"] is True, report  # the signaling server is fine
    media = report["media"]
    assert media["ok"] is False and media["turn"] is True, media
    assert "the TURN server could not be reached" in media["error"], media
    assert report["microphone"]["error"], report  # its sound could not be measured


def test_warnings_raised_and_cleared_under_real_loss_and_delay(users, quality_server, clean_path):
    """A call through the impaired TURN: 25 % loss and 300-700 ms more each way (delay
    and jitter) raise every network warning — both packet-loss rules, high-rtt,
    high-jitter, low-mos — and the weak-connection notice on both sides; a clean path
    clears them. The summaries are stored with the call and shown in the admin."""
    _server, account, key, db = quality_server
    jane, sam = users("jane"), users("sam")
    assert sign_in(jane, account, key, "tutor_jane") == {"ok": True}
    assert sign_in(sam, account, key, "student_sam") == {"ok": True}
    for user in (jane, sam):
        user.page.evaluate(_RECORD)
    start_call(jane, "student_sam")
    click(sam, "answer")
    expect(screen(jane, "ongoing")).to_be_visible()
    wait_for_audio(jane.page)
    wait_for_audio(sam.page)
    # The indicator shows once a MOS is measured; a clean path raises nothing.
    indicator = jane.page.locator("[data-directcall-screens] .dc-signal")
    expect(indicator).to_have_attribute("data-bars", "5", timeout=8000)
    assert _names(jane, "warning") == set()

    clean_path.set_loss(25)
    # 150 ms plus 0-200 ms at each pass through the relay (a packet passes twice each way).
    clean_path.set_delay(150, 200)
    # Twilio's two packet-loss rules both speak: 25 % in most seconds, and on average.
    raised = {
        "high-packet-loss",
        "high-packets-lost-fraction",
        "high-rtt",
        "high-jitter",
        "low-mos",
    }
    for user in (jane, sam):
        _wait_names(user, "warning", raised, 15_000)
    notice = jane.page.locator("[data-directcall-screens] .dc-weak")
    expect(notice).to_be_visible()
    expect(notice).to_have_text("Weak connection")
    expect(indicator).not_to_have_attribute("data-bars", "5")
    detail = jane.page.evaluate(
        "() => window.qEvents.find((e) => e[0] === 'warning' && e[1].name === 'high-rtt')[1]"
    )
    assert detail["value"] > 400 and detail["threshold"] == 400, detail

    clean_path.set_loss(0)
    clean_path.set_delay(0)
    for user in (jane, sam):
        _wait_names(user, "warningcleared", _names(user, "warning"), 25_000)
    expect(notice).to_be_hidden()

    call_id = jane.page.evaluate("() => window.dc.activeCall.callId")
    click(jane, "hangup")
    assert outcome(jane) == {"resolved": "over"}
    end = jane.page.evaluate("() => window.qEvents.find((e) => e[0] === 'callend')[1]")
    assert raised <= set(end["quality"]["warnings"]), end

    def stored() -> dict:
        with sqlite3.connect(db) as conn:
            row = conn.execute(
                "SELECT quality, quality_relayed, quality_warned FROM directcall_call WHERE id = ?",
                (call_id.replace("-", ""),),
            ).fetchone()
        return {
            "quality": json.loads(row[0]) if row[0] else None,
            "relayed": row[1],
            "warned": row[2],
        }

    sam.page.wait_for_function(
        "() => window.qEvents.some((e) => e[0] === 'callend')", timeout=10_000
    )
    # The caller's came with its hangup, the callee's just after the end.
    for _ in range(50):
        row = stored()
        if row["quality"] and len(row["quality"]) == 2:
            break
        jane.page.wait_for_timeout(100)
    assert set(row["quality"]) == {"caller", "callee"}, row
    assert row["relayed"] == 1 and row["warned"] == 1, row
    for side in row["quality"].values():
        assert side["relayed"] is True and side["localCandidate"] == "relay", side
        assert side["codec"] == "opus" and side["lossMax"] > 5 and side["rttMax"] > 400, side
        assert side["jitterMax"] > 30, side
        assert raised <= set(side["warnings"]), side

    # The admin's call page shows both reports.
    admin = users("admin")
    admin.page.goto("/admin/login/?next=/admin/")
    admin.page.fill("#id_username", "qadmin")
    admin.page.fill("#id_password", ADMIN_PASSWORD)
    admin.page.click("input[type=submit]")
    admin.page.goto(f"/admin/directcall/call/{call_id}/change/")
    table = admin.page.locator("table.directcall-quality")
    expect(table).to_contain_text("through TURN (relay → relay)")
    expect(table).to_contain_text("high-packet-loss")
    expect(table.locator("thead")).not_to_contain_text("not reported")


# -- a dead microphone ---------------------------------------------------------------------------

LEVEL_WARNING = "constant-audio-input-level"

# Keeps the page's AudioContexts in window.__audioContexts (to see which way the level is read).
_AUDIO_CONTEXTS = """
(() => {
  const Native = window.AudioContext;
  if (!Native) return;
  window.__audioContexts = [];
  window.AudioContext = class extends Native {
    constructor(...args) { super(...args); window.__audioContexts.push(this); }
  };
})();
"""


def _wav(path: Path, rms_dbfs: float | None) -> Path:
    """Five seconds of 48 kHz mono: silence, or white noise of that RMS (dB of full scale)."""
    frames = 48_000 * 5
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(48_000)
        if rms_dbfs is None:
            out.writeframes(b"\0\0" * frames)
        else:
            peak = 10 ** (rms_dbfs / 20) * 32767 * math.sqrt(3)  # uniform noise with that RMS
            noise = random.Random(15)
            out.writeframes(
                b"".join(struct.pack("<h", int(noise.uniform(-peak, peak))) for _ in range(frames))
            )
    return path


def _capturing(browser, path: Path):
    """Another Chromium whose fake microphone plays ``path`` (the flag is per browser)."""
    return browser.browser_type.launch(
        executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
        args=[*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={path}"],
        headless=True,
    )


@pytest.fixture(scope="module")
def silent_browser(browser, tmp_path_factory):
    """A Chromium whose microphone gives digital silence."""
    silent = _capturing(browser, _wav(tmp_path_factory.mktemp("mic") / "silence.wav", None))
    yield silent
    silent.close()


@pytest.fixture(scope="module")
def noisy_browser(browser, tmp_path_factory):
    """A Chromium whose microphone hears a steady noise at -50 dBFS and nobody speaking."""
    noisy = _capturing(browser, _wav(tmp_path_factory.mktemp("mic") / "noise.wav", -50))
    yield noisy
    noisy.close()


# A page that never had a user gesture (Playwright's scripts count as one).
_NO_GESTURE = """
Object.defineProperty(navigator.userActivation, "hasBeenActive", { get: () => false });
"""


@pytest.fixture
def party(e2e_server):
    """Factory: ``party(browser, name, gesture=True) -> BrowserUser``; closed at the end."""
    made: list[BrowserUser] = []

    def make(browser_, name: str, gesture: bool = True) -> BrowserUser:
        context = browser_.new_context(base_url=e2e_server.url)
        context.grant_permissions(["microphone"], origin=e2e_server.url)
        context.set_default_timeout(15_000)
        context.add_init_script(INIT_SCRIPT)
        context.add_init_script(_AUDIO_CONTEXTS)
        if not gesture:
            context.add_init_script(_NO_GESTURE)
        user = BrowserUser(name, context, context.new_page())
        user.watch(user.page)
        user.page.goto("/")
        made.append(user)
        return user

    yield make
    for user in made:
        user.context.close()


def _levels(user) -> list:
    return user.page.evaluate(
        "() => window.qEvents.filter((e) => e[0] === 'quality').map((e) => e[1].inputLevel)"
    )


def _audio_contexts(user) -> list[str]:
    return user.page.evaluate("() => (window.__audioContexts || []).map((c) => c.state)")


def _connect(jane, sam, account, key) -> str:
    """Jane calls Sam, Sam answers with a click; both record their quality events."""
    assert sign_in(jane, account, key, "tutor_jane") == {"ok": True}
    assert sign_in(sam, account, key, "student_sam") == {"ok": True}
    for user in (jane, sam):
        user.page.evaluate(_RECORD)
    start_call(jane, "student_sam")
    click(sam, "answer")
    expect(screen(jane, "ongoing")).to_be_visible()
    wait_for_audio(sam.page)
    wait_for_audio(jane.page)
    return jane.page.evaluate("() => window.dc.activeCall.callId")


def _wait_samples(user, count: int) -> None:
    user.page.wait_for_function(
        "(n) => window.qEvents.filter((e) => e[0] === 'quality').length >= n",
        arg=count,
        timeout=20_000,
        polling=200,
    )


def _stored_quality(call_id: str, jane) -> dict:
    from directcall.models import Call

    call = Call.objects.get(pk=call_id)
    for _ in range(50):  # the callee's summary comes just after the end
        if call.quality and len(call.quality) == 2:
            break
        jane.page.wait_for_timeout(100)
        call.refresh_from_db()
    return call.quality


def test_a_silent_microphone_raises_the_level_warning(silent_browser, e2e_account, party):
    """Both microphones give digital silence. Jane's page had no user gesture, so no
    AudioContext may run there: her per-second levels decide. Sam's had (he answered with a
    click): an analyser reads his microphone every 50 ms, as Twilio's does.
    Both get constant-audio-input-level after 10 s and the "microphone seems silent"
    notice; muting clears Jane's at once; both stored summaries name it."""
    account, key = e2e_account()
    jane, sam = party(silent_browser, "jane", gesture=False), party(silent_browser, "sam")
    call_id = _connect(jane, sam, account, key)
    for user in (jane, sam):
        _wait_names(user, "warning", {LEVEL_WARNING}, 20_000)
        detail = user.page.evaluate(
            "(name) => window.qEvents.find((e) => e[0] === 'warning' && e[1].name === name)[1]",
            LEVEL_WARNING,
        )
        assert detail["value"] == 0 and detail["threshold"] == 0.01, detail
        levels = _levels(user)
        assert len(levels) >= 10 and set(levels) == {0}, levels  # the input really is silent
        notice = user.page.locator("[data-directcall-screens] .dc-weak")
        expect(notice).to_be_visible()
        expect(notice).to_have_text("Your microphone seems silent")
        expect(notice).to_have_attribute("data-warning", "silentMicrophone")
    assert _audio_contexts(jane) == []  # the per-second way
    assert _audio_contexts(sam) == ["running"]  # Twilio's way

    # Muting is silence on purpose: the warning clears at once and the notice goes.
    click(jane, "mute")
    _wait_names(jane, "warningcleared", {LEVEL_WARNING}, 5_000)
    expect(jane.page.locator("[data-directcall-screens] .dc-weak")).to_be_hidden()

    click(jane, "hangup")
    assert outcome(jane) == {"resolved": "over"}
    quality = _stored_quality(call_id, jane)
    for side in ("caller", "callee"):
        assert LEVEL_WARNING in quality[side]["warnings"], quality
    assert _audio_contexts(sam) == ["closed"]  # let go with the call
    for user in (jane, sam):
        user.assert_no_errors()


def test_a_live_microphone_in_a_quiet_room_does_not_raise_it(
    noisy_browser, e2e_account, party, new_user
):
    """Jane's microphone hears a steady noise floor (-50 dBFS) and nobody speaks; Sam's is
    Chromium's beeping fake one. Jane's level is read as Twilio reads it: the readings move
    and nothing is raised in 12 s — though her per-second levels hardly move (the
    per-second way alone would have raised it)."""
    account, key = e2e_account()
    jane = party(noisy_browser, "jane")
    sam = new_user("sam")
    call_id = _connect(jane, sam, account, key)
    for user in (jane, sam):
        _wait_samples(user, 13)
        assert LEVEL_WARNING not in _names(user, "warning")
        expect(user.page.locator("[data-directcall-screens] .dc-weak")).to_be_hidden()
    assert _audio_contexts(jane) == ["running"]
    levels = _levels(jane)[-10:]
    assert min(levels) > 0.001 and statistics.pstdev(levels) < 0.01, levels

    click(jane, "hangup")
    assert outcome(jane) == {"resolved": "over"}
    quality = _stored_quality(call_id, jane)
    for side in ("caller", "callee"):
        assert LEVEL_WARNING not in quality[side]["warnings"], quality
    jane.assert_no_errors()
