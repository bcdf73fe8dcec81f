"""Revocation (issue 13, 5): tokens that can be revoked, and revocation reaching live sockets.

The server side, with a real channel layer (in memory, then Redis) and cache: each trigger
puts its tokens on the deny-list and sends ``dc.revoke`` to the group of the connections
concerned; a test channel added to that group receives it. The consumer's part (joining
the groups at ``auth``, closing on ``dc.revoke``) is tested at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from functools import partial

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.contrib.auth import get_user_model
from django.test import Client as DjangoClient
from django.test.utils import isolate_apps
from django.urls import reverse

from directcall import revocation, tokens
from directcall.adapter import DefaultCallAdapter
from directcall.models import Account, Call, Identity, Registration

from .wsclient import Client, answered_call

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("signaling")]

SENTINEL = {"type": "test.sentinel"}


class Listener:
    """A channel in the groups of an account and of its registrations, like a consumer's."""

    def __init__(self, *groups: str) -> None:
        self.groups = groups
        self.layer = get_channel_layer()

    async def __aenter__(self) -> Listener:
        self.channel = await self.layer.new_channel()
        for group in self.groups:
            await self.layer.group_add(group, self.channel)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for group in self.groups:
            await self.layer.group_discard(group, self.channel)

    async def next(self) -> dict:
        return await asyncio.wait_for(self.layer.receive(self.channel), 5)

    async def nothing(self) -> None:
        """Nothing was sent to the groups before now: a sentinel sent now arrives first."""
        await self.layer.group_send(self.groups[0], SENTINEL)
        assert await self.next() == SENTINEL


def _account(make_account, **fields) -> tuple[Account, str, Registration]:
    account, key = make_account(**fields)
    registration = Registration.objects.create(account=account, cuid="tutor_jane")
    return account, key, registration


@pytest.fixture
async def page(make_account):
    """A page account (its key signs users in), a registration, and a listener on both."""
    account, key, registration = await sync_to_async(_account)(make_account)
    groups = (
        revocation.account_group(account.pk),
        revocation.registration_group(registration.pk),
    )
    async with Listener(*groups) as listener:
        yield account, key, registration, listener


@pytest.fixture
async def verified(make_account):
    account, key, registration = await sync_to_async(_account)(make_account, identity="verified")
    groups = (
        revocation.account_group(account.pk),
        revocation.registration_group(registration.pk),
    )
    async with Listener(*groups) as listener:
        yield account, key, registration, listener


def _token(registration: Registration, **fields) -> str:
    return tokens.issue(
        registration.account_id, registration.pk, registration.cuid, "device-0001", **fields
    )


# -- tokens ---------------------------------------------------------------------------------


async def test_tokens_have_ids_and_a_revoked_one_fails_verify(page):
    _acct, _key, registration, _listener = page
    token, other = _token(registration), _token(registration)
    session = tokens.verify(token)
    assert session.jti and session.jti != tokens.verify(other).jti
    await sync_to_async(tokens.revoke_token)(session.jti)
    assert tokens.verify(token) is None and await tokens.averify(token) is None
    assert tokens.verify(other) is not None and await tokens.averify(other) is not None


async def test_issued_before_refuses_older_tokens_only(page):
    account, _key, registration, _listener = page
    old = _token(registration)
    tokens.revoke_issued_before("account", account.pk)
    await asyncio.sleep(0.002)  # a later millisecond: the token below is issued after
    new = _token(registration)
    assert tokens.verify(old) is None and tokens.verify(new) is not None
    # A revocation never moves back in time.
    assert tokens.revoke_issued_before("account", account.pk, moment=1.0) > 1.0
    assert tokens.verify(old) is None


def test_a_revocation_unknown_scope_is_an_error():
    with pytest.raises(ValueError):
        tokens.revoke_issued_before("device", 1)


# -- triggers: each sends dc.revoke to the group and denies the tokens ----------------------------


