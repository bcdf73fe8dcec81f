"""Host-site integration in real Chromium: logged-in Django users call each other from the
demo's ``/people/`` page, which is built from the template tags alone.

No API key reaches the browser, the page runs under a strict Content-Security-Policy, the
adapter's ``can_call`` refusals reach the button, and the call screens are photographed
for the docs (``tests/artifacts/`` always; ``docs/images/`` too with
``DIRECTCALL_UPDATE_SCREENSHOTS=1``).
"""

from __future__ import annotations

import os
import re
import shutil
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from directcall.models import Call, CallStatus
from example_project.demo import ensure_demo_people
from example_project.middleware import POLICY
from example_project.models import CallCharge
from tests.e2e import timings
from tests.e2e.harness import ARTIFACTS, ROOT, BrowserUser, wait_for_audio
from tests.e2e.sdk import click, overlay, screen, slot

DOC_IMAGES = ROOT / "docs" / "images"
VIEWPORT = {"width": 900, "height": 650}

# Before any script of the page: record CSP violations and the buttons' results.
WATCH_PAGE = """
(() => {
  window.__csp = [];
  document.addEventListener("securitypolicyviolation", (e) => {
    window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
  });
  window.__results = [];
  document.addEventListener("directcall:result", (e) => {
    window.__results.push({ cuid: e.target.dataset.directcallCall, detail: e.detail });
  });
})();
"""


@pytest.fixture
def session_account(e2e_account):
    """The account server-minted sessions belong to (``SESSION_ACCOUNT`` of the server)."""
    return e2e_account(account_id=timings.SESSION_ACCOUNT, name="Tutoring", identity="verified")


@pytest.fixture
def people(transactional_db) -> dict[str, Any]:
    """The demo's Django users: sam (student), jane (tutor), sue (shopper), gil (grocer)."""
    return {user.username: user for user in ensure_demo_people()}


def log_in(new_user, username: str) -> tuple[BrowserUser, Any]:
    """A browser user logged in as a demo person through the demo's log-in page.

    Returns the user (on ``/people/``, signed in to directcall) and the ``/people/``
    response.
    """
    user = new_user(username, path=None)
    user.context.add_init_script(WATCH_PAGE)
    user.page.set_viewport_size(VIEWPORT)
    user.page.goto("/login-as/")
    with user.page.expect_response(lambda r: r.url.endswith("/people/")) as people_response:
        user.page.locator(f'button[name="username"][value="{username}"]').click()
    expect(user.page).to_have_url(re.compile(r"/people/$"))
    signed_in = user.page.evaluate(
        """() => new Promise((resolve) => {
             const check = () => window.DirectCall && window.DirectCall.client
               ? window.DirectCall.client.then((c) => ({ cuid: c.cuid }), (error) => ({ error }))
                   .then(resolve)
               : setTimeout(check, 50);
             check();
           })"""
    )
    assert "error" not in signed_in, signed_in
    return user, people_response.value


def call_button(user: BrowserUser, person):
    return user.page.get_by_role("button", name=f"Call {person.get_full_name()}")


def results(user: BrowserUser, count: int = 1) -> list[dict[str, Any]]:
    """The ``directcall:result`` events of the page's buttons, once there are ``count``."""
    user.page.wait_for_function("(n) => window.__results.length >= n", arg=count)
    return user.page.evaluate("() => window.__results")


def assert_clean(user: BrowserUser) -> None:
    """No console errors, no uncaught exceptions, no CSP violations."""
    assert user.page.evaluate("() => window.__csp") == []
    user.assert_no_errors()


