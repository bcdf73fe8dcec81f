"""Tabs, reloads and who may take a call back: the server side of issues 12 and 13.

Every tab is its own signaling connection; the tabs of one browser are one device, proved
by the device key the server gave its first tab (``ready.device_key``, kept by the SDK in
localStorage and by ``tests.wsclient.DEVICE_KEYS`` here). A call is held by one tab per
side, proved by its call key (``invited.call_key``, the ``answered`` state's). Each test
runs on the in-memory layer with the local-memory cache, then on Redis for both.
"""

from __future__ import annotations

import asyncio
import time
import types

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async

from directcall import presence
from directcall.models import Call, CallStatus, Registration

from .wsclient import ANSWER, CANDIDATE, DEVICE_KEYS, OFFER, Client, answered_call

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("signaling")]

LAPTOP = "laptop-0001"


@database_sync_to_async
def db_call(call_id: str) -> Call:
    return Call.objects.get(pk=call_id)


async def refused(clients, registration, device: str = LAPTOP, **auth) -> tuple[str, int]:
    """Sign a new socket in and expect a refusal: ``(error code, close code)``."""
    client = await clients.anonymous(client=auth.pop("client", None))
    await client.send_auth(registration, device, **auth)
    error = await client.next("error")
    return error["code"], await client.closed()


def tune(settings, **values) -> None:
    settings.DIRECTCALL = {**settings.DIRECTCALL, **values}


async def ringing_in_two_tabs(clients, people) -> tuple[Client, Client, Client, str]:
    """Jane's two tabs signed in; Sam calls her; it rings in both. (sam, tab1, tab2, id)."""
    tab1 = await clients.sign_in(people["tutor_jane"], LAPTOP)
    tab2 = await clients.sign_in(people["tutor_jane"], LAPTOP)
    sam = await clients.sign_in(people["student_sam"])
    call_id = (await sam.invite("tutor_jane"))["call_id"]
    for tab in (tab1, tab2):
        assert (await tab.next("incoming", call_id=call_id))["sdp"] == OFFER
    return sam, tab1, tab2, call_id


# -- several tabs of one device ----------------------------------------------------------------


async def test_tabs_of_one_device_are_signed_in_at_once(people, clients):
    jane = people["tutor_jane"]
    tab1 = await clients.sign_in(jane, LAPTOP)
    key = tab1.ready["device_key"]
    assert DEVICE_KEYS[jane.account_id, jane.cuid, LAPTOP] == key
    tab2 = await clients.sign_in(jane, LAPTOP)
    tab3 = await clients.sign_in(jane, LAPTOP)
    assert "device_key" not in tab2.ready and "device_key" not in tab3.ready
    for tab in (tab1, tab2, tab3):
        await tab.alive()
    found = await database_sync_to_async(presence.lookup)(jane.account_id, jane.cuid)
    assert len(found.channels) == 3
    # Closing one tab touches the others.
    await tab2.close()
    await tab1.alive()
    await tab3.alive()


async def test_another_device_or_a_missing_key_is_already_signed_in(people, clients):
    """A device id is the client's choice: the same one without the device key (a copied
    token, a forged id) is refused like another device, and takes nobody's place."""
    jane = people["tutor_jane"]
    tab = await clients.sign_in(jane, LAPTOP)
    key = tab.ready["device_key"]
    assert await refused(clients, jane, "phone-00001") == ("ERR_ALREADY_SIGNEDIN", 4002)
    assert await refused(clients, jane, "phone-00001", device_key=key) == (
        "ERR_ALREADY_SIGNEDIN",
        4002,
    )
    assert await refused(clients, jane, LAPTOP, device_key=None) == ("ERR_ALREADY_SIGNEDIN", 4002)
    wrong = "A" * 43
    assert await refused(clients, jane, LAPTOP, device_key=wrong) == ("ERR_ALREADY_SIGNEDIN", 4002)
    await tab.alive()
    sam = await clients.sign_in(people["student_sam"])
    call_id = (await sam.invite("tutor_jane"))["call_id"]
    await tab.next("incoming", call_id=call_id)


