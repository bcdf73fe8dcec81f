"""CPU of a call set-up's database work, step by step, back to back and at a set-up's pace.

    .venv/bin/python bench/transitions.py                     # SQLite in a temporary file
    .venv/bin/python bench/transitions.py --pin --calls 100
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench .venv/bin/python bench/transitions.py

Runs, in this process and one thread, the work the server's database thread does for one
call set-up (docs/performance.md): ``calls.place_call`` (the invite), ``calls.ring``,
``calls.accept`` and ``calls.leave`` (the hang-up), as the consumer calls them (the call
passed along, the caller's registration loaded once, the call keys made; the callee kept
online in presence, the local-memory cache). directcall's receivers are connected, except
the watch's announcement, which needs the server's event loop. Each step's CPU time
(``time.process_time``) is summed over ``--calls`` set-ups, in two ways:

- back to back: each step starts as soon as the one before ends;
- paced: ``--step-gap`` seconds idle before each step, ``--idle`` seconds before each
  set-up (the defaults: about the gaps between a set-up's frames on 127.0.0.1, and
  10 set-ups a second).

The same work costs more when the processor has idled before it (its caches, and on a VM
the virtual CPU, woken cold): the ratio is the share of a set-up's database CPU that is
the pace rather than the work.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

STEPS = ("place_call", "ring", "accept", "leave")


def setup_django(tmp: str) -> str:
    """Django on the benchmark's settings; a fresh SQLite file in ``tmp`` unless
    DATABASE_URL is set."""
    if not os.environ.get("DATABASE_URL"):
        os.environ["DATABASE_URL"] = f"sqlite:///{Path(tmp) / 'db.sqlite3'}"
    os.environ["BENCH_LAYER"] = "memory"
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings"
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    return connection.vendor


def _set_up() -> Callable[[float, float, Counter], None]:
    """The two parties; a function that runs one set-up and adds each step's CPU."""
    from directcall import calls, presence, watch
    from directcall.models import Account, Registration
    from directcall.tokens import Session
    from directcall.validation import clean_call_params

    # The announcement is handed to the server's event loop, which this process has not.
    watch.changed_from_thread = lambda *people: None
    account = Account(name="Bench", require_clevertap=False, identity="page")
    account.set_new_api_key()
    account.save()
    caller = Registration.objects.create(account=account, cuid="tutor_jane", name="Jane")
    callee = Registration.objects.create(account=account, cuid="student_sam", name="Sam")
    caller = Registration.objects.select_related("account").get(pk=caller.pk)
    session = Session(account.pk, caller.pk, caller.cuid, "device-0001")
    params = clean_call_params(callee.cuid, "Benchmark call")
    caller_conn, callee_conn = f"conn-{caller.pk}", f"conn-{callee.pk}"
    holder = presence.Holder(f"chan-{callee.pk}", f"dev-{callee.pk}", callee_conn)
    # Signed in once; each set-up renews the entry, as the connection's renewals do (a
    # claim without the device key would be refused, and the entry lapse after
    # PRESENCE_TTL).
    _, device_key = presence.claim(account.pk, callee.cuid, holder)
    holder = replace(holder, key=presence.hash_key(device_key))

    def timed(cpu: Counter, step: str, gap: float, work: Callable[[], Any]) -> Any:
        if gap:
            time.sleep(gap)
        start = time.process_time()
        result = work()
        cpu[step] += time.process_time() - start
        if result is None:
            raise RuntimeError(f"{step} did not happen")
        return result

    def one(idle: float, step_gap: float, cpu: Counter) -> None:
        if not presence.renew(account.pk, callee.cuid, holder):
            raise RuntimeError("the callee's presence was lost")
        _, caller_hash = calls.new_call_key()
        placed = timed(
            cpu,
            "place_call",
            idle,
            lambda: calls.place_call(
                session, params, "v=0", key_hash=caller_hash, caller_row=caller, conn=caller_conn
            ),
        )
        call = placed.call
        timed(cpu, "ring", step_gap, lambda: calls.ring(call.pk, callee.pk, call=call))
        _, callee_hash = calls.new_call_key()
        timed(
            cpu,
            "accept",
            step_gap,
            lambda: calls.accept(call.pk, callee.pk, callee_hash, call=call, conn=callee_conn),
        )
        timed(
            cpu,
            "leave",
            step_gap,
            lambda: calls.leave(call.pk, caller.pk, call=call, status="answered"),
        )

    return one


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="set-ups per way of running")
    parser.add_argument("--rounds", type=int, default=2, help="back to back, paced: alternated")
    parser.add_argument("--step-gap", type=float, default=0.0015, help="seconds before a step")
    parser.add_argument("--idle", type=float, default=0.1, help="seconds before a set-up")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="this process on one CPU, batch (as bench/signaling.py --pin)",
    )
    parser.add_argument("--smoke", action="store_true", help="a few set-ups, one round")
    args = parser.parse_args()
    if args.smoke:
        args.calls, args.rounds = 5, 1
    if args.pin:
        from bench._common import pin_this_process

        pin_this_process()
    with tempfile.TemporaryDirectory(prefix="dc_transitions_") as tmp:
        _measure(args, setup_django(tmp))


def _measure(args: argparse.Namespace, vendor: str) -> None:
    """Both ways, alternated ``--rounds`` times; print the table."""
    from django.db import connections

    one = _set_up()
    for _ in range(20):  # warm-up: connections, statement caches, imports
        one(0, 0, Counter())
    ways = {"back to back": (0.0, 0.0), "paced": (args.idle, args.step_gap)}
    totals: dict[str, Counter] = {way: Counter() for way in ways}
    for _ in range(args.rounds):
        for way, (idle, step_gap) in ways.items():
            for _ in range(args.calls):
                one(idle, step_gap, totals[way])
    count = args.calls * args.rounds
    title = "## Set-up database work (smoke)" if args.smoke else "## Set-up database work"
    pinned = ", pinned (batch)" if args.pin else ""
    print(
        f"\n{title}: {vendor}{pinned}, {count} set-ups each way; paced: {args.idle:g} s idle "
        f"before a set-up, {args.step_gap:g} s before each later step\n"
    )
    print("| way | " + " | ".join(STEPS) + " | set-up, ms CPU | × back to back |")
    print("|---|" + "---|" * (len(STEPS) + 2))
    base = sum(totals["back to back"].values()) / count
    for way, cpu in totals.items():
        total = sum(cpu.values()) / count
        cells = " | ".join(f"{cpu[step] / count * 1e3:.3f}" for step in STEPS)
        ratio = f"×{total / base:.2f}" if base else "—"
        print(f"| {way} | {cells} | {total * 1e3:.3f} | {ratio} |")
    connections.close_all()


if __name__ == "__main__":
    main()
