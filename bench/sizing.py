"""Sizing of the production topology: what a worker process carries, and what Redis and
PostgreSQL do per 1 000 calls (the table in docs/deployment.md).

    .venv/bin/python bench/sizing.py              # the run in docs/deployment.md
    .venv/bin/python bench/sizing.py --smoke      # a few calls, to prove it runs

Brings up ``deploy/topology.py`` — nginx terminating TLS in front of ``--workers`` ASGI
worker processes (its ``SERVER`` and ``LAYER``), a private redis-server and a fresh
PostgreSQL database, no coturn — with ``bench/proxy_settings.py``, and drives it from this
process with the signaling benchmark's clients (``bench/loadgen.py``), every one over
``wss://`` through nginx:

1. **calls**: ``--pairs`` pairs place full calls back to back for ``--seconds`` (invite,
   ringing, accept, ``--candidates`` candidate frames each way, hangup). Measured around
   exactly those calls: calls per second; CPU of the workers, nginx and Redis
   (``/proc``, ``INFO cpu``); Redis ``INFO commandstats`` and network bytes;
   ``pg_stat_database`` (transactions, rows) of the topology's database, and the CPU of the
   PostgreSQL server's processes when it runs on this machine.
2. **sign-ins**: ``--idle`` more users sign in as a page does (``POST v1/init``, then the
   socket's ``auth``), then each once more (``POST v1/init`` of a known cuid, as the
   next page view makes it): CPU, Redis commands and database transactions per sign-in.
3. **idle**: those users stay connected, pinging every 15 s as the SDK does: RSS growth of
   the workers and of nginx per connection; then ``--idle-seconds`` of quiet: what those
   connections cost per second (worker CPU, Redis commands, database transactions:
   presence renewals, pings, sweeps).

Only 127.0.0.1; every wait bounded. Needs nginx, redis-server and a PostgreSQL server
(``--postgres``, default DATABASE_URL's server or the local one).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import init_tokens, machine, machine_busy_s, process_cpu_s, table
from bench.loadgen import Calls, Client, CpuMeter, close_all, open_all, rss_kb, saturate
from deploy.topology import LAYER, LAYERS, SERVER, Topology, TopologyError, postgres_server_url

PING_INTERVAL = 15.0  # the SDK's (signaling.js PING_INTERVAL_MS)
FULL = {"pairs": 16, "seconds": 20.0, "idle": 2000, "idle_seconds": 30.0}
SMOKE = {"pairs": 2, "seconds": 1.0, "idle": 20, "idle_seconds": 1.0}


def log(message: str) -> None:
    print(f"[sizing] {message}", file=sys.stderr, flush=True)


class Counters:
    """Redis and PostgreSQL counters of the topology, read before and after a phase."""

    def __init__(self, topology: Topology) -> None:
        import psycopg
        import redis

        self.redis = redis.Redis.from_url(topology.redis_url)
        parts = urlsplit(topology.database_url)
        self.pg = psycopg.connect(
            urlunsplit(parts._replace(scheme="postgresql", path="/postgres")), autocommit=True
        )
        self.database = topology.database
        self.tables = psycopg.connect(
            urlunsplit(parts._replace(scheme="postgresql")), autocommit=True
        )
        # The server's first process (the postmaster), when it runs on this machine: it
        # forks a backend per connection and collects each one's CPU when it exits.
        backend = self.pg.execute("SELECT pg_backend_pid()").fetchone()[0]
        try:
            stat = Path(f"/proc/{backend}/stat").read_text()
            self.postmaster: int | None = int(stat[stat.rindex(")") + 2 :].split()[1])
        except OSError:
            self.postmaster = None

    def postgres_cpu(self) -> float | None:
        """CPU seconds of the PostgreSQL server: its processes now alive, and those exited."""
        if self.postmaster is None:
            return None
        tick = os.sysconf("SC_CLK_TCK")
        total = 0
        for path in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                text = path.read_text()
                fields = text[text.rindex(")") + 2 :].split()
                if int(path.parent.name) == self.postmaster or int(fields[1]) == self.postmaster:
                    # utime, stime, and the times of its exited, collected children.
                    total += sum(int(value) for value in fields[11:15])
        return total / tick

    def sample(self) -> dict[str, Any]:
        stats = self.redis.info("commandstats")
        other = self.redis.info()
        row = self.pg.execute(
            "SELECT xact_commit, xact_rollback, tup_inserted, tup_updated, tup_deleted, "
            "tup_returned, tup_fetched FROM pg_stat_database WHERE datname = %s",
            (self.database,),
        ).fetchone()
        scans = self.tables.execute(
            "SELECT t.relname, t.seq_tup_read + coalesce(sum(i.idx_tup_read), 0) "
            "FROM pg_stat_user_tables t LEFT JOIN pg_stat_user_indexes i USING (relid) "
            "GROUP BY t.relname, t.seq_tup_read"
        ).fetchall()
        return {
            "rows_read": Counter({name: int(count) for name, count in scans}),
            "commands": Counter({k.removeprefix("cmdstat_"): v["calls"] for k, v in stats.items()}),
            # The probes' own INFO calls are counted by Redis too: left out below.
            "redis_cpu": float(other["used_cpu_user"]) + float(other["used_cpu_sys"]),
            "postgres_cpu": self.postgres_cpu(),
            "net_in": int(other["total_net_input_bytes"]),
            "net_out": int(other["total_net_output_bytes"]),
            "db": dict(
                zip(
                    ("commit", "rollback", "inserted", "updated", "deleted", "returned", "fetched"),
                    row,
                    strict=True,
                )
            ),
        }

    def settled(self) -> dict[str, Any]:
        """A sample once PostgreSQL's statistics caught up (backends report them ≤ 1 s late)."""
        time.sleep(1.5)
        return self.sample()

    @staticmethod
    def delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
        commands = after["commands"] - before["commands"]
        commands.pop("info", None)
        return {
            "rows_read": after["rows_read"] - before["rows_read"],
            "commands": commands,
            "redis_cpu": after["redis_cpu"] - before["redis_cpu"],
            "postgres_cpu": None
            if before["postgres_cpu"] is None or after["postgres_cpu"] is None
            else after["postgres_cpu"] - before["postgres_cpu"],
            "net_in": after["net_in"] - before["net_in"],
            "net_out": after["net_out"] - before["net_out"],
            "db": {k: after["db"][k] - before["db"][k] for k in before["db"]},
        }

    def close(self) -> None:
        self.redis.close()
        self.pg.close()
        self.tables.close()


