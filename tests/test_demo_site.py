"""The demo site (example_project): its set-up command, accounts, pages, CSP and adapter."""

from __future__ import annotations

import json
import re
import stat
from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client

from directcall import tokens
from directcall.models import Account, Registration
from example_project import demo
from example_project.calling import DemoCallAdapter
from example_project.demo import DEMO_PEOPLE, ensure_demo_people
from example_project.middleware import POLICY

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(make_account, settings):
    account, _key = make_account(account_id=demo.SESSION_ACCOUNT_ID, identity="verified")
    settings.DIRECTCALL = {
        **settings.DIRECTCALL,
        "SESSION_ACCOUNT": account.account_id,
        "ADAPTER": "example_project.calling.DemoCallAdapter",
    }
    return {user.username: user for user in ensure_demo_people()}


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_demo_people_have_names_and_no_password(people):
    assert [p.username for p in DEMO_PEOPLE] == ["sam", "jane", "sue", "gil"]
    assert people["jane"].get_full_name() == "Jane Tutor"
    assert not any(user.has_usable_password() for user in people.values())
    ensure_demo_people()  # again: no duplicates
    assert get_user_model().objects.count() == 4


def test_home_links_both_demo_pages_and_the_admin(client):
    html = client.get("/").content.decode()
    assert 'href="/login-as/"' in html and 'href="/people/"' in html and 'href="/call/"' in html
    main, key_mode = html.index("Main demo"), html.index("API-key mode")
    assert main < html.index('href="/people/"') < key_mode < html.index('href="/call/"')
    assert 'href="/admin/directcall/call/"' in html
    assert 'href="/admin/directcall/call/dashboard/"' in html


def test_login_as_lists_the_demo_people(client, people):
    html = client.get("/login-as/").content.decode()
    assert 'name="csrfmiddlewaretoken"' in html
    for username in people:
        assert f'name="username" value="{username}"' in html


