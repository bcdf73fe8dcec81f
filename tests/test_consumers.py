"""The signaling consumer through the demo's real ASGI stack (WebsocketCommunicator).

Every test runs twice: on the in-memory channel layer with the local-memory cache, and on
Redis for both.
"""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from directcall.models import Call, CallStatus

from .wsclient import ANSWER, OFFER, Client, make_registration

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("signaling")]


@pytest.fixture
def people(make_account):
    account, _key = make_account()
    return {
        cuid: make_registration(account, cuid, name)
        for cuid, name in [("tutor_jane", "Jane"), ("student_sam", "Sam"), ("grocer_gil", "Gil")]
    }


@database_sync_to_async
def db_call(call_id):
    return Call.objects.select_related("caller", "callee").get(pk=call_id)


async def test_full_call(people):
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    invited = await jane.invite("student_sam", context="Tutor is calling")
    call_id = invited["call_id"]
    incoming = await sam.next("incoming", call_id=call_id)
    assert incoming["caller"] == {"cuid": "tutor_jane", "name": "Jane", "image": None}
    assert incoming["context"] == "Tutor is calling" and incoming["sdp"] == OFFER
    await sam.send(type="ringing", call_id=call_id)
    await jane.next("state", call_id=call_id, status="ringing")
    await sam.next("state", call_id=call_id, status="ringing")
    await sam.send(type="accept", call_id=call_id, sdp=ANSWER)
    answered = await jane.next("state", call_id=call_id, status="answered")
    assert answered["sdp"] == ANSWER
    assert "sdp" not in await sam.next("state", call_id=call_id, status="answered")
    candidate = {
        "candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host",
        "sdpMid": "0",
        "sdpMLineIndex": 0,
        "usernameFragment": "abcd",
    }
    await jane.send(type="candidates", call_id=call_id, candidates=[candidate], end=True)
    relayed = await sam.next("candidates", call_id=call_id)
    assert relayed["candidates"] == [candidate] and relayed["end"] is True
    await sam.send(type="candidates", call_id=call_id, candidates=[candidate])
    assert (await jane.next("candidates", call_id=call_id))["end"] is False
    await jane.send(type="renegotiate", call_id=call_id, sdp_type="offer", sdp=OFFER)
    assert (await sam.next("renegotiate", call_id=call_id))["sdp_type"] == "offer"
    await sam.send(type="hangup", call_id=call_id)
    over = await jane.next("state", call_id=call_id, status="over")
    assert over["reason"] == "user_hangup" and over["duration"] >= 0
    await sam.next("state", call_id=call_id, status="over")
    call = await db_call(call_id)
    assert call.status == CallStatus.OVER and call.end_reason == "user_hangup"
    assert call.duration is not None and call.answered_at and call.ended_at
    await jane.close()
    await sam.close()
