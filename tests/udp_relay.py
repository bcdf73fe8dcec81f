"""A UDP relay that delays packets: put in front of a TURN server, it adds latency and
jitter to every packet between the browsers and the server (this kernel has no netem).

    python -m tests.udp_relay --listen HOST:PORT --target HOST:PORT --control HOST:PORT

Each client address gets its own upstream socket, so the TURN server sees one 5-tuple per
client as it would without the relay. Every packet, both ways, waits ``delay`` ms plus a
uniform random ``0..jitter`` ms (so packets may overtake each other, as on a real path).
The settings change at run time: send ``{"delay": ms, "jitter": ms}`` as one UDP datagram
to the control port; it answers ``ok``. Prints ``ready`` once it listens.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


class Settings:
    """The current delay and jitter, in seconds."""

    def __init__(self) -> None:
        self.delay = 0.0
        self.jitter = 0.0

    def wait(self) -> float:
        return self.delay + random.uniform(0, self.jitter)


class Upstream(asyncio.DatagramProtocol):
    """One client's socket towards the target: what comes back goes to that client."""

    def __init__(self, relay: Relay, client: tuple[str, int]) -> None:
        self.relay = relay
        self.client = client
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.relay.later(lambda: self.relay.transport.sendto(data, self.client))


class Relay(asyncio.DatagramProtocol):
    """The listening side: a packet from a client goes to the target through its upstream."""

    def __init__(self, target: tuple[str, int], settings: Settings) -> None:
        self.target = target
        self.settings = settings
        self.upstreams: dict[tuple[str, int], Upstream] = {}
        self.pending: dict[tuple[str, int], list[bytes]] = {}
        self.opening: set[asyncio.Task] = set()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def later(self, send) -> None:
        wait = self.settings.wait()
        loop = asyncio.get_running_loop()
        if wait <= 0:
            send()
        else:
            loop.call_later(wait, send)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        upstream = self.upstreams.get(addr)
        if upstream is None:
            if addr in self.pending:
                self.pending[addr].append(data)
                return
            self.pending[addr] = [data]
            task = asyncio.ensure_future(self._open(addr))
            self.opening.add(task)
            task.add_done_callback(self.opening.discard)
            return
        self.later(lambda: upstream.transport.sendto(data))

    async def _open(self, client: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        _transport, upstream = await loop.create_datagram_endpoint(
            lambda: Upstream(self, client), remote_addr=self.target
        )
        self.upstreams[client] = upstream
        for data in self.pending.pop(client, []):
            self.later(lambda data=data: upstream.transport.sendto(data))


class Control(asyncio.DatagramProtocol):
    """``{"delay": ms, "jitter": ms}`` changes the settings; answered ``ok``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        values = json.loads(data)
        self.settings.delay = float(values.get("delay", 0)) / 1000
        self.settings.jitter = float(values.get("jitter", 0)) / 1000
        self.transport.sendto(b"ok", addr)


async def main(listen: str, target: str, control: str) -> None:
    """Relay until killed."""
    loop = asyncio.get_running_loop()
    settings = Settings()
    await loop.create_datagram_endpoint(
        lambda: Relay(_address(target), settings), local_addr=_address(listen)
    )
    await loop.create_datagram_endpoint(lambda: Control(settings), local_addr=_address(control))
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--control", required=True)
    args = parser.parse_args()
    try:
        asyncio.run(main(args.listen, args.target, args.control))
    except KeyboardInterrupt:
        sys.exit(0)
