"""A signaling test client over ``WebsocketCommunicator``, through the demo's real ASGI stack."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from channels.testing import WebsocketCommunicator

from directcall import tokens
from directcall.models import Account, Registration

WS_PATH = "/ws/directcall/v1/"
OFFER = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
ANSWER = OFFER.replace("o=- 1 2", "o=- 3 4")
CANDIDATE = {
    "candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
    "usernameFragment": "abcd",
}


class Client:
    """One signed-in device. Frames that arrive while waiting for another are kept in order."""

    def __init__(self, communicator: WebsocketCommunicator, cuid: str, registration_pk: int):
        self.communicator = communicator
        self.cuid = cuid
        self.registration_pk = registration_pk
        self.inbox: list[dict[str, Any]] = []
        self.closed_code: int | None = None

    @classmethod
    async def open(cls, origin: bytes = b"http://testserver") -> WebsocketCommunicator:
        from example_project.asgi import application

        communicator = WebsocketCommunicator(
            application, WS_PATH, headers=[(b"origin", origin), (b"host", b"testserver")]
        )
        connected, _ = await communicator.connect(timeout=5)
        assert connected
        return communicator

    @classmethod
    async def signed_in(
        cls, registration: Registration, device: str = "device-0001", **auth: Any
    ) -> Client:
        """Connect, authenticate with a fresh token and wait for ``ready``."""
        client = cls(await cls.open(), registration.cuid, registration.pk)
        await client.authenticate(registration, device, **auth)
        return client

    async def authenticate(
        self, registration: Registration, device: str = "device-0001", **auth: Any
    ) -> dict[str, Any]:
        """Send ``auth`` with a fresh token for ``registration``; return the ``ready`` frame."""
        token = tokens.issue(registration.account_id, registration.pk, registration.cuid, device)
        await self.send(type="auth", token=token, **auth)
        self.ready = await self.next("ready")
        return self.ready

    async def send(self, **frame: Any) -> None:
        await self.communicator.send_to(text_data=json.dumps(frame))

    async def send_raw(self, text: str | None = None, data: bytes | None = None) -> None:
        await self.communicator.send_to(text_data=text, bytes_data=data)

    async def _receive(self, timeout: float) -> dict[str, Any] | None:
        # Not communicator.receive_output(): on a timeout it cancels the application.
        if self.communicator.future.done():
            self.communicator.future.result()  # re-raise what killed the consumer
        message = await asyncio.wait_for(self.communicator.output_queue.get(), timeout)
        if message["type"] == "websocket.close":
            self.closed_code = message.get("code")
            return None
        return json.loads(message["text"])

    async def next(self, kind: str, timeout: float = 5, **match: Any) -> dict[str, Any]:
        """The first frame of type ``kind`` whose fields include ``match``."""

        def fits(frame: dict[str, Any]) -> bool:
            return frame.get("type") == kind and all(frame.get(k) == v for k, v in match.items())

        for index, frame in enumerate(self.inbox):
            if fits(frame):
                return self.inbox.pop(index)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise AssertionError(f"{self.cuid}: no {kind} {match}; got {self.inbox}")
            try:
                frame = await self._receive(remaining)
            except TimeoutError:
                raise AssertionError(f"{self.cuid}: no {kind} {match}; got {self.inbox}") from None
            if frame is None:
                raise AssertionError(f"{self.cuid}: closed ({self.closed_code}) awaiting {kind}")
            if fits(frame):
                return frame
            self.inbox.append(frame)

    async def closed(self, timeout: float = 5) -> int | None:
        """Wait for the server to close the socket; return the close code."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.closed_code is None:
            frame = await self._receive(max(0.01, deadline - loop.time()))
            if frame is not None:
                self.inbox.append(frame)
        return self.closed_code

    async def quiet(self, seconds: float = 0.3) -> list[dict[str, Any]]:
        """Frames that arrive within ``seconds`` (when time itself is the point, e.g. a
        grace period passing; to see that nothing arrived, :meth:`drain` is exact)."""
        got = list(self.inbox)
        self.inbox.clear()
        while True:
            try:
                frame = await self._receive(seconds)
            except TimeoutError:
                return got
            if frame is None:
                return got
            got.append(frame)

    async def alive(self) -> None:
        """The connection still answers; the server has handled every frame sent before."""
        await self.send(type="ping")
        await self.next("pong")

    async def drain(self) -> list[dict[str, Any]]:
        """Every frame this connection was sent so far, up to the pong of a ping (the sentinel).

        Frames caused by another client's action have been sent once that client's own
        frames are handled: call ``other.alive()`` first.
        """
        await self.send(type="ping")
        got = [frame for frame in self.inbox if frame.get("type") != "pong"]
        self.inbox.clear()
        while (frame := await self._receive(5)) is not None and frame.get("type") != "pong":
            got.append(frame)
        return got

    async def close(self) -> None:
        if not self.communicator.future.done():
            await self.communicator.disconnect()

    # Shortcuts for the common frames.

    async def invite(self, receiver: str, context: str = "Tutor is calling", **extra: Any) -> dict:
        await self.send(
            type="invite", ref="r1", receiver=receiver, context=context, sdp=OFFER, **extra
        )
        return await self.next("invited")


class Clients:
    """The signaling clients of one test, every one closed at its end (pass or fail)."""

    def __init__(self) -> None:
        self.opened: list[Client] = []

    async def sign_in(
        self, registration: Registration, device: str = "device-0001", **auth: Any
    ) -> Client:
        """A signed-in client (see :meth:`Client.signed_in`)."""
        client = Client(await Client.open(), registration.cuid, registration.pk)
        self.opened.append(client)
        await client.authenticate(registration, device, **auth)
        return client

    async def anonymous(self) -> Client:
        """A connected client that has not signed in."""
        client = Client(await Client.open(), "anonymous", 0)
        self.opened.append(client)
        return client

    async def close_all(self) -> None:
        for client in self.opened:
            await client.close()


async def answered_call(caller: Client, callee: Client) -> str:
    """Invite, answer; return the call id once both sides saw ``answered``."""
    call_id = (await caller.invite(callee.cuid))["call_id"]
    await callee.next("incoming", call_id=call_id)
    await callee.send(type="accept", call_id=call_id, sdp=ANSWER)
    await caller.next("state", call_id=call_id, status="answered")
    await callee.next("state", call_id=call_id, status="answered")
    return call_id


def make_registration(account: Account, cuid: str, name: str = "") -> Registration:
    """A registration as the init endpoint would leave it."""
    return Registration.objects.create(account=account, cuid=cuid, name=name)
