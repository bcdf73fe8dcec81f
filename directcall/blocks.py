"""Blocking: the callee's side refuses a caller for good (the ``block`` frame, ``client.block()``).

The adapter decides where blocks live (:meth:`DefaultCallAdapter.block` and
:meth:`~DefaultCallAdapter.is_blocked`; by default the :class:`~directcall.models.Block`
table) and :func:`directcall.calls.parties` refuses a blocked caller's invites with
``ERR_CALL_NOT_ALLOWED``, before presence is looked up.
"""

from __future__ import annotations

import logging

from . import errors
from .adapter import get_adapter
from .errors import DirectCallError
from .models import Registration

logger = logging.getLogger("directcall.blocks")


def block(blocker_pk: int, cuid: str) -> int | None:
    """``blocker_pk`` refuses calls from ``cuid`` of its account from now on; return the
    blocked registration's pk (None for a cuid never seen).

    A cuid that has never signed in under the account is answered the same way (nothing
    is recorded: it cannot call anyone yet), so that blocking tells nobody which cuids
    exist. Raises ``ERR_INVALID_CALL_PARAMETERS`` for the blocker's own cuid.
    """
    blocker = Registration.objects.select_related("account").get(pk=blocker_pk)
    if cuid == blocker.cuid:
        raise DirectCallError(errors.INVALID_CALL_PARAMETERS, "You cannot block yourself.")
    blocked = Registration.objects.filter(account_id=blocker.account_id, cuid=cuid).first()
    if blocked is None:
        return None
    get_adapter().block(blocker, blocked)
    logger.info(
        "%s blocked %s (account %s)", blocker.cuid, blocked.cuid, blocker.account.account_id
    )
    return blocked.pk
