"""The demo site's pages (example_project): log in as a demo person, people, CSP, adapter."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from directcall.models import Registration
from example_project.calling import DemoCallAdapter
from example_project.middleware import POLICY
from example_project.people import DEMO_PEOPLE, ensure_demo_people

pytestmark = pytest.mark.django_db


@pytest.fixture
def people(make_account, settings):
    account, _key = make_account(account_id="demo_account")
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


def test_home_links_both_demo_pages(client):
    html = client.get("/").content.decode()
    assert 'href="/login-as/"' in html and 'href="/people/"' in html and 'href="/call/"' in html


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


def test_debug_error_pages_keep_their_inline_styles(client, settings):
    assert client.get("/no-such-page/")["Content-Security-Policy"] == POLICY
    settings.DEBUG = True
    assert "Content-Security-Policy" not in client.get("/no-such-page/")
    assert client.get("/")["Content-Security-Policy"] == POLICY


def _registration(user) -> Registration:
    from directcall.models import Account

    account = Account.objects.get(account_id="demo_account")
    return Registration.objects.create(account=account, cuid=f"user_{user.pk}")


def test_students_may_call_tutors_only(people):
    adapter = DemoCallAdapter()
    sam, jane, sue, gil = (_registration(people[n]) for n in ("sam", "jane", "sue", "gil"))
    assert adapter.can_call(sam, jane)
    assert not adapter.can_call(sam, gil) and not adapter.can_call(sam, sue)
    assert adapter.can_call(jane, sam) and adapter.can_call(gil, sam) and adapter.can_call(sue, gil)


def test_cuids_that_are_not_demo_users_are_not_restricted(people):
    from directcall.models import Account

    account = Account.objects.get(account_id="demo_account")
    student = Registration.objects.create(account=account, cuid="student_sam")
    grocer = Registration.objects.create(account=account, cuid="grocer_gil")
    assert DemoCallAdapter().can_call(student, grocer)
