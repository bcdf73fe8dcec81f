"""The shape of directcall's retention commands: ``prune --days N [--batch B] [--dry-run]``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone


class PruneCommand(BaseCommand):
    """Deletes what is older than ``--days``, ``--batch`` rows per transaction.

    A subclass names what it deletes (``days_help``, ``batch_help``) and implements
    :meth:`prune`.
    """

    days_help: str
    batch_help: str

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("action", choices=["prune"])
        parser.add_argument("--days", type=float, required=True, help=self.days_help)
        parser.add_argument("--batch", type=int, default=1000, help=self.batch_help)
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
        self.stdout.write(self.prune(cutoff, f"{days:g}", batch, options["dry_run"]))

    def prune(self, cutoff: datetime, days: str, batch: int, dry_run: bool) -> str:
        """Delete (or with ``dry_run`` count) what is older than ``cutoff``; what was done."""
        raise NotImplementedError
