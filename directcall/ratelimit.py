"""A token bucket: a sustained rate with a burst above it (the per-connection flood limit)."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """``burst`` tokens, refilled at ``rate`` per second; each event takes one.

    Starts full, so a new connection may send ``burst`` frames at once and then ``rate``
    per second. Process-local and not thread-safe: one bucket belongs to one connection.
    The clock is injectable so that tests need no sleeps.
    """

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
