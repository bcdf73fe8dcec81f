"""Real multi-process operation: several daphne servers sharing one Redis and one database.

No WebsocketCommunicator and no mocks: each server is a ``daphne`` subprocess running the
demo's ASGI application with ``tests/mp_settings.py`` (short presence/sweep timings). The
tests sign in over HTTP through the real init endpoint, talk to the servers with the
``websockets`` client, SIGKILL servers in the middle of calls and read the outcome from
the shared database. They never touch pytest-django's test database: the servers get a
database of their own (a fresh PostgreSQL database when ``DATABASE_URL`` names PostgreSQL,
otherwise a SQLite file in a temporary directory).

Servers: ``s1`` and ``s2`` carry the full call; ``s3`` is the caller's server that dies
while a call rings; ``s4`` and ``s5`` are callees' servers that die during answered calls
(the callee of ``s5`` comes back on ``s1`` within the grace); ``s6`` dies under a watched
user (who is online). Each test uses its own
victim server and cuids, so the tests do not depend on their order. The last test keeps a
connection idle past channels_redis's 5 s blocking read (the redis-py 8 timeout bug).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from deploy.topology import free_port

REDIS_URL = os.environ.get("REDIS_URL")
if not REDIS_URL:
    pytest.skip(
        "REDIS_URL is not set: several server processes need Redis for presence and the "
        "channel layer (scripts/test.sh always sets it)",
        allow_module_level=True,
    )

import websockets  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from .inbox import FrameInbox  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SETTINGS_MODULE = "tests.mp_settings"
# Must match tests/mp_settings.py.
PRESENCE_TTL = 2.0
SWEEP_INTERVAL = 0.5
RECONNECT_GRACE = 2.0
RING_TIMEOUT = 30.0
MARGIN = 2.5  # scheduling slack on a loaded machine
BLOCKING_READ = 5.0  # channels_redis's BZPOPMIN timeout (RedisChannelLayer.brpop_timeout)

OFFER = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
ANSWER = OFFER.replace("o=- 1 2", "o=- 3 4")
CANDIDATE = {
    "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
    "usernameFragment": "abcd",
}


# -- processes ---------------------------------------------------------------------------------


def _manage(env: dict[str, str], *args: str, timeout: float = 60) -> str:
    """Run ``manage.py`` in a subprocess; return its stdout, fail with its output if it fails."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        pytest.fail(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


