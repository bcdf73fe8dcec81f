"""POST /directcall/v1/session: server-minted sessions for logged-in users (no API key)."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import override_settings
from rest_framework.test import APIClient

from directcall import tokens
from directcall.adapter import DefaultCallAdapter, get_adapter
from directcall.models import Registration

pytestmark = pytest.mark.django_db

URL = "/directcall/v1/session"


@pytest.fixture
def session_account(make_account, settings):
    account, _key = make_account(require_clevertap=False, identity="verified")
    settings.DIRECTCALL = {**settings.DIRECTCALL, "SESSION_ACCOUNT": account.account_id}
    return account


@pytest.fixture
def user():
    return get_user_model().objects.create_user(
        "sam", password="pw-for-tests", first_name="Sam", last_name="Student"
    )


def csrf_client(user=None):
    client = APIClient(enforce_csrf_checks=True)
    if user is not None:
        client.force_login(user)
    client.get("/admin/login/")  # sets the csrftoken cookie
    return client


def post(client, body=None, csrf=True):
    headers = {}
    if csrf and "csrftoken" in client.cookies:
        headers["HTTP_X_CSRFTOKEN"] = client.cookies["csrftoken"].value
    return client.post(URL, body or {}, format="json", **headers)


def test_anonymous_is_refused(session_account):
    response = post(csrf_client())
    assert response.status_code == 403
    assert response.json()["code"] == "ERR_NOT_SIGNED_IN"
    assert not Registration.objects.exists()


def test_csrf_is_enforced(session_account, user):
    response = post(csrf_client(user), csrf=False)
    assert (response.status_code, response.json()["code"]) == (403, "ERR_NOT_SIGNED_IN")
    assert "CSRF" in response.json()["message"]


def test_the_logged_in_user_gets_a_session(session_account, user):
    response = post(csrf_client(user), {"deviceId": "device-0001"})
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["cuid"] == f"user_{user.pk}" and body["name"] == "Sam Student"
    assert body["accountId"] == session_account.account_id and body["image"] is None
    registration = Registration.objects.get(account=session_account, cuid=f"user_{user.pk}")
    assert registration.name == "Sam Student" and registration.device_id == "device-0001"
    session = tokens.verify(body["token"])
    assert (session.registration_pk, session.device_id) == (registration.pk, "device-0001")


def test_the_body_cannot_choose_the_identity(session_account, user):
    response = post(csrf_client(user), {"cuid": "tutor_jane", "accountId": "other", "name": "X"})
    assert response.status_code == 200
    assert response.json()["cuid"] == f"user_{user.pk}"
    assert not Registration.objects.filter(cuid="tutor_jane").exists()


def test_bad_fields_are_refused(session_account, user):
    response = post(csrf_client(user), {"deviceId": "bad id"})
    assert (response.status_code, response.json()["code"]) == (400, "ERR_INVALID_INITPARAMETERS")


def test_clevertap_ids_when_the_account_requires_them(session_account, user):
    session_account.require_clevertap = True
    session_account.save()
    response = post(csrf_client(user))
    assert response.json()["code"] == "ERR_MISSING_CT_ACCOUNTID"
    response = post(csrf_client(user), {"ctAccountId": "CT-1", "ctId": "guid_1"})
    assert response.status_code == 200


def test_an_inactive_account_refuses(session_account, user):
    session_account.is_active = False
    session_account.save()
    response = post(csrf_client(user))
    assert response.json()["code"] == "ERR_INVALID_CREDENTIALS"


class PictureAdapter(DefaultCallAdapter):
    def get_cuid(self, user):
        return f"member_{user.username}"

    def get_image_url(self, user):
        return f"https://cdn.example.org/{user.username}.png"


@override_settings(
    AUTHENTICATION_BACKENDS=["django.contrib.auth.backends.AllowAllUsersModelBackend"]
)
def test_an_inactive_user_is_refused_even_where_the_login_still_works(session_account, user):
    """A banned user (``is_active`` off) whose backend still accepts the login: a new token
    would undo the revocation that the ban made. The REST framework's session
    authentication refuses an inactive user."""
    user.is_active = False
    user.save()
    response = post(csrf_client(user))
    assert (response.status_code, response.json()["code"]) == (403, "ERR_NOT_SIGNED_IN")
    assert not Registration.objects.exists()


def test_the_adapter_decides_cuid_and_picture(session_account, user, settings):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "ADAPTER": f"{__name__}.PictureAdapter"}
    body = post(csrf_client(user)).json()
    assert body["cuid"] == "member_sam"
    assert body["image"] == "https://cdn.example.org/sam.png"


def test_default_adapter_cuids_are_valid_and_reversible(user):
    from directcall.validation import is_valid_cuid

    adapter = get_adapter()
    cuid = adapter.get_cuid(user)
    assert is_valid_cuid(cuid)
    assert adapter.get_user(Registration(cuid=cuid)) == user
    assert adapter.get_user(Registration(cuid="tutor_jane")) is None


@pytest.mark.parametrize(
    "first,last,username,expected",
    [
        ("Sam", "Student", "sam", "Sam Student"),
        ("", "", "samuel", "samuel"),
        ("Al", "", "al", ""),  # too short for a name: the cuid is shown instead
        ("A" * 60, "", "x", "A" * 50),
    ],
)
def test_default_display_names(first, last, username, expected):
    user = get_user_model()(username=username, first_name=first, last_name=last)
    assert get_adapter().get_display_name(user) == expected


@override_settings(DIRECTCALL={"ADAPTER": "directcall.models.Account"})
def test_an_adapter_that_is_not_one_is_refused():
    from django.core.exceptions import ImproperlyConfigured

    with pytest.raises(ImproperlyConfigured):
        get_adapter()


@pytest.mark.parametrize("session_account", [None, "", "5f0c9e1a2b3c4d5e6f70"])
def test_a_missing_session_account_is_a_clear_error_not_a_crash(
    settings, user, session_account, caplog
):
    """No SESSION_ACCOUNT, or one naming no account (a docs example copied, a database
    before ``directcall_account create``): the page gets ``ERR_INTERNAL`` as JSON, never
    Django's HTML 500 page, and the server's log says what to set."""
    settings.DIRECTCALL = {**settings.DIRECTCALL, "SESSION_ACCOUNT": session_account}
    response = post(csrf_client(user))
    assert response.status_code == 500, response.content
    assert response.json() == {
        "code": "ERR_INTERNAL",
        "message": "The calling service is not set up correctly; the server's log says why.",
    }
    assert "SESSION_ACCOUNT" in caplog.text
    assert not Registration.objects.exists()
