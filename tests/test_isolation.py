"""Isolation: a client acts only on its own calls, reaches only its own account, signs in
only with a current token of its own, and what it claims about itself in a frame is ignored.
Attempts are logged, never with a token or an SDP in the log.

Through the demo's real ASGI stack (WebsocketCommunicator); every test runs on the in-memory
layer and on Redis. Some tests expect the log lines the consumer writes
not write yet (docs/security.md, "Logging"); they flip to passing when it does.
"""

from __future__ import annotations

import json
import logging
import time
import uuid

import pytest
from channels.db import database_sync_to_async
from django.core import signing
from django.test import override_settings

from directcall import tokens
from directcall.models import Account, Call, CallStatus, Registration

from .wsclient import ANSWER, OFFER, Client, make_registration

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("signaling")]

CANDIDATE = {
    "candidate": "candidate:1 1 udp 1 127.0.0.1 5000 typ host",
    "sdpMid": "0",
    "sdpMLineIndex": 0,
    "usernameFragment": "abcd",
}
# An SDP with a marker, to look for in the logs.
SECRET_SDP = OFFER.replace("s=-", "s=SDP-MARKER-8f3a")


@pytest.fixture
def people(make_account):
    """Account A (jane, sam, gil, tom, ann) and account B, where two cuids repeat A's."""
    account, _ = make_account(name="A")
    other, _ = make_account(name="B")
    regs = {
        cuid: make_registration(account, cuid, name)
        for cuid, name in [
            ("tutor_jane", "Jane"),
            ("student_sam", "Sam"),
            ("grocer_gil", "Gil"),
            ("tutor_tom", "Tom"),
            ("student_ann", "Ann"),
        ]
    }
    regs["mallory_m"] = make_registration(other, "mallory_m", "Mallory")
    regs["b_sam"] = make_registration(other, "student_sam", "Sam of B")
    regs["b_jane"] = make_registration(other, "tutor_jane", "Jane of B")
    return regs


@database_sync_to_async
def row(call_id: str) -> tuple:
    return Call.objects.values_list(
        "status", "end_reason", "answered_at", "ended_at", "deadline", "context"
    ).get(pk=call_id)


async def answered_call(caller: Client, callee: Client) -> str:
    call_id = (await caller.invite(callee.cuid))["call_id"]
    await callee.next("incoming", call_id=call_id)
    await callee.send(type="accept", call_id=call_id, sdp=ANSWER)
    await caller.next("state", call_id=call_id, status="answered")
    await callee.next("state", call_id=call_id, status="answered")
    return call_id


def every_call_frame(call_id: str) -> list[dict]:
    """One of each frame that names a call, well formed."""
    return [
        {"type": "ringing", "call_id": call_id},
        {"type": "accept", "call_id": call_id, "sdp": ANSWER},
        {"type": "decline", "call_id": call_id},
        {"type": "decline", "call_id": call_id, "reason": "user_busy"},
        {"type": "cancel", "call_id": call_id},
        {"type": "hangup", "call_id": call_id},
        {"type": "hangup", "call_id": call_id, "reason": "ice_failed"},
        {"type": "candidates", "call_id": call_id, "candidates": [CANDIDATE], "end": True},
        {"type": "renegotiate", "call_id": call_id, "sdp_type": "offer", "sdp": OFFER},
        {"type": "renegotiate", "call_id": call_id, "sdp_type": "answer", "sdp": ANSWER},
    ]


# -- only a party acts on a call ----------------------------------------------------------------

ATTACKERS = {
    "same_account": "grocer_gil",  # knows the cuids, guessed or saw the call id
    "other_account": "mallory_m",
    "other_account_same_cuid": "b_sam",  # the callee's cuid, in another account
}


