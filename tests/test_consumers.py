"""The signaling consumer through the demo's real ASGI stack (WebsocketCommunicator).

Every test runs twice: on the in-memory channel layer with the local-memory cache, and on
Redis for both.
"""

from __future__ import annotations

import pytest
from channels.db import database_sync_to_async

from directcall.adapter import DefaultCallAdapter
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
    assert invited["receiver"] == {"cuid": "student_sam", "name": "Sam"}
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


# -- connection and authentication ------------------------------------------------------------


async def test_invalid_token_is_refused_and_closed(people):
    client = Client(await Client.open(), "x", 0)
    await client.send(type="auth", token="not-a-token")
    error = await client.next("error")
    assert error["code"] == "ERR_INVALID_TOKEN"
    assert await client.closed() == 4001


async def test_token_of_another_account_registration_is_refused(people, make_account):
    from directcall import tokens

    other, _ = await database_sync_to_async(make_account)(name="Other")
    jane = people["tutor_jane"]
    # A token claiming jane's registration but another account: the signature is valid,
    # the pairing is not.
    token = tokens.issue(other.pk, jane.pk, jane.cuid, "device-0001")
    client = Client(await Client.open(), "x", 0)
    await client.send(type="auth", token=token)
    assert (await client.next("error"))["code"] == "ERR_INVALID_TOKEN"
    assert await client.closed() == 4001


async def test_no_auth_frame_closes_after_the_timeout(people):
    client = Client(await Client.open(), "x", 0)
    assert (await client.next("error"))["code"] == "ERR_NOT_AUTHENTICATED"
    assert await client.closed() == 4001


async def test_frames_before_auth_are_refused(people):
    client = Client(await Client.open(), "x", 0)
    await client.send(type="invite", receiver="student_sam", context="hi", sdp=OFFER)
    assert (await client.next("error"))["code"] == "ERR_NOT_AUTHENTICATED"
    await client.send(type="ping")
    assert (await client.next("error"))["code"] == "ERR_NOT_AUTHENTICATED"
    await client.close()


async def test_foreign_origin_is_refused(people):
    from channels.testing import WebsocketCommunicator

    from example_project.asgi import application

    communicator = WebsocketCommunicator(
        application, "/ws/directcall/v1/", headers=[(b"origin", b"https://evil.example")]
    )
    # Accepted only to be told why (more cases in test_origins.py).
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from())["code"] == "ERR_ORIGIN_NOT_ALLOWED"
    assert (await communicator.receive_output())["code"] == 4010


async def test_ready_tells_who_you_are(people):
    jane = await Client.signed_in(people["tutor_jane"])
    assert jane.ready == {
        "type": "ready",
        "cuid": "tutor_jane",
        "name": "Jane",
        "calls": [],
        "reconnect_grace": 1.0,
    }
    await jane.alive()
    await jane.close()


async def test_second_auth_on_one_connection_is_refused(people):
    from directcall import tokens

    jane = await Client.signed_in(people["tutor_jane"])
    sam = people["student_sam"]
    await jane.send(type="auth", token=tokens.issue(sam.account_id, sam.pk, sam.cuid, "d-000001"))
    assert (await jane.next("error"))["code"] == "ERR_BAD_FRAME"
    assert jane.ready["cuid"] == "tutor_jane"
    await jane.close()


# -- presence ---------------------------------------------------------------------------------


async def test_another_device_gets_already_signed_in(people):
    first = await Client.signed_in(people["tutor_jane"], device="laptop-0001")
    second = Client(await Client.open(), "tutor_jane", people["tutor_jane"].pk)
    from directcall import tokens

    jane = people["tutor_jane"]
    await second.send(
        type="auth", token=tokens.issue(jane.account_id, jane.pk, jane.cuid, "phone-00001")
    )
    assert (await second.next("error"))["code"] == "ERR_ALREADY_SIGNEDIN"
    assert await second.closed() == 4002
    await first.alive()
    # The first device still receives calls.
    sam = await Client.signed_in(people["student_sam"])
    call_id = (await sam.invite("tutor_jane"))["call_id"]
    await first.next("incoming", call_id=call_id)
    await first.close()
    await sam.close()