async def test_a_logout_frees_the_cuid_and_a_reload_keeps_it_for_the_device(
    people, clients, settings
):
    tune(settings, DEVICE_HOLD=30)
    jane = people["tutor_jane"]
    tab = await clients.sign_in(jane, LAPTOP)
    await tab.close(1001)  # the page went away: reserved for this device
    assert await refused(clients, jane, "phone-00001") == ("ERR_ALREADY_SIGNEDIN", 4002)
    back = await clients.sign_in(jane, LAPTOP)  # the reloaded page, with its key
    assert "device_key" not in back.ready
    await back.close(1000)  # logout(): nothing kept
    phone = await clients.sign_in(jane, "phone-00001")
    assert "device_key" in phone.ready


async def refusal(clients, registration, device: str, **auth) -> dict:
    """The error frame refusing a new socket's sign-in (the socket then closes)."""
    client = await clients.anonymous(client=auth.pop("client", None))
    await client.send_auth(registration, device, **auth)
    error = await client.next("error")
    await client.closed()
    return error


async def test_another_browser_is_told_when_a_closed_ones_hold_ends(people, clients, settings):
    """A user closes one browser and opens another at once: the cuid is still reserved for
    the first (DEVICE_HOLD), and the refusal says in how many seconds it is free
    (``retry_after``); signing in then works. While a tab of the first is open, the
    refusal gives no such promise."""
    tune(settings, DEVICE_HOLD=1)
    jane = people["tutor_jane"]
    tab = await clients.sign_in(jane, LAPTOP)
    live = await refusal(clients, jane, "phone-00001")
    assert live["code"] == "ERR_ALREADY_SIGNEDIN" and "retry_after" not in live
    await tab.close(1001)  # the browser closed: reserved for the laptop
    held = await refusal(clients, jane, "phone-00001")
    assert held["code"] == "ERR_ALREADY_SIGNEDIN"
    assert held["retry_after"] in (2, 3)  # the hold's second, rounded up, and one more
    await asyncio.sleep(held["retry_after"])
    phone = await clients.sign_in(jane, "phone-00001")
    assert "device_key" in phone.ready


def test_a_dead_processs_connections_hold_the_cuid_at_most_presence_ttl_more(
    people, settings, monkeypatch
):
    """Connections that stopped renewing (their process died) hold the cuid until their
    entry lapses: no promise while they renew, then at most PRESENCE_TTL, which also
    covers an entry another tab's departure wrote after their last renewal."""
    tune(settings, PRESENCE_TTL=20)
    jane = people["tutor_jane"]
    assert presence.free_in(jane.account_id, jane.cuid) is None  # nobody holds it
    now = time.time()
    dead = presence.Holder("chan-1", LAPTOP, "conn-1")
    presence.claim(jane.account_id, jane.cuid, dead)
    leaving = presence.Holder("chan-2", LAPTOP, "conn-2", key=dead.key)
    monkeypatch.setattr(presence, "time", types.SimpleNamespace(time=lambda: now + 15))
    assert presence.free_in(jane.account_id, jane.cuid) is None  # still renewing
    # Another tab of the device joins and leaves at +15 s: the entry is written anew then.
    entry = presence._Entry.read(presence.cache.get(presence._key(jane.account_id, jane.cuid)))
    entry.put(leaving, now + 15)
    presence.cache.set(presence._key(jane.account_id, jane.cuid), entry.value(), 60)
    presence.release(jane.account_id, jane.cuid, leaving)
    monkeypatch.setattr(presence, "time", types.SimpleNamespace(time=lambda: now + 25))
    left = presence.free_in(jane.account_id, jane.cuid)
    assert left == 20.0  # the first is stale; the entry, written at +15 s, lives to +35 s


