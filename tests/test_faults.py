"""Faults with real processes: Redis restarted under two daphne servers, and clients that
vanish without a close frame (a reset connection; a silent one).

Uses a private redis-server (it gets restarted) and the helpers of test_multiprocess.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from deploy.topology import free_port
from tests import test_multiprocess as mp
from tests.conftest import needs_redis_server

pytestmark = needs_redis_server()
IDLE_TIMEOUT = 3.0
clean_cache = mp.clean_cache  # never touch this process's cache (see test_multiprocess)


class PrivateRedis:
    """A redis-server of our own on a free port, which a test may restart."""

    def __init__(self, tmp) -> None:
        self.port = free_port()
        self.log = tmp / "redis.log"
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [
                shutil.which("redis-server"),
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ],
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 10
        import redis

        while time.monotonic() < deadline:
            try:
                if redis.Redis.from_url(self.url, socket_timeout=0.5).ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)  # polling until it accepts connections
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)


@pytest.fixture(scope="module", params=mp.LAYERS)
def faulty(request, tmp_path_factory) -> Iterator[tuple[mp.Cluster, PrivateRedis]]:
    tmp = tmp_path_factory.mktemp("faults")
    redis_server = PrivateRedis(tmp)
    redis_server.start()
    try:
        with mp.start_cluster(
            tmp,
            ("f1", "f2"),
            redis_url=redis_server.url,
            prefix=f"dcf{uuid.uuid4().hex[:8]}",
            extra_env={
                "DIRECTCALL_MP_IDLE_TIMEOUT": str(IDLE_TIMEOUT),
                "DIRECTCALL_MP_LAYER": request.param,
            },
        ) as cluster:
            yield cluster, redis_server
    finally:
        redis_server.stop()


async def _call(cluster: mp.Cluster, caller_server: str, callee_server: str):
    caller = await mp.Peer.sign_in(cluster, cluster.servers[caller_server], mp._cuid("c"), "Jane")
    callee = await mp.Peer.sign_in(cluster, cluster.servers[callee_server], mp._cuid("e"), "Sam")
    call_id = await mp._ring(caller, callee)
    await mp._answer(caller, callee, call_id)
    return caller, callee, call_id


async def test_a_client_reset_without_a_close_frame(faulty) -> None:
    """TCP reset mid-call: the grace period runs, then the other side hears connection_lost."""
    cluster, _redis = faulty
    caller, callee, call_id = await _call(cluster, "f1", "f2")
    try:
        callee.ws.transport.abort()  # RST: no close frame, no goodbye
        lost_at = time.monotonic()
        peer = await caller.next("peer", call_id=call_id, timeout=5)
        assert peer["connected"] is False
        state = await caller.next(
            "state", call_id=call_id, timeout=mp.RECONNECT_GRACE + mp.SWEEP_INTERVAL + mp.MARGIN
        )
        took = time.monotonic() - lost_at
        print(f"\n[faults] reset client -> connection_lost after {took:.2f}s")
        assert (state["status"], state["reason"]) == ("over", "connection_lost")
        assert took >= mp.RECONNECT_GRACE  # the grace period was honoured
        assert cluster.db.call(call_id) == ("over", "connection_lost")
    finally:
        await caller.close()


async def test_a_silent_client_is_dropped_after_the_idle_timeout(faulty) -> None:
    """A client that stops sending (no frames, no pings) is closed, then the call ends."""
    cluster, _redis = faulty
    caller, callee, call_id = await _call(cluster, "f1", "f2")
    try:
        went_quiet = time.monotonic()
        # The caller keeps pinging; the callee sends nothing more.
        bound = IDLE_TIMEOUT + mp.PRESENCE_TTL + mp.RECONNECT_GRACE + mp.MARGIN
        while time.monotonic() - went_quiet < bound:
            await caller.send(type="ping")
            frames = await caller.quiet(0.5)
            ended = [f for f in frames if f.get("type") == "state" and f["call_id"] == call_id]
            if ended:
                break
        took = time.monotonic() - went_quiet
        print(f"\n[faults] silent client -> call ended after {took:.2f}s")
        assert ended and (ended[0]["status"], ended[0]["reason"]) == ("over", "connection_lost")
        assert took >= IDLE_TIMEOUT
    finally:
        await caller.close()
        await callee.close()


async def test_redis_restarted_clients_reconnect_and_calls_work(faulty) -> None:
    """Redis goes away and comes back empty: servers survive, clients sign in again."""
    cluster, redis_server = faulty
    caller, callee, call_id = await _call(cluster, "f1", "f2")
    await caller.send(type="hangup", call_id=call_id)
    await callee.next("state", call_id=call_id, status="over")
    redis_server.stop()
    restarted_at = time.monotonic()
    redis_server.start()
    # Clients reconnect (as the SDK does on a dropped or broken connection) and call again,
    # across the two processes, through the restarted Redis.
    await caller.close()
    await callee.close()
    deadline = time.monotonic() + 20
    while True:
        try:
            caller, callee, call_id = await _call(cluster, "f1", "f2")
            break
        except (AssertionError, OSError):
            if time.monotonic() > deadline:
                raise
    took = time.monotonic() - restarted_at
    print(f"\n[faults] Redis restarted -> a new cross-process call worked after {took:.2f}s")
    for server in cluster.servers.values():
        assert server.proc.poll() is None, f"{server.name} died:\n{server.tail()}"
    await caller.send(type="hangup", call_id=call_id)
    assert (await callee.next("state", call_id=call_id, status="over"))["reason"] == "user_hangup"
    await caller.close()
    await callee.close()


async def test_a_call_ringing_while_redis_restarts_rings_on_and_can_be_answered(faulty) -> None:
    """Redis restarted empty forgets every presence entry until the connections renew
    theirs: the sweeps meanwhile must not take the ringing caller for gone (they cancelled
    every call ringing then, ``connection_lost``; the soak counted 24 in two restarts)."""
    cluster, redis_server = faulty
    caller = await mp.Peer.sign_in(cluster, cluster.servers["f1"], mp._cuid("c"), "Jane")
    callee = await mp.Peer.sign_in(cluster, cluster.servers["f2"], mp._cuid("e"), "Sam")
    try:
        call_id = await mp._ring(caller, callee)
        redis_server.stop()
        redis_server.start()
        # Several sweeps of both processes, and the connections' presence renewals; both
        # clients ping meanwhile, as the SDK does (IDLE_TIMEOUT is short here).
        frames = []
        for _ in range(3):
            for peer in (caller, callee):
                await peer.send(type="ping")
            frames += await caller.quiet((mp.PRESENCE_TTL + 2 * mp.SWEEP_INTERVAL) / 3)
        ends = [f for f in frames if f.get("type") == "state" and f.get("call_id") == call_id]
        assert ends == [], ends
        assert cluster.db.call(call_id)[0] == "ringing"
        await mp._answer(caller, callee, call_id)
        await caller.send(type="hangup", call_id=call_id)
        state = await callee.next("state", call_id=call_id, status="over")
        assert state["reason"] == "user_hangup"
    finally:
        await caller.close()
        await callee.close()
