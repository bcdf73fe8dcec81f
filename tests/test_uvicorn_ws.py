"""directcall's uvicorn WebSocket protocol (directcall/uvicorn_ws.py), over real sockets.

A real uvicorn server runs in the test's event loop, configured as its command line would
be (``ws="directcall.uvicorn_ws:LeanWebSocketProtocol"``, imported by name as ``uvicorn
--ws`` does), serving the demo's ASGI application; the clients are ``websockets``
clients, or a raw socket speaking websockets' sans-I/O client protocol where a client must
misbehave (never answer a ping, vanish without a close frame). No mocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import inspect
import json
import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn
from channels.db import database_sync_to_async
from websockets.asyncio.client import ClientConnection, connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.frames import Frame, Opcode
from websockets.uri import parse_uri

from directcall import protocol, tokens

from .wsclient import ANSWER, CANDIDATE, OFFER, WS_PATH, Client, answered_call

LEAN = "directcall.uvicorn_ws:LeanWebSocketProtocol"

pytestmark = [pytest.mark.django_db(transaction=True)]
memory_only = pytest.mark.parametrize("channel_backend", ["memory"], indirect=True)


# -- a uvicorn server in this event loop -----------------------------------------------------


class Served:
    def __init__(self, server: uvicorn.Server, task: asyncio.Task, port: int) -> None:
        self.server = server
        self.task = task
        self.port = port
        self.url = f"ws://127.0.0.1:{port}{WS_PATH}"
        self.origin = f"http://127.0.0.1:{port}"

    def protocols(self) -> list[Any]:
        from directcall.uvicorn_ws import LeanWebSocketProtocol

        return [p for p in self.server.server_state.connections if type(p) is LeanWebSocketProtocol]

    async def stop(self) -> None:
        self.server.should_exit = True
        await asyncio.wait_for(self.task, 30)


async def serve(app: Any, **options: Any) -> Served:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    options.setdefault("ws", LEAN)
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        log_level="warning",
        **options,
    )
    server = uvicorn.Server(config)
    task = asyncio.ensure_future(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    return Served(server, task, port)


@contextlib.asynccontextmanager
async def served_site(**options: Any) -> AsyncIterator[Served]:
    from example_project.asgi import application

    served = await serve(application, **options)
    try:
        yield served
    finally:
        await served.stop()


@pytest.fixture
async def site(signaling) -> AsyncIterator[Served]:
    """The demo's ASGI application on uvicorn with the lean protocol."""
    async with served_site() as served:
        yield served


# -- clients -----------------------------------------------------------------------------------


class SocketClient(Client):
    """tests/wsclient.py's client over a real ``websockets`` connection."""

    def __init__(self, ws: ClientConnection, cuid: str, registration_pk: int) -> None:
        super().__init__(ws, cuid, registration_pk)  # type: ignore[arg-type]
        self.ws = ws

    async def send(self, **frame: Any) -> None:
        await self.ws.send(json.dumps(frame))

    async def send_raw(self, text: str | None = None, data: bytes | None = None) -> None:
        await self.ws.send(text if text is not None else data)  # type: ignore[arg-type]

    async def _recv_frame(self, timeout: float) -> dict[str, Any] | None:
        try:
            text = await asyncio.wait_for(self.ws.recv(), timeout)
        except ConnectionClosed:
            self.closed_code = self.ws.close_code
            return None
        frame = json.loads(text)
        self._keep(frame)
        return frame

    async def close(self, code: int = 1000) -> None:
        await self.ws.close(code)


class SocketClients:
    def __init__(self, site: Served) -> None:
        self.site = site
        self.opened: list[SocketClient] = []

    async def anonymous(self, **options: Any) -> SocketClient:
        ws = await connect(self.site.url, origin=self.site.origin, compression=None, **options)
        client = SocketClient(ws, "anonymous", 0)
        self.opened.append(client)
        return client

    async def sign_in(self, registration: Any, **options: Any) -> SocketClient:
        client = await self.anonymous(**options)
        client.cuid, client.registration_pk = registration.cuid, registration.pk
        await client.authenticate(registration)
        return client

    async def close_all(self) -> None:
        for client in self.opened:
            await client.ws.close()


@pytest.fixture
async def sockets(site) -> AsyncIterator[SocketClients]:
    opened = SocketClients(site)
    yield opened
    await opened.close_all()


class RawClient:
    """A client on a plain socket, framing with websockets' sans-I/O ``ClientProtocol``: it
    reads only when told to (pings stay unanswered) and can vanish without a close frame."""

    def __init__(self, site: Served) -> None:
        self.site = site
        self.conn = ClientProtocol(parse_uri(site.url), origin=site.origin)  # type: ignore[arg-type]
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter
        self.passed: list[Frame] = []  # frames text() read past (a ping before "ready")

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.site.port)
        self.conn.send_request(self.conn.connect())
        await self._flush()
        while self.conn.handshake_exc is None and self.conn.state.name == "CONNECTING":
            self.conn.receive_data(await self.reader.read(65536))
        assert self.conn.handshake_exc is None, self.conn.handshake_exc
        self.events = [e for e in self.conn.events_received() if isinstance(e, Frame)]

    async def sign_in(self, registration: Any, device: str) -> None:
        """Open the socket and sign in as ``registration`` from ``device``; wait for ``ready``."""
        await self.open()
        token = tokens.issue(registration.account_id, registration.pk, registration.cuid, device)
        await self.send(type="auth", token=token)
        await self.text("ready")

    async def closed_for_a_missing_pong(self) -> None:
        """Read, pings unanswered, until the server closes: it pinged, then closed with 1011."""
        seen: list[Frame] = list(self.passed)  # a slow sign-in may have read the first ping
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while not any(f.opcode is Opcode.CLOSE for f in seen):
            assert loop.time() < deadline
            seen += await self.frames(10)
        assert any(f.opcode is Opcode.PING for f in seen)
        assert self.conn.close_rcvd is not None and self.conn.close_rcvd.code == 1011

    async def _flush(self) -> None:
        for data in self.conn.data_to_send():
            if data:
                self.writer.write(data)
        await self.writer.drain()

    async def send(self, **frame: Any) -> None:
        self.conn.send_text(json.dumps(frame).encode())
        await self._flush()

    async def frames(self, timeout: float = 5) -> list[Frame]:
        """Read once (waiting up to ``timeout``); the frames it carried, pings unanswered.
        Frames already read and not handed out yet come first, without a read."""
        if self.events:
            got, self.events = self.events, []
            return got
        data = await asyncio.wait_for(self.reader.read(65536), timeout)
        if data:
            self.conn.receive_data(data)
        else:
            self.conn.receive_eof()
        got, self.events = self.events + list(self.conn.events_received()), []
        return [e for e in got if isinstance(e, Frame)]

    async def text(self, kind: str, timeout: float = 5) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            got = await self.frames(max(0.01, deadline - loop.time()))
            for index, frame in enumerate(got):
                if frame.opcode is Opcode.TEXT and json.loads(frame.data)["type"] == kind:
                    self.events = got[index + 1 :] + self.events  # read by the next frames()
                    return json.loads(frame.data)
                self.passed.append(frame)

    def vanish(self) -> None:
        """Reset the TCP connection: no close frame, no FIN."""
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        self.writer.transport.abort()


