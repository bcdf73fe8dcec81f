"""A minimal WebSocket relay in plain Python: the floor for a Python signaling process.

It speaks PeerJS's wire protocol, so the load generator drives it and the PeerJS server
the same way: a client connects to ``/...?id=ID&token=T&key=K`` and gets ``{"type":"OPEN"}``;
every JSON frame it sends with a ``dst`` is parsed, given ``src``, re-serialised and sent
to that client (nothing else: no auth, no state, no validation)::

    .venv/bin/python bench/relay.py --port 9001

Run by ``bench/signaling.py``; standalone for experiments.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

clients: dict[str, ServerConnection] = {}


async def handler(ws: ServerConnection) -> None:
    query = parse_qs(urlsplit(ws.request.path).query)
    peer_id = (query.get("id") or [""])[0]
    if not peer_id or peer_id in clients:
        await ws.close(4000, "id missing or taken")
        return
    clients[peer_id] = ws
    try:
        await ws.send('{"type":"OPEN"}')
        async for text in ws:
            message = json.loads(text)
            target = clients.get(message.get("dst"))
            if target is not None:
                message["src"] = peer_id
                with contextlib.suppress(ConnectionClosed):
                    await target.send(json.dumps(message))
    except (ConnectionClosed, ValueError):
        pass
    finally:
        if clients.get(peer_id) is ws:
            del clients[peer_id]


async def main(host: str, port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    # No permessage-deflate, as PeerJS's ws server; pings off, as PeerJS relies on heartbeats.
    async with serve(
        handler, host, port, compression=None, ping_interval=None, max_size=2**20, backlog=4096
    ):
        await stop


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(main(args.host, args.port))