async def test_several_devices_when_allowed_all_ring_and_the_first_answer_wins(
    people, clients, settings
):
    """DIRECTCALL["MULTIPLE_DEVICES"] (off by default: the test above): another device of
    the same cuid signs in too, with a key of its own; a call rings in every connection of
    every device, and the first to answer takes it."""
    tune(settings, MULTIPLE_DEVICES=True)
    jane = people["tutor_jane"]
    laptop = await clients.sign_in(jane, LAPTOP)
    phone = await clients.sign_in(jane, "phone-00001")
    assert phone.ready["device_key"] != laptop.ready["device_key"]
    phone_tab2 = await clients.sign_in(jane, "phone-00001")  # the phone's own key: a join
    assert "device_key" not in phone_tab2.ready
    # A known device still proves itself: the laptop's key does not sign the phone in.
    assert await refused(clients, jane, "phone-00001", device_key=laptop.ready["device_key"]) == (
        "ERR_ALREADY_SIGNEDIN",
        4002,
    )
    found = await database_sync_to_async(presence.lookup)(jane.account_id, jane.cuid)
    assert len(found.channels) == 3
    sam = await clients.sign_in(people["student_sam"])
    call_id = (await sam.invite("tutor_jane"))["call_id"]
    for tab in (laptop, phone, phone_tab2):
        assert (await tab.next("incoming", call_id=call_id))["sdp"] == OFFER
    await phone.send(type="accept", call_id=call_id, sdp=ANSWER)
    answered = await phone.next("state", call_id=call_id, status="answered")
    assert isinstance(answered["call_key"], str)
    for tab in (laptop, phone_tab2):
        elsewhere = await tab.next("state", call_id=call_id, status="answered")
        assert elsewhere["elsewhere"] is True
    assert (await sam.next("state", call_id=call_id, status="answered"))["sdp"] == ANSWER
    # One call per cuid still holds across devices.
    await laptop.send(type="invite", receiver="student_sam", context="again", sdp=OFFER, ref="r2")
    assert (await laptop.next("error"))["code"] == "ERR_OUTGOING_CALL_IN_PROGRESS"
    await sam.send(type="hangup", call_id=call_id)
    await phone.next("state", call_id=call_id, status="over")
    # The entry knows the phone as the other device; every tab is still signed in.
    entry = await database_sync_to_async(presence.lookup)(jane.account_id, jane.cuid)
    assert set(entry.others) == {"phone-00001"}
    for tab in (laptop, phone, phone_tab2):
        await tab.alive()


# -- a call rings in every tab; one tab takes it ------------------------------------------------


async def test_an_incoming_call_rings_in_every_tab_and_the_first_answer_wins(people, clients):
    sam, tab1, tab2, call_id = await ringing_in_two_tabs(clients, people)
    # While it rings, the caller's candidates reach every tab.
    await sam.send(type="candidates", call_id=call_id, candidates=[CANDIDATE])
    for tab in (tab1, tab2):
        await tab.next("candidates", call_id=call_id)
    await tab2.send(type="accept", call_id=call_id, sdp=ANSWER)
    answered = await tab2.next("state", call_id=call_id, status="answered")
    assert isinstance(answered["call_key"], str) and "elsewhere" not in answered
    elsewhere = await tab1.next("state", call_id=call_id, status="answered")
    assert elsewhere["elsewhere"] is True and "call_key" not in elsewhere
    assert "sdp" not in elsewhere and "sdp" not in answered
    assert (await sam.next("state", call_id=call_id, status="answered"))["sdp"] == ANSWER
    # The other tab let the call go: a late accept of its own is refused.
    await tab1.send(type="accept", call_id=call_id, sdp=ANSWER)
    assert (await tab1.next("error", call_id=call_id))["code"] == "ERR_UNKNOWN_CALL"
    # Relays go between Sam and the tab that answered, only.
    await sam.send(type="candidates", call_id=call_id, candidates=[CANDIDATE], end=True)
    assert (await tab2.next("candidates", call_id=call_id))["end"] is True
    await tab2.send(type="renegotiate", call_id=call_id, sdp_type="offer", sdp=OFFER)
    await sam.next("renegotiate", call_id=call_id)
    await sam.send(type="hangup", call_id=call_id)
    await tab2.next("state", call_id=call_id, status="over")
    await sam.alive()
    assert await tab1.drain() == []  # no relay, no state of a call it let go
    call = await db_call(call_id)
    assert call.callee_key_hash and call.caller_key_hash