@dataclass
class Server:
    """One daphne process on its own port."""

    name: str
    port: int
    log: Path
    proc: subprocess.Popen | None = None
    log_start: int = 0  # where this start's lines begin in the log

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, env: dict[str, str]) -> None:
        self.log_start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "daphne",
                    "-b",
                    "127.0.0.1",
                    "-p",
                    str(self.port),
                    "example_project.asgi:application",
                ],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self, timeout: float = 30) -> None:
        """Poll until this daphne says it listens on its port (bounded); fail if the process
        exits or cannot listen.

        A port that accepts connections is not enough: daphne stays up after a failed
        listen, and the port may answer for some other process."""
        listening = f"Listening on TCP address 127.0.0.1:{self.port}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"daphne {self.name} exited ({self.proc.returncode}):\n{self.tail()}")
            log = self.log.read_bytes()[self.log_start :].decode(errors="replace")
            if "Listen failure" in log:
                pytest.fail(f"daphne {self.name} could not listen on {self.port}:\n{self.tail()}")
            if listening in log:
                return
            time.sleep(0.05)
        pytest.fail(
            f"daphne {self.name} did not listen on {self.port} in {timeout}s:\n{self.tail()}"
        )

    def kill(self) -> None:
        """SIGKILL: no disconnect handlers, no clean-up; the process just vanishes."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class Database:
    """A database for the servers only: fresh PostgreSQL database or a SQLite file."""

    def __init__(self, tmp: Path) -> None:
        url = os.environ.get("DATABASE_URL", "")
        self.postgres = urlsplit(url).scheme in ("postgres", "postgresql", "pgsql")
        if self.postgres:
            import psycopg

            parts = urlsplit(url)
            self.name = f"directcall_mp_{uuid.uuid4().hex[:10]}"
            self.admin_url = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
            self.url = urlunsplit(parts._replace(path=f"/{self.name}"))
            self.dsn = urlunsplit(parts._replace(scheme="postgresql", path=f"/{self.name}"))
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{self.name}"')
        else:
            self.name = str(tmp / "multiprocess.sqlite3")
            self.url = f"sqlite:///{self.name}"

    def call(self, call_id: str) -> tuple[str, str]:
        """``(status, end_reason)`` of a call, read straight from the shared database."""
        if self.postgres:
            import psycopg

            with psycopg.connect(self.dsn) as conn:
                row = conn.execute(
                    "SELECT status, end_reason FROM directcall_call WHERE id = %s",
                    (uuid.UUID(call_id),),
                ).fetchone()
        else:
            with sqlite3.connect(self.name, timeout=20) as conn:
                row = conn.execute(
                    "SELECT status, end_reason FROM directcall_call WHERE id = ?",
                    (uuid.UUID(call_id).hex,),
                ).fetchone()
        assert row is not None, f"call {call_id} is not in the shared database"
        return row[0], row[1]

    def drop(self) -> None:
        if self.postgres:
            import psycopg

            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


@dataclass
class Cluster:
    """The servers, their shared database and the calling account."""

    db: Database
    env: dict[str, str]
    prefix: str
    account_id: str
    api_key: str
    servers: dict[str, Server] = field(default_factory=dict)

    def init(self, server: Server, cuid: str, name: str) -> dict[str, Any]:
        """``POST /directcall/v1/init`` over real HTTP; return the JSON body."""
        body = {
            "accountId": self.account_id,
            "apikey": self.api_key,
            "cuid": cuid,
            "name": name,
            "deviceId": f"dev-{cuid}"[:64],
        }
        request = urllib.request.Request(  # noqa: S310 (always http://127.0.0.1:<port>)
            f"{server.base}/directcall/v1/init",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Origin": server.base},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            assert response.status == 200
            return json.loads(response.read())

    def present(self, cuid: str) -> bool:
        """Whether a presence entry for ``cuid`` is in the servers' cache (Redis)."""
        import redis

        with redis.Redis.from_url(REDIS_URL) as client:
            pattern = f"{self.prefix}:*:directcall:presence:*:{cuid}"
            return any(True for _ in client.scan_iter(match=pattern, count=1000))


def _clean_redis(prefix: str) -> None:
    """Delete this run's keys (channel layer and cache) from the shared Redis."""
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
    except Exception as exc:  # clean-up only; every key has a TTL anyway
        print(f"[multiprocess] could not clean Redis keys {prefix}*: {exc}")


@pytest.fixture(autouse=True)
def clean_cache() -> Iterator[None]:
    """Override conftest's: these tests never use this process's cache, only the servers'.

    (Clearing it between tests would also reach the servers' keys if it flushed the
    whole Redis database.)
    """
    yield


@contextmanager
def start_cluster(
    tmp: Path,
    names: Sequence[str],
    *,
    redis_url: str,
    prefix: str,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Cluster]:
    """Migrate a database of its own, create a page-identity account, start one daphne per name.

    Everything started is stopped (and the database dropped) when the block exits.
    """
    db = Database(tmp)
    servers: dict[str, Server] = {}
    try:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
            "DATABASE_URL": db.url,
            "REDIS_URL": redis_url,
            "DIRECTCALL_MP_PREFIX": prefix,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
            **(extra_env or {}),
        }
        _manage(env, "migrate", "--noinput", "-v", "0")
        out = _manage(
            env,
            "directcall_account",
            "create",
            "--name",
            prefix,
            "--no-clevertap",
            "--identity",
            "page",
        )
        account_id = re.search(r"accountId:\s*(\S+)", out)
        api_key = re.search(r"apikey:\s*(\S+)", out)
        assert account_id and api_key, f"unexpected directcall_account output:\n{out}"
        for name in names:
            servers[name] = Server(name, free_port(), tmp / f"daphne-{name}.log")
            servers[name].start(env)
        with ThreadPoolExecutor(len(servers)) as pool:
            list(pool.map(lambda server: server.wait_ready(), servers.values()))
        yield Cluster(db, env, prefix, account_id.group(1), api_key.group(1), servers)
    finally:
        for server in servers.values():
            server.kill()
        db.drop()