@pytest.mark.parametrize("attacker", ATTACKERS)
@pytest.mark.parametrize("state", ["ringing", "answered"])
async def test_only_the_parties_act_on_a_call(people, attacker, state):
    """Accept, decline, cancel, hang up, ring, relay: ERR_UNKNOWN_CALL for anyone else,
    whichever way the call id is spelled, and the call is untouched."""
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    eve = await Client.signed_in(people[ATTACKERS[attacker]], device="attacker-device")
    if state == "answered":
        call_id = await answered_call(jane, sam)
    else:
        call_id = (await jane.invite("student_sam"))["call_id"]
        await sam.next("incoming", call_id=call_id)
    before = await row(call_id)
    spellings = [call_id, call_id.upper(), uuid.UUID(call_id).hex, f"urn:uuid:{call_id}"]
    for spelling in spellings:
        for frame in every_call_frame(spelling):
            await eve.send(**frame)
            error = await eve.next("error")
            assert error["code"] == "ERR_UNKNOWN_CALL", (frame, error)
    assert await jane.quiet(0.2) == [] and await sam.quiet(0.1) == []
    assert await row(call_id) == before
    # The parties are unaffected.
    if state == "answered":
        await jane.send(type="candidates", call_id=call_id, candidates=[CANDIDATE])
        assert (await sam.next("candidates", call_id=call_id))["candidates"] == [CANDIDATE]
        await sam.send(type="hangup", call_id=call_id)
        await jane.next("state", call_id=call_id, status="over")
    else:
        await sam.send(type="accept", call_id=call_id, sdp=ANSWER)
        await jane.next("state", call_id=call_id, status="answered")
    assert [f for f in await eve.quiet(0.1) if f["type"] != "error"] == []
    for client in (jane, sam, eve):
        await client.close()


async def test_parties_of_an_ended_call_can_no_longer_act_on_it(people):
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    call_id = await answered_call(jane, sam)
    await jane.send(type="hangup", call_id=call_id)
    await sam.next("state", call_id=call_id, status="over")
    await jane.next("state", call_id=call_id, status="over")
    before = await row(call_id)
    for client in (jane, sam):
        for frame in every_call_frame(call_id):
            await client.send(**frame)
            assert (await client.next("error"))["code"] == "ERR_UNKNOWN_CALL", frame
    assert await jane.quiet(0.1) == [] and await sam.quiet(0.1) == []
    assert await row(call_id) == before
    await jane.close()
    await sam.close()


async def test_roles_within_a_call(people):
    """The caller cannot ring, accept or decline its own call; the callee cannot cancel it."""
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    for frame in every_call_frame(call_id):
        if frame["type"] in ("ringing", "accept", "decline"):
            await jane.send(**frame)
            assert (await jane.next("error"))["code"] == "ERR_UNKNOWN_CALL", frame
        if frame["type"] == "cancel":
            await sam.send(**frame)
            assert (await sam.next("error"))["code"] == "ERR_UNKNOWN_CALL", frame
    assert (await row(call_id))[0] == CallStatus.INITIATED
    await jane.close()
    await sam.close()


async def test_guessed_call_ids_reach_nothing(people):
    """Ids of other accounts' calls, and random ones: ERR_UNKNOWN_CALL, nobody reached."""
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    mallory = await Client.signed_in(people["mallory_m"])
    b_sam = await Client.signed_in(people["b_sam"], device="device-b-sam")
    theirs = await answered_call(jane, sam)
    # Mallory's own call in account B, and guesses around Jane's.
    mine = await answered_call(mallory, b_sam)
    u = uuid.UUID(theirs)
    guesses = [
        theirs,
        str(uuid.UUID(int=u.int ^ 1)),
        str(uuid.UUID(int=u.int + 1)),
        *(str(uuid.uuid4()) for _ in range(20)),
    ]
    for guess in guesses:
        await mallory.send(type="candidates", call_id=guess, candidates=[CANDIDATE])
        assert (await mallory.next("error"))["code"] == "ERR_UNKNOWN_CALL"
    assert await jane.quiet(0.2) == [] and await sam.quiet(0.1) == []
    # Her own call still relays, to her peer only.
    await mallory.send(type="candidates", call_id=mine, candidates=[CANDIDATE])
    await b_sam.next("candidates", call_id=mine)
    assert await sam.quiet(0.1) == []
    for client in (jane, sam, mallory, b_sam):
        await client.close()


# -- accounts are worlds apart ------------------------------------------------------------------