async def test_two_tabs_answering_at_once_one_wins(people, clients):
    sam, tab1, tab2, call_id = await ringing_in_two_tabs(clients, people)
    await asyncio.gather(
        tab1.send(type="accept", call_id=call_id, sdp=ANSWER),
        tab2.send(type="accept", call_id=call_id, sdp=ANSWER),
    )
    states = [await tab.next("state", call_id=call_id, status="answered") for tab in (tab1, tab2)]
    winners = [s for s in states if "call_key" in s]
    losers = [s for s in states if s.get("elsewhere") is True]
    assert len(winners) == 1 and len(losers) == 1
    await sam.next("state", call_id=call_id, status="answered")
    await tab1.alive()
    await tab2.alive()


async def test_a_call_declined_in_one_tab_ends_in_every_tab(people, clients):
    sam, tab1, tab2, call_id = await ringing_in_two_tabs(clients, people)
    await tab1.send(type="decline", call_id=call_id)
    for client in (sam, tab1, tab2):
        await client.next("state", call_id=call_id, status="declined")


async def test_a_tab_opened_while_it_rings_rings_too(people, clients):
    tab1 = await clients.sign_in(people["tutor_jane"], LAPTOP)
    sam = await clients.sign_in(people["student_sam"])
    call_id = (await sam.invite("tutor_jane"))["call_id"]
    await tab1.next("incoming", call_id=call_id)
    tab2 = await clients.sign_in(people["tutor_jane"], LAPTOP)
    assert [c["status"] for c in tab2.ready["calls"]] == ["initiated"]
    await tab2.next("incoming", call_id=call_id)
    await tab2.send(type="accept", call_id=call_id, sdp=ANSWER)
    assert "call_key" in await tab2.next("state", call_id=call_id, status="answered")
    assert (await tab1.next("state", call_id=call_id, status="answered"))["elsewhere"] is True


async def test_the_callers_other_tabs_hear_nothing_and_cannot_call(people, clients):
    jane1 = await clients.sign_in(people["tutor_jane"], LAPTOP)
    jane2 = await clients.sign_in(people["tutor_jane"], LAPTOP)
    sam = await clients.sign_in(people["student_sam"])
    await clients.sign_in(people["grocer_gil"])
    call_id = await answered_call(jane1, sam)
    assert isinstance(jane1.call_keys[call_id], str)
    await sam.send(type="candidates", call_id=call_id, candidates=[CANDIDATE])
    await jane1.next("candidates", call_id=call_id)
    await jane2.send(type="invite", ref="again", receiver="grocer_gil", context="hi", sdp=OFFER)
    assert (await jane2.next("error"))["code"] == "ERR_OUTGOING_CALL_IN_PROGRESS"
    await jane2.send(type="hangup", call_id=call_id)  # not its call
    assert (await jane2.next("error"))["code"] == "ERR_UNKNOWN_CALL"
    await sam.alive()
    assert await jane2.drain() == []
    # Closing the tab that does not hold the call touches nothing.
    await jane2.close(1001)
    await sam.send(type="candidates", call_id=call_id, candidates=[CANDIDATE])
    await jane1.next("candidates", call_id=call_id)
    assert (await db_call(call_id)).status == CallStatus.ANSWERED


# -- a reload: the call comes back to the tab that proves it held it -----------------------------


