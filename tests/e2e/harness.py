"""Helpers of the browser end-to-end tests: the daphne server, browser users, media checks.

Fixtures live in ``tests/e2e/conftest.py``; tests import helpers from here::

    from tests.e2e.harness import wait_for_audio
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from deploy.topology import free_port

ROOT = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
ASGI_APP = "tests.e2e_asgi:application"

# The servers the browser tests run on: daphne (the demo's ``runserver``) and the
# recommended production server, uvicorn with directcall's WebSocket protocol.
SERVER_COMMANDS = {
    "daphne": lambda port: ["-m", "daphne", "-b", "127.0.0.1", "-p", str(port), ASGI_APP],
    "uvicorn-lean": lambda port: [
        *("-m", "uvicorn", ASGI_APP, "--host", "127.0.0.1", "--port", str(port)),
        *("--lifespan", "off", "--ws", "directcall.uvicorn_ws:LeanWebSocketProtocol"),
    ],
}
SETTINGS_MODULE = "tests.e2e_settings"

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]

# Runs before any script of every page: keeps every RTCPeerConnection in window.__pcs.
# A subclass keeps the prototype chain (instanceof, methods) and the statics
# (generateCertificate) of the browser's own constructor.
INIT_SCRIPT = """
(() => {
  const Native = window.RTCPeerConnection;
  if (!Native || Native.__e2eWrapped) return;
  window.__pcs = [];
  class RTCPeerConnection extends Native {
    constructor(...args) {
      super(...args);
      window.__pcs.push(this);
    }
  }
  Object.defineProperty(RTCPeerConnection, "__e2eWrapped", { value: true });
  window.RTCPeerConnection = RTCPeerConnection;
  if (window.webkitRTCPeerConnection) window.webkitRTCPeerConnection = RTCPeerConnection;
})();
"""

# Installed (once per document) by wait_for_audio: refreshes window.__audioStats, one row
# per peer connection in window.__pcs, from getStats() every intervalMs.
_STATS_POLLER = """
(intervalMs) => {
  if (window.__audioStatsTimer) return;
  window.__audioStats = [];
  let busy = false;
  const poll = async () => {
    if (busy) return;
    busy = true;
    try {
      const pcs = window.__pcs || [];
      const rows = [];
      for (let i = 0; i < pcs.length; i++) {
        const pc = pcs[i];
        const prev = window.__audioStats[i] || { received: 0, sent: 0 };
        const row = {
          index: i,
          received: prev.received,
          sent: prev.sent,
          connectionState: pc.connectionState,
          iceConnectionState: pc.iceConnectionState,
        };
        try {
          let received = 0;
          let sent = 0;
          (await pc.getStats()).forEach((s) => {
            if (s.kind !== "audio" && s.mediaType !== "audio") return;
            if (s.type === "inbound-rtp") received += s.bytesReceived || 0;
            if (s.type === "outbound-rtp") sent += s.bytesSent || 0;
          });
          // A closed connection may stop reporting: keep the highest count seen.
          row.received = Math.max(prev.received, received);
          row.sent = Math.max(prev.sent, sent);
        } catch (e) {
          row.error = String(e);
        }
        rows.push(row);
      }
      window.__audioStats = rows;
    } finally {
      busy = false;
    }
  };
  window.__audioStatsTimer = setInterval(poll, intervalMs);
  poll();
}
"""


def audio_stats(page) -> list[dict[str, Any]]:
    """The latest audio byte counts of the page's peer connections (see ``wait_for_audio``)."""
    page.evaluate(_STATS_POLLER, 200)
    return page.evaluate("() => window.__audioStats")


