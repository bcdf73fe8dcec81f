"""The production topology on one machine (docs/deployment.md).

    deploy/local-topology.sh                       # installs what is missing (as root), then:
    .venv/bin/python -m deploy.topology            # up until Ctrl-C; prints where to go
    .venv/bin/python -m deploy.topology --workers 3 --server daphne --layer pubsub

nginx terminates TLS (a self-signed certificate made here with openssl), serves the static
files and spreads HTTP requests and signaling WebSockets over ``--workers`` ASGI worker
processes (``SERVER``), which share a private Redis (presence, throttles and the channel
layer, ``LAYER``) and a PostgreSQL database of their own; coturn relays media with
ephemeral credentials. Everything listens on 127.0.0.1 on free ports, runs as the current
user and reads only the files made here (nginx ``-p``/``-c``, coturn ``-c``): nothing
global is touched. ``tests/e2e/test_topology.py`` and ``bench/sizing.py`` use
:class:`Topology` directly.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import importlib.util
import os
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
NGINX_TEMPLATE = DEPLOY / "nginx.conf.template"
COTURN_CONFIG = ROOT / "docs" / "coturn" / "turnserver.conf"
PY = sys.executable

# The ASGI server of the worker processes and the channel layer they share: one name
# each, so that a better measured choice (docs/performance.md) is a one-word change.
# uvicorn with directcall's WebSocket protocol (directcall.uvicorn_ws: websockets' sans-I/O
# framing, less memory per socket) and directcall's own pub/sub layer (directcall.redislayer)
# measured cheapest (docs/deployment.md, "Which server", "Which channel layer").
SERVER = "uvicorn-lean"
LAYER = "directcall"
# deploy/settings.py's DIRECTCALL_CHANNEL_LAYER: directcall.redislayer.RedisPubSubLayer,
# channels_redis's RedisPubSubChannelLayer, channels_redis's RedisChannelLayer.
LAYERS = ("directcall", "pubsub", "redis")


# How each ASGI server is started on 127.0.0.1:PORT with the application APP (the names
# of bench/_common.py's SERVERS, which docs/performance.md measures).
def _uvicorn(ws: str) -> Callable[[int, str], list[str]]:
    return lambda port, app: [
        *(PY, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)),
        *("--lifespan", "off", "--backlog", "4096", "--no-server-header", "--ws", ws),
    ]


WORKER_COMMANDS: dict[str, Callable[[int, str], list[str]]] = {
    # A twisted endpoint string, for a listen backlog that takes bursts of reconnects.
    "daphne": lambda port, app: [
        *(PY, "-m", "daphne", "-e", f"tcp:port={port}:interface=127.0.0.1:backlog=4096", app)
    ],
    "uvicorn": _uvicorn("websockets"),
    "uvicorn-sansio": _uvicorn("websockets-sansio"),
    "uvicorn-wsproto": _uvicorn("wsproto"),
    "uvicorn-lean": _uvicorn("directcall.uvicorn_ws:LeanWebSocketProtocol"),
    "hypercorn": lambda port, app: [
        *(PY, "-m", "hypercorn", "-b", f"127.0.0.1:{port}", "--backlog", "4096", app)
    ],
    "granian": lambda port, app: [
        *(PY, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1"),
        *("--port", str(port), "--backlog", "4096", "--loop", "asyncio", "--ws", app),
    ],
}

# The shipped coturn lines that name one deployment; the topology writes its own.
COTURN_DEPLOYMENT_KEYS = {
    "listening-port",
    "tls-listening-port",
    "realm",
    "cert",
    "pkey",
    "min-port",
    "max-port",
    "static-auth-secret",
}
# Both browsers of a one-machine topology are on 127.0.0.1, so each one's relay sends to
# the other's relay on loopback, which the shipped file refuses. Never in production.
COTURN_LOOPBACK = ["allow-loopback-peers", "allowed-peer-ip=127.0.0.1"]

DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"


class TopologyError(RuntimeError):
    """A part of the topology could not be started (missing program, port, crash)."""


_handed_out: set[int] = set()
_handed_out_lock = threading.Lock()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now and that this process has
    not handed out before.

    The port is free only until somebody binds it, and the server it is meant for binds it
    some time later: without the record, two calls in that window can get the same port (a
    test run saw two daphne servers given one port; the second failed to listen while its
    port answered for the first)."""
    with _handed_out_lock:
        for _ in range(1000):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
            if port not in _handed_out:
                _handed_out.add(port)
                return port
    raise OSError("no free TCP port on 127.0.0.1 that this process has not handed out")