def save_screenshot(page, name: str) -> None:
    """Save ``tests/artifacts/<name>.png``, and ``docs/images/<name>.png`` when
    ``DIRECTCALL_UPDATE_SCREENSHOTS=1``."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), animations="disabled", caret="hide")
    if os.environ.get("DIRECTCALL_UPDATE_SCREENSHOTS") == "1":
        DOC_IMAGES.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOC_IMAGES / f"{name}.png")


def test_logged_in_users_call_from_the_tag_built_page(
    new_user, e2e_server, session_account, people
):
    account, key = session_account
    sam, sam_page = log_in(new_user, "sam")
    jane, _ = log_in(new_user, "jane")

    # Served with the strict policy; no API key anywhere, neither served nor in the DOM.
    assert sam_page.headers["content-security-policy"] == POLICY
    raw = sam.context.request.get("/people/")
    assert raw.headers["content-security-policy"] == POLICY
    for html in (raw.text(), sam.page.content()):
        assert '<script id="directcall-config" type="application/json">' in html
        assert key not in html and key.split(".", 1)[1] not in html
        assert account.key_prefix not in html and "apikey" not in html.lower()

    # Sam (a student) calls Jane (his tutor) with her button.
    button = call_button(sam, people["jane"])
    expect(button).to_have_attribute("data-directcall-call", f"user_{people['jane'].pk}")
    button.click()
    expect(button).to_have_attribute("aria-busy", "true")
    expect(screen(sam, "outgoing")).to_be_visible()
    expect(slot(sam, "name")).to_have_text("Jane Tutor")
    expect(slot(sam, "status")).to_have_text("Ringing…")
    expect(screen(jane, "incoming")).to_be_visible()
    expect(slot(jane, "name")).to_have_text("Sam Student")
    expect(slot(jane, "context")).to_have_text("Student is calling")
    save_screenshot(sam.page, "call-outgoing")
    save_screenshot(jane.page, "call-incoming")

    click(jane, "answer")
    expect(screen(sam, "ongoing")).to_be_visible()
    expect(screen(jane, "ongoing")).to_be_visible()
    wait_for_audio(sam.page)
    wait_for_audio(jane.page)
    expect(slot(sam, "timer")).to_have_text("00:02", timeout=5000)
    save_screenshot(sam.page, "call-ongoing")

    click(sam, "hangup")
    expect(overlay(sam)).to_be_hidden()
    expect(overlay(jane)).to_be_hidden()
    assert results(sam) == [{"cuid": f"user_{people['jane'].pk}", "detail": {"result": "over"}}]
    expect(button).not_to_have_attribute("aria-busy", "true")
    call = Call.objects.get()
    assert call.status == CallStatus.OVER and call.account_id == account.pk
    assert (call.caller.cuid, call.callee.cuid) == (
        f"user_{people['sam'].pk}",
        f"user_{people['jane'].pk}",
    )
    # The demo's call_ended receiver billed the caller (example_project/receivers.py).
    charge = CallCharge.objects.get(call_id=call.pk)
    assert charge.payer_cuid == f"user_{people['sam'].pk}" and charge.minutes == 1

    # Jane calls back; Sam declines.
    call_button(jane, people["sam"]).click()
    expect(screen(sam, "incoming")).to_be_visible()
    click(sam, "decline")
    assert results(jane)[0]["detail"] == {"error": "declined"}
    assert sorted(Call.objects.values_list("status", flat=True)) == ["declined", "over"]

    for user in (sam, jane):
        assert_clean(user)

    # The calls on the admin dashboard, as a superuser.
    get_user_model().objects.create_superuser("admin", password="admin-pw-for-e2e")
    admin = new_user("admin", path="/admin/login/?next=/admin/directcall/call/dashboard/")
    admin.page.set_viewport_size(VIEWPORT)
    admin.page.fill("#id_username", "admin")
    admin.page.fill("#id_password", "admin-pw-for-e2e")
    admin.page.locator("input[type=submit]").click()
    expect(admin.page.locator("#directcall-chart")).to_be_visible()
    expect(admin.page.locator("#directcall-summary")).to_contain_text("Answered")
    # The picture for the docs: without the navigation sidebar, from the chart down.
    admin.page.locator("#toggle-nav-sidebar").click()
    admin.page.locator("#directcall-period").evaluate("(el) => el.scrollIntoView()")
    save_screenshot(admin.page, "admin-dashboard")
    admin.assert_no_errors()


def test_a_refusal_of_the_adapter_reaches_the_button(new_user, e2e_server, session_account, people):
    sam, _ = log_in(new_user, "sam")
    gil, _ = log_in(new_user, "gil")
    # The demo adapter: students may call tutors only. Sam's button for Gil says he is
    # offline (who is online answers only about people one may call) and does nothing;
    # a call() anyway is refused.
    button = sam.page.locator(f'[data-directcall-call="user_{people["gil"].pk}"]')
    expect(button).to_have_attribute("data-directcall-presence", "offline")
    expect(button).to_have_attribute("aria-disabled", "true")
    refused = sam.page.evaluate(
        """(cuid) => window.DirectCall.client.then((c) => c.call(cuid, "Student is calling"))
             .then((value) => ({ value }), (error) => ({ error }))""",
        f"user_{people['gil'].pk}",
    )
    assert refused["error"]["code"] == "ERR_CALL_NOT_ALLOWED" and refused["error"]["message"]
    expect(overlay(sam)).to_be_hidden()
    expect(overlay(gil)).to_be_hidden()
    assert not Call.objects.exists()
    # The other way round is allowed: the grocer may call the student.
    call_button(gil, people["sam"]).click()
    expect(screen(sam, "incoming")).to_be_visible()
    click(sam, "decline")
    assert results(gil)[0]["detail"] == {"error": "declined"}
    for user in (sam, gil):
        assert_clean(user)


def test_anonymous_visitors_get_no_config_and_the_log_in_page(new_user, e2e_server, people):
    visitor = new_user("visitor", path="/people/")
    expect(visitor.page).to_have_url(f"{e2e_server.url}/login-as/?next=/people/")
    assert visitor.page.locator("#directcall-config").count() == 0
    visitor.assert_no_errors()
