"""A uvicorn WebSocket protocol that keeps less per open socket.

    uvicorn --ws directcall.uvicorn_ws:LeanWebSocketProtocol --lifespan off site.asgi:application

(or ``uvicorn.run(app, ws=LeanWebSocketProtocol)``, or a gunicorn ``UvicornWorker``
subclass with ``CONFIG_KWARGS = {"ws": "directcall.uvicorn_ws:LeanWebSocketProtocol"}``).

It is uvicorn's ``websockets-sansio`` implementation (the same websockets framing, the
same ASGI messages, keepalive pings, close handshake and flow control) with the state an
idle signaling socket holds cut down by about 12 KiB per connection, to half
(docs/performance.md, "Memory per idle connection"):

- one waiter future and a message list made when there is something in it, instead of an
  ``asyncio.Queue`` and an ``asyncio.Event`` (four deques of 600 bytes each);
- the parsed handshake request is emptied once the scope is made (websockets' parser
  would keep it for the connection's life), and the handshake response is kept only until
  the application accepts or refuses the socket;
- attributes in ``__slots__`` (uvicorn's instance dict has too many keys to be shared);
- the scope's header names, the header values that every browser sends alike (``host``,
  ``origin``, ``user-agent``...), the path and the server address are shared between
  connections instead of copied for each (immutable bytes and strings; the scope's
  ``asgi`` and ``extensions`` dicts are each connection's own, as a middleware may write
  into them);
- the application runs as the connection's task directly, its outcome handled by a done
  callback, instead of inside a ``run_asgi`` coroutine of its own.

One behaviour differs, to spare CPU rather than memory: the keepalive ping goes only to a
client that has been silent for ``ws_ping_interval`` (a frame from it proves the socket
alive as a pong would), so a client that pings on its own, as the SDK does, is not pinged
as well.

It relies on attributes of uvicorn's ``WebSocketsSansIOProtocol`` that are not public API:
pyproject pins uvicorn to the tested range, and tests/test_uvicorn_ws.py fails when the
parent class's code changes.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from uvicorn.protocols.utils import ClientDisconnected, get_client_addr, get_path_with_query_string
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets import __version__ as websockets_version
from websockets.datastructures import Headers
from websockets.exceptions import InvalidState
from websockets.frames import Frame
from websockets.http11 import Request

__all__ = ["LeanWebSocketProtocol"]

# Request headers whose values are alike for many connections: the (name, value) pair is
# shared. Other headers (the handshake key, cookies, forwarded addresses) are copied.
_SHARED_VALUES = frozenset(
    {
        "accept-encoding",
        "accept-language",
        "cache-control",
        "connection",
        "host",
        "origin",
        "pragma",
        "sec-websocket-extensions",
        "sec-websocket-protocol",
        "sec-websocket-version",
        "upgrade",
        "user-agent",
        "x-forwarded-proto",
    }
)
_CACHE_LIMIT = 1024  # entries of each cache below; a full cache is emptied and starts again
_CACHED_CHARS = 256  # longer names, values and paths are copied, never kept here: a client
# must not park megabytes in these caches for the process's life (128 lines of 8 KiB per
# handshake are allowed), nor fill them once and for all so that nothing is shared after.
_pairs: dict[tuple[str, str], tuple[bytes, bytes]] = {}
_names: dict[str, bytes] = {}
_paths: dict[tuple[str, str], tuple[str, bytes]] = {}
_addresses: dict[tuple[str, int | None], tuple[str, int | None]] = {}

if websockets_version >= "17.0":  # as uvicorn's parent class decides

    def _value(value: str) -> bytes:
        return value.encode("latin-1")

else:  # pragma: no cover

    def _value(value: str) -> bytes:
        return value.encode("ascii", errors="surrogateescape")


def _scope_headers(request: Request) -> list[tuple[bytes, bytes]]:
    headers = []
    for key, value in request.headers.raw_items():
        name = key.lower()
        if name in _SHARED_VALUES:
            pair = _pairs.get((key, value))
            if pair is None:
                pair = (key.encode("ascii"), _value(value))
                if len(key) + len(value) <= _CACHED_CHARS:
                    _remember(_pairs, (key, value), pair)
        else:
            raw = _names.get(key)
            if raw is None:
                raw = key.encode("ascii")
                if len(key) <= _CACHED_CHARS:
                    _remember(_names, key, raw)
            pair = (raw, _value(value))
        headers.append(pair)
    return headers


def _shared_address(address: tuple[str, int | None] | None) -> tuple[str, int | None] | None:
    if address is None:
        return None
    shared = _addresses.get(address)
    if shared is None:
        shared = address
        _remember(_addresses, address, address)
    return shared


def _remember(cache: dict[Any, Any], key: Any, value: Any) -> None:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()  # what is in use stays referenced by its scopes; the rest goes
    cache[key] = value


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets-sansio protocol, holding less per socket (module docstring)."""

    __slots__ = (
        "app",
        "app_state",
        "client",
        "close_sent",
        "close_timer",
        "config",
        "conn",
        "connections",
        "curr_msg_data_type",
        "default_headers",
        "disconnected",
        "drained",
        "frames",
        "handshake_complete",
        "handshake_initiated",
        "heard_at",
        "inbox",
        "initial_response",
        "last_ping_rtt",
        "logger",
        "loop",
        "pending_ping_payload",
        "ping_interval",
        "ping_sent_at",
        "ping_timeout",
        "ping_timer",
        "pong_timer",
        "read_paused",
        "response",
        "root_path",
        "scheme",
        "scope",
        "server",
        "tasks",
        "transport",
        "waiter",
        "write_paused",
    )

    close_timeout = 10.0

    def __init__(
        self,
        config: Any,
        server_state: Any,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        # Not super().__init__(): it makes the queue, event and instance dict this class
        # does without. Every attribute the parent's methods read is set here.
        if not config.loaded:
            config.load()  # pragma: no cover
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.logger = _logger
        self.root_path = config.root_path
        self.app_state = app_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.default_headers = server_state.default_headers
        self.ping_interval = config.ws_ping_interval
        self.ping_timeout = config.ws_ping_timeout

        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.server = None
        self.client = None
        self.scheme = None
        self.response = None
        self.handshake_initiated = False
        self.handshake_complete = False
        self.close_sent = False
        self.disconnected = False
        self.close_timer = None
        self.initial_response = None
        self.read_paused = False
        self.write_paused = False
        self.ping_timer = None
        self.pong_timer = None
        self.pending_ping_payload = None
        self.ping_sent_at = 0.0
        self.last_ping_rtt = 0.0
        self.heard_at = 0.0  # when the client last sent anything (loop time)
        self.frames: list[bytes] | None = None  # a fragmented message's frames so far
        self.curr_msg_data_type = "bytes"
        self.inbox: list[dict[str, Any]] | None = None  # messages the app has not received
        self.waiter: asyncio.Future[None] | None = None  # receive() waiting for a message
        self.drained: asyncio.Future[None] | None = None  # send() waiting for writable
        self.conn = _server_protocol(config)

    # -- the ASGI receive side ----------------------------------------------------------

    def _put(self, message: dict[str, Any]) -> None:
        inbox = self.inbox
        if inbox is None:
            self.inbox = [message]
        else:
            inbox.append(message)
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def receive(self) -> Any:
        while not self.inbox:
            waiter = self.waiter
            if waiter is None or waiter.done():
                waiter = self.waiter = self.loop.create_future()
            task = asyncio.current_task()
            cancelling = task.cancelling() if task is not None else 0
            try:
                await waiter
            except asyncio.CancelledError:
                if self.waiter is waiter:
                    self.waiter = None
                # Cancelled itself (its count went up; a count left over from a
                # cancellation the task swallowed earlier does not count), or woken because
                # another receive() awaiting the same future was: then wait again.
                if task is None or task.cancelling() > cancelling:
                    raise
            else:
                if self.waiter is waiter:
                    self.waiter = None
        inbox = self.inbox
        message = inbox.pop(0)
        if not inbox:
            self.inbox = None
            if self.read_paused:
                self.read_paused = False
                self.transport.resume_reading()
        return message

    # -- flow control -------------------------------------------------------------------

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        drained = self.drained
        if drained is not None:
            self.drained = None
            if not drained.done():
                drained.set_result(None)

    # -- connection events --------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server = _shared_address(self.server)

    def data_received(self, data: bytes) -> None:
        self.heard_at = self.loop.time()
        super().data_received(data)

    def send_keepalive_ping(self) -> None:
        """uvicorn's keepalive ping, sent only after ``ws_ping_interval`` of silence from the
        client: anything it sent since proves the socket alive, as a pong would. A client
        that talks (the SDK pings every 15 s) is spared the ping and its pong: with
        uvicorn's pings off, an idle connection cost its worker 30 % less (docs/performance.md,
        run S). A client gone silent is pinged, and closed without a pong, as before."""
        quiet = self.loop.time() - self.heard_at
        if quiet < self.ping_interval:
            self.ping_timer = self.loop.call_later(
                self.ping_interval - quiet, self.send_keepalive_ping
            )
            return
        super().send_keepalive_ping()

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop_keepalive()
        self._put(
            {"type": "websocket.disconnect", "code": 1005 if self.handshake_complete else 1006}
        )
        self.connections.discard(self)
        self.handshake_complete = True
        self.disconnected = True
        self.response = None
        # Unblock a send() waiting for the buffer to drain: it never will now.
        self.resume_writing()
        self._stop_close_timer()
        if exc is None:
            self.transport.close()

    def _stop_close_timer(self) -> bool:
        """Cancel the wait for the peer's closing frame; whether one was running."""
        timer, self.close_timer = self.close_timer, None
        if timer is None:
            return False
        timer.cancel()
        return True

    def shutdown(self) -> None:
        self.stop_keepalive()
        if self.close_sent:
            self._stop_close_timer()
            self.transport.close()
            return
        if self.handshake_complete:
            self._put({"type": "websocket.disconnect", "code": 1012})
            self.conn.send_close(1012)
            self.transport.write(b"".join(self.conn.data_to_send()))
        else:
            self.send_500_response()
        self.transport.close()

    def handle_connect(self, event: Request) -> None:
        self.response = response = self.conn.accept(event)
        self.handshake_initiated = True
        if response.status_code != 101:
            self.handshake_complete = True
            self.close_sent = True
            self.conn.send_response(response)
            self.response = None
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()
            return
        raw_path, _, query_string = event.path.partition("?")
        paths = _paths.get((self.root_path, raw_path))
        if paths is None:
            paths = (
                self.root_path + unquote(raw_path),
                self.root_path.encode("ascii") + raw_path.encode("ascii"),
            )
            if len(self.root_path) + len(raw_path) <= _CACHED_CHARS:
                _remember(_paths, (self.root_path, raw_path), paths)
        subprotocols: list[str] = []
        for header in event.headers.get_all("Sec-WebSocket-Protocol"):
            subprotocols.extend([token.strip() for token in header.split(",")])
        self.scope = {  # type: ignore[typeddict-item]
            "type": "websocket",
            "asgi": {"version": self.config.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": self.scheme,
            "server": self.server,
            "client": self.client,
            "root_path": self.root_path,
            "path": paths[0],
            "raw_path": paths[1],
            "query_string": query_string.encode("ascii"),
            "headers": _scope_headers(event),
            "subprotocols": subprotocols or (),
            "state": self.app_state.copy(),
            "extensions": {"websocket.http.response": {}},
        }
        # websockets' parser generator keeps the Request it parsed in a local variable for
        # the connection's life: empty it, everything the scope needs is copied above.
        event.headers = _NO_HEADERS
        event.path = ""
        self._put({"type": "websocket.connect"})
        task = self.loop.create_task(self.app(self.scope, self.receive, self.send))
        task.add_done_callback(self._app_done)
        self.tasks.add(task)

    # -- incoming messages --------------------------------------------------------------

    def handle_cont(self, event: Frame) -> None:
        frames = self.frames
        if frames is None:  # pragma: no cover - websockets checks the sequence
            return
        frames.append(event.data)  # type: ignore[arg-type]
        if event.fin:
            self.frames = None
            self._deliver(b"".join(frames))

    def handle_text(self, event: Frame) -> None:
        self.curr_msg_data_type = "text"
        if event.fin:
            self._deliver(event.data)  # type: ignore[arg-type]
        else:
            self.frames = [event.data]  # type: ignore[list-item]

    def handle_bytes(self, event: Frame) -> None:
        self.curr_msg_data_type = "bytes"
        if event.fin:
            self._deliver(event.data)  # type: ignore[arg-type]
        else:
            self.frames = [event.data]  # type: ignore[list-item]

    def send_receive_event_to_app(self) -> None:  # pragma: no cover - the parent's name
        frames, self.frames = self.frames or [], None
        self._deliver(b"".join(frames))

    def _deliver(self, data: bytes) -> None:
        if self.close_sent:
            # Past websocket.close: drop the message, keep reading until the peer's close.
            return
        if self.curr_msg_data_type == "text":
            try:
                message = {"type": "websocket.receive", "text": data.decode()}
            except UnicodeDecodeError:
                self.logger.exception("Invalid UTF-8 sequence received from client.")
                self.conn.send_close(1007)
                self.handle_parser_exception()
                return
        else:
            message = {"type": "websocket.receive", "bytes": data}
        self._put(message)
        if not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    def handle_close(self, event: Frame) -> None:
        if self.close_sent:
            # The peer echoed our close frame: the closing handshake is complete.
            if self._stop_close_timer():
                self.transport.close()
            return
        if not self.transport.is_closing():
            close = self.conn.close_rcvd
            assert close is not None
            self._put({"type": "websocket.disconnect", "code": close.code, "reason": close.reason})
            self.transport.write(b"".join(self.conn.data_to_send()))
            self.transport.close()

    def handle_parser_exception(self) -> None:
        close = self.conn.close_sent
        assert close is not None
        self._put({"type": "websocket.disconnect", "code": close.code, "reason": close.reason})
        self.transport.write(b"".join(self.conn.data_to_send()))
        self.close_sent = True
        self.transport.close()

    # -- the application ----------------------------------------------------------------

    def _app_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        if task.cancelled():
            # CancelledError out of the application (or the server cancelling it): as the
            # parent's run_asgi does, an error, and a 500 if the handshake is not done.
            self.logger.error("Exception in ASGI application\n", exc_info=asyncio.CancelledError())
            self.send_500_response()
        elif (exc := task.exception()) is not None:
            if not isinstance(exc, ClientDisconnected):
                self.logger.error("Exception in ASGI application\n", exc_info=exc)
                self.send_500_response()
        elif not self.handshake_complete:
            self.logger.error("ASGI callable returned without completing handshake.")
            self.send_500_response()
        elif (result := task.result()) is not None:
            self.logger.error("ASGI callable should return None, but returned '%s'.", result)
        if self.close_timer is None:
            self.transport.close()

    async def run_asgi(self) -> None:  # pragma: no cover - handle_connect runs the app itself
        raise NotImplementedError

    async def _writable(self) -> None:
        drained = self.drained
        if drained is None:
            drained = self.drained = self.loop.create_future()
        # Shielded: one cancelled sender must not cancel the future the others wait on.
        await asyncio.shield(drained)

    async def send(self, message: Any) -> None:
        if self.write_paused and not self.disconnected:
            await self._writable()
        if self.disconnected:
            raise ClientDisconnected()
        kind = message["type"]
        if not self.handshake_complete and self.initial_response is None:
            if kind == "websocket.accept":
                self.logger.info(
                    '%s - "WebSocket %s" [accepted]',
                    get_client_addr(self.scope),
                    get_path_with_query_string(self.scope),
                )
                headers = [
                    (name.decode("latin-1").lower(), value.decode("latin-1"))
                    for name, value in (self.default_headers + list(message.get("headers", [])))
                ]
                subprotocol = message.get("subprotocol")
                if subprotocol:
                    headers.append(("Sec-WebSocket-Protocol", subprotocol))
                response, self.response = self.response, None
                assert response is not None
                del response.headers["Date"]
                response.headers.update(headers)
                if not self.transport.is_closing():
                    self.handshake_complete = True
                    self.conn.send_response(response)
                    self.transport.write(b"".join(self.conn.data_to_send()))
                    self.start_keepalive()
            elif kind == "websocket.close":
                self._put({"type": "websocket.disconnect", "code": 1006})
                self.logger.info(
                    '%s - "WebSocket %s" 403',
                    get_client_addr(self.scope),
                    get_path_with_query_string(self.scope),
                )
                self.response = None
                self.conn.send_response(self.conn.reject(HTTPStatus.FORBIDDEN, ""))
                self.close_sent = True
                self.handshake_complete = True
                self.transport.write(b"".join(self.conn.data_to_send()))
                self.transport.close()
            else:
                # websocket.http.response.start/body (a refusal with a body) and the errors:
                # the parent's code, which keeps no queue of its own for these. The
                # handshake response goes only once a refusal is under way: after a wrong
                # message the application may still accept, as with the parent.
                await self._parent_send(message)
                if self.initial_response is not None:
                    self.response = None
        elif not self.close_sent and self.initial_response is None:
            try:
                if kind == "websocket.send":
                    data = message.get("bytes")
                    if data is not None:
                        self.conn.send_binary(data)
                    else:
                        text = message.get("text")
                        if text is not None:
                            self.conn.send_text(text.encode())
                    self.transport.write(b"".join(self.conn.data_to_send()))
                elif kind == "websocket.close":
                    if not self.transport.is_closing():
                        code = message.get("code", 1000)
                        reason = message.get("reason", "") or ""
                        self._put({"type": "websocket.disconnect", "code": code, "reason": reason})
                        self.conn.send_close(code, reason)
                        self.transport.write(b"".join(self.conn.data_to_send()))
                        self.close_sent = True
                        if self.read_paused:
                            self.read_paused = False
                            self.transport.resume_reading()
                        self.close_timer = self.loop.call_later(
                            self.close_timeout, self.transport.close
                        )
                else:
                    raise RuntimeError(
                        "Expected ASGI message 'websocket.send' or 'websocket.close', "
                        f"but got '{kind}'."
                    )
            except InvalidState:
                raise ClientDisconnected() from None
        else:
            await self._parent_send(message)

    async def _parent_send(self, message: Any) -> None:
        """The parent's send() for the rare messages this class does not handle itself
        (an HTTP response instead of the handshake, and the errors). It puts a disconnect
        on ``self.queue`` for the response body: a view of this protocol's inbox."""
        await WebSocketsSansIOProtocol.send(self, message)  # type: ignore[arg-type]

    @property
    def queue(self) -> _Inbox:
        return _Inbox(self)

    @property
    def writable(self) -> _Writable:
        return _Writable(self)


class _Inbox:
    """What the parent's code does with ``self.queue`` (put_nowait), onto the inbox."""

    __slots__ = ("protocol",)

    def __init__(self, protocol: LeanWebSocketProtocol) -> None:
        self.protocol = protocol

    def put_nowait(self, message: dict[str, Any]) -> None:
        self.protocol._put(message)


class _Writable:
    """What the parent's send() does with ``self.writable`` (wait)."""

    __slots__ = ("protocol",)

    def __init__(self, protocol: LeanWebSocketProtocol) -> None:
        self.protocol = protocol

    async def wait(self) -> None:
        protocol = self.protocol
        if protocol.write_paused and not protocol.disconnected:
            await protocol._writable()


_NO_HEADERS = Headers()


def _server_protocol(config: Any) -> Any:
    from websockets.extensions.permessage_deflate import ServerPerMessageDeflateFactory
    from websockets.server import ServerProtocol

    extensions = []
    if config.ws_per_message_deflate:
        extensions = [
            ServerPerMessageDeflateFactory(
                server_max_window_bits=12,
                client_max_window_bits=12,
                compress_settings={"memLevel": 5},
            )
        ]
    return ServerProtocol(extensions=extensions, max_size=config.ws_max_size, logger=_logger)


def _get_logger() -> Any:
    import logging

    return logging.getLogger("uvicorn.error")


_logger = _get_logger()
