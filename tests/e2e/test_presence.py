"""Who is online in real Chromium (issue 15): the demo's ``/people/`` page, built from the
template tags alone, shows whether each person can be called — offline before they sign
in, online once they do, in a call while they are in one — and a person the viewer may not
call is offline whatever they do. A button that says so does nothing when clicked.
"""

from __future__ import annotations

from playwright.sync_api import expect

from directcall.models import Call
from tests.e2e import test_integration
from tests.e2e.sdk import click, screen
from tests.e2e.test_integration import assert_clean, log_in, results, save_screenshot

# The demo's logged-in people and their account (fixtures of test_integration).
session_account = test_integration.session_account
people = test_integration.people


def call_button(user, person):
    """The user's call button for ``person`` (by cuid: its accessible name changes)."""
    return user.page.locator(f'[data-directcall-call="user_{person.pk}"]')


def expect_state(button, state: str, text: str) -> None:
    """The button shows ``state`` (``data-directcall-presence``) with ``text``."""
    expect(button).to_have_attribute("data-directcall-presence", state)
    expect(button).to_have_text(text)
    if state == "online":
        expect(button).not_to_have_attribute("aria-disabled", "true")
    else:
        expect(button).to_have_attribute("aria-disabled", "true")


def test_call_buttons_follow_who_is_online(new_user, e2e_server, session_account, people):
    # Sam (a student) may call Jane (a tutor), not Gil (a grocer); Sue may call anyone.
    sam, _ = log_in(new_user, "sam")
    jane_button = call_button(sam, people["jane"])
    gil_button = call_button(sam, people["gil"])
    expect_state(jane_button, "offline", "Offline")  # Jane has never signed in
    expect(jane_button).to_have_attribute("aria-label", "Offline (Jane Tutor)")
    expect_state(gil_button, "offline", "Offline")

    gil, _ = log_in(new_user, "gil")
    jane, _ = log_in(new_user, "jane")
    expect_state(jane_button, "online", "Call")
    expect(jane_button).to_have_attribute("aria-label", "Call Jane Tutor")
    # Gil is online too, and Gil's own page shows Sam online: Sam may not call him, so
    # Sam's button for Gil still says offline.
    expect_state(call_button(gil, people["sam"]), "online", "Call")
    expect_state(gil_button, "offline", "Offline")
    gil_button.click(force=True)  # aria-disabled: does nothing, no call, no result

    sue, _ = log_in(new_user, "sue")
    expect_state(call_button(sue, people["jane"]), "online", "Call")
    expect_state(call_button(sue, people["sam"]), "online", "Call")

    # Sam calls Jane: both are in a call for Sue (and Jane for Gil) while it rings and
    # while it lasts.
    jane_button.click()
    expect(screen(jane, "incoming")).to_be_visible()
    expect_state(call_button(sue, people["jane"]), "busy", "In a call")
    expect_state(call_button(sue, people["sam"]), "busy", "In a call")
    expect(call_button(sue, people["sam"])).to_have_attribute(
        "aria-label", "In a call (Sam Student)"
    )
    expect_state(call_button(gil, people["jane"]), "busy", "In a call")
    click(jane, "answer")
    expect(screen(sam, "ongoing")).to_be_visible()
    save_screenshot(sue.page, "people-presence")
    click(jane, "hangup")
    expect_state(call_button(sue, people["jane"]), "online", "Call")
    expect_state(call_button(sue, people["sam"]), "online", "Call")
    assert [r["cuid"] for r in results(sam)] == [f"user_{people['jane'].pk}"]
    assert Call.objects.count() == 1

    # Jane signs out of calls: offline for everyone who watches her, at once. (Closing the
    # page or logging out of the site keeps her cuid for her device for DEVICE_HOLD first:
    # it could be a reload; tests/test_watch.py.)
    jane.page.evaluate("() => window.DirectCall.client.then((client) => client.logout())")
    expect_state(call_button(sue, people["jane"]), "offline", "Offline")
    expect_state(jane_button, "offline", "Offline")
    # Her own page cannot call anyone now: each of its buttons says so, and does nothing.
    expect_state(call_button(jane, people["sue"]), "unavailable", "Unavailable")
    expect(call_button(jane, people["sue"])).to_have_attribute(
        "aria-label", "Unavailable (Sue Shopper)"
    )
    call_button(jane, people["sue"]).click(force=True)
    for user in (sam, gil, sue, jane):
        assert_clean(user)
    assert results(jane, 0) == [] and Call.objects.count() == 1


def test_a_page_that_could_not_sign_in_shows_its_buttons_unavailable(
    new_user, e2e_server, session_account, people
):
    """Instead of buttons whose click fails where the user cannot see it."""
    log_in(new_user, "jane")  # online: her button would read "Call"
    account, _key = session_account
    account.is_active = False  # switched off by the operator
    account.save()
    sam = new_user("sam", path=None)
    sam.context.add_init_script(test_integration.WATCH_PAGE)
    sam.page.goto("/login-as/")
    sam.page.locator('button[name="username"][value="sam"]').click()
    button = call_button(sam, people["jane"])
    expect_state(button, "unavailable", "Unavailable")
    expect(button).to_have_attribute("aria-label", "Unavailable (Jane Tutor)")
    button.click(force=True)
    assert sam.page.evaluate("() => window.__results") == []
    assert Call.objects.count() == 0
    # The console says why (the page's own script would get the directcall:error event).
    assert any("signing in to calls failed" in line for line in sam.console), sam.console
