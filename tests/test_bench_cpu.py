"""The benchmarks' CPU meter (``bench/loadgen.py``) counts threads that come and go.

Django's ASGI handler runs each HTTP request in a thread of its own, which starts and ends
between two samples of the meter: neither sample sees it. A real process here burns CPU
only in such threads.
"""

from __future__ import annotations

import subprocess
import sys

from bench.loadgen import CpuMeter

BURNER = """
import sys, threading, time
def burn():
    end = time.thread_time() + 0.03
    while time.thread_time() < end:
        pass
print("ready", flush=True)
sys.stdin.readline()
for _ in range(20):
    worker = threading.Thread(target=burn)
    worker.start()
    worker.join()
print("done", flush=True)
sys.stdin.readline()
"""


def measure(source: str) -> dict:
    """The meter's reading of a child running ``source`` between its two samples."""
    child = subprocess.Popen(
        [sys.executable, "-c", source], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout.readline().strip() == "ready"
        meter = CpuMeter([child.pid], None)
        before = meter.sample()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "done"
        return CpuMeter.delta(before, meter.sample())
    finally:
        child.stdin.write("end\n")
        child.stdin.flush()
        child.wait(30)


def test_threads_that_start_and_end_between_samples_are_counted():
    measured = measure(BURNER)
    # 20 threads × 30 ms of CPU each; none alive at either sample.
    assert measured["cpu_s"] >= 0.4
    assert measured["precise"] is False and measured["main_cpu_s"] is None


def test_threads_alive_at_both_samples_are_counted_to_the_nanosecond():
    measured = measure(BURNER.replace("for _ in range(20):", "for _ in range(0):"))
    assert measured["precise"] is True and measured["main_cpu_s"] is not None