def require(program: str, package: str) -> str:
    """The path of ``program``, or a TopologyError that says how to install it."""
    path = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
    if path is None:
        raise TopologyError(
            f"{program} is not installed: apt-get install {package} (as root; "
            "deploy/local-topology.sh and scripts/test.sh do it when run as root)"
        )
    return path


def postgres_server_url() -> str:
    """The PostgreSQL server to make the topology's database on: DATABASE_URL's, or local."""
    url = os.environ.get("DATABASE_URL", "")
    if urlsplit(url).scheme in ("postgres", "postgresql", "pgsql"):
        return url
    return DEFAULT_POSTGRES


def postgres_answers(url: str) -> bool:
    """Whether a PostgreSQL server accepts a connection at ``url`` (within 3 s)."""
    try:
        import psycopg

        parts = urlsplit(url)
        admin = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
        with psycopg.connect(admin, connect_timeout=3):
            return True
    except Exception:
        return False


# -- processes -----------------------------------------------------------------------------------


def worker_cpu(index: int) -> int:
    """The CPU that worker ``index`` (0-based) is pinned to: the CPUs this process may run
    on, in turn from the last (the measurements in docs/performance.md pinned a lone server
    to the last CPU of two)."""
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[-1 - index % len(cpus)]


def can_pin(workers: int) -> bool:
    """Whether ``workers`` pinned workers get a CPU each (``Topology.up`` refuses more)."""
    return workers <= len(os.sched_getaffinity(0))


def pinned_to(cpus: set[int] | None) -> Callable[[], None] | None:
    """A ``preexec_fn`` that keeps the new process (and every thread it starts) on ``cpus``,
    scheduled as a batch process (``SCHED_BATCH``).

    A pinned worker's two threads, the event loop and the database thread, share one CPU
    and wake each other at every transition of a call. A normal thread that is woken
    preempts the waker on the spot, while the waker still holds the GIL, so the woken one
    blocks on the GIL at once and the CPU switches back and forth (about 12 involuntary
    context switches per call set-up at 10 a second). A batch thread that is woken waits
    until the waker blocks, and then finds the GIL free (docs/deployment.md).
    """
    if not cpus:
        return None

    def pin() -> None:
        os.sched_setaffinity(0, cpus)
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))

    return pin


