"""Call buttons in real Chromium: only the buttons the host rendered place calls.

A page that shows its users' HTML (a comment, a profile text) through a sanitiser that
keeps ``data-*`` and ``id`` attributes lets an attacker put
``<button data-directcall-call="attacker_cuid">`` in front of every viewer. The SDK wires
a button only when its ``data-directcall-nonce`` equals the nonce that
``{% directcall_scripts %}`` wrote into the same response, so clicking the planted button
does nothing: no invite, no call record, no ``directcall:result``.

The demo's ``/people/`` page is the host page (built from the template tags alone); the
planted markup is inserted while the page parses, before the SDK runs, exactly where
server-rendered user content would be.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from playwright.sync_api import expect

from directcall.models import Call
from tests.e2e import timings
from tests.e2e.harness import BrowserUser
from tests.e2e.sdk import screen, slot

# Before any script of the page: record the buttons' results.
WATCH_RESULTS = """
(() => {
  window.__results = [];
  document.addEventListener("directcall:result", (e) => {
    window.__results.push({
      cuid: e.target.dataset.directcallCall,
      context: e.target.dataset.directcallContext,
      detail: e.detail,
    });
  });
})();
"""

# Before any script of the page: put `markup` at the top of <main> as soon as the parser
# has made it, i.e. before the (deferred) SDK module runs, like user content in the HTML.
PLANT = """
((markup) => {
  const observer = new MutationObserver(() => {
    const main = document.querySelector("main");
    if (!main) return;
    observer.disconnect();
    main.insertAdjacentHTML("afterbegin", markup);
  });
  observer.observe(document, { childList: true, subtree: true });
})(%s);
"""


@pytest.fixture
def session_account(e2e_account):
    """The account server-minted sessions belong to (``SESSION_ACCOUNT`` of the server)."""
    return e2e_account(account_id=timings.SESSION_ACCOUNT, name="Tutoring", identity="verified")


@pytest.fixture
def people(transactional_db) -> dict[str, Any]:
    """Two of the demo's people (the demo lists them on ``/people/`` by username)."""
    make = get_user_model().objects.create_user
    return {
        "sam": make("sam", first_name="Sam", last_name="Student"),
        "jane": make("jane", first_name="Jane", last_name="Tutor"),
    }


def logged_in(new_user, e2e_server, user, *init_scripts: str) -> BrowserUser:
    """A browser logged in as ``user`` (a session cookie), on ``/people/``, signed in to calls."""
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    person = new_user(user.username, path=None)
    person.context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": e2e_server.url}]
    )
    person.context.add_init_script(WATCH_RESULTS)
    for script in init_scripts:
        person.context.add_init_script(script)
    person.page.goto("/people/")
    signed_in = person.page.evaluate(
        """() => new Promise((resolve) => {
             const check = () => window.DirectCall && window.DirectCall.client
               ? window.DirectCall.client.then((c) => ({ cuid: c.cuid }), (error) => ({ error }))
                   .then(resolve)
               : setTimeout(check, 50);
             check();
           })"""
    )
    assert signed_in == {"cuid": f"user_{user.pk}"}, signed_in
    return person


def test_a_planted_call_button_does_nothing(new_user, e2e_server, session_account, people):
    sam, jane = people["sam"], people["jane"]
    attacker = f"user_{sam.pk}"
    # The attacker is online, on his own render of the page: its nonce is one he knows.
    sam_page = logged_in(new_user, e2e_server, sam)
    his_nonce = sam_page.page.locator("[data-directcall-call]").first.get_attribute(
        "data-directcall-nonce"
    )
    assert his_nonce

    # His comment, as a sanitiser that keeps id and data-* attributes lets it through; it
    # also tries to replace the page's nonce with one of its own (DOM clobbering).
    planted = "".join(
        [
            '<div id="directcall-buttons">{"nonce": "planted-nonce-0123456789"}</div>',
            f'<button data-directcall-call="{attacker}" data-directcall-context="planted: none"'
            ">Win a prize</button>",
            f'<button data-directcall-call="{attacker}" data-directcall-context="planted: wrong"'
            ' data-directcall-nonce="wrong">Win a prize</button>',
            f'<button data-directcall-call="{attacker}" data-directcall-context="planted: empty"'
            ' data-directcall-nonce="">Win a prize</button>',
            f'<button data-directcall-call="{attacker}" data-directcall-context="planted: his"'
            f' data-directcall-nonce="{his_nonce}">Win a prize</button>',
            f'<button data-directcall-call="{attacker}" data-directcall-context="planted: own"'
            ' data-directcall-nonce="planted-nonce-0123456789">Win a prize</button>',
        ]
    )
    jane_page = logged_in(new_user, e2e_server, jane, PLANT % json.dumps(planted))
    page = jane_page.page
    prizes = page.get_by_role("button", name="Win a prize")
    expect(prizes).to_have_count(5)
    rendered = page.locator(f'button.directcall-button[data-directcall-call="{attacker}"]')
    expect(rendered).to_have_count(1)
    page_nonce = rendered.get_attribute("data-directcall-nonce")
    assert page_nonce and page_nonce != his_nonce  # a nonce per response

    for index in range(5):
        prizes.nth(index).click()
        expect(prizes.nth(index)).not_to_have_attribute("aria-busy", "true")

    # The button the host rendered still calls. Had a planted click placed a call, this
    # one would be refused (ERR_OUTGOING_CALL_IN_PROGRESS) or Sam's screen would show a
    # "planted" context.
    real_context = rendered.get_attribute("data-directcall-context")
    rendered.click()
    expect(screen(sam_page, "incoming")).to_be_visible()
    expect(slot(sam_page, "context")).to_have_text(real_context)
    expect(rendered).to_have_attribute("aria-busy", "true")
    # The server saw one invite, the rendered button's (its Call row is written before
    # Sam's incoming screen can show); no planted click got a directcall:result either.
    assert list(Call.objects.values_list("context", flat=True)) == [real_context]
    assert page.evaluate("() => window.__results") == []
    for user in (jane_page, sam_page):
        user.assert_no_errors()