async def test_a_reloaded_tab_takes_its_call_back_with_its_key(people, clients, settings):
    tune(settings, PAGE_GRACE=5)
    jane = await clients.sign_in(people["tutor_jane"], LAPTOP)
    other_tab = await clients.sign_in(people["tutor_jane"], LAPTOP)
    sam = await clients.sign_in(people["student_sam"])
    call_id = await answered_call(sam, jane)
    await jane.send(type="leaving")
    await jane.close(1001)
    assert (await sam.next("peer", call_id=call_id))["connected"] is False
    back = await clients.sign_in(people["tutor_jane"], LAPTOP, resume=jane.resume())
    (summary,) = back.ready["calls"]
    answered_at = (await db_call(call_id)).answered_at.timestamp()
    assert summary == {
        "call_id": call_id,
        "status": "answered",
        "role": "callee",
        "peer": {"cuid": "student_sam", "name": "Sam", "image": None},
        "context": "Tutor is calling",
        "answered_at": round(answered_at, 3),
    }
    assert back.ready["page_grace"] == 5
    assert (await sam.next("peer", call_id=call_id))["connected"] is True
    # Media comes back with a brand-new peer connection: a replace offer, and its answer.
    await back.send(type="renegotiate", call_id=call_id, sdp_type="offer", sdp=OFFER, replace=True)
    relayed = await sam.next("renegotiate", call_id=call_id)
    assert (relayed["sdp_type"], relayed["replace"]) == ("offer", True)
    await sam.send(type="renegotiate", call_id=call_id, sdp_type="answer", sdp=ANSWER)
    assert "replace" not in await back.next("renegotiate", call_id=call_id)
    await sam.send(type="candidates", call_id=call_id, candidates=[CANDIDATE])
    await back.next("candidates", call_id=call_id)
    # Past the page grace the call goes on; the tab that reloaded holds it (its key too).
    await sam.quiet(5.5)
    assert (await db_call(call_id)).status == CallStatus.ANSWERED
    await back.send(type="hangup", call_id=call_id)
    await sam.next("state", call_id=call_id, status="over", reason="user_hangup")
    await sam.alive()
    # The other tab rang, heard it was answered elsewhere, and nothing since.
    heard = [(f["type"], f.get("status"), f.get("elsewhere")) for f in await other_tab.drain()]
    assert heard == [("incoming", None, None), ("state", "answered", True)]


async def test_the_new_page_signing_in_before_the_old_one_is_seen_leaving(
    people, clients, settings
):
    """A reload where the new page's auth reaches the server before the old socket's end:
    the old connection's departure does not count against the call it no longer holds."""
    tune(settings, RECONNECT_GRACE=0.5, PAGE_GRACE=0.5)
    jane = await clients.sign_in(people["tutor_jane"], LAPTOP)
    sam = await clients.sign_in(people["student_sam"])
    call_id = await answered_call(jane, sam)
    back = await clients.sign_in(people["tutor_jane"], LAPTOP, resume=jane.resume())
    assert [c["call_id"] for c in back.ready["calls"]] == [call_id]
    await sam.next("peer", call_id=call_id, connected=True)
    await jane.close(1001)
    await sam.quiet(1.5)  # past both graces
    assert (await db_call(call_id)).status == CallStatus.ANSWERED
    await sam.send(type="candidates", call_id=call_id, candidates=[CANDIDATE])
    await back.next("candidates", call_id=call_id)


async def test_the_caller_reloads_too(people, clients):
    jane = await clients.sign_in(people["tutor_jane"], LAPTOP)
    sam = await clients.sign_in(people["student_sam"])
    call_id = await answered_call(jane, sam)
    await jane.close(1001)
    back = await clients.sign_in(people["tutor_jane"], LAPTOP, resume=jane.resume())
    assert back.ready["calls"][0]["role"] == "caller"
    await sam.next("peer", call_id=call_id, connected=True)
    await sam.send(type="renegotiate", call_id=call_id, sdp_type="answer", sdp=ANSWER)
    await back.next("renegotiate", call_id=call_id)


async def test_a_caller_back_after_a_network_drop_keeps_its_ringing_call(people, clients):
    """The caller's connection dropped while it rang (its server process died: the end is
    seen late, or not at all) and the tab signed in again with the call key: the call
    still rings, and the callee's answer reaches the new connection."""
    jane = await clients.sign_in(people["tutor_jane"], LAPTOP)
    sam = await clients.sign_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    back = await clients.sign_in(people["tutor_jane"], LAPTOP, resume=jane.resume())
    assert [(c["call_id"], c["role"]) for c in back.ready["calls"]] == [(call_id, "caller")]
    await jane.close(1006)
    await sam.send(type="accept", call_id=call_id, sdp=ANSWER)
    assert (await back.next("state", call_id=call_id, status="answered"))["sdp"] == ANSWER
    await sam.send(type="candidates", call_id=call_id, candidates=[CANDIDATE])
    await back.next("candidates", call_id=call_id)