async def test_no_client_reaches_another_accounts_cuid(people):
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    mallory = await Client.signed_in(people["mallory_m"])
    b_sam = await Client.signed_in(people["b_sam"], device="device-b-sam")  # no 4002: other key
    # Jane exists (and is online) only in account A: from B she is offline.
    await mallory.send(type="invite", ref="x", receiver="tutor_jane", context="hi", sdp=OFFER)
    assert (await mallory.next("error", ref="x"))["code"] == 404
    assert await jane.quiet(0.1) == []
    # The same cuid in both accounts: each invite rings the one of the caller's account.
    call_a = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_a)
    assert await b_sam.quiet(0.1) == []
    await jane.send(type="cancel", call_id=call_a)
    await jane.next("state", call_id=call_a, status="cancelled")
    await sam.next("state", call_id=call_a, status="cancelled")
    call_b = (await mallory.invite("student_sam"))["call_id"]
    incoming = await b_sam.next("incoming", call_id=call_b)
    assert incoming["caller"]["cuid"] == "mallory_m"
    assert await sam.quiet(0.1) == [] and await jane.quiet(0.1) == []
    # resume never reveals another account's call.
    spy = await Client.signed_in(people["b_jane"], device="device-b-jane", resume=[call_a])
    assert spy.ready["calls"] == [] and await spy.quiet(0.1) == []
    calls = await database_sync_to_async(
        lambda: {str(c.pk): (c.account_id, c.caller.cuid, c.callee_id) for c in Call.objects.all()}
    )()
    assert calls[call_a] == (
        people["tutor_jane"].account_id,
        "tutor_jane",
        people["student_sam"].pk,
    )
    assert calls[call_b] == (people["mallory_m"].account_id, "mallory_m", people["b_sam"].pk)
    for client in (jane, sam, mallory, b_sam, spy):
        await client.close()


# -- tokens -------------------------------------------------------------------------------------


def _token(reg: Registration, device: str = "device-0001") -> str:
    return tokens.issue(reg.account_id, reg.pk, reg.cuid, device)


def _forge(token: str, **changes) -> str:
    """The token with its payload edited and its signature kept (what an attacker can do)."""
    payload, timestamp, signature = token.rsplit(":", 2)
    compressed = payload.startswith(".")
    data = signing.b64_decode(payload.lstrip(".").encode())
    if compressed:
        import zlib

        data = zlib.decompress(data)
    claims = {**json.loads(data), **changes}
    forged = signing.b64_encode(json.dumps(claims, separators=(",", ":")).encode()).decode()
    return f"{forged}:{timestamp}:{signature}"


async def assert_refused(token: object) -> None:
    client = Client(await Client.open(), "x", 0)
    await client.send(type="auth", token=token)
    error = await client.next("error")
    assert error["code"] == "ERR_INVALID_TOKEN", error
    assert await client.closed() == 4001
    await client.close()


async def _presence(reg: Registration):
    from directcall import presence

    return await database_sync_to_async(presence.lookup)(reg.account_id, reg.cuid)


async def test_an_expired_token_is_refused(people, monkeypatch, settings):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "TOKEN_TTL": 60}
    jane = people["tutor_jane"]
    token = _token(jane)
    now = time.time()
    with monkeypatch.context() as patch:
        patch.setattr("django.core.signing.time.time", lambda: now + 61)
        await assert_refused(token)
    assert await _presence(jane) is None
    # Just inside the lifetime, the same token still signs in.
    with monkeypatch.context() as patch:
        patch.setattr("django.core.signing.time.time", lambda: now + 55)
        client = Client(await Client.open(), jane.cuid, jane.pk)
        await client.send(type="auth", token=token)
        assert (await client.next("ready"))["cuid"] == "tutor_jane"
    await client.close()


async def test_a_token_signed_with_another_secret_key_is_refused(people):
    jane = people["tutor_jane"]
    with override_settings(SECRET_KEY="another-site-entirely"):
        token = _token(jane)
    await assert_refused(token)
    # Nor does a value signed with our key for another purpose (another salt) pass.
    claims = {"a": jane.account_id, "r": jane.pk, "c": jane.cuid, "d": "device-0001"}
    await assert_refused(signing.dumps(claims))
    await assert_refused(signing.dumps(claims, salt="django.contrib.sessions.SessionStore"))


