"""Shared by the benchmark commands: server processes, a fresh database, sign-ins, tables.

Everything listens and connects on 127.0.0.1 only; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from deploy.topology import free_port, pinned_to, worker_cpu

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
CACHE = BENCH / ".cache"
PY = sys.executable
PEERJS_VERSION = "1.0.2"
WS_PATH = "/ws/directcall/v1/"
BLANK_PATH = "/bench/blank"  # bench/asgi.py's empty page: the application answers
# The servers' ASGI application; BENCH_ASGI_APP=module:attr runs another one (an A/B
# experiment that wraps or patches it), on PYTHONPATH.
ASGI_APP = os.environ.get("BENCH_ASGI_APP", "bench.asgi:application")


class BenchError(RuntimeError):
    """A benchmark could not run (a server did not start, npm failed, ...)."""


def pin_this_process() -> None:
    """This process, and the threads it starts from now on, on the CPU a lone pinned server
    gets, scheduled as batch (as ``bench/signaling.py --pin`` pins a server)."""
    pin = pinned_to({worker_cpu(0)})
    assert pin is not None
    pin()


def raise_nofile() -> None:
    """preexec_fn: as many open files as the hard limit allows (thousands of sockets)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def machine() -> str:
    cpu = "unknown CPU"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB RAM"
    return (
        f"{os.cpu_count()} cores ({cpu}){mem}, Linux {platform.release()}, "
        f"Python {platform.python_version()}"
    )


# -- processes ----------------------------------------------------------------------------------


