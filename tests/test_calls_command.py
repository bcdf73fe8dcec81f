"""``manage.py directcall_calls prune``: ended call records older than --days go, with their
feedback; live calls and recent ones stay."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from directcall.models import Call, CallFeedback, CallStatus, Registration


def prune(*args: str) -> str:
    out = StringIO()
    call_command("directcall_calls", "prune", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def calls(people):
    """Calls between jane and sam: three ended 40 days ago (one rated), one ended
    yesterday, one answered 40 days ago and still live (a row the sweep has not ended)."""
    jane, sam = people["tutor_jane"], people["student_sam"]
    now = timezone.now()

    def call(status: str, days_ago: float) -> Call:
        made = Call.objects.create(
            account=jane.account, caller=jane, callee=sam, status=status, context="Maths"
        )
        Call.objects.filter(pk=made.pk).update(created_at=now - timedelta(days=days_ago))
        return made

    made = {
        "old_over": call(CallStatus.OVER, 40),
        "old_missed": call(CallStatus.MISSED, 40),
        "old_declined": call(CallStatus.DECLINED, 40),
        "recent": call(CallStatus.OVER, 1),
        "old_live": call(CallStatus.ANSWERED, 40),
    }
    CallFeedback.objects.create(
        call=made["old_over"], account=jane.account, registration=sam, role="callee", score=4
    )
    return made


def test_prune_deletes_old_ended_calls_only(calls):
    users = Registration.objects.count()
    out = prune("--days", "30", "--batch", "2")  # two batches and an empty one
    assert "Deleted 3 call record(s) older than 30 days (4 rows" in out
    left = set(Call.objects.values_list("pk", flat=True))
    assert left == {calls["recent"].pk, calls["old_live"].pk}
    assert not CallFeedback.objects.exists()
    assert Registration.objects.count() == users  # the users stay


def test_a_dry_run_deletes_nothing(calls):
    assert "Would delete 3 call record(s) older than 30 days." in prune("--days", "30", "--dry-run")
    assert Call.objects.count() == 5


def test_nothing_is_old_enough(calls):
    assert "Deleted 0 call record(s)" in prune("--days", "365")
    assert Call.objects.count() == 5


@pytest.mark.parametrize("args", [["--days", "0"], ["--days", "30", "--batch", "0"], []])
def test_bad_arguments_are_refused(db, args):
    with pytest.raises(CommandError):
        prune(*args)
