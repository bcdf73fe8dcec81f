"""The call dashboard: figures counted in the database, the admin page, who is online."""

from __future__ import annotations

import random
import re
from datetime import UTC, date, datetime, time, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from directcall import dashboard, presence
from directcall.admin import format_duration, format_rate
from directcall.dashboard import OUTCOMES, call_stats, online_registrations
from directcall.models import FINAL_STATUSES, Call, CallStatus, Registration

XSS = "<script>alert(1)</script>"
XSS_ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"
TODAY = date(2025, 3, 15)
DASHBOARD = "admin:directcall_call_dashboard"


def at(day: date, hour: int = 12, minute: int = 0, second: int = 0, micro: int = 0) -> datetime:
    """An aware UTC datetime on ``day``."""
    return datetime.combine(day, time(hour, minute, second, micro), tzinfo=UTC)


def make_call(account, status, created_at, talk: timedelta | None = None, **fields) -> Call:
    """A call between two registrations of ``account``, created at ``created_at``.

    ``talk`` makes it answered 5 s after creation and (when final) ended ``talk`` later.
    A final call without ``talk`` ends 20 s after creation, unanswered.
    """
    caller, _ = Registration.objects.get_or_create(account=account, cuid="caller_1")
    callee, _ = Registration.objects.get_or_create(account=account, cuid="callee_2")
    answered_at = ended_at = None
    if talk is not None:
        answered_at = created_at + timedelta(seconds=5)
    if status in FINAL_STATUSES:
        ended_at = answered_at + talk if talk is not None else created_at + timedelta(seconds=20)
    fields = {"answered_at": answered_at, "ended_at": ended_at, **fields}
    return Call.objects.create(
        account=account,
        caller=caller,
        callee=callee,
        context="test",
        status=status,
        created_at=created_at,
        **fields,
    )


def expected_stats(calls: list[Call], account=None, days: int = 30, today: date = TODAY) -> dict:
    """The dashboard's figures computed in Python from the call objects themselves."""
    start = today - timedelta(days=days - 1)
    chosen = [
        call
        for call in calls
        if (account is None or call.account_id == account.pk)
        and start <= call.created_at.astimezone(UTC).date() <= today
    ]
    per_day = {
        start + timedelta(days=i): {outcome.value: 0 for outcome in OUTCOMES} for i in range(days)
    }
    for call in chosen:
        if call.status in FINAL_STATUSES:
            per_day[call.created_at.astimezone(UTC).date()][call.status] += 1
    ended = [call for call in chosen if call.status in FINAL_STATUSES]
    answered = [call for call in ended if call.answered_at is not None]
    talks = [call.ended_at - call.answered_at for call in answered if call.ended_at is not None]
    total = sum(talks, timedelta(0))
    return {
        "per_day": per_day,
        "totals": {
            outcome.value: sum(1 for call in ended if call.status == outcome)
            for outcome in OUTCOMES
        },
        "ended": len(ended),
        "in_progress": len(chosen) - len(ended),
        "answered": len(answered),
        "answer_rate": len(answered) / len(ended) if ended else None,
        "talked": len(talks),
        "talk_time_total": total,
        "talk_time_average": total / len(talks) if talks else None,
    }


def assert_matches(stats: dict, expected: dict) -> None:
    """``call_stats`` output equals the Python computation (averages to the microsecond)."""
    assert {row["date"]: row["counts"] for row in stats["days"]} == expected["per_day"]
    assert [row["date"] for row in stats["days"]] == sorted(expected["per_day"])
    for row in stats["days"]:
        assert row["total"] == sum(row["counts"].values())
    for key in ("totals", "ended", "in_progress", "answered", "talked", "talk_time_total"):
        assert stats[key] == expected[key], key
    assert stats["answer_rate"] == pytest.approx(expected["answer_rate"])
    if expected["talk_time_average"] is None:
        assert stats["talk_time_average"] is None
    else:
        # The database rounds the mean to the microsecond, maybe not as Python does.
        difference = abs(stats["talk_time_average"] - expected["talk_time_average"])
        assert difference <= timedelta(microseconds=1)


