"""Signal receivers of the demo site: bill metered calls (connected in ``apps.py``).

``call_ended`` is sent once per call, by the process that made the final transition,
after it is committed. A receiver runs in that process, in the request or consumer that
ended the call, so it should be quick; queue slow work (an invoice, an e-mail) instead.
"""

from __future__ import annotations

import logging
import math
from datetime import timedelta
from typing import Any

from django.conf import settings

from directcall.models import Call, CallStatus

from .models import CallCharge

logger = logging.getLogger("example_project.billing")

#: Price per started minute, in cents (``DEMO_PRICE_PER_MINUTE_CENTS`` overrides it).
PRICE_PER_MINUTE_CENTS = 25


def bill_metered_call(
    sender: type[Call],
    *,
    call: Call,
    status: str,
    reason: str,
    duration: timedelta | None,
    **kwargs: Any,
) -> CallCharge | None:
    """Charge the caller of an answered call per started minute of talk time."""
    if status != CallStatus.OVER or duration is None:
        return None  # declined, missed, cancelled, busy, failed: free
    seconds = max(0, math.ceil(duration.total_seconds()))
    minutes = max(1, math.ceil(seconds / 60))
    price = getattr(settings, "DEMO_PRICE_PER_MINUTE_CENTS", PRICE_PER_MINUTE_CENTS)
    # get_or_create: billing twice for one call is the one mistake a bill must not make.
    charge, created = CallCharge.objects.get_or_create(
        call_id=call.pk,
        defaults={
            "account_id": call.account.account_id,
            "payer_cuid": call.caller.cuid,
            "payee_cuid": call.callee.cuid,
            "seconds": seconds,
            "minutes": minutes,
            "amount_cents": minutes * price,
        },
    )
    if created:
        logger.info(
            "billed call %s: %s pays %d min (%d s), %d cents (%s)",
            call.pk,
            charge.payer_cuid,
            minutes,
            seconds,
            charge.amount_cents,
            reason,
        )
    return charge
