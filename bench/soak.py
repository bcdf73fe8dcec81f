"""Soak test: calls placed continuously on three server processes through faults.

``N`` caller/callee pairs (``--pairs``, default 40) of plain WebSocket clients place calls
without pause on three daphne processes that share one private redis-server (channel layer
and cache) and one database (PostgreSQL when ``DATABASE_URL`` names it or one answers on
127.0.0.1:5432, otherwise a SQLite file), with short timings (ring 8 s, presence 2 s,
sweep 0.5 s, reconnect grace 3 s: ``bench/soak_settings.py``). Each call follows a plan
drawn at random: answered then hung up by the caller or by the callee, declined, missed
(the callee rings and never answers), cancelled by the caller; now and then a caller
calls another pair's callee, which is often in a call (``busy``). Meanwhile a daphne
process is SIGKILLed every 30–45 s (and restarted a second later, as a supervisor
would), and Redis is stopped and started again, empty (``--redis-restarts``, default 2).
Clients behave like the browser SDK: on a dropped socket they sign in again through
``POST v1/init`` with jittered exponential backoff (0.5 s doubling to 8 s, ±50 %), on a
live server (as behind a health-checked load balancer), listing in ``auth.resume`` the
calls they were still in. After each fault a probe places one new call across two
processes until it works: the recovery time.

When the load stops, the run settles (every call must reach a final state) and the
clients' records are checked against the database:

1. **No call left live**: none is live after the settle period, and no unanswered call
   stayed live longer than ring timeout + reconnect grace + sweep interval.
2. **What each party was told matches the database**: every final ``state`` frame a
   party received for a call has the row's status and reason; no party heard two
   different ends; no party heard ``answered`` for a call the database never answered.
3. **Every party was told its end** ("never told" must be 0). A party is held to this
   for a call it *knew*: the caller once it got ``invited`` (or the call in
   ``ready.calls``), the callee once it got ``incoming`` (or ``ready.calls``). A party
   whose connection was killed is told on its next sign-in (``ready.calls`` and the
   ``state`` frames that follow, or the final ``state`` answered to ``auth.resume``). A
   caller whose socket died before ``invited`` arrived, or a callee who never got
   ``incoming`` because it was away for the whole ring, never learnt the call's id and
   cannot be told: such parties are counted ("never knew"), not failed. An invite
   answered ``404`` (receiver offline) is no call at all.
4. **No crash, no 500**: no "Exception inside application", no "Task exception was never
   retrieved" and no HTTP 5xx other than the documented 503 (Redis unreachable) in any
   server's log (every incarnation).
5. **Recovery**: after every fault a new cross-process call worked, and after the last
   one within ``--recovery-bound`` seconds (default 30).
6. **No ERR_INTERNAL for a change that was made**: an ``error ERR_INTERNAL`` in reply to
   accept, decline, cancel or hangup while the database shows that very change.

A client gives up waiting for a call's end like the SDK's own bound (the ring timeout or
the talk time, plus a margin, counted only while it is connected), then drops the call from
its resume list. A caller refused ``ERR_OUTGOING_CALL_IN_PROGRESS`` three times in a row
with no call of its own reloads (a new socket without ``resume``), as a user would.

Usage::

    python bench/soak.py                                   # 330 s, 40 pairs, full faults
    python bench/soak.py --duration 90 --pairs 16 --kills 1 --redis-restarts 1
    python bench/soak.py --json report.json --out DIR      # keep the logs in DIR
    python bench/soak.py --database-url sqlite             # SQLite even if PostgreSQL answers

Prints a figures table and a checks table; exits 1 if a check fails. Everything listens
and connects on 127.0.0.1; the shared Redis at 6379 is never touched.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import PY, ROOT, BenchError, Proc, free_port, machine, manage, table
from tests.inbox import FrameInbox

SETTINGS_MODULE = "bench.soak_settings"
ASGI_APP = "bench.asgi:application"
LIVE = ("initiated", "ringing", "answered")
FINAL = ("over", "declined", "missed", "cancelled", "busy", "failed")
PROBE_PREFIX = "probe"
# The SDK's ping interval: the servers' IDLE_TIMEOUT (60 s) must never close a client.
PING_INTERVAL = 15.0
OFFER = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
ANSWER = OFFER.replace("o=- 1 2", "o=- 3 4")
CANDIDATE = {
    "candidate": "candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
    "usernameFragment": "abcd",
}
# The end reasons a party's own frame produces, for "ERR_INTERNAL for a change that was made".
MADE_BY = {
    "decline": ("user_declined",),
    "cancel": ("caller_cancelled", "user_hangup"),
    "hangup": ("user_hangup", "caller_cancelled", "user_declined"),
}


def made(kind: str, row: Row, sent: float, refused: float) -> bool:
    """Whether the database shows the change a frame sent at ``sent`` asked for, made by then."""

    def between(t: float | None) -> bool:
        return t is not None and sent - 0.2 <= t <= refused + 0.2

    if kind == "accept":
        return between(row.answered_at)
    return kind in MADE_BY and row.end_reason in MADE_BY[kind] and between(row.ended_at)


def now() -> float:
    return time.time()


_T0 = time.monotonic()


def say(message: str) -> None:
    """Progress on stderr, with the seconds since the command started."""
    print(f"[soak {time.monotonic() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


def backoff(attempt: int) -> float:
    """The SDK's reconnect delay (signaling.js backoffDelay): 0.5 s doubling to 8 s, ±50 %."""
    return min(8.0, 0.5 * 2**attempt) * (0.5 + random.random())


def pct(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) of values, nearest rank; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def fmt(value: float | None, unit: str = " s") -> str:
    return "–" if value is None else f"{value:.2f}{unit}"


# -- configuration ------------------------------------------------------------------------------


@dataclass
class Timings:
    """The servers' timings (``bench/soak_settings.py`` reads them from the environment)."""

    ring: int = 8
    presence: float = 2.0
    sweep: float = 0.5
    grace: float = 3.0

    def env(self) -> dict[str, str]:
        return {
            "SOAK_RING_TIMEOUT": str(self.ring),
            "SOAK_PRESENCE_TTL": str(self.presence),
            "SOAK_SWEEP_INTERVAL": str(self.sweep),
            "SOAK_RECONNECT_GRACE": str(self.grace),
        }


@dataclass
class Config:
    """One soak run."""

    duration: float = 330.0
    pairs: int = 40
    servers: int = 3
    kill_min: float = 30.0
    kill_max: float = 45.0
    kills: int | None = None  # at most this many (None: every kill_min..kill_max seconds)
    redis_restarts: int = 2
    redis_down: float = 1.0
    first_fault: float = 20.0
    quiet_tail: float = 25.0  # no fault in the last seconds of the load
    restart_delay: float = 1.0
    recovery_bound: float = 30.0
    intrude: float = 0.06  # share of calls to another pair's callee (often busy)
    seed: int | None = None
    database_url: str | None = None
    out: Path | None = None
    timings: Timings = field(default_factory=Timings)


@dataclass
class Plan:
    """What the two parties of one call will do."""

    kind: str  # answer | decline | miss | cancel
    hangup_by: str = ""  # caller | callee (answered calls)
    answer_after: float = 0.0
    talk: float = 0.0
    decline_after: float = 0.0
    cancel_after: float = 0.0
    cancel_frame: str = "cancel"


