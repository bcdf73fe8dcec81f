"""The call.* webhooks of real calls placed over the WebSocket, delivered by the real worker
to a receiver on 127.0.0.1 that verifies every signature (tests/webhook_receiver.py)."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async

from directcall.models import Account
from directcall.webhooks.models import WebhookEndpoint, WebhookMessage

from .test_quality import SUMMARY
from .webhook_receiver import Receiver, running_worker
from .wsclient import ANSWER, answered_call

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("signaling")]


@pytest.fixture
def receiver():
    started = Receiver().start()
    yield started
    started.stop()


@pytest.fixture
def endpoint(signaling, people, receiver, settings):
    """An endpoint on the account of jane, sam and gil; the receiver knows its secret."""
    settings.DIRECTCALL = {
        **settings.DIRECTCALL,
        "WEBHOOK_ALLOW_PRIVATE": True,
        "WEBHOOK_RETRY_DELAY": 0.1,
        "WEBHOOK_RETRY_MAX_DELAY": 0.4,
    }
    account = people["tutor_jane"].account
    endpoint = WebhookEndpoint.objects.create(account=account, url=receiver.url)
    receiver.secrets = [endpoint.secret]
    # The registrations were loaded before: the signed-in sessions read the flag afresh.
    assert Account.objects.get(pk=account.pk).has_webhooks
    return endpoint


async def received(receiver: Receiver, count: int) -> list:
    await asyncio.to_thread(receiver.wait_for, lambda got: len(got) >= count)
    return list(receiver.received)


async def test_every_event_of_a_call_in_order_signed(people, clients, endpoint, receiver):
    with running_worker():
        jane = await clients.sign_in(people["tutor_jane"])
        sam = await clients.sign_in(people["student_sam"])
        call_id = (await jane.invite("student_sam", context="<b>Maths</b>"))["call_id"]
        await sam.next("incoming", call_id=call_id)
        await sam.send(type="ringing", call_id=call_id)
        await jane.next("state", call_id=call_id, status="ringing")
        await sam.send(type="accept", call_id=call_id, sdp=ANSWER)
        await jane.next("state", call_id=call_id, status="answered")
        await sam.next("state", call_id=call_id, status="answered")
        # The party hanging up reports its quality summary with the hangup (issue 15).
        await sam.send(type="hangup", call_id=call_id, quality=SUMMARY)
        await jane.next("state", call_id=call_id, status="over")
        got = await received(receiver, 4)
    assert [r.type for r in got] == [
        "call.initiated",
        "call.ringing",
        "call.answered",
        "call.ended",
    ]
    assert all(r.verified_with == [endpoint.secret] for r in got) and not receiver.unverified
    assert len({r.msg_id for r in got}) == 4  # one id per event
    assert {r.body["data"]["id"] for r in got} == {call_id}
    assert [r.body["data"]["status"] for r in got] == ["initiated", "ringing", "answered", "over"]
    ended = got[-1].body["data"]
    assert ended["reason"] == "user_hangup" and ended["duration"] >= 0
    assert ended["caller"] == {"cuid": "tutor_jane", "name": "Jane"}
    assert ended["callee"] == {"cuid": "student_sam", "name": "Sam"}
    assert ended["context"] == "<b>Maths</b>"
    assert ended["quality"] == {"callee": SUMMARY}
    assert got[0].body["data"]["reason"] is None and got[0].body["data"]["answeredAt"] is None


async def test_the_summary_sent_after_the_end_comes_as_call_quality(
    people, clients, endpoint, receiver
):
    """Sam hangs up with his summary (in call.ended); Jane's comes after the end: it is sent
    as call.quality, signed, with the call and both summaries. Each summary reaches the
    receiver once: no call.quality for Sam's."""
    late = {**SUMMARY, "mosAvg": 3.9, "relayed": True, "localCandidate": "relay"}
    with running_worker():
        jane = await clients.sign_in(people["tutor_jane"])
        sam = await clients.sign_in(people["student_sam"])
        call_id = await answered_call(jane, sam)
        await sam.send(type="hangup", call_id=call_id, quality=SUMMARY)
        await jane.next("state", call_id=call_id, status="over")
        await jane.send(type="quality", call_id=call_id, quality=late, ref="q1")
        await jane.next("saved", ref="q1")
        got = await received(receiver, 4)  # initiated, answered, ended, quality
    assert [r.type for r in got] == [
        "call.initiated",
        "call.answered",
        "call.ended",
        "call.quality",
    ]
    assert all(r.verified_with == [endpoint.secret] for r in got) and not receiver.unverified
    assert got[2].body["data"]["quality"] == {"callee": SUMMARY}
    data = got[3].body["data"]
    assert data["id"] == call_id and data["status"] == "over" and data["reportedBy"] == "caller"
    assert data["quality"] == {"callee": SUMMARY, "caller": late}
    assert data["caller"] == {"cuid": "tutor_jane", "name": "Jane"}
    assert data["duration"] >= 0 and data["reason"] == "user_hangup"
    types = await database_sync_to_async(
        lambda: list(WebhookMessage.objects.values_list("event_type", flat=True))
    )()
    assert sorted(types).count("call.quality") == 1


async def test_only_the_events_an_endpoint_wants(people, clients, endpoint, receiver):
    endpoint.events = ["call.ended"]
    await database_sync_to_async(endpoint.save)()
    with running_worker():
        jane = await clients.sign_in(people["tutor_jane"])
        sam = await clients.sign_in(people["student_sam"])
        call_id = (await jane.invite("student_sam"))["call_id"]
        await sam.next("incoming", call_id=call_id)
        await sam.send(type="decline", call_id=call_id)
        await jane.next("state", call_id=call_id, status="declined")
        got = await received(receiver, 1)
    assert [(r.type, r.body["data"]["status"], r.body["data"]["reason"]) for r in got] == [
        ("call.ended", "declined", "user_declined")
    ]


async def test_calls_of_another_account_send_nothing(people, clients, endpoint, receiver):
    with running_worker():
        mallory = await clients.sign_in(people["mallory_m"])
        other_sam = await clients.sign_in(people["other_sam"])
        call_id = (await mallory.invite("student_sam"))["call_id"]
        await other_sam.next("incoming", call_id=call_id)
        await mallory.send(type="hangup", call_id=call_id)
        await mallory.next("state", call_id=call_id, status="cancelled")
        count = await database_sync_to_async(WebhookMessage.objects.count)()
    assert count == 0 and receiver.received == []
