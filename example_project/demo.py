"""Everything the demo is made of: its two accounts, the key file, its people and its admin.

``manage.py demo_setup`` (run by ``scripts/demo.sh``) calls :func:`set_up`; the pages in
``views.py`` read the ids, people and key file from here. Nothing here is for a real site.

Two accounts, so that the key in the ``/call/`` page cannot sign anyone in as a
logged-in user:

- ``SESSION_ACCOUNT_ID`` — ``DIRECTCALL["SESSION_ACCOUNT"]``: the logged-in demo people
  of ``/people/`` get server-minted sessions under it. It takes verified identities only,
  and its API key is revoked: no key signs anybody in under it.
- ``KEY_ACCOUNT_ID`` — the API-key mode of ``/call/`` (the original SDK's contract, page
  identities): its key is written into that page, so anyone who reads the page may sign
  in as any cuid of this account, and of this account only.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from directcall.models import Account, Identity

SESSION_ACCOUNT_ID = "demo_account"
KEY_ACCOUNT_ID = "demo_key_account"
ADMIN_USERNAME = "demo_admin"


@dataclass(frozen=True)
class DemoPerson:
    """One demo user: a username, a name and a role that the demo adapter's can_call reads."""

    username: str
    first_name: str
    last_name: str
    role: str

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


DEMO_PEOPLE = [
    DemoPerson("sam", "Sam", "Student", "student"),
    DemoPerson("jane", "Jane", "Tutor", "tutor"),
    DemoPerson("sue", "Sue", "Shopper", "shopper"),
    DemoPerson("gil", "Gil", "Grocer", "grocer"),
]
ROLE_OF = {person.username: person.role for person in DEMO_PEOPLE}

#: The cuids the ``/call/`` page offers. They live in the key account only; they are not
#: the people of ``/people/`` (whose cuids are ``user_<pk>`` in the session account).
KEY_MODE_USERS = [
    {"cuid": "student_sam", "name": "Sam (student)"},
    {"cuid": "tutor_jane", "name": "Jane (tutor)"},
    {"cuid": "shopper_sue", "name": "Sue (shopper)"},
    {"cuid": "grocer_gil", "name": "Gil (grocer)"},
]


@dataclass(frozen=True)
class DemoCredentials:
    """What ``set_up`` made: the key of the ``/call/`` page and the admin's password."""

    key_account: Account
    api_key: str
    session_account: Account
    people: list[Any]
    admin_username: str
    admin_password: str


def key_file() -> Path:
    """Where the key account's API key is left for the ``/call/`` page (demo only)."""
    return Path(getattr(settings, "DEMO_CREDENTIALS_FILE", settings.BASE_DIR / ".demo-credentials"))


def read_key() -> str:
    """The key of the ``/call/`` page, or "" before the demo has been set up."""
    path = key_file()
    return path.read_text().strip() if path.exists() else ""


def _account(account_id: str, name: str, identity: Identity) -> Account:
    account = Account.objects.filter(account_id=account_id).first()
    if account is None:
        account = Account(
            account_id=account_id, name=name, identity=identity, require_clevertap=False
        )
        account.save()  # with a key and a signing secret that nobody is shown
    elif account.identity != identity:
        # A demo database made before identity modes existed.
        account.identity = identity
        account.save(update_fields=["identity"])
    return account


def ensure_session_account() -> Account:
    """The account of the logged-in people: verified identities, its API key revoked."""
    account = _account(SESSION_ACCOUNT_ID, "Demo (logged-in users)", Identity.VERIFIED)
    # Demos before the key account existed printed this account's key: a new key that
    # nobody sees, revoked, so that no copy of an old key signs anyone in here.
    account.rotate_api_key()
    account.revoke_api_key()
    return account


def ensure_key_account() -> tuple[Account, str]:
    """The ``/call/`` page's account (page identities), with a fresh API key."""
    account = _account(KEY_ACCOUNT_ID, "Demo (API-key mode)", Identity.PAGE)
    return account, account.rotate_api_key()


def ensure_demo_people() -> list[Any]:
    """Create (or refresh) the demo users; they log in only through the demo's log-in-as page."""
    users = []
    for person in DEMO_PEOPLE:
        user, _created = get_user_model().objects.update_or_create(
            username=person.username,
            defaults={"first_name": person.first_name, "last_name": person.last_name},
        )
        if user.has_usable_password():
            user.set_unusable_password()
            user.save(update_fields=["password"])
        users.append(user)
    return users


def demo_users() -> list[Any]:
    """The demo users that exist, in the order of ``DEMO_PEOPLE``."""
    by_name = {
        user.username: user for user in get_user_model().objects.filter(username__in=list(ROLE_OF))
    }
    return [by_name[p.username] for p in DEMO_PEOPLE if p.username in by_name]


def ensure_demo_admin() -> tuple[str, str]:
    """Create (or re-password) the demo superuser; return its username and new password.

    A random password at every start, like the key: the demo never ships a known login.
    """
    password = secrets.token_urlsafe(12)
    user, _created = get_user_model().objects.get_or_create(
        username=ADMIN_USERNAME, defaults={"first_name": "Demo", "last_name": "Admin"}
    )
    user.is_staff = user.is_superuser = user.is_active = True
    user.set_password(password)
    user.save()
    return ADMIN_USERNAME, password


def set_up() -> DemoCredentials:
    """Make everything the demo needs and write the ``/call/`` page's key to the key file."""
    with transaction.atomic():
        session_account = ensure_session_account()
        key_account, api_key = ensure_key_account()
        people = ensure_demo_people()
        admin_username, admin_password = ensure_demo_admin()
    path = key_file()
    # Created owner-only (never readable by others, even for a moment), then kept so.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(api_key + "\n")
    path.chmod(0o600)
    return DemoCredentials(
        key_account=key_account,
        api_key=api_key,
        session_account=session_account,
        people=people,
        admin_username=admin_username,
        admin_password=admin_password,
    )
