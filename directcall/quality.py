"""Call quality summaries and post-call feedback, as the browsers report them.

After an answered call each party's SDK reports what it measured (docs/protocol.md,
"Quality and feedback"): the party that hangs up on its ``hangup`` frame, the other with a
``quality`` frame once the call has ended. A summary is checked against a strict schema
(every key known, every value typed and bounded, at most :data:`SUMMARY_MAX_BYTES`) and
stored once per side on ``Call.quality``, with the figures the dashboard counts. A
party's rating (``feedback``) is kept as a :class:`~directcall.models.CallFeedback` when
the account asks for feedback.
"""

from __future__ import annotations

import json
import logging
import math
from typing import Any
from uuid import UUID

from django.db import IntegrityError, transaction

from . import errors, signals
from .errors import DirectCallError
from .models import Call, CallFeedback, FeedbackIssue
from .webhooks import outbox as webhooks

logger = logging.getLogger("directcall.quality")

SUMMARY_MAX_BYTES = 2048
ROLES = ("caller", "callee")
CANDIDATE_TYPES = ("host", "srflx", "prflx", "relay")
# The SDK's warning names, in its order (quality.js WARNING_NAMES).
WARNINGS = (
    "high-rtt",
    "high-jitter",
    "high-packet-loss",
    "high-packets-lost-fraction",
    "low-mos",
    "constant-audio-input-level",
)
MAX_FEEDBACK_ISSUES = len(FeedbackIssue.values)

# The numbers of a summary and their bounds; each may also be null (not measured).
_NUMBERS = {
    "mosAvg": (1.0, 5.0),
    "mosMin": (1.0, 5.0),
    "rttAvg": (0.0, 60_000.0),  # ms
    "rttMax": (0.0, 60_000.0),
    "jitterAvg": (0.0, 60_000.0),  # ms
    "jitterMax": (0.0, 60_000.0),
    "lossAvg": (0.0, 100.0),  # percent
    "lossMax": (0.0, 100.0),
}
_KEYS = frozenset(
    {
        *_NUMBERS,
        "samples",
        "relayed",
        "localCandidate",
        "remoteCandidate",
        "codec",
        "warnings",
    }
)
_MAX_SAMPLES = 7 * 24 * 3600  # a week of one sample a second


def _bad(message: str) -> DirectCallError:
    return DirectCallError(errors.BAD_FRAME, f"Invalid quality summary: {message}")


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def clean_summary(value: Any) -> dict[str, Any]:
    """A summary as the SDK reports it, checked; ``ERR_BAD_FRAME`` names what is wrong.

    Every key of the schema must be there and no other; numbers are finite and within
    their bounds (or null); the codec is a short token; warnings are distinct known names.
    """
    if not isinstance(value, dict):
        raise _bad("it must be an object.")
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > SUMMARY_MAX_BYTES:
        raise _bad(f"it is over {SUMMARY_MAX_BYTES} bytes.")
    missing, unknown = _KEYS - value.keys(), value.keys() - _KEYS
    if missing or unknown:
        names = ", ".join(sorted(missing | unknown))
        raise _bad(f"{'missing' if missing else 'unknown'} field(s) {names}.")
    summary: dict[str, Any] = {}
    for key, (low, high) in _NUMBERS.items():
        number = value[key]
        if number is not None and not (_is_number(number) and low <= number <= high):
            raise _bad(f"'{key}' must be a number from {low:g} to {high:g}, or null.")
        summary[key] = None if number is None else float(number)
    samples = value["samples"]
    if not (isinstance(samples, int) and not isinstance(samples, bool)) or not (
        0 <= samples <= _MAX_SAMPLES
    ):
        raise _bad("'samples' must be a whole number of samples.")
    summary["samples"] = samples
    if value["relayed"] not in (True, False, None):
        raise _bad("'relayed' must be true, false or null.")
    summary["relayed"] = value["relayed"]
    for key in ("localCandidate", "remoteCandidate"):
        if value[key] not in (*CANDIDATE_TYPES, None):
            raise _bad(f"'{key}' must be one of {', '.join(CANDIDATE_TYPES)}, or null.")
        summary[key] = value[key]
    codec = value["codec"]
    if codec is not None and not (
        isinstance(codec, str)
        and 0 < len(codec) <= 32
        and all(c.isascii() and (c.isalnum() or c in "._/-") for c in codec)
    ):
        raise _bad("'codec' must be a short codec name (letters, digits, . _ / -), or null.")
    summary["codec"] = codec
    warnings = value["warnings"]
    if (
        not isinstance(warnings, list)
        or any(name not in WARNINGS for name in warnings)
        or len(set(warnings)) != len(warnings)
    ):
        raise _bad(f"'warnings' must list distinct names among {', '.join(WARNINGS)}.")
    summary["warnings"] = list(warnings)
    return summary


