"""Server CPU of a call set-up by thread, in one process and without sockets: directcall
against the floor (bench/floor.py), back to back.

    .venv/bin/python bench/inprocess.py                   # 1000 set-ups each, 3 rounds
    .venv/bin/python bench/inprocess.py --pin --calls 2000 --rounds 4

Drives two ASGI applications in this process through in-memory ASGI queues (no network,
no uvicorn): directcall's (``bench/asgi.py`` on the benchmark's settings: a temporary
SQLite file, the in-memory channel layer, the local-memory cache) and the floor's
(``bench/floor.py``, on the same file), alternated round by round. Each has a caller and a
callee signed in with tokens of ``directcall.tokens``; a set-up is directcall's four frames
(``invite`` with a 2 KiB offer, ``ringing``, ``accept`` with a 2 KiB answer, ``hangup``),
each sent once the frames the one before causes have reached both parties.

CPU time (``time.thread_time``) is summed on the event loop's thread, which also runs the two
clients (the same client code for both applications), and on the database thread
(asgiref's executor for directcall, the floor's own). Back to back, with no idle spell
between frames, it weighs the work itself and not the wake-ups after idling (the paced way
of ``bench/transitions.py`` and ``bench/signaling.py`` measure those): steady within a
few per cent from run to run, a quick check of a change to the set-up path before a
signaling run (docs/performance.md, run R).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

APPS = ("directcall", "floor")
SDP = "v=0\r\n" + "a=candidate-like-line-of-a-session-description\r\n" * 44  # ~2 KiB


class Client:
    """One WebSocket connection to an ASGI application, through in-memory queues."""

    def __init__(self, app: Callable[..., Awaitable[None]], path: str) -> None:
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.out: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.inbox.put_nowait({"type": "websocket.connect"})
        scope = {
            "type": "websocket",
            "asgi": {"version": "3.0"},
            "scheme": "ws",
            "path": path,
            "raw_path": path.encode(),
            "query_string": b"",
            "headers": [(b"host", b"127.0.0.1:8000"), (b"origin", b"http://127.0.0.1:8000")],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
            "subprotocols": [],
        }
        self.task = asyncio.create_task(app(scope, self.inbox.get, self.out.put))

    async def send(self, frame: dict[str, Any]) -> None:
        await self.inbox.put({"type": "websocket.receive", "text": json.dumps(frame)})

    async def expect(self, **wanted: Any) -> dict[str, Any]:
        """The next frame with these fields (earlier ones are skipped)."""
        while True:
            message = await asyncio.wait_for(self.out.get(), 10)
            if message["type"] == "websocket.close":
                raise RuntimeError(f"the server closed the connection: {message}")
            if message["type"] != "websocket.send":
                continue
            frame = json.loads(message["text"])
            if frame.get("type") == "error":
                raise RuntimeError(f"the server refused a frame: {frame}")
            if all(frame.get(key) == value for key, value in wanted.items()):
                return frame

    async def close(self) -> None:
        await self.inbox.put({"type": "websocket.disconnect", "code": 1000})
        await asyncio.wait_for(self.task, 10)


class Pair:
    """A caller and a callee signed in to one application."""

    def __init__(self, app: Callable[..., Awaitable[None]], path: str) -> None:
        self.caller, self.callee = Client(app, path), Client(app, path)
        self.refs = 0

    async def sign_in(self, caller_token: str, callee_token: str) -> None:
        for client, token in ((self.caller, caller_token), (self.callee, callee_token)):
            await client.send({"type": "auth", "token": token})
            await client.expect(type="ready")

    async def set_up(self, receiver: str) -> None:
        """One call: invite, ringing, accept, hang-up, each state seen by both parties."""
        caller, callee = self.caller, self.callee
        self.refs += 1
        invite = {"type": "invite", "ref": f"r{self.refs}", "receiver": receiver}
        await caller.send({**invite, "context": "Benchmark call", "sdp": SDP})
        call_id = (await callee.expect(type="incoming"))["call_id"]
        await caller.expect(type="invited")
        await callee.send({"type": "ringing", "call_id": call_id})
        for client in (caller, callee):
            await client.expect(type="state", call_id=call_id, status="ringing")
        await callee.send({"type": "accept", "call_id": call_id, "sdp": SDP})
        for client in (caller, callee):
            await client.expect(type="state", call_id=call_id, status="answered")
        await caller.send({"type": "hangup", "call_id": call_id})
        for client in (caller, callee):
            await client.expect(type="state", call_id=call_id, status="over")

    async def close(self) -> None:
        await self.caller.close()
        await self.callee.close()


def _setup_django(tmp: str) -> None:
    """Django on the benchmark's settings over a fresh SQLite file; the floor (SQLite only)
    gets a copy of it once the people are in (:func:`_people`)."""
    from bench.transitions import setup_django

    path = str(Path(tmp) / "db.sqlite3")
    floor = str(Path(tmp) / "floor.sqlite3")
    os.environ.update(DATABASE_URL=f"sqlite:///{path}", FLOOR_DATABASE=floor)
    os.environ.pop("REDIS_URL", None)
    setup_django(tmp)


def _people() -> dict[str, tuple[str, str, str]]:
    """Per application: the callee's cuid and both parties' session tokens."""
    from django.db import connections

    from directcall import tokens
    from directcall.models import Account, Registration

    account = Account(name="Bench", require_clevertap=False, identity="page")
    account.set_new_api_key()
    account.save()
    people = {}
    for app in APPS:
        caller = Registration.objects.create(account=account, cuid=f"{app}_caller", name="Jane")
        callee = Registration.objects.create(account=account, cuid=f"{app}_callee", name="Sam")
        people[app] = (
            callee.cuid,
            tokens.issue(account.pk, caller.pk, caller.cuid, "device-caller"),
            tokens.issue(account.pk, callee.pk, callee.cuid, "device-callee"),
        )
    # The floor's own copy: directcall's sweep would end the floor's calls in a shared
    # table as left behind (their parties are not in directcall's presence).
    with sqlite3.connect(os.environ["FLOOR_DATABASE"]) as copy:
        connections["default"].ensure_connection()
        connections["default"].connection.backup(copy)
    connections.close_all()  # the database thread opens its own
    return people


async def _measure(args: argparse.Namespace, people: dict[str, tuple[str, str, str]]) -> None:
    from asgiref.sync import SyncToAsync

    from bench import floor
    from bench.asgi import application
    from bench.frame_floor import _database_thread
    from directcall.conf import get_settings

    apps = {
        "directcall": (application, get_settings().WEBSOCKET_PATH),
        "floor": (floor.app, "/floor"),
    }
    pairs = {}
    for app, (asgi, path) in apps.items():
        receiver, caller_token, callee_token = people[app]
        pairs[app] = Pair(asgi, path)
        await pairs[app].sign_in(caller_token, callee_token)
        for _ in range(args.warmup):
            await pairs[app].set_up(receiver)
    threads = {
        "directcall": SyncToAsync.single_thread_executor,
        "floor": _database_thread,
    }
    rows = []
    for round_ in range(args.rounds):
        for app in APPS if round_ % 2 == 0 else reversed(APPS):
            database_thread = threads[app]
            receiver = people[app][0]
            db0 = database_thread.submit(time.thread_time).result()
            loop0, wall0 = time.thread_time(), time.perf_counter()
            for _ in range(args.calls):
                await pairs[app].set_up(receiver)
            db1 = database_thread.submit(time.thread_time).result()
            loop1, wall1 = time.thread_time(), time.perf_counter()
            rows.append((round_ + 1, app, loop1 - loop0, db1 - db0, wall1 - wall0))
    for pair in pairs.values():
        await pair.close()
    _print(args, rows)


def _print(args: argparse.Namespace, rows: list[tuple[int, str, float, float, float]]) -> None:
    title = "## In-process set-up CPU (smoke)" if args.smoke else "## In-process set-up CPU"
    pinned = ", pinned (batch)" if args.pin else ""
    print(
        f"\n{title}: SQLite{pinned}, {args.calls} set-ups back to back per round and "
        "application; ms of CPU per set-up\n"
    )
    print("| round | application | event loop (with the clients) | database thread | both | wall |")
    print("|---|---|---|---|---|---|")
    ms = 1e3 / args.calls
    for round_, app, loop, db, wall in rows:
        cells = f"{loop * ms:.3f} | {db * ms:.3f} | {(loop + db) * ms:.3f} | {wall * ms:.3f}"
        print(f"| {round_} | {app} | {cells} |")
    for app in APPS:
        mine = [row for row in rows if row[1] == app]
        loop = sorted(row[2] for row in mine)[len(mine) // 2] * ms
        db = sorted(row[3] for row in mine)[len(mine) // 2] * ms
        print(f"| median | {app} | {loop:.3f} | {db:.3f} | {loop + db:.3f} | |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=1000, help="set-ups per round and app")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, the order alternated")
    parser.add_argument("--warmup", type=int, default=50, help="unmeasured set-ups first")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="this process on one CPU, batch (as bench/signaling.py --pin)",
    )
    parser.add_argument("--smoke", action="store_true", help="a few set-ups, two rounds")
    args = parser.parse_args()
    if args.smoke:
        args.calls, args.rounds, args.warmup = 5, 2, 2
    if args.pin:
        from bench._common import pin_this_process

        pin_this_process()
    with tempfile.TemporaryDirectory(prefix="dc_inprocess_") as tmp:
        _setup_django(tmp)
        asyncio.run(_measure(args, _people()))


if __name__ == "__main__":
    main()
