"""``manage.py directcall_calls prune --days N``: keep call records for N days only.

Call records say who called whom, when, for how long, and how it went (the quality
summary, the parties' ratings): personal data that a site usually keeps no longer than it
needs. Run this from cron (daily) with the site's retention period: it deletes the calls
created more than N days ago that have ended, with their feedback, in batches of
``--batch`` rows, one transaction each, so that a first run over years of records neither
locks the table for long nor holds them all in memory. A live call is never deleted,
however old. Registrations (the users, their blocks) are kept.
"""

from __future__ import annotations

from datetime import datetime

from django.db import transaction

from directcall.management.prune import PruneCommand
from directcall.models import FINAL_STATUSES, Call


class Command(PruneCommand):
    """Delete ended call records older than --days."""

    help = "prune: delete the records of ended calls created more than --days days ago."
    days_help = "Delete ended calls created more than this many days ago."
    batch_help = "Calls deleted per transaction (default 1000)."

    def prune(self, cutoff: datetime, days: str, batch: int, dry_run: bool) -> str:
        """Delete the ended calls created before ``cutoff``, with their feedback."""
        old = Call.objects.filter(created_at__lt=cutoff, status__in=FINAL_STATUSES)
        if dry_run:
            return f"Would delete {old.count()} call record(s) older than {days} days."
        calls = rows = 0
        while True:
            with transaction.atomic():
                pks = list(old.order_by("created_at").values_list("pk", flat=True)[:batch])
                if not pks:
                    break
                deleted, by_model = Call.objects.filter(pk__in=pks).delete()
            calls += by_model.get(Call._meta.label, 0)
            rows += deleted
        return (
            f"Deleted {calls} call record(s) older than {days} days ({rows} rows with their "
            "feedback)."
        )
