"""POST /directcall/v1/init through the real URLconf, views, throttles and database."""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.db.models.signals import post_save
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from rest_framework.response import Response

from directcall import tokens
from directcall.api.throttling import InitIPThrottle
from directcall.api.views import InitView
from directcall.models import Registration

pytestmark = pytest.mark.django_db

URL = "/directcall/v1/init"


def init(api_client, account, key, **fields):
    body = {"accountId": account.account_id, "apikey": key, "cuid": "tutor_jane", **fields}
    extra = {}
    if "origin" in fields:
        extra["HTTP_ORIGIN"] = body.pop("origin")
    return api_client.post(URL, body, format="json", **extra)


def test_url_is_versioned_and_named():
    assert reverse("directcall:init") == URL


def test_success_returns_a_session(api_client, make_account):
    account, key = make_account(ring_timeout=12, logo_url="https://cdn.example.org/logo.png")
    response = init(api_client, account, key, name="  Jane  ", deviceId="device-0001")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["cuid"] == "tutor_jane" and body["name"] == "Jane"
    assert body["accountId"] == account.account_id
    assert body["deviceId"] == "device-0001"
    assert body["ringtone"] is None
    assert body["ringTimeout"] == 12 and body["maxCallDuration"] is None
    assert body["websocketUrl"] == "ws://testserver/ws/directcall/v1/"
    assert body["iceServers"] == [{"urls": ["stun:127.0.0.1:3478"]}]
    assert body["branding"]["logoUrl"] == "https://cdn.example.org/logo.png"
    assert body["branding"]["backgroundColor"] == account.background_color
    registration = Registration.objects.get(account=account, cuid="tutor_jane")
    assert registration.name == "Jane" and registration.device_id == "device-0001"
    session = tokens.verify(body["token"])
    assert session == tokens.Session(account.pk, registration.pk, "tutor_jane", "device-0001")


def test_device_id_is_issued_when_absent(api_client, make_account):
    account, key = make_account()
    body = init(api_client, account, key).json()
    assert len(body["deviceId"]) >= 8
    assert tokens.verify(body["token"]).device_id == body["deviceId"]
    # The generated id is stored like a sent one.
    assert Registration.objects.get().device_id == body["deviceId"]


def test_generated_device_id_replaces_the_stored_one(api_client, make_account):
    account, key = make_account()
    init(api_client, account, key, deviceId="device-0001")
    body = init(api_client, account, key).json()
    assert body["deviceId"] != "device-0001"
    assert Registration.objects.get().device_id == body["deviceId"]


def test_ringtone_is_returned_as_validated(api_client, make_account):
    account, key = make_account()
    ringtone = "https://cdn.example.org/ring.mp3"
    body = init(api_client, account, key, ringtone=ringtone).json()
    assert body["ringtone"] == ringtone
    for blank in ("", "   ", None):
        assert init(api_client, account, key, ringtone=blank).json()["ringtone"] is None


def test_reinit_updates_the_registration(api_client, make_account):
    account, key = make_account(require_clevertap=True)
    init(api_client, account, key, name="Jane", ctAccountId="CT-1", ctId="ct_old")
    response = init(api_client, account, key, name="Jane", ctAccountId="CT-1", ctId="ct_new")
    assert response.status_code == 200
    registration = Registration.objects.get(account=account, cuid="tutor_jane")
    assert registration.ct_id == "ct_new" and registration.name == "Jane"
    assert Registration.objects.count() == 1


def test_init_without_a_name_does_not_return_the_stored_one(api_client, make_account):
    """Issue 13 (oracle): with the page's key, an init without a name as someone else's cuid
    answered with the name that person had signed in with."""
    account, key = make_account()
    init(api_client, account, key, name="Jane Doe")
    body = init(api_client, account, key).json()  # another page, the same cuid, no name
    assert body["name"] == "tutor_jane"
    assert "Jane Doe" not in str(body)
    # Nor is it kept for the socket's ready frame or the callers' screens: the sign-in
    # without a name left none.
    assert Registration.objects.get(account=account, cuid="tutor_jane").name == ""


