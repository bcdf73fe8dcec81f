"""Channel layers for fault tests: the real layers, with failures a test asks for.

Named in ``CHANNEL_LAYERS["default"]["BACKEND"]`` by the ``faulty_layer`` fixture; the test
then reaches the instance through ``channels.layers.get_channel_layer()`` and adds rules:
the message still goes through the real in-memory or Redis layer unless a rule stops it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from channels.exceptions import ChannelFull
from channels.layers import InMemoryChannelLayer
from channels_redis.core import RedisChannelLayer
from redis.exceptions import ConnectionError as RedisConnectionError

from directcall.redislayer import RedisPubSubLayer

Match = Callable[[str, dict[str, Any]], bool]


@dataclass
class Rule:
    """Sends that ``match`` fail with ``error`` (``times`` of them; None: all)."""

    match: Match
    error: Exception
    times: int | None = None
    hits: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def take(self, channel: str, message: dict[str, Any]) -> bool:
        if (self.times is not None and len(self.hits) >= self.times) or not self.match(
            channel, message
        ):
            return False
        self.hits.append((channel, message))
        return True


class FaultsMixin:
    """A layer whose ``send`` obeys ``rules`` and may be slow for some messages."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rules: list[Rule] = []
        self.delays: list[tuple[Match, float]] = []

    def fail(self, match: Match, times: int | None = 1, error: Exception | None = None) -> Rule:
        """Make matching sends raise (a stale pooled Redis connection, by default)."""
        rule = Rule(match, error or RedisConnectionError("Connection closed by server."), times)
        self.rules.append(rule)
        return rule

    def fill(self, match: Match, times: int | None = None) -> Rule:
        """Make matching sends find the channel full."""
        return self.fail(match, times, ChannelFull())

    def delay(self, match: Match, seconds: float) -> None:
        """Make matching sends take ``seconds`` before the message goes out (a slow Redis):
        a sender cancelled meanwhile never sends it."""
        self.delays.append((match, seconds))

    async def send(self, channel: str, message: dict[str, Any]) -> None:
        for match, seconds in self.delays:
            if match(channel, message):
                await asyncio.sleep(seconds)
        for rule in self.rules:
            if rule.take(channel, message):
                raise rule.error
        await super().send(channel, message)


class FaultyInMemoryLayer(FaultsMixin, InMemoryChannelLayer):
    """channels' in-memory layer with faults."""


class FaultyRedisLayer(FaultsMixin, RedisChannelLayer):
    """channels_redis's layer with faults."""


class FaultyPubSubLayer(FaultsMixin, RedisPubSubLayer):
    """directcall's pub/sub layer with faults."""


def state_to(registration_pk: int, status: str | None = None) -> Match:
    """Match ``dc.state`` messages to one registration (of one status, if given)."""

    def match(channel: str, message: dict[str, Any]) -> bool:
        return (
            message.get("type") == "dc.state"
            and message.get("registration") == registration_pk
            and (status is None or message["frame"]["status"] == status)
        )

    return match