def wait_for_audio(page, min_bytes: int = 2000, timeout_ms: int = 15000) -> dict[str, Any]:
    """Wait until one of the page's peer connections both received and sent audio.

    Passes when some ``RTCPeerConnection`` of the page (kept by the init script in
    ``window.__pcs``) reports ``inbound-rtp`` audio ``bytesReceived >= min_bytes`` and
    ``outbound-rtp`` audio ``bytesSent >= min_bytes``. Returns that connection's row
    (``index``, ``received``, ``sent``, ``connectionState``, ``iceConnectionState``);
    fails with every connection's latest numbers on timeout.
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    page.evaluate(_STATS_POLLER, 200)
    try:
        handle = page.wait_for_function(
            """(min) => (window.__audioStats || []).find(
                 (row) => row.received >= min && row.sent >= min) || false""",
            arg=min_bytes,
            timeout=timeout_ms,
            polling=100,
        )
    except PlaywrightTimeoutError:
        try:
            stats = page.evaluate("() => [window.__audioStats, (window.__pcs || []).length]")
        except Exception as exc:  # the page itself is gone
            stats = f"unavailable: {exc}"
        raise AssertionError(
            f"no audio both ways (>= {min_bytes} bytes) within {timeout_ms} ms on {page.url}; "
            f"[stats per peer connection, number of peer connections]: {json.dumps(stats)}"
        ) from None
    return handle.json_value()


# -- browser users ---------------------------------------------------------------------------


@dataclass
class BrowserUser:
    """One person at a browser: a fresh context (own storage, own fake microphone) and a page.

    ``errors`` collects ``console.error`` messages and uncaught page errors of every page of
    the context; ``console`` keeps every console message (shown when a test fails).
    """

    name: str
    context: Any
    page: Any
    errors: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)

    def watch(self, page) -> None:
        page.on("console", self._on_console)
        page.on("pageerror", self._on_pageerror)

    def _on_console(self, msg) -> None:
        location = msg.location or {}
        url = location.get("url") or ""
        where = f" ({url}:{location.get('lineNumber')})" if location else ""
        line = f"console.{msg.type}: {msg.text}{where}"
        self.console.append(line)
        # Chromium fetches /favicon.ico on its own; the demo site has none.
        if msg.type == "error" and not url.endswith("/favicon.ico"):
            self.errors.append(line)

    def _on_pageerror(self, error) -> None:
        line = f"pageerror: {error}"
        stack = getattr(error, "stack", None)
        if stack:
            line += f"\n{stack}"
        self.console.append(line)
        self.errors.append(line)

    def assert_no_errors(self) -> None:
        assert not self.errors, f"{self.name}: browser errors:\n" + "\n".join(self.errors)


# -- the server ------------------------------------------------------------------------------


@dataclass
class E2EServer:
    """A server process (``kind``: a key of SERVER_COMMANDS) serving the demo site
    (``tests/e2e_asgi.py``) on 127.0.0.1."""

    port: int
    log_path: Path
    env: dict[str, str]
    directcall: dict[str, Any]
    redis: bool
    kind: str = "daphne"
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30) -> None:
        """Start the server; return once its port accepts connections (bounded wait)."""
        with self.log_path.open("ab") as log:
            log.write(f"==> {self.kind} on port {self.port}\n".encode())
            log.flush()
            self.proc = subprocess.Popen(
                [sys.executable, *SERVER_COMMANDS[self.kind](self.port)],
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"{self.kind} exited with status {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"{self.kind} did not listen on {self.port} in {timeout}s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def log_since(self, offset: int, max_lines: int = 300) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
        except OSError as exc:
            return f"(cannot read {self.log_path}: {exc})"
        lines = text.splitlines()
        if len(lines) > max_lines:
            skipped = f"... ({len(lines) - max_lines} earlier lines in {self.log_path})"
            lines = [skipped, *lines[-max_lines:]]
        return "\n".join(lines)

    def log_tail(self, lines: int = 60) -> str:
        return self.log_since(0, max_lines=lines)


def start_server(
    db_name: str,
    *,
    run_prefix: str,
    directcall: dict[str, Any],
    name: str = "main",
    kind: str = "daphne",
) -> E2EServer:
    """Start the tests' server (``kind``: daphne or uvicorn-lean) on a free port, retrying
    if the port was taken.

    ``name`` tells the log files of several servers apart.
    """
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    log_path = ARTIFACTS / f"e2e-{kind}-{name}-{worker}.log"
    log_path.write_bytes(b"")
    redis = os.environ.get("DIRECTCALL_E2E_REDIS") == "1"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
        "DIRECTCALL_E2E_DB_NAME": db_name,
        "DIRECTCALL_E2E_PREFIX": run_prefix,
        "DIRECTCALL_E2E_SETTINGS": json.dumps(directcall),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    last_error: Exception | None = None
    for _ in range(3):
        server = E2EServer(
            port=free_port(),
            log_path=log_path,
            env=env,
            directcall=directcall,
            redis=redis,
            kind=kind,
        )
        try:
            server.start()
        except RuntimeError as exc:  # most likely the free port was taken meanwhile
            last_error = exc
            continue
        return server
    pytest.fail(f"could not start the e2e {kind} server: {last_error}", pytrace=False)


@dataclass
class SiteDatabase:
    """A SQLite database of the e2e settings of its own, migrated, with one page-identity
    account: ``manage(*args)`` runs ``manage.py`` on it (asserting success)."""

    path: Path
    env: dict[str, str]
    account_id: str = ""
    api_key: str = ""

    @classmethod
    def create(cls, path: Path, account_name: str, **extra_env: str) -> SiteDatabase:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": SETTINGS_MODULE,
            "DATABASE_URL": f"sqlite:///{path}",
            "DIRECTCALL_E2E_DB_NAME": str(path),
            **extra_env,
        }
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        site = cls(path, env)
        site.manage("migrate", "--noinput", "-v", "0")
        out = site.manage(
            "directcall_account", "create", "--name", account_name, "--no-clevertap",
            "--identity", "page",
        )  # fmt: skip
        site.account_id = re.search(r"accountId:\s*(\S+)", out).group(1)
        site.api_key = re.search(r"apikey:\s*(\S+)", out).group(1)
        return site

    def manage(self, *args: str) -> str:
        done = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout


@contextlib.contextmanager
def env_var(name: str, value: str):
    """Set an environment variable for the duration of the block, then restore it."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old
