"""Call records (CDR) as CSV, streamed row by row (the admin call log's "Export CSV").

The rows come from ``QuerySet.iterator()`` (no result cache: a month of calls is never
held in memory) and are written one at a time into a ``StreamingHttpResponse``. A value
a spreadsheet would run as a formula is written with a leading apostrophe: contexts and
names are typed by users. That is a value starting with ``=``, ``+``, ``-``, ``@`` or
``|`` (or their full-width forms, which some spreadsheets read as the same), also after
leading white space or invisible marks (spreadsheets trim them before they parse), and
one starting with a tab, a carriage return or a line feed.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from datetime import datetime

from django.db.models import QuerySet
from django.http import StreamingHttpResponse

from .api.records import quality_of, seconds
from .models import Call

COLUMNS = [
    "call_id",
    "account_id",
    "caller_cuid",
    "caller_name",
    "callee_cuid",
    "callee_name",
    "context",
    "created_at",
    "answered_at",
    "ended_at",
    "ring_seconds",
    "duration_seconds",
    "status",
    "end_reason",
    "mos",
    "quality",
]
CHUNK = 500
_FORMULA_START = ("=", "+", "-", "@", "|", "\uff1d", "\uff0b", "\uff0d", "\uff20", "\uff5c")
_CONTROL_START = ("\t", "\r", "\n")
# What a spreadsheet may skip before it looks for a formula: any white space, and the
# invisible byte-order mark and zero-width space.
_LEADING_BLANK = re.compile(r"^[\s\ufeff\u200b]+")


class _Echo:
    """A file-like object whose write() returns what it was given (Django's CSV recipe)."""

    def write(self, value: str) -> str:
        return value


def safe(value: str) -> str:
    """A text cell a spreadsheet will not run as a formula."""
    if value.startswith(_CONTROL_START) or _LEADING_BLANK.sub("", value).startswith(_FORMULA_START):
        return "'" + value
    return value


def _moment(value: datetime | None) -> str:
    return value.isoformat() if value else ""


def _number(value: float | None, digits: int = 3) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def row(call: Call) -> list[str]:
    """One call as CSV cells (see :data:`COLUMNS`)."""
    ring_end = call.answered_at or call.ended_at
    ring = seconds(ring_end - call.created_at) if ring_end else None
    quality = quality_of(call)
    return [
        str(call.pk),
        call.account.account_id,
        call.caller.cuid,
        safe(call.caller.display_name),
        call.callee.cuid,
        safe(call.callee.display_name),
        safe(call.context),
        _moment(call.created_at),
        _moment(call.answered_at),
        _moment(call.ended_at),
        _number(ring),
        _number(seconds(call.duration)),
        call.status,
        call.end_reason,
        _number(getattr(call, "quality_mos", None), 2),
        safe(json.dumps(quality, sort_keys=True, separators=(",", ":"))) if quality else "",
    ]


def csv_lines(calls: QuerySet[Call]) -> Iterator[str]:
    """The header, then one line per call, read ``CHUNK`` rows at a time."""
    writer = csv.writer(_Echo())
    yield writer.writerow(COLUMNS)
    rows = calls.select_related("account", "caller", "callee").iterator(chunk_size=CHUNK)
    for call in rows:
        yield writer.writerow(row(call))


def csv_response(calls: QuerySet[Call], filename: str) -> StreamingHttpResponse:
    """A streamed CSV download of ``calls``."""
    response = StreamingHttpResponse(csv_lines(calls), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    response["Cache-Control"] = "no-store"
    return response