@pytest.fixture
def history(make_account):
    """Two accounts with calls of every status spread over 37 days around TODAY."""
    rng = random.Random(20250315)
    tutoring, _ = make_account(name="Tutoring")
    shop, _ = make_account(name="Shop")
    calls = []
    for account in (tutoring, shop):
        for _ in range(90):
            day = TODAY - timedelta(days=rng.randint(-1, 35))
            created = at(day, rng.randint(0, 23), rng.randint(0, 59), rng.randint(0, 59))
            status = rng.choice(list(CallStatus))
            talk = None
            if status in (CallStatus.OVER, CallStatus.ANSWERED) or (
                status == CallStatus.FAILED and rng.random() < 0.5
            ):
                talk = timedelta(seconds=rng.randint(1, 3600), milliseconds=rng.randint(0, 999))
            calls.append(make_call(account, status, created, talk))
    # The edges of the window: its first and last instants are in, their neighbours out.
    start = TODAY - timedelta(days=29)
    calls += [
        make_call(tutoring, CallStatus.MISSED, at(start, 0)),
        make_call(
            tutoring, CallStatus.OVER, at(start, 0) - timedelta(microseconds=1), talk=timedelta(9)
        ),
        make_call(
            tutoring, CallStatus.OVER, at(TODAY, 23, 59, 59, 999_999), talk=timedelta(seconds=7)
        ),
        make_call(tutoring, CallStatus.DECLINED, at(TODAY + timedelta(days=1), 0)),
    ]
    # An answered call that failed (media) still counts as answered, with its talk time.
    calls.append(make_call(shop, CallStatus.FAILED, at(TODAY, 8), talk=timedelta(seconds=42)))
    return {"accounts": (tutoring, shop), "calls": calls}


# -- call_stats ----------------------------------------------------------------------------


def test_call_stats_all_accounts(history):
    assert_matches(call_stats(today=TODAY), expected_stats(history["calls"]))


@pytest.mark.parametrize("index", [0, 1])
def test_call_stats_per_account(history, index):
    account = history["accounts"][index]
    stats = call_stats(account, today=TODAY)
    assert stats["account"] == account
    assert_matches(stats, expected_stats(history["calls"], account))


def test_call_stats_window(history):
    stats = call_stats(today=TODAY)
    assert stats["start"] == date(2025, 2, 14)
    assert stats["end"] == TODAY
    assert len(stats["days"]) == 30
    first, last = stats["days"][0], stats["days"][-1]
    assert first["date"] == date(2025, 2, 14)
    assert last["date"] == TODAY
    # The edge calls of the fixture: the one at the first instant is in, the one a
    # microsecond earlier out; the last instant of today is in, tomorrow out.
    assert first["counts"]["missed"] >= 1
    assert last["counts"]["over"] >= 1
    week = call_stats(days=7, today=TODAY)
    assert week["days"][0]["date"] == date(2025, 3, 9)
    assert_matches(week, expected_stats(history["calls"], days=7))


def test_call_stats_is_two_queries(history, django_assert_num_queries):
    with django_assert_num_queries(2):
        call_stats(today=TODAY)
    with django_assert_num_queries(2):
        call_stats(history["accounts"][0], today=TODAY)


def test_call_stats_without_calls(make_account):
    account, _ = make_account()
    stats = call_stats(account, today=TODAY)
    assert stats["ended"] == stats["answered"] == stats["talked"] == stats["in_progress"] == 0
    assert stats["answer_rate"] is None
    assert stats["talk_time_total"] == timedelta(0)
    assert stats["talk_time_average"] is None
    assert all(row["total"] == 0 for row in stats["days"])
    assert stats["totals"] == {outcome.value: 0 for outcome in OUTCOMES}


