"""Signaling load benchmark: directcall's server configurations against PeerJS and a plain relay.

The ``floor`` configuration (``bench/floor.py``) serves directcall's protocol and rules with
no framework: what a set-up costs any server that keeps them.

    .venv/bin/python bench/signaling.py            # the full run (docs/performance.md)
    .venv/bin/python bench/signaling.py --smoke    # a few calls per configuration (CI)
    .venv/bin/python bench/signaling.py --configs daphne,peerjs --idle 1000

For each configuration it starts the server process(es) on 127.0.0.1 with a fresh copy of
one prepared database, runs the load generator (``bench/loadgen.py``, its own process) and
prints one table: sustained calls per second, latency of invite→incoming and
accept→answered, server CPU per call set-up and per relayed frame (from the servers' own
``/proc`` accounting, plus Redis's ``INFO cpu`` where Redis is in the path) and RSS per idle
connection, each with its ratio to PeerJS. ``--profile DIR`` records the first daphne
configuration's relay phase with py-spy and prints where the time per relayed frame goes.

Users sign in once per run through the real init endpoint (``POST /directcall/v1/init``)
of a daphne process on the prepared database; every configuration gets a copy of that
database, so the same tokens work everywhere. PeerJS (npm ``peer``) is installed on first
use into ``bench/.cache/`` (ignored by git).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import queue
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    BENCH,
    LEAN_WS,
    PEERJS_VERSION,
    PY,
    ROOT,
    SERVERS,
    WS_PATH,
    BenchError,
    Database,
    Proc,
    clean_redis,
    daphne,
    django_env,
    ensure_peerjs,
    free_port,
    init_tokens,
    machine,
    machine_busy_s,
    node_version,
    process_cpu_s,
    redis_cpu_s,
    redis_ok,
    table,
)
from bench.proxy import LAYER, SERVER, ProxiedWorkers, nginx_installed
from deploy.topology import can_pin, worker_cpu

TITLE = "directcall signaling benchmark"


@dataclass(frozen=True)
class Config:
    name: str
    label: str
    protocol: str  # "directcall" or "peer" (PeerJS's wire protocol)
    server: str  # peerjs | relay | floor | a key of bench._common.SERVERS (daphne, uvicorn, ...)
    procs: int = 1
    layer: str | None = None  # memory | redis | pubsub | dclayer
    proxy: bool = False  # behind nginx terminating TLS (deploy/topology.py)

    @property
    def redis(self) -> bool:
        return self.layer in ("redis", "pubsub", "dclayer", "directcall")


CONFIGS = [
    Config("peerjs", f"PeerJS server {PEERJS_VERSION} (Node)", "peer", "peerjs"),
    Config("relay", "plain Python websockets relay", "peer", "relay"),
    # directcall's protocol and rules with no framework (bench/floor.py), on SQLite.
    Config("floor", "the floor: directcall's rules, no framework", "directcall", "floor"),
    Config("daphne", "1 daphne, InMemoryChannelLayer", "directcall", "daphne", 1, "memory"),
    Config("uvicorn", "1 uvicorn (websockets), in-memory", "directcall", "uvicorn", 1, "memory"),
    Config(
        "uvicorn-sansio",
        "1 uvicorn (websockets-sansio), in-memory",
        "directcall",
        "uvicorn-sansio",
        1,
        "memory",
    ),
    Config(
        "uvicorn-lean",
        "1 uvicorn (directcall.uvicorn_ws), in-memory",
        "directcall",
        "uvicorn-lean",
        1,
        "memory",
    ),
    Config(
        "uvicorn-wsproto",
        "1 uvicorn (wsproto), in-memory",
        "directcall",
        "uvicorn-wsproto",
        1,
        "memory",
    ),
    Config("hypercorn", "1 hypercorn, in-memory", "directcall", "hypercorn", 1, "memory"),
    Config("granian", "1 granian, in-memory", "directcall", "granian", 1, "memory"),
    Config("daphne-redis", "2 daphne, RedisChannelLayer", "directcall", "daphne", 2, "redis"),
    Config(
        "daphne-pubsub", "2 daphne, RedisPubSubChannelLayer", "directcall", "daphne", 2, "pubsub"
    ),
    Config("uvicorn-redis", "2 uvicorn, RedisChannelLayer", "directcall", "uvicorn", 2, "redis"),
    Config(
        "uvicorn-pubsub",
        "2 uvicorn, RedisPubSubChannelLayer",
        "directcall",
        "uvicorn",
        2,
        "pubsub",
    ),
    Config(
        "uvicorn-dclayer",
        "2 uvicorn, directcall RedisPubSubLayer",
        "directcall",
        "uvicorn",
        2,
        "dclayer",
    ),
    Config(
        "sansio-dclayer",
        "2 uvicorn (websockets-sansio), directcall RedisPubSubLayer",
        "directcall",
        "uvicorn-sansio",
        2,
        "dclayer",
    ),
    # The production topology (deploy/topology.py, its SERVER and LAYER): wss:// to nginx,
    # which spreads the sockets over the workers, so about half the calls cross processes.
    Config(
        "proxy", f"nginx (TLS) → 2 {SERVER}, {LAYER} layer", "directcall", SERVER, 2, LAYER, True
    ),
]
BY_NAME = {c.name: c for c in CONFIGS}

FULL = {
    "clients": 200,
    "rate": 10.0,
    "load_calls": 100,
    "setup_calls": 100,
    "candidates": 10,
    "relay_calls": 50,
    "relay_frames": 100,
    "idle_relay_frames": 10,
    "max_seconds": 5.0,
    "max_concurrency": 16,
    "idle": "1000,5000",
    "warmup_calls": 10,
    "idle_settle": 2.0,
}
SMOKE = {
    "clients": 4,
    "rate": 20.0,
    "load_calls": 4,
    "setup_calls": 4,
    "candidates": 10,
    "relay_calls": 2,
    "relay_frames": 10,
    "idle_relay_frames": 5,
    "max_seconds": 0.5,
    "max_concurrency": 2,
    "idle": "10,20",
    "warmup_calls": 2,
    "idle_settle": 0.2,
}


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# -- one configuration --------------------------------------------------------------------------


class Run:
    """Everything one benchmark run shares: the database, the tokens, the temp directory."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.tmp = tmp
        self.prefix = f"dcbench{uuid.uuid4().hex[:8]}"
        self.redis_url = args.redis_url
        self.db: Database | None = None
        self.tokens: dict[str, str] = {}
        self.load_ids = [f"load_{i:05d}" for i in range(args.clients)]
        self.idle_ids = [f"idle_{i:05d}" for i in range(max(args.idle_steps, default=0))]

    def prepare_directcall(self) -> None:
        """Migrate, create the account, sign every user in over HTTP (once per run)."""
        started = time.monotonic()
        self.db = Database(self.tmp, self.args.postgres)
        env = django_env(self.db.url, "memory", f"{self.prefix}-init", None)
        account_id, api_key = self.db.prepare(env)
        # Two server processes (both cores) share the sign-ins.
        servers = [daphne(f"init-{i}", env, self.tmp / f"daphne-init-{i}.log") for i in (0, 1)]
        cuids = self.load_ids + self.idle_ids
        try:
            for server in servers:
                server.start()
            with ThreadPoolExecutor(2) as pool:
                parts = pool.map(
                    lambda i: init_tokens(
                        f"http://127.0.0.1:{servers[i].port}", account_id, api_key, cuids[i::2]
                    ),
                    (0, 1),
                )
                for part in parts:
                    self.tokens.update(part)
        finally:
            for server in servers:
                server.stop()
        log(
            f"database ready ({'PostgreSQL' if self.args.postgres else 'SQLite'}), "
            f"{len(self.tokens)} users signed in through /directcall/v1/init in "
            f"{time.monotonic() - started:.1f}s"
        )

    def servers(self, config: Config) -> list[Proc]:
        logs = self.tmp
        if config.server == "peerjs":
            cli = ensure_peerjs()
            port = free_port()
            cmd = [
                "node",
                str(cli),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--path",
                "/peerjs",
                "--concurrent_limit",
                "1000000",
                "--alive_timeout",
                "3600000",
            ]
            return self._pinned([Proc("peerjs", cmd, port, logs / "peerjs.log")])
        if config.server == "relay":
            port = free_port()
            cmd = [PY, str(BENCH / "relay.py"), "--port", str(port)]
            return self._pinned([Proc("relay", cmd, port, logs / "relay.log")])
        prefix = f"{self.prefix}-{config.name}"
        url = self.db.clone(config.name)
        if config.server == "floor":
            port = free_port()
            cmd = [PY, "-m", "uvicorn", "bench.floor:app", "--host", "127.0.0.1"]
            cmd += ["--port", str(port), "--backlog", "4096", "--lifespan", "off"]
            cmd += ["--ws", LEAN_WS, "--log-level", "warning"]
            env = {
                **django_env(url, "memory", prefix, None),
                "FLOOR_DATABASE": url.removeprefix("sqlite:///"),
            }
            return self._pinned([Proc("floor", cmd, port, logs / "floor.log", env)])
        env = django_env(url, config.layer, prefix, self.redis_url if config.redis else None)
        if config.proxy:
            return [
                ProxiedWorkers(
                    config.name,
                    logs / config.name,
                    database_url=url,
                    redis_url=self.redis_url,
                    prefix=prefix,
                    workers=config.procs,
                    server=config.server,
                    layer=config.layer,
                    # The topology refuses more pinned workers than CPUs.
                    pin_workers=self.args.pin and can_pin(config.procs),
                )
            ]
        make = SERVERS[config.server]
        return self._pinned(
            [
                make(f"{config.name}-{i}", env, logs / f"{config.name}-{i}.log")
                for i in range(config.procs)
            ]
        )

    def _pinned(self, servers: list[Proc]) -> list[Proc]:
        """With ``--pin``: each server process on a CPU of its own and scheduled as batch,
        like the production topology's workers with ``--pin-workers`` (deploy/topology.py's
        worker_cpu and pinned_to; with more processes than CPUs, they take the CPUs in
        turn)."""
        if self.args.pin:
            for i, server in enumerate(servers):
                server.cpus = {worker_cpu(i)}
        return servers

    def loadgen_config(self, config: Config, servers: list[Proc]) -> dict[str, Any]:
        a = self.args

        def spec(ident: str, index: int, server: Proc) -> dict[str, Any]:
            if config.protocol == "peer":
                url = (
                    f"ws://127.0.0.1:{server.port}/peerjs/peerjs?key=peerjs&id={ident}"
                    f"&token=t{index}"
                )
                return {"id": ident, "url": url}
            secure = "s" if config.proxy else ""  # wss:// and https:// through nginx
            return {
                "id": ident,
                "url": f"ws{secure}://127.0.0.1:{server.port}{WS_PATH}",
                "origin": f"http{secure}://127.0.0.1:{server.port}",
                "token": self.tokens[ident],
            }

        # Callers (even) on the first process, callees (odd) on the last: with two
        # processes every call crosses the channel layer. Idle connections alternate.
        load = [
            spec(ident, i, servers[i % 2 if len(servers) > 1 else 0])
            for i, ident in enumerate(self.load_ids)
        ]
        idle = [spec(ident, i, servers[i % len(servers)]) for i, ident in enumerate(self.idle_ids)]
        return {
            "protocol": config.protocol,
            "server_pids": [p for s in servers for p in getattr(s, "pids", [s.pid])],
            "redis_url": self.redis_url if config.redis else None,
            "load": load,
            "idle": idle,
            "idle_steps": a.idle_steps,
            "rate": a.rate,
            "load_calls": a.load_calls,
            "setup_calls": a.setup_calls,
            "candidates": a.candidates,
            "relay_calls": min(a.relay_calls, len(load) // 2),
            "relay_frames": a.relay_frames,
            "idle_relay_frames": a.idle_relay_frames,
            "max_seconds": a.max_seconds,
            "max_concurrency": min(a.max_concurrency, len(load) // 2),
            "warmup_calls": a.warmup_calls,
            "idle_settle": a.idle_settle,
            "idle_cpu_seconds": a.idle_cpu,
            "timeout": a.step_timeout,
            "total_timeout": a.config_timeout,
            "hold": [self.args.profile_phase] if self.profiling(config) else [],
        }

    def profiling(self, config: Config) -> bool:
        return bool(self.args.profile) and config.name == self.args.profile_config

    def run_config(self, config: Config) -> dict[str, Any]:
        servers = self.servers(config)
        started = time.monotonic()
        result: dict[str, Any] = {"config": config.name, "label": config.label, "phases": {}}
        try:
            for server in servers:
                server.start()
            cfg_path = self.tmp / f"loadgen-{config.name}.json"
            cfg_path.write_text(json.dumps(self.loadgen_config(config, servers)))
            result.update(self._drive(config, servers, cfg_path))
        finally:
            for server in servers:
                server.stop()
            if config.redis:
                clean_redis(self.redis_url, [f"{self.prefix}-{config.name}"])
        result["seconds"] = round(time.monotonic() - started, 1)
        return result

    def _drive(self, config: Config, servers: list[Proc], cfg_path: Path) -> dict[str, Any]:
        """Run the load generator; collect its phase reports (and the profile, if asked)."""
        redis_url = self.redis_url if config.redis else None
        # What the rest of the machine does meanwhile: busy CPU not spent by the servers,
        # the load generator, Redis or this runner (a parallel test run, say).
        mark = (
            time.monotonic(),
            machine_busy_s(),
            sum(process_cpu_s(p) for s in servers for p in getattr(s, "pids", [s.pid])),
            redis_cpu_s(redis_url),
            time.process_time(),
        )
        loadgen_cpu = other_cores = 0.0
        proc = subprocess.Popen(
            [PY, str(BENCH / "loadgen.py"), str(cfg_path)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            # SSL_CERT_FILE: trust the proxy's self-signed certificate.
            env={**os.environ, "PYTHONUNBUFFERED": "1", **getattr(servers[0], "client_env", {})},
        )
        lines: queue.Queue = queue.Queue()

        def pump() -> None:
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        phases: dict[str, Any] = {}
        memory: list[dict[str, Any]] = []
        error = None
        profiler: subprocess.Popen | None = None
        deadline = time.monotonic() + self.args.config_timeout + 30
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise BenchError(f"{config.name}: the load generator ran out of time")
                try:
                    line = lines.get(timeout=remaining)
                except queue.Empty:
                    continue
                if line is None:
                    break
                try:
                    event = json.loads(line)
                except ValueError:
                    log(f"{config.name}: {line.rstrip()}")
                    continue
                kind = event.pop("event")
                if kind == "phase":
                    name = event.pop("name")
                    if name == "memory":
                        memory.append(event)
                    else:
                        phases[name] = event
                    if name == self.args.profile_phase and profiler is not None:
                        profiler.send_signal(signal.SIGINT)
                    log(f"{config.name}: {name} {_brief(name, event)}")
                    for failure in event.get("failures", []):
                        log(f"{config.name}:   {failure}")
                elif kind == "hold":
                    profiler = self._start_profiler(servers[0])
                    proc.stdin.write("go\n")
                    proc.stdin.flush()
                elif kind == "connected":
                    log(f"{config.name}: {event['clients']} clients online in {event['seconds']}s")
                elif kind == "error":
                    error = event["message"]
                elif kind == "done":
                    loadgen_cpu = event["cpu_s"]
            proc.wait(timeout=30)
            ours = (
                sum(process_cpu_s(p) for s in servers for p in getattr(s, "pids", [s.pid]))
                - mark[2]
                + redis_cpu_s(redis_url)
                - mark[3]
                + time.process_time()
                - mark[4]
                + loadgen_cpu
            )
            wall = time.monotonic() - mark[0]
            other_cores = max(0.0, (machine_busy_s() - mark[1] - ours) / wall)
            if other_cores > 0.15:
                log(
                    f"{config.name}: WARNING other processes kept {other_cores:.2f} cores busy "
                    "during this configuration: latency and throughput figures are disturbed"
                )
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            if profiler is not None:
                if profiler.poll() is None:
                    profiler.send_signal(signal.SIGINT)
                try:
                    profiler.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    profiler.kill()
        stderr = proc.stderr.read()
        if proc.returncode != 0 or error:
            tails = "\n".join(f"--- {s.name} ({s.log})\n{s.tail(15)}" for s in servers)
            raise BenchError(
                f"{config.name}: load generator failed ({proc.returncode}): {error}\n"
                f"{stderr[-3000:]}\n{tails}"
            )
        out: dict[str, Any] = {"phases": phases, "memory": memory}
        out["other_cores"] = round(other_cores, 2)
        out["loadgen_cpu_s"] = round(loadgen_cpu, 2)
        if profiler is not None:
            out["profile"] = str(self.profile_path)
        return out

    @property
    def profile_path(self) -> Path:
        name = f"{self.args.profile_config}-{self.args.profile_phase}.pyspy.txt"
        return Path(self.args.profile) / name

    def _start_profiler(self, server: Proc) -> subprocess.Popen:
        spy = shutil.which("py-spy", path=str(Path(PY).parent)) or shutil.which("py-spy")
        if spy is None:
            raise BenchError("--profile needs py-spy: .venv/bin/pip install py-spy")
        Path(self.args.profile).mkdir(parents=True, exist_ok=True)
        proc = subprocess.Popen(
            [
                spy,
                "record",
                "--pid",
                str(server.pid),
                "--rate",
                str(self.args.profile_rate),
                "--format",
                "raw",
                "--nonblocking",
                *(["--gil"] if self.args.profile_threads == "gil" else []),
                "--output",
                str(self.profile_path),
            ],
            stdout=subprocess.DEVNULL,
            stderr=(self.tmp / "py-spy.log").open("wb"),
        )
        time.sleep(1.0)  # let it attach before the measured window opens
        if proc.poll() is not None:
            raise BenchError(f"py-spy exited: {(self.tmp / 'py-spy.log').read_text()}")
        return proc


def _brief(name: str, e: dict[str, Any]) -> str:
    if name in ("load", "setup"):
        return (
            f"{e['calls']} calls ({e['failed']} failed) at {e['achieved_rate'] or 0:.1f}/s, "
            f"invite→incoming p50 {e['invite_p50_ms']} ms, server CPU {e['cpu_s']:.3f}s"
            + (f" (main threads {e['main_cpu_s']:.3f}s)" if e.get("main_cpu_s") else "")
        )
    if name in ("relay", "relay_idle"):
        return f"{e['frames']} frames in {e['wall_s']:.2f}s, server CPU {e['cpu_s']:.3f}s"
    if name == "max":
        return f"{e['calls']} calls ({e['failed']} failed), {e['calls_per_s'] or 0:.1f}/s"
    if name == "memory":
        quiet = e.get("idle_cpu_us")
        return (
            f"{e['connections']} idle: {e['per_connection_kb']:.1f} KiB each; opening them "
            f"took {e['open_seconds']:.1f}s, {e['open_cpu_ms']:.2f} ms server CPU each"
            + (f"; idle, {quiet:.1f} µs server CPU per connection per second" if quiet else "")
        )
    return ""


# -- the report ---------------------------------------------------------------------------------


def figures(result: dict[str, Any]) -> dict[str, float | None]:
    p = result.get("phases", {})
    load, setup, relay, peak = (p.get(k) or {} for k in ("load", "setup", "relay", "max"))
    idle_relay = p.get("relay_idle") or {}

    def total(phase: dict[str, Any]) -> float | None:
        if "cpu_s" not in phase:
            return None
        return phase["cpu_s"] + (phase.get("redis_cpu_s") or 0.0)

    def per(value: float | None, count: int | None, scale: float) -> float | None:
        return value / count * scale if value is not None and count else None

    mem = {m["connections"]: m["per_connection_kb"] for m in result.get("memory", [])}
    steps = sorted(mem)
    return {
        "max_cps": peak.get("calls_per_s"),
        "inv50": load.get("invite_p50_ms"),
        "inv99": load.get("invite_p99_ms"),
        "acc50": load.get("accept_p50_ms"),
        "acc99": load.get("accept_p99_ms"),
        "setup_ms": per(total(setup), setup.get("calls"), 1e3),
        "frame_us": per(total(relay), relay.get("frames"), 1e6),
        "frame_idle_us": per(total(idle_relay), idle_relay.get("frames"), 1e6),
        "mem_small": mem[steps[0]] if steps else None,
        "mem_large": mem[steps[-1]] if len(steps) > 1 else None,
    }


def _fmt(value: float | None, base: float | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    text = f"{value:.{digits}f}"
    if base:
        text += f" (×{value / base:.2g})" if value / base < 10 else f" (×{value / base:.0f})"
    return text


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> str:
    figs = {r["config"]: figures(r) for r in results}
    base = figs.get("peerjs", {})
    steps = args.idle_steps
    small = steps[0] if steps else None
    large = steps[-1] if len(steps) > 1 else None
    headers = [
        "configuration",
        "calls/s sustained (saturated)",
        "invite→incoming p50 / p99 ms",
        "accept→answered p50 / p99 ms",
        "CPU per call set-up, ms",
        "CPU per relayed frame, µs",
        f"same with {steps[-1] if steps else '-'} idle conns open, µs",
        f"RSS per idle conn @{small or '-'}, KiB",
        f"@{large or '-'}, KiB",
    ]
    rows = []
    for r in results:
        f = figs[r["config"]]
        b = base if r["config"] != "peerjs" else {}
        rows.append(
            [
                r["label"],
                _fmt(f["max_cps"], b.get("max_cps"), 0),
                f"{_fmt(f['inv50'], b.get('inv50'))} / {_fmt(f['inv99'], b.get('inv99'))}",
                f"{_fmt(f['acc50'], b.get('acc50'))} / {_fmt(f['acc99'], b.get('acc99'))}",
                _fmt(f["setup_ms"], b.get("setup_ms"), 2),
                _fmt(f["frame_us"], b.get("frame_us"), 0),
                _fmt(f["frame_idle_us"], b.get("frame_idle_us"), 0),
                _fmt(f["mem_small"], b.get("mem_small")),
                _fmt(f["mem_large"], b.get("mem_large")),
            ]
        )
    main = table(headers, rows)

    detail_rows = []
    for r in results:
        p = r.get("phases", {})
        load, setup, relay, peak = (p.get(k) or {} for k in ("load", "setup", "relay", "max"))

        def split(phase: dict[str, Any], count: int | None, scale: float, digits: int) -> str:
            if not count or "cpu_s" not in phase:
                return "—"
            own = phase["cpu_s"] / count * scale
            if phase.get("redis_cpu_s") is None:
                return f"{own:.{digits}f}"
            return f"{own:.{digits}f} + {phase['redis_cpu_s'] / count * scale:.{digits}f}"

        failed = sum(p.get(k, {}).get("failed", 0) for k in ("load", "setup", "max"))
        opens = [m["open_cpu_ms"] for m in r.get("memory", [])]
        quiet = [m["idle_cpu_us"] for m in r.get("memory", []) if m.get("idle_cpu_us") is not None]
        detail_rows.append(
            [
                r["config"],
                f"{load.get('calls', 0)} @ {load.get('achieved_rate') or 0:.1f}/s",
                split(setup, setup.get("calls"), 1e3, 2),
                split(relay, relay.get("frames"), 1e6, 0),
                split(peak, peak.get("calls"), 1e3, 2),
                f"{peak.get('calls', 0)} in {peak.get('wall_s', 0):.1f}s"
                f" × {peak.get('concurrency', 0)}",
                f"{statistics.fmean(opens):.2f}" if opens else "—",
                " / ".join(f"{us:.1f}" for us in quiet) if quiet else "—",
                f"{r.get('other_cores', 0):.2f}",
                str(failed),
                f"{r.get('seconds', 0):.0f}s",
            ]
        )
    details = table(
        [
            "config",
            "load phase: calls @ rate",
            "set-up ms: server + Redis",
            "frame µs: server + Redis",
            "full call at saturation, ms CPU",
            "saturation: calls in s × pairs",
            "sign-in ms CPU/conn",
            "idle µs CPU/conn/s",
            "other load, cores",
            "failed calls",
            "run time",
        ],
        detail_rows,
    )
    return f"{main}\n\nDetails (CPU split between the server processes and Redis):\n\n{details}"


# -- profile analysis ---------------------------------------------------------------------------

# First match from the innermost frame outwards decides a sample's category.
CATEGORIES = [
    ("JSON encode/decode (json)", ("json/",)),
    ("candidate validation (candidates_of)", ("candidates_of (directcall/protocol.py",)),
    ("presence lookup (cache get + unpickle)", ("directcall/presence.py", "django/core/cache")),
    ("channel layer (in-memory send/receive)", ("channels/layers.py",)),
    ("directcall pub/sub layer (redislayer, msgpack)", ("directcall/redislayer.py", "msgpack")),
    ("channels_redis / redis-py", ("channels_redis/", "redis/")),
    (
        "asgiref sync_to_async / thread hand-off",
        ("asgiref/", "concurrent/futures", "threading.py", "queue.py", "channels/db.py"),
    ),
    ("Django ORM and SQLite (django/db)", ("django/db/", "sqlite3/")),
    ("Django other (signals, settings, utils)", ("django/",)),
    (
        "channels consumer dispatch",
        ("channels/consumer.py", "channels/generic/", "channels/utils.py", "channels/routing.py"),
    ),
    ("directcall consumer (other)", ("directcall/",)),
    ("WebSocket framing (autobahn)", ("autobahn/",)),
    ("daphne ASGI glue", ("daphne/",)),
    ("twisted reactor / TCP", ("twisted/",)),
    ("asyncio event loop", ("asyncio/",)),
]


# Functions whose inclusive time is shown: (function name without its class, file).
WATCH = [
    ("receive", "directcall/consumers.py"),
    ("on_candidates", "directcall/consumers.py"),
    ("candidates_of", "directcall/protocol.py"),
    ("find", "directcall/party.py"),
    ("tell_peer", "directcall/party.py"),
    ("dc_relay", "directcall/consumers.py"),
    ("_send", "directcall/consumers.py"),
    ("on_invite", "directcall/consumers.py"),
    ("on_ringing", "directcall/consumers.py"),
    ("on_accept", "directcall/consumers.py"),
    ("_leave", "directcall/consumers.py"),
    ("dc_incoming", "directcall/consumers.py"),
    ("dc_state", "directcall/consumers.py"),
    ("announce", "directcall/transport.py"),
    ("send", "directcall/transport.py"),
    ("lookup", "directcall/presence.py"),
    ("__call__", "asgiref/sync.py"),
    ("run_in_executor", "asyncio/base_events.py"),
    ("send", "channels/layers.py"),
    ("receive", "channels/layers.py"),
    ("send", "channels_redis/core.py"),
    ("receive", "channels_redis/core.py"),
    ("publish", "directcall/redislayer.py"),
    ("flush", "directcall/redislayer.py"),
    ("data_received", "directcall/redislayer.py"),
    ("receive", "directcall/redislayer.py"),
    ("dumps", "json/__init__.py"),
    ("loads", "json/__init__.py"),
    ("execute", "django/db/backends/utils.py"),
    ("_commit", "django/db/backends/base/base.py"),
    ("send", "django/dispatch/dispatcher.py"),
]
_FRAME = re.compile(r"^(?P<name>.*) \((?P<file>.*?)(?::\d+)?\)$")


def _function(frame: str) -> tuple[str, str]:
    """``Class.method (path/file.py:12)`` → (``Class.method``, ``path/file.py``)."""
    match = _FRAME.match(frame)
    return (match["name"], match["file"]) if match else (frame, "")


def analyse_profile(path: Path, unit_us: float | None, count: int, unit: str) -> str:
    """Where the samples of a py-spy raw (collapsed stacks) file went, in µs per ``unit``."""
    stacks: Counter = Counter()
    for line in path.read_text(errors="replace").splitlines():
        stack, _, number = line.rpartition(" ")
        if stack and number.isdigit():
            stacks[stack] += int(number)
    total = sum(stacks.values())
    if not total:
        return f"(no samples in {path})"
    categories: Counter = Counter()
    leaves: Counter = Counter()
    inclusive: Counter = Counter()
    for stack, n in stacks.items():
        frames = [f for f in stack.split(";") if f]
        functions = [_function(f) for f in frames]
        leaves[functions[-1]] += n
        for function in set(functions):
            inclusive[function] += n
        for frame in reversed(frames):
            label = next((lab for lab, pats in CATEGORIES if any(p in frame for p in pats)), None)
            if label:
                categories[label] += n
                break
        else:
            categories["other (interpreter, C code without Python frame)"] += n

    def us(share: float) -> str:
        return f"{share * unit_us:.0f}" if unit_us else "—"

    per = f"µs/{unit}"
    cat_rows = [[label, f"{n / total:.1%}", us(n / total)] for label, n in categories.most_common()]
    leaf_rows = [
        [f"{name} ({file})", f"{n / total:.1%}", us(n / total)]
        for (name, file), n in leaves.most_common(15)
    ]
    incl_rows = []
    for func, file in WATCH:
        n = sum(
            c for (name, f), c in inclusive.items() if f == file and name.split(".")[-1] == func
        )
        if n:
            incl_rows.append([f"{func} ({file})", f"{n / total:.1%}", us(n / total)])
    return (
        f"py-spy: {total} samples over {count} {unit}s "
        f"({f'{unit_us:.0f} µs' if unit_us else '?'} of server CPU per {unit} in this run)\n\n"
        + table(["where (innermost match)", "share", per], cat_rows)
        + "\n\nSelf time, top functions:\n\n"
        + table(["function (file)", "share", per], leaf_rows)
        + "\n\nInclusive time of selected functions (coroutine frames are sampled only "
        + "while they run, so awaited time is not included):\n\n"
        + table(["function (file)", "share", per], incl_rows)
    )


# -- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--smoke", action="store_true", help="tiny counts, to prove it runs")
    parser.add_argument(
        "--configs",
        default=",".join(c.name for c in CONFIGS),
        help="comma-separated, from: " + ", ".join(c.name for c in CONFIGS),
    )
    parser.add_argument("--clients", type=int, help="load clients kept online (even)")
    parser.add_argument("--rate", type=float, help="calls started per second (load, setup)")
    parser.add_argument("--load-calls", type=int, help="full calls in the latency phase")
    parser.add_argument("--setup-calls", type=int, help="calls without candidates (CPU/call)")
    parser.add_argument("--candidates", type=int, help="candidate frames each way per call")
    parser.add_argument("--relay-calls", type=int, help="established calls in the relay phase")
    parser.add_argument("--relay-frames", type=int, help="candidate frames each way per call")
    parser.add_argument(
        "--idle-relay-frames", type=int, help="frames each way relayed again with idle conns open"
    )
    parser.add_argument("--max-seconds", type=float, help="length of the saturation phase")
    parser.add_argument("--max-concurrency", type=int, help="pairs calling in saturation")
    parser.add_argument("--idle", help="idle connection counts for RSS, e.g. 1000,5000 ('' none)")
    parser.add_argument("--warmup-calls", type=int)
    parser.add_argument("--idle-settle", type=float, help="seconds before reading RSS")
    parser.add_argument(
        "--idle-cpu",
        type=float,
        default=0.0,
        help="seconds of server CPU measured with the idle connections open (0: not measured)",
    )
    parser.add_argument("--step-timeout", type=float, default=20.0, help="seconds per wait")
    parser.add_argument("--config-timeout", type=float, default=300.0, help="seconds per config")
    parser.add_argument(
        "--redis-url", default=os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    )
    parser.add_argument(
        "--postgres",
        nargs="?",
        const="postgres://postgres@127.0.0.1:5432/postgres",
        help="use PostgreSQL (server URL; fresh databases are created and dropped)",
    )
    parser.add_argument("--profile", metavar="DIR", help="py-spy one phase into DIR")
    parser.add_argument("--profile-phase", default="relay", choices=["relay", "setup"])
    parser.add_argument("--profile-config", default="daphne", help="which config to profile")
    parser.add_argument("--profile-rate", type=int, default=250, help="py-spy samples/s")
    parser.add_argument(
        "--profile-threads",
        choices=["gil", "active"],
        default="gil",
        help="sample the thread holding the GIL (Python CPU), or every non-idle thread",
    )
    parser.add_argument(
        "--pin",
        action="store_true",
        help="keep each server process on a CPU of its own, as a batch process (PeerJS and "
        "the relay too); the load generator runs anywhere",
    )
    parser.add_argument("--keep", action="store_true", help="keep the logs (printed path)")
    parser.add_argument("--json", metavar="FILE", help="also write the raw results as JSON")
    args = parser.parse_args(argv)
    defaults = SMOKE if args.smoke else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.clients += args.clients % 2
    args.idle_steps = sorted({int(x) for x in args.idle.split(",") if x.strip()})
    names = [n.strip() for n in args.configs.split(",") if n.strip()]
    unknown = [n for n in names if n not in BY_NAME]
    if unknown:
        parser.error(f"unknown configuration(s): {', '.join(unknown)}")
    args.config_list = [BY_NAME[n] for n in names]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configs = args.config_list
    # The Python package each server needs (besides the project's own).
    needs = {"uvicorn": "uvicorn", "uvicorn-sansio": "uvicorn", "uvicorn-wsproto": "wsproto"}
    needs["uvicorn-lean"] = needs["floor"] = "uvicorn"
    needs.update(hypercorn="hypercorn", granian="granian")
    for config in list(configs):
        package = needs.get(config.server)
        if package and importlib.util.find_spec(package) is None:
            log(
                f"{package} is not installed (the test dependency group has it): skip {config.name}"
            )
            configs.remove(config)
    if args.postgres and any(c.server == "floor" for c in configs):
        log("the floor configuration runs on SQLite only: skipping it (--postgres)")
        configs = [c for c in configs if c.server != "floor"]
    if any(c.proxy for c in configs) and not nginx_installed():
        log("nginx is not installed (apt-get install nginx): skipping the proxy configuration")
        configs = [c for c in configs if not c.proxy]
    if any(c.redis for c in configs) and not redis_ok(args.redis_url):
        log(f"Redis does not answer at {args.redis_url}: skipping the Redis configurations")
        configs = [c for c in configs if not c.redis]
    started = time.monotonic()
    results: list[dict[str, Any]] = []
    failures: list[str] = []
    with contextlib.ExitStack() as stack:
        if args.keep:
            tmp = Path(tempfile.mkdtemp(prefix="dcbench-"))
            log(f"keeping logs and databases in {tmp}")
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="dcbench-")))
        run = Run(args, tmp)
        try:
            if any(c.protocol == "directcall" for c in configs):
                run.prepare_directcall()
            for config in configs:
                log(f"--- {config.name}: {config.label}")
                try:
                    results.append(run.run_config(config))
                except BenchError as exc:
                    failures.append(f"{config.name}: {exc}")
                    log(f"{config.name} FAILED: {exc}")
        finally:
            if run.db is not None:
                run.db.drop()
    failed_calls = sum(
        r["phases"].get(k, {}).get("failed", 0) for r in results for k in ("load", "setup", "max")
    )
    a = args
    print(f"\n## {TITLE}{' (smoke)' if a.smoke else ''}\n")
    print(f"Machine: {machine()}; Node {node_version()}; all traffic on 127.0.0.1.")
    print(
        f"Load: {a.clients} clients online; {a.load_calls} full calls at {a.rate:g}/s "
        f"({a.candidates} candidate frames each way); {a.setup_calls} set-ups at {a.rate:g}/s; "
        f"{a.relay_calls} calls × {a.relay_frames} frames each way relayed; saturation "
        f"{a.max_seconds:g}s × {a.max_concurrency} pairs; idle {a.idle or 'none'}. "
        f"Database: {'PostgreSQL' if a.postgres else 'SQLite'}. "
        f"{'Each server process on a CPU of its own, batch (--pin). ' if a.pin else ''}"
        f"Total {time.monotonic() - started:.0f}s.\n"
    )
    print(report(results, args))
    if args.profile:
        prof = next((r for r in results if r.get("profile")), None)
        if prof is not None:
            phase = prof["phases"].get(args.profile_phase, {})
            fig = figures(prof)
            print(f"\n### Profile of {prof['label']}, {args.profile_phase} phase\n")
            if args.profile_phase == "relay":
                unit_us, count, unit = fig["frame_us"], phase.get("frames", 0), "frame"
            else:
                unit_us = fig["setup_ms"] * 1000 if fig["setup_ms"] else None
                count, unit = phase.get("calls", 0), "call"
            print(analyse_profile(Path(prof["profile"]), unit_us, count, unit))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    for failure in failures:
        print(f"\nFAILED {failure}", file=sys.stderr)
    if failed_calls:
        print(f"\n{failed_calls} calls failed (see the details above)", file=sys.stderr)
    return 1 if failures or failed_calls else 0


if __name__ == "__main__":
    sys.exit(main())