async def test_the_same_device_takes_its_place_back(people):
    old = await Client.signed_in(people["tutor_jane"], device="laptop-0001")
    new = await Client.signed_in(people["tutor_jane"], device="laptop-0001")
    await old.next("replaced")
    assert await old.closed() == 4003
    await new.alive()
    sam = await Client.signed_in(people["student_sam"])
    call_id = (await sam.invite("tutor_jane"))["call_id"]
    await new.next("incoming", call_id=call_id)
    await new.close()
    await sam.close()


async def test_presence_is_released_on_disconnect(people):
    from directcall import presence

    jane = await Client.signed_in(people["tutor_jane"])
    account_pk = people["tutor_jane"].account_id
    assert await database_sync_to_async(presence.lookup)(account_pk, "tutor_jane") is not None
    await jane.close()
    assert await database_sync_to_async(presence.lookup)(account_pk, "tutor_jane") is None
    # ...so another device may now sign in.
    phone = await Client.signed_in(people["tutor_jane"], device="phone-00001")
    await phone.close()


# -- call outcomes ------------------------------------------------------------------------------


async def test_declined(people):
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    await sam.send(type="decline", call_id=call_id)
    state = await jane.next("state", call_id=call_id, status="declined")
    assert state["reason"] == "user_declined" and state["duration"] is None
    await sam.next("state", call_id=call_id, status="declined")
    assert (await db_call(call_id)).status == CallStatus.DECLINED
    await jane.close()
    await sam.close()


async def test_declined_because_the_microphone_failed(people):
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    await sam.send(type="decline", call_id=call_id, reason="user_media_failed")
    state = await jane.next("state", call_id=call_id, status="declined")
    assert state["reason"] == "user_media_failed"
    await jane.close()
    await sam.close()


async def test_cancelled(people):
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    await jane.send(type="cancel", call_id=call_id)
    await jane.next("state", call_id=call_id, status="cancelled", reason="caller_cancelled")
    await sam.next("state", call_id=call_id, status="cancelled")
    # The callee can no longer answer it.
    await sam.send(type="accept", call_id=call_id, sdp=ANSWER)
    assert (await sam.next("error"))["code"] == "ERR_UNKNOWN_CALL"
    assert (await db_call(call_id)).status == CallStatus.CANCELLED
    await jane.close()
    await sam.close()


async def test_missed_after_the_ring_timeout(people, settings):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "RING_TIMEOUT": 1}
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    incoming = await sam.next("incoming", call_id=call_id)
    assert 0 < incoming["ring_timeout"] <= 1
    state = await jane.next("state", call_id=call_id, status="missed", timeout=5)
    assert state["reason"] == "invite_timeout"
    await sam.next("state", call_id=call_id, status="missed")
    await sam.send(type="accept", call_id=call_id, sdp=ANSWER)
    assert (await sam.next("error"))["code"] == "ERR_UNKNOWN_CALL"
    assert (await db_call(call_id)).status == CallStatus.MISSED
    await jane.close()
    await sam.close()


async def test_account_ring_timeout_override(people, settings):
    account = people["tutor_jane"].account
    account.ring_timeout = 1
    await database_sync_to_async(account.save)()
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await jane.next("state", call_id=call_id, status="missed", timeout=5)
    await jane.close()
    await sam.close()


async def test_busy(people):
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    gil = await Client.signed_in(people["grocer_gil"])
    first = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=first)
    second = (await gil.invite("student_sam"))["call_id"]
    state = await gil.next("state", call_id=second, status="busy")
    assert state["reason"] == "user_busy"
    assert [f for f in await sam.quiet() if f.get("call_id") == second] == []
    assert (await db_call(second)).status == CallStatus.BUSY
    assert (await db_call(first)).status == CallStatus.INITIATED
    for client in (jane, sam, gil):
        await client.close()


async def test_receiver_offline_is_404(people):
    jane = await Client.signed_in(people["tutor_jane"])
    await jane.send(type="invite", ref="a", receiver="student_sam", context="hi", sdp=OFFER)
    error = await jane.next("error")
    assert error["code"] == 404 and error["ref"] == "a"
    await jane.send(type="invite", ref="b", receiver="nobody_here", context="hi", sdp=OFFER)
    assert (await jane.next("error", ref="b"))["code"] == 404
    assert await database_sync_to_async(Call.objects.count)() == 0
    await jane.close()


