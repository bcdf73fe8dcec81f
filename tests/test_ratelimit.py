"""The token bucket behind the per-connection flood limit, on a fake clock."""

from __future__ import annotations

import pytest

from directcall.ratelimit import TokenBucket


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def takes(bucket: TokenBucket, attempts: int) -> int:
    """How many of ``attempts`` consecutive takes succeed."""
    return sum(bucket.take() for _ in range(attempts))


def test_starts_full_and_allows_the_burst_at_once():
    bucket = TokenBucket(rate=5, burst=10, clock=FakeClock())
    assert takes(bucket, 15) == 10
    assert not bucket.take()


def test_refills_at_the_rate():
    clock = FakeClock()
    bucket = TokenBucket(rate=5, burst=10, clock=clock)
    takes(bucket, 10)
    clock.advance(0.1)  # half a token
    assert not bucket.take()
    clock.advance(0.1)  # one token
    assert bucket.take()
    assert not bucket.take()
    clock.advance(1)  # five tokens
    assert takes(bucket, 10) == 5


def test_never_holds_more_than_the_burst():
    clock = FakeClock()
    bucket = TokenBucket(rate=50, burst=3, clock=clock)
    clock.advance(3600)
    assert bucket.tokens == 3
    assert takes(bucket, 10) == 3


def test_a_refused_take_costs_nothing():
    clock = FakeClock()
    bucket = TokenBucket(rate=1, burst=1, clock=clock)
    assert bucket.take()
    for _ in range(100):
        assert not bucket.take()
    clock.advance(1)
    assert bucket.take()


def test_sustained_rate_over_time():
    clock = FakeClock()
    bucket = TokenBucket(rate=2, burst=4, clock=clock)
    allowed = 0
    for _ in range(1000):  # 10 attempts per second for 100 s
        allowed += bucket.take()
        clock.advance(0.1)
    assert 4 + 2 * 99 <= allowed <= 4 + 2 * 100


def test_wait_says_when_the_next_take_succeeds():
    clock = FakeClock()
    bucket = TokenBucket(rate=4, burst=1, clock=clock)
    assert bucket.wait() == 0
    bucket.take()
    assert bucket.wait() == pytest.approx(0.25)
    clock.advance(bucket.wait())
    assert bucket.take()


def test_a_clock_stepping_back_drains_nothing():
    clock = FakeClock()
    bucket = TokenBucket(rate=1, burst=2, clock=clock)
    bucket.take()
    clock.advance(-50)
    assert bucket.tokens == 1
    assert bucket.take()


def test_fractional_rate():
    clock = FakeClock()
    bucket = TokenBucket(rate=0.5, burst=1, clock=clock)
    assert bucket.take()
    clock.advance(1.5)
    assert not bucket.take()
    clock.advance(0.5)
    assert bucket.take()


@pytest.mark.parametrize("rate,burst", [(0, 1), (-1, 1), (1, 0)])
def test_refuses_a_bucket_that_could_never_fill(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate=rate, burst=burst)


def test_uses_the_monotonic_clock_by_default():
    bucket = TokenBucket(rate=0.001, burst=2)  # no refill within the test's lifetime
    assert takes(bucket, 3) == 2