async def test_deactivating_the_account(page):
    account, _key, registration, listener = page
    token = _token(registration)

    def deactivate():
        account.is_active = False
        account.save()

    await sync_to_async(deactivate)()
    assert await listener.next() == {"type": "dc.revoke", "reason": "account_inactive"}
    assert tokens.verify(token) is None
    # Saving it again (still inactive) revokes nothing more.
    await sync_to_async(account.save)()
    await listener.nothing()


async def test_rotating_or_revoking_the_key_of_a_page_account(page):
    account, _key, registration, listener = page
    token = _token(registration)
    await sync_to_async(account.rotate_api_key)()
    assert (await listener.next())["reason"] == "key_rotated"
    assert tokens.verify(token) is None
    await asyncio.sleep(0.002)
    token = _token(registration)
    await sync_to_async(account.revoke_api_key)()
    assert (await listener.next())["reason"] == "key_revoked"
    assert tokens.verify(token) is None


async def test_the_key_of_a_verified_account_signs_nobody_in_so_revoking_it_ends_nothing(verified):
    account, _key, registration, listener = verified
    token = _token(registration, verified=True)
    await sync_to_async(account.rotate_api_key)()
    await sync_to_async(account.revoke_api_key)()
    await listener.nothing()
    assert tokens.verify(token) is not None


async def test_rotating_the_signing_secret(verified):
    account, _key, registration, listener = verified
    token = _token(registration, verified=True)
    await sync_to_async(account.rotate_signing_secret)()
    assert (await listener.next())["reason"] == "signing_secret_rotated"
    assert tokens.verify(token) is None


async def test_switching_a_page_account_to_verified(page):
    account, _key, registration, listener = page
    token = _token(registration)

    def switch():
        account.identity = Identity.VERIFIED
        account.save(update_fields=["identity"])

    await sync_to_async(switch)()
    assert (await listener.next())["reason"] == "identity_changed"
    assert tokens.verify(token) is None


async def test_other_changes_revoke_nothing(page):
    account, _key, registration, listener = page
    token = _token(registration)

    def edit():
        fresh = Account.objects.get(pk=account.pk)
        fresh.name, fresh.ring_timeout = "Renamed", 20
        fresh.save()

    await sync_to_async(edit)()
    await listener.nothing()
    assert tokens.verify(token) is not None


async def test_deleting_the_registration(page):
    _acct, _key, registration, listener = page
    token = _token(registration)
    await sync_to_async(registration.delete)()
    assert await listener.next() == {"type": "dc.revoke", "reason": "registration_deleted"}
    # Its tokens name a registration that is gone: the socket refuses them (test_isolation).
    assert tokens.verify(token) is not None


async def test_revoke_registration_denies_its_tokens(page):
    _acct, _key, registration, listener = page
    token = _token(registration)
    await sync_to_async(revocation.revoke_registration)(registration.pk, "revoked")
    assert await listener.next() == {"type": "dc.revoke", "reason": "revoked"}
    assert tokens.verify(token) is None


async def test_deleting_the_account_closes_its_registrations_too(page):
    account, _key, _registration, listener = page
    await sync_to_async(account.delete)()
    reasons = {(await listener.next())["reason"], (await listener.next())["reason"]}
    assert reasons == {"account_deleted", "registration_deleted"}


