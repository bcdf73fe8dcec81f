"""An in-memory channel layer whose cost per message does not grow with the connections.

channels' ``InMemoryChannelLayer`` runs ``_clean_expired()`` — a pass over every channel
of the process and every member of every group — in each ``receive()``; every connected
consumer has a channel, so with 5 000 idle connections a relayed frame cost 7.6 ms instead
of 0.3 ms (docs/performance.md). This one does that pass at most once per
``clean_interval`` seconds (default 1): messages and group memberships still expire, up to
that much later than their ``expiry`` / ``group_expiry`` (60 s and a day by default), and
the pass costs O(connections) per second instead of per message.

Use it for a single process (the embedded default)::

    CHANNEL_LAYERS = {"default": {"BACKEND": "directcall.layers.InMemoryChannelLayer"}}

Between connections of one process, directcall does not use the channel layer at all for
its own messages (the same-process path, :mod:`directcall.transport`); the layer still
carries what goes to groups (revocations) and to channels that have just closed.
"""

from __future__ import annotations

import time
from typing import Any

from channels.layers import InMemoryChannelLayer as ChannelsInMemoryChannelLayer


class InMemoryChannelLayer(ChannelsInMemoryChannelLayer):
    """channels' in-memory layer, expiring messages and group members once a second."""

    def __init__(self, *args: Any, clean_interval: float = 1.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.clean_interval = clean_interval
        self._cleaned_at = 0.0

    def _clean_expired(self) -> None:
        now = time.monotonic()
        if now - self._cleaned_at < self.clean_interval:
            return
        self._cleaned_at = now
        super()._clean_expired()