def test_login_as_logs_in_and_goes_to_people(people):
    client = Client(enforce_csrf_checks=True)
    client.get("/login-as/")
    token = client.cookies["csrftoken"].value
    response = client.post("/login-as/", {"username": "sam", "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and response["Location"] == "/people/"
    assert int(client.session["_auth_user_id"]) == people["sam"].pk


def test_login_as_needs_csrf(people):
    client = Client(enforce_csrf_checks=True)
    assert client.post("/login-as/", {"username": "sam"}).status_code == 403


@pytest.mark.parametrize("username", ["admin", "nobody", ""])
def test_login_as_only_demo_people(client, people, username):
    get_user_model().objects.create_superuser("admin", password="pw-for-tests")
    assert client.post("/login-as/", {"username": username}).status_code == 400
    assert "_auth_user_id" not in client.session


def test_login_as_never_a_staff_member(client, people):
    people["gil"].is_staff = True
    people["gil"].save()
    assert client.post("/login-as/", {"username": "gil"}).status_code == 400


def test_people_needs_a_login(client):
    response = client.get("/people/")
    assert response.status_code == 302 and response["Location"].startswith("/login-as/")


def test_people_page_is_built_from_the_tags(people):
    sam = people["sam"]
    html = logged_in(sam).get("/people/").content.decode()
    assert '<script id="directcall-config" type="application/json">' in html
    assert '<template id="directcall-screens">' in html
    for other in ("jane", "sue", "gil"):
        user = people[other]
        assert f'data-directcall-call="user_{user.pk}"' in html
        assert f'aria-label="Call {user.get_full_name()}"' in html
    assert f'data-directcall-call="user_{sam.pk}"' not in html  # not yourself
    assert 'data-directcall-context="Student is calling"' in html


def test_demo_pages_have_a_strict_csp(client, people):
    for path in ("/", "/call/", "/login-as/"):
        assert client.get(path)["Content-Security-Policy"] == POLICY
    response = logged_in(people["sam"]).get("/people/")
    assert response["Content-Security-Policy"] == POLICY
    assert "script-src 'self';" in POLICY and "unsafe-inline" not in POLICY


def test_the_admin_keeps_its_own_policy(admin_client):
    assert "Content-Security-Policy" not in admin_client.get("/admin/")


def test_the_test_my_setup_page(client, people):
    # Logged-in people only (it uses their session), linked from home and the people page.
    assert client.get("/setup/").status_code == 302
    html = logged_in(people["sam"]).get("/setup/").content.decode()
    assert 'id="directcall-config"' in html and 'src="/static/demo/setup.js"' in html
    assert re.search(r"<script(?![^>]*\b(src|type=\"application/json\")=?)[^>]*>", html) is None
    assert 'href="/setup/"' in client.get("/").content.decode()
    assert 'href="/setup/"' in logged_in(people["sam"]).get("/people/").content.decode()


def test_debug_error_pages_keep_their_inline_styles(client, settings):
    assert client.get("/no-such-page/")["Content-Security-Policy"] == POLICY
    settings.DEBUG = True
    assert "Content-Security-Policy" not in client.get("/no-such-page/")
    assert client.get("/")["Content-Security-Policy"] == POLICY


def _registration(user) -> Registration:
    account = Account.objects.get(account_id="demo_account")
    return Registration.objects.create(account=account, cuid=f"user_{user.pk}")


def test_students_may_call_tutors_only(people):
    adapter = DemoCallAdapter()
    sam, jane, sue, gil = (_registration(people[n]) for n in ("sam", "jane", "sue", "gil"))
    assert adapter.can_call(sam, jane)
    assert not adapter.can_call(sam, gil) and not adapter.can_call(sam, sue)
    assert adapter.can_call(jane, sam) and adapter.can_call(gil, sam) and adapter.can_call(sue, gil)


def test_cuids_that_are_not_demo_users_are_not_restricted(people):
    account = Account.objects.get(account_id="demo_account")
    student = Registration.objects.create(account=account, cuid="student_sam")
    grocer = Registration.objects.create(account=account, cuid="grocer_gil")
    assert DemoCallAdapter().can_call(student, grocer)


# -- demo_setup: what ./scripts/demo.sh prints -------------------------------------------------

LINE = r"^[ \t]*{}:\s+(\S+)$"


def setup_output(*args: str) -> str:
    out = StringIO()
    call_command("demo_setup", *args, stdout=out)
    return out.getvalue()


def printed(output: str, label: str) -> str:
    values = re.findall(LINE.format(re.escape(label)), output, re.MULTILINE)
    assert len(values) == 1, output
    return values[0]


def test_settings_name_the_demo_session_account():
    from example_project import settings as demo_settings

    assert demo_settings.DIRECTCALL["SESSION_ACCOUNT"] == demo.SESSION_ACCOUNT_ID
    assert demo.KEY_ACCOUNT_ID != demo.SESSION_ACCOUNT_ID


def test_demo_setup_prints_the_pages_the_admin_and_the_key():
    output = setup_output()
    for url in (
        "http://127.0.0.1:8000/login-as/",
        "http://127.0.0.1:8000/people/",
        "http://127.0.0.1:8000/admin/",
        "http://127.0.0.1:8000/admin/directcall/call/",
        "http://127.0.0.1:8000/admin/directcall/call/dashboard/",
        "http://127.0.0.1:8000/call/",
    ):
        assert url in output
    assert printed(output, "accountId") == demo.KEY_ACCOUNT_ID
    assert printed(output, "username") == demo.ADMIN_USERNAME
    assert "http://demo.example:9000/call/" in setup_output("--url", "http://demo.example:9000")


def test_the_printed_admin_login_opens_the_admin_call_log_and_dashboard():
    output = setup_output()
    client = Client()
    assert client.login(username=printed(output, "username"), password=printed(output, "password"))
    for path in ("/admin/", "/admin/directcall/call/", "/admin/directcall/call/dashboard/"):
        assert client.get(path).status_code == 200, path


def test_each_start_makes_a_new_admin_password_and_key():
    first, second = setup_output(), setup_output()
    password1, password2 = printed(first, "password"), printed(second, "password")
    key1, key2 = printed(first, "apikey"), printed(second, "apikey")
    assert password1 != password2 and len(password2) >= 16
    assert key1 != key2
    assert not Client().login(username=demo.ADMIN_USERNAME, password=password1)
    assert Client().login(username=demo.ADMIN_USERNAME, password=password2)
    account = Account.objects.get(account_id=demo.KEY_ACCOUNT_ID)
    assert account.check_api_key(key2) and not account.check_api_key(key1)
    assert get_user_model().objects.filter(username=demo.ADMIN_USERNAME).count() == 1
    assert Account.objects.filter(account_id=demo.KEY_ACCOUNT_ID).count() == 1


def test_demo_setup_leaves_an_existing_admin_alone():
    get_user_model().objects.create_superuser("admin", password="the-owner-s-password")
    setup_output()
    assert Client().login(username="admin", password="the-owner-s-password")


def test_demo_setup_creates_the_demo_people_and_two_accounts():
    setup_output()
    setup_output()
    users = get_user_model().objects.filter(username__in=[p.username for p in DEMO_PEOPLE])
    assert sorted((u.username, u.get_full_name()) for u in users) == [
        ("gil", "Gil Grocer"),
        ("jane", "Jane Tutor"),
        ("sam", "Sam Student"),
        ("sue", "Sue Shopper"),
    ]
    assert not any(u.has_usable_password() or u.is_staff for u in users)
    session = Account.objects.get(account_id=demo.SESSION_ACCOUNT_ID)
    key_mode = Account.objects.get(account_id=demo.KEY_ACCOUNT_ID)
    assert not session.require_clevertap and not key_mode.require_clevertap
    assert session.key_is_revoked and not key_mode.key_is_revoked
    # Issue 13: the key of /call/ signs page identities in its own account only; the
    # logged-in people's account takes verified identities (system check E008).
    assert (session.identity, key_mode.identity) == ("verified", "page")


def test_an_old_demo_s_accounts_get_their_identity_modes():
    # A demo database migrated from before identity modes: both accounts were "page".
    for account_id in (demo.SESSION_ACCOUNT_ID, demo.KEY_ACCOUNT_ID):
        Account(account_id=account_id, name=account_id, identity="page").save()
    setup_output()
    identities = dict(Account.objects.values_list("account_id", "identity"))
    assert identities[demo.SESSION_ACCOUNT_ID] == "verified"
    assert identities[demo.KEY_ACCOUNT_ID] == "page"


def test_the_key_file_holds_the_printed_key_for_the_owner_only(settings):
    key = printed(setup_output(), "apikey")
    path = demo.key_file()
    assert path == settings.DEMO_CREDENTIALS_FILE
    assert path.read_text() == key + "\n" and demo.read_key() == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_an_old_demo_s_session_account_key_stops_working(api_client):
    # Demos before the key account printed the session account's key (and put it in /call/).
    old = Account(account_id=demo.SESSION_ACCOUNT_ID, name="Demo", require_clevertap=False)
    old_key = old.set_new_api_key()
    old.save()
    setup_output()
    body = {"accountId": demo.SESSION_ACCOUNT_ID, "apikey": old_key, "cuid": "user_1"}
    response = api_client.post("/directcall/v1/init", body, format="json")
    assert response.status_code == 401 and response.json()["code"] == "ERR_INVALID_CREDENTIALS"


# -- /call/: the API-key mode, under an account of its own --------------------------------------


def page_config(html: str) -> dict:
    match = re.search(r'<script id="demo-config" type="application/json">(.*?)</script>', html)
    assert match, html
    return json.loads(match.group(1))


def test_call_page_is_labelled_api_key_mode_and_uses_the_key_account(client):
    key = printed(setup_output(), "apikey")
    html = client.get("/call/").content.decode()
    assert "<title>directcall demo — API-key mode</title>" in html
    assert '<p class="mode" id="mode"><strong>API-key mode</strong>' in html
    assert 'href="/people/"' in html  # the main demo, for logged-in users
    config = page_config(html)
    assert config["accountId"] == demo.KEY_ACCOUNT_ID != demo.SESSION_ACCOUNT_ID
    assert config["apikey"] == key
    assert [u["cuid"] for u in config["users"]] == [u["cuid"] for u in demo.KEY_MODE_USERS]


def test_call_page_before_set_up_has_no_key(client, settings, tmp_path):
    settings.DEMO_CREDENTIALS_FILE = tmp_path / "absent"
    assert page_config(client.get("/call/").content.decode())["apikey"] == ""


def test_the_call_page_key_signs_nobody_in_under_the_session_account(api_client):
    key = printed(setup_output(), "apikey")
    body = {"accountId": demo.SESSION_ACCOUNT_ID, "apikey": key, "cuid": "tutor_jane"}
    response = api_client.post("/directcall/v1/init", body, format="json")
    assert response.status_code == 401 and response.json()["code"] == "ERR_INVALID_CREDENTIALS"


def test_key_mode_cuids_that_look_like_people_have_no_role(people, make_account):
    key_account, _key = make_account(account_id=demo.KEY_ACCOUNT_ID)
    # A visitor of /call/ signs in as "user_<sam's pk>" in the key account: not Sam.
    fake_sam = Registration.objects.create(account=key_account, cuid=f"user_{people['sam'].pk}")
    fake_gil = Registration.objects.create(account=key_account, cuid=f"user_{people['gil'].pk}")
    adapter = DemoCallAdapter()
    assert (
        adapter.role(fake_sam) is None and adapter.role(_registration(people["sam"])) == "student"
    )
    assert adapter.can_call(fake_sam, fake_gil)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("signaling")
async def test_the_call_page_key_cannot_sign_in_as_a_logged_in_tutor(settings):
    """Issue: with the /call/ page's key, a visitor signed in as a logged-in tutor's cuid."""
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    from .wsclient import Client as Socket

    settings.DIRECTCALL = {
        **settings.DIRECTCALL,
        "SESSION_ACCOUNT": demo.SESSION_ACCOUNT_ID,
        "ADAPTER": "example_project.calling.DemoCallAdapter",
    }
    output = await sync_to_async(setup_output)()
    users = {user.username: user for user in await sync_to_async(demo.demo_users)()}

    async def logged_in_session(user) -> dict:
        browser = AsyncClient()
        await browser.aforce_login(user)
        response = await browser.post(
            "/directcall/v1/session", {"deviceId": f"device-{user.pk:04d}"}, "application/json"
        )
        assert response.status_code == 200, response.content
        return response.json()

    async def socket(session: dict) -> Socket:
        client = Socket(await Socket.open(), session["cuid"], 0)
        await client.send(type="auth", token=session["token"])
        client.ready = await client.next("ready")
        return client

    jane_session = await logged_in_session(users["jane"])
    sam_session = await logged_in_session(users["sam"])
    assert jane_session["name"] == "Jane Tutor"

    # The visitor: what the /call/ page holds, and Jane's cuid.
    page = page_config((await AsyncClient().get("/call/")).content.decode())
    assert page["apikey"] == printed(output, "apikey")
    response = await AsyncClient().post(
        "/directcall/v1/init",
        {"accountId": page["accountId"], "apikey": page["apikey"], "cuid": jane_session["cuid"]},
        "application/json",
    )
    assert response.status_code == 200, response.content
    visitor_session = response.json()
    assert visitor_session["accountId"] == demo.KEY_ACCOUNT_ID
    assert visitor_session["name"] != "Jane Tutor"  # her stored name is not handed out
    visitor, jane = tokens.verify(visitor_session["token"]), tokens.verify(jane_session["token"])
    assert visitor.cuid == jane.cuid
    assert (visitor.account_pk, visitor.registration_pk) != (jane.account_pk, jane.registration_pk)

    # On the sockets: Jane and Sam are online; the visitor, "as Jane", calls Sam.
    jane_socket, sam_socket = await socket(jane_session), await socket(sam_session)
    visitor_socket = await socket(visitor_session)
    assert visitor_socket.ready["name"] != "Jane Tutor"
    await visitor_socket.send(
        type="invite", ref="r1", receiver=sam_session["cuid"], context="Tutor is calling", sdp="v=0"
    )
    refused = await visitor_socket.next("error", ref="r1")
    assert refused["code"] == 404  # no such person online in the key account
    # Nothing reached Sam, and Jane's own connection was not touched.
    await sam_socket.alive()
    await jane_socket.alive()
    assert not [f for f in sam_socket.inbox + jane_socket.inbox if f["type"] != "pong"]
    for client in (visitor_socket, sam_socket, jane_socket):
        await client.close()


def test_demo_setup_points_a_webhook_endpoint_at_the_demos_receiver(caplog):
    import json
    import logging

    from directcall.webhooks import signing
    from directcall.webhooks.models import WebhookEndpoint

    output = setup_output("--url", "http://127.0.0.1:8123/")
    setup_output("--url", "http://127.0.0.1:8123/")  # a second start: still one endpoint
    endpoint = WebhookEndpoint.objects.get()
    assert endpoint.account.account_id == demo.SESSION_ACCOUNT_ID
    assert endpoint.url == printed(output, "receiver") == "http://127.0.0.1:8123/demo-webhooks/"
    body = json.dumps({"type": "call.ended", "data": {"id": "c1", "status": "over"}}).encode()
    headers = signing.headers([endpoint.secret], "msg_demo", body)
    client = Client()
    with caplog.at_level(logging.INFO, logger="example_project"):
        ok = client.post(
            "/demo-webhooks/",
            body,
            content_type="application/json",
            headers={**headers, "Origin": "http://elsewhere.example"},
        )
        forged = client.post(
            "/demo-webhooks/", body + b" ", content_type="application/json", headers=headers
        )
    assert ok.status_code == 204 and forged.status_code == 401
    assert "webhook msg_demo call.ended: call c1 over" in caplog.text


def test_demo_pages_have_an_icon(client, people):
    """Every page names its icon (a browser asks for /favicon.ico otherwise: a 404 in the
    console of every page), and the icon is served."""
    from django.contrib.staticfiles import finders
    from django.templatetags.static import static

    icon = static("demo/favicon.svg")
    pages = [client.get(path) for path in ("/", "/call/", "/login-as/")]
    pages += [logged_in(people["sam"]).get(path) for path in ("/people/", "/setup/")]
    for page in pages:
        assert f'<link rel="icon" href="{icon}" type="image/svg+xml">' in page.content.decode()
    assert finders.find("demo/favicon.svg")
