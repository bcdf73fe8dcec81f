"""The admin: accounts with keys shown once, registrations, and the read-only call log."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape

from directcall.admin import format_duration
from directcall.models import Account, Call, CallStatus, EndReason, Registration

XSS = "<script>alert(1)</script>"
XSS_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
KEY_RE = re.compile(r'<code class="directcall-api-key">([^<]+)</code>')


def _keys_on_page(response) -> list[str]:
    return KEY_RE.findall(response.content.decode())


def _template_names(response) -> list[str]:
    return [t.name for t in response.templates]


def _cache_control(response) -> set[str]:
    return {part.strip() for part in response.get("Cache-Control", "").split(",")}


def _all_database_text() -> str:
    """Every value of every table, as one string (to look for leaked keys)."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")  # noqa: S608
            chunks.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(chunks)


@pytest.fixture
def log(make_account):
    """An account with registrations and a few calls."""
    account, key = make_account(name="Tutoring")
    alice = Registration.objects.create(account=account, cuid="alice_1", name="Alice")
    bob = Registration.objects.create(account=account, cuid="bobby_2", name="Bob")
    carol = Registration.objects.create(account=account, cuid="carol_3", name="Carol")
    now = timezone.now()
    over = Call.objects.create(
        account=account,
        caller=alice,
        callee=bob,
        context="maths",
        status=CallStatus.OVER,
        end_reason=EndReason.USER_HANGUP,
        created_at=now - timedelta(minutes=5),
        answered_at=now - timedelta(minutes=4),
        ended_at=now - timedelta(minutes=4) + timedelta(seconds=65),
    )
    missed = Call.objects.create(
        account=account,
        caller=bob,
        callee=carol,
        context="physics",
        status=CallStatus.MISSED,
        end_reason=EndReason.INVITE_TIMEOUT,
        created_at=now - timedelta(minutes=3),
    )
    ringing = Call.objects.create(
        account=account,
        caller=carol,
        callee=bob,
        context="chemistry",
        status=CallStatus.RINGING,
        created_at=now - timedelta(minutes=1),
    )
    return {
        "account": account,
        "key": key,
        "regs": (alice, bob, carol),
        "over": over,
        "missed": missed,
        "ringing": ringing,
    }


# -- pages render --------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["account", "registration", "call"])
def test_changelists_render(admin_client, log, model):
    response = admin_client.get(reverse(f"admin:directcall_{model}_changelist"))
    assert response.status_code == 200
    assert response.context["cl"].result_count > 0


def test_the_call_log_names_the_parties_and_finds_them_by_name(admin_client, log):
    """An operator reads who called whom: name and cuid (escaped), and searches by either."""
    bob = log["regs"][1]
    bob.name = "<b>Bob</b>"
    bob.save()
    url = reverse("admin:directcall_call_changelist")
    html = admin_client.get(url).content.decode()
    assert "Alice (alice_1)" in html and "&lt;b&gt;Bob&lt;/b&gt; (bobby_2)" in html
    assert "<b>Bob</b>" not in html
    found = admin_client.get(url, {"q": "Alice"}).context["cl"].result_list
    assert [call.pk for call in found] == [log["over"].pk]
    found = admin_client.get(url, {"q": "carol_3"}).context["cl"].result_list
    assert {call.pk for call in found} == {log["missed"].pk, log["ringing"].pk}


def test_change_pages_render(admin_client, log):
    account = log["account"]
    registration = log["regs"][0]
    for url in (
        reverse("admin:directcall_account_change", args=[account.pk]),
        reverse("admin:directcall_registration_change", args=[registration.pk]),
        reverse("admin:directcall_call_change", args=[log["over"].pk]),
    ):
        response = admin_client.get(url)
        assert response.status_code == 200, url
    account_page = admin_client.get(reverse("admin:directcall_account_change", args=[account.pk]))
    html = account_page.content.decode()
    assert account.account_id in html
    assert account.key_prefix in html
    assert account.key_hash not in html


