"""The floor of a signaling frame: server CPU per frame with no application behind it.

    .venv/bin/python bench/frame_floor.py                 # 1 200 frames at 100/s, then back to back
    .venv/bin/python bench/frame_floor.py --outs 1,2,3 --rates 100,25,0
    .venv/bin/python bench/frame_floor.py --ws directcall.uvicorn_ws:LeanWebSocketProtocol
    .venv/bin/python bench/frame_floor.py --rates 40 --work none,hop,sqlite

Starts uvicorn (``--ws websockets-sansio``) on 127.0.0.1 serving :func:`app` below, a bare
ASGI WebSocket application: every text frame is decoded as JSON and answered with one
small JSON frame to each of ``--outs`` sockets (1: the sender; 2: the sender and the other
client, as a state is told to both parties of a call; 3: two to the sender, one to the
other). No Django, no channels, no database, no rules. Two clients connect; one sends
``--frames`` frames (a 2 KiB SDP-sized JSON object each) at each of ``--rates`` per second, waiting
for the answers to each before the next, and the server process's CPU (``/proc``) over
them is divided by the frames. A call set-up of directcall is 4 frames in and 8 out
(docs/performance.md): four times this figure with ``--outs 2`` is what those frames cost
before any of directcall's work; PeerJS's set-up is 3 frames in and 3 out.

Paced frames each arrive at an idle server, so each costs a wake-up from ``epoll_wait``
(on a VM, an idle virtual CPU woken); back to back (``--rate 0``) they do not.

``--work`` adds, before the answers, what each of directcall's frames in must also do
under its rules, with none of directcall's or Django's code: ``hop``, one round trip to a
database thread (one worker, as asgiref's; the worker does nothing); ``sqlite``, that hop
running a transition's statements on the driver's own connection to a SQLite file (WAL,
``synchronous=NORMAL``, as the demo site): ``BEGIN IMMEDIATE``, a read of the row, an
``UPDATE ... RETURNING`` of it, ``COMMIT``. A set-up is 4 frames in with 9 statements and
4 commits between them, so ``sqlite`` is about a quarter of a set-up's database work per
frame. Four frames of a row at 40/s is the floor of a set-up at 10/s under those rules.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import PY, ROOT, free_port
from deploy.topology import pinned_to, worker_cpu

OUTS = int(os.environ.get("FRAME_FLOOR_OUTS", "2"))
WORK = os.environ.get("FRAME_FLOOR_WORK", "none")
WORKS = ("none", "hop", "sqlite")
_sockets: dict[object, Any] = {}
_database_thread = ThreadPoolExecutor(max_workers=1)
_local = threading.local()


async def hop(work: Any) -> Any:
    """``work()`` in the database thread; its result back in the loop (one wake-up each way)."""
    loop = asyncio.get_running_loop()
    future = loop.create_future()

    def run() -> None:
        try:
            result = work()
        except BaseException as exc:  # handed to the awaiting frame
            loop.call_soon_threadsafe(future.set_exception, exc)
        else:
            loop.call_soon_threadsafe(future.set_result, result)

    _database_thread.submit(run)
    return await future


def _nothing() -> None:
    return None


def _transition() -> Any:
    """A transition's statements on the driver's connection (made once, in this thread)."""
    db = getattr(_local, "db", None)
    if db is None:
        path = os.path.join(os.environ["FRAME_FLOOR_DIR"], "db.sqlite3")
        db = _local.db = sqlite3.connect(path, isolation_level=None, timeout=20)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(
            "CREATE TABLE call (id TEXT PRIMARY KEY, status TEXT, caller INTEGER, "
            "callee INTEGER, context TEXT, deadline TEXT, ended_at TEXT)"
        )
        db.execute("INSERT INTO call VALUES ('c', 'ringing', 1, 2, 'hi', NULL, NULL)")
    db.execute("BEGIN IMMEDIATE")
    db.execute("SELECT id, status, callee FROM call WHERE callee = ?", (2,)).fetchall()
    row = db.execute(
        "UPDATE call SET status = ?, deadline = ? WHERE id = ? AND status IN (?, ?) "
        "AND callee = ? RETURNING *",
        ("ringing", "2026-11-28 00:00:30", "c", "initiated", "ringing", 2),
    ).fetchall()
    db.execute("COMMIT")
    return row


async def app(scope: dict, receive: Any, send: Any) -> None:
    """The bare WebSocket application (run by the server process this script starts)."""
    if scope["type"] != "websocket":
        return
    me = object()
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    _sockets[me] = send
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            frame = json.loads(message["text"])
            if WORK != "none":
                await hop(_transition if WORK == "sqlite" else _nothing)
            out = json.dumps({"type": "state", "call_id": frame.get("call_id"), "status": "x"})
            others = [s for key, s in _sockets.items() if key is not me]
            targets = {1: [send], 2: [send, *others], 3: [send, send, *others]}[OUTS]
            for target in targets:
                await target({"type": "websocket.send", "text": out})
    finally:
        _sockets.pop(me, None)


def _cpu_s(pid: int) -> float:
    """CPU seconds of every thread of the process (schedstat, ns), as bench/signaling.py."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as handle:
                total += int(handle.read().split()[0])
        except FileNotFoundError:  # a thread that ended meanwhile
            continue
    return total / 1e9


