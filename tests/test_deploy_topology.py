"""deploy/topology.py's parts that need no nginx, Redis or PostgreSQL: pinning a worker."""

from __future__ import annotations

import json
import os
import sys
import time

import pytest

from deploy.topology import Service, Topology, TopologyError, can_pin, worker_cpu


def test_workers_take_the_cpus_in_turn_from_the_last():
    cpus = sorted(os.sched_getaffinity(0))
    taken = [worker_cpu(i) for i in range(2 * len(cpus))]
    assert taken[: len(cpus)] == cpus[::-1]  # one CPU each while there are enough
    assert taken[len(cpus) :] == taken[: len(cpus)]  # then around again
    assert set(taken) <= set(cpus)


@pytest.mark.parametrize("pinned", [True, False])
def test_a_pinned_service_runs_on_its_cpu_and_so_do_its_threads(tmp_path, pinned):
    """The pin is set before the program starts: the process, and a thread it starts (the
    database thread of a worker), stay on that CPU, scheduled as batch; an unpinned one
    keeps every CPU and this process's scheduling policy."""
    script = (
        "import json, os, sys, threading, time\n"
        "def look(): return [sorted(os.sched_getaffinity(0)), os.sched_getscheduler(0)]\n"
        "seen = []\n"
        "t = threading.Thread(target=lambda: seen.append(look()))\n"
        "t.start(); t.join()\n"
        "print(json.dumps([look(), seen[0]]))\n"
        "sys.stdout.flush(); time.sleep(600)\n"
    )
    cpu = worker_cpu(0)
    service = Service(
        "probe",
        [sys.executable, "-c", script],
        tmp_path / "probe.log",
        cpus={cpu} if pinned else None,
    )
    expected = {cpu} if pinned else os.sched_getaffinity(0)
    policy = os.SCHED_BATCH if pinned else os.sched_getscheduler(0)
    service.start()
    try:
        deadline = time.monotonic() + 60
        while not service.log.read_text().endswith("\n"):  # the probe has looked
            assert service.alive(), service.tail()
            assert time.monotonic() < deadline, "the probe printed nothing in 60 s"
            time.sleep(0.02)
        assert os.sched_getaffinity(service.pid) == expected
        assert os.sched_getscheduler(service.pid) == policy
    finally:
        service.kill()
    main, thread = json.loads(service.log.read_text())
    assert set(main[0]) == set(thread[0]) == expected
    assert main[1] == thread[1] == policy


def test_more_pinned_workers_than_cpus_is_refused_before_anything_starts(tmp_path):
    cpus = len(os.sched_getaffinity(0))
    assert can_pin(cpus) and not can_pin(cpus + 1)
    topology = Topology(tmp_path / "topology", workers=cpus + 1, pin_workers=True)
    with pytest.raises(TopologyError, match=f"{cpus + 1} pinned workers on {cpus} CPUs"):
        topology.up()
    assert topology.services == []
    assert not (tmp_path / "topology").exists()  # not even its directory
