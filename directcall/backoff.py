"""Ring backoff: a caller whose calls to one person go unanswered must wait, longer each time.

Without it one caller could keep a user busy for good by inviting again the moment each
ring ended (issue 13, "ring-bombing"): every other caller got ``busy``, and declining did
not help. After a call from A to B ends unanswered — declined by B, missed, or cancelled by
A (whatever the reason: A could otherwise ring for 29 s, cancel and start again) — A may
call B again only ``RING_BACKOFF`` seconds later (30 s by default); each further unanswered
call doubles the wait, up to ``RING_BACKOFF_MAX``. An answered call between A and B (either
way) forgets it, and so does ``RING_BACKOFF_RESET`` seconds without another unanswered call.
Until then :func:`check` refuses the invite with ``ERR_RATE_LIMITED``, saying when.

Not counted: a ``busy`` call (B was in another call and did not ring), and declines that are
not B's choice (``user_busy``: B's page was in a call; ``user_media_failed``: B tried to
answer). Other callers are not affected: the wait is per (caller, callee).

The state lives in Django's default cache (Redis in production), so every server process
agrees. It is written when a call ends (the ``call_ended`` signal, sent once per call by the
process that ended it) and read at the next invite; a caller has at most one live call, so
two writes for one pair never race.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from django.dispatch import receiver

from . import errors, signals
from .caching import cache
from .conf import get_settings
from .errors import DirectCallError
from .models import Call, CallStatus, EndReason, Registration

logger = logging.getLogger("directcall.backoff")

# Declines that are not the callee's choice: its page was in another call, or its
# microphone failed as it answered.
_NOT_REFUSALS = (EndReason.USER_BUSY, EndReason.USER_MEDIA_FAILED)
# Doubling stops mattering long before this (30 s * 2**20 is a year); it keeps floats finite.
_MAX_DOUBLINGS = 20


def _key(caller_pk: int, callee_pk: int) -> str:
    return f"directcall:ringback:{caller_pk}:{callee_pk}"


def wait_after(strikes: int) -> float:
    """Seconds to wait after ``strikes`` unanswered calls in a row (0 when the backoff is off)."""
    conf = get_settings()
    if conf.RING_BACKOFF is None or strikes < 1:
        return 0.0
    doubled = conf.RING_BACKOFF * 2.0 ** min(strikes - 1, _MAX_DOUBLINGS)
    return min(doubled, conf.RING_BACKOFF_MAX)


def seconds_left(caller_pk: int, callee_pk: int, now: float | None = None) -> float:
    """Seconds before ``caller_pk`` may call ``callee_pk`` again (0: now)."""
    if get_settings().RING_BACKOFF is None:
        return 0.0
    entry = cache.get(_key(caller_pk, callee_pk))
    if not entry:
        return 0.0
    now = time.time() if now is None else now
    return max(0.0, entry["until"] - now)


def check(caller: Registration, callee: Registration, now: float | None = None) -> None:
    """Raise ``ERR_RATE_LIMITED`` while ``caller`` must wait before calling ``callee`` again."""
    left = seconds_left(caller.pk, callee.pk, now)
    if left > 0:
        logger.info("ring backoff: %s may call %s again in %.0f s", caller, callee, left)
        raise DirectCallError(
            errors.RATE_LIMITED,
            f"Your last call to {callee.display_name} was not answered: you may call them "
            f"again in {math.ceil(left)} s.",
        )


def unanswered(caller_pk: int, callee_pk: int, now: float | None = None) -> float:
    """Count an unanswered call from ``caller_pk`` to ``callee_pk``; return the wait it sets."""
    conf = get_settings()
    if conf.RING_BACKOFF is None:
        return 0.0
    key = _key(caller_pk, callee_pk)
    now = time.time() if now is None else now
    entry = cache.get(key)
    # Forgotten RING_BACKOFF_RESET seconds after the wait ended (the quiet period); the
    # cache entry expires then too, the check here only makes it exact.
    strikes = entry["strikes"] + 1 if entry and now < entry["forget_at"] else 1
    wait = wait_after(strikes)
    until = now + wait
    value = {"strikes": strikes, "until": until, "forget_at": until + conf.RING_BACKOFF_RESET}
    cache.set(key, value, wait + conf.RING_BACKOFF_RESET)
    return wait


def answered(caller_pk: int, callee_pk: int) -> None:
    """An answered call between the two: each may call the other at once again."""
    cache.delete_many([_key(caller_pk, callee_pk), _key(callee_pk, caller_pk)])


def counts(call: Call) -> bool:
    """Whether ``call``, now ended, was a call its callee did not answer by choice."""
    if call.answered_at is not None or call.status == CallStatus.BUSY:
        return False
    if call.status == CallStatus.DECLINED:
        return call.end_reason not in _NOT_REFUSALS
    return call.status in (CallStatus.MISSED, CallStatus.CANCELLED)


@receiver(signals.call_ended, dispatch_uid="directcall.backoff.ended")
def _call_ended(sender: Any, call: Call, **kwargs: Any) -> None:
    if not counts(call):
        return
    try:
        unanswered(call.caller_id, call.callee_id)
    except Exception as exc:  # never fail the transition that sent the signal
        logger.warning("ring backoff not recorded for call %s: %r", call.pk, exc)


@receiver(signals.call_answered, dispatch_uid="directcall.backoff.answered")
def _call_answered(sender: Any, call: Call, **kwargs: Any) -> None:
    try:
        answered(call.caller_id, call.callee_id)
    except Exception as exc:  # never fail the transition that sent the signal
        logger.warning("ring backoff not reset for call %s: %r", call.pk, exc)
