"""The floor of a signaling frame: server CPU per frame with no application behind it.

    .venv/bin/python bench/frame_floor.py                 # 1 200 frames at 100/s, then back to back
    .venv/bin/python bench/frame_floor.py --outs 1,2,3 --rates 100,25,0
    .venv/bin/python bench/frame_floor.py --ws directcall.uvicorn_ws:LeanWebSocketProtocol

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
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import PY, ROOT, free_port

OUTS = int(os.environ.get("FRAME_FLOOR_OUTS", "2"))
_sockets: dict[object, Any] = {}


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


def _serve(ws: str, outs: int) -> tuple[subprocess.Popen, int]:
    port = free_port()
    server = subprocess.Popen(
        [
            PY,
            *("-m", "uvicorn", "--ws", ws, "--lifespan", "off"),
            *("--log-level", "warning", "--port", str(port), "bench.frame_floor:app"),
        ],
        cwd=ROOT,
        env={**os.environ, "FRAME_FLOOR_OUTS": str(outs)},
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
    parser.add_argument("--smoke", action="store_true", help="a few frames, one run")
    args = parser.parse_args()
    if args.smoke:
        args.frames, args.runs = 20, 1
    rates = [float(r) for r in args.rates.split(",")]
    outs_list = [int(o) for o in args.outs.split(",")]
    if any(o not in (1, 2, 3) for o in outs_list):
        parser.error("--outs: 1, 2 or 3")
    rows = []
    for outs in outs_list:
        server, port = _serve(args.ws, outs)
        try:
            for rate in rates:
                per = [
                    asyncio.run(_measure(port, server.pid, args.frames, rate, outs))
                    for _ in range(args.runs)
                ]
                rows.append((outs, rate, statistics.median(per), per))
        finally:
            server.terminate()
            server.wait(timeout=10)
    title = "## Frame floor (smoke)" if args.smoke else "## Frame floor"
    print(f"\n{title}: uvicorn --ws {args.ws}, a bare ASGI app, {args.frames} frames in per run\n")
    print(
        "| frames in at | out per frame in | µs of server CPU per frame in (median) | runs "
        "| × back to back |"
    )
    print("|---|---|---|---|---|")
    for outs, rate, median, per in rows:
        base = next((m for o, r, m, _ in rows if o == outs and r == 0), None)
        ratio = f"×{median / base:.1f}" if base and rate > 0 else "—"
        pace = f"{rate:g}/s" if rate > 0 else "back to back"
        runs = ", ".join(f"{x * 1e6:.0f}" for x in per)
        print(f"| {pace} | {outs} | {median * 1e6:.0f} | {runs} | {ratio} |")


if __name__ == "__main__":
    main()
