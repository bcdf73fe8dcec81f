"""A call through the production topology (``deploy/topology.py``, docs/deployment.md).

nginx terminates TLS (a self-signed certificate: the browser contexts ignore HTTPS errors)
and spreads requests and sockets over two workers (deploy/topology.py's SERVER, uvicorn);
Redis and a PostgreSQL database of the topology's own are shared; coturn relays the media
(relay-only ICE with the ephemeral credentials from init). The workers run the production settings
(``deploy/settings.py``) with shorter presence, sweep and grace timings
(``tests/topology_settings.py``), so that the bounds below take seconds.

Which worker holds each browser's socket is read from the browser itself: nginx tells
every response which upstream served it (``X-DirectCall-Worker``, set by the local
topology only), and Chromium's DevTools protocol reports the WebSocket handshake's
response headers. The two parties land on different workers (nginx's ``least_conn``)
and a worker is SIGKILLed mid-call. The documented bounds (docs/protocol.md, *Dropped
connections*): a party whose SDK signs in again with the call's key within
``RECONNECT_GRACE`` (through nginx, on the surviving worker) keeps the call; one that
does not come back ends it for the other side with ``connection_lost`` within
``PRESENCE_TTL + RECONNECT_GRACE + 2 × SWEEP_INTERVAL``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from playwright.sync_api import expect

from deploy.topology import Topology, TopologyError, can_pin, worker_cpu
from tests.conftest import require_postgres_server
from tests.e2e.harness import ARTIFACTS, INIT_SCRIPT, BrowserUser, wait_for_audio
from tests.e2e.sdk import click, events, outcome, sign_in, start_call
from tests.e2e.test_sdk import screen
from tests.e2e.test_tabs import audio_keeps_flowing

pytestmark = pytest.mark.topology

WORKER_HEADER = "x-directcall-worker"
SETTINGS = "tests.topology_settings"
WORKERS = 2
PRESENCE_TTL = 4
SWEEP_INTERVAL = 1
RECONNECT_GRACE = 5
TIMINGS = {
    "PRESENCE_TTL": PRESENCE_TTL,
    "SWEEP_INTERVAL": SWEEP_INTERVAL,
    "RECONNECT_GRACE": RECONNECT_GRACE,
}
MARGIN = 2.5  # scheduling slack on a loaded machine


@pytest.fixture(scope="module")
def topology(tmp_path_factory) -> Iterator[Topology]:
    """The topology with two workers and relay-only ICE; its logs in tests/artifacts/."""
    require_postgres_server("the topology")
    logs = ARTIFACTS / "topology"
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()
    topo = Topology(
        tmp_path_factory.mktemp("topology"),
        workers=WORKERS,
        settings=SETTINGS,
        env={"DIRECTCALL_TOPOLOGY_TIMINGS": json.dumps(TIMINGS)},
        ice_policy="relay",
        logs=logs,
        # As docs/deployment.md recommends ("One CPU per worker"), where there is a CPU for
        # each worker; the last test checks it.
        pin_workers=can_pin(WORKERS),
    )
    try:
        topo.up()
    except TopologyError as exc:
        topo.down()
        pytest.fail(f"the topology did not come up: {exc}", pytrace=False)
    try:
        yield topo
    finally:
        topo.down()


@pytest.fixture(scope="module")
def account(topology: Topology) -> tuple[SimpleNamespace, str]:
    """A page-identity account in the topology's database: (account, api key)."""
    out = topology.manage(
        "directcall_account", "create", "--name", "Topology", "--no-clevertap", "--identity", "page"
    )
    account_id = re.search(r"accountId:\s*(\S+)", out).group(1)
    api_key = re.search(r"apikey:\s*(\S+)", out).group(1)
    return SimpleNamespace(account_id=account_id), api_key