@pytest.mark.parametrize(
    "frame,problem",
    [
        ({"receiver": "91_8899555"}, "receiver"),
        ({"receiver": None}, "receiver"),
        ({"context": ""}, "context"),
        ({"context": "x" * 281}, "context"),
        ({"receiver_image": "javascript:alert(1)"}, "receiver_image"),
        ({"receiver": "tutor_jane"}, "yourself"),
    ],
)
async def test_invalid_call_parameters(people, frame, problem):
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    invite = {"type": "invite", "receiver": "student_sam", "context": "hi", "sdp": OFFER, **frame}
    await jane.send(**invite)
    error = await jane.next("error")
    assert error["code"] == "ERR_INVALID_CALL_PARAMETERS" and problem in error["message"]
    assert await database_sync_to_async(Call.objects.count)() == 0
    assert await sam.quiet() == []
    await jane.close()
    await sam.close()


async def test_outgoing_call_in_progress(people):
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    gil = await Client.signed_in(people["grocer_gil"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await jane.send(type="invite", receiver="grocer_gil", context="hi", sdp=OFFER)
    assert (await jane.next("error"))["code"] == "ERR_OUTGOING_CALL_IN_PROGRESS"
    # A callee with a ringing call is in a call too.
    await sam.send(type="invite", receiver="grocer_gil", context="hi", sdp=OFFER)
    assert (await sam.next("error"))["code"] == "ERR_OUTGOING_CALL_IN_PROGRESS"
    assert [f for f in await gil.quiet() if f["type"] == "incoming"] == []
    assert await database_sync_to_async(Call.objects.count)() == 1
    await jane.send(type="cancel", call_id=call_id)
    await jane.next("state", status="cancelled")
    # Once the call is over, a new one may start.
    assert (await jane.invite("grocer_gil"))["call_id"]
    for client in (jane, sam, gil):
        await client.close()


async def test_max_call_duration(people, settings):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "MAX_CALL_DURATION": 1}
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    await sam.send(type="accept", call_id=call_id, sdp=ANSWER)
    await jane.next("state", call_id=call_id, status="answered")
    state = await jane.next("state", call_id=call_id, status="over", timeout=5)
    assert state["reason"] == "max_duration" and state["duration"] >= 1
    await sam.next("state", call_id=call_id, status="over")
    await jane.close()
    await sam.close()


async def test_hangup_while_ringing_cancels_and_cancel_after_answer_hangs_up(people):
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    await jane.send(type="hangup", call_id=call_id)
    await sam.next("state", call_id=call_id, status="cancelled")
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    await sam.send(type="accept", call_id=call_id, sdp=ANSWER)
    await jane.next("state", call_id=call_id, status="answered")
    await jane.send(type="cancel", call_id=call_id)
    await sam.next("state", call_id=call_id, status="over", reason="user_hangup")
    await jane.close()
    await sam.close()


async def test_only_the_callee_accepts_or_declines_and_only_the_caller_cancels(people):
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    for frame in (
        {"type": "accept", "call_id": call_id, "sdp": ANSWER},
        {"type": "decline", "call_id": call_id},
        {"type": "ringing", "call_id": call_id},
    ):
        await jane.send(**frame)
        assert (await jane.next("error"))["code"] == "ERR_UNKNOWN_CALL"
    await sam.send(type="cancel", call_id=call_id)
    assert (await sam.next("error"))["code"] == "ERR_UNKNOWN_CALL"
    assert (await db_call(call_id)).status == CallStatus.INITIATED
    await jane.close()
    await sam.close()


# -- isolation --------------------------------------------------------------------------------


async def test_relay_is_refused_to_non_parties(people):
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    gil = await Client.signed_in(people["grocer_gil"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    for frame in (
        {"type": "candidates", "call_id": call_id, "candidates": []},
        {"type": "renegotiate", "call_id": call_id, "sdp_type": "offer", "sdp": OFFER},
        {"type": "hangup", "call_id": call_id},
        {"type": "cancel", "call_id": call_id},
        {"type": "accept", "call_id": call_id, "sdp": ANSWER},
    ):
        await gil.send(**frame)
        assert (await gil.next("error"))["code"] == "ERR_UNKNOWN_CALL"
    assert await jane.quiet() == [] and await sam.quiet() == []
    assert (await db_call(call_id)).status == CallStatus.INITIATED
    for client in (jane, sam, gil):
        await client.close()


async def test_accounts_are_isolated(people, make_account):
    other_account, _ = await database_sync_to_async(make_account)(name="Other")
    # The same cuid in another account is another person.
    other_sam = await database_sync_to_async(make_registration)(other_account, "student_sam")
    mallory = await database_sync_to_async(make_registration)(other_account, "mallory_m")
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    sam_elsewhere = await Client.signed_in(other_sam, device="other-device")
    eve = await Client.signed_in(mallory)
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    assert await sam_elsewhere.quiet() == []
    # Nobody in the other account can reach jane, nor touch her call.
    await eve.send(type="invite", receiver="tutor_jane", context="hi", sdp=OFFER)
    assert (await eve.next("error"))["code"] == 404
    await eve.send(type="candidates", call_id=call_id, candidates=[])
    assert (await eve.next("error"))["code"] == "ERR_UNKNOWN_CALL"
    await sam_elsewhere.send(type="accept", call_id=call_id, sdp=ANSWER)
    assert (await sam_elsewhere.next("error"))["code"] == "ERR_UNKNOWN_CALL"
    assert (await db_call(call_id)).status == CallStatus.INITIATED
    for client in (jane, sam, sam_elsewhere, eve):
        await client.close()


async def test_identity_in_a_frame_is_ignored(people):
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    await jane.send(
        type="invite",
        receiver="student_sam",
        context="hi",
        sdp=OFFER,
        cuid="grocer_gil",
        caller="grocer_gil",
        name="Gil",
        registration=people["grocer_gil"].pk,
    )
    call_id = (await jane.next("invited"))["call_id"]
    incoming = await sam.next("incoming", call_id=call_id)
    assert incoming["caller"]["cuid"] == "tutor_jane"
    assert (await db_call(call_id)).caller.cuid == "tutor_jane"
    await jane.close()
    await sam.close()


# -- hostile frames -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw,code",
    [
        ("not json", "ERR_BAD_FRAME"),
        ("[1, 2]", "ERR_BAD_FRAME"),
        ('"text"', "ERR_BAD_FRAME"),
        ("{}", "ERR_BAD_FRAME"),
        ('{"type": "launch_missiles"}', "ERR_BAD_FRAME"),
        ('{"type": 5}', "ERR_BAD_FRAME"),
        ('{"type": ["invite"]}', "ERR_BAD_FRAME"),
        ('{"type": "candidates", "call_id": "not-a-uuid"}', "ERR_BAD_FRAME"),
        (
            '{"type": "accept", "call_id": "00000000-0000-0000-0000-000000000000"}',
            "ERR_UNKNOWN_CALL",
        ),
        ('{"type": "invite", "receiver": "student_sam", "context": "hi"}', "ERR_BAD_FRAME"),
        (
            '{"type": "invite", "receiver": "student_sam", "context": "hi", "sdp": 5}',
            "ERR_BAD_FRAME",
        ),
        (
            '{"type": "invite", "receiver": "student_sam", "context": "hi", "sdp": "v=0",'
            ' "ref": {"nested": 1}}',
            "ERR_BAD_FRAME",
        ),
        ("[" * 100_000 + "]" * 100_000, "ERR_FRAME_TOO_LARGE"),
        ("[" * 5000 + "]" * 5000, "ERR_BAD_FRAME"),
        (
            '{"type": "invite", "receiver": "student_sam", "context": "' + "x" * 70_000 + '"}',
            "ERR_FRAME_TOO_LARGE",
        ),
    ],
)
async def test_malformed_frames_get_an_error_and_change_nothing(people, raw, code):
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    await jane.send_raw(text=raw)
    assert (await jane.next("error"))["code"] == code
    await jane.alive()
    assert await sam.quiet(0.1) == []
    assert await database_sync_to_async(Call.objects.count)() == 0
    await jane.close()
    await sam.close()


async def test_binary_frames_are_refused(people):
    jane = await Client.signed_in(people["tutor_jane"])
    await jane.send_raw(data=b"\x00\x01binary")
    assert (await jane.next("error"))["code"] == "ERR_BAD_FRAME"
    await jane.alive()
    await jane.close()


async def test_bad_candidates_are_refused_and_not_relayed(people):
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    for candidates in (
        "nope",
        [1],
        [{"candidate": 5}],
        [{"candidate": "x" * 2000}],
        [{"candidate": "c", "sdpMLineIndex": "0"}],
        [{"candidate": "c"}] * 65,
    ):
        await jane.send(type="candidates", call_id=call_id, candidates=candidates)
        assert (await jane.next("error"))["code"] == "ERR_BAD_FRAME"
    await jane.send(type="candidates", call_id=call_id, candidates=[], end="yes")
    assert (await jane.next("error"))["code"] == "ERR_BAD_FRAME"
    assert [f for f in await sam.quiet() if f["type"] == "candidates"] == []
    # Unknown fields are dropped, not relayed.
    await jane.send(
        type="candidates", call_id=call_id, candidates=[{"candidate": "c", "evil": "<script>"}]
    )
    relayed = await sam.next("candidates")
    assert relayed["candidates"] == [
        {"candidate": "c", "sdpMid": None, "sdpMLineIndex": None, "usernameFragment": None}
    ]
    await jane.close()
    await sam.close()


async def test_floods_are_limited_and_the_connection_recovers(people, settings):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "FLOOD_RATE": 5, "FLOOD_BURST": 10}
    jane = await Client.signed_in(people["tutor_jane"])
    for _ in range(30):
        await jane.send(type="ping")
    error = await jane.next("error")
    assert error["code"] == "ERR_RATE_LIMITED"
    pongs = [f for f in await jane.quiet(0.3) if f["type"] == "pong"]
    assert 9 <= len(pongs) + 1 <= 12  # the burst (one pong was consumed before the error)
    await jane.alive()  # tokens refill at FLOOD_RATE
    await jane.close()


async def test_a_bad_frame_does_not_disturb_other_calls(people):
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    gil = await Client.signed_in(people["grocer_gil"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    await gil.send_raw(text="{garbage")
    await gil.send_raw(text='{"type": "hangup", "call_id": "' + call_id + '"}')
    await sam.send(type="accept", call_id=call_id, sdp=ANSWER)
    await jane.next("state", call_id=call_id, status="answered")
    for client in (jane, sam, gil):
        await client.close()


# -- dropped connections ------------------------------------------------------------------------


async def answered_call(caller: Client, callee: Client) -> str:
    call_id = (await caller.invite(callee.cuid))["call_id"]
    await callee.next("incoming", call_id=call_id)
    await callee.send(type="accept", call_id=call_id, sdp=ANSWER)
    await caller.next("state", call_id=call_id, status="answered")
    await callee.next("state", call_id=call_id, status="answered")
    return call_id


async def test_a_ringing_call_of_a_caller_who_left_is_cancelled(people):
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    await jane.close()
    state = await sam.next("state", call_id=call_id, status="cancelled")
    assert state["reason"] == "connection_lost"
    await sam.close()


async def test_a_callee_who_reloads_while_ringing_sees_the_call_again(people):
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    await sam.close()
    sam = await Client.signed_in(people["student_sam"])
    assert [c["call_id"] for c in sam.ready["calls"]] == [call_id]
    assert sam.ready["calls"][0]["role"] == "callee"
    incoming = await sam.next("incoming", call_id=call_id)
    assert incoming["sdp"] == OFFER
    await sam.send(type="accept", call_id=call_id, sdp=ANSWER)
    await jane.next("state", call_id=call_id, status="answered")
    await jane.close()
    await sam.close()


async def test_an_answered_call_survives_a_short_drop(people):
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    call_id = await answered_call(jane, sam)
    await sam.close()
    assert (await jane.next("peer", call_id=call_id))["connected"] is False
    sam = await Client.signed_in(people["student_sam"])
    assert sam.ready["calls"][0] == {
        "call_id": call_id,
        "status": "answered",
        "role": "callee",
        "peer": {"cuid": "tutor_jane", "name": "Jane"},
        "context": "Tutor is calling",
    }
    assert (await jane.next("peer", call_id=call_id))["connected"] is True
    # Past the grace period the call is still up, and relays work on the new connection.
    await jane.quiet(1.5)
    await jane.send(type="candidates", call_id=call_id, candidates=[])
    await sam.next("candidates", call_id=call_id)
    assert (await db_call(call_id)).status == CallStatus.ANSWERED
    await sam.send(type="hangup", call_id=call_id)
    await jane.next("state", call_id=call_id, status="over", reason="user_hangup")
    await jane.close()
    await sam.close()


async def test_connection_lost_after_the_grace_period(people):
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    call_id = await answered_call(jane, sam)
    await sam.close()
    await jane.next("peer", call_id=call_id, connected=False)
    state = await jane.next("state", call_id=call_id, status="over", timeout=5)
    assert state["reason"] == "connection_lost"
    call = await db_call(call_id)
    assert (call.status, call.end_reason) == (CallStatus.OVER, "connection_lost")
    # The party who came back too late is told the call's final state.
    sam = await Client.signed_in(people["student_sam"], resume=[call_id])
    assert sam.ready["calls"] == []
    final = await sam.next("state", call_id=call_id)
    assert (final["status"], final["reason"]) == ("over", "connection_lost")
    await jane.close()
    await sam.close()


async def test_resume_never_reveals_other_peoples_calls(people):
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    gil = await Client.signed_in(people["grocer_gil"], resume=[call_id, "junk", 5])
    assert await gil.quiet() == []
    for client in (jane, sam, gil):
        await client.close()


# -- races: exactly one outcome ------------------------------------------------------------------


@pytest.fixture
def ended_signals():
    from directcall import signals

    received = []

    def receiver(sender, call, status, reason, duration, **kwargs):
        received.append((str(call.pk), status, reason, duration))

    signals.call_ended.connect(receiver)
    yield received
    signals.call_ended.disconnect(receiver)


async def test_simultaneous_hangups_end_the_call_once(people, ended_signals):
    import asyncio

    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    call_id = await answered_call(jane, sam)
    await asyncio.gather(
        jane.send(type="hangup", call_id=call_id), sam.send(type="hangup", call_id=call_id)
    )
    for client in (jane, sam):
        await client.next("state", call_id=call_id, status="over")
    frames = [*await jane.quiet(0.5), *await sam.quiet(0.1)]
    assert [f for f in frames if f["type"] == "state"] == []
    # The loser is told the call had already ended, nothing more.
    assert all(f["type"] == "error" and f["code"] == "ERR_CALL_STATE" for f in frames)
    assert [s[:3] for s in ended_signals] == [(call_id, "over", "user_hangup")]
    await jane.close()
    await sam.close()


async def test_two_invites_to_one_callee_at_once(people, make_account):
    import asyncio

    jane = await Client.signed_in(people["tutor_jane"])
    gil = await Client.signed_in(people["grocer_gil"])
    sam = await Client.signed_in(people["student_sam"])
    await asyncio.gather(
        jane.send(type="invite", receiver="student_sam", context="one", sdp=OFFER),
        gil.send(type="invite", receiver="student_sam", context="two", sdp=OFFER),
    )
    first, second = await jane.next("invited"), await gil.next("invited")
    statuses = sorted(
        [(await db_call(first["call_id"])).status, (await db_call(second["call_id"])).status]
    )
    assert statuses == [CallStatus.BUSY, CallStatus.INITIATED]
    incoming = [f for f in await sam.quiet(0.5) if f["type"] == "incoming"]
    assert len(incoming) == 1
    for client in (jane, sam, gil):
        await client.close()


async def test_accept_after_the_deadline_is_refused_even_before_the_timer(people):
    """The deadline is checked by the accepting UPDATE itself, not only by timers."""
    from datetime import timedelta

    from django.utils import timezone

    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    past = timezone.now() - timedelta(seconds=1)
    await database_sync_to_async(Call.objects.filter(pk=call_id).update)(deadline=past)
    await sam.send(type="accept", call_id=call_id, sdp=ANSWER)
    assert (await sam.next("error", call_id=call_id))["code"] == "ERR_CALL_STATE"
    await jane.next("state", call_id=call_id, status="missed")  # the sweep ends it
    assert (await db_call(call_id)).status == CallStatus.MISSED
    await jane.close()
    await sam.close()


def race(*actions):
    """Run the actions in threads released at the same instant; return their results."""
    import threading

    from django.db import connection

    barrier = threading.Barrier(len(actions))
    results = [None] * len(actions)

    def run(index, action):
        barrier.wait()
        try:
            results[index] = action()
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=item) for item in enumerate(actions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_accept_racing_expire_has_one_winner(people, ended_signals):
    """Accept and the ring timeout fired at the same instant from two threads, 20 times."""
    from datetime import timedelta
    from functools import partial

    from django.utils import timezone

    from directcall import calls
    from directcall.validation import clean_call_params

    jane, sam = people["tutor_jane"], people["student_sam"]
    for _ in range(20):
        call = calls.start(jane.pk, clean_call_params("student_sam", "race"))
        deadline = timezone.now() + timedelta(milliseconds=5)
        Call.objects.filter(pk=call.pk).update(deadline=deadline)
        accepted, expired = race(
            partial(calls.accept, call.pk, sam.pk),
            partial(calls.expire, call.pk, deadline + timedelta(seconds=1)),
        )
        assert (accepted is None) != (expired is None)
        final = Call.objects.get(pk=call.pk)
        assert final.status == (CallStatus.ANSWERED if accepted else CallStatus.MISSED)
        calls.leave(call.pk, jane.pk)  # end it so the next round may start
    assert len(ended_signals) == 20  # one call_ended per call, never two
    assert len({s[0] for s in ended_signals}) == 20


def test_hangups_racing_from_both_sides_have_one_winner(people, ended_signals):
    from functools import partial

    from directcall import calls
    from directcall.validation import clean_call_params

    jane, sam = people["tutor_jane"], people["student_sam"]
    for _ in range(10):
        call = calls.start(jane.pk, clean_call_params("student_sam", "race"))
        calls.accept(call.pk, sam.pk)
        results = race(
            partial(calls.hang_up, call.pk, jane.pk), partial(calls.hang_up, call.pk, sam.pk)
        )
        assert sum(result is not None for result in results) == 1
    assert len(ended_signals) == 10


def test_concurrent_invites_to_one_callee_one_rings(people):
    from functools import partial

    from directcall import calls
    from directcall.validation import clean_call_params

    jane, gil = people["tutor_jane"], people["grocer_gil"]
    for _ in range(10):
        first, second = race(
            partial(calls.start, jane.pk, clean_call_params("student_sam", "one")),
            partial(calls.start, gil.pk, clean_call_params("student_sam", "two")),
        )
        assert sorted([first.status, second.status]) == [CallStatus.BUSY, CallStatus.INITIATED]
        ringing = first if first.status == CallStatus.INITIATED else second
        calls.leave(ringing.pk, ringing.caller_id)
    assert not Call.objects.live().exists()


# -- signals and records -------------------------------------------------------------------------


async def test_signals_fire_once_per_transition_with_their_arguments(people, ended_signals):
    from directcall import signals

    seen = []

    def on(name):
        def receiver(sender, call, **kwargs):
            seen.append((name, sender, str(call.pk), call.status))

        return receiver

    receivers = {
        "initiated": on("initiated"),
        "ringing": on("ringing"),
        "answered": on("answered"),
    }
    for name, receiver in receivers.items():
        getattr(signals, f"call_{name}").connect(receiver)
    try:
        jane = await Client.signed_in(people["tutor_jane"])
        sam = await Client.signed_in(people["student_sam"])
        call_id = (await jane.invite("student_sam"))["call_id"]
        await sam.next("incoming", call_id=call_id)
        await sam.send(type="ringing", call_id=call_id)
        await jane.next("state", status="ringing")
        await sam.send(type="ringing", call_id=call_id)  # a repeat changes nothing
        await sam.send(type="accept", call_id=call_id, sdp=ANSWER)
        await jane.next("state", status="answered")
        await jane.send(type="hangup", call_id=call_id)
        await sam.next("state", status="over")
    finally:
        for name, receiver in receivers.items():
            getattr(signals, f"call_{name}").disconnect(receiver)
    assert seen == [
        ("initiated", Call, call_id, "initiated"),
        ("ringing", Call, call_id, "ringing"),
        ("answered", Call, call_id, "answered"),
    ]
    ((ended_id, status, reason, duration),) = ended_signals
    call = await db_call(call_id)
    assert (ended_id, status, reason, duration) == (call_id, "over", "user_hangup", call.duration)
    await jane.close()
    await sam.close()


async def test_records_match_what_the_clients_saw(people):
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    gil = await Client.signed_in(people["grocer_gil"])
    seen = {}
    call_id = (
        await jane.invite(
            "student_sam",
            receiver_image="https://x.example/s.png",
            initiator_image="https://x.example/j.png",
        )
    )["call_id"]
    await sam.next("incoming", call_id=call_id)
    await sam.send(type="decline", call_id=call_id)
    seen[call_id] = (await jane.next("state", call_id=call_id))["status"]
    call_id = await answered_call(jane, sam)
    busy_id = (await gil.invite("student_sam"))["call_id"]
    seen[busy_id] = (await gil.next("state", call_id=busy_id))["status"]
    await jane.send(type="hangup", call_id=call_id)
    seen[call_id] = (await sam.next("state", call_id=call_id, status="over"))["status"]
    records = await database_sync_to_async(
        lambda: {str(c.pk): c.status for c in Call.objects.all()}
    )()
    assert records == seen
    first = await database_sync_to_async(lambda: Call.objects.filter(status="declined").get())()
    assert first.receiver_image == "https://x.example/s.png"
    assert first.caller_image == "https://x.example/j.png"
    for client in (jane, sam, gil):
        await client.close()


# -- the adapter's can_call ---------------------------------------------------------------------


class OnlyTutorsAndStudents(DefaultCallAdapter):
    """Tutors and students may call each other; nobody calls the grocer."""

    def can_call(self, caller, callee):
        kinds = {caller.cuid.split("_")[0], callee.cuid.split("_")[0]}
        return kinds == {"tutor", "student"}


async def test_can_call_refusals_reach_the_caller_and_record_nothing(people, settings):
    settings.DIRECTCALL = {
        **settings.DIRECTCALL,
        "ADAPTER": f"{__name__}.OnlyTutorsAndStudents",
    }
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    gil = await Client.signed_in(people["grocer_gil"])
    await jane.send(type="invite", ref="g", receiver="grocer_gil", context="hi", sdp=OFFER)
    error = await jane.next("error", ref="g")
    assert error["code"] == "ERR_CALL_NOT_ALLOWED"
    assert [f for f in await gil.quiet() if f["type"] == "incoming"] == []
    assert await database_sync_to_async(Call.objects.count)() == 0
    # Allowed pairs still call.
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    for client in (jane, sam, gil):
        await client.close()


# -- call spam ------------------------------------------------------------------------------------


async def test_invites_per_cuid_are_limited(people, settings):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "CALL_RATE": "3/min"}
    jane = await Client.signed_in(people["tutor_jane"])
    gil = await Client.signed_in(people["grocer_gil"])
    for ref in ("a", "b", "c"):  # offline receivers count too: no probing who is online
        await jane.send(type="invite", ref=ref, receiver="nobody_home", context="hi", sdp=OFFER)
        assert (await jane.next("error", ref=ref))["code"] == 404
    await jane.send(type="invite", ref="d", receiver="grocer_gil", context="hi", sdp=OFFER)
    error = await jane.next("error", ref="d")
    assert error["code"] == "ERR_RATE_LIMITED" and "3 per 60" in error["message"]
    assert [f for f in await gil.quiet() if f["type"] == "incoming"] == []
    # Another caller has its own budget.
    sam = await Client.signed_in(people["student_sam"])
    assert (await sam.invite("grocer_gil"))["call_id"]
    for client in (jane, gil, sam):
        await client.close()


def test_the_invite_window_passes(people, settings):
    from directcall import calls
    from directcall.errors import DirectCallError

    settings.DIRECTCALL = {**settings.DIRECTCALL, "CALL_RATE": "2/min"}
    account_pk = people["tutor_jane"].account_id
    start = 1_000_020.0  # the start of a 60 s window
    calls.check_invite_rate(account_pk, "tutor_jane", now=start)
    calls.check_invite_rate(account_pk, "tutor_jane", now=start + 1)
    with pytest.raises(DirectCallError):
        calls.check_invite_rate(account_pk, "tutor_jane", now=start + 2)
    calls.check_invite_rate(account_pk, "tutor_jane", now=start + 61)  # next window