def draw_plan(rng: random.Random, intrusion: bool) -> Plan:
    if intrusion:
        return Plan("cancel", cancel_after=rng.uniform(1.0, 3.0), cancel_frame="hangup")
    roll = rng.random()
    if roll < 0.30:
        return Plan("answer", "caller", rng.uniform(0.3, 2.0), rng.uniform(0.5, 4.0))
    if roll < 0.55:
        return Plan("answer", "callee", rng.uniform(0.3, 2.0), rng.uniform(0.5, 4.0))
    if roll < 0.70:
        return Plan("decline", decline_after=rng.uniform(0.3, 2.0))
    if roll < 0.85:
        return Plan("miss")
    return Plan(
        "cancel",
        cancel_after=rng.uniform(0.5, 3.0),
        cancel_frame=rng.choice(["cancel", "cancel", "hangup"]),
    )


# -- infrastructure -----------------------------------------------------------------------------


class PrivateRedis:
    """A redis-server of the soak's own on a free port (restarted empty: no persistence)."""

    def __init__(self, log: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise BenchError("the soak needs redis-server on the PATH (Debian: redis-server)")
        self.binary = binary
        self.port = free_port()
        self.log = log
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15) -> None:
        import redis

        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
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
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with redis.Redis.from_url(self.url, socket_timeout=0.5) as client:
                    if client.ping():
                        return
            except redis.ConnectionError:
                time.sleep(0.05)  # polling until it accepts connections
        raise BenchError(f"redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _postgres_url(explicit: str | None) -> str | None:
    """PostgreSQL to use: the explicit URL (anything else: SQLite), else DATABASE_URL if it
    names PostgreSQL, else one answering on 127.0.0.1:5432; None for SQLite."""

    def postgres(url: str) -> bool:
        return urlsplit(url).scheme in ("postgres", "postgresql", "pgsql")

    if explicit:
        return explicit if postgres(explicit) else None
    if postgres(os.environ.get("DATABASE_URL") or ""):
        return os.environ["DATABASE_URL"]
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=1):
            pass
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", connect_timeout=3):
            return "postgres://postgres@127.0.0.1:5432/postgres"
    except Exception:
        return None


@dataclass
class Row:
    """One call as the database has it."""

    id: str
    status: str
    end_reason: str
    created_at: float
    answered_at: float | None
    ended_at: float | None
    caller: str
    callee: str


class SoakDatabase:
    """A fresh database for the servers: a PostgreSQL database, or a SQLite file."""

    def __init__(self, tmp: Path, explicit: str | None) -> None:
        pg = _postgres_url(explicit)
        self.postgres = pg is not None
        if self.postgres:
            parts = urlsplit(pg)
            self.name = f"dcsoak_{uuid.uuid4().hex[:10]}"
            self.admin = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
            self.url = urlunsplit(parts._replace(path=f"/{self.name}"))
            self.dsn = urlunsplit(parts._replace(scheme="postgresql", path=f"/{self.name}"))
            self._admin(f'CREATE DATABASE "{self.name}"')
        else:
            self.name = str(tmp / "soak.sqlite3")
            self.url = f"sqlite:///{self.name}"

    @property
    def kind(self) -> str:
        return "PostgreSQL" if self.postgres else "SQLite"

    def _admin(self, sql: str) -> None:
        import psycopg

        with psycopg.connect(self.admin, autocommit=True) as conn:
            conn.execute(sql)

    def calls(self) -> list[Row]:
        """Every call with its parties' cuids."""
        sql = (
            "SELECT c.id, c.status, c.end_reason, c.created_at, c.answered_at, c.ended_at, "
            "a.cuid, b.cuid FROM directcall_call c "
            "JOIN directcall_registration a ON a.id = c.caller_id "
            "JOIN directcall_registration b ON b.id = c.callee_id"
        )
        if self.postgres:
            import psycopg

            with psycopg.connect(self.dsn) as conn:
                raw = conn.execute(sql).fetchall()
        else:
            with contextlib.closing(sqlite3.connect(self.name, timeout=30)) as conn:
                raw = conn.execute(sql).fetchall()
        return [
            Row(
                str(uuid.UUID(str(r[0]))),
                r[1],
                r[2] or "",
                _epoch(r[3]),
                _epoch(r[4]),
                _epoch(r[5]),
                r[6],
                r[7],
            )
            for r in raw
        ]

    def drop(self) -> None:
        if self.postgres:
            with contextlib.suppress(Exception):
                self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def _epoch(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):  # SQLite: naive UTC text
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


@dataclass
class Server:
    """One daphne process; ``alive`` is what a health-checked load balancer would see."""

    name: str
    proc: Proc
    alive: bool = False
    incarnation: int = 0

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.proc.port}"

    def start(self) -> None:
        self.proc.start(timeout=60)
        self.incarnation += 1
        self.alive = True

    def kill(self) -> None:
        """SIGKILL: no disconnect handlers, no clean-up."""
        self.alive = False
        if self.proc.proc is not None and self.proc.proc.poll() is None:
            self.proc.proc.kill()
            self.proc.proc.wait(10)


# -- what the clients saw -----------------------------------------------------------------------


@dataclass
class Heard:
    """A ``state`` frame (or a status in ``ready.calls``) a party received."""

    status: str
    reason: str
    t: float
    conn: int
    via: str  # state | ready


@dataclass
class View:
    """One party's knowledge of one call."""

    call_id: str
    role: str
    knew_at: float
    knew_via: str  # invited | incoming | ready
    knew_conn: int
    heard: list[Heard] = field(default_factory=list)
    driving: bool = False
    gave_up: float | None = None
    poke: asyncio.Event = field(default_factory=asyncio.Event, repr=False)

    @property
    def finals(self) -> list[Heard]:
        return [h for h in self.heard if h.status in FINAL]

    @property
    def final(self) -> Heard | None:
        finals = self.finals
        return finals[0] if finals else None

    @property
    def answered(self) -> bool:
        return any(h.status == "answered" for h in self.heard)


@dataclass
class Segment:
    """One signed-in connection of a party."""

    server: str
    up: float
    down: float | None = None
    code: int | None = None


class Dropped(Exception):
    """The socket closed while a reply was awaited."""


class ConnectFailed(Exception):
    """Init or sign-in did not work this time."""


# -- a client like the SDK ------------------------------------------------------------------------