class Sockets:
    """The signaling sockets one page opened, with the worker nginx gave each."""

    def __init__(self, topology: Topology, user: BrowserUser) -> None:
        self.topology = topology
        self.user = user
        self.workers: list[int] = []
        cdp = user.context.new_cdp_session(user.page)
        cdp.on("Network.webSocketHandshakeResponseReceived", self._handshake)
        cdp.send("Network.enable")

    def _handshake(self, params: dict[str, Any]) -> None:
        headers = {k.lower(): v for k, v in params["response"]["headers"].items()}
        if params["response"]["status"] == 101 and WORKER_HEADER in headers:
            self.workers.append(self.topology.worker_index(headers[WORKER_HEADER]))

    def wait(self, count: int, timeout: float = 15) -> int:
        """The worker of the page's ``count``-th socket (waits for its handshake)."""
        deadline = time.monotonic() + timeout
        while len(self.workers) < count:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.user.name}: {len(self.workers)} socket(s) opened, waited for {count}"
                )
            self.user.page.wait_for_timeout(50)  # lets Playwright deliver the CDP events
        return self.workers[count - 1]


class Scene:
    """The browsers and killed workers of one test; see the ``scene`` fixture."""

    def __init__(self, browser, topology: Topology) -> None:
        self.browser = browser
        self.topology = topology
        self.users: list[BrowserUser] = []
        self.killed: list[int] = []

    def user(self, name: str) -> tuple[BrowserUser, Sockets]:
        """A fresh browser context on the site's https:// origin, its page loaded."""
        context = self.browser.new_context(base_url=self.topology.url, ignore_https_errors=True)
        context.grant_permissions(["microphone"], origin=self.topology.url)
        context.set_default_timeout(15_000)
        context.add_init_script(INIT_SCRIPT)
        page = context.new_page()
        user = BrowserUser(name, context, page)
        user.watch(page)
        self.users.append(user)
        sockets = Sockets(self.topology, user)
        page.goto("/")
        return user, sockets

    def kill_worker(self, index: int) -> None:
        self.topology.kill_worker(index)
        self.killed.append(index)

    def diagnostics(self) -> str:
        """The topology's logs and the browser consoles (printed when a test fails)."""
        parts = [
            f"--- {path}\n{path.read_text(errors='replace')[-4000:]}"
            for path in sorted(Path(self.topology.logs).glob("*.log"))
        ]
        parts += [f"--- browser console: {u.name}\n" + "\n".join(u.console) for u in self.users]
        return "\n".join(parts)


@pytest.fixture
def scene(browser, topology: Topology) -> Iterator[Scene]:
    """Opens browsers and kills workers for a test; afterwards closes the browsers and
    starts the killed workers again (as a supervisor would)."""
    scene = Scene(browser, topology)
    try:
        yield scene
    finally:
        for user in scene.users:
            with contextlib.suppress(Exception):
                user.context.close()
        for index in scene.killed:
            topology.restart_worker(index)


@contextlib.contextmanager
def diagnosed(scene: Scene) -> Iterator[None]:
    """Print the topology's logs and the browser consoles if the block fails."""
    try:
        yield
    except BaseException:
        print(scene.diagnostics())
        raise


def _call_row(topology: Topology, call_id: str) -> tuple[str, str]:
    import psycopg

    with psycopg.connect(topology.database_url.replace("postgres://", "postgresql://", 1)) as conn:
        row = conn.execute(
            "SELECT status, end_reason FROM directcall_call WHERE id = %s", (uuid.UUID(call_id),)
        ).fetchone()
    assert row is not None, f"call {call_id} is not in the topology's database"
    return row[0], row[1]


def _selected_candidate_type(user: BrowserUser) -> str | None:
    return user.page.evaluate(
        """async () => {
          for (const pc of window.__pcs || []) {
            if (pc.connectionState !== "connected") continue;
            const stats = await pc.getStats();
            for (const s of stats.values()) {
              if (s.type === "transport" && s.selectedCandidatePairId) {
                const pair = stats.get(s.selectedCandidatePairId);
                return stats.get(pair.localCandidateId).candidateType;
              }
            }
          }
          return null;
        }"""
    )