def test_cuid_is_case_sensitive(api_client, make_account):
    account, key = make_account()
    init(api_client, account, key, cuid="Tutor_Jane")
    init(api_client, account, key, cuid="tutor_jane")
    assert sorted(Registration.objects.values_list("cuid", flat=True)) == [
        "Tutor_Jane",
        "tutor_jane",
    ]


@pytest.mark.parametrize("missing", ["accountId", "apikey", "cuid"])
def test_missing_parameters(api_client, make_account, missing):
    account, key = make_account()
    body = {"accountId": account.account_id, "apikey": key, "cuid": "tutor_jane"}
    del body[missing]
    response = api_client.post(URL, body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "ERR_MISSING_INITPARAMETERS"
    assert Registration.objects.count() == 0


@pytest.mark.parametrize(
    "field,value",
    [("cuid", "91_8899555"), ("cuid", "abc"), ("name", "ab"), ("ringtone", "javascript:x()")],
)
def test_invalid_parameters(api_client, make_account, field, value):
    account, key = make_account()
    response = init(api_client, account, key, **{field: value})
    assert response.status_code == 400
    assert response.json()["code"] == "ERR_INVALID_INITPARAMETERS"
    assert Registration.objects.count() == 0


def test_clevertap_ids_required_when_the_account_says_so(api_client, make_account):
    account, key = make_account(require_clevertap=True)
    response = init(api_client, account, key)
    assert (response.status_code, response.json()["code"]) == (400, "ERR_MISSING_CT_ACCOUNTID")
    response = init(api_client, account, key, ctAccountId="TEST-R78-ZZK-955Z")
    assert (response.status_code, response.json()["code"]) == (400, "ERR_MISSING_CT_ID")
    assert Registration.objects.count() == 0
    response = init(api_client, account, key, ctAccountId="TEST-R78-ZZK-955Z", ctId="__g123")
    assert response.status_code == 200
    registration = Registration.objects.get()
    assert (registration.ct_account_id, registration.ct_id) == ("TEST-R78-ZZK-955Z", "__g123")


def test_clevertap_ids_optional_when_switched_off(api_client, make_account):
    account, key = make_account(require_clevertap=False)
    assert init(api_client, account, key).status_code == 200


def _refusal(response):
    return response.status_code, response.json()


def test_bad_credentials_are_indistinguishable(api_client, make_account):
    account, key = make_account()
    _other, other_key = make_account(name="Other")
    inactive, inactive_key = make_account(name="Inactive", is_active=False)
    revoked, revoked_key = make_account(name="Revoked")
    revoked.revoke_api_key()
    rotated, old_key = make_account(name="Rotated")
    rotated.rotate_api_key()
    prefix, _, secret = key.partition(".")
    refusals = [
        _refusal(init(api_client, account, other_key)),  # another account's key
        _refusal(init(api_client, account, prefix + ".x" + secret[1:])),  # wrong secret
        _refusal(init(api_client, account, "nodotkey")),
        _refusal(init(api_client, inactive, inactive_key)),
        _refusal(init(api_client, revoked, revoked_key)),
        _refusal(init(api_client, rotated, old_key)),
        _refusal(
            api_client.post(
                URL,
                {"accountId": "no_such_account", "apikey": key, "cuid": "tutor_jane"},
                format="json",
            )
        ),
    ]
    expected = (401, {"code": "ERR_INVALID_CREDENTIALS", "message": refusals[0][1]["message"]})
    assert refusals == [expected] * len(refusals)
    assert Registration.objects.count() == 0


def test_the_key_is_never_logged(api_client, make_account, caplog):
    caplog.set_level(logging.DEBUG)
    account, key = make_account()
    init(api_client, account, key)
    init(api_client, account, key + "x")
    secret = key.partition(".")[2]
    assert "init refused" in caplog.text
    assert secret not in caplog.text and key not in caplog.text


def test_origin_allow_list(api_client, make_account, caplog):
    account, key = make_account(allowed_origins="https://shop.example.com\nhttp://127.0.0.1:8000/")
    assert init(api_client, account, key, origin="https://shop.example.com").status_code == 200
    assert init(api_client, account, key, origin="http://127.0.0.1:8000").status_code == 200
    for origin in ("https://evil.example.com", "http://shop.example.com"):
        response = init(api_client, account, key, origin=origin)
        assert (response.status_code, response.json()["code"]) == (403, "ERR_ORIGIN_NOT_ALLOWED")
        # The server's log names the origin for the site's developer; the page is not told.
        assert f"origin '{origin}' is not among its allowed origins" in caplog.text
        assert origin not in response.content.decode()
    response = init(api_client, account, key)  # no Origin header at all
    assert response.status_code == 403


def test_cors_headers_and_preflight(api_client, make_account):
    account, key = make_account()
    response = init(api_client, account, key, origin="https://shop.example.com")
    assert response["Access-Control-Allow-Origin"] == "https://shop.example.com"
    assert "Access-Control-Allow-Credentials" not in response
    assert response["Access-Control-Expose-Headers"] == "Retry-After"  # the SDK reads it
    assert response["Vary"] == "Origin"
    preflight = api_client.options(URL, HTTP_ORIGIN="https://shop.example.com")
    assert preflight.status_code == 204
    assert "POST" in preflight["Access-Control-Allow-Methods"]
    # Without an Origin header: no CORS headers, but the answer still varies on Origin.
    response = init(api_client, account, key)
    assert "Access-Control-Allow-Origin" not in response
    assert response["Vary"] == "Origin"


def _vary(response) -> list[str]:
    return [part.strip() for part in response["Vary"].split(",")]


@pytest.mark.parametrize("before", ["Accept-Language", "Accept-Language, Origin", "origin"])
def test_cors_adds_to_vary(api_client, monkeypatch, before):
    def options(self, request, *args, **kwargs):
        return Response(status=204, headers={"Vary": before})

    monkeypatch.setattr(InitView, "options", options)
    response = api_client.options(URL, HTTP_ORIGIN="https://shop.example.com")
    assert response["Access-Control-Allow-Origin"] == "https://shop.example.com"
    expected = [part.strip() for part in before.split(",")]
    if "origin" not in before.lower():
        expected.append("Origin")
    assert _vary(response) == expected


@pytest.mark.parametrize(
    "accept", ["text/html", "application/xml", "text/html, application/xhtml+xml"]
)
def test_accept_excluding_json_gets_a_code(api_client, make_account, accept):
    account, key = make_account()
    body = {"accountId": account.account_id, "apikey": key, "cuid": "tutor_jane"}
    response = api_client.post(URL, body, format="json", HTTP_ACCEPT=accept)
    assert response.status_code == 406
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "code": "ERR_INVALID_INITPARAMETERS",
        "message": "The response is JSON only: the Accept header must allow application/json.",
    }
    assert Registration.objects.count() == 0


