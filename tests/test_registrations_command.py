"""``manage.py directcall_registrations prune``: registrations not seen for --days go, with
their calls; online ones, ones in a live call or a block, and recent ones stay."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from directcall import presence
from directcall.models import Block, Call, CallStatus, Registration

from .wsclient import make_registration


def prune(*args: str) -> str:
    out = StringIO()
    call_command("directcall_registrations", "prune", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def users(people):
    """jane (seen yesterday) and, unseen for 40 days: sam (an ended call with jane), gil
    (blocked jane), bea (blocked by jane), lou and kim (in a live call, lou calling), ona
    (online), zed (made after ona: a batch of one meets ona first) and mallory in another
    account."""
    jane = people["tutor_jane"]
    account = jane.account
    made = {
        "jane": jane,
        "sam": people["student_sam"],
        "gil": people["grocer_gil"],
        "mallory": people["mallory_m"],
    }
    for name in ("bea", "lou", "kim", "ona", "zed"):
        made[name] = make_registration(account, f"user_{name}", name.title())
    now = timezone.now()
    for name, registration in made.items():
        days = 1 if name == "jane" else 40
        Registration.objects.filter(pk=registration.pk).update(
            last_seen_at=now - timedelta(days=days)
        )
    Block.objects.create(account=account, blocker=made["gil"], blocked=jane)
    Block.objects.create(account=account, blocker=jane, blocked=made["bea"])
    made["ended"] = Call.objects.create(
        account=account, caller=made["sam"], callee=jane, status=CallStatus.OVER
    )
    made["live"] = Call.objects.create(
        account=account, caller=made["lou"], callee=made["kim"], status=CallStatus.ANSWERED
    )
    ona = made["ona"]
    holder = presence.Holder(f"chan-{ona.pk}", f"dev-{ona.pk}", "conn")
    assert presence.claim(account.pk, ona.cuid, holder)[0] is presence.Claim.CLAIMED
    return made


KEPT = {"jane", "gil", "bea", "lou", "kim", "ona"}


def _left(users) -> set[str]:
    pks = set(Registration.objects.values_list("pk", flat=True))
    return {name for name, row in users.items() if isinstance(row, Registration) and row.pk in pks}


@pytest.mark.django_db
def test_prune_deletes_unseen_registrations_with_their_calls(users):
    assert prune("--days", "30") == (
        "Deleted 3 registration(s) not seen for 30 days, with 1 call record(s).\n"
    )
    # sam, zed and mallory go (sam's call with jane too); the blocks, the live call, the
    # online user and the recent one stay.
    assert _left(users) == KEPT
    assert not Call.objects.filter(pk=users["ended"].pk).exists()
    assert Call.objects.filter(pk=users["live"].pk).exists()
    assert Block.objects.count() == 2
    assert prune("--days", "30") == (
        "Deleted 0 registration(s) not seen for 30 days, with 0 call record(s).\n"
    )


@pytest.mark.django_db
def test_prune_in_small_batches_passes_over_the_ones_kept(users):
    """Batches of one: the kept ones at the front do not stop the ones behind them."""
    prune("--days", "30", "--batch", "1")
    assert _left(users) == KEPT


@pytest.mark.django_db
def test_a_registration_seen_within_the_period_stays(users):
    assert prune("--days", "50").startswith("Deleted 0 registration(s)")
    assert len(_left(users)) == 9


@pytest.mark.django_db
def test_dry_run_counts_and_deletes_nothing(users):
    assert prune("--days", "30", "--dry-run") == (
        "Would delete 3 registration(s) not seen for 30 days.\n"
    )
    assert len(_left(users)) == 9


@pytest.mark.django_db
@pytest.mark.parametrize(
    "args", [["--days", "0"], ["--days", "-1"], ["--days", "30", "--batch", "0"]]
)
def test_prune_refuses_bad_arguments(args):
    with pytest.raises(CommandError):
        prune(*args)


@pytest.mark.django_db
def test_prune_refuses_a_process_local_cache(users, settings):
    """It would see nobody online, and delete the online ones."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    with pytest.raises(CommandError, match="process-local"):
        prune("--days", "30")
    assert len(_left(users)) == 9