async def online(registration: Any) -> bool:
    from directcall import presence

    found = await database_sync_to_async(presence.lookup)(
        registration.account_id, registration.cuid
    )
    return found is not None


async def until(condition: Any, timeout: float = 10) -> None:
    """Wait until ``await condition()`` is true (bounded)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not await condition():
        assert loop.time() < deadline, "the condition did not come true"
        await asyncio.sleep(0.02)


# -- directcall over the lean protocol ---------------------------------------------------------


async def test_a_call_with_relayed_frames(people, sockets, site):
    jane = await sockets.sign_in(people["tutor_jane"])
    sam = await sockets.sign_in(people["student_sam"])
    call_id = await answered_call(jane, sam)
    for n in range(50):
        candidate = dict(
            CANDIDATE, candidate=f"candidate:{n} 1 udp 1 127.0.0.1 {5000 + n} typ host"
        )
        await jane.send(type="candidates", call_id=call_id, candidates=[candidate])
    relayed = [await sam.next("candidates", call_id=call_id) for _ in range(50)]
    assert [r["candidates"][0]["candidate"].split()[0] for r in relayed] == [
        f"candidate:{n}" for n in range(50)
    ]
    await sam.send(type="renegotiate", call_id=call_id, sdp_type="answer", sdp=ANSWER)
    assert (await jane.next("renegotiate", call_id=call_id))["sdp"] == ANSWER
    await sam.send(type="hangup", call_id=call_id)
    over = await jane.next("state", call_id=call_id, status="over")
    assert over["reason"] == "user_hangup"
    await sam.next("state", call_id=call_id, status="over")
    # Every piece of state of the two sockets lives in the protocol's slots.
    assert len(site.protocols()) == 2
    assert all(vars(p) == {} for p in site.protocols())


@memory_only
async def test_websocket_pings_and_close_codes(people, sockets):
    jane = await sockets.sign_in(people["tutor_jane"])
    latency = await (await jane.ws.ping())  # a protocol-level ping, answered by the server
    assert latency >= 0
    await jane.alive()  # the application's own ping frame
    # A frame over the application's pre-sign-in limit: an error frame, then close 1009.
    stranger = await sockets.anonymous()
    await stranger.send_raw("{" * (protocol.MAX_AUTH_FRAME_BYTES + 1))
    assert (await stranger.next("error"))["code"] == "ERR_FRAME_TOO_LARGE"
    assert await stranger.closed() == 1009
    # A bad token: the application's own close code reaches the client.
    bad = await sockets.anonymous()
    await bad.send(type="auth", token="not-a-token")
    assert (await bad.next("error"))["code"] == "ERR_INVALID_TOKEN"
    assert await bad.closed() == protocol.CLOSE_AUTH_FAILED
    # logout(): the client's close 1000 ends the session at once.
    await jane.close(1000)
    assert jane.ws.close_code == 1000
    await until(lambda: _not(online(people["tutor_jane"])))
    sam = await sockets.sign_in(people["student_sam"])
    await sam.send(type="invite", ref="a", receiver="tutor_jane", context="hi", sdp=OFFER)
    assert (await sam.next("error", ref="a"))["code"] == 404


async def _not(awaitable: Any) -> bool:
    return not await awaitable


@memory_only
async def test_a_foreign_origin_is_told_and_closed(sockets, site):
    stranger = SocketClient(
        await connect(site.url, origin="https://elsewhere.example", compression=None), "x", 0
    )
    sockets.opened.append(stranger)
    assert (await stranger.next("error"))["code"] == "ERR_ORIGIN_NOT_ALLOWED"
    assert await stranger.closed() == 4010
    await until(lambda: _true(site.protocols() == []))


async def test_a_handshake_refused_by_the_application_is_403():
    async def app(scope, receive, send):
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.close"})
        assert (await receive())["type"] == "websocket.disconnect"

    served = await serve(app)
    try:
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"ws://127.0.0.1:{served.port}/", compression=None)
        assert refused.value.response.status_code == 403
        await until(lambda: _true(served.protocols() == []))
    finally:
        await served.stop()


@memory_only
async def test_a_client_that_vanishes_is_cleaned_up(people, sockets, site):
    jane = await sockets.sign_in(people["tutor_jane"])
    raw = RawClient(site)
    await raw.sign_in(people["student_sam"], "dev-raw01")
    assert await online(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await raw.text("incoming")
    await raw.send(type="accept", call_id=call_id, sdp=ANSWER)
    await jane.next("state", call_id=call_id, status="answered")
    raw.vanish()
    # The server sees the reset, the application its disconnect: the peer is reported
    # gone, the call ends after the reconnection grace, the presence is released and the
    # socket is gone from the server.
    await jane.next("peer", call_id=call_id, connected=False)
    state = await jane.next("state", call_id=call_id, status="over", timeout=10)
    assert state["reason"] == "connection_lost"
    await until(lambda: _not(online(people["student_sam"])))
    await until(lambda: _true(len(site.protocols()) == 1))


async def _true(value: bool) -> bool:
    return value


@memory_only
async def test_an_unanswered_keepalive_ping_closes_the_socket(people, signaling):
    async with served_site(ws_ping_interval=0.2, ws_ping_timeout=0.3) as site:
        raw = RawClient(site)
        await raw.sign_in(people["tutor_jane"], "dev-raw02")
        await raw.closed_for_a_missing_pong()
        await until(lambda: _not(online(people["tutor_jane"])))
        await until(lambda: _true(site.protocols() == []))


@memory_only
async def test_a_client_that_talks_is_not_pinged_and_one_gone_silent_is(people, signaling):
    interval = 0.3
    async with served_site(ws_ping_interval=interval, ws_ping_timeout=0.3) as site:
        raw = RawClient(site)
        await raw.sign_in(people["tutor_jane"], "dev-raw03")
        loop = asyncio.get_running_loop()
        talking_until = loop.time() + 2.1  # seven ping intervals
        seen: list[Frame] = []
        last_sent = loop.time()
        while loop.time() < talking_until:  # the application's ping every 0.1 s
            # A stall of this test's own (a loaded machine) may leave the socket silent for
            # a ping interval: a ping after one is the server's right.
            stalled = loop.time() - last_sent >= interval * 0.75
            last_sent = loop.time()
            await raw.send(type="ping")
            while not any(f.opcode is Opcode.TEXT and b'"pong"' in f.data for f in seen):
                seen += await raw.frames(5)
            assert not any(f.opcode is Opcode.CLOSE for f in seen), seen
            assert stalled or not any(f.opcode is Opcode.PING for f in seen), seen
            seen = []
            await asyncio.sleep(0.1)
        await raw.closed_for_a_missing_pong()  # silent now: pinged, closed without a pong


@memory_only
async def test_a_message_over_the_servers_max_size_closes_with_1009(people, signaling):
    async with served_site(ws_max_size=70_000) as site:
        clients = SocketClients(site)
        jane = await clients.sign_in(people["tutor_jane"], max_size=None)
        assert await online(people["tutor_jane"])
        await jane.send_raw("x" * 70_001)
        assert await jane.closed() == 1009
        await until(lambda: _not(online(people["tutor_jane"])))
        await until(lambda: _true(site.protocols() == []))


@memory_only
async def test_server_shutdown_closes_sockets_with_1012(people, signaling):
    async with served_site() as site:
        clients = SocketClients(site)
        jane = await clients.sign_in(people["tutor_jane"])
        site.server.should_exit = True
        assert await jane.closed(timeout=10) == 1012
        await asyncio.wait_for(site.task, 30)
    await until(lambda: _not(online(people["tutor_jane"])))


# -- the ASGI contract, with small applications ------------------------------------------------


async def test_backpressure_both_ways():
    """A slow reader holds the application's send(); a slow application holds the reads."""
    sent: list[int] = []
    received: list[str] = []
    release = asyncio.Event()
    chunk = "x" * 65536

    async def app(scope, receive, send):
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        for n in range(200):
            await send({"type": "websocket.send", "text": f"{n:04d}" + chunk})
            sent.append(n)
        await release.wait()  # the client floods meanwhile; nobody receives
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            received.append(message["text"])

    served = await serve(app)
    try:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", served.port))
        sock.setblocking(False)
        ws = await connect(
            f"ws://127.0.0.1:{served.port}/", sock=sock, compression=None, max_queue=1
        )
        (protocol_,) = served.protocols()
        # The client does not read: the server's buffer fills, send() waits.
        await until(lambda: _true(protocol_.write_paused))
        assert len(sent) < 200
        got = [await asyncio.wait_for(ws.recv(), 10) for _ in range(200)]
        assert [int(m[:4]) for m in got] == list(range(200))
        await until(lambda: _true(len(sent) == 200))
        # The application does not receive: the server stops reading after one message.
        for n in range(300):
            await asyncio.wait_for(ws.send(f"m{n}"), 10)
        await until(lambda: _true(protocol_.read_paused))
        release.set()
        await until(lambda: _true(len(received) == 300))
        assert received == [f"m{n}" for n in range(300)]
        await ws.close()
    finally:
        await served.stop()


