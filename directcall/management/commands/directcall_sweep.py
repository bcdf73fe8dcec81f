"""``manage.py directcall_sweep``: finalize calls left behind by server processes that died."""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand

from ... import calls


class Command(BaseCommand):
    """Run one sweep (the servers also sweep every SWEEP_INTERVAL seconds)."""

    help = "End calls that are past their deadline or whose parties are gone, and tell them."

    def handle(self, *args: Any, **options: Any) -> None:
        ended = calls.sweep()
        for call in ended:
            async_to_sync(calls.announce)(call)
            self.stdout.write(f"{call.pk}\t{call.status}\t{call.end_reason}")
        self.stdout.write(f"Finalized {len(ended)} call(s).")