async def test_a_caller_page_that_left_takes_its_ringing_call_with_it(people, clients):
    jane = await clients.sign_in(people["tutor_jane"], LAPTOP)
    sam = await clients.sign_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    await clients.sign_in(people["tutor_jane"], LAPTOP, resume=jane.resume())
    await jane.close(1001)  # a reload: the page that placed the call (and its promise) is gone
    state = await sam.next("state", call_id=call_id, status="cancelled")
    assert state["reason"] == "connection_lost"


# -- without the call key, nothing of the call is handed over (issue 13) -------------------------


async def test_another_tab_of_the_device_gets_nothing_of_a_call_in_its_grace(
    people, clients, settings
):
    """The grace-period hijack of issue 13: a party's connection drops mid-call, and a
    sign-in as that party inside the grace — here even a tab of the same device, with the
    device key — is handed nothing of the call: not in ready.calls, not by the old
    ``resume`` of bare ids, not with a wrong key or the other side's; and the other party's
    candidates and ICE-restart offers do not reach it."""
    tune(settings, RECONNECT_GRACE=3)
    jane = await clients.sign_in(people["tutor_jane"], LAPTOP)
    sam = await clients.sign_in(people["student_sam"])
    call_id = await answered_call(jane, sam)
    await jane.close(1006)  # the network dropped
    await sam.next("peer", call_id=call_id, connected=False)
    wrong = [{"call_id": call_id, "call_key": key} for key in ("B" * 43, sam.call_keys[call_id])]
    intruder = await clients.sign_in(
        people["tutor_jane"], LAPTOP, resume=[call_id, *wrong, {"call_id": call_id}]
    )
    assert intruder.ready["calls"] == []
    await sam.send(type="candidates", call_id=call_id, candidates=[CANDIDATE])
    await sam.send(type="renegotiate", call_id=call_id, sdp_type="offer", sdp=OFFER)
    await sam.alive()
    await intruder.send(type="candidates", call_id=call_id, candidates=[CANDIDATE])
    assert (await intruder.next("error"))["code"] == "ERR_UNKNOWN_CALL"
    assert await intruder.drain() == []
    # Nobody took the call back: it ends at the grace, for Sam with a reason. The tab that
    # asked about the call is told that end, and nothing else of it ever reached it.
    state = await sam.next("state", call_id=call_id, status="over", timeout=6)
    assert state["reason"] == "connection_lost"
    told = await intruder.next("state", call_id=call_id, timeout=3)
    assert (told["status"], told["reason"]) == ("over", "connection_lost")
    assert "call_key" not in told and "sdp" not in told
    assert await intruder.drain() == []


@pytest.mark.parametrize("ends", ["hangup", "grace"])
async def test_a_page_whose_call_key_was_lost_is_told_how_its_call_ended(
    people, clients, settings, ends
):
    """The soak's never-told callee (issue 11): Jane's ``accept`` won just as her connection
    died, so the answered state and its call key never reached her page. The page signs in
    again asking about the call by its id alone: it is handed nothing of the live call
    (the hijack rule above), but it is told how the call ended, whoever ended it."""
    tune(settings, RECONNECT_GRACE=30 if ends == "hangup" else 2)
    jane = await clients.sign_in(people["tutor_jane"], LAPTOP)
    sam = await clients.sign_in(people["student_sam"])
    call_id = (await sam.invite("tutor_jane"))["call_id"]
    await jane.next("incoming", call_id=call_id)
    await jane.send(type="accept", call_id=call_id, sdp=ANSWER)
    await sam.next("state", call_id=call_id, status="answered")
    await jane.close(1006)  # before reading its answered state
    back = await clients.sign_in(people["tutor_jane"], LAPTOP, resume=[call_id])
    assert back.ready["calls"] == []
    if ends == "hangup":
        await sam.send(type="hangup", call_id=call_id)
    told = await back.next("state", call_id=call_id, timeout=6)
    assert told["status"] == "over"
    assert told["reason"] == ("user_hangup" if ends == "hangup" else "connection_lost")
    assert (await db_call(call_id)).status == "over"
    assert await back.drain() == []