# The servers' channel layer (tests/mp_settings.py): channels_redis's RedisChannelLayer and
# directcall's own pub/sub layer (the production default).
LAYERS = ["redis", "dclayer"]


@pytest.fixture(scope="module", params=LAYERS)
def cluster(request, tmp_path_factory) -> Iterator[Cluster]:
    """Six daphne servers on the shared Redis, with a database of their own."""
    prefix = f"dcmp{uuid.uuid4().hex[:8]}"
    try:
        with start_cluster(
            tmp_path_factory.mktemp("multiprocess"),
            ("s1", "s2", "s3", "s4", "s5", "s6"),
            redis_url=REDIS_URL,
            prefix=prefix,
            extra_env={"DIRECTCALL_MP_LAYER": request.param},
        ) as running:
            yield running
    finally:
        _clean_redis(prefix)


# -- a signaling client over a real socket -------------------------------------------------------


class Peer(FrameInbox):
    """One signed-in device on one server; frames seen while waiting for another are kept."""

    def __init__(self, ws: Any, cuid: str) -> None:
        self.ws = ws
        self.cuid = cuid
        self.inbox: list[dict[str, Any]] = []
        self.close_reason = ""
        self.ready: dict[str, Any] = {}
        # The call keys the server gave this connection (``invited``, the answered state),
        # as the SDK keeps them: a sign-in presenting them takes the calls back.
        self.call_keys: dict[str, str] = {}

    def resume(self) -> list[dict[str, str]]:
        """``auth.resume`` taking this connection's calls back (a reload, another process)."""
        return [{"call_id": c, "call_key": k} for c, k in self.call_keys.items()]

    @classmethod
    async def sign_in(
        cls,
        cluster: Cluster,
        server: Server,
        cuid: str,
        name: str,
        calls: int = 0,
        resume: list[dict[str, str]] | None = None,
    ) -> Peer:
        """Init over HTTP, open the socket, auth; ``calls``: live calls expected in ``ready``."""
        init = await asyncio.to_thread(cluster.init, server, cuid, name)
        url = init["websocketUrl"]
        assert url.startswith(f"ws://127.0.0.1:{server.port}/"), url
        ws = await asyncio.wait_for(connect(url, origin=server.base, open_timeout=5), 10)
        peer = cls(ws, cuid)
        await peer.send(type="auth", token=init["token"], resume=resume or [])
        peer.ready = await peer.next("ready")
        assert peer.ready["cuid"] == cuid and len(peer.ready["calls"]) == calls
        return peer

    async def send(self, **frame: Any) -> None:
        await asyncio.wait_for(self.ws.send(json.dumps(frame)), 5)

    async def _recv_frame(self, timeout: float) -> dict[str, Any] | None:
        try:
            frame = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
        except websockets.ConnectionClosed as exc:
            self.close_reason = str(exc)
            return None
        if frame.get("type") in ("invited", "state") and "call_key" in frame:
            self.call_keys[frame["call_id"]] = frame["call_key"]
        return frame

    def _closed_detail(self) -> str:
        return f"closed ({self.close_reason})"

    async def quiet(self, seconds: float) -> list[dict[str, Any]]:
        """Frames that arrive within ``seconds`` (to assert that nothing did)."""
        got, self.inbox = self.inbox, []
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            try:
                got.append(json.loads(await asyncio.wait_for(self.ws.recv(), remaining)))
            except TimeoutError:
                break
            except websockets.ConnectionClosed:
                break
        return got

    async def close(self) -> None:
        with contextlib.suppress(TimeoutError, OSError, websockets.ConnectionClosed):
            await asyncio.wait_for(self.ws.close(), 5)