async def test_an_http_response_instead_of_the_handshake():
    async def app(scope, receive, send):
        assert (await receive())["type"] == "websocket.connect"
        assert "websocket.http.response" in scope["extensions"]
        await send(
            {
                "type": "websocket.http.response.start",
                "status": 401,
                "headers": [(b"content-type", b"text/plain")],
            }
        )
        await send({"type": "websocket.http.response.body", "body": b"sign in", "more_body": True})
        await send({"type": "websocket.http.response.body", "body": b" first"})
        assert (await receive())["type"] == "websocket.disconnect"

    served = await serve(app)
    try:
        with pytest.raises(InvalidStatus) as refused:
            await connect(f"ws://127.0.0.1:{served.port}/", compression=None)
        assert refused.value.response.status_code == 401
        assert refused.value.response.body == b"sign in first"
    finally:
        await served.stop()


@pytest.mark.parametrize("http", ["httptools", "h11"])
async def test_the_scope(http):
    """Whichever of uvicorn's HTTP implementations hands the upgraded socket over."""
    scopes: list[dict[str, Any]] = []

    async def app(scope, receive, send):
        scopes.append(scope)
        await receive()
        await send({"type": "websocket.accept", "subprotocol": scope["subprotocols"][-1] or None})
        message = await receive()
        await send({"type": "websocket.send", "bytes": message["bytes"][::-1]})
        await receive()

    served = await serve(app, root_path="/site", http=http)
    try:
        url = f"ws://127.0.0.1:{served.port}/a%20b/c?x=1&y=%C3%A9"
        async with connect(url, subprotocols=["one", "two"], compression=None) as ws:
            assert ws.subprotocol == "two"
            await ws.send(b"\x01\x02\x03")
            assert await ws.recv() == b"\x03\x02\x01"
        async with connect(url, subprotocols=["one", "two"], compression=None) as ws:
            pass
        scope = scopes[0]
        assert scope["type"] == "websocket" and scope["scheme"] == "ws"
        assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
        assert scope["path"] == "/site/a b/c" and scope["raw_path"] == b"/site/a%20b/c"
        assert scope["root_path"] == "/site" and scope["query_string"] == b"x=1&y=%C3%A9"
        assert list(scope["subprotocols"]) == ["one", "two"]
        assert scope["server"] == ("127.0.0.1", served.port)
        assert scope["client"][0] == "127.0.0.1"
        headers = dict(scope["headers"])
        assert headers[b"host"] == f"127.0.0.1:{served.port}".encode()
        assert headers[b"sec-websocket-protocol"] == b"one, two" and b"sec-websocket-key" in headers
        assert all(isinstance(n, bytes) and isinstance(v, bytes) for n, v in scope["headers"])
        # Two connections: their own key, the same shared pairs for the same values.
        second = dict(scopes[1]["headers"])
        assert second[b"sec-websocket-key"] != headers[b"sec-websocket-key"]
        assert scope["state"] == {} and scope["state"] is not scopes[1]["state"]
    finally:
        await served.stop()


