"""``manage.py directcall_sweep [--loop]``: finalize calls left behind by server processes.

Every server process that holds connections sweeps every ``SWEEP_INTERVAL`` seconds
already (:mod:`directcall.sweeper`). One sweep by hand, or ``--loop`` as a process of its
own, covers deployments where no server process may be left to do it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from ...sweeper import Sweeper


class Command(BaseCommand):
    """Run one sweep, or sweep every SWEEP_INTERVAL seconds with ``--loop``."""

    help = "End calls that are past their deadline or whose parties are gone, and tell them."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--loop",
            action="store_true",
            help="Keep sweeping every SWEEP_INTERVAL seconds until interrupted.",
        )

    def handle(self, *args: Any, loop: bool = False, **options: Any) -> None:
        if loop:
            self.stdout.write("Sweeping every SWEEP_INTERVAL seconds; Ctrl-C stops.")
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(Sweeper().run_forever())
            return
        ended = asyncio.run(self._sweep_once())
        for call in ended:
            self.stdout.write(f"{call.pk}\t{call.status}\t{call.end_reason}")
        self.stdout.write(f"Finalized {len(ended)} call(s).")

    @staticmethod
    async def _sweep_once() -> list[Any]:
        """One sweep, and the telling of the parties of the calls it ended."""
        sweeper = Sweeper()
        ended = await sweeper.sweep_once()
        await sweeper.drain()
        return ended