@dataclass
class Service:
    """One process of the topology, its output in ``log``; ``cpus``: the CPUs it may run on
    (None: any)."""

    name: str
    cmd: list[str]
    log: Path
    port: int | None = None
    env: dict[str, str] | None = None
    proc: subprocess.Popen | None = None
    cpus: set[int] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.cmd,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=pinned_to(self.cpus),
            )

    def wait_port(self, timeout: float = 30) -> None:
        """Until the port accepts connections (bounded); TopologyError if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise TopologyError(f"{self.name} exited:\n{self.tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise TopologyError(f"{self.name} did not listen on {self.port} in {timeout}s")

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM, then SIGKILL if it does not go."""
        if not self.alive():
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)

    def kill(self) -> None:
        """SIGKILL: no clean-up at all, as when a machine or an OOM killer takes it."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# -- configuration files -------------------------------------------------------------------------


def make_certificate(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate for ``host`` (and localhost); returns (certificate, key)."""
    openssl = require("openssl", "openssl")
    cert, key = directory / "tls.crt", directory / "tls.key"
    san = f"IP:{host}" if re.fullmatch(r"[\d.]+", host) else f"DNS:{host}"
    done = subprocess.run(
        [
            *(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt"),
            *("ec_paramgen_curve:prime256v1", "-nodes", "-days", "7"),
            *("-subj", f"/CN={host}", "-addext", f"subjectAltName={san},DNS:localhost"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise TopologyError(f"openssl could not make a certificate:\n{done.stderr}")
    key.chmod(0o600)
    return cert, key


def render_nginx_config(values: dict[str, Any], template: Path = NGINX_TEMPLATE) -> str:
    """``deploy/nginx.conf.template`` with every ``{{name}}`` replaced by ``values[name]``."""
    text = template.read_text()
    names = set(re.findall(r"\{\{(\w+)\}\}", text))
    missing = names - values.keys()
    if missing:
        raise TopologyError(f"no value for {', '.join(sorted(missing))} in {template.name}")
    return re.sub(r"\{\{(\w+)\}\}", lambda m: str(values[m.group(1)]), text)


def coturn_config(port: int, secret: str, workdir: Path) -> str:
    """The shipped ``docs/coturn/turnserver.conf`` with this machine's deployment lines."""
    kept = []
    for line in COTURN_CONFIG.read_text().splitlines():
        line = line.strip()
        if (
            line
            and not line.startswith("#")
            and line.split("=", 1)[0] not in COTURN_DEPLOYMENT_KEYS
        ):
            kept.append(line)
    relay_min = 20000 + (port * 7) % 40000  # apart from other instances' ranges
    local = [
        "listening-ip=127.0.0.1",
        "relay-ip=127.0.0.1",
        f"listening-port={port}",
        f"min-port={relay_min}",
        f"max-port={relay_min + 200}",
        "realm=directcall.local",
        f"static-auth-secret={secret}",
        "no-tls",
        "no-dtls",
        "log-file=stdout",
        "simple-log",
        f"pidfile={workdir / 'turnserver.pid'}",
        f"userdb={workdir / 'turnserver.sqlite3'}",
        *COTURN_LOOPBACK,
    ]
    return "\n".join(kept + local) + "\n"


# -- the topology --------------------------------------------------------------------------------


@dataclass
class Topology:
    """nginx → ``workers`` ASGI processes → Redis + PostgreSQL, and coturn; see the module doc.

    ``with Topology(workdir) as topo:`` brings it up and down again. ``settings`` and
    ``asgi_app`` are the workers' (the demo site's production settings by default);
    ``env`` adds to their environment. ``redis_url`` None starts a private redis-server;
    ``database_url`` None makes a database of its own on the PostgreSQL server
    ``postgres_url`` (dropped again at the end). ``prepare`` runs ``migrate`` and
    ``collectstatic`` before the workers start; ``tasks`` runs the webhook deliveries'
    worker (``manage.py db_worker``, docs/webhooks.md). ``pin_workers`` keeps each worker
    on one CPU, as a batch process (:func:`worker_cpu`, :func:`pinned_to`;
    docs/deployment.md, "One CPU per worker"). ``up()`` returns once ``ready_path`` answers
    200 through nginx.
    """

    workdir: Path
    workers: int = 2
    server: str = SERVER
    layer: str = LAYER
    settings: str = "deploy.settings"
    asgi_app: str = "example_project.asgi:application"
    postgres_url: str = field(default_factory=postgres_server_url)
    database_url: str | None = None
    redis_url: str | None = None
    prepare: bool = True
    ready_path: str = "/"
    turn: bool = True
    tasks: bool = True
    ice_policy: str = "all"
    pin_workers: bool = False
    # nginx's cap on open sockets per client address (every client here is 127.0.0.1);
    # nginx refuses a limit_conn above 65535 ("connection limit must be less 65536").
    max_sockets_per_ip: int = 65_535
    env: dict[str, str] = field(default_factory=dict)
    logs: Path | None = None

    services: list[Service] = field(default_factory=list, init=False)
    worker_services: list[Service] = field(default_factory=list, init=False)
    database: str = field(default="", init=False)
    https_port: int = field(default=0, init=False)
    turn_port: int = field(default=0, init=False)
    turn_secret: str = field(default="", init=False)
    certificate: Path | None = field(default=None, init=False)
    nginx: Service | None = field(default=None, init=False)
    redis: Service | None = field(default=None, init=False)
    _secret_key: str = field(default="", init=False, repr=False)

    # -- addresses --

    @property
    def url(self) -> str:
        """The site's https:// address (through nginx)."""
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def ws_url(self) -> str:
        return f"wss://127.0.0.1:{self.https_port}/ws/directcall/v1/"

    @property
    def worker_addresses(self) -> list[str]:
        """``127.0.0.1:PORT`` of each worker, as nginx's ``$upstream_addr`` names them."""
        return [f"127.0.0.1:{w.port}" for w in self.worker_services]

    @property
    def server_pids(self) -> list[int]:
        """The processes that serve clients: the workers, nginx's master and its workers."""
        pids = [w.pid for w in self.worker_services if w.alive()]
        if self.nginx is not None and self.nginx.alive():
            pids.append(self.nginx.pid)
            children = Path(f"/proc/{self.nginx.pid}/task/{self.nginx.pid}/children")
            with contextlib.suppress(OSError):
                pids += [int(pid) for pid in children.read_text().split()]
        return pids

    def worker_index(self, address: str) -> int:
        """Which worker an upstream address (or nginx's ``a, b`` list of tries) ended on."""
        return self.worker_addresses.index(address.split(",")[-1].strip())

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that trusts this topology's certificate (and checks it)."""
        return ssl.create_default_context(cafile=str(self.certificate))

    def get(self, path: str) -> tuple[int, dict[str, str], bytes]:
        """GET ``path`` through nginx: (status, headers, body)."""
        request = urllib.request.Request(self.url + path)  # noqa: S310 (https://127.0.0.1)
        with urllib.request.urlopen(  # noqa: S310
            request, context=self.ssl_context(), timeout=10
        ) as response:
            return response.status, dict(response.headers), response.read()

    # -- life cycle --

    def __enter__(self) -> Topology:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def worker_env(self) -> dict[str, str]:
        """The environment every worker process (and ``manage.py``) runs with."""
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": self.settings,
            "DJANGO_SECRET_KEY": self._secret_key,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_STATIC_ROOT": str(self.workdir / "static"),
            "DATABASE_URL": self.database_url or "",
            "REDIS_URL": self.redis_url or "",
            "DIRECTCALL_CHANNEL_LAYER": self.layer,
            "DIRECTCALL_ICE_TRANSPORT_POLICY": self.ice_policy,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "PYTHONUNBUFFERED": "1",
        }
        if self.turn:
            env["DIRECTCALL_TURN_URLS"] = ",".join(
                f"turn:127.0.0.1:{self.turn_port}?transport={t}" for t in ("udp", "tcp")
            )
            env["DIRECTCALL_TURN_SECRET"] = self.turn_secret
        for name in ("DJANGO_ALLOW_ASYNC_UNSAFE", "DJANGO_DEBUG"):
            env.pop(name, None)
        env.update(self.env)
        return env

    def up(self) -> None:
        """Start everything; return once a page loads through nginx."""
        if self.server not in WORKER_COMMANDS:
            raise TopologyError(
                f"unknown ASGI server {self.server!r} ({', '.join(WORKER_COMMANDS)})"
            )
        if self.workers < 1:
            raise TopologyError("at least one worker")
        if self.pin_workers and not can_pin(self.workers):
            cpus = len(os.sched_getaffinity(0))
            raise TopologyError(
                f"{self.workers} pinned workers on {cpus} CPUs would share a CPU: run at most "
                f"{cpus} workers, or leave them unpinned"
            )
        package = self.server.split("-")[0]
        if importlib.util.find_spec(package) is None:
            raise TopologyError(f"the {self.server} workers need {package}: pip install {package}")
        nginx = require("nginx", "nginx")
        turnserver = require("turnserver", "coturn") if self.turn else ""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logs = self.logs or self.workdir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self._secret_key = secrets.token_urlsafe(40)

        if self.redis_url is None:
            self._start_redis()
        if self.database_url is None:
            self._create_database()
        self.turn_secret = secrets.token_urlsafe(24)
        self.turn_port = free_port() if self.turn else 0
        env = self.worker_env()
        if self.prepare:
            self.manage("migrate", "--noinput", "-v", "0")
            self.manage("collectstatic", "--noinput", "-v", "0")
        self.certificate, key = make_certificate(self.workdir)

        if self.turn:
            conf = self.workdir / "turnserver.conf"
            conf.write_text(coturn_config(self.turn_port, self.turn_secret, self.workdir))
            coturn = Service("coturn", [turnserver, "-c", str(conf)], self.logs / "coturn.log")
            coturn.port = self.turn_port
            self._launch(coturn)

        for i in range(self.workers):
            port = free_port()
            worker = Service(
                f"worker{i + 1}",
                WORKER_COMMANDS[self.server](port, self.asgi_app),
                self.logs / f"worker{i + 1}.log",
                port=port,
                env=env,
                cpus={worker_cpu(i)} if self.pin_workers else None,
            )
            worker.start()
            self.services.append(worker)
            self.worker_services.append(worker)
        for worker in self.worker_services:
            worker.wait_port(60)
        if self.tasks:
            tasks = Service(
                "tasks",
                [PY, str(ROOT / "manage.py"), "db_worker", "--no-reload"],
                self.logs / "tasks.log",
                env=env,
            )
            tasks.start()
            self.services.append(tasks)

        self.https_port = free_port()
        prefix = self.workdir / "nginx"
        for sub in ("tmp/body", "tmp/proxy", "tmp/fastcgi", "tmp/uwsgi", "tmp/scgi"):
            (prefix / sub).mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        conf.write_text(
            render_nginx_config(
                {
                    "user": getpass.getuser(),
                    "worker_processes": 2,
                    "prefix": prefix,
                    "mime_types": "/etc/nginx/mime.types",
                    "upstream_servers": "\n".join(
                        f"        server {address} max_fails=1 fail_timeout=5s;"
                        for address in self.worker_addresses
                    ),
                    "listen": f"127.0.0.1:{self.https_port}",
                    "listen_http": f"127.0.0.1:{free_port()}",
                    "https_port": self.https_port,
                    "server_name": "127.0.0.1 localhost",
                    "certificate": self.certificate,
                    "certificate_key": key,
                    "static_root": self.workdir / "static",
                    "max_sockets_per_ip": self.max_sockets_per_ip,
                    # Local only: tell every client which worker answered (tests, sizing).
                    "extra_server_lines": (
                        "        add_header X-DirectCall-Worker $upstream_addr always;"
                    ),
                }
            )
        )
        test = subprocess.run(
            [
                nginx,
                "-t",
                "-q",
                "-p",
                str(prefix),
                "-c",
                str(conf),
                "-e",
                str(prefix / "error.log"),
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if test.returncode != 0:
            raise TopologyError(f"nginx -t refused {conf}:\n{test.stderr}")
        self.nginx = Service(
            "nginx",
            [
                nginx,
                "-p",
                str(prefix),
                "-c",
                str(conf),
                "-e",
                str(prefix / "error.log"),
                "-g",
                "daemon off;",
            ],
            self.logs / "nginx.log",
            port=self.https_port,
        )
        self._launch(self.nginx)
        deadline = time.monotonic() + 30
        while True:
            try:
                status, _headers, _body = self.get(self.ready_path)
                if status == 200:
                    break
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise TopologyError(f"no page through nginx at {self.url}: {exc}") from exc
            time.sleep(0.1)
        dead = [service for service in self.services if not service.alive()]
        if dead:
            raise TopologyError(f"{dead[0].name} exited:\n{dead[0].tail()}")

    def _launch(self, service: Service, timeout: float = 30) -> None:
        service.start()
        self.services.append(service)
        service.wait_port(timeout)

    def _start_redis(self) -> None:
        binary = require("redis-server", "redis-server")
        port = free_port()
        self.redis = Service(
            "redis",
            [
                *(binary, "--bind", "127.0.0.1", "--port", str(port), "--save", ""),
                *("--appendonly", "no", "--daemonize", "no", "--dir", str(self.workdir)),
            ],
            self.logs / "redis.log",
            port=port,
        )
        self._launch(self.redis, timeout=10)
        self.redis_url = f"redis://127.0.0.1:{port}/0"

    def _admin(self, sql: str) -> None:
        import psycopg

        parts = urlsplit(self.postgres_url)
        admin = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql)

    def _create_database(self) -> None:
        name = f"dc_topology_{uuid.uuid4().hex[:10]}"
        try:
            self._admin(f'CREATE DATABASE "{name}"')
        except Exception as exc:
            raise TopologyError(
                f"cannot create a database on PostgreSQL at {self.postgres_url}: {exc}"
            ) from exc
        self.database = name
        parts = urlsplit(self.postgres_url)
        self.database_url = urlunsplit(parts._replace(path=f"/{name}"))

    def manage(self, *args: str, timeout: float = 180) -> str:
        """Run ``manage.py`` with the workers' settings and environment; return its stdout."""
        done = subprocess.run(
            [PY, str(ROOT / "manage.py"), *args],
            cwd=ROOT,
            env=self.worker_env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise TopologyError(f"manage.py {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout

    def kill_worker(self, index: int) -> None:
        """SIGKILL one worker process (0-based), as a crash would."""
        self.worker_services[index].kill()

    def restart_worker(self, index: int) -> None:
        """Start a killed worker again on its port, as a supervisor (systemd) would."""
        worker = self.worker_services[index]
        if not worker.alive():
            worker.start()
        worker.wait_port(60)

    def down(self) -> None:
        """Stop every process (nginx first) and drop the database."""
        for service in reversed(self.services):
            with contextlib.suppress(Exception):
                service.stop()
        self.services.clear()
        if self.database:
            with contextlib.suppress(Exception):
                self._admin(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            self.database = ""

    def describe(self) -> str:
        """Where everything runs, for a person at a terminal."""
        lines = [
            f"  site (nginx, TLS):  {self.url}/   (self-signed certificate: {self.certificate})",
            *(
                f"  {w.name} ({self.server}):  http://{a}  pid {w.pid}"
                + (f"  CPU {','.join(map(str, sorted(w.cpus)))}, batch" if w.cpus else "")
                for w, a in zip(self.worker_services, self.worker_addresses, strict=True)
            ),
            f"  channel layer:      {self.layer}   Redis: {self.redis_url}",
            f"  database:           {self.database or self.database_url}",
        ]
        if self.turn:
            lines.append(f"  coturn:             turn:127.0.0.1:{self.turn_port} (udp, tcp)")
        if self.tasks:
            lines.append("  webhook deliveries: manage.py db_worker")
        lines.append(f"  logs:               {self.logs}")
        return "\n".join(lines)


@contextlib.contextmanager
def running(**options: Any) -> Iterator[Topology]:
    """A topology in a temporary directory, brought down (and deleted) at the end."""
    with (
        tempfile.TemporaryDirectory(prefix="dc-topology-") as tmp,
        Topology(Path(tmp), **options) as topology,
    ):
        yield topology


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="ASGI worker processes")
    parser.add_argument("--server", default=SERVER, choices=sorted(WORKER_COMMANDS))
    parser.add_argument("--layer", default=LAYER, choices=LAYERS)
    parser.add_argument("--postgres", default=postgres_server_url(), help="PostgreSQL server URL")
    parser.add_argument("--redis-url", help="an existing Redis (default: a private redis-server)")
    parser.add_argument("--relay-only", action="store_true", help="ICE through TURN only")
    parser.add_argument(
        "--pin-workers",
        action="store_true",
        help="keep each worker on a CPU of its own, as a batch process",
    )
    parser.add_argument("--keep", metavar="DIR", help="run in DIR and keep it (logs, config)")
    args = parser.parse_args(argv)
    options = {
        "workers": args.workers,
        "server": args.server,
        "layer": args.layer,
        "postgres_url": args.postgres,
        "redis_url": args.redis_url,
        "ice_policy": "relay" if args.relay_only else "all",
        "pin_workers": args.pin_workers,
    }
    # A SIGTERM (a supervisor, `timeout`) stops everything as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        with contextlib.ExitStack() as stack:
            if args.keep:
                topology = stack.enter_context(Topology(Path(args.keep).resolve(), **options))
            else:
                topology = stack.enter_context(running(**options))
            print(f"\ndirectcall production topology on one machine\n\n{topology.describe()}")
            print(topology.manage("demo_setup", "--url", topology.url + "/"))
            print("Ctrl-C stops everything.", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while all(s.alive() for s in topology.services):
                    time.sleep(0.5)
                dead = [s.name for s in topology.services if not s.alive()]
                print(f"stopped: {', '.join(dead)} exited", file=sys.stderr)
    except TopologyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