@dataclass
class Proc:
    """A server process on 127.0.0.1:port, its output in a log file."""

    name: str
    cmd: list[str]
    port: int
    log: Path
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    proc: subprocess.Popen | None = None
    # An HTTP path answered once the application is loaded (servers that load it in worker
    # processes of their own listen before that).
    probe: str | None = None
    # The CPUs the process (and its children) may run on; None: any (``--pin``).
    cpus: set[int] | None = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def pids(self) -> list[int]:
        """The process and its descendants (granian and hypercorn serve from children)."""
        found, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            found.append(pid)
            with contextlib.suppress(OSError):
                for task in os.listdir(f"/proc/{pid}/task"):
                    with contextlib.suppress(OSError, ValueError):
                        children = Path(f"/proc/{pid}/task/{task}/children").read_text()
                        todo.extend(int(c) for c in children.split())
        return found

    def _prepare(self) -> None:
        raise_nofile()
        pin = pinned_to(self.cpus)
        if pin is not None:
            pin()

    def start(self, timeout: float = 30) -> Proc:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=self._prepare,  # the runner starts no threads before this
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.name} exited ({self.proc.returncode}):\n{self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                if self.probe:
                    url = f"http://127.0.0.1:{self.port}{self.probe}"
                    with urllib.request.urlopen(url, timeout=5) as response:
                        response.read()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise BenchError(f"{self.name} did not listen on {self.port} in {timeout}s:\n{self.tail()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def django_env(database_url: str, layer: str, prefix: str, redis_url: str | None) -> dict[str, str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench.settings",
        "DATABASE_URL": database_url,
        "BENCH_LAYER": layer,
        "BENCH_PREFIX": prefix,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    else:
        env.pop("REDIS_URL", None)
    return env


def daphne(name: str, env: dict[str, str], log: Path) -> Proc:
    port = free_port()
    # A twisted endpoint string, for a listen backlog that takes thousands of connects.
    endpoint = f"tcp:port={port}:interface=127.0.0.1:backlog=4096"
    cmd = [PY, "-m", "daphne", "-e", endpoint, ASGI_APP]
    return Proc(name, cmd, port, log, env, probe=BLANK_PATH)


def uvicorn(name: str, env: dict[str, str], log: Path, ws: str = "websockets") -> Proc:
    """uvicorn with one of its WebSocket implementations (websockets, websockets-sansio,
    wsproto) or directcall's (LEAN_WS)."""
    port = free_port()
    cmd = [
        PY,
        "-m",
        "uvicorn",
        ASGI_APP,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backlog",
        "4096",
        "--lifespan",
        "off",
        "--ws",
        ws,
    ]
    return Proc(name, cmd, port, log, env, probe=BLANK_PATH)


def hypercorn(name: str, env: dict[str, str], log: Path) -> Proc:
    """Hypercorn (h11 + wsproto on asyncio)."""
    port = free_port()
    cmd = [PY, "-m", "hypercorn", "-b", f"127.0.0.1:{port}", "--backlog", "4096", ASGI_APP]
    return Proc(name, cmd, port, log, env, probe=BLANK_PATH)


def granian(name: str, env: dict[str, str], log: Path) -> Proc:
    """Granian (Rust HTTP and WebSocket, the application on an asyncio loop)."""
    port = free_port()
    cmd = [
        PY,
        "-m",
        "granian",
        "--interface",
        "asgi",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backlog",
        "4096",
        "--loop",
        "asyncio",
        "--ws",
        ASGI_APP,
    ]
    return Proc(name, cmd, port, log, env, probe=BLANK_PATH)


# directcall's own uvicorn WebSocket protocol (directcall/uvicorn_ws.py).
LEAN_WS = "directcall.uvicorn_ws:LeanWebSocketProtocol"

# Server kinds of the benchmarks: a name → how to start one process of it.
SERVERS = {
    "daphne": daphne,
    "uvicorn": uvicorn,
    "uvicorn-sansio": lambda name, env, log: uvicorn(name, env, log, "websockets-sansio"),
    "uvicorn-wsproto": lambda name, env, log: uvicorn(name, env, log, "wsproto"),
    "uvicorn-lean": lambda name, env, log: uvicorn(name, env, log, LEAN_WS),
    "hypercorn": hypercorn,
    "granian": granian,
}


def manage(env: dict[str, str], *args: str, timeout: float = 120) -> str:
    result = subprocess.run(
        [PY, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise BenchError(f"manage.py {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


# -- the database -------------------------------------------------------------------------------


class Database:
    """A migrated database with one account, cloned for each configuration.

    SQLite (default): a file in the run's temporary directory, copied per configuration.
    PostgreSQL (``postgres_url``): a fresh database, used as the template of the clones.
    """

    def __init__(self, tmp: Path, postgres_url: str | None = None) -> None:
        self.tmp = tmp
        self.postgres_url = postgres_url
        self.run = uuid.uuid4().hex[:8]
        self.clones: list[str] = []
        if postgres_url:
            self.template = f"dcbench_{self.run}"
            self._pg(f'CREATE DATABASE "{self.template}"')
            self.url = self._pg_url(self.template)
        else:
            self.template = str(tmp / "template.sqlite3")
            self.url = f"sqlite:///{self.template}"

    def _pg_url(self, name: str) -> str:
        parts = urlsplit(self.postgres_url)
        return urlunsplit(parts._replace(path=f"/{name}"))

    def _pg(self, sql: str) -> None:
        import psycopg

        parts = urlsplit(self.postgres_url)
        admin = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql)

    def prepare(self, env: dict[str, str]) -> tuple[str, str]:
        """Migrate; create the account (``directcall_account create``); return its id and key."""
        env = {**env, "DATABASE_URL": self.url}
        manage(env, "migrate", "--noinput", "-v", "0")
        out = manage(
            env,
            "directcall_account",
            "create",
            "--name",
            "Bench",
            "--no-clevertap",
            "--identity",
            "page",
        )
        account_id = re.search(r"accountId:\s*(\S+)", out)
        api_key = re.search(r"apikey:\s*(\S+)", out)
        if not (account_id and api_key):
            raise BenchError(f"unexpected directcall_account output:\n{out}")
        return account_id.group(1), api_key.group(1)

    def clone(self, name: str) -> str:
        """A copy of the prepared database (with its registrations); return its URL."""
        if self.postgres_url:
            target = f"dcbench_{self.run}_{re.sub(r'[^a-z0-9]', '_', name.lower())}"
            self._pg(f'CREATE DATABASE "{target}" TEMPLATE "{self.template}"')
            self.clones.append(target)
            return self._pg_url(target)
        target = self.tmp / f"{name}.sqlite3"
        shutil.copyfile(self.template, target)
        return f"sqlite:///{target}"

    def drop(self) -> None:
        if not self.postgres_url:
            return
        for name in [*self.clones, self.template]:
            with contextlib.suppress(Exception):
                self._pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def init_tokens(
    base_url: str, account_id: str, api_key: str, cuids: Sequence[str], workers: int = 8
) -> dict[str, str]:
    """Sign every cuid in through the real init endpoint (HTTP); return cuid → token."""

    def one(cuid: str) -> tuple[str, str]:
        body = {
            "accountId": account_id,
            "apikey": api_key,
            "cuid": cuid,
            "name": cuid.replace("_", " ").title(),
            "deviceId": f"dev-{cuid}"[:64],
        }
        request = urllib.request.Request(  # noqa: S310 (always http://127.0.0.1:<port>)
            f"{base_url}/directcall/v1/init",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Origin": base_url},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            return cuid, json.loads(response.read())["token"]

    with ThreadPoolExecutor(workers) as pool:
        return dict(pool.map(one, cuids))


def clean_redis(redis_url: str, prefixes: Iterable[str]) -> None:
    """Delete the keys this run's servers left in Redis (they all have TTLs anyway)."""
    try:
        import redis

        client = redis.Redis.from_url(redis_url)
        for prefix in prefixes:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            for i in range(0, len(keys), 1000):
                client.delete(*keys[i : i + 1000])
        client.close()
    except Exception as exc:
        print(f"[bench] could not clean Redis keys: {exc}", file=sys.stderr)


def redis_ok(redis_url: str) -> bool:
    try:
        import redis

        client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
        ok = bool(client.ping())
        client.close()
        return ok
    except Exception:
        return False


# -- PeerJS -------------------------------------------------------------------------------------


def ensure_peerjs() -> Path:
    """The PeerJS server's CLI, installed with npm into bench/.cache/peerjs (never committed)."""
    prefix = CACHE / "peerjs"
    cli = prefix / "node_modules" / "peer" / "dist" / "bin" / "peerjs.js"
    if not cli.exists():
        for tool in ("node", "npm"):
            if shutil.which(tool) is None:
                raise BenchError(f"the PeerJS comparison needs {tool} on the PATH (Node.js 18+)")
        prefix.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--no-save",
                "--prefix",
                str(prefix),
                f"peer@{PEERJS_VERSION}",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0 or not cli.exists():
            raise BenchError(
                f"npm could not install peer@{PEERJS_VERSION} into {prefix} "
                f"(exit {result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
    return cli


def node_version() -> str:
    try:
        return subprocess.run(
            ["node", "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout.strip()
    except OSError:
        return "?"


# -- the rest of the machine --------------------------------------------------------------------


def machine_busy_s() -> float:
    """CPU seconds all processes on the machine have used (user + system, from /proc/stat).

    Interrupt and softirq time is left out: loopback networking is largely accounted there,
    to no process, and would look like someone else's load.
    """
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system = (int(x) for x in fields[:3])
    return (user + nice + system) / os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid: int) -> float:
    """utime + stime of a live process, seconds."""
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def redis_cpu_s(redis_url: str | None) -> float:
    if not redis_url:
        return 0.0
    try:
        import redis

        client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
        info = client.info("cpu")
        client.close()
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    except Exception:
        return 0.0


# -- tables -------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table (GitHub style) with padded columns."""
    body = [[str(cell) for cell in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in body:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    out = [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(row) for row in body]
    return "\n".join(out)