def _postgres_cpu_s() -> float:
    """CPU seconds of the PostgreSQL server's processes now alive (the topology's database
    is on it; a backend that exits takes its seconds with it)."""
    total = 0.0
    for comm in Path("/proc").glob("[0-9]*/comm"):
        with contextlib.suppress(OSError, ValueError):
            if comm.read_text().strip() == "postgres":
                total += process_cpu_s(int(comm.parent.name))
    return total


class OtherLoad:
    """The cores that processes outside the topology and this runner kept busy meanwhile
    (a test run, another benchmark): figures taken while that is high are disturbed."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.mark = self._sample()

    def _sample(self) -> tuple[float, ...]:
        ours = sum(process_cpu_s(pid) for pid in self.pids)
        return (time.monotonic(), machine_busy_s(), ours, _postgres_cpu_s(), time.process_time())

    def cores(self, redis_cpu_s: float) -> float:
        """Since the mark; ``redis_cpu_s``: the private Redis's CPU over the same time."""
        now = self._sample()
        wall, busy, *ours = (b - a for a, b in zip(self.mark, now, strict=True))
        return max(0.0, (busy - sum(ours) - redis_cpu_s) / wall) if wall > 0 else 0.0


def _specs(topology: Topology, tokens: dict[str, str], ids: list[str]) -> list[dict[str, Any]]:
    return [
        {"id": i, "url": topology.ws_url, "origin": topology.url, "token": tokens[i]} for i in ids
    ]


async def _pinging(clients: list[Client], stop: asyncio.Event) -> None:
    """Every client pings every PING_INTERVAL seconds (spread out), as the SDK does."""

    async def one(client: Client) -> None:
        await asyncio.sleep(random.uniform(0, PING_INTERVAL))
        while not stop.is_set():
            with contextlib.suppress(Exception):
                await client.send({"type": "ping"})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PING_INTERVAL)

    await asyncio.gather(*(one(c) for c in clients))