@pytest.mark.parametrize(
    "claim",
    ["account", "registration", "cuid", "account_and_registration"],
)
async def test_a_tampered_token_is_refused(people, claim):
    """The payload edited (the account pk swapped, say) without the key: bad signature."""
    jane, mallory = people["tutor_jane"], people["mallory_m"]
    changes = {
        "account": {"a": mallory.account_id},
        "registration": {"r": people["student_sam"].pk},
        "cuid": {"c": "student_sam"},
        "account_and_registration": {"a": mallory.account_id, "r": mallory.pk, "c": "mallory_m"},
    }[claim]
    await assert_refused(_forge(_token(jane), **changes))
    assert await _presence(people["student_sam"]) is None
    assert await _presence(mallory) is None


async def test_a_validly_signed_token_of_another_account_is_refused(people):
    """Even signed by the server, a token pairing one account with another's registration."""
    jane, mallory = people["tutor_jane"], people["mallory_m"]
    await assert_refused(tokens.issue(mallory.account_id, jane.pk, jane.cuid, "device-0001"))
    await assert_refused(tokens.issue(jane.account_id, jane.pk, "student_sam", "device-0001"))
    await assert_refused(tokens.issue(jane.account_id, mallory.pk, "mallory_m", "device-0001"))


async def test_a_token_whose_registration_was_deleted_is_refused(people):
    jane = people["tutor_jane"]
    token = _token(jane)
    await database_sync_to_async(Registration.objects.filter(pk=jane.pk).delete)()
    await assert_refused(token)


async def test_a_token_of_a_deactivated_account_is_refused(people):
    jane = people["tutor_jane"]
    token = _token(jane)
    await database_sync_to_async(Account.objects.filter(pk=jane.account_id).update)(is_active=False)
    await assert_refused(token)


async def test_a_refused_token_does_not_disturb_the_signed_in_user(people):
    """Forged, expired-looking or mismatched tokens for Jane do not replace her connection."""
    jane = await Client.signed_in(people["tutor_jane"], device="device-0001")
    holder = await _presence(people["tutor_jane"])
    reg = people["tutor_jane"]
    await assert_refused(_forge(_token(reg), d="device-9999"))
    await assert_refused(tokens.issue(people["mallory_m"].account_id, reg.pk, reg.cuid, "d-0001"))
    assert await _presence(reg) == holder
    await jane.alive()
    await jane.close()


async def test_a_token_in_the_url_is_ignored(people, settings):
    """Tokens travel in the first frame, never in the URL: a URL token signs nobody in."""
    from channels.testing import WebsocketCommunicator

    from example_project.asgi import application

    settings.DIRECTCALL = {**settings.DIRECTCALL, "AUTH_TIMEOUT": 1}
    token = _token(people["tutor_jane"])
    communicator = WebsocketCommunicator(
        application,
        f"/ws/directcall/v1/?token={token}",
        headers=[(b"origin", b"http://testserver"), (b"host", b"testserver")],
    )
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    client = Client(communicator, "x", 0)
    await client.send(type="ping")
    assert (await client.next("error"))["code"] == "ERR_NOT_AUTHENTICATED"
    # AUTH_TIMEOUT later (1 s here) the socket is closed.
    assert await client.closed() == 4001
    assert await _presence(people["tutor_jane"]) is None
    await client.close()


# -- identity comes from the token alone ------------------------------------------------------


async def test_identity_claimed_in_the_auth_frame_is_ignored(people):
    gil = people["grocer_gil"]
    client = Client(await Client.open(), gil.cuid, gil.pk)
    jane = people["tutor_jane"]
    await client.send(
        type="auth",
        token=_token(gil),
        cuid=jane.cuid,
        account=jane.account_id,
        registration=jane.pk,
        name="Jane",
        device="device-of-jane",
    )
    ready = await client.next("ready")
    assert (ready["cuid"], ready["name"]) == ("grocer_gil", "Gil")
    assert await _presence(jane) is None
    await client.close()