def test_add_pages_render(admin_client, db):
    for model in ("account", "registration"):
        response = admin_client.get(reverse(f"admin:directcall_{model}_add"))
        assert response.status_code == 200


def test_account_changelist_shows_prefix_only(admin_client, log):
    html = admin_client.get(reverse("admin:directcall_account_changelist")).content.decode()
    assert f"{log['account'].key_prefix}.…" in html
    assert log["key"] not in html
    assert log["key"].partition(".")[2] not in html


# -- account add: the key is shown once ----------------------------------------------------


def _add_form(**overrides) -> dict:
    data = {
        "name": "New shop",
        "is_active": "on",
        "require_clevertap": "on",
        "identity": "verified",
        "allowed_origins": "https://shop.example.com",
        "logo_url": "",
        "background_color": "#1f2933",
        "text_color": "#ffffff",
        "button_theme": "standard",
        "ring_timeout": "",
        "max_call_duration": "",
        "_save": "Save",
    }
    data.update(overrides)
    return data


def test_add_account_shows_the_key_once(admin_client, db):
    response = admin_client.post(reverse("admin:directcall_account_add"), _add_form())
    assert response.status_code == 200
    assert "directcall/admin/api_keys.html" in _template_names(response)
    assert "no-store" in _cache_control(response)

    account = Account.objects.get(name="New shop")
    assert account.require_clevertap is True
    assert account.origin_list == ["https://shop.example.com"]
    assert account.background_color == "#1f2933"
    keys = _keys_on_page(response)
    assert len(keys) == 1
    key = keys[0]
    assert key.startswith(f"{account.key_prefix}.")
    assert account.account_id in response.content.decode()
    assert account.check_api_key(key) is True

    secret = key.partition(".")[2]
    stored = _all_database_text()
    assert key not in stored
    assert secret not in stored
    entries = list(LogEntry.objects.all())
    assert entries, "the addition was not logged"
    for entry in entries:
        assert secret not in entry.change_message
        assert secret not in entry.get_change_message()
        assert secret not in entry.object_repr

    # The change page does not show it again.
    page = admin_client.get(reverse("admin:directcall_account_change", args=[account.pk]))
    assert secret not in page.content.decode()


SECRET_RE = re.compile(r'<code class="directcall-signing-secret">([^<]+)</code>')


def test_add_account_shows_the_signing_secret_once(admin_client, db):
    response = admin_client.post(reverse("admin:directcall_account_add"), _add_form())
    account = Account.objects.get(name="New shop")
    assert account.identity == "verified"
    (secret,) = SECRET_RE.findall(response.content.decode())
    assert secret == account.signing_secret
    assert "no-store" in _cache_control(response)
    for entry in LogEntry.objects.all():
        assert secret not in entry.change_message and secret not in entry.object_repr
    page = admin_client.get(reverse("admin:directcall_account_change", args=[account.pk]))
    assert secret not in page.content.decode()
    listing = admin_client.get(reverse("admin:directcall_account_changelist"))
    assert secret not in listing.content.decode()


def test_add_a_page_account(admin_client, db):
    response = admin_client.post(
        reverse("admin:directcall_account_add"), _add_form(identity="page")
    )
    assert Account.objects.get(name="New shop").identity == "page"
    assert "any of its users" in response.content.decode()  # says what page identities mean


