"""The signaling consumer through the demo's real ASGI stack (WebsocketCommunicator).

Every test runs twice: on the in-memory channel layer with the local-memory cache, and on
Redis for both.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from channels.db import database_sync_to_async

from directcall.adapter import DefaultCallAdapter
from directcall.models import Account, Call, CallStatus

from .wsclient import ANSWER, CANDIDATE, OFFER, answered_call, make_registration

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("signaling")]


@database_sync_to_async
def db_call(call_id):
    return Call.objects.select_related("caller", "callee").get(pk=call_id)


async def test_full_call(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
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
    candidate = CANDIDATE
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


# -- connection and authentication ------------------------------------------------------------


async def test_invalid_token_is_refused_and_closed(people, clients):
    client = await clients.anonymous()
    await client.send(type="auth", token="not-a-token")
    error = await client.next("error")
    assert error["code"] == "ERR_INVALID_TOKEN"
    assert await client.closed() == 4001


async def test_token_of_another_account_registration_is_refused(people, make_account, clients):
    from directcall import tokens

    other, _ = await database_sync_to_async(make_account)(name="Other")
    jane = people["tutor_jane"]
    # A token claiming jane's registration but another account: the signature is valid,
    # the pairing is not.
    token = tokens.issue(other.pk, jane.pk, jane.cuid, "device-0001")
    client = await clients.anonymous()
    await client.send(type="auth", token=token)
    assert (await client.next("error"))["code"] == "ERR_INVALID_TOKEN"
    assert await client.closed() == 4001


async def test_no_auth_frame_closes_after_the_timeout(people, settings, clients):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "AUTH_TIMEOUT": 1}
    client = await clients.anonymous()
    assert (await client.next("error"))["code"] == "ERR_NOT_AUTHENTICATED"
    assert await client.closed() == 4001


async def test_frames_before_auth_are_refused(people, clients):
    client = await clients.anonymous()
    await client.send(type="invite", receiver="student_sam", context="hi", sdp=OFFER)
    assert (await client.next("error"))["code"] == "ERR_NOT_AUTHENTICATED"
    await client.send(type="ping")
    assert (await client.next("error"))["code"] == "ERR_NOT_AUTHENTICATED"


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


async def test_ready_tells_who_you_are(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    device_key = jane.ready.pop("device_key")  # the first tab of this device is given one
    assert isinstance(device_key, str) and len(device_key) >= 32
    assert jane.ready == {
        "type": "ready",
        "cuid": "tutor_jane",
        "name": "Jane",
        "calls": [],
        "reconnect_grace": 1.0,
        "page_grace": 8.0,
        "feedback": False,
    }
    await jane.alive()


async def test_second_auth_on_one_connection_is_refused(people, clients):
    from directcall import tokens

    jane = await clients.sign_in(people["tutor_jane"])
    sam = people["student_sam"]
    await jane.send(type="auth", token=tokens.issue(sam.account_id, sam.pk, sam.cuid, "d-000001"))
    assert (await jane.next("error"))["code"] == "ERR_BAD_FRAME"
    assert jane.ready["cuid"] == "tutor_jane"


# -- presence ---------------------------------------------------------------------------------


async def test_another_device_gets_already_signed_in(people, clients):
    first = await clients.sign_in(people["tutor_jane"], device="laptop-0001")
    second = await clients.anonymous()
    from directcall import tokens

    jane = people["tutor_jane"]
    await second.send(
        type="auth", token=tokens.issue(jane.account_id, jane.pk, jane.cuid, "phone-00001")
    )
    assert (await second.next("error"))["code"] == "ERR_ALREADY_SIGNEDIN"
    assert await second.closed() == 4002
    await first.alive()
    # The first device still receives calls.
    sam = await clients.sign_in(people["student_sam"])
    call_id = (await sam.invite("tutor_jane"))["call_id"]
    await first.next("incoming", call_id=call_id)


async def test_the_same_device_signs_in_again_beside_its_first_tab(people, clients):
    """A second tab (same device, its key): both are signed in, none takes the other's place
    (more in test_tabs_server.py)."""
    first = await clients.sign_in(people["tutor_jane"], device="laptop-0001")
    second = await clients.sign_in(people["tutor_jane"], device="laptop-0001")
    assert "device_key" not in second.ready  # it presented the first tab's
    await first.alive()
    await second.alive()
    sam = await clients.sign_in(people["student_sam"])
    call_id = (await sam.invite("tutor_jane"))["call_id"]
    await first.next("incoming", call_id=call_id)
    await second.next("incoming", call_id=call_id)


async def test_presence_is_released_on_disconnect(people, clients):
    from directcall import presence

    jane = await clients.sign_in(people["tutor_jane"])
    account_pk = people["tutor_jane"].account_id
    assert await database_sync_to_async(presence.lookup)(account_pk, "tutor_jane") is not None
    await jane.close()
    assert await database_sync_to_async(presence.lookup)(account_pk, "tutor_jane") is None
    # ...so another device may now sign in.
    await clients.sign_in(people["tutor_jane"], device="phone-00001")


async def test_a_connection_ended_by_an_error_leaves_no_presence_and_no_task(
    people, settings, clients, monkeypatch
):
    """However a connection ends — here a handler raises an error that is neither
    ``StopConsumer`` nor an outage — its timer is cancelled and its presence goes: an upkeep
    left running would renew the entry (and keep the user callable) for ever."""
    from directcall import presence
    from directcall.consumers import SignalingConsumer

    consumers = []
    receive = SignalingConsumer.websocket_receive

    async def websocket_receive(self, message):
        consumers.append(self)
        if "explode" in (message.get("text") or ""):
            raise RuntimeError("a bug in a handler")
        await receive(self, message)

    monkeypatch.setattr(SignalingConsumer, "websocket_receive", websocket_receive)
    jane_reg = people["tutor_jane"]
    jane = await clients.sign_in(jane_reg)
    await jane.alive()
    consumer = consumers[-1]
    # No task of its own: the process's timers run its upkeep.
    assert consumer.tasks is None and consumer.timer_slot is not None
    timers, spawned = consumer.sweeper.timers, []  # the tasks the timers' rounds start
    spawn = timers._spawn
    monkeypatch.setattr(timers, "_spawn", lambda work: spawned.append(spawn(work)) or spawned[-1])
    await jane.send_raw('{"type": "explode"}')
    assert await jane.closed() == 1011
    lookup = database_sync_to_async(presence.lookup)
    deadline = time.monotonic() + settings.DIRECTCALL["PRESENCE_TTL"]
    while await lookup(jane_reg.account_id, jane_reg.cuid) is not None:
        assert time.monotonic() < deadline, "jane still online after the connection ended"
        await asyncio.sleep(0.05)
    assert consumer.finished and consumer.timer_slot is None
    # Nothing renews the entry afterwards: the timers run a round past the renewal that was
    # due (a probe of the test's, one tick later), and the work their rounds spawned ends.
    past_due = asyncio.Event()

    class Probe:
        timer_slot = None

        def on_timer(self, now: float) -> None:
            past_due.set()

    timers.at(Probe(), consumer.renew_at + timers.TICK)
    await asyncio.wait_for(past_due.wait(), settings.DIRECTCALL["PRESENCE_TTL"] * 3)
    await asyncio.gather(*spawned)  # a renewal batched meanwhile
    assert await lookup(jane_reg.account_id, jane_reg.cuid) is None


# -- call outcomes ------------------------------------------------------------------------------


async def test_declined(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    await sam.send(type="decline", call_id=call_id)
    state = await jane.next("state", call_id=call_id, status="declined")
    assert state["reason"] == "user_declined" and state["duration"] is None
    await sam.next("state", call_id=call_id, status="declined")
    assert (await db_call(call_id)).status == CallStatus.DECLINED


async def test_declined_because_the_microphone_failed(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    await sam.send(type="decline", call_id=call_id, reason="user_media_failed")
    state = await jane.next("state", call_id=call_id, status="declined")
    assert state["reason"] == "user_media_failed"


async def test_cancelled(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    await jane.send(type="cancel", call_id=call_id)
    await jane.next("state", call_id=call_id, status="cancelled", reason="caller_cancelled")
    await sam.next("state", call_id=call_id, status="cancelled")
    # The callee can no longer answer it.
    await sam.send(type="accept", call_id=call_id, sdp=ANSWER)
    assert (await sam.next("error"))["code"] == "ERR_UNKNOWN_CALL"
    assert (await db_call(call_id)).status == CallStatus.CANCELLED


async def test_missed_after_the_ring_timeout(people, settings, clients):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "RING_TIMEOUT": 1}
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    incoming = await sam.next("incoming", call_id=call_id)
    assert 0 < incoming["ring_timeout"] <= 1
    state = await jane.next("state", call_id=call_id, status="missed", timeout=5)
    assert state["reason"] == "invite_timeout"
    await sam.next("state", call_id=call_id, status="missed")
    await sam.send(type="accept", call_id=call_id, sdp=ANSWER)
    assert (await sam.next("error"))["code"] == "ERR_UNKNOWN_CALL"
    assert (await db_call(call_id)).status == CallStatus.MISSED


async def test_account_ring_timeout_override(people, settings, clients):
    account = people["tutor_jane"].account
    account.ring_timeout = 1
    await database_sync_to_async(account.save)()
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await jane.next("state", call_id=call_id, status="missed", timeout=5)
    await sam.next("state", call_id=call_id, status="missed")


async def test_busy(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    gil = await clients.sign_in(people["grocer_gil"])
    first = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=first)
    second = (await gil.invite("student_sam"))["call_id"]
    state = await gil.next("state", call_id=second, status="busy")
    assert state["reason"] == "user_busy"
    await gil.alive()
    assert [f for f in await sam.drain() if f.get("call_id") == second] == []
    assert (await db_call(second)).status == CallStatus.BUSY
    assert (await db_call(first)).status == CallStatus.INITIATED


async def test_receiver_offline_is_404(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    await jane.send(type="invite", ref="a", receiver="student_sam", context="hi", sdp=OFFER)
    error = await jane.next("error")
    assert error["code"] == 404 and error["ref"] == "a"
    await jane.send(type="invite", ref="b", receiver="nobody_here", context="hi", sdp=OFFER)
    assert (await jane.next("error", ref="b"))["code"] == 404
    assert await database_sync_to_async(Call.objects.count)() == 0


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
async def test_invalid_call_parameters(people, frame, problem, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    invite = {"type": "invite", "receiver": "student_sam", "context": "hi", "sdp": OFFER, **frame}
    await jane.send(**invite)
    error = await jane.next("error")
    assert error["code"] == "ERR_INVALID_CALL_PARAMETERS" and problem in error["message"]
    assert await database_sync_to_async(Call.objects.count)() == 0
    await jane.alive()
    assert await sam.drain() == []


async def test_outgoing_call_in_progress(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    gil = await clients.sign_in(people["grocer_gil"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await jane.send(type="invite", receiver="grocer_gil", context="hi", sdp=OFFER)
    assert (await jane.next("error"))["code"] == "ERR_OUTGOING_CALL_IN_PROGRESS"
    # A callee with a ringing call is in a call too.
    await sam.send(type="invite", receiver="grocer_gil", context="hi", sdp=OFFER)
    assert (await sam.next("error"))["code"] == "ERR_OUTGOING_CALL_IN_PROGRESS"
    await jane.alive()
    await sam.alive()
    assert [f for f in await gil.drain() if f["type"] == "incoming"] == []
    assert await database_sync_to_async(Call.objects.count)() == 1
    await jane.send(type="cancel", call_id=call_id)
    await jane.next("state", status="cancelled")
    # Once the call is over, a new one may start.
    assert (await jane.invite("grocer_gil"))["call_id"]


async def test_max_call_duration(people, settings, clients):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "MAX_CALL_DURATION": 1}
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    await sam.send(type="accept", call_id=call_id, sdp=ANSWER)
    await jane.next("state", call_id=call_id, status="answered")
    state = await jane.next("state", call_id=call_id, status="over", timeout=5)
    assert state["reason"] == "max_duration" and state["duration"] >= 1
    await sam.next("state", call_id=call_id, status="over")


async def test_hangup_while_ringing_cancels_and_cancel_after_answer_hangs_up(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
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


async def test_only_the_callee_accepts_or_declines_and_only_the_caller_cancels(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
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


# -- isolation --------------------------------------------------------------------------------


async def test_relay_is_refused_to_non_parties(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    gil = await clients.sign_in(people["grocer_gil"])
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
    await gil.alive()
    assert await jane.drain() == [] and await sam.drain() == []
    assert (await db_call(call_id)).status == CallStatus.INITIATED


async def test_accounts_are_isolated(people, make_account, clients):
    other_account, _ = await database_sync_to_async(make_account)(name="Other")
    # The same cuid in another account is another person.
    other_sam = await database_sync_to_async(make_registration)(other_account, "student_sam")
    mallory = await database_sync_to_async(make_registration)(other_account, "mallory_m")
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    sam_elsewhere = await clients.sign_in(other_sam, device="other-device")
    eve = await clients.sign_in(mallory)
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    await jane.alive()
    assert await sam_elsewhere.drain() == []
    # Nobody in the other account can reach jane, nor touch her call.
    await eve.send(type="invite", receiver="tutor_jane", context="hi", sdp=OFFER)
    assert (await eve.next("error"))["code"] == 404
    await eve.send(type="candidates", call_id=call_id, candidates=[])
    assert (await eve.next("error"))["code"] == "ERR_UNKNOWN_CALL"
    await sam_elsewhere.send(type="accept", call_id=call_id, sdp=ANSWER)
    assert (await sam_elsewhere.next("error"))["code"] == "ERR_UNKNOWN_CALL"
    assert (await db_call(call_id)).status == CallStatus.INITIATED


async def test_identity_in_a_frame_is_ignored(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
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
async def test_malformed_frames_get_an_error_and_change_nothing(people, raw, code, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    await jane.send_raw(text=raw)
    assert (await jane.next("error"))["code"] == code
    await jane.alive()
    assert await sam.drain() == []
    assert await database_sync_to_async(Call.objects.count)() == 0


async def test_binary_frames_are_refused(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    await jane.send_raw(data=b"\x00\x01binary")
    assert (await jane.next("error"))["code"] == "ERR_BAD_FRAME"
    await jane.alive()


async def test_bad_candidates_are_refused_and_not_relayed(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
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
    await jane.alive()
    assert [f for f in await sam.drain() if f["type"] == "candidates"] == []
    # Unknown fields are dropped, not relayed.
    await jane.send(
        type="candidates", call_id=call_id, candidates=[{"candidate": "c", "evil": "<script>"}]
    )
    relayed = await sam.next("candidates")
    assert relayed["candidates"] == [
        {"candidate": "c", "sdpMid": None, "sdpMLineIndex": None, "usernameFragment": None}
    ]


async def test_floods_are_limited_and_the_connection_recovers(people, settings, clients):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "FLOOD_RATE": 5, "FLOOD_BURST": 10}
    jane = await clients.sign_in(people["tutor_jane"])
    for _ in range(30):
        await jane.send(type="ping")
    error = await jane.next("error")
    assert error["code"] == "ERR_RATE_LIMITED"
    pongs = [f for f in await jane.quiet(0.3) if f["type"] == "pong"]
    assert 9 <= len(pongs) + 1 <= 12  # the burst (one pong was consumed before the error)
    await jane.alive()  # tokens refill at FLOOD_RATE


async def test_a_bad_frame_does_not_disturb_other_calls(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    gil = await clients.sign_in(people["grocer_gil"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    await gil.send_raw(text="{garbage")
    await gil.send_raw(text='{"type": "hangup", "call_id": "' + call_id + '"}')
    await sam.send(type="accept", call_id=call_id, sdp=ANSWER)
    await jane.next("state", call_id=call_id, status="answered")


# -- dropped connections ------------------------------------------------------------------------


async def test_a_ringing_call_of_a_caller_who_left_is_cancelled(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    await jane.close()
    state = await sam.next("state", call_id=call_id, status="cancelled")
    assert state["reason"] == "connection_lost"


async def test_a_callee_who_reloads_while_ringing_sees_the_call_again(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    await sam.close()
    sam = await clients.sign_in(people["student_sam"])
    assert [c["call_id"] for c in sam.ready["calls"]] == [call_id]
    assert sam.ready["calls"][0]["role"] == "callee"
    incoming = await sam.next("incoming", call_id=call_id)
    assert incoming["sdp"] == OFFER
    await sam.send(type="accept", call_id=call_id, sdp=ANSWER)
    await jane.next("state", call_id=call_id, status="answered")


async def test_an_answered_call_survives_a_short_drop(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    call_id = await answered_call(jane, sam)
    await sam.close()
    assert (await jane.next("peer", call_id=call_id))["connected"] is False
    sam = await clients.sign_in(people["student_sam"], resume=sam.resume(call_id))
    answered_at = (await db_call(call_id)).answered_at.timestamp()
    assert sam.ready["calls"][0] == {
        "call_id": call_id,
        "status": "answered",
        "role": "callee",
        "peer": {"cuid": "tutor_jane", "name": "Jane", "image": None},
        "context": "Tutor is calling",
        "answered_at": round(answered_at, 3),
    }
    assert (await jane.next("peer", call_id=call_id))["connected"] is True
    # Past the grace period the call is still up, and relays work on the new connection.
    await jane.quiet(1.5)
    await jane.send(type="candidates", call_id=call_id, candidates=[])
    await sam.next("candidates", call_id=call_id)
    assert (await db_call(call_id)).status == CallStatus.ANSWERED
    await sam.send(type="hangup", call_id=call_id)
    await jane.next("state", call_id=call_id, status="over", reason="user_hangup")


async def test_connection_lost_after_the_grace_period(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    call_id = await answered_call(jane, sam)
    await sam.close()
    await jane.next("peer", call_id=call_id, connected=False)
    state = await jane.next("state", call_id=call_id, status="over", timeout=5)
    assert state["reason"] == "connection_lost"
    call = await db_call(call_id)
    assert (call.status, call.end_reason) == (CallStatus.OVER, "connection_lost")
    # The party who came back too late is told the call's final state.
    sam = await clients.sign_in(people["student_sam"], resume=[call_id])
    assert sam.ready["calls"] == []
    final = await sam.next("state", call_id=call_id)
    assert (final["status"], final["reason"]) == ("over", "connection_lost")


async def test_resume_never_reveals_other_peoples_calls(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    gil = await clients.sign_in(people["grocer_gil"], resume=[call_id, "junk", 5])
    assert await gil.drain() == []


# -- races: exactly one outcome ------------------------------------------------------------------


async def test_simultaneous_hangups_end_the_call_once(people, ended_signals, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    call_id = await answered_call(jane, sam)
    await asyncio.gather(
        jane.send(type="hangup", call_id=call_id), sam.send(type="hangup", call_id=call_id)
    )
    for client in (jane, sam):
        await client.next("state", call_id=call_id, status="over")
    frames = [*await jane.drain(), *await sam.drain()]
    assert [f for f in frames if f["type"] == "state"] == []
    # The loser is told the call had already ended, nothing more.
    assert all(f["type"] == "error" and f["code"] == "ERR_CALL_STATE" for f in frames)
    assert [s[:3] for s in ended_signals] == [(call_id, "over", "user_hangup")]


async def test_two_invites_to_one_callee_at_once(people, make_account, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    gil = await clients.sign_in(people["grocer_gil"])
    sam = await clients.sign_in(people["student_sam"])
    await asyncio.gather(
        jane.send(type="invite", receiver="student_sam", context="one", sdp=OFFER),
        gil.send(type="invite", receiver="student_sam", context="two", sdp=OFFER),
    )
    first, second = await jane.next("invited"), await gil.next("invited")
    statuses = sorted(
        [(await db_call(first["call_id"])).status, (await db_call(second["call_id"])).status]
    )
    assert statuses == [CallStatus.BUSY, CallStatus.INITIATED]
    await sam.next("incoming")
    await jane.alive()
    await gil.alive()
    assert [f for f in await sam.drain() if f["type"] == "incoming"] == []


async def test_accept_after_the_deadline_is_refused_even_before_the_timer(people, clients):
    """The deadline is checked by the accepting UPDATE itself, not only by timers."""
    from datetime import timedelta

    from django.utils import timezone

    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    past = timezone.now() - timedelta(seconds=1)
    await database_sync_to_async(Call.objects.filter(pk=call_id).update)(deadline=past)
    await sam.send(type="accept", call_id=call_id, sdp=ANSWER)
    assert (await sam.next("error", call_id=call_id))["code"] == "ERR_CALL_STATE"
    await jane.next("state", call_id=call_id, status="missed")  # the sweep ends it
    assert (await db_call(call_id)).status == CallStatus.MISSED


# -- signals and records -------------------------------------------------------------------------


async def test_signals_fire_once_per_transition_with_their_arguments(
    people, ended_signals, clients
):
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
        jane = await clients.sign_in(people["tutor_jane"])
        sam = await clients.sign_in(people["student_sam"])
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


async def test_records_match_what_the_clients_saw(people, clients):
    # Pictures of the caller's choosing are kept from origins the account allows only.
    allowed = Account.objects.filter(pk=people["tutor_jane"].account_id)
    await database_sync_to_async(allowed.update)(allowed_origins="https://x.example")
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    gil = await clients.sign_in(people["grocer_gil"])
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


# -- the adapter's can_call ---------------------------------------------------------------------


class OnlyTutorsAndStudents(DefaultCallAdapter):
    """Tutors and students may call each other; nobody calls the grocer."""

    def can_call(self, caller, callee):
        kinds = {caller.cuid.split("_")[0], callee.cuid.split("_")[0]}
        return kinds == {"tutor", "student"}


async def test_can_call_refusals_reach_the_caller_and_record_nothing(people, settings, clients):
    settings.DIRECTCALL = {
        **settings.DIRECTCALL,
        "ADAPTER": f"{__name__}.OnlyTutorsAndStudents",
    }
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    gil = await clients.sign_in(people["grocer_gil"])
    await jane.send(type="invite", ref="g", receiver="grocer_gil", context="hi", sdp=OFFER)
    error = await jane.next("error", ref="g")
    assert error["code"] == "ERR_CALL_NOT_ALLOWED"
    await jane.alive()
    assert [f for f in await gil.drain() if f["type"] == "incoming"] == []
    assert await database_sync_to_async(Call.objects.count)() == 0
    # Allowed pairs still call.
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)


# -- call spam ------------------------------------------------------------------------------------


async def test_invites_per_cuid_are_limited(people, settings, clients):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "CALL_RATE": "3/min"}
    jane = await clients.sign_in(people["tutor_jane"])
    gil = await clients.sign_in(people["grocer_gil"])
    # CALL_RATE counts in fixed minute windows: stay clear of an edge (a condition on the
    # clock, at most 3 s), or the four invites would be counted in two windows.
    while 60 - time.time() % 60 < 3:
        await asyncio.sleep(0.05)
    for ref in ("a", "b", "c"):  # offline receivers count too: no probing who is online
        await jane.send(type="invite", ref=ref, receiver="nobody_home", context="hi", sdp=OFFER)
        assert (await jane.next("error", ref=ref))["code"] == 404
    await jane.send(type="invite", ref="d", receiver="grocer_gil", context="hi", sdp=OFFER)
    error = await jane.next("error", ref="d")
    assert error["code"] == "ERR_RATE_LIMITED" and "3 per 60" in error["message"]
    await jane.alive()
    assert [f for f in await gil.drain() if f["type"] == "incoming"] == []
    # Another caller has its own budget.
    sam = await clients.sign_in(people["student_sam"])
    assert (await sam.invite("grocer_gil"))["call_id"]


# -- channels' code this consumer carries a copy of -------------------------------------------

# sha256 of the source of channels 4.3's AsyncConsumer methods that OrderedConsumer
# replaces with its own copy. When channels changes one, compare the new code with ours
# (connection.OrderedConsumer.dispatch / __call__), carry the change over if it matters,
# then record the new hash here.
CHANNELS_SOURCES = {
    "dispatch": "39f34e7d4fb0f6552de4ade665b943fe78137379702af6b58c79a14c49a75520",
    "__call__": "e52238720872dbc3f854519bc971aa7eb41553e63c8729081549ce42465ee419",
}


@pytest.mark.parametrize("method", sorted(CHANNELS_SOURCES))
def test_channels_code_copied_into_the_consumer_is_unchanged(method):
    import hashlib
    import inspect

    from channels.consumer import AsyncConsumer

    source = inspect.getsource(getattr(AsyncConsumer, method))
    assert hashlib.sha256(source.encode()).hexdigest() == CHANNELS_SOURCES[method], (
        f"channels changed AsyncConsumer.{method}. OrderedConsumer.{method} "
        "(directcall/connection.py) is a copy of it with changes of its own: read the new "
        "channels code, carry over what matters, then record the new hash in this test."
    )


# -- every party is told every state, through faults -------------------------------------------


@pytest.fixture
def faulty_layer(channel_backend, settings, monkeypatch):
    """The backend's real channel layer, failing where the test says (tests/layers.py);
    every message goes through it (no same-process path)."""
    from channels.layers import get_channel_layer

    from directcall import transport

    monkeypatch.setattr(transport, "same_process_path", False)

    kind = {
        "memory": "FaultyInMemoryLayer",
        "redis": "FaultyRedisLayer",
        "dclayer": "FaultyPubSubLayer",
    }[channel_backend]
    backend = {**settings.CHANNEL_LAYERS["default"], "BACKEND": f"tests.layers.{kind}"}
    settings.CHANNEL_LAYERS = {"default": backend}
    return get_channel_layer()


async def next_message(layer, channel: str, kind: str, timeout: float = 5) -> dict:
    """The next channel-layer message of type ``kind`` on ``channel`` (others skipped)."""

    async def wait() -> dict:
        while (message := await layer.receive(channel))["type"] != kind:
            pass
        return message

    return await asyncio.wait_for(wait(), timeout)


async def test_a_callee_elsewhere_is_told_the_missed_call_the_callers_process_ended(
    people, settings, clients, faulty_layer
):
    """The caller's process ends the call at the ring deadline and tells the caller first;
    the caller's handler then cancels the ring timer, which is still telling the callee.
    The telling is shielded from that cancellation, so the callee is told too.

    The callee is on another process (played here by its channel): only the caller's
    process enforces the deadline. The state send to the callee is slow, as on a busy
    Redis, so that it is still under way when the caller's handler runs.
    """
    from directcall import presence

    from .layers import state_to

    settings.DIRECTCALL = {**settings.DIRECTCALL, "RING_TIMEOUT": 1, "SWEEP_INTERVAL": 60}
    sam = people["student_sam"]
    faulty_layer.delay(state_to(sam.pk), 0.3)
    sam_channel = await faulty_layer.new_channel()
    holder = presence.Holder(sam_channel, "sams-device", "sams-connection")
    await presence.aclaim(sam.account_id, sam.cuid, holder)
    jane = await clients.sign_in(people["tutor_jane"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await next_message(faulty_layer, sam_channel, "dc.incoming")
    await jane.next("state", call_id=call_id, status="missed")
    told = await next_message(faulty_layer, sam_channel, "dc.state")
    assert (told["registration"], told["frame"]["status"]) == (sam.pk, "missed")


async def test_a_state_send_that_fails_once_is_retried(people, settings, clients, faulty_layer):
    """A stale pooled Redis connection fails the first send after a restart: the state
    goes out again, both parties are told, and the frame's sender gets no error.

    The send that fails is the one to the other party (sam), whom nothing but the retry
    tells in time: the sender's own connection would tell its client directly, and the
    sweep, which would converge sam, is kept out of the way."""
    from .layers import state_to

    settings.DIRECTCALL = {**settings.DIRECTCALL, "SWEEP_INTERVAL": 60}
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    call_id = await answered_call(jane, sam)
    failed = faulty_layer.fail(state_to(sam.registration_pk, "over"), times=1)
    await jane.send(type="hangup", call_id=call_id)
    await jane.next("state", call_id=call_id, status="over", reason="user_hangup")
    await sam.next("state", call_id=call_id, status="over", reason="user_hangup")
    assert len(failed.hits) == 1
    assert [f for f in await jane.drain() if f["type"] == "error"] == []


async def test_the_sender_gets_its_state_when_the_channel_layer_cannot_carry_it(
    people, settings, clients, faulty_layer
):
    """A change that was made is never answered ERR_INTERNAL: with every state message to
    its own channel failing, the sender's connection tells its client directly (the sweep,
    which would converge it too, is kept out of the way)."""
    from .layers import state_to

    settings.DIRECTCALL = {**settings.DIRECTCALL, "SWEEP_INTERVAL": 60}
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    call_id = await answered_call(jane, sam)
    faulty_layer.fail(state_to(jane.registration_pk), times=None)
    await jane.send(type="hangup", call_id=call_id)
    await jane.next("state", call_id=call_id, status="over", reason="user_hangup")
    await sam.next("state", call_id=call_id, status="over")
    assert [f for f in await jane.drain() if f["type"] in ("error", "state")] == []
    assert (await db_call(call_id)).status == CallStatus.OVER


async def test_a_party_whose_state_was_lost_is_told_by_the_sweep(
    people, settings, clients, faulty_layer
):
    """Every state message to sam finds his channel full: the sweep finds his connection
    still holding the ended call and tells him."""
    from .layers import state_to

    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    call_id = await answered_call(jane, sam)
    lost = faulty_layer.fill(state_to(sam.registration_pk, "over"))
    await jane.send(type="hangup", call_id=call_id)
    await jane.next("state", call_id=call_id, status="over")
    state = await sam.next("state", call_id=call_id, status="over")
    assert state["reason"] == "user_hangup" and lost.hits
    await sam.alive()
    assert [f for f in await sam.drain() if f["type"] == "state"] == []  # told once


async def test_a_lost_end_does_not_block_the_next_call(people, settings, clients, faulty_layer):
    """An overloaded connection whose end-of-call message was dropped still places its next
    call: its stale call is checked against the database instead of refusing with
    ERR_OUTGOING_CALL_IN_PROGRESS (the sweep is kept out of the way here)."""
    from .layers import state_to

    settings.DIRECTCALL = {**settings.DIRECTCALL, "SWEEP_INTERVAL": 60}
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    gil = await clients.sign_in(people["grocer_gil"])
    call_id = await answered_call(jane, sam)
    faulty_layer.fill(state_to(sam.registration_pk, "over"))
    await jane.send(type="hangup", call_id=call_id)
    await jane.next("state", call_id=call_id, status="over")
    invited = await sam.invite("grocer_gil")
    assert (await sam.next("state", call_id=call_id))["status"] == "over"
    await gil.next("incoming", call_id=invited["call_id"])


async def test_a_refused_frame_tells_the_sender_how_the_call_stands(
    people, settings, clients, faulty_layer
):
    """sam missed the end of his call; his hangup is refused (ERR_CALL_STATE) and he is
    told the call's final state with it."""
    from .layers import state_to

    settings.DIRECTCALL = {**settings.DIRECTCALL, "SWEEP_INTERVAL": 60}
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    call_id = await answered_call(jane, sam)
    faulty_layer.fill(state_to(sam.registration_pk, "over"))
    await jane.send(type="hangup", call_id=call_id)
    await jane.next("state", call_id=call_id, status="over")
    await sam.send(type="hangup", call_id=call_id)
    assert (await sam.next("error", call_id=call_id))["code"] == "ERR_CALL_STATE"
    state = await sam.next("state", call_id=call_id)
    assert (state["status"], state["reason"]) == ("over", "user_hangup")