# -- uvicorn's code the protocol relies on -----------------------------------------------------

# sha256 of the source of uvicorn 0.54's WebSocketsSansIOProtocol. LeanWebSocketProtocol
# (directcall/uvicorn_ws.py) inherits its keepalive, ping, framing and error-response code,
# replaces the rest with its own copies, and sets every attribute the inherited methods
# read. When uvicorn changes the class, read the new code against the subclass, carry over
# what matters (a new attribute goes in __slots__ and __init__), widen the uvicorn pin in
# pyproject.toml, then record the new hash here.
UVICORN_SANSIO_SOURCE = "0bbcec98938432f71b93ca20eea63487298f4650159242db8526a6f664902997"

# Attributes of the parent's __init__ the subclass does without (its replacements).
DROPPED = {"queue", "writable", "asgi_version", "close_timeout"}


def test_uvicorns_parent_class_is_the_one_the_subclass_was_written_against():
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    source = inspect.getsource(WebSocketsSansIOProtocol)
    assert hashlib.sha256(source.encode()).hexdigest() == UVICORN_SANSIO_SOURCE, (
        "uvicorn changed WebSocketsSansIOProtocol: directcall.uvicorn_ws.LeanWebSocketProtocol "
        "subclasses it and relies on its attributes. Read the new code, carry over what "
        "matters, then record the new hash in this test."
    )


def test_every_attribute_the_parent_uses_has_a_slot():
    from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

    from directcall.uvicorn_ws import LeanWebSocketProtocol

    source = inspect.getsource(WebSocketsSansIOProtocol)
    used = set(re.findall(r"self\.([a-z_]+) *(?::[^=\n]*)?=[^=]", source))
    slots = set(LeanWebSocketProtocol.__slots__)
    assert used - DROPPED - {"request"} <= slots, sorted(used - DROPPED - slots)
    # uvicorn's upgrade calls the class with these keywords.
    params = inspect.signature(LeanWebSocketProtocol).parameters
    assert {"config", "server_state", "app_state"} <= set(params)


async def test_a_cancelled_receive_loses_no_message():
    """channels' consumers read ``receive()`` in a task they may cancel; two readers at once
    are allowed too, and cancelling one leaves the other waiting."""
    got: list[str] = []
    done = asyncio.Event()

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        lone = asyncio.ensure_future(receive())
        await asyncio.sleep(0)
        lone.cancel()
        first, second = asyncio.ensure_future(receive()), asyncio.ensure_future(receive())
        await asyncio.sleep(0)
        first.cancel()
        await send({"type": "websocket.send", "text": "ready"})
        got.append((await second)["text"])
        got.append((await receive())["text"])
        done.set()
        await receive()

    served = await serve(app)
    try:
        async with connect(f"ws://127.0.0.1:{served.port}/", compression=None) as ws:
            assert await ws.recv() == "ready"
            await ws.send("one")
            await ws.send("two")
            await asyncio.wait_for(done.wait(), 10)
        assert got == ["one", "two"]
    finally:
        await served.stop()


# -- differential: the same hostile client against uvicorn's class and the lean one -----------

PARENT = "websockets-sansio"


def _frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
    """A client frame built by hand (masked with a zero key: the payload reads as is)."""
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    n = len(payload)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + b"\x00\x00\x00\x00" + payload


class Hostile:
    """A raw socket: websockets' ClientProtocol does the handshake and reads the server's
    frames (answering its close frame), the test writes whatever bytes it likes."""

    def __init__(self, port: int, path: str = "/", **options: Any) -> None:
        self.conn = ClientProtocol(parse_uri(f"ws://127.0.0.1:{port}{path}"), **options)
        self.port = port
        self.seen: list[Any] = []

    async def open(self, extra: list[tuple[str, str]] = (), early: bytes = b"") -> Any:
        """The handshake, with ``extra`` headers and ``early`` bytes in the same write."""
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        request = self.conn.connect()
        extra_agents = sum(name == "User-Agent" for name, _ in extra) > 1
        for name, value in extra:
            if name in ("Host", "Sec-WebSocket-Key", "Sec-WebSocket-Version", "Upgrade") or (
                name == "User-Agent" and name in request.headers and not extra_agents
            ):
                del request.headers[name]
            request.headers[name] = value
        self.conn.send_request(request)
        self.writer.write(b"".join(self.conn.data_to_send()) + early)
        await self.writer.drain()
        while self.conn.handshake_exc is None and self.conn.state.name == "CONNECTING":
            data = await asyncio.wait_for(self.reader.read(65536), 10)
            if not data:
                self.conn.receive_eof()
                break
            self.conn.receive_data(data)
        self._collect()
        return self.conn.handshake_exc

    async def _flush(self) -> None:
        for data in self.conn.data_to_send():
            with contextlib.suppress(OSError):
                if data:
                    self.writer.write(data)
                elif self.writer.can_write_eof():
                    self.writer.write_eof()
        with contextlib.suppress(OSError):
            await self.writer.drain()

    def _collect(self) -> None:
        for event in self.conn.events_received():
            if isinstance(event, Frame):
                self.seen.append((event.opcode.name, bytes(event.data), event.fin))
            else:
                headers = sorted(
                    (k.lower(), v)
                    for k, v in event.headers.raw_items()
                    if k.lower() not in ("date", "sec-websocket-accept")
                )
                body = getattr(event, "body", b"")
                self.seen.append(("HTTP", getattr(event, "status_code", None), headers, body))

    def write(self, data: bytes) -> None:
        self.writer.write(data)

    async def until_closed(self) -> list[Any]:
        """Read to EOF, answering the server's close; everything the server sent."""
        while True:
            try:
                data = await asyncio.wait_for(self.reader.read(65536), 15)
            except ConnectionError:
                data = b""
            if data:
                self.conn.receive_data(data)
            else:
                self.conn.receive_eof()
            self._collect()
            await self._flush()
            if not data:
                break
        self.writer.close()
        close = self.conn.close_rcvd
        self.seen.append(("closed", close and (close.code, close.reason)))
        return self.seen