async def test_identity_claimed_in_call_frames_is_ignored(people):
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    gil = await Client.signed_in(people["grocer_gil"])
    call_id = await answered_call(jane, sam)
    claims = {
        "cuid": "student_sam",
        "from": people["student_sam"].pk,
        "registration": people["student_sam"].pk,
        "caller": "student_sam",
        "account": people["student_sam"].account_id,
    }
    # Gil pretending to be Sam: refused.
    await gil.send(type="hangup", call_id=call_id, **claims)
    assert (await gil.next("error"))["code"] == "ERR_UNKNOWN_CALL"
    await gil.send(type="candidates", call_id=call_id, candidates=[CANDIDATE], **claims)
    assert (await gil.next("error"))["code"] == "ERR_UNKNOWN_CALL"
    # Jane's relay claiming to come from someone else arrives as hers, claims dropped.
    await jane.send(type="candidates", call_id=call_id, candidates=[CANDIDATE], **claims)
    relayed = await sam.next("candidates", call_id=call_id)
    assert relayed == {
        "type": "candidates",
        "call_id": call_id,
        "candidates": [CANDIDATE],
        "end": False,
    }
    # Gil's invite naming another caller is his own.
    tom = await Client.signed_in(people["tutor_tom"])
    await gil.send(
        type="invite", receiver="tutor_tom", context="hi", sdp=OFFER, caller="tutor_jane"
    )
    incoming = await tom.next("incoming")
    assert incoming["caller"]["cuid"] == "grocer_gil"
    assert await jane.quiet(0.1) == [] and await sam.quiet(0.1) == []
    for client in (jane, sam, gil, tom):
        await client.close()


@pytest.mark.parametrize(
    "kind",
    ["dc.relay", "dc_relay", "dc.incoming", "dc.state", "dc.peer", "dc.replaced", "dc_replaced"],
)
async def test_frames_shaped_like_server_messages_are_refused(people, kind):
    """A browser cannot reach the channel-layer handlers by naming them as a frame type."""
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    gil = await Client.signed_in(people["grocer_gil"])
    call_id = await answered_call(jane, sam)
    await gil.send(
        type=kind,
        call_id=call_id,
        registration=people["student_sam"].pk,
        conn="x",
        connected=False,
        **{"from": people["tutor_jane"].pk},
        frame={"type": "state", "call_id": call_id, "status": "over"},
    )
    assert (await gil.next("error"))["code"] == "ERR_BAD_FRAME"
    assert await jane.quiet(0.2) == [] and await sam.quiet(0.1) == []
    await jane.alive()
    await sam.alive()
    assert (await row(call_id))[0] == CallStatus.ANSWERED
    for client in (jane, sam, gil):
        await client.close()


# -- logging: attempts are logged, secrets never ------------------------------------------------


def _logged(caplog) -> str:
    """Everything logged, messages and tracebacks, as one string."""
    parts = []
    for record in caplog.records:
        parts.append(record.getMessage())
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


async def test_refused_auth_is_logged_without_the_token(people, caplog):
    caplog.set_level(logging.DEBUG)
    token = _forge(_token(people["tutor_jane"]), a=people["mallory_m"].account_id)
    await assert_refused(token)
    refused = [
        r
        for r in caplog.records
        if r.name == "directcall.signaling" and r.levelno >= logging.INFO and "auth" in r.msg
    ]
    assert refused, "a refused socket auth is not logged"
    text = _logged(caplog)
    for part in (token, *token.split(":")):
        assert part not in text