def _show_server_logs(
    test: Callable[[Cluster], Awaitable[None]],
) -> Callable[[Cluster], Awaitable[None]]:
    """On failure, print the end of every server's log (shown with the failure)."""

    @functools.wraps(test)
    async def wrapper(cluster: Cluster) -> None:
        try:
            await test(cluster)
        except BaseException:
            for server in cluster.servers.values():
                print(f"\n--- daphne {server.name} ({server.log}) ---\n{server.tail(60)}")
            raise

    return wrapper


def _cuid(role: str) -> str:
    return f"{role}_{uuid.uuid4().hex[:10]}"


async def _ring(caller: Peer, callee: Peer) -> str:
    """Invite, see ``incoming`` on the callee's server, ring; return the call id."""
    await caller.send(
        type="invite", ref="r1", receiver=callee.cuid, context="Tutor is calling", sdp=OFFER
    )
    invited = await caller.next("invited", ref="r1")
    call_id = invited["call_id"]
    incoming = await callee.next("incoming", call_id=call_id)
    assert incoming["caller"]["cuid"] == caller.cuid and incoming["sdp"] == OFFER
    await callee.send(type="ringing", call_id=call_id)
    await caller.next("state", call_id=call_id, status="ringing")
    await callee.next("state", call_id=call_id, status="ringing")
    return call_id


async def _answer(caller: Peer, callee: Peer, call_id: str) -> None:
    await callee.send(type="accept", call_id=call_id, sdp=ANSWER)
    answered = await caller.next("state", call_id=call_id, status="answered")
    assert answered["sdp"] == ANSWER
    assert "sdp" not in await callee.next("state", call_id=call_id, status="answered")


# -- tests --------------------------------------------------------------------------------------


@_show_server_logs
async def test_full_call_across_two_processes(cluster: Cluster) -> None:
    """Caller on s1, callee on s2: every frame crosses processes through Redis."""
    s1, s2 = cluster.servers["s1"], cluster.servers["s2"]
    caller = await Peer.sign_in(cluster, s1, _cuid("caller"), "Jane")
    callee = await Peer.sign_in(cluster, s2, _cuid("callee"), "Sam")
    try:
        call_id = await _ring(caller, callee)
        assert cluster.db.call(call_id)[0] == "ringing"
        await _answer(caller, callee, call_id)
        assert cluster.db.call(call_id)[0] == "answered"

        await caller.send(type="candidates", call_id=call_id, candidates=[CANDIDATE], end=True)
        relayed = await callee.next("candidates", call_id=call_id)
        assert relayed["candidates"] == [CANDIDATE] and relayed["end"] is True
        await callee.send(type="candidates", call_id=call_id, candidates=[CANDIDATE])
        relayed = await caller.next("candidates", call_id=call_id)
        assert relayed["candidates"] == [CANDIDATE] and relayed["end"] is False

        await caller.send(type="hangup", call_id=call_id)
        for peer in (caller, callee):
            over = await peer.next("state", call_id=call_id, status="over")
            assert over["reason"] == "user_hangup" and over["duration"] is not None
        assert cluster.db.call(call_id) == ("over", "user_hangup")
    finally:
        await caller.close()
        await callee.close()


@_show_server_logs
async def test_caller_process_killed_while_ringing(cluster: Cluster) -> None:
    """SIGKILL the caller's server: the callee's server's sweep cancels the call."""
    s3, s2 = cluster.servers["s3"], cluster.servers["s2"]
    caller = await Peer.sign_in(cluster, s3, _cuid("caller"), "Jane")
    callee = await Peer.sign_in(cluster, s2, _cuid("callee"), "Sam")
    try:
        call_id = await _ring(caller, callee)
        s3.kill()
        killed_at = time.monotonic()
        bound = PRESENCE_TTL + SWEEP_INTERVAL + MARGIN
        state = await callee.next("state", timeout=bound, call_id=call_id, status="cancelled")
        took = time.monotonic() - killed_at
        print(
            f"\n[multiprocess] caller's process killed while ringing: callee got cancelled/"
            f"{state['reason']} after {took:.2f}s (bound {bound:.1f}s, ring timeout "
            f"{RING_TIMEOUT:.0f}s)"
        )
        assert state["reason"] == "connection_lost"
        assert took < bound < RING_TIMEOUT
        assert cluster.db.call(call_id) == ("cancelled", "connection_lost")
        # The callee's connection is unharmed and free for a new call.
        await callee.send(type="ping")
        await callee.next("pong")
    finally:
        await caller.close()
        await callee.close()


