"""A real coturn for tests, started with the configuration the docs ship
(``docs/coturn/turnserver.conf``), its deployment lines replaced by local ones.

``shipped_config()`` keeps every line of the shipped file except the few that name a
deployment (ports, realm, certificate, secret); ``start_coturn(extra=[...])`` adds the
test's local lines and its own ``extra`` lines after them (list options such as
``allowed-peer-ip`` add up).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from deploy.topology import free_port

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_CONFIG = ROOT / "docs" / "coturn" / "turnserver.conf"
ARTIFACTS = ROOT / "tests" / "artifacts"

# The lines of the shipped file that describe one deployment; a test sets its own.
DEPLOYMENT_KEYS = {
    "listening-port",
    "tls-listening-port",
    "realm",
    "cert",
    "pkey",
    "min-port",
    "max-port",
    "static-auth-secret",
}

REALM = "directcall.test"


def _key(line: str) -> str:
    return line.split("=", 1)[0].strip()


def shipped_config() -> list[str]:
    """The shipped configuration's settings (comments and deployment lines left out)."""
    lines = [line.strip() for line in SHIPPED_CONFIG.read_text().splitlines()]
    return [
        line
        for line in lines
        if line and not line.startswith("#") and _key(line) not in DEPLOYMENT_KEYS
    ]


@dataclass
class Coturn:
    """A running turnserver: ``port`` (TCP and UDP on 127.0.0.1), ``secret``, ``config``."""

    proc: subprocess.Popen
    port: int
    secret: str
    config: list[str]
    log_path: Path

    def stop(self) -> None:
        """Terminate the process (and kill it if it does not go)."""
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def log(self) -> str:
        """What coturn wrote so far (its log goes to a file in tests/artifacts/)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def _wait_tcp(
    port: int, proc: subprocess.Popen, log_path: Path, timeout: float = 15, host: str = "127.0.0.1"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"turnserver exited with {proc.returncode}:\n{log_path.read_text(errors='replace')}"
            )
        try:
            socket.create_connection((host, port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)  # polling a port that is not open yet
    raise RuntimeError(f"turnserver did not listen on {port}")


def start_coturn(
    name: str,
    workdir: Path,
    secret: str,
    extra: list[str] = (),
    relay_ips: list[str] = (),
    listen_ip: str = "127.0.0.1",
    prefix: list[str] = (),
) -> Coturn:
    """Start coturn on 127.0.0.1 with the shipped configuration plus ``extra`` lines.

    ``relay_ips``: the relay addresses (default 127.0.0.1; add ``::1`` for IPv6 relays).
    ``listen_ip``: where it listens instead of 127.0.0.1; ``prefix``: a command it runs
    under (``ip netns exec NAME``: in a network namespace; tests/impairment.py).
    The file it ran with is ``workdir/<name>.conf``; its log ``tests/artifacts/coturn-<name>.log``.
    """
    binary = shutil.which("turnserver")
    if binary is None:
        pytest.fail(
            "coturn is needed: apt-get install coturn (scripts/test.sh installs it)",
            pytrace=False,
        )
    port = free_port()
    relay_min = 20000 + (port * 7) % 40000  # apart from other instances' ranges
    local = [
        f"listening-ip={listen_ip}",
        *[f"relay-ip={ip}" for ip in (relay_ips or ["127.0.0.1"])],
        f"listening-port={port}",
        f"min-port={relay_min}",
        f"max-port={relay_min + 200}",
        f"realm={REALM}",
        f"static-auth-secret={secret}",
        "no-tls",
        "no-dtls",
        "log-file=stdout",
        "simple-log",
        f"pidfile={workdir / (name + '.pid')}",
        f"userdb={workdir / (name + '.sqlite3')}",
    ]
    config = shipped_config() + local + list(extra)
    conf_path = workdir / f"{name}.conf"
    conf_path.write_text("\n".join(config) + "\n")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    log_path = ARTIFACTS / f"coturn-{name}.log"
    with log_path.open("wb") as log:
        # -c: only this file (never /etc/turnserver.conf).
        proc = subprocess.Popen(
            [*prefix, binary, "-c", str(conf_path)], stdout=log, stderr=subprocess.STDOUT
        )
    server = Coturn(proc, port, secret, config, log_path)
    try:
        _wait_tcp(port, proc, log_path, host=listen_ip)
    except BaseException:
        server.stop()
        raise
    return server


# What the browser TURN test (tests/e2e/test_turn.py) adds to the shipped configuration:
# both browsers run on this machine, so each one's relay sends to the other's relay at
# 127.0.0.1. coturn checks loopback before its allow-list, hence both lines.
LOOPBACK_RELAY_FOR_TESTS = ["allow-loopback-peers", "allowed-peer-ip=127.0.0.1"]
