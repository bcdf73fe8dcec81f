"""CPU of keeping idle signed-in connections online: the presence renewal, one by one
against batched, on Redis and on the local-memory cache.

    .venv/bin/python bench/renewal.py                        # 1000 connections, 4 rounds
    .venv/bin/python bench/renewal.py --connections 5000 --caches redis

A signed-in connection renews its presence entry every PRESENCE_TTL/3 (10 s by default):
besides the pings (the client's, and the server's keepalive to a silent socket), it is the
only regular work an idle connection costs its server. The process's timers hand the
connections due together to ``presence.renew_many``. This runs, in this process,
``--connections`` signed-in cuids renewed the two ways, alternated round by round:

- one by one: ``presence.renew`` for each connection, as ``renew_many`` did until run S
  (a read and a write of the entry each: two Redis round trips);
- batched: ``presence.renew_many`` for all of them (two round trips per
  ``presence.RENEW_BATCH`` connections).

CPU is this process's (``time.thread_time``: the renewal and its cache client) and, on
Redis, the Redis server's (``INFO cpu``, where nothing else loads that server). Per
idle connection and second is the renewal's CPU divided by the renewal interval.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import (
    clean_redis,
    pin_this_process,
    redis_cpu_s,
    redis_ok,
    table,
)
from bench.transitions import setup_django

WAYS = ("one by one", "batched")
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")


def _caches(names: list[str], prefix: str) -> dict[str, dict]:
    known = {
        "redis": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": prefix,
        },
        "locmem": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": prefix,
            "OPTIONS": {"MAX_ENTRIES": 1_000_000},
        },
    }
    return {name: known[name] for name in names}


def _people(count: int) -> list[tuple[int, str, object]]:
    """``count`` cuids signed in (claimed in presence), each with its connection's holder."""
    from directcall import presence

    people = []
    for i in range(count):
        holder = presence.Holder(f"chan-{i}", f"device-{i:06d}", f"conn-{i}")
        _, device_key = presence.claim(1, f"idle_{i:06d}", holder)
        people.append((1, f"idle_{i:06d}", replace(holder, key=presence.hash_key(device_key))))
    return people


def _ways(people: list) -> dict[str, Callable[[], list]]:
    from directcall import presence

    return {
        "one by one": lambda: [presence.renew(*person) for person in people],
        "batched": lambda: presence.renew_many(people),
    }


def _measure(args: argparse.Namespace, cache: str, redis_url: str | None) -> list[tuple]:
    ways = _ways(_people(args.connections))
    for run in ways.values():  # warm up; every entry must be renewed
        outcomes = run()
        if not all(outcome is True for outcome in outcomes):
            raise SystemExit(f"a renewal failed on {cache}: {outcomes[:3]}")
    samples: dict[str, list[tuple[float, float]]] = {way: [] for way in WAYS}
    for round_ in range(args.rounds):
        for way in WAYS if round_ % 2 == 0 else reversed(WAYS):
            redis0, cpu0 = redis_cpu_s(redis_url), time.thread_time()
            for _ in range(args.repeat):
                ways[way]()
            cpu1, redis1 = time.thread_time(), redis_cpu_s(redis_url)
            count = args.repeat * args.connections
            samples[way].append(((cpu1 - cpu0) / count * 1e6, (redis1 - redis0) / count * 1e6))
    from directcall.signin import renewal_interval

    interval = renewal_interval()
    rows = []
    base = statistics.median(s[0] + s[1] for s in samples["batched"])
    for way in WAYS:
        process = statistics.median(s[0] for s in samples[way])
        server = statistics.median(s[1] for s in samples[way]) if redis_url else None
        both = process + (server or 0.0)
        rows.append(
            (
                cache,
                way,
                f"{process:.1f}",
                f"{server:.1f}" if server is not None else "—",
                f"{both / interval:.2f}",
                f"×{both / base:.1f}",
            )
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000, help="signed-in cuids")
    parser.add_argument("--rounds", type=int, default=4, help="rounds, the order alternated")
    parser.add_argument("--repeat", type=int, default=5, help="renewals of all, per round")
    parser.add_argument("--caches", default="redis,locmem", help="comma-separated: redis, locmem")
    parser.add_argument("--pin", action="store_true", help="this process on a CPU, batch")
    parser.add_argument("--smoke", action="store_true", help="a few connections, two rounds")
    args = parser.parse_args()
    if args.smoke:
        args.connections, args.rounds, args.repeat = 30, 2, 2
    if args.pin:
        pin_this_process()
    names = [name.strip() for name in args.caches.split(",") if name.strip()]
    if "redis" in names and not redis_ok(REDIS_URL):
        print(f"Redis does not answer at {REDIS_URL}: skipping it", file=sys.stderr)
        names.remove("redis")
    prefix = f"dcrenew-{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="dc-renewal-") as tmp:
        setup_django(tmp)
        from django.test import override_settings

        rows = []
        for name, config in _caches(names, prefix).items():
            with override_settings(CACHES={"default": config}):
                redis_url = REDIS_URL if name == "redis" else None
                rows += _measure(args, name, redis_url)
        if "redis" in names:
            clean_redis(REDIS_URL, [prefix])
    title = "## Presence renewal (smoke)" if args.smoke else "## Presence renewal"
    pinned = ", pinned (batch)" if args.pin else ""
    print(
        f"\n{title}: {args.connections} signed-in connections, each renewed {args.repeat}× "
        f"per round, {args.rounds} rounds alternated{pinned}; medians\n"
    )
    headers = (
        "cache",
        "way",
        "µs CPU per renewal, this process",
        "µs CPU per renewal, Redis",
        "µs CPU per idle connection per second",
        "× batched",
    )
    print(table(headers, rows))


if __name__ == "__main__":
    main()
