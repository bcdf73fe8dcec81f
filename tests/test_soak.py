"""The soak test in its short form: ``bench/soak.py`` through one SIGKILL and one Redis restart.

Sixteen caller/callee pairs place calls for 75 s on three daphne processes sharing a
private redis-server and the database (PostgreSQL when ``DATABASE_URL`` names it), with
the soak's short timings; one process is SIGKILLed (and restarted) 20 s in, Redis is
restarted about 20 s later, and the last 25 s run without faults. The command prints its
figures and writes a JSON report, kept with the servers' logs in ``$DIRECTCALL_SOAK_OUT``
or ``.cache/soak/<time>/``; each of the first tests asserts one of its checks (the
definitions are in ``bench/soak.py``'s docstring). The run takes about two minutes; the
full run is ``python bench/soak.py`` (docs/security.md, "Soak test"). The last two tests
hold the checks themselves to their definitions, on made-up records and logs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import needs_redis_server

ROOT = Path(__file__).resolve().parent.parent
DURATION = 75
PAIRS = 16
RECOVERY_BOUND = 30.0  # seconds after the last fault (docs/security.md)

pytestmark = [
    pytest.mark.soak,
    needs_redis_server(),
]


@pytest.fixture(autouse=True)
def clean_cache() -> Iterator[None]:
    """Override conftest's: the soak's servers have their own Redis; this process has none."""
    yield


def report_dir() -> Path:
    """Where this run keeps its report, its output and the servers' logs, after the test
    too (a failure under load is read there): ``$DIRECTCALL_SOAK_OUT``, or a folder per run
    under ``.cache/soak/`` (ignored by git)."""
    chosen = os.environ.get("DIRECTCALL_SOAK_OUT")
    out = Path(chosen) if chosen else ROOT / ".cache" / "soak" / time.strftime("%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture(scope="module")
def soak() -> dict[str, Any]:
    """Run the short soak once (a subprocess, bounded); return its JSON report."""
    out = report_dir()
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
    print(f"\n[soak] report, output and server logs in {out}")
    try:
        result = subprocess.run(
            command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=False
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"bench/soak.py did not finish in 600 s (logs in {out}):\n{exc.stderr}")
    (out / "stdout.log").write_text(result.stdout)
    (out / "stderr.log").write_text(result.stderr)
    print(result.stdout)
    if not report_path.exists():
        pytest.fail(
            f"bench/soak.py exited {result.returncode} without a report (logs in {out}):\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        )
    report = json.loads(report_path.read_text())
    report["stdout"] = result.stdout
    report["out"] = str(out)
    return report


def _check(report: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in report["checks"] if c["check"].startswith(name))


def _examples(report: dict[str, Any], key: str, limit: int = 4000) -> str:
    shown = json.dumps(report["examples"][key], indent=1, default=str)[:limit]
    return f"{shown}\n(the whole report: {report['out']}/report.json)"


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
    # Each live call with both parties' timelines: what they knew, heard, sent, and when
    # their connections came and went (seconds since the load started).
    assert _check(soak, "no call live")["value"] == 0, _examples(soak, "live_at_end", 12000)
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


# -- the checks themselves, on records made up for the purpose (no servers) ----------------------


def _party(run: Any, cuid: str, role: str, segments: list[tuple]) -> Any:
    from bench import soak as bench_soak

    party = bench_soak.Party(run, cuid, role)
    party.segments = [bench_soak.Segment(*segment) for segment in segments]
    run.parties[cuid] = party
    return party


def _knew(party: Any, call_id: str, at: float, heard: list[tuple], conn: int = 1) -> None:
    """``party`` learnt of ``call_id`` at ``at`` on connection ``conn`` and then heard ``heard``."""
    from bench import soak as bench_soak

    via = "invited" if party.role == "caller" else "incoming"
    view = bench_soak.View(call_id, party.role, at, via, conn)
    view.heard = [bench_soak.Heard(s, r, t, c, "state") for s, r, t, c in heard]
    party.views[call_id] = view


def test_the_checks_count_exactly_what_they_define(tmp_path: Path) -> None:
    """Each kind of finding is counted once, and the cases that are no failure are not."""
    from bench import soak as bench_soak

    Row = bench_soak.Row
    rows = [
        Row("a", "missed", "invite_timeout", 1010, None, 1018, "c1", "e1"),  # all well
        Row("b", "missed", "invite_timeout", 1020, None, 1028, "c2", "e2"),  # e2 never told
        Row("c", "cancelled", "caller_cancelled", 1030, None, 1031, "c3", "e3"),  # c3 told wrong
        Row("d", "busy", "user_busy", 1040, None, 1040, "c4", "e1"),  # a busy callee never knows
        Row("e", "over", "user_hangup", 1045, 1046, 1052.5, "c5", "e5"),  # e5's process killed
        Row("f", "cancelled", "connection_lost", 1060, None, 1063, "c6", "e6"),  # c6 never knew
        Row("h", "missed", "invite_timeout", 1070, None, 1082, "c6", "e6"),  # 12 s > 11.5 s
        Row("g", "answered", "", 1100, 1101, None, "c1", "e1"),  # still live
    ]

    class Database:
        kind = "PostgreSQL"

        def calls(self) -> list[Any]:
            return rows

    run = bench_soak.Soak(bench_soak.Config(duration=100), tmp_path)
    run.db = Database()
    run.started, run.closed_at = 1000.0, 1200.0
    run.faults = [{"kind": "kill", "server": "s1", "t": 1050.0, "back": 1051.0}]
    run.probes = [
        {"after": "start", "fault_t": None, "ok": True, "from_fault": None, "from_back": 0.4},
        {"after": "kill", "fault_t": 1050.0, "ok": True, "from_fault": 2.0, "from_back": 1.0},
    ]
    up = [("s2", 990.0)]
    c1, e1 = _party(run, "c1", "caller", up), _party(run, "e1", "callee", up)
    _knew(c1, "a", 1010.1, [("missed", "invite_timeout", 1018.1, 1)])
    _knew(e1, "a", 1010.2, [("ringing", "", 1010.5, 1), ("missed", "invite_timeout", 1018.1, 1)])
    _knew(c1, "g", 1100.1, [("answered", "", 1101.1, 1)])
    _knew(e1, "g", 1100.1, [("answered", "", 1101.1, 1)])
    c2, e2 = _party(run, "c2", "caller", up), _party(run, "e2", "callee", up)
    _knew(c2, "b", 1020.1, [("missed", "invite_timeout", 1028.1, 1)])
    _knew(e2, "b", 1020.2, [("ringing", "", 1020.5, 1)])
    e2.sent[("b", "accept")] = 1024.9
    e2.errors.append({"code": "ERR_INTERNAL", "in_reply_to": "accept", "call_id": "b", "t": 1025})
    c3, e3 = _party(run, "c3", "caller", up), _party(run, "e3", "callee", up)
    _knew(c3, "c", 1030.1, [("cancelled", "user_hangup", 1031.1, 1)])
    _knew(e3, "c", 1030.2, [("cancelled", "caller_cancelled", 1031.1, 1)])
    c3.sent[("c", "cancel")] = 1030.95
    c3.errors.append({"code": "ERR_INTERNAL", "in_reply_to": "cancel", "call_id": "c", "t": 1031.1})
    c4 = _party(run, "c4", "caller", up)
    _knew(c4, "d", 1040.1, [("busy", "user_busy", 1040.1, 1)])
    c5 = _party(run, "c5", "caller", up)
    e5 = _party(run, "e5", "callee", [("s1", 990.0, 1050.01, 1006), ("s2", 1052.0)])
    _knew(c5, "e", 1045.1, [("answered", "", 1046.1, 1), ("over", "user_hangup", 1052.6, 1)])
    _knew(e5, "e", 1045.1, [("answered", "", 1046.1, 1), ("over", "user_hangup", 1053.0, 2)])
    _party(run, "c6", "caller", up)
    e6 = _party(run, "e6", "callee", up)
    _knew(e6, "f", 1060.5, [("cancelled", "connection_lost", 1063.1, 1)])

    report = bench_soak.analyse(run)
    values = {c["check"]: c["value"] for c in report["checks"]}
    failed = {name for name, value in values.items() if value not in (0, 1.0)}
    assert not failed, values
    assert values["no call live after the settle period"] == 1
    assert values["unanswered calls live > ring + grace + sweep (11.5 s)"] == 1
    assert values["final states told that differ from the database"] == 1
    assert values["parties told two different ends"] == 0
    assert values["parties never told the end of a call they knew"] == 1
    assert report["examples"]["never_told"][0]["party"] == "e2"
    assert values["ERR_INTERNAL for a change that was made"] == 1
    assert report["err_internal"] == {"accept": 1, "cancel": 1}
    assert report["never_knew"] == {"caller/cancelled": 1, "caller/missed": 1, "callee/missed": 1}
    assert report["told_after_reconnect"] == 1
    assert report["told_delay"]["after_kill"]["n"] == 1
    assert report["told_delay"]["after_kill"]["p50"] == pytest.approx(0.5)
    assert report["told_delay"]["kill_to_told"]["p50"] == pytest.approx(3.0)
    assert values["recovery after the last fault"] == 1.0


def test_the_log_scan_tells_crashes_500s_and_whose_tasks_failed(tmp_path: Path) -> None:
    """Consumer crashes, 500s (not 503s) and directcall's lost task errors; a library's apart."""
    from bench import soak as bench_soak

    own = tmp_path / "directcall"
    log = tmp_path / "s1.log"
    log.write_text(
        "2026-11-27 17:01:11,560 ERROR    Exception inside application: boom\n"
        "Traceback (most recent call last):\n"
        '  File "/x/channels/consumer.py", line 1, in __call__\n'
        "redis.exceptions.ConnectionError: boom\n"
        "2026-11-27 17:01:12,000 ERROR    Task exception was never retrieved\n"
        "future: <Task finished name='Task-1' coro=<RedisChannelLayer._clean_receive_backup()>>\n"
        "Traceback (most recent call last):\n"
        '  File "/venv/site-packages/channels_redis/core.py", line 249, in _clean\n'
        "redis.exceptions.ConnectionError: Connection closed by server.\n"
        "2026-11-27 17:01:13,000 ERROR    Task exception was never retrieved\n"
        "future: <Task finished name='Task-2' coro=<Party.fire()>>\n"
        "Traceback (most recent call last):\n"
        f'  File "{own}/party.py", line 9, in fire\n'
        "redis.exceptions.ConnectionError: gone\n"
        '127.0.0.1:5000 - - [27/Nov/2026:17:01:14] "POST /directcall/v1/init" 500 145\n'
        '127.0.0.1:5001 - - [27/Nov/2026:17:01:14] "POST /directcall/v1/init" 503 99\n'
        '127.0.0.1:5002 - - [27/Nov/2026:17:01:14] "POST /directcall/v1/init" 200 99\n'
    )
    logs = bench_soak.scan_logs([log], own)
    assert len(logs["crashes"]) == 1 and logs["crashes"][0].endswith("ConnectionError: boom")
    assert len(logs["task_errors"]) == 1 and "Party.fire" in logs["task_errors"][0]
    assert len(logs["library_task_errors"]) == 1
    assert logs["http5xx"] == {"500 /directcall/v1/init": 1, "503 /directcall/v1/init": 1}
