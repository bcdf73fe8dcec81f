"""The calls API: server-key and session authentication, isolation, pagination, filters,
throttles, and the server key kept out of the logs."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from directcall.api.records import CallSerializer, quality_of
from directcall.models import Call, CallStatus, EndReason, Registration

CALLS = "/directcall/v1/calls"
MY_CALLS = "/directcall/v1/me/calls"


@pytest.fixture
def world(make_account) -> dict[str, Any]:
    """Two accounts with server keys; each has jane and sam (same cuids) and some calls."""
    now = timezone.now()
    world: dict[str, Any] = {}
    for label in ("a", "b"):
        account, _api_key = make_account(name=f"Account {label}")
        server_key = account.rotate_server_key()
        jane = Registration.objects.create(account=account, cuid="tutor_jane", name="Jane")
        sam = Registration.objects.create(account=account, cuid="student_sam", name="")
        gil = Registration.objects.create(account=account, cuid="grocer_gil", name="Gil")
        calls = []
        plan = [
            (jane, sam, CallStatus.OVER, EndReason.USER_HANGUP, 60),
            (sam, jane, CallStatus.MISSED, EndReason.INVITE_TIMEOUT, None),
            (jane, gil, CallStatus.DECLINED, EndReason.USER_DECLINED, None),
            (gil, sam, CallStatus.OVER, EndReason.USER_HANGUP, 5),
            (jane, sam, CallStatus.ANSWERED, "", None),
        ]
        for minutes, (caller, callee, status, reason, talk) in enumerate(plan):
            created = now - timedelta(days=len(plan) - minutes)
            answered = created + timedelta(seconds=3) if talk or status == "answered" else None
            ended = answered + timedelta(seconds=talk) if talk else None
            if status in (CallStatus.MISSED, CallStatus.DECLINED):
                ended = created + timedelta(seconds=30)
            calls.append(
                Call.objects.create(
                    account=account,
                    caller=caller,
                    callee=callee,
                    context=f"call {minutes}",
                    status=status,
                    end_reason=reason,
                    created_at=created,
                    answered_at=answered,
                    ended_at=ended,
                )
            )
        world[label] = {
            "account": account,
            "key": server_key,
            "jane": jane,
            "sam": sam,
            "gil": gil,
            "calls": calls,
        }
    return world


def get(api_client, url: str, key: str | None = None, **params: Any):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}"} if key else {}
    return api_client.get(url, params, **headers)


# -- server key ---------------------------------------------------------------------------------


def test_the_accounts_calls_newest_first(api_client, world):
    response = get(api_client, CALLS, world["a"]["key"])
    assert response.status_code == 200, response.content
    body = response.json()
    ids = [call["id"] for call in body["results"]]
    assert ids == [str(call.pk) for call in reversed(world["a"]["calls"])]
    first = body["results"][-1]
    assert first["caller"] == {"cuid": "tutor_jane", "name": "Jane"}
    assert first["callee"] == {"cuid": "student_sam", "name": "student_sam"}  # no name: cuid
    assert first["status"] == "over" and first["reason"] == "user_hangup"
    assert first["duration"] == 60.0 and first["quality"] is None
    assert first["accountId"] == world["a"]["account"].account_id
    live = body["results"][0]
    assert live["reason"] is None and live["endedAt"] is None and live["duration"] is None


@pytest.mark.parametrize(
    "header",
    [
        None,
        "Bearer",
        "Bearer nonsense",
        "Bearer dcsk_000000000000.wrong",
        "Token dcsk_x.y",
        "Bearer \u00e9t\u00e9",
    ],
)
def test_refused_without_a_right_key(api_client, world, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = api_client.get(CALLS, **extra)
    assert response.status_code == 401
    assert response.json()["code"] == "ERR_INVALID_CREDENTIALS"
    # About the server key, not "the account id or API key", which were not sent.
    assert response.json()["message"] in (
        "The server key is missing or incorrect.",
        "Send Authorization: Bearer <server key>.",
    )
    assert response["WWW-Authenticate"] == "Bearer"


def test_a_wrong_secret_of_a_real_prefix_and_the_api_key_are_refused(api_client, world):
    prefix = world["a"]["key"].partition(".")[0]
    assert get(api_client, CALLS, f"{prefix}.not-the-secret").status_code == 401
    api_key = world["a"]["account"].rotate_api_key()  # the page's key opens nothing here
    assert get(api_client, CALLS, api_key).status_code == 401


def test_a_revoked_key_or_an_inactive_account_is_refused(api_client, world):
    a = world["a"]
    a["account"].revoke_server_key()
    assert get(api_client, CALLS, a["key"]).status_code == 401
    b = world["b"]
    b["account"].is_active = False
    b["account"].save()
    assert get(api_client, CALLS, b["key"]).status_code == 401


def test_a_new_key_replaces_the_old_one(api_client, world):
    a = world["a"]
    new = a["account"].rotate_server_key()
    assert get(api_client, CALLS, a["key"]).status_code == 401
    assert get(api_client, CALLS, new).status_code == 200


def test_no_call_of_another_account_is_reachable(api_client, world):
    a, b = world["a"], world["b"]
    listed = {call["id"] for call in get(api_client, CALLS, a["key"]).json()["results"]}
    assert listed == {str(call.pk) for call in a["calls"]}
    for call in b["calls"]:
        response = get(api_client, f"{CALLS}/{call.pk}", a["key"])
        assert response.status_code == 404 and response.json()["code"] == "ERR_NOT_FOUND"
    own = get(api_client, f"{CALLS}/{a['calls'][0].pk}", a["key"])
    assert own.status_code == 200 and own.json()["id"] == str(a["calls"][0].pk)
    # The same cuid in both accounts: each key sees its own registration.
    for label in ("a", "b"):
        response = get(api_client, "/directcall/v1/registrations/tutor_jane", world[label]["key"])
        assert response.json()["accountId"] == world[label]["account"].account_id
    # A cuid filter naming the other account's only cuid finds nothing.
    Registration.objects.create(account=b["account"], cuid="only_in_b", name="B")
    assert get(api_client, CALLS, a["key"], cuid="only_in_b").json()["results"] == []


def test_pagination_walks_every_call_once(api_client, world):
    a = world["a"]
    seen, url, pages = [], CALLS, 0
    params: dict[str, Any] = {"limit": 2}
    while url:
        response = api_client.get(url, params, HTTP_AUTHORIZATION=f"Bearer {a['key']}")
        assert response.status_code == 200
        body = response.json()
        assert len(body["results"]) <= 2
        seen += [call["id"] for call in body["results"]]
        url, params, pages = body["next"], {}, pages + 1
    assert pages == 3
    assert seen == [str(call.pk) for call in reversed(a["calls"])]
    refused = get(api_client, CALLS, a["key"], cursor="not-a-cursor")
    assert refused.status_code == 404 and refused.json()["code"] == "ERR_NOT_FOUND"


def test_filters(api_client, world):
    a = world["a"]
    calls = a["calls"]

    def ids(**params: Any) -> set[str]:
        response = get(api_client, CALLS, a["key"], **params)
        assert response.status_code == 200, response.content
        return {call["id"] for call in response.json()["results"]}

    def of(*indexes: int) -> set[str]:
        return {str(calls[i].pk) for i in indexes}

    assert ids(cuid="grocer_gil") == of(2, 3)
    assert ids(status="over") == of(0, 3)
    assert ids(status="missed,declined") == of(1, 2)
    assert ids(cuid="student_sam", status="over") == of(0, 3)
    since = calls[2].created_at
    assert ids(since=since.isoformat()) == of(2, 3, 4)
    assert ids(until=since.isoformat()) == of(0, 1)
    assert ids(since=calls[1].created_at.isoformat(), until=calls[3].created_at.isoformat()) == of(
        1, 2
    )
    assert ids(since=(timezone.now() + timedelta(days=1)).date().isoformat()) == set()


@pytest.mark.parametrize(
    "params,named",
    [
        ({"status": "nope"}, "status"),
        ({"status": "over,"}, "status"),
        ({"cuid": "91_8899555"}, "cuid"),
        ({"since": "yesterday"}, "since"),
        ({"until": "2026-13-45"}, "until"),
        ({"since": "x", "cuid": "!"}, "cuid, since"),
    ],
)
def test_bad_filters_are_named(api_client, world, params, named):
    response = get(api_client, CALLS, world["a"]["key"], **params)
    assert response.status_code == 400
    assert response.json() == {
        "code": "ERR_INVALID_PARAMETERS",
        "message": f"Invalid parameters: {named}.",
    }


def test_registrations_by_cuid(api_client, world):
    a = world["a"]
    response = get(api_client, "/directcall/v1/registrations/student_sam", a["key"])
    assert response.status_code == 200
    assert response.json()["cuid"] == "student_sam" and response.json()["name"] == "student_sam"
    for cuid in ("nobody_here", "91_8899555", "a" * 300):
        missing = get(api_client, f"/directcall/v1/registrations/{cuid}", a["key"])
        assert missing.status_code == 404 and missing.json()["code"] == "ERR_NOT_FOUND"


def test_any_text_in_the_path_gets_the_apis_json_404(api_client, world):
    """Newlines too (%0A): Django's ``path:`` converter stops at one, and the request then
    missed the route and got Django's HTML page (found by the schema fuzzer)."""
    a = world["a"]
    own = a["calls"][0].pk
    for url in (
        *(f"/directcall/v1/registrations/{cuid}" for cuid in ("%C2%9F%C2%AD%0A", "x%0Ay", "%0A")),
        *(f"{CALLS}/{call_id}" for call_id in ("not-a-uuid", f"{own}%0A", "%0A%0A")),
    ):
        missing = get(api_client, url, a["key"])
        assert missing.status_code == 404, url
        assert missing["Content-Type"] == "application/json", url
        assert missing.json()["code"] == "ERR_NOT_FOUND", url


