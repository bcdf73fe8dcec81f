"""The soak test in its short form: ``bench/soak.py`` through one SIGKILL and one Redis restart.

Sixteen caller/callee pairs place calls for 75 s on three daphne processes sharing a
private redis-server and the database (PostgreSQL when ``DATABASE_URL`` names it), with
the soak's short timings; one process is SIGKILLed (and restarted) 20 s in, Redis is
restarted about 20 s later, and the last 25 s run without faults. The command prints its
figures and writes a JSON report; each test below asserts one of its checks (the
definitions are in ``bench/soak.py``'s docstring). The run takes about two minutes; the
full run is ``python bench/soak.py`` (docs/security.md, "Soak test").
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DURATION = 75
PAIRS = 16
RECOVERY_BOUND = 30.0  # seconds after the last fault (docs/security.md)

pytestmark = [
    pytest.mark.soak,
    pytest.mark.skipif(
        shutil.which("redis-server") is None,
        reason="the soak restarts a private redis-server: install redis-server",
    ),
]


@pytest.fixture(autouse=True)
def clean_cache() -> Iterator[None]:
    """Override conftest's: the soak's servers have their own Redis; this process has none."""
    yield


@pytest.fixture(scope="module")
def soak(tmp_path_factory) -> dict[str, Any]:
    """Run the short soak once (a subprocess, bounded); return its JSON report."""
    out = tmp_path_factory.mktemp("soak")
    report_path = out / "report.json"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("DJANGO_SETTINGS_MODULE", None)  # the command configures its own servers
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    command = [
        sys.executable,
        str(ROOT / "bench" / "soak.py"),
        *("--duration", str(DURATION), "--pairs", str(PAIRS)),
        *("--kills", "1", "--redis-restarts", "1"),
        *("--recovery-bound", str(RECOVERY_BOUND)),
        *("--out", str(out), "--json", str(report_path)),
    ]
    try:
        result = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"bench/soak.py did not finish in 600 s:\n{exc.stderr}")
    print(result.stdout)
    if not report_path.exists():
        pytest.fail(
            f"bench/soak.py exited {result.returncode} without a report:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        )
    report = json.loads(report_path.read_text())
    report["stdout"] = result.stdout
    return report


def _check(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in report["checks"] if c["check"].startswith(name))


def _examples(report: dict[str, Any], key: str) -> str:
    return json.dumps(report["examples"][key], indent=1, default=str)[:4000]


def test_the_load_and_the_faults_happened(soak: dict[str, Any]) -> None:
    """The run did what it claims: every outcome, both faults, parties cut off mid-call."""
    by_status = soak["calls"]["by_status"]
    for status in ("over", "declined", "missed", "cancelled"):
        assert by_status.get(status, 0) > 0, f"no {status} call: {by_status}"
    assert soak["kills"] == 1 and soak["redis_restarts"] == 1, soak["faults"]
    assert soak["told_delay"]["after_kill"]["n"] > 0, "the kill hit no party of a call"
    assert soak["told_after_reconnect"] > 0, "no party was told an end after reconnecting"


def test_no_call_is_left_live(soak: dict[str, Any]) -> None:
    """After the settle period nothing is live; no unanswered call outlived its bound."""
    assert _check(soak, "no call live")["value"] == 0, _examples(soak, "live_at_end")
    assert _check(soak, "unanswered calls live")["value"] == 0, _examples(soak, "over_bound")


def test_what_each_party_was_told_matches_the_database(soak: dict[str, Any]) -> None:
    """Every final state a party heard is the row's; nobody heard two ends or a false answer."""
    assert _check(soak, "final states told")["value"] == 0, _examples(soak, "mismatched")
    assert _check(soak, "parties told two")["value"] == 0, _examples(soak, "conflicting")
    assert _check(soak, "parties told 'answered'")["value"] == 0, _examples(soak, "false_answer")


def test_every_party_is_told_every_end(soak: dict[str, Any]) -> None:
    """Zero parties never told the end of a call they knew (killed ones included)."""
    assert soak["never_told"] == 0, (
        f"{soak['never_told']} never told ({soak['never_told_by']}):\n"
        + _examples(soak, "never_told")
    )


def test_no_crash_and_no_500_in_the_server_logs(soak: dict[str, Any]) -> None:
    """No consumer died on an exception, no task failed unseen, no HTTP 500."""
    logs = soak["logs"]
    assert not logs["crashes"], "\n".join(logs["crashes"][:10])
    assert not logs["task_errors"], "\n".join(logs["task_errors"][:10])
    assert _check(soak, "HTTP 5xx")["value"] == 0, (logs["http5xx"], logs["paths"])


def test_no_err_internal_for_a_change_that_was_made(soak: dict[str, Any]) -> None:
    """A refused frame changed nothing: no ERR_INTERNAL where the database shows the change."""
    assert _check(soak, "ERR_INTERNAL for a change")["value"] == 0, _examples(soak, "internal_made")


def test_new_calls_work_soon_after_each_fault(soak: dict[str, Any]) -> None:
    """A new cross-process call worked after every fault; after the last within the bound."""
    failed = [p for p in soak["probes"] if not p["ok"]]
    assert not failed, failed
    recovery = _check(soak, "recovery after the last fault")["value"]
    assert recovery is not None and recovery <= RECOVERY_BOUND, soak["probes"]