async def test_admin_actions_and_the_command_revoke(page, admin_user):
    account, _key, _registration, listener = page
    browser = DjangoClient()
    await sync_to_async(browser.force_login)(admin_user)
    url = reverse("admin:directcall_account_changelist")
    await sync_to_async(browser.post)(
        url, {"action": "revoke_keys", "_selected_action": [account.pk]}
    )
    assert (await listener.next())["reason"] == "key_revoked"
    await sync_to_async(browser.post)(
        url, {"action": "rotate_keys", "_selected_action": [account.pk]}
    )
    assert (await listener.next())["reason"] == "key_rotated"
    change = reverse("admin:directcall_account_change", args=[account.pk])
    form = await sync_to_async(browser.get)(change)
    data = {
        **{k: v for k, v in form.context["adminform"].form.initial.items() if v is not None},
        "is_active": "",
        "_save": "Save",
    }
    data.pop("require_clevertap", None)
    response = await sync_to_async(browser.post)(change, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    assert (await listener.next())["reason"] == "account_inactive"

    from django.core.management import call_command

    await sync_to_async(call_command)("directcall_account", "revoke", account.account_id)
    # Already inactive; the key was live again after the rotation: revoked now.
    assert (await listener.next())["reason"] == "key_revoked"


# -- logging out ----------------------------------------------------------------------------------


@pytest.fixture
async def logged_in(make_account, settings):
    """A verified session account, a user logged in in two browsers, a v1/session token each."""

    def set_up():
        account, _key = make_account(identity="verified")
        settings.DIRECTCALL = {**settings.DIRECTCALL, "SESSION_ACCOUNT": account.account_id}
        user = get_user_model().objects.create_user("sam", first_name="Sam")
        browsers, session_tokens = [], []
        for _ in range(2):
            browser = DjangoClient()
            browser.force_login(user)
            body = browser.post("/directcall/v1/session", {}, "application/json").json()
            browsers.append(browser)
            session_tokens.append(body["token"])
        registration = Registration.objects.get(account=account)
        return user, browsers, session_tokens, registration

    return await sync_to_async(set_up)()


async def test_session_tokens_are_bound_to_the_django_session_and_user(logged_in):
    user, browsers, (first, second), _registration = logged_in
    a, b = tokens.verify(first), tokens.verify(second)
    assert a.verified and a.user_pk == str(user.pk) and a.sid and b.sid and a.sid != b.sid
    key = browsers[0].session.session_key
    assert a.sid == tokens.session_hash(key) and key not in first


async def test_logging_out_revokes_that_browser_s_tokens_and_tells_its_sockets(logged_in):
    """Issue 13, 5: after logout() the same token signed in again, and sockets stayed."""
    _user, browsers, (first, second), registration = logged_in
    sid = tokens.verify(first).sid
    async with Listener(revocation.registration_group(registration.pk)) as listener:
        await sync_to_async(browsers[0].logout)()  # django.contrib.auth.logout()
        message = await listener.next()
    assert message == {"type": "dc.revoke", "reason": "logged_out", "sid": sid}
    assert tokens.verify(first) is None
    # The other browser is still logged in: its token and sockets are not concerned.
    assert tokens.verify(second) is not None
    assert revocation.concerns(message, tokens.verify(second)) is False
    assert revocation.concerns(message, tokens.decode(first)) is True


async def test_revoke_user_tokens_ends_every_session_of_the_user(logged_in):
    user, _browsers, (first, second), registration = logged_in
    async with Listener(revocation.registration_group(registration.pk)) as listener:
        await sync_to_async(revocation.revoke_user_tokens)(user)
        assert await listener.next() == {"type": "dc.revoke", "reason": "revoked"}
    assert tokens.verify(first) is None and tokens.verify(second) is None


async def test_a_logged_out_token_cannot_sign_in_at_the_socket(logged_in):
    """The consumer's auth already checks the deny-list (tokens.verify)."""
    _user, browsers, (first, _second), _registration = logged_in
    await sync_to_async(browsers[0].logout)()  # django.contrib.auth.logout()
    socket = Client(await Client.open(), "user", 0)
    try:
        await socket.send(type="auth", token=first)
        assert (await socket.next("error"))["code"] == "ERR_INVALID_TOKEN"
        assert await socket.closed() == 4001
    finally:
        await socket.close()


async def test_a_revoked_key_s_token_cannot_sign_in_at_the_socket(page):
    """Issue 13, 5: after revoking the key, the tokens it had signed in still worked."""
    account, _key, registration, listener = page
    token = _token(registration)
    await sync_to_async(account.revoke_api_key)()
    await listener.next()
    socket = Client(await Client.open(), registration.cuid, registration.pk)
    try:
        await socket.send(type="auth", token=token)
        assert (await socket.next("error"))["code"] == "ERR_INVALID_TOKEN"
    finally:
        await socket.close()


# -- live sockets (the consumer's part) ---------------------------------------------------------


@contextlib.asynccontextmanager
async def _answered(page) -> AsyncIterator[tuple[Client, Client, str]]:
    """``(caller, callee, call_id)``: jane (the page's registration) called sam, who answered;
    both sockets are closed at the end."""
    account, _key, jane, _listener = page
    sam = await sync_to_async(Registration.objects.create)(account=account, cuid="student_sam")
    caller, callee = await Client.signed_in(jane), await Client.signed_in(sam)
    try:
        yield caller, callee, await answered_call(caller, callee)
    finally:
        await caller.close()
        await callee.close()


async def _revoked(trigger: Callable[[], object], *sockets: Client, within: float | None = 3):
    """Run ``trigger`` (sync code: a save, a delete); each of ``sockets`` is told
    ``ERR_SESSION_REVOKED`` and closed with 4011, within ``within`` seconds of it."""
    started = time.monotonic()
    await sync_to_async(trigger)()
    for socket in sockets:
        assert (await socket.next("error"))["code"] == "ERR_SESSION_REVOKED"
        assert await socket.closed() == 4011
    if within is not None:
        assert time.monotonic() - started < within


async def _ended_revoked(call_id: str) -> None:
    call = await sync_to_async(Call.objects.get)(pk=call_id)
    assert (call.status, call.end_reason) == ("over", "revoked")


async def _told_revoked_and_stays(callee: Client, call_id: str) -> None:
    state = await callee.next("state", call_id=call_id)
    assert (state["status"], state["reason"]) == ("over", "revoked")
    await callee.alive()  # the other party stays signed in


async def test_deactivating_an_account_closes_its_live_sockets_within_seconds(page):
    """Issue 13, 5: after deactivating the account and revoking its key, an open socket
    still placed a call 8 s later."""
    account = page[0]

    def deactivate():
        account.is_active = False
        account.save()

    async with _answered(page) as (caller, callee, call_id):
        await _revoked(deactivate, caller, callee)
        await _ended_revoked(call_id)


async def test_a_revoked_party_leaves_the_call_and_the_other_is_told_revoked(page):
    jane = page[2]
    async with _answered(page) as (caller, callee, call_id):
        revoke = partial(revocation.revoke_registration, jane.pk, revocation.REVOKED)
        await _revoked(revoke, caller, within=None)
        await _told_revoked_and_stays(callee, call_id)


async def test_a_revocation_during_auth_is_not_lost(page, monkeypatch):
    """A revocation that lands while the socket authenticates — after its token passed the
    deny-list, before it joined the groups — must still end it."""
    from directcall import presence

    account, _key, jane, _listener = page
    claim = presence.aclaim

    async def claim_while_revoked(*args, **kwargs):
        await sync_to_async(revocation.revoke_account)(account.pk, revocation.REVOKED)
        return await claim(*args, **kwargs)

    monkeypatch.setattr(presence, "aclaim", claim_while_revoked)
    socket = Client(await Client.open(), jane.cuid, jane.pk)
    try:
        await socket.send(type="auth", token=_token(jane))
        frame = await socket.next("error")
        assert frame["code"] in ("ERR_INVALID_TOKEN", "ERR_SESSION_REVOKED")
        assert await socket.closed() in (4001, 4011)
    finally:
        await socket.close()


async def test_revoking_a_user_token_closes_the_sockets_it_signed_in(verified, api_client):
    """A user token's logout reached nothing live: revoke_token(jti) only refused the next
    v1/init, while the session tokens minted from it (each with its own id) and the sockets
    using them kept working for up to TOKEN_TTL."""
    import jwt

    from directcall.identity import mint_user_token

    account, key, jane, _listener = verified

    def sign_in(cuid: str) -> tuple[str, dict, dict]:
        user_token = mint_user_token(account, cuid, name=f"User {cuid}")
        body = api_client.post(
            "/directcall/v1/init",
            {"accountId": account.account_id, "apikey": key, "cuid": cuid, "userToken": user_token},
            format="json",
        ).json()
        return user_token, jwt.decode(user_token, options={"verify_signature": False}), body

    user_token, claims, body = await sync_to_async(sign_in)(jane.cuid)
    _other_token, _other_claims, sam_body = await sync_to_async(sign_in)("student_sam")
    sam = await sync_to_async(Registration.objects.get)(account=account, cuid="student_sam")
    sockets = []
    try:
        for registration, session in ((jane, body), (sam, sam_body)):
            socket = Client(await Client.open(), registration.cuid, registration.pk)
            sockets.append(socket)
            await socket.send(type="auth", token=session["token"])
            await socket.next("ready")
        caller, callee = sockets
        call_id = await answered_call(caller, callee)
        revoke = partial(revocation.revoke_user_token, account, claims["jti"], claims["exp"])
        await _revoked(revoke, caller)
        state = await callee.next("state", call_id=call_id)
        assert (state["status"], state["reason"]) == ("over", "revoked")
        await callee.alive()  # signed in through another user token: not concerned
        call = await sync_to_async(Call.objects.get)(pk=call_id)
        assert (call.status, call.end_reason) == ("over", "revoked")
        # The session token is refused at the socket, the user token at v1/init.
        assert tokens.verify(body["token"]) is None
        assert tokens.verify(sam_body["token"]) is not None
        again = await sync_to_async(api_client.post)(
            "/directcall/v1/init",
            {
                "accountId": account.account_id,
                "apikey": key,
                "cuid": jane.cuid,
                "userToken": user_token,
            },
            format="json",
        )
        assert again.json()["code"] == "ERR_INVALID_USER_TOKEN"
    finally:
        for socket in sockets:
            await socket.close()


async def test_revoking_a_user_token_by_cuid_reaches_that_registration_only(verified, api_client):
    """With the token's cuid, the message goes to that registration's group alone."""
    account, _key, jane, listener = verified
    await sync_to_async(revocation.revoke_user_token)(
        account, "user-token-1", time.time() + 60, cuid=jane.cuid
    )
    message = await listener.next()
    assert message == {"type": "dc.revoke", "reason": "revoked", "uj": "user-token-1"}
    session = tokens.decode(_token(jane, verified=True, user_jti="user-token-1"))
    other = tokens.decode(_token(jane, verified=True, user_jti="user-token-2"))
    assert revocation.concerns(message, session) and not revocation.concerns(message, other)
    assert tokens.is_revoked(session) and not tokens.is_revoked(other)
    await listener.nothing()  # one message: the registration's group, not the account's


# -- each trigger, against live sockets -------------------------------------------------------


async def test_logging_out_closes_that_session_s_sockets_only_and_ends_their_call(
    make_account, settings
):
    """Django's logout() in one browser: the sockets signed in with that Django session's
    tokens close (4011) and their call ends ``revoked``; a tab of the same device signed in
    through another Django session of the user (the ``sid`` filter) stays."""

    def set_up():
        account, _key = make_account(identity="verified")
        settings.DIRECTCALL = {**settings.DIRECTCALL, "SESSION_ACCOUNT": account.account_id}
        user = get_user_model().objects.create_user("sam", first_name="Sam")
        browsers, session_tokens = [], []
        for _ in range(2):
            browser = DjangoClient()
            browser.force_login(user)
            body = browser.post(
                "/directcall/v1/session", {"deviceId": "device-0001"}, "application/json"
            ).json()
            browsers.append(browser)
            session_tokens.append(body["token"])
        mine = Registration.objects.get(account=account)
        other = Registration.objects.create(account=account, cuid="student_gil")
        return browsers, session_tokens, mine, other

    browsers, (first, second), mine, other = await sync_to_async(set_up)()
    assert tokens.decode(first).sid != tokens.decode(second).sid
    tab_a = Client(await Client.open(), mine.cuid, mine.pk)
    tab_b = Client(await Client.open(), mine.cuid, mine.pk)
    gil = await Client.signed_in(other)
    try:
        await tab_a.send(type="auth", token=first)
        device_key = (await tab_a.next("ready"))["device_key"]
        # The same device (its key), signed in through the other Django session.
        await tab_b.send(type="auth", token=second, device_key=device_key)
        await tab_b.next("ready")
        call_id = await answered_call(tab_a, gil)
        await _revoked(browsers[0].logout, tab_a)  # django.contrib.auth.logout()
        state = await gil.next("state", call_id=call_id)
        assert (state["status"], state["reason"]) == ("over", "revoked")
        call = await sync_to_async(Call.objects.get)(pk=call_id)
        assert (call.status, call.end_reason) == ("over", "revoked")
        await tab_b.alive()  # the other Django session's tab is not concerned
        await gil.alive()
    finally:
        for client in (tab_a, tab_b, gil):
            await client.close()


async def test_rotating_a_page_key_closes_the_live_sockets_it_signed_in(page):
    account = page[0]
    async with _answered(page) as (caller, callee, call_id):
        await _revoked(account.rotate_api_key, caller, callee)
        await _ended_revoked(call_id)


async def test_deleting_a_registration_closes_its_live_sockets_and_ends_its_call(page):
    jane = page[2]
    async with _answered(page) as (caller, callee, call_id):
        await _revoked(jane.delete, caller)
        await _told_revoked_and_stays(callee, call_id)


async def test_deleting_an_account_with_webhooks_during_a_call(page):
    """The calls of an account's registrations are not ended one by one when the account
    itself goes (a call.ended webhook queued then would name the account being deleted)."""
    from directcall.webhooks.models import WebhookEndpoint, WebhookMessage

    account = page[0]
    await sync_to_async(WebhookEndpoint.objects.create)(
        account=account, url="http://127.0.0.1:9/hooks"
    )

    def delete_account():
        Account.objects.get(pk=account.pk).delete()

    async with _answered(page) as (caller, callee, _call_id):
        await _revoked(delete_account, caller, callee, within=None)
        assert not await sync_to_async(Account.objects.filter(pk=account.pk).exists)()
        assert not await sync_to_async(WebhookMessage.objects.exists)()


# -- the Django user deactivated or deleted ---------------------------------------------------


def _session_user(make_account, settings, username: str = "sam"):
    """A verified session account; a user logged in in a browser, its v1/session token and
    registration; and another registration to call."""
    account, _key = make_account(identity="verified")
    settings.DIRECTCALL = {**settings.DIRECTCALL, "SESSION_ACCOUNT": account.account_id}
    user = get_user_model().objects.create_user(username, first_name="Sam")
    browser = DjangoClient()
    browser.force_login(user)
    token = browser.post("/directcall/v1/session", {}, "application/json").json()["token"]
    mine = Registration.objects.get(account=account)
    other = Registration.objects.create(account=account, cuid="tutor_gil")
    return user, browser, token, mine, other


@contextlib.asynccontextmanager
async def _in_a_call(token: str, mine: Registration, other: Registration):
    """``(tab, gil, call_id)``: the user's tab, signed in with ``token``, in an answered call
    with ``other``; both sockets are closed at the end."""
    tab = Client(await Client.open(), mine.cuid, mine.pk)
    gil = await Client.signed_in(other)
    try:
        await tab.send(type="auth", token=token)
        await tab.next("ready")
        yield tab, gil, await answered_call(tab, gil)
    finally:
        await tab.close()
        await gil.close()


async def test_deactivating_a_django_user_signs_it_out_of_calls(make_account, settings):
    """A banned or closed user (``is_active = False``, as the admin's checkbox does): its
    sockets close (4011), its call ends ``revoked``, its tokens are refused; its
    registration stays, and once active again it signs in anew."""
    user, browser, token, mine, other = await sync_to_async(_session_user)(make_account, settings)

    def deactivate():
        user.is_active = False
        user.save()

    async with _in_a_call(token, mine, other) as (tab, gil, call_id):
        await _revoked(deactivate, tab)
        await _told_revoked_and_stays(gil, call_id)
    await _ended_revoked(call_id)
    assert tokens.verify(token) is None
    assert await sync_to_async(Registration.objects.filter(pk=mine.pk).exists)()

    def reactivate_and_sign_in():
        user.is_active = True
        user.save()
        browser.force_login(user)
        return browser.post("/directcall/v1/session", {}, "application/json").json()["token"]

    assert tokens.verify(await sync_to_async(reactivate_and_sign_in)()) is not None


async def test_saving_an_active_user_revokes_nothing_and_costs_no_query(make_account, settings):
    """A login saves the user (``last_login``) on every sign-in of the site: the receivers
    add no query to it, nor to any save of an active user."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    user, _browser, token, mine, _other = await sync_to_async(_session_user)(make_account, settings)

    def saves():
        with CaptureQueriesContext(connection) as login:
            user.save(update_fields=["last_login"])
        with CaptureQueriesContext(connection) as edit:
            user.first_name = "Samuel"
            user.save()
        return len(login), len(edit)

    async with Listener(revocation.registration_group(mine.pk)) as listener:
        assert await sync_to_async(saves)() == (1, 1)
        await listener.nothing()
    assert tokens.verify(token) is not None


async def test_deleting_a_django_user_deletes_its_registration_and_calls(make_account, settings):
    """The user's data goes with the user: its registration (name, picture) and its calls;
    its live socket closes and the other party is told ``revoked`` and stays."""
    user, _browser, token, mine, other = await sync_to_async(_session_user)(make_account, settings)
    async with _in_a_call(token, mine, other) as (tab, gil, call_id):
        await _revoked(user.delete, tab)
        await _told_revoked_and_stays(gil, call_id)
    assert not await sync_to_async(Registration.objects.filter(pk=mine.pk).exists)()
    assert not await sync_to_async(Call.objects.filter(pk=call_id).exists)()
    assert await sync_to_async(Registration.objects.filter(pk=other.pk).exists)()
    socket = Client(await Client.open(), mine.cuid, mine.pk)
    try:  # the token of a registration that is gone signs nobody in
        await socket.send(type="auth", token=token)
        assert (await socket.next("error"))["code"] == "ERR_INVALID_TOKEN"
    finally:
        await socket.close()


class _RowReadingAdapter(DefaultCallAdapter):
    """A cuid read from the database, as from a profile that is deleted with the user."""

    def get_cuid(self, user) -> str:
        return f"user_{get_user_model().objects.get(pk=user.pk).pk}"


async def test_a_deleted_users_cuid_is_found_before_the_deletion(make_account, settings):
    """An adapter whose ``get_cuid`` reads a row deleted with the user (a profile) still
    finds the registration: it is asked before the deletion, not after."""
    settings.DIRECTCALL = {
        **settings.DIRECTCALL,
        "ADAPTER": f"{__name__}._RowReadingAdapter",
    }
    user, _browser, _token, mine, other = await sync_to_async(_session_user)(make_account, settings)
    await sync_to_async(user.delete)()
    assert not await sync_to_async(Registration.objects.filter(pk=mine.pk).exists)()
    assert await sync_to_async(Registration.objects.filter(pk=other.pk).exists)()


def test_without_a_session_account_a_deleted_or_inactive_user_touches_nothing(
    make_account, settings
):
    """No SESSION_ACCOUNT: no registration is a Django user's; a page account's
    ``user_<pk>`` cuid is the page's word, not that user."""
    account, _key = make_account()
    settings.DIRECTCALL = {**settings.DIRECTCALL, "SESSION_ACCOUNT": None}
    user = get_user_model().objects.create_user("sam")
    namesake = Registration.objects.create(account=account, cuid=f"user_{user.pk}")
    user.is_active = False
    user.save()
    user.delete()
    assert Registration.objects.filter(pk=namesake.pk).exists()


async def test_saving_an_inactive_user_again_revokes_nothing_more(make_account, settings):
    user, _browser, _token, mine, _other = await sync_to_async(_session_user)(
        make_account, settings
    )

    def deactivate(**save):
        user.is_active = False
        user.save(**save)

    async with Listener(revocation.registration_group(mine.pk)) as listener:
        await sync_to_async(deactivate)(update_fields=["is_active"])
        assert (await listener.next())["reason"] == "user_inactive"
        await sync_to_async(deactivate)()
        await listener.nothing()


class _BrokenAdapter(DefaultCallAdapter):
    """A ``get_cuid`` whose query fails (on PostgreSQL, that aborts the transaction)."""

    def get_cuid(self, user) -> str:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT no_such_column FROM directcall_registration")
        return "never"


def test_a_failing_cuid_lookup_does_not_stop_a_users_deletion(make_account, settings, caplog):
    """The lookup runs in a savepoint: the user is deleted, the failure logged, and the
    registration kept for the site to delete."""
    account, _key = make_account(identity="verified")
    settings.DIRECTCALL = {
        **settings.DIRECTCALL,
        "SESSION_ACCOUNT": account.account_id,
        "ADAPTER": f"{__name__}._BrokenAdapter",
    }
    user = get_user_model().objects.create_user("sam")
    kept = Registration.objects.create(account=account, cuid=f"user_{user.pk}")
    user.delete()
    assert not get_user_model().objects.filter(username="sam").exists()
    assert Registration.objects.filter(pk=kept.pk).exists()
    assert "were not found" in caplog.text


def _proxy_of_the_user_model():
    """A proxy of the user model, as a site's admin edits its staff or students through,
    defined after the app registry is ready (in an isolated registry: no migration)."""
    with isolate_apps("django.contrib.auth"):

        class Staff(get_user_model()):
            class Meta:
                proxy = True
                app_label = "auth"

    return Staff


async def test_a_user_banned_or_deleted_through_a_proxy_model_is_seen(make_account, settings):
    """Django sends a proxy's signals with the proxy as sender (ticket 9318): a user made
    inactive through a proxy model is signed out of calls, and one deleted through it
    loses its registration."""
    staff_model = _proxy_of_the_user_model()
    user, _browser, token, mine, other = await sync_to_async(_session_user)(make_account, settings)

    def deactivate():
        staff = staff_model.objects.get(pk=user.pk)
        staff.is_active = False
        staff.save()

    async with _in_a_call(token, mine, other) as (tab, gil, call_id):
        await _revoked(deactivate, tab)
        await _told_revoked_and_stays(gil, call_id)
    assert tokens.verify(token) is None
    await sync_to_async(lambda: staff_model.objects.get(pk=user.pk).delete())()
    assert not await sync_to_async(Registration.objects.filter(pk=mine.pk).exists)()
    assert await sync_to_async(Registration.objects.filter(pk=other.pk).exists)()


def test_the_user_receivers_are_connected_to_the_user_model_and_its_proxies():
    """``ready()`` connects them to every user model loaded then; a proxy defined later
    gets them when it is prepared. Other models have none (no signal of theirs is slowed,
    no fast delete turned off)."""
    from django.db.models.signals import post_delete, pre_delete

    from directcall.receivers import user_models

    staff_model = _proxy_of_the_user_model()
    assert get_user_model() in user_models()
    for model in (get_user_model(), staff_model):
        assert pre_delete.has_listeners(model)
        assert post_delete.has_listeners(model)
    assert not pre_delete.has_listeners(get_user_model()._meta.get_field("groups").related_model)


def test_ready_connects_the_proxies_loaded_with_the_apps(monkeypatch):
    """The path of ``DirectCallConfig.ready()``: every user model the app registry holds
    then, proxies included, gets the receivers (a proxy defined in a site's models.py)."""
    from django.apps import apps
    from django.db.models.signals import post_delete, post_save, pre_delete, pre_save

    from directcall import receivers

    staff_model = _proxy_of_the_user_model()
    signals = (pre_save, post_save, pre_delete, post_delete)
    for signal, _function, uid in receivers.USER_RECEIVERS:
        signal.disconnect(sender=staff_model, dispatch_uid=uid)
    assert not any(signal.has_listeners(staff_model) for signal in signals)
    registered = apps.get_models()
    monkeypatch.setattr(apps, "get_models", lambda *args, **kwargs: [*registered, staff_model])
    receivers.connect_user_receivers()
    assert all(signal.has_listeners(staff_model) for signal in signals)