async def differential(make_app: Any, scenario: Any, **options: Any) -> tuple[Any, Any]:
    """Run ``scenario(served)`` against a server with uvicorn's websockets-sansio protocol,
    then with the lean one, the application made afresh by ``make_app(log)``: the client's
    view and the application's log must be the same. Returns the lean run's."""
    runs = []
    for ws in (PARENT, LEAN):
        log: list[Any] = []
        served = await serve(make_app(log), ws=ws, **options)
        try:
            seen = await scenario(served)
            state = served.server.server_state
            await until(lambda s=state: _true(not s.connections and not s.tasks))
        finally:
            await served.stop()
        runs.append((seen, log))
    assert runs[1] == runs[0]
    return runs[1]


def recording(body: Any) -> Any:
    """An application that logs what it receives and what its sends raise."""

    def make_app(log: list[Any]) -> Any:
        async def receive_(receive: Any) -> Any:
            message = await receive()
            log.append(dict(message))
            return message

        async def send_(send: Any, message: Any) -> None:
            try:
                await send(message)
            except Exception as exc:  # what the application sees is the point
                log.append(("raised", type(exc).__name__, str(exc)))

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await body(scope, lambda: receive_(receive), lambda m: send_(send, m), log)

        return app

    return make_app


async def _echo(scope: Any, receive: Any, send: Any, log: list[Any]) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        await send({"type": "websocket.send", **{k: v for k, v in message.items() if k != "type"}})


def _ping_frame(payload: bytes = b"p") -> bytes:
    return _frame(0x9, payload)


HOSTILE_FRAMES = {
    "fragmented text and binary with pings between": [
        _frame(0x1, b"he", fin=False),
        _ping_frame(),
        _frame(0x0, "ll\u00e9".encode()[:3], fin=False),
        _frame(0x0, "ll\u00e9".encode()[3:] + b" o"),
        _frame(0x2, b"\x00\x01", fin=False),
        _ping_frame(b"q"),
        _frame(0x0, b"\x02"),
        _frame(0x8, (1000).to_bytes(2, "big") + b"bye"),
    ],
    "continuation without a start": [_frame(0x0, b"x")],
    "a new message inside a fragmented one": [_frame(0x1, b"a", fin=False), _frame(0x1, b"b")],
    "a control frame over 125 bytes": [_frame(0x9, b"p" * 126)],
    "a fragmented control frame": [_frame(0x9, b"p", fin=False)],
    "invalid UTF-8": [_frame(0x1, b"ok"), _frame(0x1, b"\xff\xfe")],
    "invalid UTF-8 across fragments": [_frame(0x1, b"\xc3", fin=False), _frame(0x0, b"(")],
    "a close code that may not be sent": [_frame(0x8, (1005).to_bytes(2, "big"))],
    "a close code out of range": [_frame(0x8, (999).to_bytes(2, "big"))],
    "a one-byte close payload": [_frame(0x8, b"\x03")],
    "a close reason that is not UTF-8": [_frame(0x8, (1000).to_bytes(2, "big") + b"\xff")],
    "two close frames": [_frame(0x8, (4000).to_bytes(2, "big")), _frame(0x8, b"")],
    "a frame after the close": [_frame(0x8, b""), _frame(0x1, b"late")],
    "reserved bits without an extension": [_frame(0x1, b"x", rsv1=True)],
    "a reserved opcode": [_frame(0x3, b"x")],
    "an unmasked frame": [b"\x81\x01x"],
    "many messages in one write": [_frame(0x1, str(n).encode()) for n in range(300)]
    + [_frame(0x8, (1001).to_bytes(2, "big"))],
}


@pytest.mark.parametrize("case", list(HOSTILE_FRAMES))
async def test_hostile_frames_are_met_as_uvicorn_meets_them(case):
    async def scenario(served: Served) -> list[Any]:
        port = served.port
        client = Hostile(port)
        assert await client.open() is None
        client.write(b"".join(HOSTILE_FRAMES[case]))
        return await client.until_closed()

    seen, log = await differential(recording(_echo), scenario)
    assert seen[-1][0] == "closed" and log[0] == {"type": "websocket.connect"}


async def _send_after_close(scope: Any, receive: Any, send: Any, log: list[Any]) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.close", "code": 4001, "reason": "done"})
    await send({"type": "websocket.close"})
    await send({"type": "websocket.send", "text": "late"})
    await receive()


async def _wrong_then_accept(scope: Any, receive: Any, send: Any, log: list[Any]) -> None:
    await receive()
    await send({"type": "websocket.send", "text": "too early"})  # raises: not accepted yet
    await send({"type": "websocket.accept", "subprotocol": "b", "headers": [(b"x-a", b"1")]})
    await send({"type": "websocket.accept"})  # raises: accepted already
    await send({"type": "websocket.send", "bytes": b"\x00"})
    await send({"type": "websocket.http.response.start", "status": 200})  # raises
    await receive()


async def _raise_before_accept(scope: Any, receive: Any, send: Any, log: list[Any]) -> None:
    await receive()
    raise ValueError("boom")


async def _return_before_accept(scope: Any, receive: Any, send: Any, log: list[Any]) -> None:
    await receive()


