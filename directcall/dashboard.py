"""Figures of the admin's call dashboard: calls per day by outcome, answer rate, talk time.

Everything is counted in the database (two queries for :func:`call_stats`); days are UTC
dates, whatever the site's ``TIME_ZONE``. What each figure means is in docs/dashboard.md.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice
from typing import Any

from django.db.models import Avg, Count, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from . import presence
from .models import LIVE_STATUSES, Account, Call, CallStatus, Registration

# The final statuses, in the order the chart stacks them (bottom first).
OUTCOMES = (
    CallStatus.OVER,
    CallStatus.DECLINED,
    CallStatus.MISSED,
    CallStatus.CANCELLED,
    CallStatus.BUSY,
    CallStatus.FAILED,
)
OUTCOME_COLOURS = {
    CallStatus.OVER: "#2e7d32",
    CallStatus.DECLINED: "#c62828",
    CallStatus.MISSED: "#f9a825",
    CallStatus.CANCELLED: "#78909c",
    CallStatus.BUSY: "#6a1b9a",
    CallStatus.FAILED: "#8d6e63",
}

# Presence cannot be enumerated, so the online list asks it about the registrations that
# signed in (init) this recently; someone connected for longer without a new init is missed.
ONLINE_SEEN_WITHIN = timedelta(hours=24)
_PRESENCE_BATCH = 500

# Chart geometry, in SVG user units (the chart scales to the page width).
_LEGEND_HEIGHT = 24
_PLOT_TOP = _LEGEND_HEIGHT + 10
_PLOT_HEIGHT = 200
_AXIS_WIDTH = 40
_SLOT_WIDTH = 24
_BAR_WIDTH = 16
_LABEL_EVERY = 5


# The MOS bands of the quality panel, best first: preflight's grades (quality.js gradeOf)
# applied to a call's MOS, the lower of its parties' averages.
MOS_BANDS = (
    ("excellent", "> 4.2", Q(quality_mos__gt=4.2)),
    ("great", "4.1 – 4.2", Q(quality_mos__gte=4.1, quality_mos__lte=4.2)),
    ("good", "3.7 – 4.1", Q(quality_mos__gte=3.7, quality_mos__lt=4.1)),
    ("fair", "3.1 – 3.7", Q(quality_mos__gte=3.1, quality_mos__lt=3.7)),
    ("degraded", "< 3.1", Q(quality_mos__lt=3.1)),
)


def _period(account: Account | None, days: int, today: date | None) -> tuple[date, date, Any]:
    """The first and last UTC dates of the period and the calls placed in it."""
    if days < 1:
        raise ValueError("days must be at least 1")
    if today is None:
        today = timezone.now().astimezone(UTC).date()
    start = today - timedelta(days=days - 1)
    calls = Call.objects.filter(
        created_at__gte=datetime.combine(start, time.min, tzinfo=UTC),
        created_at__lt=datetime.combine(today + timedelta(days=1), time.min, tzinfo=UTC),
    )
    if account is not None:
        calls = calls.filter(account=account)
    return start, today, calls


def quality_stats(
    account: Account | None = None, days: int = 30, today: date | None = None
) -> dict:
    """The quality panel over the same period as :func:`call_stats` (one query).

    Counts the answered calls that ended and, of those, the ones with a quality report
    (``reported``); the MOS distribution over :data:`MOS_BANDS` (``bands``: each
    ``{"name", "count", "share"}``, share of the calls with a MOS), the calls whose media
    went through TURN (``relayed``, share of the calls that know), the calls with a quality
    warning (``warned``, share of the reported ones) and the average MOS.
    """
    _start, _end, calls = _period(account, days, today)
    answered = calls.ended().filter(answered_at__isnull=False)
    counts = answered.aggregate(
        answered=Count("pk"),
        reported=Count("pk", filter=Q(quality__isnull=False)),
        with_mos=Count("pk", filter=Q(quality_mos__isnull=False)),
        relay_known=Count("pk", filter=Q(quality_relayed__isnull=False)),
        relayed=Count("pk", filter=Q(quality_relayed=True)),
        warned=Count("pk", filter=Q(quality_warned=True)),
        mos_average=Avg("quality_mos"),
        **{f"band_{name}": Count("pk", filter=band) for name, _range, band in MOS_BANDS},
    )

    def share(part: int, whole: int) -> float | None:
        return part / whole if whole else None

    return {
        "answered": counts["answered"],
        "reported": counts["reported"],
        "bands": [
            {
                "name": name,
                "range": mos_range,
                "count": counts[f"band_{name}"],
                "share": share(counts[f"band_{name}"], counts["with_mos"]),
            }
            for name, mos_range, _band in MOS_BANDS
        ],
        "with_mos": counts["with_mos"],
        "mos_average": counts["mos_average"],
        "relayed": counts["relayed"],
        "relay_known": counts["relay_known"],
        "relayed_share": share(counts["relayed"], counts["relay_known"]),
        "warned": counts["warned"],
        "warned_share": share(counts["warned"], counts["reported"]),
    }


def call_stats(account: Account | None = None, days: int = 30, today: date | None = None) -> dict:
    """Calls of the last ``days`` UTC dates up to ``today`` (included), by day and outcome.

    ``account`` None counts every account. Returns a dict with ``start`` and ``end``
    (dates), ``days`` (oldest first, each ``{"date", "counts", "total"}`` where ``counts``
    maps every outcome in :data:`OUTCOMES` to a number), ``totals`` (per outcome),
    ``ended``, ``in_progress``, ``answered``, ``answer_rate`` (answered / ended, None
    without ended calls), ``talked``, ``talk_time_total`` and ``talk_time_average`` (None
    without talked calls). A call belongs to the day it was created.
    """
    start, today, calls = _period(account, days, today)
    per_day = (
        calls.order_by()
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day", "status")
        .annotate(count=Count("pk"))
    )
    counts: dict[date, dict[str, int]] = defaultdict(dict)
    in_progress = 0
    for row in per_day:
        if row["status"] in LIVE_STATUSES:
            in_progress += row["count"]
        else:
            counts[row["day"]][row["status"]] = row["count"]

    talked = Q(answered_at__isnull=False, ended_at__isnull=False)
    summary = (
        calls.ended()
        .with_talk_time()
        .aggregate(
            ended=Count("pk"),
            answered=Count("pk", filter=Q(answered_at__isnull=False)),
            talked=Count("pk", filter=talked),
            talk_time_total=Sum("talk_time", filter=talked),
            talk_time_average=Avg("talk_time", filter=talked),
        )
    )

    day_rows = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        day_counts = {outcome.value: counts[day].get(outcome, 0) for outcome in OUTCOMES}
        day_rows.append({"date": day, "counts": day_counts, "total": sum(day_counts.values())})
    totals = {
        outcome.value: sum(row["counts"][outcome] for row in day_rows) for outcome in OUTCOMES
    }
    ended = summary["ended"]
    return {
        "account": account,
        "start": start,
        "end": today,
        "days": day_rows,
        "totals": totals,
        "ended": ended,
        "in_progress": in_progress,
        "answered": summary["answered"],
        "answer_rate": summary["answered"] / ended if ended else None,
        "talked": summary["talked"],
        "talk_time_total": summary["talk_time_total"] or timedelta(0),
        "talk_time_average": summary["talk_time_average"],
    }


def online_registrations(
    account: Account | None = None,
    now: datetime | None = None,
    seen_within: timedelta = ONLINE_SEEN_WITHIN,
) -> list[Registration]:
    """Registrations seen within ``seen_within`` whose presence is held now.

    Ordered by account name and cuid, each with its ``account`` loaded. Presence is asked
    once per account for every batch of registrations (one cache round trip each).
    """
    if now is None:
        now = timezone.now()
    registrations = (
        Registration.objects.filter(last_seen_at__gte=now - seen_within)
        .select_related("account")
        .order_by("account__name", "account__pk", "cuid")
    )
    if account is not None:
        registrations = registrations.filter(account=account)
    online = []
    for batch in _batched(registrations.iterator(chunk_size=_PRESENCE_BATCH), _PRESENCE_BATCH):
        by_account: dict[int, list[Registration]] = defaultdict(list)
        for registration in batch:
            by_account[registration.account_id].append(registration)
        # Rows of one account are contiguous (the ordering), so this keeps the order.
        for account_pk, group in by_account.items():
            held = presence.lookup_many(account_pk, [r.cuid for r in group])
            online.extend(r for r in group if r.cuid in held)
    return online


def _batched(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    # itertools.batched is Python 3.12+; the package supports 3.11.
    iterator = iter(items)
    while batch := list(islice(iterator, size)):
        yield batch


def chart(stats: dict) -> dict:
    """Geometry of the stacked-bar chart of ``stats["days"]`` for the SVG template.

    Coordinates are SVG user units; the template scales the chart to the page width.
    ``legend`` has one entry per outcome, ``ticks`` one per y-axis value, ``bars`` one per
    day (``{"date", "x", "label_x", "show_label", "total", "segments"}``, each segment
    ``{"label", "colour", "count", "y", "height"}``, stacked from the bottom).
    """
    day_rows = stats["days"]
    top = _nice_ceiling(max((row["total"] for row in day_rows), default=0))
    step = _tick_step(top)
    bottom = _PLOT_TOP + _PLOT_HEIGHT
    scale = _PLOT_HEIGHT / top
    bars = []
    for index, row in enumerate(day_rows):
        x = _AXIS_WIDTH + index * _SLOT_WIDTH + (_SLOT_WIDTH - _BAR_WIDTH) // 2
        y = bottom
        segments = []
        for outcome in OUTCOMES:
            count = row["counts"][outcome]
            if not count:
                continue
            height = count * scale
            y -= height
            segments.append(
                {
                    "label": outcome.label,
                    "colour": OUTCOME_COLOURS[outcome],
                    "count": count,
                    "y": round(y, 2),
                    "height": round(height, 2),
                }
            )
        bars.append(
            {
                "date": row["date"],
                "x": x,
                "label_x": x + _BAR_WIDTH // 2,
                # Label every fifth day, counted back from the last so that it is labelled.
                "show_label": (len(day_rows) - 1 - index) % _LABEL_EVERY == 0,
                "total": row["total"],
                "segments": segments,
            }
        )
    plot_right = _AXIS_WIDTH + len(day_rows) * _SLOT_WIDTH
    legend_slot = max(plot_right // len(OUTCOMES), 80)
    return {
        "width": max(plot_right, legend_slot * len(OUTCOMES)) + 10,
        "height": bottom + 20,
        "plot_top": _PLOT_TOP,
        "plot_bottom": bottom,
        "plot_right": plot_right,
        "axis_x": _AXIS_WIDTH,
        "tick_label_x": _AXIS_WIDTH - 4,
        "date_label_y": bottom + 14,
        "bar_width": _BAR_WIDTH,
        "legend": [
            {
                "label": outcome.label,
                "colour": OUTCOME_COLOURS[outcome],
                "x": i * legend_slot,
                "text_x": i * legend_slot + 16,
            }
            for i, outcome in enumerate(OUTCOMES)
        ],
        "ticks": [
            {
                "value": value,
                "y": round(bottom - value * scale, 2),
                "label_y": round(bottom - value * scale + 3, 2),
            }
            for value in range(0, top + 1, step)
        ],
        "bars": bars,
    }


def _tick_step(top: int) -> int:
    """The 1, 2 or 5 × 10ⁿ step that gives at most five intervals up to ``top``."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            step = factor * magnitude
            if math.ceil(top / step) <= 5:
                return step
        magnitude *= 10


def _nice_ceiling(value: int) -> int:
    """The top of the y axis: ``value`` rounded up to a multiple of its tick step (min 1)."""
    value = max(value, 1)
    step = _tick_step(value)
    return math.ceil(value / step) * step