async def test_a_call_asked_about_that_ended_already_is_told_once(people, clients, settings):
    """A call that ended before the page asked is told in reply to the sign-in, once."""
    tune(settings, RECONNECT_GRACE=2)
    jane = await clients.sign_in(people["tutor_jane"], LAPTOP)
    sam = await clients.sign_in(people["student_sam"])
    call_id = (await sam.invite("tutor_jane"))["call_id"]
    await jane.next("incoming", call_id=call_id)
    await sam.send(type="cancel", call_id=call_id)
    await sam.next("state", call_id=call_id, status="cancelled")
    back = await clients.sign_in(people["tutor_jane"], LAPTOP, resume=[call_id])
    assert (await back.next("state", call_id=call_id))["status"] == "cancelled"
    await back.alive()
    assert await back.drain() == []


async def test_a_copied_token_cannot_take_the_place_of_a_reloading_tab(people, clients, settings):
    """The reload race of issue 13: while the victim's page reloads, an attacker holding a
    token of the victim (same cuid, same device id, no device key) signs in again and again.
    The cuid is reserved for the victim's device, and the attempts are throttled; the
    reloaded page signs in with its keys and gets its call back."""
    tune(settings, PAGE_GRACE=5, AUTH_RATE_CUID="5/day", AUTH_RATE_IP="1000/min")
    victim = await clients.sign_in(people["tutor_jane"], LAPTOP)
    sam = await clients.sign_in(people["student_sam"])
    call_id = await answered_call(sam, victim)
    await victim.close(1001)
    codes = []
    for _ in range(8):
        codes.append(await refused(clients, people["tutor_jane"], LAPTOP, device_key=None))
    # The victim's first sign-in counted as one of the five.
    assert set(codes[:4]) == {("ERR_ALREADY_SIGNEDIN", 4002)}
    assert set(codes[4:]) == {("ERR_RATE_LIMITED", 4012)}
    back = await clients.sign_in(people["tutor_jane"], LAPTOP, resume=victim.resume())
    assert [c["call_id"] for c in back.ready["calls"]] == [call_id]
    await sam.next("peer", call_id=call_id, connected=True)


# -- a page that leaves ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["leaving", "1001"])
async def test_a_page_that_left_ends_its_call_after_the_page_grace(
    people, clients, settings, how, ended_signals
):
    tune(settings, RECONNECT_GRACE=30, PAGE_GRACE=0.5)
    jane = await clients.sign_in(people["tutor_jane"], LAPTOP)
    sam = await clients.sign_in(people["student_sam"])
    call_id = await answered_call(jane, sam)
    if how == "leaving":
        await sam.send(type="leaving")
        await sam.alive()
        await sam.close(1000)  # however it then closes
    else:
        await sam.close(1001)
    await jane.next("peer", call_id=call_id, connected=False)
    # Far sooner than RECONNECT_GRACE (30 s): the page said it was going.
    state = await jane.next("state", call_id=call_id, status="over", timeout=5)
    assert state["reason"] == "connection_lost"
    assert [(s, r) for c, s, r, _ in ended_signals if c == call_id] == [("over", "connection_lost")]


async def test_a_dropped_connection_waits_the_reconnect_grace(people, clients, settings):
    tune(settings, RECONNECT_GRACE=2, PAGE_GRACE=30)
    jane = await clients.sign_in(people["tutor_jane"], LAPTOP)
    sam = await clients.sign_in(people["student_sam"])
    call_id = await answered_call(jane, sam)
    await sam.close(1006)
    await jane.next("peer", call_id=call_id, connected=False)
    state = await jane.next("state", call_id=call_id, status="over", timeout=6)
    assert state["reason"] == "connection_lost"


