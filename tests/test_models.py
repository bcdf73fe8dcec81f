"""Accounts (API keys, origins, effective settings), registrations and the call log."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.test import override_settings
from django.utils import timezone

from directcall.conf import DEFAULTS
from directcall.models import (
    API_KEY_PREFIX_LENGTH,
    LIVE_STATUSES,
    RINGING_STATUSES,
    Account,
    Call,
    CallStatus,
    EndReason,
    Registration,
    hash_api_key_secret,
)

# -- API key -------------------------------------------------------------------------------


def _raw_rows(account: Account) -> list[dict]:
    """The account's row twice: through the ORM's values() and through plain SQL."""
    orm_row = Account.objects.filter(pk=account.pk).values().get()
    table = connection.ops.quote_name(Account._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table} WHERE id = %s", [account.pk])  # noqa: S608
        columns = [col[0] for col in cursor.description]
        sql_row = dict(zip(columns, cursor.fetchone(), strict=True))
    return [orm_row, sql_row]


def test_new_key_is_prefix_dot_secret(make_account):
    account, key = make_account()
    prefix, dot, secret = key.partition(".")
    assert dot == "."
    assert len(prefix) == API_KEY_PREFIX_LENGTH == 12
    assert re.fullmatch(r"[0-9a-f]+", prefix)
    # token_urlsafe(32): 43 URL-safe characters, no dot (so the split is unambiguous).
    assert len(secret) >= 40
    assert "." not in secret
    assert account.key_prefix == prefix
    assert account.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert account.key_hash == hash_api_key_secret(secret)


def test_each_new_key_is_different(make_account):
    _, key1 = make_account(name="One")
    _, key2 = make_account(name="Two")
    assert key1 != key2
    assert key1.split(".")[0] != key2.split(".")[0]
    assert key1.split(".")[1] != key2.split(".")[1]


def test_key_and_secret_are_in_no_column(make_account):
    account, key = make_account(name="Stored")
    _prefix, _, secret = key.partition(".")
    for row in _raw_rows(account):
        assert row, "no row read"
        for column, value in row.items():
            text = str(value)
            assert key not in text, f"full key stored in {column}"
            assert secret not in text, f"key secret stored in {column}"
        assert row["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()


def test_key_not_stored_after_rotation(make_account):
    account, _ = make_account()
    key = account.rotate_api_key()
    secret = key.partition(".")[2]
    for row in _raw_rows(account):
        assert all(secret not in str(value) for value in row.values())
        assert row["key_hash"] == hash_api_key_secret(secret)


def test_check_api_key_accepts_the_right_key(make_account):
    account, key = make_account()
    assert account.check_api_key(key) is True
    # The same on a fresh copy from the database (nothing is kept on the instance).
    assert Account.objects.get(pk=account.pk).check_api_key(key) is True


def test_check_api_key_refuses_wrong_keys(make_account):
    account, key = make_account()
    prefix, _, secret = key.partition(".")
    other_secret = ("A" if secret[0] != "A" else "B") + secret[1:]
    other_prefix = ("0" if prefix[0] != "0" else "1") + prefix[1:]
    refused = [
        f"{prefix}.{other_secret}",  # wrong secret
        f"{other_prefix}.{secret}",  # wrong prefix
        f"{prefix}{secret}",  # no dot
        secret,  # no dot, secret alone
        prefix,  # prefix alone
        f"{prefix}.",  # empty secret
        f".{secret}",  # empty prefix
        "",  # empty
        f"{key}x",  # trailing garbage
        f" {key}",  # leading space
        key.upper(),  # keys are case-sensitive
    ]
    for candidate in refused:
        assert account.check_api_key(candidate) is False, candidate


def test_check_api_key_refuses_non_ascii_without_raising(make_account):
    account, key = make_account()
    prefix, _, secret = key.partition(".")
    for candidate in (f"{prefix}.{secret}é", f"é{prefix}.{secret}", "ключ.секрет"):
        assert account.check_api_key(candidate) is False


def test_account_without_key_accepts_nothing(db):
    account = Account(name="Keyless")
    assert account.check_api_key("") is False
    assert account.check_api_key(".") is False


def test_accounts_saved_without_a_key_get_an_unknown_one(db):
    first = Account.objects.create(name="First")
    second = Account.objects.create(name="Second")  # no IntegrityError on the prefix
    third = Account(name="Third")
    third.save()
    prefixes = {a.key_prefix for a in (first, second, third)}
    assert len(prefixes) == 3
    for account in (first, second, third):
        stored = Account.objects.get(pk=account.pk)
        assert re.fullmatch(rf"[0-9a-f]{{{API_KEY_PREFIX_LENGTH}}}", stored.key_prefix)
        assert len(stored.key_hash) == 64
        for candidate in ("", ".", f"{stored.key_prefix}.", f"{stored.key_prefix}.x"):
            assert stored.check_api_key(candidate) is False
    # A rotation makes it usable.
    key = first.rotate_api_key()
    assert Account.objects.get(pk=first.pk).check_api_key(key)


def test_keyless_save_with_update_fields_stores_the_key(make_account):
    account, _ = make_account()
    # A stale copy whose key was blanked in memory only: saving must still write a key.
    Account.objects.filter(pk=account.pk).update(key_hash="", key_prefix="")
    stale = Account.objects.get(pk=account.pk)
    stale.name = "Renamed"
    stale.save(update_fields=["name"])
    stored = Account.objects.get(pk=account.pk)
    assert stored.name == "Renamed"
    assert stored.key_prefix == stale.key_prefix != ""
    assert stored.key_hash == stale.key_hash != ""


def test_saving_an_account_keeps_its_key(make_account):
    account, key = make_account()
    account.name = "Renamed"
    account.save()
    account.full_clean()
    account.save()
    assert Account.objects.get(pk=account.pk).check_api_key(key)


def test_rotation_replaces_the_key(make_account):
    account, old = make_account()
    new = account.rotate_api_key()
    assert new != old
    stored = Account.objects.get(pk=account.pk)
    assert stored.check_api_key(old) is False
    assert stored.check_api_key(new) is True
    assert account.check_api_key(old) is False
    assert account.check_api_key(new) is True


def test_revocation_lasts_until_rotation(make_account):
    account, key = make_account()
    account.revoke_api_key()
    stored = Account.objects.get(pk=account.pk)
    assert stored.key_is_revoked
    assert stored.key_revoked_at is not None
    assert stored.check_api_key(key) is False
    assert account.check_api_key(key) is False

    new = stored.rotate_api_key()
    again = Account.objects.get(pk=account.pk)
    assert not again.key_is_revoked
    assert again.check_api_key(new) is True
    assert again.check_api_key(key) is False


# -- origins -------------------------------------------------------------------------------


def test_empty_origin_list_allows_everything(db):
    account = Account(name="Open", allowed_origins="")
    assert account.origin_list == []
    for origin in ("https://anything.example", "http://localhost:8000", None, ""):
        assert account.origin_allowed(origin) is True


def test_origin_list_is_normalised(db):
    account = Account(
        name="Shop",
        allowed_origins="https://Shop.Example.com/\n  http://localhost:8000  \r\n\nHTTPS://B.EXAMPLE",
    )
    assert account.origin_list == [
        "https://shop.example.com",
        "http://localhost:8000",
        "https://b.example",
    ]
    for origin in (
        "https://shop.example.com",
        "https://shop.example.com/",
        "HTTPS://SHOP.EXAMPLE.COM",
        "http://localhost:8000",
        "https://b.example/",
    ):
        assert account.origin_allowed(origin) is True, origin


def test_other_or_missing_origin_refused_when_a_list_is_set(db):
    account = Account(name="Shop", allowed_origins="https://shop.example.com")
    for origin in (
        "https://evil.example.com",
        "http://shop.example.com",  # other scheme
        "https://shop.example.com:8443",  # other port
        "https://shop.example.com.evil.example",
        "null",
        "",
        None,
    ):
        assert account.origin_allowed(origin) is False, origin


@pytest.mark.parametrize(
    "origins",
    [
        "https://shop.example.com/path",
        "https://shop.example.com/?q=1",
        "https://shop.example.com#top",
        "ftp://shop.example.com",
        "shop.example.com",
        "//shop.example.com",
        "https://*.example.com",
        "https://user:pw@shop.example.com",
        "https://shop.example.com:99999",
        "null",
        "https://ok.example.com\nhttps://bad.example.com/x",
    ],
)
def test_clean_refuses_what_is_not_an_origin(db, origins):
    account = Account(name="Shop", allowed_origins=origins)
    with pytest.raises(ValidationError) as excinfo:
        account.full_clean()
    assert set(excinfo.value.message_dict) == {"allowed_origins"}


def test_clean_accepts_and_normalises_origins(db):
    account = Account(
        name="Shop",
        allowed_origins=(
            "https://Shop.Example.com/\n  http://localhost:8000  \r\n\n"
            "http://127.0.0.1:8000/\nhttp://[::1]:8000 https://b.example"
        ),
    )
    account.full_clean()
    assert account.allowed_origins == (
        "https://shop.example.com\nhttp://localhost:8000\nhttp://127.0.0.1:8000\n"
        "http://[::1]:8000\nhttps://b.example"
    )
    assert account.origin_allowed("https://shop.example.com")
    empty = Account(name="Open", allowed_origins="  \n ")
    empty.full_clean()
    assert empty.allowed_origins == ""


# -- effective settings --------------------------------------------------------------------


def test_effective_timing_defaults(db):
    account = Account(name="Plain")
    with override_settings(DIRECTCALL={}):
        assert account.effective_ring_timeout() == DEFAULTS["RING_TIMEOUT"] == 30
        assert account.effective_max_call_duration() is None


def test_effective_timing_follows_settings(db):
    account = Account(name="Plain")
    with override_settings(DIRECTCALL={"RING_TIMEOUT": 45, "MAX_CALL_DURATION": 600}):
        assert account.effective_ring_timeout() == 45
        assert account.effective_max_call_duration() == 600
    # The settings cache is cleared again when the override ends.
    with override_settings(DIRECTCALL={"RING_TIMEOUT": 12}):
        assert account.effective_ring_timeout() == 12
        assert account.effective_max_call_duration() is None


def test_account_overrides_win(db):
    account = Account(name="Tuned", ring_timeout=20, max_call_duration=120)
    with override_settings(DIRECTCALL={"RING_TIMEOUT": 45, "MAX_CALL_DURATION": 600}):
        assert account.effective_ring_timeout() == 20
        assert account.effective_max_call_duration() == 120
    with override_settings(DIRECTCALL={}):
        assert account.effective_ring_timeout() == 20
        assert account.effective_max_call_duration() == 120


@pytest.mark.parametrize("field", ["ring_timeout", "max_call_duration"])
def test_zero_override_is_refused(db, field):
    account = Account(name="Tuned", **{field: 0})
    with pytest.raises(ValidationError) as excinfo:
        account.full_clean()
    assert set(excinfo.value.message_dict) == {field}
    Account(name="Tuned", **{field: 1}).full_clean()
    Account(name="Tuned", **{field: None}).full_clean()


def test_override_is_used_whenever_it_is_not_null(db):
    # Null means "use the setting"; any other stored value is the account's own, even one
    # that bypassed validation.
    account = Account(name="Tuned", ring_timeout=0, max_call_duration=0)
    with override_settings(DIRECTCALL={"RING_TIMEOUT": 45, "MAX_CALL_DURATION": 600}):
        assert account.effective_ring_timeout() == 0
        assert account.effective_max_call_duration() == 0


def test_effective_ring_timeout_is_an_int(db):
    account = Account(name="Plain")
    with override_settings(DIRECTCALL={"RING_TIMEOUT": 40}):
        value = account.effective_ring_timeout()
    assert value == 40
    assert isinstance(value, int)


# -- registrations -------------------------------------------------------------------------


def test_cuids_are_case_sensitive(make_account):
    account, _ = make_account()
    upper = Registration.objects.create(account=account, cuid="Tutor_1")
    lower = Registration.objects.create(account=account, cuid="tutor_1")
    assert upper.pk != lower.pk
    assert Registration.objects.filter(account=account).count() == 2
    assert Registration.objects.get(account=account, cuid="Tutor_1") == upper
    assert Registration.objects.get(account=account, cuid="tutor_1") == lower


def test_same_cuid_under_two_accounts(make_account):
    first, _ = make_account(name="First")
    second, _ = make_account(name="Second")
    a = Registration.objects.create(account=first, cuid="tutor_1")
    b = Registration.objects.create(account=second, cuid="tutor_1")
    assert a.pk != b.pk
    assert list(first.registrations.all()) == [a]
    assert list(second.registrations.all()) == [b]


def test_duplicate_cuid_under_one_account_refused(make_account):
    account, _ = make_account()
    Registration.objects.create(account=account, cuid="tutor_1")
    with pytest.raises(IntegrityError), transaction.atomic():
        Registration.objects.create(account=account, cuid="tutor_1", name="Again")
    assert Registration.objects.filter(account=account).count() == 1


def test_display_name(make_account):
    account, _ = make_account()
    assert Registration(account=account, cuid="tutor_1").display_name == "tutor_1"
    assert Registration(account=account, cuid="tutor_1", name="Jane").display_name == "Jane"


# -- calls ---------------------------------------------------------------------------------


@pytest.fixture
def people(make_account):
    account, _ = make_account()
    names = ("alice_1", "bobby_2", "carol_3", "david_4")
    return account, {
        cuid: Registration.objects.create(account=account, cuid=cuid) for cuid in names
    }


def _call(account, caller, callee, status, *, answered=None, talk=None, **fields) -> Call:
    now = timezone.now()
    answered_at = now - timedelta(seconds=answered) if answered is not None else None
    ended_at = answered_at + timedelta(seconds=talk) if talk is not None else None
    return Call.objects.create(
        account=account,
        caller=caller,
        callee=callee,
        context="ctx",
        status=status,
        answered_at=answered_at,
        ended_at=ended_at,
        **fields,
    )


@pytest.fixture
def calls(people):
    account, r = people
    return {
        "initiated": _call(account, r["alice_1"], r["bobby_2"], CallStatus.INITIATED),
        "ringing": _call(account, r["bobby_2"], r["carol_3"], CallStatus.RINGING),
        "answered": _call(account, r["carol_3"], r["alice_1"], CallStatus.ANSWERED, answered=10),
        "over": _call(account, r["alice_1"], r["carol_3"], CallStatus.OVER, answered=100, talk=65),
        "missed": _call(account, r["bobby_2"], r["alice_1"], CallStatus.MISSED),
        "declined": _call(account, r["carol_3"], r["bobby_2"], CallStatus.DECLINED),
    }


def _ids(queryset) -> set:
    return set(queryset.values_list("pk", flat=True))


def test_live_answered_ended(calls):
    assert _ids(Call.objects.live()) == {
        calls["initiated"].pk,
        calls["ringing"].pk,
        calls["answered"].pk,
    }
    assert _ids(Call.objects.answered()) == {calls["answered"].pk}
    assert _ids(Call.objects.ended()) == {
        calls["over"].pk,
        calls["missed"].pk,
        calls["declined"].pk,
    }


def test_ringing_statuses_are_the_live_ones_before_an_answer():
    assert set(RINGING_STATUSES) == set(LIVE_STATUSES) - {CallStatus.ANSWERED}


def test_every_status_is_live_or_ended(people):
    account, r = people
    for status in CallStatus:
        _call(account, r["alice_1"], r["bobby_2"], status)
    live = _ids(Call.objects.live())
    ended = _ids(Call.objects.ended())
    assert not live & ended
    assert live | ended == _ids(Call.objects.all())
    assert len(ended) == len(CallStatus) - 3


def test_involving(people, calls):
    _, r = people
    alice = {calls[k].pk for k in ("initiated", "answered", "over", "missed")}
    assert _ids(Call.objects.involving(r["alice_1"])) == alice
    assert _ids(Call.objects.involving(r["david_4"])) == set()
    # Chained with the status querysets.
    assert _ids(Call.objects.live().involving(r["bobby_2"])) == {
        calls["initiated"].pk,
        calls["ringing"].pk,
    }


def test_involving_stays_in_the_account(people, make_account):
    account, r = people
    other, _ = make_account(name="Other")
    x = Registration.objects.create(account=other, cuid="alice_1")  # same cuid, other account
    y = Registration.objects.create(account=other, cuid="erin_55")
    _call(other, y, x, CallStatus.MISSED)
    ours = _call(account, r["alice_1"], r["bobby_2"], CallStatus.MISSED)
    assert _ids(Call.objects.involving(r["alice_1"])) == {ours.pk}


def test_with_talk_time_and_duration(calls):
    annotated = {c.pk: c.talk_time for c in Call.objects.with_talk_time()}
    assert annotated[calls["over"].pk] == timedelta(seconds=65)
    for key in ("initiated", "ringing", "answered", "missed", "declined"):
        assert annotated[calls[key].pk] is None, key
    assert calls["over"].duration == timedelta(seconds=65)
    for key in ("initiated", "ringing", "answered", "missed", "declined"):
        assert calls[key].duration is None, key
    # Talk time can be filtered on in the database.
    long_calls = Call.objects.with_talk_time().filter(talk_time__gte=timedelta(seconds=60))
    assert _ids(long_calls) == {calls["over"].pk}
    assert _ids(Call.objects.with_talk_time().filter(talk_time__gt=timedelta(minutes=2))) == set()


def test_call_defaults_and_str(people):
    account, r = people
    call = Call.objects.create(account=account, caller=r["alice_1"], callee=r["bobby_2"])
    assert call.status == CallStatus.INITIATED
    assert call.status in LIVE_STATUSES
    assert call.duration is None
    assert str(call) == "alice_1 → bobby_2 (initiated)"
    later = _call(
        account,
        r["alice_1"],
        r["bobby_2"],
        CallStatus.MISSED,
        created_at=call.created_at + timedelta(seconds=1),
    )
    assert list(Call.objects.all()) == [later, call]  # newest first


def test_end_reasons_are_the_documented_hangup_reasons():
    protocol = (Path(__file__).resolve().parent.parent / "docs" / "protocol.md").read_text()
    section = protocol.split("### Hangup reasons", 1)[1].split("\n## ", 1)[0]
    assert set(re.findall(r"`([a-z_]+)`", section)) == set(EndReason.values)


# -- identity modes (issue 13) -------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_migration_keeps_existing_accounts_page_and_the_session_account_verified(settings):
    """Existing deployments keep working (page); the session account becomes verified."""
    from django.db.migrations.executor import MigrationExecutor

    settings.DIRECTCALL = {**settings.DIRECTCALL, "SESSION_ACCOUNT": "sessions_1"}
    before = [("directcall", "0002_remove_end_reason_server_restart")]
    after = [("directcall", "0003_identity_and_revocation")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    try:
        old_apps = executor.loader.project_state(before).apps
        OldAccount = old_apps.get_model("directcall", "Account")
        for account_id in ("keys_1", "sessions_1"):
            OldAccount.objects.create(
                account_id=account_id, name=account_id, key_prefix=account_id, key_hash="x"
            )
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(after)
        rows = dict(Account.objects.values_list("account_id", "identity"))
        assert rows == {"keys_1": "page", "sessions_1": "verified"}
        assert set(Account.objects.values_list("signing_secret", flat=True)) == {""}
        # The model as of that migration: later migrations add columns the table lacks yet.
        NewAccount = executor.loader.project_state(after).apps.get_model("directcall", "Account")
        assert NewAccount.objects.create(name="New", key_prefix="new_1").identity == "verified"
    finally:
        # Forward first: the ORM's cascade reaches tables of later migrations (blocks).
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes("directcall"))
        Account.objects.all().delete()


def test_signing_secret_rotation(make_account):
    account, _key = make_account()
    old = account.signing_secret
    new = account.rotate_signing_secret()
    account.refresh_from_db()
    assert account.signing_secret == new != old
    assert account.signing_secret_created_at is not None


def test_an_existing_account_saved_keeps_an_empty_secret_empty(make_account):
    # Only new accounts get one silently; a migrated account gets one by rotation.
    account, _key = make_account()
    Account.objects.filter(pk=account.pk).update(signing_secret="")
    account.refresh_from_db()
    account.name = "Renamed"
    account.save()
    account.refresh_from_db()
    assert account.signing_secret == ""