class Party:
    """One signed-in device: reconnects with backoff, resumes its calls, follows plans."""

    def __init__(self, soak: Soak, cuid: str, role: str) -> None:
        self.soak = soak
        self.cuid = cuid
        self.role = role
        self.device = f"dev-{cuid}"
        # What the SDK keeps: the device key the server issued (localStorage), and the call
        # keys of the calls this page holds (sessionStorage), presented at every sign-in.
        self.device_key: str | None = None
        self.call_keys: dict[str, str] = {}
        self.ws: Any = None
        self.up = asyncio.Event()
        self.up_since = 0.0
        self.conn = 0
        self.segments: list[Segment] = []
        self.views: dict[str, View] = {}
        self.replies: dict[str, asyncio.Future] = {}
        self.drivers: dict[str, asyncio.Task] = {}
        self.pending_plan: Plan | None = None
        self.closing = False
        self.refs = itertools.count(1)
        self.stats: Counter[str] = Counter()
        self.errors: list[dict[str, Any]] = []
        self.sent: dict[tuple[str, str], float] = {}  # (call_id, type) -> when it was sent
        self.unsolicited: list[dict[str, Any]] = []

    # connection --------------------------------------------------------------------------------

    async def run(self) -> None:
        """Stay signed in until closed, like the SDK's Signaling."""
        import websockets

        attempt = 0
        while not self.closing:
            server = self.soak.pick_server()
            if server is None:
                await asyncio.sleep(backoff(attempt))
                attempt += 1
                continue
            try:
                ws, ready = await self._sign_in(server)
            except ConnectFailed:
                self.stats["sign_in_failed"] += 1
                await asyncio.sleep(backoff(attempt))
                attempt += 1
                continue
            attempt = 0
            segment = Segment(server.name, now())
            self.segments.append(segment)
            self.ws = ws
            self.conn += 1
            self.up_since = time.monotonic()
            pinger = asyncio.create_task(self._ping(ws))
            self._on_frame(ready)
            self.up.set()
            try:
                async for text in ws:
                    self._received(text)
            except websockets.ConnectionClosed:
                pass
            finally:
                pinger.cancel()
                self.up.clear()
                self.ws = None
                segment.down = now()
                segment.code = ws.close_code
                for future in self.replies.values():
                    if not future.done():
                        future.set_exception(Dropped())
                self.replies.clear()
                for view in self.views.values():
                    view.poke.set()
            if segment.code in (4001, 4002, 4003, 4008):
                # The SDK would stop for 4001/4002/4003; the soak counts it and goes on.
                self.stats[f"closed_{segment.code}"] += 1
            if self.closing:
                break
            await asyncio.sleep(backoff(attempt))
            attempt += 1

    async def _sign_in(self, server: Server) -> tuple[Any, dict[str, Any]]:
        from websockets.asyncio.client import connect

        status, body = await self.soak.init(server, self.cuid, self.device)
        if status != 200 or not body:
            raise ConnectFailed(status)
        ws = None
        try:
            ws = await asyncio.wait_for(
                connect(body["websocketUrl"], origin=server.base, open_timeout=10), 15
            )
            held = [cid for cid, v in self.views.items() if v.driving and v.final is None]
            resume = [
                {"call_id": cid, "call_key": self.call_keys[cid]} if cid in self.call_keys else cid
                for cid in held[-8:]
            ]
            auth = {"type": "auth", "token": body["token"], "resume": resume}
            if self.device_key:
                auth["device_key"] = self.device_key
            await ws.send(json.dumps(auth))
            frame = json.loads(await asyncio.wait_for(ws.recv(), 15))
        except Exception as exc:
            self.stats[f"sign_in_{type(exc).__name__}"] += 1
            if ws is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(ws.close(), 5)
            raise ConnectFailed(type(exc).__name__) from None
        if frame.get("type") != "ready":
            self.stats[f"auth_{frame.get('code')}"] += 1
            with contextlib.suppress(Exception):
                await asyncio.wait_for(ws.close(), 5)
            raise ConnectFailed(frame.get("code"))
        return ws, frame

    async def _ping(self, ws: Any) -> None:
        with contextlib.suppress(Exception):
            while True:
                await asyncio.sleep(PING_INTERVAL)
                await ws.send('{"type":"ping"}')

    async def close(self) -> None:
        self.closing = True
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)

    async def reload(self) -> None:
        """Drop the socket as a page reload would; the run loop signs in again."""
        self.stats["reloads"] += 1
        if self.ws is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.ws.close(), 5)

    async def send(self, frame: dict[str, Any]) -> bool:
        ws = self.ws
        if ws is None:
            return False
        try:
            await asyncio.wait_for(ws.send(json.dumps(frame)), 10)
        except Exception:
            return False
        if "call_id" in frame:
            self.sent[(frame["call_id"], frame["type"])] = now()
        return True

    # frames --------------------------------------------------------------------------------

    def _know(self, call_id: str, role: str, via: str) -> View:
        view = self.views.get(call_id)
        if view is None:
            view = self.views[call_id] = View(call_id, role, now(), via, self.conn)
        return view

    def _received(self, text: str | bytes) -> None:
        try:
            self._on_frame(json.loads(text))
        except Exception as exc:
            # A frame this client cannot read is a protocol finding, not a reason to stop.
            self.stats["unreadable_frames"] += 1
            self.unsolicited.append({"unreadable": str(text)[:300], "error": repr(exc)})

    def _on_frame(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        self.stats[f"rx_{kind}"] += 1
        if isinstance(frame.get("call_key"), str) and kind in ("invited", "state"):
            self.call_keys[frame["call_id"]] = frame["call_key"]
        if kind == "ready" and isinstance(frame.get("device_key"), str):
            self.device_key = frame["device_key"]
        if kind == "ready":
            for summary in frame.get("calls", []):
                view = self._know(summary["call_id"], summary["role"], "ready")
                view.heard.append(Heard(summary["status"], "", now(), self.conn, "ready"))
                view.poke.set()
                self._drive(view, summary["peer"]["cuid"])
        elif kind == "invited":
            view = self._know(frame["call_id"], "caller", "invited")
            self.soak.plans.setdefault(frame["call_id"], self.pending_plan)
            self._reply(frame)
            self._drive(view, self.cuid)
        elif kind == "incoming":
            view = self._know(frame["call_id"], "callee", "incoming")
            self._drive(view, frame["caller"]["cuid"])
        elif kind == "state":
            view = self.views.get(frame["call_id"])
            if view is None:
                self.unsolicited.append(frame)
                return
            view.heard.append(
                Heard(frame["status"], frame.get("reason") or "", now(), self.conn, "state")
            )
            view.poke.set()
        elif kind == "error":
            self.errors.append({**frame, "t": now()})
            self._reply(frame)
            view = self.views.get(frame.get("call_id") or "")
            if view is not None:
                view.poke.set()

    def _reply(self, frame: dict[str, Any]) -> None:
        future = self.replies.pop(str(frame.get("ref")), None)
        if future is not None and not future.done():
            future.set_result(frame)

    def _drive(self, view: View, caller_cuid: str) -> None:
        if view.call_id in self.drivers or view.final is not None or view.gave_up:
            return
        plan = self.soak.plan_for(view.call_id, caller_cuid)
        driver = self._drive_caller if view.role == "caller" else self._drive_callee
        view.driving = True
        task = asyncio.create_task(driver(view, plan))
        self.drivers[view.call_id] = task

        def done(_task: asyncio.Task) -> None:
            view.driving = False
            if view.final is None:
                view.gave_up = now()
                self.stats["gave_up"] += 1

        task.add_done_callback(done)

    # waiting ---------------------------------------------------------------------------------

    async def wait(self, view: View, done: Callable[[], bool], seconds: float) -> bool:
        """Wait until ``done()``; the clock runs only while signed in (the SDK's bound).

        Gives up ``seconds`` after the start once connected for 3 s; never later than
        ``seconds + 120``.
        """
        start = time.monotonic()
        while not done():
            t = time.monotonic()
            if t - start > seconds + 120:
                return False
            if t - start > seconds and self.up.is_set() and t - self.up_since > 3:
                return False
            view.poke.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(view.poke.wait(), 0.5)
        return True

    async def send_for(self, view: View, frame: dict[str, Any], seconds: float = 30) -> None:
        """Send a frame of the call once signed in, unless the call has ended meanwhile."""
        deadline = time.monotonic() + seconds
        while view.final is None and time.monotonic() < deadline:
            if self.up.is_set():
                if await self.send(frame):
                    return
                await asyncio.sleep(0.2)  # the socket is closing: let the run loop see it
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.up.wait(), max(0.1, deadline - time.monotonic()))

    # the two roles ---------------------------------------------------------------------------

    async def _talk(self, view: View, plan: Plan, mine: bool) -> None:
        cid = view.call_id
        await self.send_for(view, {"type": "candidates", "call_id": cid, "candidates": [CANDIDATE]})
        # The other party hangs up too if the call is still on well after the planned end
        # (its peer gave up or never heard "answered"): every answered call ends.
        await self.wait(view, lambda: view.final is not None, plan.talk + (0 if mine else 8))
        if view.final is None:
            await self.send_for(view, {"type": "hangup", "call_id": cid})

    async def _drive_caller(self, view: View, plan: Plan) -> None:
        ring = float(self.soak.config.timings.ring)
        ended = lambda: view.final is not None  # noqa: E731
        if plan.kind == "cancel":
            await self.wait(view, lambda: ended() or view.answered, plan.cancel_after)
            if not ended() and not view.answered:
                await self.send_for(view, {"type": plan.cancel_frame, "call_id": view.call_id})
        await self.wait(view, lambda: ended() or view.answered, ring + 20)
        if view.answered and not ended():
            await self._talk(view, plan, plan.hangup_by == "caller")
        await self.wait(view, ended, plan.talk + 20)

    async def _drive_callee(self, view: View, plan: Plan) -> None:
        ring = float(self.soak.config.timings.ring)
        cid = view.call_id
        ended = lambda: view.final is not None  # noqa: E731
        if view.knew_via != "ready" or not view.answered:
            await self.send_for(view, {"type": "ringing", "call_id": cid}, seconds=5)
        if plan.kind == "answer" and not view.answered:
            await self.wait(view, ended, plan.answer_after)
            if not ended():
                await self.send_for(view, {"type": "accept", "call_id": cid, "sdp": ANSWER})
        elif plan.kind == "decline":
            await self.wait(view, ended, plan.decline_after)
            if not ended():
                await self.send_for(view, {"type": "decline", "call_id": cid})
        await self.wait(view, lambda: ended() or view.answered, ring + 20)
        if view.answered and not ended():
            await self._talk(view, plan, plan.hangup_by == "callee")
        await self.wait(view, ended, plan.talk + 20)

    async def place_calls(self) -> None:
        """The caller's loop: one call at a time, until the soak stops."""
        rng = self.soak.rng
        refused_in_a_row = 0
        while not self.soak.stopping:
            active = [t for t in self.drivers.values() if not t.done()]
            if active:
                await asyncio.wait(active, timeout=1)
                continue
            if not self.up.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.up.wait(), 1)
                continue
            await asyncio.sleep(rng.uniform(0.5, 2.0))
            if self.soak.stopping or not self.up.is_set():
                continue
            intrusion = rng.random() < self.soak.config.intrude
            target = self.soak.target_for(self, intrusion)
            plan = draw_plan(rng, intrusion)
            self.pending_plan = plan
            ref = str(next(self.refs))
            future = asyncio.get_running_loop().create_future()
            self.replies[ref] = future
            invite = {
                "type": "invite",
                "ref": ref,
                "receiver": target,
                "context": "Soak test call",
                "sdp": OFFER,
            }
            self.stats["invites"] += 1
            if not await self.send(invite):
                self.replies.pop(ref, None)
                continue
            try:
                reply = await asyncio.wait_for(future, 20)
            except Dropped:
                self.stats["invite_dropped"] += 1
                # Wait for the next sign-in: ready.calls shows the call if it was made.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.up.wait(), 30)
                await asyncio.sleep(0.5)
                self.pending_plan = None
                continue
            except TimeoutError:
                self.stats["invite_unanswered"] += 1
                self.replies.pop(ref, None)
                continue
            if reply["type"] == "invited":
                refused_in_a_row = 0
                self.stats["invited_intrusion" if intrusion else "invited"] += 1
                continue
            code = str(reply.get("code"))
            self.stats[f"invite_{code}"] += 1
            if code == "ERR_OUTGOING_CALL_IN_PROGRESS":
                refused_in_a_row += 1
                if refused_in_a_row >= 3:
                    refused_in_a_row = 0
                    await self.reload()
            await asyncio.sleep(rng.uniform(0.5, 1.5))