def test_call_stats_small_example(make_account):
    """A hand-checked case: 3 of 4 ended calls answered, talks of 60, 90 and 30 s."""
    account, _ = make_account()
    make_call(account, CallStatus.OVER, at(TODAY, 9), talk=timedelta(seconds=60))
    make_call(account, CallStatus.OVER, at(TODAY, 10), talk=timedelta(seconds=90))
    make_call(
        account, CallStatus.FAILED, at(TODAY - timedelta(days=1), 11), talk=timedelta(seconds=30)
    )
    make_call(account, CallStatus.MISSED, at(TODAY - timedelta(days=1), 12))
    make_call(account, CallStatus.ANSWERED, at(TODAY, 13), talk=timedelta(seconds=1))
    make_call(account, CallStatus.RINGING, at(TODAY, 14))
    stats = call_stats(account, today=TODAY)
    assert stats["ended"] == 4
    assert stats["answered"] == 3
    assert stats["answer_rate"] == 0.75
    assert stats["talk_time_total"] == timedelta(seconds=180)
    assert stats["talk_time_average"] == timedelta(seconds=60)
    assert stats["in_progress"] == 2
    assert stats["days"][-1]["counts"]["over"] == 2
    assert stats["days"][-2]["counts"] == {
        "over": 0,
        "declined": 0,
        "missed": 1,
        "cancelled": 0,
        "busy": 0,
        "failed": 1,
    }


def test_call_stats_uses_utc_dates(make_account, settings, monkeypatch):
    """Days are UTC dates even when the site's time zone is a day ahead."""
    settings.TIME_ZONE = "Pacific/Kiritimati"  # UTC+14
    account, _ = make_account()
    make_call(account, CallStatus.MISSED, at(TODAY, 23, 30))
    now = at(TODAY, 23, 45)
    monkeypatch.setattr(timezone, "now", lambda: now)
    stats = call_stats(account)
    assert stats["end"] == TODAY
    assert stats["days"][-1]["counts"]["missed"] == 1


def test_call_stats_rejects_no_days(db):
    with pytest.raises(ValueError):
        call_stats(days=0)


# -- the chart -----------------------------------------------------------------------------


def test_chart_geometry(history):
    stats = call_stats(today=TODAY)
    chart = dashboard.chart(stats)
    tallest = max(row["total"] for row in stats["days"])
    top = chart["ticks"][-1]["value"]
    assert top >= tallest
    assert len(chart["ticks"]) <= 6
    assert chart["ticks"][0] == {
        "value": 0,
        "y": chart["plot_bottom"],
        "label_y": chart["plot_bottom"] + 3,
    }
    assert len(chart["bars"]) == 30
    assert chart["bars"][-1]["show_label"]
    scale = (chart["plot_bottom"] - chart["plot_top"]) / top
    for bar, row in zip(chart["bars"], stats["days"], strict=True):
        assert sum(s["count"] for s in bar["segments"]) == row["total"]
        assert sum(s["height"] for s in bar["segments"]) == pytest.approx(
            row["total"] * scale, abs=0.05
        )
        bottom = chart["plot_bottom"]
        for segment in bar["segments"]:  # stacked upwards without gaps
            assert segment["y"] + segment["height"] == pytest.approx(bottom, abs=0.02)
            bottom = segment["y"]
        assert bottom >= chart["plot_top"] - 0.01


@pytest.mark.parametrize(
    ("tallest", "ticks"),
    [(0, [0, 1]), (1, [0, 1]), (4, [0, 1, 2, 3, 4]), (7, [0, 2, 4, 6, 8]), (11, [0, 5, 10, 15])],
)
def test_chart_ticks(tallest, ticks):
    counts = {outcome.value: 0 for outcome in OUTCOMES}
    stats = {"days": [{"date": TODAY, "counts": {**counts, "missed": tallest}, "total": tallest}]}
    assert [tick["value"] for tick in dashboard.chart(stats)["ticks"]] == ticks