async def _measure(port: int, pid: int, frames: int, rate: float, outs: int) -> float:
    import websockets

    url = f"ws://127.0.0.1:{port}/"
    for _ in range(100):
        try:
            sender = await websockets.connect(url)
            break
        except OSError:
            await asyncio.sleep(0.1)
    else:
        raise RuntimeError("the server did not start")
    other = await websockets.connect(url)
    frame = json.dumps({"type": "accept", "call_id": "c" * 36, "sdp": "v=0\r\n" + "a" * 2048})

    async def one() -> None:
        await sender.send(frame)
        await sender.recv()
        if outs == 3:
            await sender.recv()
        if outs >= 2:
            await other.recv()

    for _ in range(50):  # warm-up
        await one()
    before, start = _cpu_s(pid), time.monotonic()
    for i in range(frames):
        if rate > 0:
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await one()
    used = _cpu_s(pid) - before
    await sender.close()
    await other.close()
    return used / frames


def _serve(ws: str, outs: int, work: str, pin: bool, tmp: str) -> tuple[subprocess.Popen, int]:
    port = free_port()
    server = subprocess.Popen(
        [
            PY,
            *("-m", "uvicorn", "--ws", ws, "--lifespan", "off"),
            *("--log-level", "warning", "--port", str(port), "bench.frame_floor:app"),
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "FRAME_FLOOR_OUTS": str(outs),
            "FRAME_FLOOR_WORK": work,
            "FRAME_FLOOR_DIR": tmp,  # the SQLite file of --work sqlite
        },
        preexec_fn=pinned_to({worker_cpu(0)}) if pin else None,
    )
    return server, port


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=1200)
    parser.add_argument(
        "--rates", default="100,0", help="frames/s, comma-separated; 0: back to back"
    )
    parser.add_argument(
        "--outs", default="2", help="frames out per frame in: 1, 2 or 3, comma-separated"
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="runs per row; the table shows the median"
    )
    parser.add_argument(
        "--ws", default="websockets-sansio", help="uvicorn's --ws (an import string works too)"
    )
    parser.add_argument(
        "--work",
        default="none",
        help="per frame in, comma-separated: none, hop (to a database thread), sqlite "
        "(a transition's statements in that hop)",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="the server on a CPU of its own, batch (as bench/signaling.py --pin)",
    )
    parser.add_argument("--smoke", action="store_true", help="a few frames, one run")
    args = parser.parse_args()
    if args.smoke:
        args.frames, args.runs = 20, 1
    rates = [float(r) for r in args.rates.split(",")]
    outs_list = [int(o) for o in args.outs.split(",")]
    if any(o not in (1, 2, 3) for o in outs_list):
        parser.error("--outs: 1, 2 or 3")
    works = args.work.split(",")
    if any(w not in WORKS for w in works):
        parser.error(f"--work: {', '.join(WORKS)}")
    rows = []
    for work in works:
        for outs in outs_list:
            with tempfile.TemporaryDirectory(prefix="frame_floor_") as tmp:
                server, port = _serve(args.ws, outs, work, args.pin, tmp)
                try:
                    for rate in rates:
                        per = [
                            asyncio.run(_measure(port, server.pid, args.frames, rate, outs))
                            for _ in range(args.runs)
                        ]
                        rows.append((work, outs, rate, statistics.median(per), per))
                finally:
                    server.terminate()
                    server.wait(timeout=10)
    title = "## Frame floor (smoke)" if args.smoke else "## Frame floor"
    pinned = ", pinned (batch)" if args.pin else ""
    print(
        f"\n{title}: uvicorn --ws {args.ws}{pinned}, a bare ASGI app, "
        f"{args.frames} frames in per run\n"
    )
    print(
        "| work per frame in | frames in at | out per frame in "
        "| µs of server CPU per frame in (median) | runs | × back to back |"
    )
    print("|---|---|---|---|---|---|")
    for work, outs, rate, median, per in rows:
        base = next((m for w, o, r, m, _ in rows if (w, o, r) == (work, outs, 0)), None)
        ratio = f"×{median / base:.1f}" if base and rate > 0 else "—"
        pace = f"{rate:g}/s" if rate > 0 else "back to back"
        runs = ", ".join(f"{x * 1e6:.0f}" for x in per)
        print(f"| {work} | {pace} | {outs} | {median * 1e6:.0f} | {runs} | {ratio} |")


if __name__ == "__main__":
    main()