async def _return_without_close(scope: Any, receive: Any, send: Any, log: list[Any]) -> None:
    await receive()
    await send({"type": "websocket.accept", "headers": [(b"Set-Cookie", b"a=b")]})
    await send({"type": "websocket.send", "text": "bye"})


async def _raise_after_accept(scope: Any, receive: Any, send: Any, log: list[Any]) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    raise ValueError("boom")


async def _http_response(scope: Any, receive: Any, send: Any, log: list[Any]) -> None:
    await receive()
    await send({"type": "websocket.http.response.start", "status": 418, "headers": [(b"x", b"y")]})
    await send({"type": "websocket.accept"})  # raises: a response is under way
    await send({"type": "websocket.http.response.body", "body": b"tea", "more_body": True})
    await send({"type": "websocket.http.response.body", "body": b"pot"})
    await send({"type": "websocket.http.response.body", "body": b"again"})
    await receive()


async def _bad_status(scope: Any, receive: Any, send: Any, log: list[Any]) -> None:
    await receive()
    await send({"type": "websocket.http.response.start", "status": 99})
    await send({"type": "websocket.close"})
    await receive()


async def _close_while_receiving(scope: Any, receive: Any, send: Any, log: list[Any]) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": "go"})
    await receive()  # the client's close arrives while this waits
    for _ in range(20):  # receive() after the disconnect waits: nothing more comes
        await asyncio.sleep(0)
    late = asyncio.ensure_future(receive())
    for _ in range(20):
        await asyncio.sleep(0)
    log.append(("receive after disconnect done", late.done()))
    late.cancel()
    await send({"type": "websocket.send", "text": "after"})


async def _cancelled_before_accept(scope: Any, receive: Any, send: Any, log: list[Any]) -> None:
    await receive()
    raise asyncio.CancelledError  # as a middleware's own timeout may let it out


async def _cancelled_after_accept(scope: Any, receive: Any, send: Any, log: list[Any]) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    raise asyncio.CancelledError


APPS = {
    "CancelledError out of the application before accept": _cancelled_before_accept,
    "CancelledError out of the application after accept": _cancelled_after_accept,
    "send after close, close twice": _send_after_close,
    "a wrong message before accept, then accept": _wrong_then_accept,
    "raise before accept": _raise_before_accept,
    "return before accept": _return_before_accept,
    "return without close": _return_without_close,
    "raise after accept": _raise_after_accept,
    "an HTTP response instead of the handshake": _http_response,
    "a bad HTTP status": _bad_status,
    "the client closes while the app waits in receive()": _close_while_receiving,
}


@pytest.mark.parametrize("case", list(APPS))
async def test_the_application_is_met_as_uvicorn_meets_it(case):
    async def scenario(served: Served) -> list[Any]:
        port = served.port
        client = Hostile(port, subprotocols=["a", "b"])
        if await client.open() is None:
            while not client.seen or client.seen[-1][0] != "TEXT":
                if case != "the client closes while the app waits in receive()":
                    break
                client.conn.receive_data(await asyncio.wait_for(client.reader.read(65536), 10))
                client._collect()
            client.write(_frame(0x8, (1000).to_bytes(2, "big")))
        return await client.until_closed()

    await differential(recording(APPS[case]), scenario)


def _held_by_shared_caches() -> int:
    """Bytes of the strings the module-level caches hold."""
    from directcall import uvicorn_ws

    total = 0
    for cache in (uvicorn_ws._pairs, uvicorn_ws._names, uvicorn_ws._paths):
        for key, value in cache.items():
            keys = key if isinstance(key, tuple) else (key,)
            for item in (*keys, *(value if isinstance(value, tuple) else (value,))):
                total += len(item)
    return total


BROWSER = (  # a long one, as a mobile browser in an app's web view may send
    "Mozilla/5.0 (Linux; Android 14; SM-S928B Build/UP1A.231005.007; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/131.0.6778.135 Mobile Safari/537.36 Example/9.41.0"
)


async def test_the_shared_caches_hold_no_client_junk_and_stay_shared():
    """A client sending long distinct values in shared headers, long header names and long
    paths (websockets allows 128 lines of 8 KiB) neither makes the module hold megabytes for
    the process's life nor keeps later connections from sharing their common values."""
    scopes: list[dict[str, Any]] = []

    async def app(scope, receive, send):
        scopes.append(scope)
        await receive()
        await send({"type": "websocket.close"})

    served = await serve(app)
    try:
        for n in range(20):
            path = f"/{n}/" + "p" * 7000
            extra = [("User-Agent", f"{n}-{k}-" + "u" * 7000) for k in range(60)]
            extra += [(f"X-{n}-{k}-" + "n" * 7000, "v") for k in range(60)]
            client = Hostile(served.port, path=path)
            refused = await client.open(extra)
            assert refused is not None and refused.response.status_code == 403
            await client.until_closed()
        assert len(scopes) == 20
        held = _held_by_shared_caches()
        for _ in range(2):
            client = Hostile(served.port)
            await client.open(
                [("Host", "site.example"), ("User-Agent", BROWSER), ("Cookie", "a=b")]
            )
            await client.until_closed()
        assert len(scopes) == 22
        pairs = [[p for p in s["headers"] if p[0] == b"host"] for s in scopes[-2:]]
        assert pairs[0][0] is pairs[1][0], "a common value is no longer shared"
        agents = [[p for p in s["headers"] if p[0] == b"user-agent"] for s in scopes[-2:]]
        assert agents[0] == [(b"user-agent", BROWSER.encode())] and agents[0][0] is agents[1][0]
        assert held < 1_000_000
        # Only the listed headers' values are shared: a cookie is each connection's own.
        cookies = [[p for p in s["headers"] if p[0] == b"cookie"] for s in scopes[-2:]]
        assert cookies[0] == cookies[1] == [(b"cookie", b"a=b")]
        assert cookies[0][0] is not cookies[1][0]
        from directcall import uvicorn_ws

        assert all(name.lower() in uvicorn_ws._SHARED_VALUES for name, _ in uvicorn_ws._pairs)
    finally:
        await served.stop()