@pytest.mark.parametrize(
    "accept", ["application/json", "*/*", "text/html, */*;q=0.8", "application/*"]
)
def test_accept_allowing_json_gets_json(api_client, make_account, accept):
    account, key = make_account()
    body = {"accountId": account.account_id, "apikey": key, "cuid": "tutor_jane"}
    response = api_client.post(URL, body, format="json", HTTP_ACCEPT=accept)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "token" in response.json()


def test_no_browsable_api(api_client, make_account):
    # Whatever the host's renderers, errors too are JSON (never an HTML page).
    with override_settings(
        REST_FRAMEWORK={
            **settings.REST_FRAMEWORK,
            "DEFAULT_RENDERER_CLASSES": [
                "rest_framework.renderers.BrowsableAPIRenderer",
                "rest_framework.renderers.JSONRenderer",
            ],
        }
    ):
        response = api_client.get(URL, HTTP_ACCEPT="text/html")
    assert response.status_code == 406
    assert response.json()["code"] == "ERR_INVALID_INITPARAMETERS"


def test_malformed_bodies_get_a_code_not_a_500(api_client, make_account):
    response = api_client.post(URL, "{not json", content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (400, "ERR_INVALID_INITPARAMETERS")
    response = api_client.post(URL, "[1, 2]", content_type="application/json")
    assert (response.status_code, response.json()["code"]) == (400, "ERR_INVALID_INITPARAMETERS")
    response = api_client.post(URL, "accountId=x", content_type="application/x-www-form-urlencoded")
    assert (response.status_code, response.json()["code"]) == (415, "ERR_INVALID_INITPARAMETERS")
    response = api_client.get(URL)
    assert (response.status_code, response.json()["code"]) == (405, "ERR_METHOD_NOT_ALLOWED")


@override_settings(DIRECTCALL={"THROTTLE_RATES": {"directcall_init_ip": "3/min"}})
def test_throttled_per_ip(api_client, make_account):
    account, key = make_account()
    statuses = [init(api_client, account, key).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    response = init(api_client, account, key)
    assert (response.status_code, response.json()["code"]) == (429, "ERR_RATE_LIMITED")
    assert int(response["Retry-After"]) > 0
    # Wrong keys count too: brute force is throttled the same way.
    assert init(api_client, account, "a.b").status_code == 429
    # Another client IP is not affected.
    response = api_client.post(
        URL,
        {"accountId": account.account_id, "apikey": key, "cuid": "tutor_jane"},
        format="json",
        REMOTE_ADDR="127.0.0.2",
    )
    assert response.status_code == 200


def _post_from(api_client, body, remote_addr, forwarded_for=None):
    extra = {"REMOTE_ADDR": remote_addr}
    if forwarded_for is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded_for
    return api_client.post(URL, body, format="json", **extra)


@override_settings(DIRECTCALL={"THROTTLE_RATES": {"directcall_init_ip": "2/min"}})
def test_ip_throttle_ignores_x_forwarded_for_without_num_proxies(api_client, make_account):
    account, key = make_account()
    body = {"accountId": account.account_id, "apikey": key, "cuid": "tutor_jane"}
    codes = [
        _post_from(api_client, body, "10.0.0.1", f"198.51.100.{i}").status_code for i in range(1, 4)
    ]
    assert codes == [200, 200, 429]
    assert _post_from(api_client, body, "10.0.0.2", "198.51.100.1").status_code == 200


@override_settings(DIRECTCALL={"THROTTLE_RATES": {"directcall_init_ip": "2/min"}})
def test_ip_throttle_uses_x_forwarded_for_behind_configured_proxies(api_client, make_account):
    account, key = make_account()
    body = {"accountId": account.account_id, "apikey": key, "cuid": "tutor_jane"}
    with override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}):
        # One trusted proxy (10.0.0.1): the client is the last X-Forwarded-For address,
        # whatever the client itself prepended.
        codes = [
            _post_from(api_client, body, "10.0.0.1", f"203.0.113.{i}, 198.51.100.7").status_code
            for i in range(1, 4)
        ]
        assert codes == [200, 200, 429]
        assert _post_from(api_client, body, "10.0.0.1", "198.51.100.8").status_code == 200
    # NUM_PROXIES = 0: REMOTE_ADDR only, whatever X-Forwarded-For says.
    with override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "NUM_PROXIES": 0}):
        assert _post_from(api_client, body, "10.0.0.3", "198.51.100.7").status_code == 200