@_show_server_logs
async def test_callee_process_killed_during_answered_call(cluster: Cluster) -> None:
    """SIGKILL the callee's server mid-call: after the grace the caller's call is over."""
    s2, s4 = cluster.servers["s2"], cluster.servers["s4"]
    caller = await Peer.sign_in(cluster, s2, _cuid("caller"), "Jane")
    callee = await Peer.sign_in(cluster, s4, _cuid("callee"), "Sam")
    try:
        call_id = await _ring(caller, callee)
        await _answer(caller, callee, call_id)
        s4.kill()
        killed_at = time.monotonic()
        bound = PRESENCE_TTL + RECONNECT_GRACE + SWEEP_INTERVAL + MARGIN
        state = await caller.next("state", timeout=bound, call_id=call_id, status="over")
        took = time.monotonic() - killed_at
        print(
            f"\n[multiprocess] callee's process killed mid-call: caller got over/"
            f"{state['reason']} after {took:.2f}s (bound {bound:.1f}s)"
        )
        assert state["reason"] == "connection_lost"
        assert took < bound
        assert cluster.db.call(call_id) == ("over", "connection_lost")
    finally:
        await caller.close()
        await callee.close()


@_show_server_logs
async def test_callee_back_on_another_process_within_grace(cluster: Cluster) -> None:
    """SIGKILL the callee's server mid-call; the callee signs in on s1 within the grace.

    The callee waits until its presence has expired (so the sweeps have seen it gone)
    before it comes back: the call must survive the grace, relay candidates between the
    new pair of processes, and end normally.
    """
    s1, s2, s5 = cluster.servers["s1"], cluster.servers["s2"], cluster.servers["s5"]
    caller = await Peer.sign_in(cluster, s2, _cuid("caller"), "Jane")
    callee_cuid = _cuid("callee")
    callee = await Peer.sign_in(cluster, s5, callee_cuid, "Sam")
    back = None
    try:
        call_id = await _ring(caller, callee)
        await _answer(caller, callee, call_id)
        s5.kill()
        killed_at = time.monotonic()
        # Poll (bounded) until the dead connection's presence entry has expired.
        deadline = killed_at + PRESENCE_TTL + MARGIN
        while cluster.present(callee_cuid):
            assert time.monotonic() < deadline, "the dead process's presence did not expire"
            await asyncio.sleep(0.05)
        expired_after = time.monotonic() - killed_at
        back = await Peer.sign_in(cluster, s1, callee_cuid, "Sam", calls=1, resume=callee.resume())
        back_after = time.monotonic() - killed_at
        print(
            f"\n[multiprocess] callee's presence expired {expired_after:.2f}s after the kill; "
            f"signed in again on another process at {back_after:.2f}s"
        )
        summary = back.ready["calls"][0]
        assert summary["call_id"] == call_id and summary["status"] == "answered"
        assert summary["role"] == "callee" and summary["peer"]["cuid"] == caller.cuid
        await caller.next("peer", call_id=call_id, connected=True)

        await back.send(type="candidates", call_id=call_id, candidates=[CANDIDATE])
        assert (await caller.next("candidates", call_id=call_id))["candidates"] == [CANDIDATE]
        await caller.send(type="candidates", call_id=call_id, candidates=[CANDIDATE], end=True)
        assert (await back.next("candidates", call_id=call_id))["end"] is True

        # Past the grace (counted from the kill) and a few sweeps: nothing ends the call.
        remaining = PRESENCE_TTL + RECONNECT_GRACE + 2 * SWEEP_INTERVAL - back_after
        frames = await caller.quiet(max(remaining, 0) + SWEEP_INTERVAL)
        assert not [f for f in frames if f.get("type") == "state"], frames
        assert cluster.db.call(call_id)[0] == "answered"

        await back.send(type="hangup", call_id=call_id)
        for peer in (caller, back):
            over = await peer.next("state", call_id=call_id, status="over")
            assert over["reason"] == "user_hangup"
        assert cluster.db.call(call_id) == ("over", "user_hangup")
    finally:
        for peer in (caller, callee, back):
            if peer is not None:
                await peer.close()


