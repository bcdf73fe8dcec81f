"""Signing a connection in (directcall.signin): what a signed-in connection keeps."""

from __future__ import annotations

import pytest

from directcall import signin
from directcall.models import Account

pytestmark = pytest.mark.django_db


def test_connections_of_an_unchanged_account_share_one_instance(make_account):
    account, _key = make_account()
    first = signin.shared_account(Account.objects.get(pk=account.pk))
    again = signin.shared_account(Account.objects.get(pk=account.pk))
    assert again is first  # read again, the same: the kept one
    Account.objects.filter(pk=account.pk).update(name="Renamed")
    changed = signin.shared_account(Account.objects.get(pk=account.pk))
    assert changed is not first and changed.name == "Renamed"  # never older than its read
    assert signin.shared_account(Account.objects.get(pk=account.pk)) is changed
