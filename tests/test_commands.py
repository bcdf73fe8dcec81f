"""Management commands: directcall_account, demo_setup, and no missing migrations."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from directcall.models import Account

KEY_LINE = re.compile(r"^[ \t]*apikey:\s+(\S+)$", re.MULTILINE)
ID_LINE = re.compile(r"^[ \t]*accountId:\s+(\S+)$", re.MULTILINE)


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def _printed(output: str) -> tuple[str, str]:
    ids = ID_LINE.findall(output)
    keys = KEY_LINE.findall(output)
    assert len(ids) == 1, output
    assert len(keys) == 1, output
    return ids[0], keys[0]


# -- directcall_account --------------------------------------------------------------------


def test_create_prints_a_working_key(db):
    output = run("directcall_account", "create", "--name", "X")
    account_id, key = _printed(output)
    account = Account.objects.get(account_id=account_id)
    assert account.name == "X"
    assert account.check_api_key(key)
    assert account.require_clevertap is True
    assert account.allowed_origins == ""
    assert account.is_active
    assert key.startswith(f"{account.key_prefix}.")
    assert "cannot be shown again" in output


def test_create_no_clevertap(db):
    account_id, _ = _printed(run("directcall_account", "create", "--name", "X", "--no-clevertap"))
    assert Account.objects.get(account_id=account_id).require_clevertap is False


def test_create_with_origins(db):
    output = run(
        "directcall_account",
        "create",
        "--name",
        "Shop",
        "--origin",
        "https://shop.example.com",
        "--origin",
        "http://localhost:8000/",
    )
    account_id, _ = _printed(output)
    account = Account.objects.get(account_id=account_id)
    assert account.origin_list == ["https://shop.example.com", "http://localhost:8000"]
    assert account.origin_allowed("https://shop.example.com")
    assert account.origin_allowed("http://localhost:8000")
    assert not account.origin_allowed("https://evil.example.com")


@pytest.mark.parametrize(
    "origin", ["https://shop.example.com/app", "shop.example.com", "ftp://shop.example.com"]
)
def test_create_validates_the_origins(db, origin):
    with pytest.raises(CommandError, match="Not an origin"):
        run("directcall_account", "create", "--name", "Shop", "--origin", origin)
    assert not Account.objects.exists()


def test_create_stores_origins_normalised(db):
    output = run(
        "directcall_account", "create", "--name", "Shop", "--origin", "HTTPS://Shop.Example.com/"
    )
    account_id, _ = _printed(output)
    assert Account.objects.get(account_id=account_id).allowed_origins == "https://shop.example.com"


def test_create_validates_the_name(db):
    with pytest.raises(CommandError, match="at most 100 characters"):
        run("directcall_account", "create", "--name", "x" * 101)
    with pytest.raises(CommandError, match="cannot be blank"):
        run("directcall_account", "create", "--name", "")
    assert not Account.objects.exists()


def test_create_requires_a_name(db):
    with pytest.raises(CommandError):
        call_command("directcall_account", "create", stdout=StringIO(), stderr=StringIO())


def test_rotate_prints_a_new_key(db):
    account_id, old = _printed(run("directcall_account", "create", "--name", "X"))
    same_id, new = _printed(run("directcall_account", "rotate", account_id))
    assert same_id == account_id
    assert new != old
    account = Account.objects.get(account_id=account_id)
    assert account.check_api_key(new)
    assert not account.check_api_key(old)


def test_revoke(db):
    account_id, key = _printed(run("directcall_account", "create", "--name", "X"))
    output = run("directcall_account", "revoke", account_id)
    assert account_id in output
    assert not KEY_LINE.search(output)
    account = Account.objects.get(account_id=account_id)
    assert account.key_is_revoked
    assert not account.check_api_key(key)
    # A rotation issues a working key again.
    _, new = _printed(run("directcall_account", "rotate", account_id))
    account.refresh_from_db()
    assert account.check_api_key(new)


def test_list_never_prints_secrets(db):
    created = [
        _printed(run("directcall_account", "create", "--name", name, *flags))
        for name, flags in (("Alpha", ()), ("Beta", ("--no-clevertap",)), ("Gamma", ()))
    ]
    revoked_id = created[2][0]
    run("directcall_account", "revoke", revoked_id)
    output = run("directcall_account", "list")
    lines = output.strip().splitlines()
    assert len(lines) == 3
    for account_id, key in created:
        prefix, _, secret = key.partition(".")
        assert account_id in output
        assert secret not in output
        assert key not in output
        if account_id != revoked_id:
            assert f"{prefix}.…" in output
    beta_line = next(line for line in lines if "Beta" in line)
    assert "no-clevertap" in beta_line
    gamma_line = next(line for line in lines if "Gamma" in line)
    assert "revoked" in gamma_line
    assert created[2][1].partition(".")[0] not in gamma_line


SECRET_LINE = re.compile(r"^[ \t]*signingSecret:\s+(\S+)$", re.MULTILINE)


def test_create_makes_a_verified_account_and_prints_its_signing_secret_once(db):
    output = run("directcall_account", "create", "--name", "X")
    account_id, _key = _printed(output)
    account = Account.objects.get(account_id=account_id)
    assert account.identity == "verified"
    (secret,) = SECRET_LINE.findall(output)
    assert secret == account.signing_secret and len(secret) >= 43
    assert "identity:  verified" in output
    assert secret not in run("directcall_account", "list")


def test_create_a_page_account(db):
    output = run("directcall_account", "create", "--name", "X", "--identity", "page")
    account_id, _key = _printed(output)
    assert Account.objects.get(account_id=account_id).identity == "page"
    assert "any cuid" in output  # says what page identities mean
    with pytest.raises(CommandError):
        run("directcall_account", "create", "--name", "X", "--identity", "trusted")


def test_rotate_secret_prints_a_new_secret(db):
    output = run("directcall_account", "create", "--name", "X")
    account_id, key = _printed(output)
    (old,) = SECRET_LINE.findall(output)
    output = run("directcall_account", "rotate-secret", account_id)
    (new,) = SECRET_LINE.findall(output)
    account = Account.objects.get(account_id=account_id)
    assert new != old and account.signing_secret == new
    assert not KEY_LINE.search(output) and account.check_api_key(key)  # the key is unchanged


def test_identity_sets_the_mode(db, settings):
    account_id, _ = _printed(run("directcall_account", "create", "--name", "X"))
    assert "page" in run("directcall_account", "identity", account_id, "page")
    assert Account.objects.get(account_id=account_id).identity == "page"
    run("directcall_account", "identity", account_id, "verified")
    assert Account.objects.get(account_id=account_id).identity == "verified"
    # The session account cannot take page identities.
    settings.DIRECTCALL = {**settings.DIRECTCALL, "SESSION_ACCOUNT": account_id}
    with pytest.raises(CommandError, match="SESSION_ACCOUNT"):
        run("directcall_account", "identity", account_id, "page")
    assert Account.objects.get(account_id=account_id).identity == "verified"


def test_list_shows_the_identity_mode(db):
    page_id, _ = _printed(run("directcall_account", "create", "--name", "P", "--identity", "page"))
    verified_id, _ = _printed(run("directcall_account", "create", "--name", "V"))
    lines = run("directcall_account", "list").splitlines()
    assert next(line for line in lines if page_id in line).split("\t")[2] == "page"
    assert next(line for line in lines if verified_id in line).split("\t")[2] == "verified"


def test_list_empty(db):
    assert run("directcall_account", "list") == ""


@pytest.mark.parametrize("action", ["rotate", "revoke", "rotate-secret"])
def test_unknown_account_id(db, action):
    with pytest.raises(CommandError, match="no_such_account"):
        run("directcall_account", action, "no_such_account")


def test_unknown_action(db):
    with pytest.raises(CommandError):
        call_command("directcall_account", "delete", stdout=StringIO(), stderr=StringIO())


# demo_setup (the demo site's command) is tested in tests/test_demo_site.py.


# -- migrations ----------------------------------------------------------------------------


def test_no_missing_migrations(db):
    out = StringIO()
    try:
        call_command("makemigrations", "--check", "--dry-run", stdout=out, stderr=StringIO())
    except SystemExit as exc:  # makemigrations --check exits 1 when a migration is missing
        pytest.fail(f"missing migrations (exit {exc.code}):\n{out.getvalue()}")
    assert "No changes detected" in out.getvalue()