def test_the_session_account_cannot_be_made_page_in_the_admin(admin_client, make_account, settings):
    account, _key = make_account(identity="verified", name="Sessions")
    settings.DIRECTCALL = {**settings.DIRECTCALL, "SESSION_ACCOUNT": account.account_id}
    form = _add_form(name="Sessions", identity="page", allowed_origins="")
    response = admin_client.post(
        reverse("admin:directcall_account_change", args=[account.pk]), form
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["identity"]
    account.refresh_from_db()
    assert account.identity == "verified"


def test_rotate_signing_secrets_action(admin_client, make_account):
    first, key = make_account(name="First")
    untouched, _ = make_account(name="Second")
    old, kept = first.signing_secret, untouched.signing_secret
    response = admin_client.post(
        reverse("admin:directcall_account_changelist"),
        {"action": "rotate_signing_secrets", "_selected_action": [first.pk]},
    )
    assert "directcall/admin/api_keys.html" in _template_names(response)
    assert "no-store" in _cache_control(response)
    (secret,) = SECRET_RE.findall(response.content.decode())
    assert _keys_on_page(response) == []  # the key is not touched, nor shown
    first.refresh_from_db()
    untouched.refresh_from_db()
    assert first.signing_secret == secret != old and untouched.signing_secret == kept
    assert first.check_api_key(key)
    messages = " ".join(e.change_message for e in LogEntry.objects.all())
    assert "Signing secret (rotated)" in messages and secret not in messages


def test_add_account_with_overrides(admin_client, db):
    response = admin_client.post(
        reverse("admin:directcall_account_add"),
        _add_form(
            name="Tuned",
            require_clevertap="",
            ring_timeout="20",
            max_call_duration="600",
            button_theme="dark",
            text_color="#000000",
        ),
    )
    assert response.status_code == 200
    account = Account.objects.get(name="Tuned")
    assert account.require_clevertap is False
    assert account.effective_ring_timeout() == 20
    assert account.effective_max_call_duration() == 600
    assert account.button_theme == "dark"
    assert account.check_api_key(_keys_on_page(response)[0])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ring_timeout", "0"),
        ("max_call_duration", "0"),
        ("allowed_origins", "https://shop.example.com/path"),
        ("allowed_origins", "ftp://shop.example.com"),
    ],
)
def test_add_account_invalid_value_redisplays_form(admin_client, db, field, value):
    response = admin_client.post(
        reverse("admin:directcall_account_add"), _add_form(**{field: value})
    )
    assert response.status_code == 200
    assert "directcall/admin/api_keys.html" not in _template_names(response)
    assert response.context["adminform"].form.errors[field]
    assert not Account.objects.exists()


def test_add_account_invalid_colour_redisplays_form(admin_client, db):
    response = admin_client.post(
        reverse("admin:directcall_account_add"), _add_form(background_color="red")
    )
    assert response.status_code == 200
    assert "directcall/admin/api_keys.html" not in _template_names(response)
    assert response.context["adminform"].form.errors["background_color"]
    assert not Account.objects.exists()


# -- actions -------------------------------------------------------------------------------


def test_rotate_action_shows_new_keys(admin_client, make_account):
    first, old1 = make_account(name="First")
    second, old2 = make_account(name="Second")
    untouched, old3 = make_account(name="Third")
    response = admin_client.post(
        reverse("admin:directcall_account_changelist"),
        {"action": "rotate_keys", "_selected_action": [first.pk, second.pk]},
    )
    assert response.status_code == 200
    assert "directcall/admin/api_keys.html" in _template_names(response)
    assert "no-store" in _cache_control(response)
    keys = _keys_on_page(response)
    assert len(keys) == 2

    first.refresh_from_db()
    second.refresh_from_db()
    untouched.refresh_from_db()
    by_prefix = {key.partition(".")[0]: key for key in keys}
    assert first.check_api_key(by_prefix[first.key_prefix])
    assert second.check_api_key(by_prefix[second.key_prefix])
    assert not first.check_api_key(old1)
    assert not second.check_api_key(old2)
    assert untouched.check_api_key(old3)

    stored = _all_database_text()
    for key in keys:
        assert key.partition(".")[2] not in stored
    messages = " ".join(e.change_message for e in LogEntry.objects.all())
    assert "rotated" in messages
    for key in keys:
        assert key.partition(".")[2] not in messages