async def test_nothing_logs_a_token_or_an_sdp(people, caplog):
    """A whole session of calls and attacks: no log line carries a token or an SDP."""
    caplog.set_level(logging.DEBUG)
    jane_token = _token(people["tutor_jane"])
    jane = Client(await Client.open(), "tutor_jane", people["tutor_jane"].pk)
    await jane.send(type="auth", token=jane_token)
    await jane.next("ready")
    sam = await Client.signed_in(people["student_sam"])
    gil = await Client.signed_in(people["grocer_gil"])
    await jane.send(type="invite", receiver="student_sam", context="hi", sdp=SECRET_SDP)
    call_id = (await jane.next("invited"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    await gil.send(type="accept", call_id=call_id, sdp=SECRET_SDP)
    await gil.next("error")
    await gil.send(type="renegotiate", call_id=call_id, sdp_type="offer", sdp=SECRET_SDP)
    await gil.next("error")
    await sam.send(type="accept", call_id=call_id, sdp=SECRET_SDP)
    await jane.next("state", call_id=call_id, status="answered")
    await jane.send(type="renegotiate", call_id=call_id, sdp_type="offer", sdp=SECRET_SDP)
    await sam.next("renegotiate", call_id=call_id)
    forged = _forge(jane_token, c="student_sam")
    await assert_refused(forged)
    await assert_refused(jane_token + "x")
    await gil.send(type="auth", token=jane_token)  # a second auth on a signed-in socket
    await gil.next("error")
    await jane.send(type="hangup", call_id=call_id)
    await sam.next("state", call_id=call_id, status="over")
    text = _logged(caplog)
    assert text, "nothing was logged at all"
    assert "SDP-MARKER-8f3a" not in text
    for token in (jane_token, forged):
        for part in token.split(":"):
            assert part not in text
    for client in (jane, sam, gil):
        await client.close()


@pytest.mark.parametrize("why", ["registration_deleted", "account_deactivated"])
async def test_refused_auth_with_a_genuine_token_names_who(people, caplog, why):
    """A token with a good signature whose registration is gone, or whose account is
    inactive, names the account, registration and cuid in the log (never the token)."""
    caplog.set_level(logging.DEBUG)
    jane = people["tutor_jane"]
    token = _token(jane)
    if why == "registration_deleted":
        await database_sync_to_async(Registration.objects.filter(pk=jane.pk).delete)()
    else:
        await database_sync_to_async(Account.objects.filter(pk=jane.account_id).update)(
            is_active=False
        )
    await assert_refused(token)
    named = [
        r
        for r in caplog.records
        if r.name == "directcall.signaling"
        and r.levelno >= logging.INFO
        and "tutor_jane" in r.getMessage()
        and str(jane.account_id) in r.getMessage()
        and str(jane.pk) in r.getMessage()
    ]
    assert named, "the refusal does not say whose token it was"
    assert all(part not in _logged(caplog) for part in token.split(":"))


async def test_acting_on_someone_elses_call_is_logged(people, caplog):
    """Gil relaying into, or accepting, a call he is not a party of: logged with his cuid,
    account and the call id, never with the SDP he sent."""
    caplog.set_level(logging.DEBUG)
    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    gil = await Client.signed_in(people["grocer_gil"])
    call_id = (await jane.invite("student_sam"))["call_id"]
    await sam.next("incoming", call_id=call_id)
    caplog.clear()
    await gil.send(type="accept", call_id=call_id, sdp=SECRET_SDP)
    assert (await gil.next("error"))["code"] == "ERR_UNKNOWN_CALL"
    await gil.send(type="renegotiate", call_id=call_id, sdp_type="offer", sdp=SECRET_SDP)
    assert (await gil.next("error"))["code"] == "ERR_UNKNOWN_CALL"
    logged = [
        r.getMessage()
        for r in caplog.records
        if r.name == "directcall.signaling" and r.levelno >= logging.INFO
    ]
    for kind in ("accept", "renegotiate"):
        assert any(kind in m and call_id in m and "grocer_gil" in m for m in logged), logged
    account = str(people["grocer_gil"].account_id)
    assert all(account in m for m in logged if "grocer_gil" in m), logged
    assert "SDP-MARKER-8f3a" not in _logged(caplog)
    for client in (jane, sam, gil):
        await client.close()


async def test_a_flood_is_logged_once_with_who(people, caplog, settings):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "FLOOD_RATE": 5, "FLOOD_BURST": 10}
    caplog.set_level(logging.DEBUG)
    gil = await Client.signed_in(people["grocer_gil"])
    for _ in range(60):
        await gil.send(type="ping")
    assert (await gil.next("error"))["code"] == "ERR_RATE_LIMITED"
    await gil.quiet(0.2)
    flood = [
        r
        for r in caplog.records
        if r.name == "directcall.signaling"
        and r.levelno >= logging.WARNING
        and "grocer_gil" in r.getMessage()
        and str(people["grocer_gil"].account_id) in r.getMessage()
    ]
    assert len(flood) == 1, [r.getMessage() for r in caplog.records]
    await gil.close()


# -- the same-process path (directcall.transport) -------------------------------------------------
# In-memory, the tests above run with every connection in this process: their messages take
# the same-process path. These check the path itself: it is taken, and a message it carries
# reaches a client only when the receiving connection's own checks pass.


def channel_of(registration) -> str:
    from directcall import presence

    found = presence.lookup(registration.account_id, registration.cuid)
    assert found is not None and len(found.channels) == 1
    return found.channels[0]


async def test_the_same_process_path_carries_relays_without_the_channel_layer(
    people, channel_backend, monkeypatch
):
    """In one process a relayed frame never touches the channel layer (in-memory runs);
    with the path off (the Redis runs), every one crosses it."""
    from channels.layers import get_channel_layer

    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    call_id = await answered_call(jane, sam)
    layer = get_channel_layer()
    carried = []
    real_send = layer.send

    async def counting_send(channel, message):
        carried.append(message["type"])
        await real_send(channel, message)

    monkeypatch.setattr(layer, "send", counting_send)
    for _ in range(3):
        await jane.send(type="candidates", call_id=call_id, candidates=[CANDIDATE])
        assert (await sam.next("candidates", call_id=call_id))["candidates"] == [CANDIDATE]
    assert carried == ([] if channel_backend == "memory" else ["dc.relay"] * 3)
    for client in (jane, sam):
        await client.close()


@pytest.mark.parametrize(
    "forged", ["stranger", "other_account", "wrong_call", "self", "peer_of_other_call"]
)
async def test_a_relay_delivered_in_process_reaches_only_the_other_party(people, forged):
    """Messages handed straight to sam's connection (as the same-process path hands them)
    that do not come from the other party of a live call he holds are dropped; the genuine
    one still arrives."""
    from directcall import protocol, transport

    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    gil = await Client.signed_in(people["grocer_gil"])
    tom = await Client.signed_in(people["tutor_tom"])
    call_id = await answered_call(jane, sam)
    other_call = await answered_call(gil, tom)
    sam_channel = await database_sync_to_async(channel_of)(people["student_sam"])
    payload = {"type": "candidates", "candidates": [CANDIDATE], "end": False}
    sender, about = {
        "stranger": (people["grocer_gil"].pk, call_id),
        "other_account": (people["b_sam"].pk, call_id),
        "wrong_call": (people["tutor_jane"].pk, other_call),
        "self": (people["student_sam"].pk, call_id),
        "peer_of_other_call": (people["tutor_tom"].pk, other_call),
    }[forged]
    assert await transport.send(sam_channel, protocol.relay_message(about, sender, payload))
    assert await sam.quiet(0.2) == []
    await transport.send(
        sam_channel, protocol.relay_message(call_id, people["tutor_jane"].pk, payload)
    )
    assert (await sam.next("candidates", call_id=call_id))["candidates"] == [CANDIDATE]
    for client in (jane, sam, gil, tom):
        await client.close()


async def test_after_the_call_ends_nothing_is_relayed_in_process(people):
    """Once the call is over neither the peer's frames nor messages handed straight to the
    connection reach the client: the route is gone with the call."""
    from directcall import protocol, transport

    jane = await Client.signed_in(people["tutor_jane"])
    sam = await Client.signed_in(people["student_sam"])
    call_id = await answered_call(jane, sam)
    sam_channel = await database_sync_to_async(channel_of)(people["student_sam"])
    await jane.send(type="hangup", call_id=call_id)
    await sam.next("state", call_id=call_id, status="over")
    await jane.next("state", call_id=call_id, status="over")
    await jane.send(type="candidates", call_id=call_id, candidates=[CANDIDATE])
    assert (await jane.next("error"))["code"] == "ERR_UNKNOWN_CALL"
    payload = {"type": "candidates", "candidates": [CANDIDATE], "end": False}
    await transport.send(
        sam_channel, protocol.relay_message(call_id, people["tutor_jane"].pk, payload)
    )
    assert await sam.quiet(0.2) == []
    for client in (jane, sam):
        await client.close()