async def _scope_echo(scope: Any, receive: Any, send: Any, log: list[Any]) -> None:
    seen = {k: v for k, v in scope.items() if k != "state"}
    seen["subprotocols"] = list(seen["subprotocols"])  # any iterable (ASGI): () when none
    seen["client"] = seen["client"] and seen["client"][0]  # the ports differ between runs
    seen["server"] = seen["server"] and seen["server"][0]
    seen["headers"] = [
        (n, v) for n, v in seen["headers"] if n not in (b"host", b"sec-websocket-key")
    ]
    log.append(seen)
    await _echo(scope, receive, send, log)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"root_path": "/site", "proxy_headers": False},
        {"root_path": "/site", "proxy_headers": True, "forwarded_allow_ips": "*"},
        {"proxy_headers": True, "forwarded_allow_ips": "10.0.0.1"},
        {"ws_per_message_deflate": False},
        {"ws_max_size": 1000},
    ],
    ids=["defaults", "root_path", "trusted-proxy", "untrusted-proxy", "no-deflate", "max-size"],
)
async def test_the_scope_and_extensions_are_uvicorns(options):
    async def scenario(served: Served) -> list[Any]:
        port = served.port
        client = Hostile(
            port,
            path="/a%20b/%C3%A9%2F?q=%20x&r=%C3%A9",
            subprotocols=["one", "two"],
            extensions=[ClientPerMessageDeflateFactory()],
        )
        forwarded = [("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-Proto", "https")]
        assert await client.open(forwarded) is None
        client.conn.send_text(b"z" * 3000)  # compressed when the server agreed to it
        await client._flush()
        client.write(_frame(0x1, b"x" * 999) + _frame(0x2, b"y" * 1001) + _frame(0x8, b""))
        return await client.until_closed()

    seen, log = await differential(recording(_scope_echo), scenario, **options)
    status, headers = seen[0][1], dict(seen[0][2])
    assert status == 101
    deflate = options.get("ws_per_message_deflate", True)
    assert ("sec-websocket-extensions" in headers) is deflate
    if "ws_max_size" not in options:
        assert log[2] == {"type": "websocket.receive", "text": "z" * 3000}


async def _shut_down_before_accept(scope: Any, receive: Any, send: Any, log: list[Any]) -> None:
    await receive()
    await receive()  # the server shuts down meanwhile
    await send({"type": "websocket.accept"})


async def _shut_down_after_accept(scope: Any, receive: Any, send: Any, log: list[Any]) -> None:
    await receive()
    await send({"type": "websocket.accept"})
    await receive()
    await send({"type": "websocket.send", "text": "after"})
    await send({"type": "websocket.close"})


@pytest.mark.parametrize("app", [_shut_down_before_accept, _shut_down_after_accept])
async def test_server_shutdown_as_uvicorn_does_it(app):
    async def scenario(served: Served) -> list[Any]:
        client = Hostile(served.port)
        opening = asyncio.ensure_future(client.open())
        state = served.server.server_state
        await until(lambda: _true(any(getattr(p, "tasks", ()) for p in state.connections)))
        await until(lambda: _true(bool(state.tasks)))
        served.server.should_exit = True
        await opening
        return await client.until_closed()

    seen, log = await differential(recording(app), scenario)
    assert log[1]["type"] == "websocket.disconnect"
    if app is _shut_down_before_accept:
        assert seen[0][:2] == ("HTTP", 500) and log[1]["code"] == 1006
    else:
        assert seen[-1] == ("closed", (1012, "")) and log[1]["code"] == 1012