def test_throttled_per_key_and_per_ip_wrong_keys_included(api_client, world, settings):
    settings.DIRECTCALL = {
        **settings.DIRECTCALL,
        "THROTTLE_RATES": {"directcall_api_key": "2/min", "directcall_api_ip": "5/min"},
    }
    a, b = world["a"], world["b"]
    assert [get(api_client, CALLS, a["key"]).status_code for _ in range(3)] == [200, 200, 429]
    assert get(api_client, CALLS, b["key"]).status_code == 200  # another key's own budget
    refused = get(api_client, CALLS, "dcsk_000000000000.guess")
    assert refused.status_code == 401  # the fifth request from this address
    throttled = get(api_client, CALLS, "dcsk_000000000000.guess")
    assert throttled.status_code == 429 and throttled.json()["code"] == "ERR_RATE_LIMITED"
    assert int(throttled["Retry-After"]) >= 1


def test_the_server_key_is_never_logged(api_client, world, caplog):
    key = world["a"]["key"]
    secret = key.partition(".")[2]
    with caplog.at_level(logging.DEBUG):
        get(api_client, CALLS, key)
        get(api_client, CALLS, key + "x")
        get(api_client, CALLS, key.replace("dcsk_", "dcsk_0"))
        get(api_client, f"{CALLS}/{world['b']['calls'][0].pk}", key)
    assert secret not in caplog.text
    assert "calls API refused a server key" in caplog.text  # the refusals are logged