@_show_server_logs
async def test_idle_connection_keeps_receiving(cluster: Cluster) -> None:
    """A connection idle for longer than the channel layer's blocking read still works.

    channels_redis waits for messages with a blocking BZPOPMIN of 5 s; with redis-py ≥ 8
    (default ``socket_timeout`` 5 s) the client's read timed out first and the consumer
    died with close code 1011 after 5 s without messages, unless the layer's hosts set
    ``socket_timeout``.
    """
    s1, s2 = cluster.servers["s1"], cluster.servers["s2"]
    callee = await Peer.sign_in(cluster, s1, _cuid("callee"), "Sam")
    caller = None
    try:
        frames = await callee.quiet(BLOCKING_READ + 1.5)
        assert frames == [], frames
        await callee.send(type="ping")
        await callee.next("pong")
        caller = await Peer.sign_in(cluster, s2, _cuid("caller"), "Jane")
        call_id = await _ring(caller, callee)
        await caller.send(type="cancel", call_id=call_id)
        for peer in (caller, callee):
            await peer.next("state", call_id=call_id, status="cancelled")
    finally:
        for peer in (callee, caller):
            if peer is not None:
                await peer.close()


async def _changes(peer: Peer, count: int, timeout: float = 5) -> dict[str, str]:
    """``presence`` frames until ``count`` cuids changed; their latest states."""
    changes: dict[str, str] = {}
    while len(changes) < count:
        changes |= (await peer.next("presence", timeout=timeout))["presence"]
    return changes


@_show_server_logs
async def test_watchers_hear_other_processes_and_a_process_that_dies(cluster: Cluster) -> None:
    """Who is online across processes: the watcher is on s1, the watched on s2 and s6.

    Signing out and in, and a call, reach the watcher through the channel layer; s6 is
    SIGKILLed under Alice, who said nothing: her presence expires (PRESENCE_TTL) and the
    watcher's process, looking its watched people up again every PRESENCE_TTL / 2, says so.
    """
    s1, s2, s6 = cluster.servers["s1"], cluster.servers["s2"], cluster.servers["s6"]
    alice, bob = _cuid("alice"), _cuid("bob")
    peers = [
        await Peer.sign_in(cluster, s2, bob, "Bob"),
        await Peer.sign_in(cluster, s1, _cuid("watcher"), "Wendy"),
    ]
    bob_s2, watcher = peers
    try:
        await watcher.send(type="watch", ref="w", cuids=[alice, bob])
        answer = await watcher.next("watching", ref="w")
        assert answer["presence"] == {alice: "offline", bob: "online"}
        # Alice signs in for the first time (her registration is made now).
        alice_s2 = await Peer.sign_in(cluster, s2, alice, "Alice")
        peers.append(alice_s2)
        assert await _changes(watcher, 1) == {alice: "online"}
        await alice_s2.close()  # a logout
        assert await _changes(watcher, 1) == {alice: "offline"}
        alice_s6 = await Peer.sign_in(cluster, s6, alice, "Alice")
        peers.append(alice_s6)
        assert await _changes(watcher, 1) == {alice: "online"}
        call_id = await _ring(bob_s2, alice_s6)
        assert await _changes(watcher, 2) == {alice: "busy", bob: "busy"}
        await bob_s2.send(type="cancel", call_id=call_id)
        assert await _changes(watcher, 2) == {alice: "online", bob: "online"}
        killed = time.monotonic()
        s6.kill()
        assert await _changes(watcher, 1, PRESENCE_TTL * 1.5 + MARGIN) == {alice: "offline"}
        took = time.monotonic() - killed
        print(f"[multiprocess] a killed process's user seen offline after {took:.2f} s")
        assert (await watcher.quiet(0.5)) == []
    finally:
        for peer in peers:
            await peer.close()