def test_rotate_action_revives_a_revoked_key(admin_client, make_account):
    account, _ = make_account()
    account.revoke_api_key()
    response = admin_client.post(
        reverse("admin:directcall_account_changelist"),
        {"action": "rotate_keys", "_selected_action": [account.pk]},
    )
    (key,) = _keys_on_page(response)
    account.refresh_from_db()
    assert not account.key_is_revoked
    assert account.check_api_key(key)


def test_revoke_action(admin_client, make_account):
    account, key = make_account(name="Revoked")
    other, other_key = make_account(name="Kept")
    response = admin_client.post(
        reverse("admin:directcall_account_changelist"),
        {"action": "revoke_keys", "_selected_action": [account.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "Revoked 1 API key." in response.content.decode()
    account.refresh_from_db()
    other.refresh_from_db()
    assert account.key_is_revoked
    assert not account.check_api_key(key)
    assert other.check_api_key(other_key)
    html = admin_client.get(reverse("admin:directcall_account_changelist")).content.decode()
    assert "revoked" in html


def test_key_page_escapes_account_name(admin_client, make_account):
    account, _ = make_account(name=XSS)
    response = admin_client.post(
        reverse("admin:directcall_account_changelist"),
        {"action": "rotate_keys", "_selected_action": [account.pk]},
    )
    html = response.content.decode()
    assert XSS not in html
    assert XSS_ESCAPED in html


# -- the call log is read-only -------------------------------------------------------------


def test_call_add_forbidden(admin_client, log):
    response = admin_client.get(reverse("admin:directcall_call_add"))
    assert response.status_code == 403
    count = Call.objects.count()
    response = admin_client.post(reverse("admin:directcall_call_add"), {"context": "x"})
    assert response.status_code == 403
    assert Call.objects.count() == count


def test_call_change_page_is_read_only(admin_client, log):
    call = log["over"]
    url = reverse("admin:directcall_call_change", args=[call.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'name="_save"' not in html
    assert 'name="_continue"' not in html
    assert "maths" in html
    assert "1:05" in html

    response = admin_client.post(
        url, {"context": "changed", "status": CallStatus.MISSED, "_save": "Save"}
    )
    assert response.status_code == 403
    call.refresh_from_db()
    assert call.context == "maths"
    assert call.status == CallStatus.OVER


@pytest.fixture
def staff_client(client, db):
    """A logged-in staff user, not a superuser, with every directcall permission."""
    user = get_user_model().objects.create_user(username="staff", password="x", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="directcall"))
    client.force_login(user)
    return client


def test_call_delete_forbidden_to_staff(staff_client, log):
    call = log["over"]
    url = reverse("admin:directcall_call_delete", args=[call.pk])
    assert staff_client.get(url).status_code == 403
    assert staff_client.post(url, {"post": "yes"}).status_code == 403
    assert Call.objects.filter(pk=call.pk).exists()

    # No bulk delete either.
    changelist = reverse("admin:directcall_call_changelist")
    assert "delete_selected" not in staff_client.get(changelist).content.decode()
    staff_client.post(
        changelist, {"action": "delete_selected", "_selected_action": [call.pk], "post": "yes"}
    )
    assert Call.objects.filter(pk=call.pk).exists()


def test_staff_cannot_delete_an_account_that_has_calls(staff_client, log):
    account = log["account"]
    url = reverse("admin:directcall_account_delete", args=[account.pk])
    assert staff_client.post(url, {"post": "yes"}).status_code == 403
    assert Account.objects.filter(pk=account.pk).exists()
    assert Call.objects.count() == 3


def test_superuser_may_delete_a_call(admin_client, log):
    call = log["over"]
    url = reverse("admin:directcall_call_delete", args=[call.pk])
    assert admin_client.get(url).status_code == 200
    response = admin_client.post(url, {"post": "yes"})
    assert response.status_code == 302
    assert not Call.objects.filter(pk=call.pk).exists()
    assert Call.objects.count() == 2


def test_superuser_may_delete_an_account_or_registration_with_calls(
    admin_client, log, make_account
):
    alice = log["regs"][0]
    url = reverse("admin:directcall_registration_delete", args=[alice.pk])
    assert admin_client.post(url, {"post": "yes"}).status_code == 302
    assert not Registration.objects.filter(pk=alice.pk).exists()
    assert set(Call.objects.values_list("pk", flat=True)) == {log["missed"].pk, log["ringing"].pk}

    account = log["account"]
    other, _ = make_account(name="Other")
    url = reverse("admin:directcall_account_delete", args=[account.pk])
    assert admin_client.post(url, {"post": "yes"}).status_code == 302
    assert list(Account.objects.all()) == [other]
    assert not Call.objects.exists()
    assert not Registration.objects.exists()


def _listed(response) -> set:
    return {c.pk for c in response.context["cl"].result_list}


def test_call_changelist_filter_by_status(admin_client, log):
    url = reverse("admin:directcall_call_changelist")
    response = admin_client.get(url, {"status__exact": CallStatus.MISSED})
    assert response.status_code == 200
    assert _listed(response) == {log["missed"].pk}
    response = admin_client.get(url, {"status__exact": CallStatus.OVER})
    assert _listed(response) == {log["over"].pk}
    response = admin_client.get(url, {"end_reason__exact": EndReason.INVITE_TIMEOUT})
    assert _listed(response) == {log["missed"].pk}


def test_call_changelist_search(admin_client, log):
    url = reverse("admin:directcall_call_changelist")
    response = admin_client.get(url, {"q": "alice_1"})
    assert response.status_code == 200
    assert _listed(response) == {log["over"].pk}
    response = admin_client.get(url, {"q": "carol_3"})
    assert _listed(response) == {log["missed"].pk, log["ringing"].pk}
    response = admin_client.get(url, {"q": "nobody_9"})
    assert _listed(response) == set()
    # By call id.
    response = admin_client.get(url, {"q": str(log["ringing"].pk)})
    assert _listed(response) == {log["ringing"].pk}


def test_call_changelist_duration_column(admin_client, log):
    response = admin_client.get(reverse("admin:directcall_call_changelist"))
    html = response.content.decode()
    assert re.search(r'<td class="field-talk_time">1:05</td>', html)
    assert re.search(r'<td class="field-talk_time">—</td>', html)


def test_format_duration():
    assert format_duration(None) == "—"
    assert format_duration(timedelta(seconds=0)) == "0:00"
    assert format_duration(timedelta(seconds=65)) == "1:05"
    assert format_duration(timedelta(seconds=65, microseconds=900_000)) == "1:05"
    assert format_duration(timedelta(minutes=59, seconds=59)) == "59:59"
    assert format_duration(timedelta(hours=1, seconds=5)) == "1:00:05"
    assert format_duration(timedelta(hours=12, minutes=3, seconds=7)) == "12:03:07"


def test_registration_changelist_search_and_filter(admin_client, log, make_account):
    other, _ = make_account(name="Other")
    theirs = Registration.objects.create(account=other, cuid="alice_1")
    url = reverse("admin:directcall_registration_changelist")
    response = admin_client.get(url, {"q": "alice_1"})
    assert _listed(response) == {log["regs"][0].pk, theirs.pk}
    response = admin_client.get(url, {"account__id__exact": other.pk})
    assert _listed(response) == {theirs.pk}


# -- escaping ------------------------------------------------------------------------------


def test_payloads_are_escaped(admin_client, make_account):
    account, _ = make_account(name=XSS)
    caller = Registration.objects.create(account=account, cuid="alice_1", name=XSS)
    callee = Registration.objects.create(account=account, cuid="bobby_2", name="Bob")
    call = Call.objects.create(account=account, caller=caller, callee=callee, context=XSS)
    pages = [
        reverse("admin:directcall_registration_changelist"),
        reverse("admin:directcall_registration_change", args=[caller.pk]),
        reverse("admin:directcall_call_changelist"),
        reverse("admin:directcall_call_change", args=[call.pk]),
        reverse("admin:directcall_account_changelist"),
        reverse("admin:directcall_account_change", args=[account.pk]),
    ]
    for url in pages:
        response = admin_client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert XSS not in html, url
        assert XSS_ESCAPED in html, url


# An http(s) image URL may carry markup in its path (URLValidator allows it): the admin must
# show it as text. A stored javascript:/data: URL (only possible by writing the database
# directly: every entry point refuses it) must not become a link.
IMAGE_XSS = 'https://x.example/"><script>alert(1)</script>.png'
IMAGE_XSS_ESCAPED = "https://x.example/&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;.png"


def _call_with_images(account, caller_image, receiver_image):
    caller = Registration.objects.create(account=account, cuid="alice_1", name="Alice")
    callee = Registration.objects.create(account=account, cuid="bobby_2", name="Bob")
    return Call.objects.create(
        account=account,
        caller=caller,
        callee=callee,
        context="maths",
        caller_image=caller_image,
        receiver_image=receiver_image,
    )


def test_image_urls_with_markup_are_escaped(admin_client, make_account):
    account, _ = make_account()
    call = _call_with_images(account, IMAGE_XSS, IMAGE_XSS)
    for url in (
        reverse("admin:directcall_call_change", args=[call.pk]),
        reverse("admin:directcall_call_changelist"),
        reverse("admin:directcall_call_dashboard"),
    ):
        html = admin_client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in html, url
        assert '"><script>' not in html, url
    html = admin_client.get(reverse("admin:directcall_call_change", args=[call.pk])).content
    assert IMAGE_XSS_ESCAPED in html.decode()


@pytest.mark.parametrize(
    "stored",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        " javascript:alert(1)",
    ],
)
def test_stored_non_http_image_urls_are_not_links(admin_client, make_account, stored):
    account, _ = make_account()
    call = _call_with_images(account, stored, stored)
    html = admin_client.get(reverse("admin:directcall_call_change", args=[call.pk])).content
    html = html.decode()
    scheme = stored.strip().split(":")[0]
    assert not re.search(rf'href="\s*{scheme}:', html, re.IGNORECASE), stored
    assert "<script>alert(1)</script>" not in html


def test_http_image_urls_are_links(admin_client, make_account):
    account, _ = make_account()
    call = _call_with_images(account, "https://cdn.example.org/a.png", "")
    html = admin_client.get(reverse("admin:directcall_call_change", args=[call.pk])).content
    assert '<a href="https://cdn.example.org/a.png">' in html.decode()


@pytest.mark.parametrize(
    "payload",
    [
        XSS,
        '"><img src=x onerror=alert(1)>',
        "</textarea><script>alert(1)</script>",
        "{{ 7|add:7 }}{% debug %}",
    ],
)
def test_registration_and_call_payloads_are_inert(admin_client, make_account, payload):
    """Names (registration change form: input values) and contexts, whatever they hold."""
    account, _ = make_account()
    caller = Registration.objects.create(account=account, cuid="alice_1", name=payload[:50])
    callee = Registration.objects.create(account=account, cuid="bobby_2", name="Bob")
    call = Call.objects.create(account=account, caller=caller, callee=callee, context=payload)
    for url in (
        reverse("admin:directcall_registration_change", args=[caller.pk]),
        reverse("admin:directcall_registration_changelist"),
        reverse("admin:directcall_call_change", args=[call.pk]),
        reverse("admin:directcall_call_changelist"),
    ):
        html = admin_client.get(url).content.decode()
        assert "<script>alert(1)</script>" not in html and "<img src=x" not in html, url
    # Shown as text: escaped, and never evaluated as a template.
    page = admin_client.get(reverse("admin:directcall_call_change", args=[call.pk]))
    assert escape(payload) in page.content.decode()
