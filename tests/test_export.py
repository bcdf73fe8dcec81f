"""The admin call log's CSV export (directcall.export): the filtered calls, streamed."""

from __future__ import annotations

import csv
import io
import tracemalloc
from datetime import timedelta

import pytest
from django.db.models.query import QuerySet
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone

from directcall import export
from directcall.models import Call, CallStatus, EndReason, Registration

EXPORT = "admin:directcall_call_export"


def _rows(response) -> list[dict[str, str]]:
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def many_calls(make_account) -> tuple:
    """5000 calls of one account (bulk-created), and one call of another account."""
    account, _key = make_account(name="Busy")
    jane = Registration.objects.create(account=account, cuid="tutor_jane", name="Jane")
    sam = Registration.objects.create(account=account, cuid="student_sam", name="=HYPERLINK(1)")
    now = timezone.now()
    calls = []
    for i in range(5000):
        created = now - timedelta(minutes=i)
        answered = created + timedelta(seconds=4) if i % 2 == 0 else None
        calls.append(
            Call(
                account=account,
                caller=jane if i % 3 else sam,
                callee=sam if i % 3 else jane,
                context=f"lesson {i}" if i else "-2+3",
                status=CallStatus.OVER if answered else CallStatus.MISSED,
                end_reason=EndReason.USER_HANGUP if answered else EndReason.INVITE_TIMEOUT,
                created_at=created,
                answered_at=answered,
                ended_at=(answered or created) + timedelta(seconds=61.5 if answered else 30),
            )
        )
    Call.objects.bulk_create(calls, batch_size=1000)
    other, _key = make_account(name="Other")
    mallory = Registration.objects.create(account=other, cuid="mallory_m")
    eve = Registration.objects.create(account=other, cuid="eve_e_e")
    Call.objects.create(account=other, caller=mallory, callee=eve, context="elsewhere")
    return account, other


def test_thousands_of_calls_are_streamed_never_loaded(admin_client, many_calls, monkeypatch):
    account, _other = many_calls
    fetched_whole = []
    original = QuerySet._fetch_all

    def spy(self):
        if self.model is Call:
            fetched_whole.append(True)
        return original(self)

    monkeypatch.setattr(QuerySet, "_fetch_all", spy)
    response = admin_client.get(reverse(EXPORT), {"account__id__exact": account.pk})
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="calls.csv"'
    tracemalloc.start()
    lines = 0
    for chunk in response.streaming_content:
        lines += chunk.count(b"\n")
    _size, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert lines == 5001  # the header and every call of the account, nothing of the other
    assert not fetched_whole  # the rows came from iterator(), no result cache was filled
    # What holding them all would take, for comparison: streaming keeps about one chunk.
    monkeypatch.setattr(QuerySet, "_fetch_all", original)
    tracemalloc.start()
    loaded = list(
        Call.objects.filter(account=account).select_related("account", "caller", "callee")
    )
    _size, loaded_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(loaded) == 5000
    assert peak * 3 < loaded_peak, (peak, loaded_peak)


def test_the_columns_and_the_filters_of_the_changelist(admin_client, many_calls):
    account, other = many_calls
    rows = _rows(admin_client.get(reverse(EXPORT), {"status__exact": "over"}))
    assert len(rows) == 2500 and {row["status"] for row in rows} == {"over"}
    assert list(rows[0]) == export.COLUMNS
    newest = rows[0]
    assert newest["account_id"] == account.account_id
    assert newest["caller_cuid"] == "student_sam" and newest["caller_name"] == "'=HYPERLINK(1)"
    assert newest["context"] == "'-2+3"  # no formula for a spreadsheet to run
    assert newest["duration_seconds"] == "61.500" and newest["ring_seconds"] == "4.000"
    assert newest["end_reason"] == "user_hangup" and newest["quality"] == newest["mos"] == ""
    call = Call.objects.get(pk=newest["call_id"])
    assert newest["created_at"] == call.created_at.isoformat()
    searched = _rows(admin_client.get(reverse(EXPORT), {"q": "mallory_m"}))
    assert [row["account_id"] for row in searched] == [other.account_id]
    missed = _rows(admin_client.get(reverse(EXPORT), {"status__exact": "missed"}))
    assert {row["duration_seconds"] for row in missed} == {""}
    assert {row["answered_at"] for row in missed} == {""}


def test_the_changelist_links_to_the_export_with_its_filters(admin_client, many_calls):
    page = admin_client.get(reverse("admin:directcall_call_changelist"), {"status__exact": "over"})
    assert f'{reverse(EXPORT)}?status__exact=over"' in page.content.decode()


def test_the_export_needs_the_view_permission(client, many_calls, django_user_model):
    staff = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(reverse(EXPORT)).status_code == 403


def test_quality_is_a_json_cell(many_calls, monkeypatch):
    from directcall.api import records

    call = Call.objects.select_related("account", "caller", "callee").first()
    setattr(call, records.QUALITY_FIELD, {"caller": {"mosAvg": 4.1}})
    call.quality_mos = 4.1
    cells = export.row(call)
    assert cells[export.COLUMNS.index("quality")] == '{"caller":{"mosAvg":4.1}}'
    assert cells[export.COLUMNS.index("mos")] == "4.10"


@pytest.mark.parametrize(
    "value",
    [
        "=1+1",
        "+1",
        "-2+3",
        "@SUM(A1)",
        "|cmd",
        " =HYPERLINK(1)",
        "  +1",
        "\u00a0=1",
        "\u3000@x",
        "\u2003=1",  # an em space
        "\u202f+1",  # a narrow no-break space
        "\ufeff=1",  # a byte-order mark
        "\u200b-1",  # a zero-width space
        "\tHello",
        "\rHello",
        "\nHello",
        "\uff1d1+1",  # a full-width equals sign
        "\uff20SUM(A1)",
    ],
)
def test_a_cell_that_could_be_a_formula_gets_an_apostrophe(value):
    assert export.safe(value) == "'" + value


@pytest.mark.parametrize("value", ["", "Jane", "Sam O'Neil", "Maths: a=b+c", "x|y", " Jane"])
def test_plain_text_is_left_alone(value):
    assert export.safe(value) == value