async def drive(
    topology: Topology,
    args: argparse.Namespace,
    tokens: dict[str, str],
    mint: Callable[[list[str]], dict[str, str]],
) -> dict:
    """The phases; returns the raw figures. ``mint`` signs users in over HTTP."""
    worker_pids = [w.pid for w in topology.worker_services]
    nginx_pids = [p for p in topology.server_pids if p not in worker_pids]
    workers_cpu = CpuMeter(worker_pids, None)
    nginx_cpu = CpuMeter(nginx_pids, None)
    counters = Counters(topology)
    calls = Calls("directcall", timeout=args.step_timeout)
    load_ids = [f"load_{i:05d}" for i in range(2 * args.pairs)]
    idle_ids = [f"idle_{i:05d}" for i in range(args.idle)]
    out: dict[str, Any] = {}
    load = await open_all(_specs(topology, tokens, load_ids), "directcall", 30, width=32)
    idle: list[Client] = []
    stop = asyncio.Event()
    pinger: asyncio.Task | None = None
    try:
        pairs = list(zip(load[0::2], load[1::2], strict=True))
        await asyncio.gather(*(calls.full(a, b, 2) for a, b in pairs))  # warm-up
        log(f"{len(load)} clients online; {args.pairs} pairs calling for {args.seconds:g}s")
        before = (counters.settled(), workers_cpu.sample(), nginx_cpu.sample())
        other = OtherLoad(worker_pids + nginx_pids)
        result = await saturate(calls, pairs, args.seconds, args.candidates)
        after = (counters.sample(), workers_cpu.sample(), nginx_cpu.sample())
        other_cores = other.cores(after[0]["redis_cpu"] - before[0]["redis_cpu"])
        after = (counters.settled(), *after[1:])
        if other_cores > 0.15:
            log(
                f"WARNING other processes kept {other_cores:.2f} cores busy during the calls: "
                "the figures are disturbed"
            )
        out["calls"] = {
            **result,
            "other_cores": other_cores,
            "counters": Counters.delta(before[0], after[0]),
            "workers_cpu_s": CpuMeter.delta(before[1], after[1])["cpu_s"],
            "nginx_cpu_s": CpuMeter.delta(before[2], after[2])["cpu_s"],
        }
        log(f"calls: {result['calls']} ({result['failed']} failed), {result['calls_per_s']:.1f}/s")
        for failure in result["failures"]:
            log(f"  failed: {failure}")

        # Signing in, as a page does: POST v1/init, then the socket's auth frame.
        marks = [(counters.settled(), workers_cpu.sample(), nginx_cpu.sample())]
        tokens = {**tokens, **await asyncio.to_thread(mint, idle_ids)}
        marks.append((counters.settled(), workers_cpu.sample(), nginx_cpu.sample()))
        rss_before = {pid: rss_kb(pid) for pid in worker_pids + nginx_pids}
        t0 = time.monotonic()
        idle = await open_all(_specs(topology, tokens, idle_ids), "directcall", 60, width=64)
        log(f"{len(idle)} idle connections open in {time.monotonic() - t0:.1f}s")
        marks.append((counters.settled(), workers_cpu.sample(), nginx_cpu.sample()))
        # The same users' next page view: POST v1/init of a cuid the server knows.
        await asyncio.to_thread(mint, idle_ids)
        marks.append((counters.settled(), workers_cpu.sample(), nginx_cpu.sample()))
        out["sign_in"] = {
            step: {
                "counters": Counters.delta(a[0], b[0]),
                "workers_cpu_s": CpuMeter.delta(a[1], b[1])["cpu_s"],
                "nginx_cpu_s": CpuMeter.delta(a[2], b[2])["cpu_s"],
            }
            for step, a, b in (
                ("init", marks[0], marks[1]),
                ("auth", marks[1], marks[2]),
                ("init_again", marks[2], marks[3]),
            )
        }
        pinger = asyncio.create_task(_pinging(idle, stop))
        await asyncio.sleep(min(5.0, args.idle_seconds))  # the first renewals, the allocator
        before = (counters.settled(), workers_cpu.sample(), nginx_cpu.sample(), time.monotonic())
        await asyncio.sleep(args.idle_seconds)
        after = (counters.sample(), workers_cpu.sample(), nginx_cpu.sample(), time.monotonic())
        rss_after = {pid: rss_kb(pid) for pid in worker_pids + nginx_pids}
        out["idle"] = {
            "connections": len(idle),
            "seconds": after[3] - before[3],
            "counters": Counters.delta(before[0], after[0]),
            "workers_cpu_s": CpuMeter.delta(before[1], after[1])["cpu_s"],
            "nginx_cpu_s": CpuMeter.delta(before[2], after[2])["cpu_s"],
            "worker_rss_kb": sum(rss_after[p] - rss_before[p] for p in worker_pids),
            "nginx_rss_kb": sum(rss_after[p] - rss_before[p] for p in nginx_pids),
            "per_worker_rss_mb": [rss_after[p] / 1024 for p in worker_pids],
        }
    finally:
        stop.set()
        if pinger is not None:
            await pinger
        await close_all(idle)
        await close_all(load)
        counters.close()
    return out


