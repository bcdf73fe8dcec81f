"""Rate limits: a token bucket (the per-connection flood limit), and fixed windows counted
in the shared cache (socket sign-ins per address and per cuid)."""

from __future__ import annotations

import time
from collections.abc import Callable

from .caching import count


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; each event takes one.

    Starts full, so a new connection may send ``burst`` frames at once and then ``rate``
    per second. Process-local and not thread-safe: one bucket belongs to one connection.
    The clock is injectable so that tests need no sleeps.
    """

    __slots__ = ("_clock", "_refilled_at", "_tokens", "burst", "rate")  # one per connection

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not (rate > 0 and burst >= 1):
            raise ValueError(f"A token bucket needs rate > 0 and burst >= 1, not {rate}, {burst}.")
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._tokens = self.burst
        self._refilled_at = clock()

    def _refill(self) -> None:
        now = self._clock()
        # max(): a clock that steps back (it should not, with monotonic) never drains tokens.
        elapsed = max(0.0, now - self._refilled_at)
        self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
        self._refilled_at = now

    @property
    def tokens(self) -> float:
        """Tokens available now (fractional while refilling)."""
        self._refill()
        return self._tokens

    def take(self) -> bool:
        """Take one token if there is one; False (and nothing taken) when the bucket is empty."""
        self._refill()
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True

    def wait(self) -> float:
        """Seconds until :meth:`take` can succeed (0 when it can now)."""
        self._refill()
        return max(0.0, (1 - self._tokens) / self.rate)


def within_rate(name: str, rate: tuple[int, int] | None, now: float | None = None) -> bool:
    """Count one event of ``name`` in the shared cache; False once ``rate`` is exceeded.

    ``rate`` is ``(count, seconds)`` (a :class:`directcall.conf.Rate`), or None for no
    limit. A fixed window, counted atomically by :func:`directcall.caching.count`, so
    every server process sees the same count (the invite rate works the same way).
    """
    if rate is None:
        return True
    limit, window = rate
    slot = int((time.time() if now is None else now) // window)
    return count(f"directcall:rate:{name}:{slot}", window + 1) <= limit