# -- the logged-in user's calls -------------------------------------------------------------------


@pytest.fixture
def session_world(world, settings):
    """Users of the session account (account a): user 1 is jane's cuid, user 2 sam's."""
    settings.DIRECTCALL = {
        **settings.DIRECTCALL,
        "SESSION_ACCOUNT": world["a"]["account"].account_id,
    }
    users = get_user_model().objects
    jane_user = users.create_user("jane", password="pw")
    sam_user = users.create_user("sam", password="pw")
    Registration.objects.filter(pk=world["a"]["jane"].pk).update(cuid=f"user_{jane_user.pk}")
    Registration.objects.filter(pk=world["a"]["sam"].pk).update(cuid=f"user_{sam_user.pk}")
    return world, jane_user, sam_user


def test_my_calls_are_mine_only_with_the_other_partys_name(api_client, session_world):
    world, jane_user, sam_user = session_world
    calls = world["a"]["calls"]
    api_client.force_login(jane_user)
    body = api_client.get(MY_CALLS).json()
    assert [call["id"] for call in body["results"]] == [
        str(calls[i].pk) for i in (4, 2, 1, 0)
    ]  # not gil's call to sam, nor any of account b
    by_id = {call["id"]: call for call in body["results"]}
    outgoing = by_id[str(calls[2].pk)]
    assert outgoing["direction"] == "outgoing" and outgoing["otherParty"]["name"] == "Gil"
    incoming = by_id[str(calls[1].pk)]
    assert incoming["direction"] == "incoming"
    assert incoming["otherParty"]["cuid"] == f"user_{sam_user.pk}"
    assert "caller" not in incoming and "accountId" not in incoming
    api_client.force_login(sam_user)
    sams = {call["id"] for call in api_client.get(MY_CALLS).json()["results"]}
    assert sams == {str(calls[i].pk) for i in (0, 1, 3, 4)}


def test_my_calls_paginated(api_client, session_world):
    _world, jane_user, _sam = session_world
    api_client.force_login(jane_user)
    first = api_client.get(MY_CALLS, {"limit": 3}).json()
    assert len(first["results"]) == 3 and first["next"]
    second = api_client.get(first["next"]).json()
    assert len(second["results"]) == 1 and second["next"] is None


def test_my_calls_need_a_login(api_client, session_world):
    response = api_client.get(MY_CALLS)
    assert response.status_code == 403 and response.json()["code"] == "ERR_NOT_SIGNED_IN"


def test_a_user_never_registered_has_no_calls(api_client, session_world):
    stranger = get_user_model().objects.create_user("stranger", password="pw")
    api_client.force_login(stranger)
    response = api_client.get(MY_CALLS)
    assert response.status_code == 200 and response.json()["results"] == []


def test_my_calls_do_not_take_a_server_key(api_client, world):
    response = get(api_client, MY_CALLS, world["a"]["key"])
    assert response.status_code == 403


# -- the quality summary (issue 15) ---------------------------------------------------------------


def test_quality_is_read_from_the_call(world):
    """The one place that reads a call's quality summary (records.QUALITY_FIELD)."""
    call = world["a"]["calls"][0]
    assert quality_of(call) is None
    from directcall.api import records

    summary = {"mos": 4.2, "packetLoss": 0.01}
    setattr(call, records.QUALITY_FIELD, summary)
    assert quality_of(call) == summary
    assert CallSerializer(call).data["quality"] == summary