def _new_cuids(api_client, account, key, count, first=1):
    """Sign ``count`` new cuids in, each from its own address; their status codes."""
    body = {"accountId": account.account_id, "apikey": key}
    return [
        _post_from(api_client, {**body, "cuid": f"new_user_{i}"}, f"127.0.0.{i}").status_code
        for i in range(first, first + count)
    ]


@override_settings(DIRECTCALL={"THROTTLE_RATES": {"directcall_init_account": "2/min"}})
def test_throttled_per_account(api_client, make_account):
    """The account's budget counts new registrations: the third new cuid waits."""
    account, key = make_account()
    other, other_key = make_account(name="Other")
    assert _new_cuids(api_client, account, key, 3) == [200, 200, 429]
    body = {"accountId": account.account_id, "apikey": key, "cuid": "new_user_9"}
    response = api_client.post(URL, body, format="json", REMOTE_ADDR="127.0.0.9")
    assert (response.status_code, response.json()["code"]) == (429, "ERR_RATE_LIMITED")
    assert int(response["Retry-After"]) > 0
    # Refused whole: nothing registered.
    assert set(Registration.objects.filter(account=account).values_list("cuid", flat=True)) == {
        "new_user_1",
        "new_user_2",
    }
    assert init(api_client, other, other_key).status_code == 200