def test_the_production_settings_pass_the_deployment_checks(topology: Topology):
    """deploy/settings.py as the workers run it: Django's and directcall's checks are quiet."""
    out = topology.manage("check", "--deploy", "--fail-level", "WARNING")
    assert "no issues" in out, out


def test_requests_are_spread_over_the_workers(topology: Topology):
    """Plain HTTP through nginx reaches every worker (no socket open: round robin on ties)."""
    seen = set()
    for _ in range(2 * topology.workers):
        status, headers, _body = topology.get("/")
        assert status == 200
        seen.add(topology.worker_index(headers["X-DirectCall-Worker"]))
        assert headers["Strict-Transport-Security"]
    assert seen == set(range(topology.workers))
    # Static files come from nginx itself, not from a worker.
    status, headers, body = topology.get("/static/directcall/js/directcall.js")
    assert status == 200 and b"initDirectCall" in body
    assert "X-DirectCall-Worker" not in headers


def _answered_call_across_workers(
    scene: Scene, account, caller: str, callee: str
) -> tuple[BrowserUser, Sockets, BrowserUser, Sockets, str]:
    """Two browsers signed in on different workers; the caller calls, the callee answers,
    audio flows both ways through coturn. Returns both users, their sockets and the call id."""
    acct, key = account
    topology = scene.topology
    jane, jane_sockets = scene.user(caller)
    sam, sam_sockets = scene.user(callee)
    assert jane.page.evaluate("() => window.isSecureContext") is True
    assert sign_in(jane, acct, key, caller) == {"ok": True}
    assert sign_in(sam, acct, key, callee) == {"ok": True}
    session = jane.page.evaluate("() => window.dc.session")
    assert session["websocketUrl"] == topology.ws_url  # wss://, built behind the proxy
    turn = session["iceServers"][0]
    assert turn["username"].endswith(f":{caller}") and turn["credential"]  # ephemeral
    assert jane_sockets.wait(1) != sam_sockets.wait(1), "both sockets went to one worker"

    start_call(jane, callee, "Through the proxy")
    click(sam, "answer")
    expect(screen(jane, "ongoing")).to_be_visible()
    wait_for_audio(jane.page)
    wait_for_audio(sam.page)
    # The media goes through coturn (relay-only ICE, credentials from init).
    assert _selected_candidate_type(jane) == "relay"
    assert _selected_candidate_type(sam) == "relay"
    call_id = jane.page.evaluate("() => window.dc.activeCall.callId")
    assert _call_row(topology, call_id) == ("answered", "")
    return jane, jane_sockets, sam, sam_sockets, call_id


def _wait_until_every_worker_answers(topology: Topology, timeout: float = 15) -> None:
    """Until nginx sends plain requests to every worker again (a restarted one included)."""
    deadline = time.monotonic() + timeout
    seen: set[int] = set()
    while seen != set(range(topology.workers)):
        assert time.monotonic() < deadline, f"nginx sent requests only to workers {seen}"
        _status, headers, _body = topology.get("/")
        seen.add(topology.worker_index(headers["X-DirectCall-Worker"]))


