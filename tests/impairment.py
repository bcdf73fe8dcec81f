"""A TURN server behind an impaired network path, for browser tests of call quality.

This kernel has no netem, so the path is built from what it has (../shared notes):

- a network namespace of the test's own, joined to this one by a veth pair;
- inside it, coturn (the shipped configuration) and a UDP relay in front of it
  (``tests/udp_relay.py``) that delays every packet, both ways, by a delay plus a random
  jitter;
- nftables in the namespace dropping a share of the packets that reach the relay
  (``numgen random mod 100 < N drop`` on the input hook: silent loss, as on a real path).

The browsers are given ``turn:<relay>`` as their TURN server with relay-only ICE, so
every media packet of a call crosses the relay and the drop rule. Needs root, ``ip``
(iproute2) and ``nft`` (nftables): scripts/test.sh installs them.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.coturn import ARTIFACTS, Coturn, start_coturn

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed: {done.stderr.strip()}")


def require_tools() -> None:
    """Fail with what is missing when the namespace cannot be built here."""
    missing = [tool for tool in ("ip", "nft") if shutil.which(tool) is None]
    if missing:
        pytest.fail(
            f"the impairment tests need {' and '.join(missing)} (apt-get install iproute2 "
            "nftables; scripts/test.sh installs them as root)",
            pytrace=False,
        )
    if os.geteuid() != 0:
        pytest.fail(
            "the impairment tests create a network namespace: run them as root", pytrace=False
        )


class ImpairedTurn:
    """coturn and the delaying relay in a namespace of their own; see the module docstring.

    ``url`` is the TURN URL for the browsers; ``set_loss(percent)`` and
    ``set_delay(ms, jitter_ms)`` change the path while a call runs; ``close()`` removes all.
    """

    def __init__(self, workdir: Path, secret: str, extra: list[str] = ()) -> None:
        require_tools()
        tag = os.getpid() % 100_000
        self.ns = f"dcq{tag}"
        self.veth = (f"dcq{tag}a", f"dcq{tag}b")
        # A /30 of its own (parallel runs use other pids).
        self.host_ip = f"10.{200 + tag % 50}.{(tag // 50) % 256}.1"
        self.ip = f"10.{200 + tag % 50}.{(tag // 50) % 256}.2"
        self.relay_port = 3478
        self.control_port = 3479
        self.coturn: Coturn | None = None
        self.relay: subprocess.Popen | None = None
        self._built = False
        try:
            self._build(workdir, secret, extra)
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        return f"turn:{self.ip}:{self.relay_port}?transport=udp"

    def _exec(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns]

    def _build(self, workdir: Path, secret: str, extra: list[str]) -> None:
        self._cleanup_stale()
        _run("ip", "netns", "add", self.ns)
        self._built = True
        _run("ip", "link", "add", self.veth[0], "type", "veth", "peer", "name", self.veth[1])
        _run("ip", "link", "set", self.veth[1], "netns", self.ns)
        _run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.veth[0])
        _run("ip", "link", "set", self.veth[0], "up")
        _run(*self._exec(), "ip", "addr", "add", f"{self.ip}/30", "dev", self.veth[1])
        _run(*self._exec(), "ip", "link", "set", self.veth[1], "up")
        _run(*self._exec(), "ip", "link", "set", "lo", "up")
        # Allocations relay on 127.0.0.1 inside the namespace: peer to peer stays in it.
        self.coturn = start_coturn(
            "impaired",
            workdir,
            secret,
            extra=["allow-loopback-peers", "allowed-peer-ip=127.0.0.1", *extra],
            relay_ips=["127.0.0.1"],
            listen_ip=self.ip,
            prefix=self._exec(),
        )
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.relay_log = ARTIFACTS / "udp-relay.log"
        self.relay = subprocess.Popen(
            [
                *self._exec(),
                sys.executable,
                "-m",
                "tests.udp_relay",
                "--listen",
                f"{self.ip}:{self.relay_port}",
                "--target",
                f"{self.ip}:{self.coturn.port}",
                "--control",
                f"{self.ip}:{self.control_port}",
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self.relay_log.open("wb"),
            text=True,
        )
        if self.relay.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the UDP relay did not start: {self.relay_log.read_text()}")
        rules = (
            "table inet directcall_impair {\n"
            " chain input {\n"
            "  type filter hook input priority 0; policy accept;\n"
            " }\n"
            "}\n"
        )
        self._nft(rules)

    def _nft(self, text: str) -> None:
        done = subprocess.run(
            [*self._exec(), "nft", "-f", "-"],
            input=text,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"nft failed: {done.stderr.strip()}")

    def set_loss(self, percent: int) -> None:
        """Drop ``percent`` % of the packets reaching the relay from the browsers (0: none)."""
        rules = "flush chain inet directcall_impair input\n"
        if percent:
            share = f"numgen random mod 100 < {int(percent)} " if percent < 100 else ""
            rules += (
                f'add rule inet directcall_impair input iifname "{self.veth[1]}" '
                f"udp dport {self.relay_port} {share}drop\n"
            )
        self._nft(rules)

    def set_delay(self, delay_ms: float, jitter_ms: float = 0) -> None:
        """Delay every packet through the relay by ``delay_ms`` plus 0..``jitter_ms``."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(5)
            message = json.dumps({"delay": delay_ms, "jitter": jitter_ms}).encode()
            sock.sendto(message, (self.ip, self.control_port))
            assert sock.recv(16) == b"ok"

    def _cleanup_stale(self) -> None:
        """A namespace left by a killed run of this pid (pids are reused)."""
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", self.veth[0]], capture_output=True, check=False)

    def close(self) -> None:
        """Stop the relay and coturn, delete the namespace (and with it the veth pair)."""
        if self.relay is not None and self.relay.poll() is None:
            self.relay.terminate()
            try:
                self.relay.wait(5)
            except subprocess.TimeoutExpired:
                self.relay.kill()
        if self.coturn is not None:
            self.coturn.stop()
        if self._built:
            self._cleanup_stale()