def test_a_school_behind_one_address_signs_in_on_every_page_view(api_client, make_account):
    """Every page view of a signed-in user is a sign-in, and the users of a school or an
    office share one address: at the default rates, 200 sign-ins from it in a minute, 20
    of them new students, all go through."""
    account, key = make_account()
    body = {"accountId": account.account_id, "apikey": key}
    students = [f"student_{i}" for i in range(20)]
    sign_ins = students + [students[i % 20] for i in range(180)]
    codes = [
        _post_from(api_client, {**body, "cuid": cuid}, "203.0.113.5").status_code
        for cuid in sign_ins
    ]
    assert codes == [200] * 200
    assert Registration.objects.filter(account=account).count() == 20


@override_settings(
    DIRECTCALL={
        "THROTTLE_RATES": {"directcall_init_ip_new": "1/min", "directcall_init_account": "2/min"}
    }
)
def test_new_cuids_are_budgeted_per_address(api_client, make_account):
    """One address registers at most its budget of new cuids, and one it is refused does not
    spend the account's; its known cuids, and new ones from other addresses, go on."""
    account, key = make_account()
    body = {"accountId": account.account_id, "apikey": key}
    assert _post_from(api_client, {**body, "cuid": "new_user_1"}, "198.51.100.1").status_code == 200
    response = _post_from(api_client, {**body, "cuid": "new_user_2"}, "198.51.100.1")
    assert (response.status_code, response.json()["code"]) == (429, "ERR_RATE_LIMITED")
    assert int(response["Retry-After"]) > 0
    assert not Registration.objects.filter(account=account, cuid="new_user_2").exists()
    for _ in range(3):
        known = _post_from(api_client, {**body, "cuid": "new_user_1"}, "198.51.100.1")
        assert known.status_code == 200
    # The account's budget of two holds one more new cuid, from another address.
    assert _post_from(api_client, {**body, "cuid": "new_user_2"}, "198.51.100.2").status_code == 200
    assert _post_from(api_client, {**body, "cuid": "new_user_3"}, "198.51.100.3").status_code == 429
    assert Registration.objects.filter(account=account).count() == 2


@override_settings(DIRECTCALL={"THROTTLE_RATES": {"directcall_init_account": "2/min"}})
def test_the_page_key_cannot_lock_a_sites_users_out(api_client, make_account):
    """Whoever reads the page's key uses up the account's budget from a few addresses;
    the site's returning users still sign in, on every page, as often as they like."""
    account, key = make_account()
    assert _new_cuids(api_client, account, key, 2) == [200, 200]  # two users join
    assert _new_cuids(api_client, account, key, 3, first=10) == [429, 429, 429]
    body = {"accountId": account.account_id, "apikey": key}
    returning = [
        _post_from(
            api_client, {**body, "cuid": f"new_user_{i % 2 + 1}"}, f"198.51.100.{i}"
        ).status_code
        for i in range(1, 9)
    ]
    assert returning == [200] * 8
    assert Registration.objects.filter(account=account).count() == 2


@override_settings(DIRECTCALL={"THROTTLE_RATES": {"directcall_init_account": "2/min"}})
def test_known_cuids_do_not_use_up_the_account_budget(api_client, make_account):
    account, key = make_account()
    assert init(api_client, account, key).status_code == 200  # tutor_jane, new: counted
    body = {"accountId": account.account_id, "apikey": key, "cuid": "tutor_jane"}
    for i in range(1, 6):
        assert _post_from(api_client, body, f"10.1.0.{i}").status_code == 200
    assert _new_cuids(api_client, account, key, 2) == [200, 429]


@override_settings(DIRECTCALL={"THROTTLE_RATES": {"directcall_init_account": "1/min"}})
def test_known_cuids_do_not_count_on_the_orm_path_either(api_client, make_account):
    """With a receiver of the registration's signals, a sign-in goes through the ORM; a
    known cuid is still told from a new one."""
    heard = []

    def receiver(sender, instance, created, **kwargs):
        heard.append((instance.cuid, created))

    post_save.connect(receiver, sender=Registration)
    try:
        account, key = make_account()
        assert init(api_client, account, key).status_code == 200
        body = {"accountId": account.account_id, "apikey": key, "cuid": "tutor_jane"}
        for i in range(1, 4):
            assert _post_from(api_client, body, f"10.2.0.{i}").status_code == 200
        assert _new_cuids(api_client, account, key, 1) == [429]
    finally:
        post_save.disconnect(receiver, sender=Registration)
    assert heard == [("tutor_jane", True)] + [("tutor_jane", False)] * 3


