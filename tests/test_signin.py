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


@pytest.mark.parametrize(("ttl", "interval", "grid"), [(30, 10, 1), (3, 1, 0.1), (0.6, 0.2, 0.02)])
def test_the_next_renewal_is_an_interval_later_on_a_grid(settings, ttl, interval, grid):
    settings.DIRECTCALL = {"PRESENCE_TTL": ttl}
    for now in (1000.0, 1000.001, 1000.5 * grid, 1234.567, 98765.4321):
        due = signin.next_renewal(now)
        assert now + interval <= due <= now + interval + grid + 1e-9
        assert due / grid == pytest.approx(round(due / grid), abs=1e-6)
    # Connections renewing within one grid step renew next at one moment.
    assert signin.next_renewal(1000.0 + grid * 0.1) == signin.next_renewal(1000.0 + grid * 0.9)