async def test_one_connections_scope_changes_do_not_reach_another():
    """A middleware may write into its scope's dicts (ASGI gives each connection its own):
    nothing one connection's application writes shows in the next one's scope."""
    scopes: list[dict[str, Any]] = []

    async def app(scope, receive, send):
        scopes.append(copy.deepcopy({k: scope[k] for k in ("asgi", "extensions")}))
        scope["extensions"]["tls"] = {"client_cert_name": "first"}
        scope["extensions"]["websocket.http.response"]["mine"] = True
        scope["asgi"]["spec_version"] = "9.9"
        await receive()
        await send({"type": "websocket.close"})

    served = await serve(app)
    try:
        for _ in range(2):
            client = Hostile(served.port)
            assert await client.open() is not None
            await client.until_closed()
        await until(lambda: _true(len(scopes) == 2))
        assert scopes[1]["extensions"] == {"websocket.http.response": {}}
        assert scopes[1]["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    finally:
        await served.stop()


async def test_no_protocol_outlives_its_connection():
    """Connections opened and ended every way leave no protocol object behind."""
    import gc

    from directcall.uvicorn_ws import LeanWebSocketProtocol

    async def app(scope, receive, send):
        message = await receive()
        if scope["path"] == "/refuse":
            await send({"type": "websocket.close"})
            return
        await send({"type": "websocket.accept"})
        while message["type"] != "websocket.disconnect":
            message = await receive()

    served = await serve(app)
    try:
        for n in range(60):
            client = Hostile(served.port, path="/refuse" if n % 3 == 0 else "/")
            if await client.open() is None:
                if n % 3 == 1:
                    client.write(_frame(0x1, b"hi") + _frame(0x8, b""))
                else:
                    sock = client.writer.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
                    client.writer.transport.abort()
                    continue
            await client.until_closed()
        state = served.server.server_state
        await until(lambda: _true(not state.connections and not state.tasks))
        gc.collect()
        left = [o for o in gc.get_objects() if type(o) is LeanWebSocketProtocol]
        assert left == []
    finally:
        await served.stop()


@pytest.mark.parametrize(
    "headers",
    [
        [("Sec-WebSocket-Version", "8")],
        [("Sec-WebSocket-Key", "short")],
        [("Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=99")],
        [("Sec-WebSocket-Protocol", ",,, ,")],
        [("Origin", "http://\u00e9.example")],
        [("Upgrade", "websocket, h2c")],
    ],
    ids=["version", "key", "extension-params", "empty-subprotocols", "latin-1-origin", "upgrade"],
)
async def test_odd_handshakes_are_met_as_uvicorn_meets_them(headers):
    async def scenario(served: Served) -> list[Any]:
        client = Hostile(served.port)
        if await client.open(headers) is None:
            client.write(_frame(0x8, b""))
        return await client.until_closed()

    await differential(recording(_scope_echo), scenario)


async def test_a_fragmented_message_over_ws_max_size_is_met_as_uvicorn_meets_it():
    async def scenario(served: Served) -> list[Any]:
        client = Hostile(served.port)
        assert await client.open() is None
        fragments = [_frame(0x2, b"a" * 400, fin=False), _frame(0x0, b"b" * 400, fin=False)]
        client.write(b"".join([*fragments, _ping_frame(), _frame(0x0, b"c" * 400)]))
        return await client.until_closed()

    seen, log = await differential(recording(_echo), scenario, ws_max_size=1000)
    assert seen[-1][1][0] == 1009 and log[-1]["code"] == 1009


async def _cancelling_reader(scope: Any, receive: Any, send: Any, log: list[Any]) -> None:
    """Reads with receive() calls it cancels in between (as channels' consumers may)."""
    await receive()
    await send({"type": "websocket.accept"})
    while True:
        for _ in range(2):
            stray = asyncio.ensure_future(receive())
            await asyncio.sleep(0)
            if stray.done():
                if stray.result()["type"] == "websocket.disconnect":
                    return
                continue
            stray.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stray
        if (await receive())["type"] == "websocket.disconnect":
            return


async def test_a_flood_read_with_cancelled_receives_loses_nothing():
    async def scenario(served: Served) -> list[Any]:
        client = Hostile(served.port)
        assert await client.open() is None
        for n in range(500):
            client.write(_frame(0x1, f"m{n}".encode()))
            if n % 50 == 0:
                await client.writer.drain()
        client.write(_frame(0x8, b""))
        return await client.until_closed()

    _seen, log = await differential(recording(_cancelling_reader), scenario)
    texts = [m["text"] for m in log if m.get("type") == "websocket.receive"]
    assert texts == [f"m{n}" for n in range(500)]
    assert [m for m in log if m.get("type") == "websocket.disconnect"] == [
        {"type": "websocket.disconnect", "code": 1005, "reason": ""}
    ]


@pytest.mark.parametrize("http", ["httptools", "h11"])
@pytest.mark.parametrize("app", [_echo, _return_before_accept, _http_response])
async def test_frames_in_the_handshakes_packet_are_met_as_uvicorn_meets_them(app, http):
    """Frames written with the request, before the response."""

    async def scenario(served: Served) -> list[Any]:
        client = Hostile(served.port)
        early = _frame(0x1, b"early", fin=False) + _ping_frame() + _frame(0x0, b"!")
        if await client.open(early=early + _frame(0x2, b"\x00")) is None:
            client.write(_frame(0x8, b""))
        return await client.until_closed()

    _seen, log = await differential(recording(app), scenario, http=http)
    if app is _echo:
        # A client may not send before the 101 (RFC 6455 4.1): uvicorn drops those bytes.
        assert [m["type"] for m in log[1:]] == ["websocket.disconnect"]


async def _stale_cancel_reader(scope: Any, receive: Any, send: Any, log: list[Any]) -> None:
    """A task that once swallowed a cancellation (its cancelling() count stays at 1) reads
    beside a helper reader that gets cancelled: its own receive() goes on waiting."""
    await receive()
    await send({"type": "websocket.accept"})
    task = asyncio.current_task()
    assert task is not None
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.sleep(0)  # swallowed without uncancel(), as older code does
    helper = asyncio.ensure_future(receive())
    await asyncio.sleep(0)  # the helper waits
    asyncio.get_running_loop().call_soon(helper.cancel)  # while this task waits too
    await send({"type": "websocket.send", "text": "ready"})
    try:
        message = await receive()
    except asyncio.CancelledError:
        log.append("receive() raised CancelledError, nobody cancelled it")
        message = await receive()
    while message["type"] != "websocket.disconnect":
        message = await receive()


async def test_a_reader_with_a_stale_cancellation_count_is_not_cancelled_by_another():
    async def scenario(served: Served) -> list[Any]:
        client = Hostile(served.port)
        assert await client.open() is None
        while not any(f[0] == "TEXT" for f in client.seen):
            client.conn.receive_data(await asyncio.wait_for(client.reader.read(65536), 10))
            client._collect()
        client.write(_frame(0x1, b"hello") + _frame(0x8, b""))
        return await client.until_closed()

    _seen, log = await differential(recording(_stale_cancel_reader), scenario)
    assert {"type": "websocket.receive", "text": "hello"} in log


async def test_senders_waiting_on_a_full_buffer_are_released_when_the_client_vanishes():
    """Three send() calls wait for the buffer to drain, one of them is cancelled, the client
    resets the connection: the other two raise ClientDisconnected, nothing hangs."""
    outcomes: list[str] = []
    protocols: list[Any] = []

    async def app(scope, receive, send):
        await receive()
        await send({"type": "websocket.accept"})
        chunk = {"type": "websocket.send", "bytes": b"x" * 1_000_000}
        await until(lambda: _true(bool(protocols)))
        while not protocols[0].write_paused:
            await send(chunk)

        async def sender() -> None:
            try:
                await send(chunk)
                outcomes.append("sent")
            except asyncio.CancelledError:
                outcomes.append("cancelled")
                raise
            except Exception as exc:  # the point: which one
                outcomes.append(type(exc).__name__)

        senders = [asyncio.ensure_future(sender()) for _ in range(3)]
        await asyncio.sleep(0)
        senders[0].cancel()
        await asyncio.gather(*senders, return_exceptions=True)
        outcomes.append("done")

    served = await serve(app)
    try:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", served.port))
        sock.setblocking(False)
        client = Hostile(served.port)
        client.reader, client.writer = await asyncio.open_connection(sock=sock)
        client.conn.send_request(client.conn.connect())
        await client._flush()
        await until(lambda: _true(bool(served.protocols())))
        protocols.append(served.protocols()[0])
        await until(lambda: _true(outcomes == ["cancelled"]))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        client.writer.transport.abort()
        await until(lambda: _true(len(outcomes) == 4))
        assert outcomes == ["cancelled", "ClientDisconnected", "ClientDisconnected", "done"]
        state = served.server.server_state
        await until(lambda: _true(not state.connections and not state.tasks))
    finally:
        await served.stop()