@override_settings(DIRECTCALL={"THROTTLE_RATES": {"directcall_init_account": "2/min"}})
def test_refused_sign_ins_do_not_use_up_the_account_budget(api_client, make_account):
    """Wrong keys and refused origins count against their address only."""
    account, key = make_account(allowed_origins="https://shop.example")
    wrong = {"accountId": account.account_id, "apikey": "a.b", "cuid": "tutor_jane"}
    for i in range(1, 11):
        response = api_client.post(URL, wrong, format="json", REMOTE_ADDR=f"192.0.2.{i}")
        assert response.status_code == 401
    good = {**wrong, "apikey": key}
    for i in range(1, 6):
        response = api_client.post(
            URL,
            {**good, "cuid": f"elsewhere_{i}"},
            format="json",
            REMOTE_ADDR=f"192.0.3.{i}",
            HTTP_ORIGIN="https://evil.example",
        )
        assert response.status_code == 403
    codes = [
        api_client.post(
            URL,
            {**good, "cuid": f"new_user_{i}"},
            format="json",
            REMOTE_ADDR=f"127.0.0.{i}",
            HTTP_ORIGIN="https://shop.example",
        ).status_code
        for i in range(1, 4)
    ]
    assert codes == [200, 200, 429]
    # Once over budget, a wrong key is still told it is wrong (the throttle comes after).
    response = api_client.post(URL, wrong, format="json", REMOTE_ADDR="192.0.2.99")
    assert response.status_code == 401


def test_throttle_window_passes(api_client, make_account, monkeypatch):
    with override_settings(DIRECTCALL={"THROTTLE_RATES": {"directcall_init_ip": "1/min"}}):
        account, key = make_account()
        assert init(api_client, account, key).status_code == 200
        assert init(api_client, account, key).status_code == 429
        later = time.time() + 61
        monkeypatch.setattr(InitIPThrottle, "timer", staticmethod(lambda: later))
        assert init(api_client, account, key).status_code == 200


def test_ice_servers_pass_every_key_and_urls_as_a_list(api_client, make_account):
    servers = [
        {"urls": "stun:127.0.0.1:3478"},
        {
            "urls": ("turn:127.0.0.1:3478",),
            "username": "u",
            "credential": "c",
            "credentialType": "password",
        },
    ]
    with override_settings(DIRECTCALL={"ICE_SERVERS": servers}):
        account, key = make_account()
        body = init(api_client, account, key).json()
    assert body["iceServers"] == [
        {"urls": ["stun:127.0.0.1:3478"]},
        {
            "urls": ["turn:127.0.0.1:3478"],
            "username": "u",
            "credential": "c",
            "credentialType": "password",
        },
    ]
    # The settings themselves are left as written.
    assert servers[0]["urls"] == "stun:127.0.0.1:3478"


TURN = {
    "ICE_SERVERS": [
        {"urls": ["stun:127.0.0.1:3478"]},
        {"urls": ["turn:127.0.0.1:3478?transport=udp", "turn:127.0.0.1:3478?transport=tcp"]},
        {"urls": "turn:127.0.0.1:5349", "username": "static", "credential": "kept"},
    ],
    "TURN_SECRET": "coturn-static-secret",
    "TURN_TTL": 600,
}


@override_settings(DIRECTCALL=TURN)
def test_turn_credentials_follow_the_coturn_rest_scheme(api_client, make_account):
    account, key = make_account()
    before = int(time.time())
    servers = init(api_client, account, key).json()["iceServers"]
    assert "username" not in servers[0]
    turn = servers[1]
    expiry, _, cuid = turn["username"].partition(":")
    assert cuid == "tutor_jane"
    assert before + 600 <= int(expiry) <= int(time.time()) + 600
    digest = hmac.new(b"coturn-static-secret", turn["username"].encode(), hashlib.sha1).digest()
    assert turn["credential"] == base64.b64encode(digest).decode()
    assert servers[2]["username"] == "static" and servers[2]["credential"] == "kept"


