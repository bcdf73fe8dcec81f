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

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from django.utils import timezone

from directcall.models import FINAL_STATUSES, Call


class Command(BaseCommand):
    """Delete ended call records older than --days."""

    help = "prune: delete the records of ended calls created more than --days days ago."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["prune"])
        parser.add_argument(
            "--days",
            type=float,
            required=True,
            help="Delete ended calls created more than this many days ago.",
        )
        parser.add_argument(
            "--batch",
            type=int,
            default=1000,
            help="Calls deleted per transaction (default 1000).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count what would be deleted; delete nothing.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        days, batch = options["days"], options["batch"]
        if days <= 0 or batch <= 0:
            raise CommandError("--days and --batch must be greater than zero.")
        cutoff = timezone.now() - timedelta(days=days)
        old = Call.objects.filter(created_at__lt=cutoff, status__in=FINAL_STATUSES)
        if options["dry_run"]:
            self.stdout.write(
                f"Would delete {old.count()} call record(s) older than {days:g} days."
            )
            return
        calls = rows = 0
        while True:
            with transaction.atomic():
                pks = list(old.order_by("created_at").values_list("pk", flat=True)[:batch])
                if not pks:
                    break
                deleted, by_model = Call.objects.filter(pk__in=pks).delete()
            calls += by_model.get(Call._meta.label, 0)
            rows += deleted
        self.stdout.write(
            f"Deleted {calls} call record(s) older than {days:g} days ({rows} rows with their "
            "feedback)."
        )
