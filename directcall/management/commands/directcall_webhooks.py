"""``manage.py directcall_webhooks requeue|prune``: the upkeep of the webhook outbox.

``prune --days N`` deletes the messages older than N days (30) whose deliveries have all
settled (delivered or failed), with their deliveries and attempts: the delivery log does
not grow for ever. (django-tasks-db's ``prune_db_task_results`` does the same for its
task rows.)

``requeue``: queue again deliveries whose task went missing.

With django-tasks-db's database backend a delivery and its task are written in one
transaction, so none goes missing. With a task backend elsewhere (Redis, a cloud queue)
the task is queued once the transaction commits; a process that dies in between leaves a
pending delivery without a task. Run this from cron with such a backend: every pending
delivery due for longer than ``--older-than`` seconds is queued again. A delivery queued
twice is still sent once (each attempt is claimed in the database).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from directcall.webhooks.models import DeliveryStatus, WebhookDelivery, WebhookMessage
from directcall.webhooks.outbox import enqueue


class Command(BaseCommand):
    """Requeue stale pending webhook deliveries."""

    help = (
        "requeue: queue again pending webhook deliveries that are overdue (their task went "
        "missing). prune: delete settled webhook messages older than --days."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("action", choices=["requeue", "prune"])
        parser.add_argument(
            "--older-than",
            type=float,
            default=300,
            help="requeue: seconds a delivery must be overdue to be queued again (default 300).",
        )
        parser.add_argument(
            "--days",
            type=float,
            default=30,
            help="prune: delete settled messages older than this many days (default 30).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="prune: count what would be deleted, delete nothing.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["action"] == "prune":
            if not options["days"] > 0:
                # As the calls' and registrations' prunes: 0 would wipe the whole log,
                # deliveries of a moment ago included.
                raise CommandError("--days must be greater than zero.")
            self.prune(options["days"], dry_run=options["dry_run"])
            return
        cutoff = timezone.now() - timedelta(seconds=options["older_than"])
        stale = WebhookDelivery.objects.filter(
            status=DeliveryStatus.PENDING, next_attempt_at__lte=cutoff
        ).values_list("pk", "attempts")
        count = 0
        for pk, attempts in stale.iterator():
            enqueue(pk, attempts + 1)
            count += 1
        self.stdout.write(f"Queued {count} overdue webhook deliveries again.")

    def prune(self, days: float, dry_run: bool = False) -> None:
        """Delete settled messages older than ``days`` (their deliveries and attempts too)."""
        cutoff = timezone.now() - timedelta(days=days)
        old = WebhookMessage.objects.filter(created_at__lt=cutoff).exclude(
            deliveries__status=DeliveryStatus.PENDING
        )
        if dry_run:
            count = old.count()
            self.stdout.write(f"Would delete {count} settled webhook messages (dry run).")
            return
        deleted, _by_model = old.delete()
        count = _by_model.get(WebhookMessage._meta.label, 0)
        self.stdout.write(f"Deleted {count} settled webhook messages ({deleted} rows).")