def test_turn_credentials_expire():
    from directcall.ice import turn_credentials

    past = turn_credentials("s", "tutor_jane", ttl=60, now=time.time() - 120)
    assert past["expiresAt"] < time.time()
    assert int(past["username"].split(":")[0]) == past["expiresAt"]


def test_no_turn_credentials_without_a_secret(api_client, make_account):
    with override_settings(DIRECTCALL={**TURN, "TURN_SECRET": None}):
        account, key = make_account()
        servers = init(api_client, account, key).json()["iceServers"]
    assert "username" not in servers[1]


class TestTokens:
    def test_tampered_token_is_refused(self):
        token = tokens.issue(1, 2, "tutor_jane", "device-0001")
        assert tokens.verify(token) is not None
        assert tokens.verify(token[:-2] + ("AA" if token[-2:] != "AA" else "BB")) is None
        assert tokens.verify("garbage") is None
        assert tokens.verify(None) is None
        assert tokens.verify("x" * 5000) is None

    def test_token_expires(self, monkeypatch):
        with override_settings(DIRECTCALL={"TOKEN_TTL": 60}):
            token = tokens.issue(1, 2, "tutor_jane", "device-0001")
            assert tokens.verify(token) is not None
            later = time.time() + 120
            monkeypatch.setattr("django.core.signing.time.time", lambda: later)
            assert tokens.verify(token) is None

    @override_settings(SECRET_KEY="another-site")
    def test_token_of_another_secret_is_refused(self):
        with override_settings(SECRET_KEY="first-site"):
            token = tokens.issue(1, 2, "tutor_jane", "device-0001")
        assert tokens.verify(token) is None