async def test_a_replace_flag_rides_only_on_offers(people, clients):
    jane = await clients.sign_in(people["tutor_jane"], LAPTOP)
    sam = await clients.sign_in(people["student_sam"])
    call_id = await answered_call(jane, sam)
    for bad in ({"sdp_type": "answer", "replace": True}, {"sdp_type": "offer", "replace": "yes"}):
        await jane.send(type="renegotiate", call_id=call_id, sdp=OFFER, **bad)
        assert (await jane.next("error"))["code"] == "ERR_BAD_FRAME"
    await jane.send(type="renegotiate", call_id=call_id, sdp_type="offer", sdp=OFFER, replace=False)
    assert "replace" not in await sam.next("renegotiate", call_id=call_id)
    await jane.alive()
    assert await sam.drain() == []


# -- sign-ins are throttled ------------------------------------------------------------------------


async def test_sign_ins_are_throttled_per_address(people, clients, settings):
    # The throttles count in fixed windows (time // period): day-long windows keep every
    # attempt of a test in one of them.
    tune(settings, AUTH_RATE_IP="3/day", AUTH_RATE_CUID=None)
    here = ("10.1.2.3", 40000)
    jane = await clients.sign_in(people["tutor_jane"], LAPTOP, client=here)
    await clients.sign_in(people["student_sam"], client=here)
    bad = await clients.anonymous(client=here)
    await bad.send(type="auth", token="not-a-token")  # counted too
    assert (await bad.next("error"))["code"] == "ERR_INVALID_TOKEN"
    assert await refused(clients, people["grocer_gil"], client=here) == ("ERR_RATE_LIMITED", 4012)
    # A tab of a device that holds its cuid is never counted: reloads are not locked out.
    for _ in range(3):
        await clients.sign_in(people["tutor_jane"], LAPTOP, client=here)
    await jane.alive()
    # Another address is counted apart.
    await clients.sign_in(people["grocer_gil"], client=("10.9.9.9", 40000))


async def test_sign_ins_are_throttled_per_cuid_across_addresses(people, clients, settings):
    tune(settings, AUTH_RATE_IP=None, AUTH_RATE_CUID="2/day")
    jane = people["tutor_jane"]
    laptop = await clients.sign_in(jane, LAPTOP, client=("10.0.0.1", 1))  # counted: 1
    phone = ("phone-00001", ("10.0.0.2", 1))
    assert await refused(clients, jane, phone[0], client=phone[1]) == (  # 2
        "ERR_ALREADY_SIGNEDIN",
        4002,
    )
    assert await refused(clients, jane, "phone-00002", client=("10.0.0.3", 1)) == (
        "ERR_RATE_LIMITED",
        4012,
    )
    await clients.sign_in(jane, LAPTOP, client=("10.0.0.1", 1))  # the device's tab: not counted
    await laptop.alive()


async def test_a_busy_address_signs_its_arrivals_in_at_the_defaults(people, clients, settings):
    """A school or an office: 100 people arriving from one address within a minute, each
    the first tab of its browser (no device holds their cuids yet), all sign in at the
    default rates; the address's bound is as generous as the init requests' that issue
    their tokens (``THROTTLE_RATES["directcall_init_ip"]``)."""
    from directcall.conf import DEFAULTS

    assert "AUTH_RATE_IP" not in settings.DIRECTCALL and "AUTH_RATE_CUID" not in settings.DIRECTCALL
    assert DEFAULTS["AUTH_RATE_IP"] == DEFAULTS["THROTTLE_RATES"]["directcall_init_ip"]
    account = people["tutor_jane"].account
    school = await sync_to_async(
        lambda: Registration.objects.bulk_create(
            Registration(account=account, cuid=f"pupil_{number:03d}") for number in range(100)
        )
    )()
    here = ("10.20.30.40", 40000)
    for number, pupil in enumerate(school):
        tab = await clients.sign_in(pupil, f"device-{number:05d}", client=here)
        await tab.close()
