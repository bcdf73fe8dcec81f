"""Python heap per idle signed-in signaling connection, by where it was allocated.

    .venv/bin/python bench/idle_memory.py                      # uvicorn websockets-sansio
    .venv/bin/python bench/idle_memory.py --server app --first 200 --then 1000 --traceback 8

Signs connections in to the whole ASGI application of the benchmarks' servers
(``bench/asgi.py``: origin check, router, consumer) on the embedded default (in-memory
layer, local-memory cache, SQLite), and compares ``tracemalloc`` snapshots of this process
taken after ``--first`` and after ``--then`` connections: the difference divided by the
connections in between is what one more idle connection keeps, grouped by file (and, with
``--traceback N``, the biggest allocation sites with N frames).

``--server uvicorn-sansio`` (or ``uvicorn-lean``, directcall.uvicorn_ws; ``uvicorn-wsproto``;
``uvicorn``): a uvicorn server runs in this process and a client process (this script with
``--client``) opens real sockets to it, so the server's own share is in the figures (its
protocol objects, buffers, the transport) and the process's RSS growth is printed beside
them. ``--server app``: channels'
``WebsocketCommunicator`` in this process, no server at all (the test harness's queues are
left out of the table). ``bench/signaling.py --idle`` measures RSS side by side with PeerJS
and the plain relay.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
import tempfile
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _setup(tmp: Path, layer: str = "memory") -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'idle.sqlite3'}"
    os.environ["BENCH_LAYER"] = layer
    # Redis keys of this run only (presence, the layer's channels): a run never meets
    # a previous one's signed-in users. Left to expire with their TTLs.
    os.environ.setdefault("BENCH_PREFIX", f"dcidle-{os.getpid()}")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def _people(count: int) -> list[str]:
    """``count`` registrations of one account; a fresh token each."""
    from directcall import tokens
    from directcall.models import Account, Registration

    account = Account.objects.create(name="Idle", account_id="IDLE-ACCOUNT")
    rows = Registration.objects.bulk_create(
        Registration(account=account, cuid=f"idle_{i:05d}", name=f"Idle {i}") for i in range(count)
    )
    return [tokens.issue(account.pk, row.pk, row.cuid, f"device-{row.pk}") for row in rows]


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def _open(tokens_: list[str], opened: list) -> None:
    from channels.testing import WebsocketCommunicator

    from bench.asgi import application
    from directcall.conf import get_settings

    path = "/" + get_settings().WEBSOCKET_PATH.lstrip("/")
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]

    async def one(token: str) -> None:
        communicator = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await communicator.connect(timeout=30)
        assert connected
        await communicator.send_json_to({"type": "auth", "token": token})
        ready = await communicator.receive_json_from(timeout=30)
        assert ready["type"] == "ready", ready
        opened.append(communicator)

    for start in range(0, len(tokens_), 50):
        await asyncio.gather(*(one(token) for token in tokens_[start : start + 50]))


def _snapshot(frames: int) -> tracemalloc.Snapshot:
    gc.collect()
    return tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )


# The test harness's own objects (--server app): a server holds none of these.
_HARNESS = ("asyncio/queues.py", "asgiref/testing.py", "channels/testing", "bench/idle_memory.py")


def _short(filename: str) -> str:
    for marker in ("site-packages/", "lib/python3", str(ROOT) + "/"):
        if marker in filename:
            return filename.split(marker, 1)[1].removeprefix(".11/")
    return filename


class _Served:
    """A uvicorn server in this process, and a client process that opens sockets to it."""

    def __init__(self, ws: str, tokens_: list[str], tmp: Path) -> None:
        self.ws = ws
        self.tokens = tokens_
        self.tmp = tmp

    async def start(self) -> None:
        import socket

        import uvicorn

        from bench.asgi import application

        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        config = uvicorn.Config(
            application,
            host="127.0.0.1",
            port=self.port,
            ws=self.ws,
            lifespan="off",
            log_level="warning",
            ws_per_message_deflate=False,
        )
        self.server = uvicorn.Server(config)
        self.task = asyncio.ensure_future(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.05)
        (self.tmp / "tokens").write_text("\n".join(self.tokens))
        self.client = await asyncio.create_subprocess_exec(
            sys.executable,
            __file__,
            "--client",
            f"ws://127.0.0.1:{self.port}/ws/directcall/v1/",
            str(self.tmp / "tokens"),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )

    async def open(self, upto: int) -> None:
        self.client.stdin.write(f"{upto}\n".encode())
        await self.client.stdin.drain()
        line = await self.client.stdout.readline()
        if line.strip() != b"ok":
            raise RuntimeError(f"the client process failed: {line!r}")

    async def stop(self) -> None:
        self.client.stdin.close()
        await self.client.wait()
        self.server.should_exit = True
        await self.task


async def _client(url: str, tokens_path: str) -> None:
    """The client process: open connections up to the count read from stdin, say ``ok``."""
    import json

    from websockets.asyncio.client import connect

    tokens_ = Path(tokens_path).read_text().split()
    origin = "http://" + url.split("/")[2]  # the site's own page
    opened = []
    loop = asyncio.get_running_loop()

    async def one(token: str) -> None:
        ws = await connect(url, origin=origin, compression=None, ping_interval=None)
        await ws.send(json.dumps({"type": "auth", "token": token}))
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready", ready
        opened.append(ws)

    while line := await loop.run_in_executor(None, sys.stdin.readline):
        upto = int(line)
        while len(opened) < upto:
            batch = tokens_[len(opened) : min(upto, len(opened) + 50)]
            await asyncio.gather(*(one(token) for token in batch))
        print("ok", flush=True)
    for ws in opened:
        await ws.close()


async def run(args: argparse.Namespace, tmp: Path) -> None:
    from directcall.sweeper import stop_running_sweeper

    tokens_ = await asyncio.to_thread(_people, args.then)
    opened: list = []
    served = None
    if args.server != "app":
        ws = {"uvicorn": "websockets"}.get(args.server, args.server.removeprefix("uvicorn-"))
        ws = "websockets-sansio" if ws == "sansio" else ws
        ws = "directcall.uvicorn_ws:LeanWebSocketProtocol" if ws == "lean" else ws
        served = _Served(ws, tokens_, tmp)
        await served.start()
        await served.open(args.first)
    else:
        await _open(tokens_[: args.first], opened)
    await asyncio.sleep(args.settle)
    first = _snapshot(args.traceback)
    rss_first = _rss_kib()
    if served is not None:
        await served.open(args.then)
    else:
        await _open(tokens_[args.first :], opened)
    await asyncio.sleep(args.settle)
    then = _snapshot(args.traceback)
    rss_then = _rss_kib()
    added = args.then - args.first
    by_file = then.compare_to(first, "filename")
    if served is None:
        by_file = [s for s in by_file if not _short(s.traceback[0].filename).startswith(_HARNESS)]
    total = sum(stat.size_diff for stat in by_file)
    print(f"\n{args.server}: {added} connections added: {total / added:,.0f} bytes of Python heap")
    print(f"each; RSS grew {(rss_then - rss_first) / added:.1f} KiB each (tracemalloc on)\n")
    print("| allocated in (per connection) | bytes | blocks |")
    print("|---|---|---|")
    rest = 0
    for stat in by_file:
        per = stat.size_diff / added
        if abs(per) < args.min_bytes:
            rest += stat.size_diff
            continue
        name = _short(stat.traceback[0].filename)
        print(f"| `{name}` | {per:,.0f} | {stat.count_diff / added:.1f} |")
    print(f"| the rest | {rest / added:,.0f} | |")
    if args.traceback:
        print()
        for stat in then.compare_to(first, "traceback")[: args.top]:
            print(f"{stat.size_diff / added:8.0f} B {stat.count_diff / added:5.1f} blocks")
            for line in stat.traceback.format()[-2 * args.traceback :]:
                print("    " + line.strip().replace(str(ROOT) + "/", ""))
    for communicator in opened:
        await communicator.disconnect()
    if served is not None:
        await served.stop()
    await stop_running_sweeper()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--first", type=int, default=300, help="connections before the base")
    parser.add_argument("--then", type=int, default=1300, help="connections in all")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds before a snapshot")
    parser.add_argument("--min-bytes", type=float, default=40, help="smaller files: 'the rest'")
    parser.add_argument("--traceback", type=int, default=0, help="frames per allocation site")
    parser.add_argument("--top", type=int, default=20, help="allocation sites shown")
    parser.add_argument(
        "--server",
        default="uvicorn-sansio",
        choices=["uvicorn-sansio", "uvicorn-lean", "uvicorn-wsproto", "uvicorn", "app"],
        help="a uvicorn in this process, or the application alone (WebsocketCommunicator)",
    )
    parser.add_argument(
        "--layer",
        default="memory",
        choices=["memory", "dclayer"],
        help="the in-memory layer, or directcall's Redis layer and cache (REDIS_URL)",
    )
    parser.add_argument("--smoke", action="store_true", help="a few connections (CI)")
    parser.add_argument("--client", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.smoke:
        args.first, args.then, args.settle = 5, 25, 0.2
    if args.client:
        asyncio.run(_client(*args.client))
        return
    with tempfile.TemporaryDirectory() as tmp:
        _setup(Path(tmp), args.layer)
        tracemalloc.start(max(1, args.traceback))
        asyncio.run(run(args, Path(tmp)))


if __name__ == "__main__":
    main()