# -- who is online -------------------------------------------------------------------------


def _claim(registration: Registration) -> None:
    holder = presence.Holder(f"chan-{registration.pk}", f"dev-{registration.pk}", "conn")
    outcome, _ = presence.claim(registration.account_id, registration.cuid, holder)
    assert outcome == presence.Claim.CLAIMED


@pytest.fixture
def people(make_account):
    """Registrations in two accounts, some holding presence."""
    tutoring, _ = make_account(name="Tutoring")
    shop, _ = make_account(name="Shop")
    now = timezone.now()
    regs = {
        "alice": Registration.objects.create(account=tutoring, cuid="alice_1", name="Alice"),
        "bob": Registration.objects.create(account=tutoring, cuid="bobby_2", name="Bob"),
        "carol": Registration.objects.create(
            account=tutoring, cuid="carol_3", last_seen_at=now - timedelta(hours=25)
        ),
        "dave": Registration.objects.create(
            account=shop, cuid="dave_4", name="Dave", last_seen_at=now - timedelta(hours=23)
        ),
        # The same cuid in another account is another person: not online.
        "alice_shop": Registration.objects.create(account=shop, cuid="alice_1"),
    }
    for name in ("alice", "carol", "dave"):
        _claim(regs[name])
    return {"accounts": (tutoring, shop), "regs": regs}


def test_online_registrations(people):
    regs = people["regs"]
    tutoring, shop = people["accounts"]
    # Carol holds presence but signed in more than 24 hours ago: outside the bound.
    assert online_registrations() == [regs["dave"], regs["alice"]]  # Shop before Tutoring
    assert online_registrations(tutoring) == [regs["alice"]]
    assert online_registrations(shop) == [regs["dave"]]
    assert online_registrations(seen_within=timedelta(hours=26)) == [
        regs["dave"],
        regs["alice"],
        regs["carol"],
    ]
    presence.release(tutoring.pk, "alice_1", presence.Holder("x", "y", "conn"))
    assert online_registrations(tutoring) == []


def test_online_registrations_in_batches(make_account, monkeypatch):
    monkeypatch.setattr(dashboard, "_PRESENCE_BATCH", 3)
    account, _ = make_account()
    regs = [Registration.objects.create(account=account, cuid=f"user_{i:02d}") for i in range(8)]
    for registration in regs[::2]:
        _claim(registration)
    assert online_registrations(account) == regs[::2]


# -- the admin page ------------------------------------------------------------------------


def _html(response) -> str:
    return response.content.decode()


def _day_row(day: date, counts: list[int], total: int) -> re.Pattern:
    cells = r"\s*".join(rf"<td>{n}</td>" for n in [*counts, total])
    return re.compile(rf'<th scope="row">{day:%Y-%m-%d}</th>\s*{cells}')


@pytest.fixture
def recent(make_account):
    """Calls of the last two UTC days in two accounts (inside the window at any time)."""
    today = timezone.now().astimezone(UTC).date()
    yesterday = today - timedelta(days=1)
    tutoring, _ = make_account(name="Tutoring")
    shop, _ = make_account(name="Shop")
    make_call(tutoring, CallStatus.OVER, at(yesterday, 9), talk=timedelta(seconds=65))
    make_call(tutoring, CallStatus.OVER, at(yesterday, 10), talk=timedelta(seconds=125))
    make_call(tutoring, CallStatus.MISSED, at(yesterday, 11))
    make_call(tutoring, CallStatus.DECLINED, at(today, 0, 30))
    make_call(shop, CallStatus.BUSY, at(yesterday, 12))
    make_call(shop, CallStatus.OVER, at(yesterday, 13), talk=timedelta(seconds=30))
    return {"accounts": (tutoring, shop), "yesterday": yesterday, "today": today}