# -- the probe: does a new call work? ---------------------------------------------------------


class ProbePeer(FrameInbox):
    """A fresh sign-in for one probe call (no reconnects)."""

    failure = ConnectFailed

    def __init__(self, ws: Any, cuid: str) -> None:
        self.ws = ws
        self.cuid = cuid
        self.inbox: list[dict[str, Any]] = []

    async def _recv_frame(self, timeout: float) -> dict[str, Any] | None:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    def _refuses(self, frame: dict[str, Any]) -> bool:
        return frame.get("type") == "error"

    async def send(self, **frame: Any) -> None:
        await asyncio.wait_for(self.ws.send(json.dumps(frame)), 5)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.ws.close(), 5)


# -- the run ------------------------------------------------------------------------------------


class Soak:
    """Servers, Redis, the database, the clients, the faults and the records."""

    def __init__(self, config: Config, tmp: Path) -> None:
        self.config = config
        self.tmp = tmp
        self.rng = random.Random(config.seed)
        self.servers: list[Server] = []
        self.parties: dict[str, Party] = {}
        self.callers: list[Party] = []
        self.callees: list[Party] = []
        self.plans: dict[str, Plan | None] = {}
        self.stopping = False
        self.init_statuses: Counter[str] = Counter()
        self.faults: list[dict[str, Any]] = []
        self.probes: list[dict[str, Any]] = []
        self.probe_no = itertools.count(1)
        self.started = 0.0
        self.load_ended = 0.0
        self.closed_at = 0.0
        self.tasks: set[asyncio.Task] = set()
        self.schedule_cache: list[tuple[float, str]] = []
        self.account_id = ""
        self.api_key = ""

    # set-up ---------------------------------------------------------------------------------

    def setup(self) -> None:
        self.redis = PrivateRedis(self.tmp / "redis.log")
        self.redis.start()
        self.db = SoakDatabase(self.tmp, self.config.database_url)
        self.env = {
            **os.environ,
            **self.config.timings.env(),
            "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
            "DATABASE_URL": self.db.url,
            "REDIS_URL": self.redis.url,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
        }
        self.env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        say(f"database: {self.db.kind} ({self.db.name}); Redis on port {self.redis.port}")
        manage(self.env, "migrate", "--noinput", "-v", "0")
        out = manage(
            self.env,
            "directcall_account",
            "create",
            "--name",
            "Soak",
            "--no-clevertap",
            "--identity",
            "page",
        )
        account_id = re.search(r"accountId:\s*(\S+)", out)
        api_key = re.search(r"apikey:\s*(\S+)", out)
        if not (account_id and api_key):
            raise BenchError(f"unexpected directcall_account output:\n{out}")
        self.account_id, self.api_key = account_id.group(1), api_key.group(1)
        for index in range(self.config.servers):
            name = f"s{index + 1}"
            port = free_port()
            cmd = [PY, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), ASGI_APP]
            self.servers.append(
                Server(name, Proc(name, cmd, port, self.tmp / f"{name}.log", self.env))
            )
        with ThreadPoolExecutor(len(self.servers)) as pool:
            list(pool.map(lambda server: server.start(), self.servers))
        say(f"{len(self.servers)} servers listening; logs in {self.tmp}")

    def teardown(self) -> None:
        for server in self.servers:
            server.alive = False
            with contextlib.suppress(Exception):
                server.proc.stop()
        with contextlib.suppress(Exception):
            self.redis.stop()
        self.db.drop()

    # helpers the clients use ----------------------------------------------------------------

    def pick_server(self) -> Server | None:
        alive = [s for s in self.servers if s.alive]
        return self.rng.choice(alive) if alive else None

    def target_for(self, caller: Party, intrusion: bool) -> str:
        index = self.callers.index(caller)
        if intrusion and len(self.callees) > 1:
            others = [p for i, p in enumerate(self.callees) if i != index]
            return self.rng.choice(others).cuid
        return self.callees[index].cuid

    def plan_for(self, call_id: str, caller_cuid: str) -> Plan:
        plan = self.plans.get(call_id)
        if plan is None:
            caller = self.parties.get(caller_cuid)
            plan = caller.pending_plan if caller is not None else None
            if plan is not None:
                self.plans[call_id] = plan
        return plan or Plan("wait")

    def _init_sync(self, server: Server, cuid: str, device: str) -> tuple[int | str, Any]:
        body = {
            "accountId": self.account_id,
            "apikey": self.api_key,
            "cuid": cuid,
            "name": cuid.replace("_", " ").title(),
            "deviceId": device[:64],
        }
        request = urllib.request.Request(  # noqa: S310 (always http://127.0.0.1:<port>)
            f"{server.base}/directcall/v1/init",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Origin": server.base},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=15) as response:  # noqa: S310
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, None
        except (OSError, ValueError) as exc:
            return type(exc).__name__, None

    async def init(self, server: Server, cuid: str, device: str) -> tuple[int | str, Any]:
        """``POST v1/init`` (in a thread); counts the statuses."""
        status, body = await asyncio.to_thread(self._init_sync, server, cuid, device)
        self.init_statuses[str(status)] += 1
        return status, body

    # faults ----------------------------------------------------------------------------------

    def schedule(self) -> list[tuple[float, str]]:
        """Fault times (seconds from the start): kills, and Redis restarts between them."""
        c = self.config
        last = c.duration - c.quiet_tail
        kills: list[float] = []
        t = c.first_fault
        while t <= last and (c.kills is None or len(kills) < c.kills):
            kills.append(t)
            t += self.rng.uniform(c.kill_min, c.kill_max)
        bounds = [*kills, last + 15] if kills else [c.first_fault - 15, last + 15]
        gaps = list(itertools.pairwise(bounds))
        restarts: list[float] = []
        if c.redis_restarts and gaps:
            for i in range(c.redis_restarts):
                lo, hi = gaps[min(len(gaps) - 1, (i * len(gaps)) // c.redis_restarts)]
                candidate = (lo + hi) / 2
                while candidate in restarts:
                    candidate += 5
                restarts.append(min(candidate, last))
        faults = [(k, "kill") for k in kills] + [(r, "redis") for r in restarts]
        return sorted(faults)

    async def run_faults(self) -> None:
        victims = itertools.cycle(self.servers)
        for at, kind in self.schedule_cache:
            delay = self.started + at - now()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.stopping:
                break
            if kind == "kill":
                server = next(victims)
                killed = now()
                await asyncio.to_thread(server.kill)
                await asyncio.sleep(self.config.restart_delay)
                await asyncio.to_thread(server.start)
                fault = {"kind": "kill", "server": server.name, "t": killed, "back": now()}
                say(f"SIGKILLed {server.name}; back after {fault['back'] - killed:.1f} s")
                self.faults.append(fault)
                self._background(self.probe(fault, server))
            else:
                stopped = now()
                await asyncio.to_thread(self.redis.stop)
                await asyncio.sleep(self.config.redis_down)
                await asyncio.to_thread(self.redis.start)
                fault = {"kind": "redis", "t": stopped, "back": now()}
                say(f"Redis restarted (down {fault['back'] - stopped:.1f} s)")
                self.faults.append(fault)
                self._background(self.probe(fault, None))

    def _settled(self, rows: dict[str, Row]) -> bool:
        """No call is live, and every party still waiting for an end had its chance."""
        if any(r.status in LIVE for r in rows.values()):
            return False
        for party in self.parties.values():
            for view in party.views.values():
                if not view.driving or view.final is not None:
                    continue
                row = rows.get(view.call_id)
                if row is None or row.ended_at is None:
                    return False
                if not party.up.is_set() or now() - max(row.ended_at, party.segments[-1].up) < 10:
                    return False
        return True

    def _background(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _probe_peer(self, server: Server, cuid: str) -> ProbePeer:
        from websockets.asyncio.client import connect

        status, body = await self.init(server, cuid, f"dev-{cuid}")
        if status != 200 or not body:
            raise ConnectFailed(f"init {status}")
        ws = await asyncio.wait_for(
            connect(body["websocketUrl"], origin=server.base, open_timeout=5), 10
        )
        peer = ProbePeer(ws, cuid)
        await peer.send(type="auth", token=body["token"])
        await peer.next("ready", timeout=10)
        return peer

    async def probe_once(
        self, caller_server: Server, callee_server: Server, steps: dict[str, float]
    ) -> None:
        """One whole call across two processes: invite, ring, answer, hang up, both told.

        ``steps`` gets the seconds each step took (to explain a slow recovery).
        """
        n = next(self.probe_no)
        caller = callee = None
        mark = time.monotonic()

        def step(name: str) -> None:
            nonlocal mark
            steps[name] = round(time.monotonic() - mark, 3)
            mark = time.monotonic()

        try:
            caller = await self._probe_peer(caller_server, f"{PROBE_PREFIX}_{n}_caller")
            callee = await self._probe_peer(callee_server, f"{PROBE_PREFIX}_{n}_callee")
            step("sign_in")
            await caller.send(
                type="invite", ref="p", receiver=callee.cuid, context="Probe", sdp=OFFER
            )
            call_id = (await caller.next("invited"))["call_id"]
            await callee.next("incoming", call_id=call_id)
            step("invite")
            await callee.send(type="ringing", call_id=call_id)
            await callee.send(type="accept", call_id=call_id, sdp=ANSWER)
            await caller.next("state", call_id=call_id, status="answered")
            step("answer")
            await caller.send(type="hangup", call_id=call_id)
            await caller.next("state", call_id=call_id, status="over")
            await callee.next("state", call_id=call_id, status="over")
            step("hangup")
        finally:
            for peer in (caller, callee):
                if peer is not None:
                    await peer.close()

    async def probe(self, fault: dict[str, Any] | None, through: Server | None) -> None:
        """Retry a probe call until one works (bounded); record how long it took."""
        started = now()
        since = fault["back"] if fault else started
        attempts = 0
        error = first_error = ""
        while now() - started < 90:
            attempts += 1
            alive = [s for s in self.servers if s.alive]
            first = through if through is not None and through.alive else None
            if first is None and alive:
                first = self.rng.choice(alive)
            others = [s for s in alive if s is not first]
            if first is not None and others:
                steps: dict[str, float] = {}
                try:
                    await asyncio.wait_for(
                        self.probe_once(first, self.rng.choice(others), steps), 30
                    )
                    done = now()
                    say(
                        f"probe call worked {done - since:.1f} s after "
                        + (f"the {fault['kind']} fault was over" if fault else "sign-in")
                    )
                    self.probes.append(
                        {
                            "after": fault["kind"] if fault else "start",
                            "fault_t": fault["t"] if fault else None,
                            "ok": True,
                            "attempts": attempts,
                            "from_fault": done - fault["t"] if fault else None,
                            "from_back": done - since,
                            "steps": steps,
                            "first_error": first_error,
                        }
                    )
                    return
                except Exception as exc:
                    error = f"{type(exc).__name__}: {exc} after {steps}"
                    first_error = first_error or error
            await asyncio.sleep(0.5)
        self.probes.append(
            {
                "after": fault["kind"] if fault else "start",
                "fault_t": fault["t"] if fault else None,
                "ok": False,
                "attempts": attempts,
                "error": error,
            }
        )

    # the load ---------------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        loop.set_default_executor(ThreadPoolExecutor(48))
        for i in range(self.config.pairs):
            for role, group in (("caller", self.callers), ("callee", self.callees)):
                party = Party(self, f"soak_{role}_{i:03d}", role)
                group.append(party)
                self.parties[party.cuid] = party
        self.schedule_cache = self.schedule()
        runners = [asyncio.create_task(p.run()) for p in self.parties.values()]
        # Everyone signed in before the clock starts (bounded).
        deadline = time.monotonic() + 120
        while not all(p.up.is_set() for p in self.parties.values()):
            if time.monotonic() > deadline:
                raise BenchError("the clients did not all sign in within 120 s")
            await asyncio.sleep(0.1)
        say(f"{len(self.parties)} clients signed in")
        await self.probe(None, None)
        self.started = now()
        say(
            f"load: {self.config.pairs} pairs for {self.config.duration:g} s; faults at "
            + ", ".join(f"{kind} {at:.0f}s" for at, kind in self.schedule_cache)
        )
        faults = asyncio.create_task(self.run_faults())
        callers = [asyncio.create_task(p.place_calls()) for p in self.callers]
        await asyncio.sleep(self.config.duration)
        self.stopping = True
        self.load_ended = now()
        say("load stopped; the calls in progress finish")
        await asyncio.wait(callers, timeout=60)
        faults.cancel()
        # The calls in progress end; a party still waiting for an end gets a few seconds
        # once the database has it (and once it is signed in again), then no more.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            rows = {r.id: r for r in await asyncio.to_thread(self.db.calls)}
            if self._settled(rows):
                break
            await asyncio.sleep(0.5)
        probes = time.monotonic() + 100
        while len(self.probes) < len(self.faults) + 1 and time.monotonic() < probes:
            await asyncio.sleep(0.2)  # each probe is bounded (90 s)
        say("settling: waiting until no call is live")
        t = self.config.timings
        settle = t.ring + t.grace + t.presence + 2 * t.sweep + 10
        deadline = time.monotonic() + settle
        while time.monotonic() < deadline:
            rows = {r.id: r for r in await asyncio.to_thread(self.db.calls)}
            if not [r for r in rows.values() if r.status in LIVE]:
                break
            await asyncio.sleep(0.5)
        # Frames in flight arrive; nothing new is sent to anyone now.
        await asyncio.sleep(1.0)
        self.closed_at = now()
        say("closing the clients")
        for party in self.parties.values():
            await party.close()
        await asyncio.wait(runners, timeout=30)


# -- checks ---------------------------------------------------------------------------------------


_ACCESS = re.compile(r'"(?:GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (\S+)" (\d{3}) ')
_TRACEBACK_HEADS = ("Traceback", "During handling", "The above exception", "future:")
_LOGLINE = re.compile(r"^(\d{4}-\d\d-\d\d |\S+:\d+ - - \[)")


def scan_logs(paths: list[Path], own_code: Path) -> dict[str, Any]:
    """Crashes and 5xx in the servers' logs (all incarnations).

    A "Task exception was never retrieved" counts against directcall when a frame of its
    traceback is in ``own_code``; one raised wholly inside a library (channels_redis's
    fire-and-forget ``_clean_receive_backup`` when Redis goes away) is only reported.
    """
    crashes: list[str] = []
    task_errors: list[str] = []
    library_task_errors: list[str] = []
    http5xx: Counter[str] = Counter()
    internal = 0
    tracebacks = 0
    own = f'File "{own_code}'
    for path in paths:
        lines = path.read_text(errors="replace").splitlines() if path.exists() else []
        for i, line in enumerate(lines):
            if "Traceback (most recent call last)" in line:
                tracebacks += 1
            crash = "Exception inside application" in line
            if crash or "Task exception was never retrieved" in line:
                # The traceback that follows, and the exception that ended it.
                block = []
                for following in lines[i + 1 : i + 400]:
                    if _LOGLINE.match(following):
                        break
                    block.append(following)
                last = next(
                    (
                        b
                        for b in reversed(block)
                        if b and not b[0].isspace() and not b.startswith(_TRACEBACK_HEADS)
                    ),
                    "",
                )
                coro = re.search(r"coro=<([\w.]+)", block[0]) if block else None
                entry = f"{path.name}: {line.strip()[:120]} {coro.group(1) if coro else ''}"
                entry = f"{entry.rstrip()} → {last[:200]}"
                if crash:
                    crashes.append(entry)
                elif any(b.lstrip().startswith(own) for b in block):
                    task_errors.append(entry)
                else:
                    library_task_errors.append(entry)
            if "Internal Server Error" in line:
                internal += 1
            match = _ACCESS.search(line)
            if match and match.group(2).startswith("5"):
                http5xx[f"{match.group(2)} {match.group(1)}"] += 1
    return {
        "crashes": crashes,
        "task_errors": task_errors,
        "library_task_errors": library_task_errors,
        "http5xx": dict(http5xx),
        "internal_server_error_lines": internal,
        "tracebacks": tracebacks,
    }


def timeline(soak: Soak, cuid: str, call_id: str) -> dict[str, Any]:
    """What one party saw and did of one call, in seconds since the load started: to read
    a call left live (whose side stopped, and why) without the run's other records."""
    party = soak.parties.get(cuid)
    if party is None:
        return {"party": cuid, "known": False}

    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - soak.started, 2)

    view = party.views.get(call_id)
    return {
        "party": cuid,
        "role": party.role,
        "knew": None if view is None else [rel(view.knew_at), view.knew_via, view.knew_conn],
        "heard": []
        if view is None
        else [[h.status, h.reason, rel(h.t), h.conn, h.via] for h in view.heard],
        "driving": None if view is None else view.driving,
        "gave_up_s": None if view is None else rel(view.gave_up),
        "sent": {kind: rel(t) for (cid, kind), t in party.sent.items() if cid == call_id},
        "errors": [
            [e.get("code"), e.get("in_reply_to"), rel(e["t"])]
            for e in party.errors
            if e.get("call_id") == call_id
        ],
        "resumable": call_id in party.call_keys,
        "connections": [
            [seg.server, rel(seg.up), rel(seg.down), seg.code] for seg in party.segments
        ],
    }


def analyse(soak: Soak) -> dict[str, Any]:
    """Compare every client's record with the database; the figures and the checks."""
    config, timings = soak.config, soak.config.timings
    rows = {r.id: r for r in soak.db.calls()}
    load_rows = [r for r in rows.values() if not r.caller.startswith(PROBE_PREFIX)]
    by_status = Counter(r.status for r in load_rows)
    kills = [f for f in soak.faults if f["kind"] == "kill"]

    live_at_end = [
        {
            "call": r.id,
            "status": r.status,
            "created_s": round(r.created_at - soak.started, 2),
            "answered_s": None if r.answered_at is None else round(r.answered_at - soak.started, 2),
            "plan": asdict(plan) if (plan := soak.plans.get(r.id)) is not None else None,
            "parties": [timeline(soak, r.caller, r.id), timeline(soak, r.callee, r.id)],
        }
        for r in rows.values()
        if r.status in LIVE
    ]
    bound = timings.ring + timings.grace + timings.sweep
    unanswered_life = []
    over_bound = []
    for r in load_rows:
        if r.answered_at is None:
            life = (r.ended_at or soak.closed_at) - r.created_at
            unanswered_life.append(life)
            if life > bound:
                over_bound.append({"call": r.id, "status": r.status, "live_s": round(life, 2)})

    knew = told = 0
    never_told: list[dict[str, Any]] = []
    mismatched: list[dict[str, Any]] = []
    conflicting: list[dict[str, Any]] = []
    false_answer: list[dict[str, Any]] = []
    delays: list[float] = []
    delays_kill: list[float] = []
    kill_to_told: list[float] = []
    told_after_reconnect = 0
    unknown_call = 0
    knew_by_role: Counter[str] = Counter()
    for party in soak.parties.values():
        for view in party.views.values():
            row = rows.get(view.call_id)
            if row is None:
                unknown_call += 1
                continue
            if row.status in LIVE:
                continue  # reported as live at the end
            knew += 1
            knew_by_role[party.role] += 1
            finals = view.finals
            if len({(h.status, h.reason) for h in finals}) > 1:
                conflicting.append(
                    {
                        "party": party.cuid,
                        "call": view.call_id,
                        "heard": [(h.status, h.reason) for h in finals],
                    }
                )
            for h in finals:
                if (h.status, h.reason) != (row.status, row.end_reason):
                    mismatched.append(
                        {
                            "party": party.cuid,
                            "call": view.call_id,
                            "told": [h.status, h.reason],
                            "db": [row.status, row.end_reason],
                        }
                    )
                    break
            if view.answered and row.answered_at is None:
                false_answer.append({"party": party.cuid, "call": view.call_id})
            # Parties whose connection was killed while they were in the call.
            hit = [
                k
                for k in kills
                if view.knew_at <= k["t"] <= (row.ended_at or soak.closed_at)
                and any(
                    s.server == k["server"]
                    and s.up <= k["t"]
                    and (s.down is None or s.down >= k["t"] - 0.5)
                    for s in party.segments
                )
            ]
            first = finals[0] if finals else None
            if first is None:
                never_told.append(
                    {
                        "party": party.cuid,
                        "role": view.role,
                        "call": view.call_id,
                        "db": [row.status, row.end_reason],
                        "heard": [(h.status, h.via) for h in view.heard],
                        "gave_up": view.gave_up is not None,
                        "killed": bool(hit),
                        "connected_at_end": party.segments[-1].down is None
                        or party.segments[-1].down >= soak.closed_at - 0.1,
                        # Seconds since the load started, to read against the faults.
                        "knew_s": round(view.knew_at - soak.started, 2),
                        "created_s": round(row.created_at - soak.started, 2),
                        "ended_s": round((row.ended_at or 0) - soak.started, 2),
                        "connections": [
                            (
                                seg.server,
                                round(seg.up - soak.started, 2),
                                None if seg.down is None else round(seg.down - soak.started, 2),
                                seg.code,
                            )
                            for seg in party.segments
                            if (seg.down is None or seg.down >= view.knew_at - 1)
                            and seg.up <= (row.ended_at or soak.closed_at) + 30
                        ],
                    }
                )
                continue
            told += 1
            if first.conn != view.knew_conn:
                told_after_reconnect += 1
            if row.ended_at is not None:
                delay = max(0.0, first.t - row.ended_at)
                delays.append(delay)
                if hit:
                    delays_kill.append(delay)
                    kill_to_told.append(first.t - hit[-1]["t"])

    # Calls a party never learnt of (see the module docstring): counted, not failed.
    known = {(p.cuid, cid) for p in soak.parties.values() for cid in p.views}
    never_knew: Counter[str] = Counter()
    for r in load_rows:
        if r.status in LIVE:
            continue
        if (r.caller, r.id) not in known:
            never_knew[f"caller/{r.status}"] += 1
        if r.status != "busy" and (r.callee, r.id) not in known:
            never_knew[f"callee/{r.status}"] += 1

    # ERR_INTERNAL for a change that the database shows was made.
    internal = []
    internal_made = []
    for party in soak.parties.values():
        for err in party.errors:
            if err.get("code") != "ERR_INTERNAL":
                continue
            internal.append(err.get("in_reply_to"))
            kind, row = err.get("in_reply_to"), rows.get(err.get("call_id") or "")
            sent = party.sent.get((err.get("call_id") or "", kind or ""))
            if row is not None and sent is not None and made(kind, row, sent, err["t"]):
                internal_made.append(
                    {
                        "party": party.cuid,
                        "frame": kind,
                        "call": row.id,
                        "db": [row.status, row.end_reason],
                    }
                )

    logs = scan_logs([s.proc.log for s in soak.servers], ROOT / "directcall")
    stats: Counter[str] = Counter()
    for party in soak.parties.values():
        stats.update(party.stats)
    reconnects = sum(max(0, len(p.segments) - 1) for p in soak.parties.values())
    probes_after = [p for p in soak.probes if p["after"] != "start"]
    last_fault = max((f["t"] for f in soak.faults), default=None)
    last_probe = next((p for p in probes_after if p["fault_t"] == last_fault), None)
    recovery_kill = [p["from_fault"] for p in probes_after if p["after"] == "kill" and p["ok"]]
    recovery_redis = [p["from_back"] for p in probes_after if p["after"] == "redis" and p["ok"]]

    checks = [
        ("no call live after the settle period", len(live_at_end), "0"),
        (f"unanswered calls live > ring + grace + sweep ({bound:g} s)", len(over_bound), "0"),
        ("final states told that differ from the database", len(mismatched), "0"),
        ("parties told two different ends", len(conflicting), "0"),
        ("parties told 'answered' for a call never answered", len(false_answer), "0"),
        ("parties never told the end of a call they knew", len(never_told), "0"),
        ("consumer crashes ('Exception inside application')", len(logs["crashes"]), "0"),
        ("directcall task exceptions never retrieved", len(logs["task_errors"]), "0"),
        (
            "HTTP 5xx other than 503 in the servers' logs",
            sum(n for k, n in logs["http5xx"].items() if not k.startswith("503")),
            "0",
        ),
        ("ERR_INTERNAL for a change that was made", len(internal_made), "0"),
        ("probes that never worked after a fault", sum(not p["ok"] for p in soak.probes), "0"),
        (
            "recovery after the last fault",
            None
            if last_probe is None or not last_probe["ok"]
            else round(last_probe["from_back"], 2),
            f"≤ {config.recovery_bound:g} s",
        ),
    ]

    def passed(name: str, value: Any, bound_text: str) -> bool:
        if bound_text == "0":
            return value == 0
        if not soak.faults:
            return True  # a run without faults has no recovery to measure
        return value is not None and value <= config.recovery_bound

    return {
        "config": {
            "duration_s": config.duration,
            "pairs": config.pairs,
            "servers": config.servers,
            "timings": asdict(timings),
            "database": soak.db.kind,
            "seed": config.seed,
        },
        "machine": machine(),
        "calls": {"total": len(load_rows), "by_status": dict(by_status)},
        "calls_per_s": len(load_rows) / config.duration if config.duration else 0,
        "faults": [
            {
                **f,
                "at_s": round(f["t"] - soak.started, 2),
                "back_s": round(f["back"] - soak.started, 2),
            }
            for f in soak.faults
        ],
        "kills": len(kills),
        "redis_restarts": sum(f["kind"] == "redis" for f in soak.faults),
        "reconnects": reconnects,
        "init_statuses": dict(soak.init_statuses),
        "client_stats": dict(stats),
        "parties_knew": knew,
        "parties_knew_by_role": dict(knew_by_role),
        "parties_told": told,
        "never_told": len(never_told),
        "told_after_reconnect": told_after_reconnect,
        "never_knew": dict(never_knew),
        "unknown_calls": unknown_call,
        "unsolicited_states": sum(len(p.unsolicited) for p in soak.parties.values()),
        "told_delay": {
            "all": {
                "n": len(delays),
                "p50": pct(delays, 0.5),
                "p95": pct(delays, 0.95),
                "max": max(delays, default=None),
            },
            "after_kill": {
                "n": len(delays_kill),
                "p50": pct(delays_kill, 0.5),
                "p95": pct(delays_kill, 0.95),
                "max": max(delays_kill, default=None),
            },
            "kill_to_told": {
                "n": len(kill_to_told),
                "p50": pct(kill_to_told, 0.5),
                "p95": pct(kill_to_told, 0.95),
                "max": max(kill_to_told, default=None),
            },
        },
        "unanswered_life": {
            "p50": pct(unanswered_life, 0.5),
            "max": max(unanswered_life, default=None),
        },
        "probes": soak.probes,
        "recovery": {
            "after_kill_max": max(recovery_kill, default=None),
            "after_redis_max": max(recovery_redis, default=None),
            "after_kill": recovery_kill,
            "after_redis": recovery_redis,
        },
        "err_internal": dict(Counter(internal)),
        "logs": logs,
        "examples": {
            "live_at_end": live_at_end[:10],
            "over_bound": over_bound[:10],
            "mismatched": mismatched[:10],
            "conflicting": conflicting[:10],
            "false_answer": false_answer[:10],
            "never_told": never_told[:20],
            "internal_made": internal_made[:10],
        },
        "never_told_by": dict(
            Counter(
                f"{n['role']}/{n['db'][0]}{' (killed)' if n['killed'] else ''}" for n in never_told
            )
        ),
        "checks": [
            {"check": name, "value": value, "bound": b, "ok": passed(name, value, b)}
            for name, value, b in checks
        ],
    }


def render(report: dict[str, Any]) -> str:
    """The figures and the checks as Markdown tables."""
    c, rec, stats = report["config"], report["recovery"], report["client_stats"]
    t = c["timings"]
    delay = report["told_delay"]

    def spread(d: dict[str, Any]) -> str:
        return f"{fmt(d['p50'])} / {fmt(d['p95'])} (n={d['n']})"

    def listing(counts: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "0"

    refused = {k[7:]: v for k, v in stats.items() if k.startswith("invite_")}
    knew = report["parties_knew"]
    figures = [
        ("run", f"{c['duration_s']:g} s, {c['pairs']} pairs, {c['servers']} daphne processes"),
        ("database", f"{c['database']}, private Redis"),
        (
            "timings (s)",
            f"ring {t['ring']}, presence {t['presence']:g}, sweep {t['sweep']:g}, "
            f"grace {t['grace']:g}",
        ),
        ("calls", f"{report['calls']['total']} ({report['calls_per_s']:.1f}/s)"),
        ("calls by status", listing(report["calls"]["by_status"])),
        ("invites without a call / dropped", f"{listing(refused)}"),
        ("faults", f"{report['kills']} SIGKILLs, {report['redis_restarts']} Redis restarts"),
        (
            "reconnects (reloads after stuck invites)",
            f"{report['reconnects']} ({stats.get('reloads', 0)})",
        ),
        ("v1/init answers", listing(report["init_statuses"])),
        ("parties that knew a call's id", f"{knew}"),
        (
            "… told its end (after a reconnect)",
            f"{report['parties_told']} ({report['told_after_reconnect']})",
        ),
        ("… never told", f"{report['never_told']} {listing(report['never_told_by'])}"),
        ("parties that never knew (not failures)", listing(report["never_knew"])),
        ("told delay after the database end, p50 / p95", spread(delay["all"])),
        ("… parties whose process was killed", spread(delay["after_kill"])),
        ("… the same, counted from the kill", spread(delay["kill_to_told"])),
        ("recovery after a kill (max)", fmt(rec["after_kill_max"])),
        ("recovery after a Redis restart (max, from Redis back)", fmt(rec["after_redis_max"])),
        (
            "unanswered call lifetime p50 / max",
            f"{fmt(report['unanswered_life']['p50'])} / {fmt(report['unanswered_life']['max'])}",
        ),
        ("ERR_INTERNAL received (by frame)", listing(report["err_internal"])),
        (
            "log: tracebacks / 'Internal Server Error' lines",
            f"{report['logs']['tracebacks']} / {report['logs']['internal_server_error_lines']}",
        ),
    ]
    checks = [
        (
            ch["check"],
            "–" if ch["value"] is None else ch["value"],
            ch["bound"],
            "yes" if ch["ok"] else "**NO**",
        )
        for ch in report["checks"]
    ]
    return "\n".join(
        [
            "## directcall soak test",
            "",
            report["machine"],
            "",
            table(["figure", "value"], figures),
            "",
            table(["check", "value", "bound", "ok"], checks),
        ]
    )


# -- command line -----------------------------------------------------------------------------


def run_soak(config: Config) -> dict[str, Any]:
    """Set up, run, check, tear down; return the report."""
    tmp = Path(tempfile.mkdtemp(prefix="dcsoak-"))
    out = config.out or tmp
    out.mkdir(parents=True, exist_ok=True)
    soak = Soak(config, out)
    try:
        soak.setup()
        asyncio.run(soak.run())
        report = analyse(soak)
        report["logs"]["paths"] = [str(s.proc.log) for s in soak.servers]
        return report
    finally:
        soak.teardown()
        if config.out is None:
            shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=330.0, help="seconds of load")
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--kills", type=int, default=None, help="at most this many SIGKILLs")
    parser.add_argument(
        "--kill-every", type=float, nargs=2, default=(30.0, 45.0), metavar=("MIN", "MAX")
    )
    parser.add_argument("--redis-restarts", type=int, default=2)
    parser.add_argument("--redis-down", type=float, default=1.0, help="seconds Redis stays down")
    parser.add_argument("--first-fault", type=float, default=20.0)
    parser.add_argument(
        "--quiet-tail", type=float, default=25.0, help="no fault in the last S seconds"
    )
    parser.add_argument("--recovery-bound", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--database-url",
        default=None,
        help="a PostgreSQL server's URL, or 'sqlite' (default: DATABASE_URL if PostgreSQL, "
        "else 127.0.0.1:5432 if it answers, else SQLite)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="keep the servers' logs in this directory"
    )
    parser.add_argument("--json", type=Path, default=None, help="write the report as JSON here")
    args = parser.parse_args(argv)
    config = Config(
        duration=args.duration,
        pairs=args.pairs,
        kills=args.kills,
        kill_min=args.kill_every[0],
        kill_max=args.kill_every[1],
        redis_restarts=args.redis_restarts,
        redis_down=args.redis_down,
        first_fault=args.first_fault,
        quiet_tail=args.quiet_tail,
        recovery_bound=args.recovery_bound,
        seed=args.seed,
        database_url=args.database_url,
        out=args.out,
    )
    report = run_soak(config)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2, default=str))
    print(render(report))
    failed = [c for c in report["checks"] if not c["ok"]]
    if failed:
        print(
            "\nexamples:",
            json.dumps(report["examples"], indent=1, default=str)[:6000],
            file=sys.stderr,
        )
        print("crashes:", json.dumps(report["logs"]["crashes"][:5], indent=1), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