def _ms(seconds: float | None, per: float, unit: str = "ms", scale: float = 1.0) -> str:
    """``seconds`` per ``per`` in ms (or ``unit`` after dividing by ``scale``); ``?`` if
    not measured."""
    if seconds is None or per <= 0:
        return "?"
    return f"{seconds * 1000 / scale / per:.2f} {unit}"


def report(out: dict[str, Any], args: argparse.Namespace, topology: Topology) -> str:
    c, i = out["calls"], out["idle"]
    n = max(1, c["calls"])
    per_k = 1000 / n
    workers_ms = c["workers_cpu_s"] * 1000 / n
    nginx_ms = c["nginx_cpu_s"] * 1000 / n
    conns = max(1, i["connections"])
    worker_kib = i["worker_rss_kb"] / conns
    nginx_kib = i["nginx_rss_kb"] / conns
    db = c["counters"]["db"]
    commands = c["counters"]["commands"]
    top = ", ".join(f"{name} {count * per_k:,.0f}" for name, count in commands.most_common(6))
    idle_k = 1000 / conns / i["seconds"]
    idle_commands = sum(i["counters"]["commands"].values())
    lines = [
        f"## directcall sizing{' (smoke)' if args.smoke else ''}",
        "",
        f"Machine: {machine()}. Topology: nginx (TLS) → {args.workers} {topology.server} "
        f"workers{' (each on a CPU of its own, batch)' if topology.pin_workers else ''}, "
        f"{topology.layer} channel layer, Redis (private), PostgreSQL; all on "
        "127.0.0.1, the load generator on the same cores.",
        f"Calls: {args.pairs} pairs back to back for {args.seconds:g}s, {args.candidates} "
        f"candidate frames each way per call: {c['calls']} calls, {c['failed']} failed. "
        f"Idle: {i['connections']} connections signed in, pinging every {PING_INTERVAL:g}s, "
        f"watched for {i['seconds']:.0f}s. Other processes kept {c['other_cores']:.2f} "
        "cores busy during the calls.",
        "",
        "### A worker process",
        "",
        table(
            ["measure", "value"],
            [
                [
                    "full calls per second, whole topology, this 2-core machine",
                    f"{c['calls_per_s']:.1f}",
                ],
                ["worker CPU per full call (both parties' workers)", f"{workers_ms:.1f} ms"],
                [
                    "→ full calls per second per worker process at one busy core",
                    f"{1000 / workers_ms:.0f}" if workers_ms else "?",
                ],
                ["nginx CPU per full call (TLS, proxying)", f"{nginx_ms:.2f} ms"],
                ["worker memory per idle connection", f"{worker_kib:.1f} KiB"],
                [
                    "→ idle connections per GiB of worker memory",
                    f"{1024 * 1024 / worker_kib:,.0f}" if worker_kib > 0 else "?",
                ],
                ["nginx memory per idle connection", f"{nginx_kib:.1f} KiB"],
                [
                    "worker CPU per 1 000 idle connections (pings, presence)",
                    f"{i['workers_cpu_s'] * idle_k * 100:.1f} % of a core",
                ],
                [
                    "worker RSS after the run",
                    ", ".join(f"{mb:.0f} MiB" for mb in i["per_worker_rss_mb"]),
                ],
            ],
        ),
        "",
        "### A sign-in (each page that loads the SDK)",
        "",
        table(
            [
                "step",
                "worker CPU",
                "nginx CPU",
                "Redis commands",
                "Redis CPU",
                "PostgreSQL transactions",
                "PostgreSQL CPU",
            ],
            [
                [
                    label,
                    f"{step['workers_cpu_s'] * 1000 / conns:.1f} ms",
                    f"{step['nginx_cpu_s'] * 1000 / conns:.2f} ms",
                    f"{sum(step['counters']['commands'].values()) / conns:.1f}",
                    f"{step['counters']['redis_cpu'] * 1e6 / conns:.0f} µs",
                    f"{step['counters']['db']['commit'] / conns:.1f}",
                    _ms(step["counters"]["postgres_cpu"], conns),
                ]
                for label, step in (
                    ("POST v1/init (a new TLS connection each)", out["sign_in"]["init"]),
                    ("socket: TLS, upgrade, auth", out["sign_in"]["auth"]),
                    ("POST v1/init again, the next page view", out["sign_in"]["init_again"]),
                )
            ],
        ),
        "",
        "### Redis and PostgreSQL",
        "",
        table(
            ["load", "per 1 000 calls", "per 1 000 idle connections, per second"],
            [
                [
                    "Redis commands",
                    f"{sum(commands.values()) * per_k:,.0f} ({top})",
                    f"{idle_commands * idle_k:,.1f}",
                ],
                [
                    "Redis CPU",
                    f"{c['counters']['redis_cpu'] * per_k:.2f} s",
                    f"{i['counters']['redis_cpu'] * idle_k * 1000:.1f} ms",
                ],
                [
                    "Redis network in / out",
                    f"{c['counters']['net_in'] * per_k / 2**20:.1f} / "
                    f"{c['counters']['net_out'] * per_k / 2**20:.1f} MiB",
                    f"{i['counters']['net_in'] * idle_k / 1024:.1f} / "
                    f"{i['counters']['net_out'] * idle_k / 1024:.1f} KiB",
                ],
                [
                    "PostgreSQL transactions",
                    f"{db['commit'] * per_k:,.0f}",
                    f"{i['counters']['db']['commit'] * idle_k:,.2f}",
                ],
                [
                    "PostgreSQL CPU (the server's processes; a local server only)",
                    _ms(c["counters"]["postgres_cpu"], n / 1000, "s", 1000),
                    _ms(i["counters"]["postgres_cpu"], 1 / idle_k),
                ],
                [
                    "PostgreSQL rows inserted / updated / deleted",
                    f"{db['inserted'] * per_k:,.0f} / {db['updated'] * per_k:,.0f} / "
                    f"{db['deleted'] * per_k:,.0f}",
                    "",
                ],
                [
                    "PostgreSQL rows read (scans and indexes), by table",
                    ", ".join(
                        f"{name} {count * per_k:,.0f}"
                        for name, count in c["counters"]["rows_read"].most_common(3)
                        if count
                    )
                    or "none",
                    "",
                ],
                [
                    "PostgreSQL rows read (returned / fetched)",
                    f"{db['returned'] * per_k:,.0f} / {db['fetched'] * per_k:,.0f}",
                    f"{i['counters']['db']['returned'] * idle_k:,.1f} / "
                    f"{i['counters']['db']['fetched'] * idle_k:,.1f}",
                ],
            ],
        ),
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny counts, to prove it runs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--server", default=SERVER)
    parser.add_argument("--layer", default=LAYER, choices=LAYERS)
    parser.add_argument(
        "--pin-workers",
        action="store_true",
        help="keep each worker on a CPU of its own, as a batch process",
    )
    parser.add_argument("--pairs", type=int, help="pairs placing calls back to back")
    parser.add_argument("--seconds", type=float, help="length of the calls phase")
    parser.add_argument("--candidates", type=int, default=4, help="frames each way per call")
    parser.add_argument("--idle", type=int, help="idle connections for memory and idle load")
    parser.add_argument("--idle-seconds", type=float, help="length of the idle window")
    parser.add_argument("--step-timeout", type=float, default=20.0)
    parser.add_argument("--postgres", default=postgres_server_url(), help="PostgreSQL server")
    parser.add_argument("--keep", metavar="DIR", help="run in DIR and keep it (logs)")
    args = parser.parse_args(argv)
    for key, value in (SMOKE if args.smoke else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    with contextlib.ExitStack() as stack:
        workdir = (
            Path(args.keep).resolve()
            if args.keep
            else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dc-sizing-")))
        )
        topology = Topology(
            workdir,
            workers=args.workers,
            server=args.server,
            layer=args.layer,
            settings="bench.proxy_settings",
            asgi_app="bench.asgi:application",
            postgres_url=args.postgres,
            turn=False,
            tasks=False,
            ready_path="/bench/blank",
            env={"BENCH_DATABASE": "production"},
            pin_workers=args.pin_workers,
        )
        try:
            stack.enter_context(topology)
        except TopologyError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        log(f"topology up in {time.monotonic() - started:.1f}s:\n{topology.describe()}")
        # Clients in this process trust the topology's self-signed certificate.
        os.environ["SSL_CERT_FILE"] = str(topology.certificate)
        out = topology.manage(
            "directcall_account",
            "create",
            "--name",
            "Sizing",
            "--no-clevertap",
            "--identity",
            "page",
        )
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        account_id, api_key = fields["accountId"].strip(), fields["apikey"].strip()

        def mint(ids: list[str]) -> dict[str, str]:
            return init_tokens(topology.url, account_id, api_key, ids)

        tokens = mint([f"load_{i:05d}" for i in range(2 * args.pairs)])
        figures = asyncio.run(drive(topology, args, tokens, mint))
    print(report(figures, args, topology))
    print(f"\n(total {time.monotonic() - started:.0f}s)")
    return 1 if figures["calls"]["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
