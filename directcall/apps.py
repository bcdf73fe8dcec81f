"""The directcall Django app."""

from __future__ import annotations

import asyncio
import weakref
from typing import TYPE_CHECKING

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

if TYPE_CHECKING:
    from .sweeper import Sweeper


class DirectCallConfig(AppConfig):
    """Registers the system checks and signal receivers; owns each event loop's sweeper."""

    name = "directcall"
    verbose_name = _("Direct Call")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the system checks; connects the revocation receivers.
        from . import checks, receivers  # noqa: F401
        from .webhooks import receivers as webhook_receivers  # noqa: F401

        # The Django user model's and its proxies' (a proxy sends signals of its own).
        receivers.connect_user_receivers()

        # Keyed weakly: a loop that is closed and dropped takes its sweeper along.
        self._sweepers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Sweeper] = (
            weakref.WeakKeyDictionary()
        )

    def sweeper_of(self, loop: asyncio.AbstractEventLoop) -> Sweeper:
        """The sweeper of ``loop`` (the running one), started on first use."""
        from .sweeper import Sweeper  # not at import time: it imports the models

        sweeper = self._sweepers.get(loop)
        if sweeper is None or sweeper.stopped:
            sweeper = self._sweepers[loop] = Sweeper()
            sweeper.start()
        return sweeper

    async def stop_sweeper_of(self, loop: asyncio.AbstractEventLoop) -> None:
        """Stop the sweeper of ``loop``, if it has one."""
        sweeper = self._sweepers.pop(loop, None)
        if sweeper is not None:
            await sweeper.stop()