def clean_feedback(score: Any, issues: Any) -> tuple[int, list[str]]:
    """A rating (a whole number from 1 to 5) and its distinct known issues; ``ERR_BAD_FRAME``."""
    if not (isinstance(score, int) and not isinstance(score, bool) and 1 <= score <= 5):
        raise DirectCallError(errors.BAD_FRAME, "Field 'score' must be a whole number 1-5.")
    issues = [] if issues is None else issues
    if (
        not isinstance(issues, list)
        or len(issues) > MAX_FEEDBACK_ISSUES
        or any(issue not in FeedbackIssue.values for issue in issues)
        or len(set(issues)) != len(issues)
    ):
        known = ", ".join(FeedbackIssue.values)
        raise DirectCallError(
            errors.BAD_FRAME, f"Field 'issues' must list distinct issues among {known}."
        )
    return score, list(issues)


def _figures(quality: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The dashboard's figures of a call's reports: the lowest MOS, relayed, warned."""
    reports = list(quality.values())
    mos = [r["mosAvg"] for r in reports if r.get("mosAvg") is not None]
    relayed = [r["relayed"] for r in reports if r.get("relayed") is not None]
    return {
        "quality_mos": min(mos) if mos else None,
        "quality_relayed": any(relayed) if relayed else None,
        "quality_warned": any(r.get("warnings") for r in reports),
    }


def _role(row: dict[str, Any], party_pk: int) -> str | None:
    if row["caller_id"] == party_pk:
        return "caller"
    return "callee" if row["callee_id"] == party_pk else None


def report(call_id: UUID | str, party_pk: int, summary: dict[str, Any]) -> Call:
    """Store a party's checked summary of an answered call, once per side.

    The call may still be answered (the ``hangup`` frame's summary is stored just before
    the call ends, so ``call_ended`` and the ``call.ended`` webhook carry it) or have
    ended: then the ``call.quality`` webhook is queued in the same transaction (the
    outbox, docs/webhooks.md), so each summary reaches webhooks once. Raises
    ``ERR_UNKNOWN_CALL`` (no such call of this party) or ``ERR_CALL_STATE`` (never
    answered, or this side reported already). Sends ``call_quality_reported``.

    Each side writes with one conditional UPDATE on what the row held when read (no
    report, or only the other side's), so two reports arriving together never lose one.
    """
    for _attempt in range(3):
        row = (
            Call.objects.filter(pk=call_id)
            .values("caller_id", "callee_id", "answered_at", "quality")
            .first()
        )
        role = _role(row, party_pk) if row is not None else None
        if role is None:
            raise DirectCallError(errors.UNKNOWN_CALL)
        if row["answered_at"] is None:
            raise DirectCallError(errors.CALL_STATE, "Only an answered call has a quality.")
        held = row["quality"] or {}
        if role in held:
            raise DirectCallError(errors.CALL_STATE, "This side's quality was reported already.")
        quality = {**held, role: summary}
        rows = Call.objects.filter(pk=call_id)
        if held:
            other = next(iter(held))
            rows = rows.filter(quality__has_key=other).exclude(quality__has_key=role)
        else:
            rows = rows.filter(quality__isnull=True)
        with transaction.atomic():
            if rows.update(quality=quality, **_figures(quality)) != 1:
                continue
            # Read after the write, in its transaction: the row is this write's until it
            # commits, so a transition ending the call either came before (ended_at is set:
            # call.ended did not carry this summary, call.quality does) or comes after and
            # its UPDATE ... RETURNING reads this summary into call.ended.
            call = Call.objects.select_related("account", "caller", "callee").get(pk=call_id)
            if call.ended_at is not None:
                webhooks.emit_call_quality(call, role)
        signals.call_quality_reported.send(sender=Call, call=call, role=role, summary=summary)
        return call
    raise DirectCallError(errors.CALL_STATE, "The call's quality changed meanwhile; try again.")


def post_feedback(
    call_id: UUID | str, party_pk: int, score: int, issues: list[str]
) -> CallFeedback:
    """Keep a party's rating of an answered call that has ended (a repeat replaces it).

    Raises ``ERR_UNKNOWN_CALL``, ``ERR_FEEDBACK_DISABLED`` (the account does not ask for
    feedback) or ``ERR_CALL_STATE`` (not answered, or not over yet). Sends
    ``call_feedback_posted``.
    """
    call = Call.objects.select_related("account", "caller", "callee").filter(pk=call_id).first()
    role = (
        _role({"caller_id": call.caller_id, "callee_id": call.callee_id}, party_pk)
        if call
        else None
    )
    if role is None:
        raise DirectCallError(errors.UNKNOWN_CALL)
    if not call.account.ask_feedback:
        raise DirectCallError(errors.FEEDBACK_DISABLED)
    if call.answered_at is None or call.ended_at is None:
        raise DirectCallError(errors.CALL_STATE, "Only an answered call that ended is rated.")
    values = {"score": score, "issues": issues, "account_id": call.account_id}
    values["registration_id"] = party_pk
    try:
        with transaction.atomic():
            feedback, _created = CallFeedback.objects.update_or_create(
                call=call, role=role, defaults=values
            )
    except IntegrityError:  # the same party's two tabs at once: the other one's stands
        feedback = CallFeedback.objects.get(call=call, role=role)
    signals.call_feedback_posted.send(sender=Call, call=call, feedback=feedback)
    return feedback
