"""Waiting for one kind of frame on a signaling socket while keeping the others in order.

Shared by the in-process client (tests/wsclient.py), the real-socket peers of the
multi-process tests and the soak benchmark's probe.
"""

from __future__ import annotations

import asyncio
from typing import Any


class FrameInbox:
    """A mixin: ``next(kind, **match)`` over ``_recv_frame``, keeping what did not match."""

    cuid: str
    inbox: list[dict[str, Any]]
    # What next() raises when the frame does not come (a test failure, or the soak's own).
    failure: type[Exception] = AssertionError

    async def _recv_frame(self, timeout: float) -> dict[str, Any] | None:
        """The next frame within ``timeout`` (TimeoutError otherwise), or None once closed."""
        raise NotImplementedError

    def _closed_detail(self) -> str:
        return "closed"

    def _refuses(self, frame: dict[str, Any]) -> bool:
        """Whether ``frame`` ends the wait at once instead of being kept."""
        return False

    async def next(self, kind: str, timeout: float = 5, **match: Any) -> dict[str, Any]:
        """The first frame of type ``kind`` whose fields include ``match``."""

        def fits(frame: dict[str, Any]) -> bool:
            return frame.get("type") == kind and all(frame.get(k) == v for k, v in match.items())

        for index, frame in enumerate(self.inbox):
            if fits(frame):
                return self.inbox.pop(index)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (remaining := deadline - loop.time()) > 0:
            try:
                frame = await self._recv_frame(remaining)
            except TimeoutError:
                break
            if frame is None:
                raise self.failure(f"{self.cuid}: {self._closed_detail()} awaiting {kind}")
            if fits(frame):
                return frame
            if self._refuses(frame):
                raise self.failure(f"{self.cuid}: {frame.get('code')} awaiting {kind}")
            self.inbox.append(frame)
        raise self.failure(f"{self.cuid}: no {kind} {match} in {timeout}s; got {self.inbox}")
