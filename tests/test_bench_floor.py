"""bench/floor.py, the floor that directcall's set-up is measured against
(docs/performance.md, run Q), keeps the rules it is said to keep.

Its ASGI application is driven in process, on the test settings' SQLite file (the
"sqlite" database, committed: its own connection reads it), with tokens issued by
``directcall.tokens`` (so its salt is directcall's).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import pytest
from django.conf import settings

from bench import floor
from directcall import tokens
from directcall.models import Registration

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "sqlite"])


class Socket:
    """One WebSocket connection to the floor's application."""

    def __init__(self) -> None:
        self.inbox: asyncio.Queue = asyncio.Queue()
        self.out: asyncio.Queue = asyncio.Queue()
        self.inbox.put_nowait({"type": "websocket.connect"})
        self.task = asyncio.create_task(
            floor.app({"type": "websocket"}, self.inbox.get, self.out.put)
        )

    async def send(self, frame: Any) -> None:
        text = frame if isinstance(frame, str) else json.dumps(frame)
        await self.inbox.put({"type": "websocket.receive", "text": text})

    async def message(self) -> dict[str, Any]:
        return await asyncio.wait_for(self.out.get(), 10)

    async def frame(self) -> dict[str, Any]:
        message = await self.message()
        assert message["type"] == "websocket.send", message
        return json.loads(message["text"])

    async def open(self, token: str) -> dict[str, Any]:
        """Signed in: the server's answer to ``auth`` (an ASGI message)."""
        assert (await self.message())["type"] == "websocket.accept"
        await self.send({"type": "auth", "token": token})
        return await self.message()


def _token(registration: Registration) -> str:
    return tokens.issue(registration.account_id, registration.pk, registration.cuid, "d1")


def test_the_floor_keeps_the_rules(side, monkeypatch):
    connection, account, jane, sam = side
    eve = Registration.objects.using("sqlite").create(account=account, cuid="nosy_eve")
    monkeypatch.setenv("FLOOR_DATABASE", connection.settings_dict["NAME"])
    monkeypatch.setattr(floor, "SECRET_KEY", settings.SECRET_KEY)
    monkeypatch.setattr(floor, "online", {})
    monkeypatch.setattr(floor, "calls", {})

    async def scenario() -> str:
        stranger = Socket()
        forged = _token(jane)[:-2] + "xx"
        assert (await stranger.open(forged)) == {"type": "websocket.close", "code": 4001}

        caller, callee, other = Socket(), Socket(), Socket()
        for socket, user in ((caller, jane), (callee, sam), (other, eve)):
            ready = json.loads((await socket.open(_token(user)))["text"])
            assert (ready["type"], ready["cuid"]) == ("ready", user.cuid)

        await caller.send("{not json")
        assert (await caller.frame())["code"] == "ERR_BAD_FRAME"
        await caller.send(
            {"type": "invite", "ref": "1", "receiver": "x", "context": "c", "sdp": "v"}
        )
        assert (await caller.frame())["code"] == "ERR_BAD_FRAME"  # not a cuid

        invite = {"type": "invite", "ref": "2", "receiver": "student_sam", "context": "<b>hi"}
        await caller.send({**invite, "sdp": "v=0 offer"})
        invited, incoming = await caller.frame(), await callee.frame()
        call_id = invited["call_id"]
        assert invited["type"] == "invited" and invited["receiver"]["cuid"] == "student_sam"
        assert incoming["call_id"] == call_id and incoming["sdp"] == "v=0 offer"
        assert incoming["caller"]["cuid"] == "tutor_jane" and incoming["context"] == "<b>hi"

        # Someone else's call: unknown to them; a second call to a busy callee: refused.
        for kind in ("ringing", "accept", "hangup", "candidates"):
            await other.send({"type": kind, "call_id": call_id, "sdp": "x", "candidates": []})
            assert (await other.frame())["code"] == "ERR_UNKNOWN_CALL"
        await other.send({**invite, "sdp": "v=0"})
        assert (await other.frame())["code"] == "ERR_CALL_STATE"
        # Only the callee says it rings or accepts.
        for kind in ("ringing", "accept"):
            await caller.send({"type": kind, "call_id": call_id, "sdp": "x"})
            assert (await caller.frame())["code"] == "ERR_BAD_FRAME"

        await callee.send({"type": "ringing", "call_id": call_id})
        for socket in (caller, callee):
            assert (await socket.frame())["status"] == "ringing"
        await callee.send({"type": "ringing", "call_id": call_id})  # not initiated any more
        assert (await callee.frame())["code"] == "ERR_UNKNOWN_CALL"

        await callee.send({"type": "accept", "call_id": call_id, "sdp": "v=0 answer"})
        answered = await caller.frame()
        assert answered["status"] == "answered" and answered["sdp"] == "v=0 answer"
        assert (await callee.frame()) | {"sdp": None} == answered | {"sdp": None}

        candidates = {"type": "candidates", "call_id": call_id, "candidates": [{"c": 1}]}
        await caller.send(candidates)
        assert (await callee.frame()) == candidates

        await caller.send({"type": "hangup", "call_id": call_id})
        for socket in (caller, callee):
            over = await socket.frame()
            assert (over["status"], over["reason"]) == ("over", "user_hangup")
        await callee.send({"type": "hangup", "call_id": call_id})
        assert (await callee.frame())["code"] == "ERR_UNKNOWN_CALL"

        assert other.out.empty()  # told nothing of a call that was not theirs
        for socket in (caller, callee, other):
            await socket.inbox.put({"type": "websocket.disconnect"})
            await socket.task
        await stranger.task
        return call_id

    call_id = asyncio.run(scenario())
    row = (
        connection.cursor()
        .execute(
            "SELECT id, status, end_reason, answered_at IS NOT NULL, ended_at IS NOT NULL, "
            "caller_id, callee_id FROM directcall_call"
        )
        .fetchall()
    )
    assert row == [(uuid.UUID(call_id).hex, "over", "user_hangup", 1, 1, jane.pk, sam.pk)]
    assert floor.online == {jane.pk: set(), sam.pk: set(), eve.pk: set()}
