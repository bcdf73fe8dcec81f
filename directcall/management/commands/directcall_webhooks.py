"""``manage.py directcall_webhooks requeue``: queue again deliveries whose task went missing.

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

from django.core.management.base import BaseCommand
from django.utils import timezone

from directcall.webhooks.models import DeliveryStatus, WebhookDelivery
from directcall.webhooks.outbox import enqueue


class Command(BaseCommand):
    """Requeue stale pending webhook deliveries."""

    help = "Queue again pending webhook deliveries that are overdue (their task went missing)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("action", choices=["requeue"])
        parser.add_argument(
            "--older-than",
            type=float,
            default=300,
            help="Seconds a delivery must be overdue to be queued again (default 300).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        cutoff = timezone.now() - timedelta(seconds=options["older_than"])
        stale = WebhookDelivery.objects.filter(
            status=DeliveryStatus.PENDING, next_attempt_at__lte=cutoff
        ).values_list("pk", "attempts")
        count = 0
        for pk, attempts in stale.iterator():
            enqueue(pk, attempts + 1)
            count += 1
        self.stdout.write(f"Queued {count} overdue webhook deliveries again.")