def test_throttle_counts_every_request_of_concurrent_workers(settings, rf):
    """Eight threads (as eight server processes would) send 200 requests with a budget of
    50: exactly 50 pass. A list of request times read and written back whole, as DRF's
    throttle keeps it, loses the requests of whoever writes it back first."""
    import threading

    from directcall.api.throttling import InitAccountThrottle

    settings.DIRECTCALL = {"THROTTLE_RATES": {"directcall_init_account": "50/hour"}}
    request = rf.post(URL)
    allowed: list[bool] = []
    lock = threading.Lock()

    def work() -> None:
        mine = [InitAccountThrottle("CONCURRENT-1").allow_request(request, None) for _ in range(25)]
        with lock:
            allowed.extend(mine)

    workers = [threading.Thread(target=work) for _ in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert allowed.count(True) == 50
    refused = InitAccountThrottle("CONCURRENT-1")
    assert not refused.allow_request(request, None)
    assert 0 < refused.wait() <= 3600
    # Another account has its own budget.
    assert InitAccountThrottle("CONCURRENT-2").allow_request(request, None)


def test_a_returning_users_page_view_writes_only_what_changed(
    api_client, make_account, django_assert_num_queries
):
    """Every page view signs in: one that changes nothing, within a minute of the last, is
    the account's read and the registration's (no write, no transaction, no lock); one that
    changes something, or comes later, one UPDATE more."""
    account, key = make_account()
    device = {"deviceId": "device-0001"}
    assert init(api_client, account, key, name="Jane", **device).status_code == 200
    created = Registration.objects.get(account=account, cuid="tutor_jane")
    with django_assert_num_queries(2) as counted:
        response = init(api_client, account, key, name="Jane", **device)
    assert response.status_code == 200
    assert [q["sql"].split()[0] for q in counted.captured_queries] == ["SELECT", "SELECT"]
    assert tokens.verify(response.json()["token"]).registration_pk == created.pk
    assert Registration.objects.get(pk=created.pk).last_seen_at == created.last_seen_at

    with django_assert_num_queries(3) as counted:
        response = init(api_client, account, key, name="Jane Again", deviceId="device-0002")
    assert response.status_code == 200
    assert counted.captured_queries[2]["sql"].startswith("UPDATE")
    registration = Registration.objects.get(account=account, cuid="tutor_jane")
    assert (registration.pk, registration.created_at) == (created.pk, created.created_at)
    assert (registration.name, registration.device_id) == ("Jane Again", "device-0002")
    assert registration.last_seen_at > created.last_seen_at
    assert tokens.verify(response.json()["token"]).registration_pk == created.pk

    # Nothing changed, but last seen more than a minute ago: written again.
    earlier = timezone.now() - timedelta(seconds=61)
    Registration.objects.filter(pk=created.pk).update(last_seen_at=earlier)
    with django_assert_num_queries(3):
        again = init(api_client, account, key, name="Jane Again", deviceId="device-0002")
    assert again.status_code == 200
    assert Registration.objects.get(pk=created.pk).last_seen_at > earlier
    # A sign-in without a name clears the stored one, as before.
    assert init(api_client, account, key, deviceId="device-0002").status_code == 200
    assert Registration.objects.get(pk=created.pk).name == ""


@pytest.mark.parametrize(
    "change", [{"ctId": "__g2"}, {"ctAccountId": "TEST-2"}, {"deviceId": "device-0002"}]
)
def test_a_page_view_that_changes_one_field_writes_it(api_client, make_account, change):
    account, key = make_account(require_clevertap=False)
    first = {"name": "Jane", "deviceId": "device-0001", "ctId": "__g1", "ctAccountId": "TEST-1"}
    assert init(api_client, account, key, **first).status_code == 200
    assert init(api_client, account, key, **{**first, **change}).status_code == 200
    stored = Registration.objects.get(account=account, cuid="tutor_jane")
    fields = {"ctId": "ct_id", "ctAccountId": "ct_account_id", "deviceId": "device_id"}
    assert all(getattr(stored, fields[k]) == v for k, v in change.items())


@override_settings(DIRECTCALL={"THROTTLE_RATES": {"directcall_init_ip_new": "1/min"}})
def test_a_registration_deleted_between_the_read_and_the_write_is_registered_anew(
    api_client, make_account, monkeypatch
):
    """The read found the row, the UPDATE does not (an admin deleted it meanwhile): the
    sign-in registers the cuid anew, as a new one, counted against the new-cuid budget."""
    from directcall import callsql

    account, key = make_account()
    assert (
        _post_from(
            api_client,
            {"accountId": account.account_id, "apikey": key, "cuid": "tutor_jane", "name": "Jane"},
            "198.51.100.7",
        ).status_code
        == 200
    )
    read = callsql.registration_by_cuid

    def read_then_delete(account, cuid, *args):
        found = read(account, cuid, *args)
        Registration.objects.filter(account=account, cuid=cuid).delete()
        return found

    monkeypatch.setattr(callsql, "registration_by_cuid", read_then_delete)
    body = {"accountId": account.account_id, "apikey": key, "cuid": "tutor_jane", "name": "Jane B"}
    response = _post_from(api_client, body, "198.51.100.7")
    # The address has used its one new cuid: the re-registration is a new cuid too.
    assert (response.status_code, response.json()["code"]) == (429, "ERR_RATE_LIMITED")
    response = _post_from(api_client, body, "198.51.100.8")
    assert response.status_code == 200
    renewed = Registration.objects.get(account=account, cuid="tutor_jane")
    assert tokens.verify(response.json()["token"]).registration_pk == renewed.pk


def test_a_receiver_of_registration_saves_hears_every_sign_in(api_client, make_account):
    """With a ``post_save`` receiver for registrations (a host's audit log, say), a sign-in
    saves through the ORM, so the receiver hears each one."""
    from django.db.models.signals import post_save

    heard = []

    def on_save(sender, instance, created, **kwargs):
        heard.append((instance.cuid, instance.name, created))

    post_save.connect(on_save, sender=Registration, weak=False)
    try:
        account, key = make_account()
        assert init(api_client, account, key, name="Jane").status_code == 200
        assert init(api_client, account, key, name="Jane Again").status_code == 200
    finally:
        post_save.disconnect(on_save, sender=Registration)
    assert heard == [("tutor_jane", "Jane", True), ("tutor_jane", "Jane Again", False)]