def test_dashboard_page_for_superuser(admin_client, recent):
    response = admin_client.get(reverse(DASHBOARD))
    assert response.status_code == 200
    assert "directcall/admin/call_dashboard.html" in [t.name for t in response.templates]
    stats = response.context["stats"]
    assert stats["account"] is None
    assert stats == call_stats(today=stats["end"])
    assert stats["ended"] == 6
    assert stats["answered"] == 3
    html = _html(response)
    summary = html[html.index('id="directcall-summary"') :]
    assert re.search(r"Answer rate</th>\s*<td>50.0%</td>", summary)
    assert re.search(r"Total talk time</th>\s*<td>3:40</td>", summary)
    assert re.search(r"Average talk time</th>\s*<td>1:13</td>", summary)
    # over, declined, missed, cancelled, busy, failed
    assert _day_row(recent["yesterday"], [3, 0, 1, 0, 1, 0], 5).search(html)
    assert _day_row(recent["today"], [0, 1, 0, 0, 0, 0], 1).search(html)
    assert re.search(
        r'<th scope="row">Total</th>\s*'
        + r"\s*".join(f"<td>{n}</td>" for n in (3, 1, 1, 0, 1, 0, 6)),
        html,
    )
    assert "<svg" in html
    assert html.count("<td>") > 30 * 7


def test_dashboard_chart_needs_no_script_or_style(admin_client, recent):
    html = _html(admin_client.get(reverse(DASHBOARD)))
    start = html.index('<svg id="directcall-chart"')
    svg = html[start : html.index("</svg>", start)]
    assert svg.count("<rect") >= 6 + 4  # the legend and a segment per (day, outcome)
    for forbidden in ("<script", "style", "href", "url(", "javascript:", "<foreignObject"):
        assert forbidden not in svg
    content = html[html.index('id="content-main"') :]
    assert "<script" not in content
    assert "style=" not in content


def test_dashboard_chart_coordinates_are_not_localised(admin_client, recent, settings):
    """German formats write 66,67 and 1.000: SVG attributes must keep plain numbers."""
    settings.LANGUAGE_CODE = "de"
    settings.USE_THOUSAND_SEPARATOR = True
    tutoring, _ = recent["accounts"]
    make_call(tutoring, CallStatus.MISSED, at(recent["yesterday"], 14))  # 6 high: 33.33 units
    html = _html(admin_client.get(reverse(DASHBOARD)))
    start = html.index('<svg id="directcall-chart"')
    svg = html[start : html.index("</svg>", start)]
    values = re.findall(r' (?:x|y|x1|x2|y1|y2|width|height)="([^"%]*)"', svg)
    assert values
    assert any("." in value for value in values)
    for value in values:
        assert re.fullmatch(r"\d+(\.\d+)?", value), value


def test_dashboard_filters_by_account(admin_client, recent):
    tutoring, shop = recent["accounts"]
    response = admin_client.get(reverse(DASHBOARD), {"account": shop.pk})
    assert response.status_code == 200
    stats = response.context["stats"]
    assert stats["account"] == shop
    assert stats == call_stats(shop, today=stats["end"])
    assert stats["ended"] == 2
    assert stats["totals"]["busy"] == 1
    assert stats["totals"]["missed"] == 0
    html = _html(response)
    assert f'<option value="{shop.pk}" selected>' in html
    assert f'<option value="{tutoring.pk}">' in html
    assert re.search(r"Answer rate</th>\s*<td>50.0%</td>", html)
    assert _day_row(recent["yesterday"], [1, 0, 0, 0, 1, 0], 2).search(html)

    response = admin_client.get(reverse(DASHBOARD), {"account": tutoring.pk})
    assert response.context["stats"]["ended"] == 4
    assert re.search(r"Answer rate</th>\s*<td>50.0%</td>", _html(response))
    assert re.search(r"Total talk time</th>\s*<td>3:10</td>", _html(response))


