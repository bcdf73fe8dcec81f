"""Smoke runs of the benchmark commands in ``bench/`` (docs/performance.md).

Not timed tests and not benchmarks: each command runs with ``--smoke`` (a few calls, a few
dozen connections) as a subprocess, only to prove that it still works end to end —
servers start, the load generator speaks the protocol, PeerJS installs with npm, the
browsers connect — and prints its table. Nothing here asserts a number.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_postgres_server

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.bench


def _run(
    script: str, timeout: float, args: tuple[str, ...] = (), unset: tuple[str, ...] = ()
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # The commands configure their own servers.
    for name in ("DJANGO_SETTINGS_MODULE", "DJANGO_ALLOW_ASYNC_UNSAFE", *unset):
        env.pop(name, None)
    try:
        return subprocess.run(
            [sys.executable, str(ROOT / "bench" / script), "--smoke", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"bench/{script} --smoke did not finish in {timeout}s:\n{exc.stderr}")


def _check(result: subprocess.CompletedProcess, script: str, header: str) -> None:
    npm = result.stderr.rfind("npm could not install")
    if npm >= 0:
        pytest.fail(
            f"bench/{script}: npm could not install the PeerJS server (npm package `peer`) "
            "into bench/.cache/; the comparison needs the npm registry:\n"
            + result.stderr[npm : npm + 3000],
            pytrace=False,
        )
    assert result.returncode == 0, (
        f"bench/{script} --smoke exited {result.returncode}\n"
        f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-5000:]}"
    )
    assert header in result.stdout, result.stdout


def test_signaling_benchmark_smoke():
    """With ``--pin`` (each server process on a CPU of its own, batch, the proxy's workers too);
    the sizing smoke below runs its workers unpinned."""
    result = _run("signaling.py", timeout=240, args=("--pin",))
    _check(result, "signaling.py", "## directcall signaling benchmark (smoke)")
    assert "Each server process on a CPU of its own, batch (--pin)." in result.stdout
    assert "| configuration" in result.stdout
    labels = ("PeerJS server", "plain Python websockets relay", "1 daphne")
    for label in (*labels, "the floor: directcall's rules, no framework"):
        assert label in result.stdout, result.stdout
    if os.environ.get("REDIS_URL"):
        assert "2 daphne, RedisChannelLayer" in result.stdout
        assert "2 daphne, RedisPubSubChannelLayer" in result.stdout
        assert "nginx (TLS) → 2 " in result.stdout  # the production topology's front


def test_sizing_benchmark_smoke():
    """The production topology's sizing (docs/deployment.md's tables): nginx, two workers,
    a private Redis, a fresh PostgreSQL database."""
    require_postgres_server("bench/sizing.py")
    result = _run("sizing.py", timeout=240)
    _check(result, "sizing.py", "## directcall sizing (smoke)")
    for heading in ("### A worker process", "### A sign-in", "### Redis and PostgreSQL"):
        assert heading in result.stdout, result.stdout
    assert "| worker CPU per full call (both parties' workers) " in result.stdout
    assert "cores busy during the calls" in result.stdout


@pytest.mark.parametrize("server", ["uvicorn-lean", "uvicorn-sansio"])
def test_idle_memory_benchmark_smoke(server):
    result = _run("idle_memory.py", timeout=120, args=("--server", server))
    _check(result, "idle_memory.py", f"{server}: 20 connections added")
    assert "| allocated in (per connection) | bytes | blocks |" in result.stdout
    if server == "uvicorn-lean":
        assert "`directcall/uvicorn_ws.py`" in result.stdout  # the lean protocol served them


def test_frame_floor_benchmark_smoke():
    """Every kind of work per frame (the hop to a database thread and SQLite's statements
    in it run in the server), pinned."""
    args = ("--work", "none,hop,sqlite", "--pin")
    result = _run("frame_floor.py", timeout=180, args=args)
    _check(result, "frame_floor.py", "## Frame floor (smoke)")
    for work in ("none", "hop", "sqlite"):
        assert f"| {work} | 100/s | 2 |" in result.stdout, result.stdout
    assert "| 100/s | 2 |" in result.stdout and "| back to back | 2 |" in result.stdout


def test_browser_benchmark_smoke():
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not os.access(chromium, os.X_OK):
        pytest.fail(f"the browser benchmark needs Chromium at {chromium}", pytrace=False)
    result = _run("browser.py", timeout=120)
    _check(result, "browser.py", "## directcall browser benchmark (smoke)")
    assert "| measure" in result.stdout
    assert "call() → incoming screen shown" in result.stdout


def test_transitions_benchmark_smoke():
    """On SQLite (DATABASE_URL unset: a temporary file), pinned: both ways in the table."""
    result = _run("transitions.py", timeout=180, args=("--pin",), unset=("DATABASE_URL",))
    _check(result, "transitions.py", "## Set-up database work (smoke): sqlite")
    assert "| back to back |" in result.stdout and "| paced |" in result.stdout


def test_inprocess_benchmark_smoke():
    """directcall's application and the floor's, alternated, both in the table."""
    result = _run("inprocess.py", timeout=180, unset=("DATABASE_URL",))
    _check(result, "inprocess.py", "## In-process set-up CPU (smoke)")
    assert "| median | directcall |" in result.stdout and "| median | floor |" in result.stdout


def test_renewal_benchmark_smoke():
    """Both ways on the local-memory cache, and on Redis when the suite has it."""
    result = _run("renewal.py", timeout=120, unset=("DATABASE_URL",))
    _check(result, "renewal.py", "## Presence renewal (smoke)")
    caches = ("locmem", "redis") if os.environ.get("REDIS_URL") else ("locmem",)
    for cache in caches:
        for way in ("one by one", "batched"):
            assert f"| {cache.ljust(6)} | {way.ljust(10)} |" in result.stdout, result.stdout