def test_a_call_goes_on_when_a_worker_is_killed_and_the_sdk_reconnects(scene, account):
    topology = scene.topology
    with diagnosed(scene):
        jane, jane_sockets, sam, sam_sockets, call_id = _answered_call_across_workers(
            scene, account, "tutor_jane", "student_sam"
        )
        jane_worker, sam_worker = jane_sockets.wait(1), sam_sockets.wait(1)
        # The worker holding the caller's socket dies without a goodbye.
        scene.kill_worker(jane_worker)
        killed = time.monotonic()
        # Jane's SDK signs in again through nginx, which can only reach the other worker,
        # and gets the call back with its key; Sam is told that his peer is connected.
        assert jane_sockets.wait(2, timeout=RECONNECT_GRACE) == sam_worker
        sam.page.wait_for_function(
            """() => window.dcEvents.some((e) => e[0] === "peer" && e[1].connected)""",
            timeout=RECONNECT_GRACE * 1000,
        )
        took = time.monotonic() - killed
        print(f"\n[topology] worker killed -> call back on the other worker in {took:.2f}s")
        assert took < RECONNECT_GRACE
        states = [e["state"] for e in events(jane, "connection")]
        assert states == ["down", "up"], states
        expect(screen(jane, "ongoing")).to_be_visible()
        # Media is peer-to-peer (through the relay): it flows on.
        audio_keeps_flowing(jane)
        audio_keeps_flowing(sam)
        # The dead worker's presence entries expire and the surviving worker sweeps: the
        # resumed call is not taken for one whose party is gone.
        bound = PRESENCE_TTL + RECONNECT_GRACE + 2 * SWEEP_INTERVAL + MARGIN
        jane.page.wait_for_timeout((bound - (time.monotonic() - killed)) * 1000)
        assert _call_row(topology, call_id) == ("answered", "")
        assert events(jane, "callend") == [] and events(sam, "callend") == []

        # The call still works end to end: the caller hangs up through its new socket.
        click(jane, "hangup")
        assert outcome(jane) == {"resolved": "over"}
        expect(screen(sam, "ongoing")).to_be_hidden()
        assert [e["status"] for e in events(sam, "callend")] == ["over"]
        assert _call_row(topology, call_id) == ("over", "user_hangup")
        jane.assert_no_errors()
        sam.assert_no_errors()


def test_a_call_ends_within_the_bound_when_its_party_does_not_come_back(scene, account):
    topology = scene.topology
    with diagnosed(scene):
        _wait_until_every_worker_answers(topology)
        jane, jane_sockets, sam, sam_sockets, call_id = _answered_call_across_workers(
            scene, account, "tutor_tess", "student_stu"
        )
        sam_worker = sam_sockets.wait(1)
        # From now on Sam's signaling cannot come back (as if his network went with the
        # worker); then the worker holding his socket dies.
        sam.page.route_web_socket("**/ws/directcall/**", lambda ws: ws.close())
        scene.kill_worker(sam_worker)
        killed = time.monotonic()
        bound = PRESENCE_TTL + RECONNECT_GRACE + 2 * SWEEP_INTERVAL
        jane.page.wait_for_function(
            """() => window.dcEvents.some((e) => e[0] === "callend")""",
            timeout=(bound + MARGIN) * 1000,
        )
        took = time.monotonic() - killed
        print(f"\n[topology] worker killed, party gone -> call ended after {took:.2f}s")
        assert RECONNECT_GRACE <= took <= bound + MARGIN
        ends = [(e["status"], e["reason"]) for e in events(jane, "callend")]
        assert ends == [("over", "connection_lost")]
        assert outcome(jane) == {"resolved": "over"}
        assert _call_row(topology, call_id) == ("over", "connection_lost")
        assert jane_sockets.workers == [jane_sockets.wait(1)]  # Jane's socket never moved


def test_each_worker_runs_on_a_cpu_of_its_own(topology: Topology):
    """``pin_workers``: every worker (those killed and started again by the tests above
    included, as a supervisor would) and each thread of it stays on its CPU, scheduled as
    batch; on a machine with one CPU the workers are not pinned and may run anywhere."""
    for index, worker in enumerate(topology.worker_services):
        assert worker.alive()
        cpus = {worker_cpu(index)} if topology.pin_workers else os.sched_getaffinity(0)
        policy = os.SCHED_BATCH if topology.pin_workers else os.sched_getscheduler(0)
        for thread in Path(f"/proc/{worker.pid}/task").iterdir():
            assert os.sched_getaffinity(int(thread.name)) == cpus
            assert os.sched_getscheduler(int(thread.name)) == policy