@pytest.mark.parametrize("value", ["999999", "abc", "1 OR 1=1"])
def test_dashboard_unknown_account(admin_client, recent, value):
    assert admin_client.get(reverse(DASHBOARD), {"account": value}).status_code == 404


def test_dashboard_online_list(admin_client, people):
    _, shop = people["accounts"]
    html = _html(admin_client.get(reverse(DASHBOARD)))
    online = html[html.index('id="directcall-online"') :]
    assert "Online now: 2" in online
    assert "alice_1" in online
    assert "dave_4" in online
    assert "bobby_2" not in online  # signed in, no presence
    assert "carol_3" not in online  # presence, but signed in more than 24 hours ago
    assert "24 hours" in online

    html = _html(admin_client.get(reverse(DASHBOARD), {"account": shop.pk}))
    online = html[html.index('id="directcall-online"') :]
    assert "Online now: 1" in online
    assert "dave_4" in online
    assert "alice_1" not in online


def test_dashboard_online_list_empty(admin_client, make_account):
    account, _ = make_account()
    Registration.objects.create(account=account, cuid="alice_1")
    html = _html(admin_client.get(reverse(DASHBOARD)))
    assert "Nobody is online." in html
    assert "alice_1" not in html


def test_dashboard_escapes_account_name_and_cuid(admin_client, make_account):
    account, _ = make_account(name=XSS)
    registration = Registration.objects.create(account=account, cuid=XSS, name=XSS)
    _claim(registration)
    make_call(account, CallStatus.OVER, timezone.now(), talk=timedelta(seconds=3))
    for params in ({}, {"account": account.pk}):
        response = admin_client.get(reverse(DASHBOARD), params)
        assert response.status_code == 200
        html = _html(response)
        assert XSS not in html
        assert XSS_ESCAPED in html
        online = html[html.index('id="directcall-online"') :]
        assert online.count(XSS_ESCAPED) >= 3  # cuid, name, account


# -- access --------------------------------------------------------------------------------


def _user(client, username: str, is_staff: bool, permissions: tuple[str, ...] = ()):
    user = get_user_model().objects.create_user(username=username, password="x", is_staff=is_staff)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="directcall", codename__in=permissions)
    )
    client.force_login(user)
    return client


def test_dashboard_redirects_anonymous_and_non_staff(client, recent):
    url = reverse(DASHBOARD)
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    _user(client, "member", is_staff=False, permissions=("view_call",))
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))


def test_dashboard_forbidden_without_view_call(client, recent):
    _user(client, "staff", is_staff=True, permissions=("view_account", "view_registration"))
    assert client.get(reverse(DASHBOARD)).status_code == 403


def test_dashboard_open_with_view_call_only(client, recent):
    _user(client, "viewer", is_staff=True, permissions=("view_call",))
    response = client.get(reverse(DASHBOARD))
    assert response.status_code == 200
    assert response.context["stats"]["ended"] == 6


def test_call_changelist_links_to_dashboard(admin_client, recent):
    response = admin_client.get(reverse("admin:directcall_call_changelist"))
    assert response.status_code == 200
    html = _html(response)
    assert f'<a href="{reverse(DASHBOARD)}">Dashboard</a>' in html
    assert reverse(DASHBOARD) == "/admin/directcall/call/dashboard/"


def test_dashboard_url_is_not_taken_for_a_call_id(admin_client, recent):
    """``dashboard/`` comes before the admin's ``<path:object_id>/`` catch-all."""
    response = admin_client.get("/admin/directcall/call/dashboard/")
    assert response.status_code == 200
    assert "stats" in response.context


def test_format_rate():
    assert format_rate(None) == "—"
    assert format_rate(0) == "0.0%"
    assert format_rate(2 / 3) == "66.7%"
    assert format_rate(1) == "100.0%"
    assert format_duration(timedelta(seconds=73)) == "1:13"
