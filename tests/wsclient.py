"""A signaling test client over ``WebsocketCommunicator``, through the demo's real ASGI stack."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from channels.testing import WebsocketCommunicator

from directcall import tokens
from directcall.models import Account, Registration

from .inbox import FrameInbox

WS_PATH = "/ws/directcall/v1/"
OFFER = "v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
ANSWER = OFFER.replace("o=- 1 2", "o=- 3 4")
CANDIDATE = {
    "candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
    "usernameFragment": "abcd",
}


# The device keys the server issued (``ready.device_key``), by (account, cuid, device): what
# a browser keeps in localStorage, shared by its tabs. Every sign-in of that device presents
# its key, as the SDK does, unless the test passes ``device_key`` itself.
DEVICE_KEYS: dict[tuple[int, str, str], str] = {}


class Client(FrameInbox):
    """One signed-in tab. Frames that arrive while waiting for another are kept in order.

    The call keys the server gives this tab (``invited``, the ``answered`` state) are kept
    in ``call_keys``, as the SDK keeps them in sessionStorage: :meth:`resume` lists them
    for a sign-in that takes the calls back.
    """

    def __init__(self, communicator: WebsocketCommunicator, cuid: str, registration_pk: int):
        self.communicator = communicator
        self.cuid = cuid
        self.registration_pk = registration_pk
        self.inbox: list[dict[str, Any]] = []
        self.closed_code: int | None = None
        self.call_keys: dict[str, str] = {}
        self.device: tuple[int, str, str] | None = None  # (account, cuid, device id)

    @classmethod
    async def open(
        cls, origin: bytes = b"http://testserver", client: tuple[str, int] | None = None
    ) -> WebsocketCommunicator:
        """A connected communicator; ``client``: the ASGI client address (none by default)."""
        from example_project.asgi import application

        communicator = WebsocketCommunicator(
            application, WS_PATH, headers=[(b"origin", origin), (b"host", b"testserver")]
        )
        if client is not None:
            # The scope the application was given; it reads it once the event loop runs it.
            communicator.scope["client"] = list(client)
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
        """Send ``auth`` with a fresh token for ``registration``; return the ``ready`` frame.

        The device's key (:data:`DEVICE_KEYS`) goes with it unless ``auth`` names one.
        """
        await self.send_auth(registration, device, **auth)
        self.ready = await self.next("ready")
        return self.ready

    async def send_auth(
        self, registration: Registration, device: str = "device-0001", **auth: Any
    ) -> None:
        """Send ``auth`` with a fresh token (and the device's key), not waiting for an answer."""
        token = tokens.issue(registration.account_id, registration.pk, registration.cuid, device)
        self.device = (registration.account_id, registration.cuid, device)
        if "device_key" not in auth and self.device in DEVICE_KEYS:
            auth["device_key"] = DEVICE_KEYS[self.device]
        fields = {key: value for key, value in auth.items() if value is not None}
        await self.send(type="auth", token=token, **fields)

    def resume(self, *call_ids: str) -> list[dict[str, str]]:
        """``auth.resume`` items taking back this tab's calls (``call_ids``, or all of them)."""
        wanted = call_ids or tuple(self.call_keys)
        return [{"call_id": c, "call_key": self.call_keys[c]} for c in wanted]

    async def send(self, **frame: Any) -> None:
        await self.communicator.send_to(text_data=json.dumps(frame))

    async def send_raw(self, text: str | None = None, data: bytes | None = None) -> None:
        await self.communicator.send_to(text_data=text, bytes_data=data)

    def _closed_detail(self) -> str:
        return f"closed ({self.closed_code})"

    async def _recv_frame(self, timeout: float) -> dict[str, Any] | None:
        # Not communicator.receive_output(): on a timeout it cancels the application.
        if self.communicator.future.done():
            self.communicator.future.result()  # re-raise what killed the consumer
        message = await asyncio.wait_for(self.communicator.output_queue.get(), timeout)
        if message["type"] == "websocket.close":
            self.closed_code = message.get("code")
            return None
        frame = json.loads(message["text"])
        self._keep(frame)
        return frame

    def _keep(self, frame: dict[str, Any]) -> None:
        """What the SDK keeps of a frame: the device key, and this tab's call keys."""
        issued = frame.get("device_key") if frame.get("type") == "ready" else None
        if isinstance(issued, str) and self.device is not None:
            DEVICE_KEYS[self.device] = issued
        if frame.get("type") in ("invited", "state") and isinstance(frame.get("call_key"), str):
            self.call_keys[frame["call_id"]] = frame["call_key"]

    async def closed(self, timeout: float = 5) -> int | None:
        """Wait for the server to close the socket; return the close code."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.closed_code is None:
            frame = await self._recv_frame(max(0.01, deadline - loop.time()))
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
                frame = await self._recv_frame(seconds)
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
        while (frame := await self._recv_frame(5)) is not None and frame.get("type") != "pong":
            got.append(frame)
        return got

    async def close(self, code: int = 1000) -> None:
        """Close the socket: 1000 as the SDK's logout(), 1001 as a page going away."""
        if not self.communicator.future.done():
            await self.communicator.disconnect(code)

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
        self,
        registration: Registration,
        device: str = "device-0001",
        client: tuple[str, int] | None = None,
        **auth: Any,
    ) -> Client:
        """A signed-in client (see :meth:`Client.signed_in`); ``client``: its address."""
        opened = Client(await Client.open(client=client), registration.cuid, registration.pk)
        self.opened.append(opened)
        await opened.authenticate(registration, device, **auth)
        return opened

    async def anonymous(self, client: tuple[str, int] | None = None) -> Client:
        """A connected client that has not signed in."""
        opened = Client(await Client.open(client=client), "anonymous", 0)
        self.opened.append(opened)
        return opened

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


async def full_call(caller: Client, callee: Client, hangs_up: Client | None = None) -> str:
    """A whole call: invite, ringing, answer, hang-up (by ``hangs_up``, the caller unless
    given); return its id once both sides saw it ``over``."""
    call_id = (await caller.invite(callee.cuid))["call_id"]
    await callee.next("incoming", call_id=call_id)
    await callee.send(type="ringing", call_id=call_id)
    await caller.next("state", call_id=call_id, status="ringing")
    await callee.send(type="accept", call_id=call_id, sdp=ANSWER)
    await caller.next("state", call_id=call_id, status="answered")
    await callee.next("state", call_id=call_id, status="answered")
    await (hangs_up or caller).send(type="hangup", call_id=call_id)
    await caller.next("state", call_id=call_id, status="over")
    await callee.next("state", call_id=call_id, status="over")
    return call_id


def make_registration(account: Account, cuid: str, name: str = "") -> Registration:
    """A registration as the init endpoint would leave it."""
    return Registration.objects.create(account=account, cuid=cuid, name=name)
