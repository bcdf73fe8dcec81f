"""Quality summaries and feedback (issue 15): the strict schema, storing one report per
side, the frames that carry them, the signals, the admin and the dashboard's panel."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from django.urls import reverse
from django.utils import timezone

from directcall import dashboard, errors, quality, signals
from directcall.errors import DirectCallError
from directcall.models import Call, CallFeedback, CallStatus

from .wsclient import answered_call, make_registration

QUALITY_JS = "directcall/static/directcall/js/quality.js"

SUMMARY = {
    "samples": 42,
    "mosAvg": 4.31,
    "mosMin": 3.9,
    "rttAvg": 38.5,
    "rttMax": 120.0,
    "jitterAvg": 2.5,
    "jitterMax": 9.0,
    "lossAvg": 0.4,
    "lossMax": 3.0,
    "relayed": False,
    "localCandidate": "host",
    "remoteCandidate": "host",
    "codec": "opus",
    "warnings": [],
}


# -- the schema -------------------------------------------------------------------------------


def test_a_valid_summary_is_kept_as_sent():
    assert quality.clean_summary(SUMMARY) == SUMMARY
    unmeasured = {**SUMMARY, **{key: None for key in quality._NUMBERS}, "relayed": None}
    unmeasured.update(localCandidate=None, remoteCandidate=None, codec=None, samples=0)
    assert quality.clean_summary(unmeasured) == unmeasured
    assert quality.clean_summary({**SUMMARY, "mosAvg": 4})["mosAvg"] == 4.0


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"extra": 1}, "unknown field(s) extra"),
        ({"mosAvg": "4.3"}, "'mosAvg' must be a number"),
        ({"mosAvg": 0.5}, "'mosAvg' must be a number from 1 to 5"),
        ({"rttMax": -1}, "'rttMax'"),
        ({"lossAvg": 100.5}, "'lossAvg'"),
        ({"jitterAvg": True}, "'jitterAvg'"),
        ({"samples": 4.5}, "'samples'"),
        ({"samples": -1}, "'samples'"),
        ({"relayed": "yes"}, "'relayed'"),
        ({"localCandidate": "relay2"}, "'localCandidate'"),
        ({"codec": "opus<script>"}, "'codec'"),
        ({"codec": ""}, "'codec'"),
        ({"warnings": ["high-rtt", "high-rtt"]}, "'warnings'"),
        ({"warnings": ["slow"]}, "'warnings'"),
        ({"warnings": "high-rtt"}, "'warnings'"),
    ],
)
def test_a_summary_that_breaks_the_schema_is_refused(change, words):
    with pytest.raises(DirectCallError) as refused:
        quality.clean_summary({**SUMMARY, **change})
    assert refused.value.code == errors.BAD_FRAME
    assert words in refused.value.message


def test_the_server_knows_every_warning_the_sdk_raises():
    """quality.js's WARNING_NAMES and the schema's names are the same list."""
    source = (Path(__file__).resolve().parents[1] / QUALITY_JS).read_text()
    names = re.search(r"WARNING_NAMES = Object\.freeze\(\[(.*?)\]\)", source, re.S).group(1)
    listed = [
        "constant-audio-input-level" if name.strip() == "LEVEL_WARNING" else name.strip()[1:-1]
        for name in names.split(",")
        if name.strip()
    ]
    assert tuple(listed) == quality.WARNINGS
    both = {**SUMMARY, "warnings": ["high-packet-loss", "high-packets-lost-fraction"]}
    assert quality.clean_summary(both)["warnings"] == both["warnings"]


def test_missing_fields_non_objects_and_oversized_summaries_are_refused():
    for value in [None, [], "summary", {k: v for k, v in SUMMARY.items() if k != "codec"}]:
        with pytest.raises(DirectCallError):
            quality.clean_summary(value)
    with pytest.raises(DirectCallError) as refused:
        quality.clean_summary({**SUMMARY, "codec": "x" * 3000})
    assert f"over {quality.SUMMARY_MAX_BYTES} bytes" in refused.value.message


def test_feedback_scores_and_issues():
    assert quality.clean_feedback(5, ["echo", "one-way-audio"]) == (5, ["echo", "one-way-audio"])
    assert quality.clean_feedback(1, None) == (1, [])
    for score, issues in [(0, []), (6, []), (3.5, []), (True, []), ("4", []), (4, ["bad"])]:
        with pytest.raises(DirectCallError):
            quality.clean_feedback(score, issues)
    with pytest.raises(DirectCallError):
        quality.clean_feedback(4, ["echo", "echo"])


# -- storing ------------------------------------------------------------------------------------


@pytest.fixture
def answered(make_account):
    """An answered call between jane (caller) and sam (callee), and a stranger of its account."""
    account, _key = make_account(ask_feedback=True)
    jane = make_registration(account, "tutor_jane", "Jane")
    sam = make_registration(account, "student_sam", "Sam")
    gil = make_registration(account, "grocer_gil", "Gil")
    now = timezone.now()
    call = Call.objects.create(
        account=account,
        caller=jane,
        callee=sam,
        context="c",
        status=CallStatus.ANSWERED,
        created_at=now - timedelta(seconds=60),
        answered_at=now - timedelta(seconds=50),
    )
    return {"call": call, "jane": jane, "sam": sam, "gil": gil, "account": account}


def _ended(call: Call) -> None:
    Call.objects.filter(pk=call.pk).update(status=CallStatus.OVER, ended_at=timezone.now())


def test_a_summary_after_the_end_queues_call_quality_in_its_transaction(answered, monkeypatch):
    """The call.quality webhook is written with the summary (the outbox): if queuing it
    fails, the summary is not stored either. A summary stored before the end (which
    call.ended carries) queues nothing."""
    from directcall.webhooks import outbox
    from directcall.webhooks.models import WebhookEndpoint, WebhookMessage

    call, account = answered["call"], answered["account"]
    WebhookEndpoint.objects.create(account=account, url="https://hooks.example.com/dc")
    quality.report(call.pk, answered["jane"].pk, SUMMARY)  # still answered
    assert not WebhookMessage.objects.exists()
    _ended(call)

    def broken(account, event_type, data):
        raise RuntimeError("the outbox is down")

    monkeypatch.setattr(outbox, "emit", broken)
    with pytest.raises(RuntimeError):
        quality.report(call.pk, answered["sam"].pk, SUMMARY)
    call.refresh_from_db()
    assert call.quality == {"caller": SUMMARY}  # rolled back with the event
    monkeypatch.undo()

    quality.report(call.pk, answered["sam"].pk, SUMMARY)
    message = WebhookMessage.objects.get()
    assert message.event_type == "call.quality" and message.deliveries.count() == 1
    body = json.loads(message.body)
    assert body["type"] == "call.quality" and body["data"]["reportedBy"] == "callee"
    assert body["data"]["id"] == str(call.pk) and body["data"]["status"] == "over"
    assert body["data"]["quality"] == {"caller": SUMMARY, "callee": SUMMARY}


def test_an_endpoint_not_asking_for_call_quality_gets_none(answered):
    from directcall.webhooks.models import WebhookEndpoint, WebhookMessage

    call, account = answered["call"], answered["account"]
    WebhookEndpoint.objects.create(
        account=account, url="https://hooks.example.com/dc", events=["call.ended"]
    )
    _ended(call)
    quality.report(call.pk, answered["sam"].pk, SUMMARY)
    assert not WebhookMessage.objects.exists()


@pytest.fixture
def reported():
    received = []

    def receiver(sender, call, role, summary, **kwargs):
        received.append((str(call.pk), role, summary, call.quality))

    signals.call_quality_reported.connect(receiver)
    yield received
    signals.call_quality_reported.disconnect(receiver)


@pytest.mark.django_db
def test_each_side_reports_once_and_the_figures_follow(answered, reported):
    call, jane, sam = answered["call"], answered["jane"], answered["sam"]
    quality.report(call.pk, jane.pk, SUMMARY)
    call.refresh_from_db()
    assert call.quality == {"caller": SUMMARY}
    assert (call.quality_mos, call.quality_relayed, call.quality_warned) == (4.31, False, False)
    relayed = {**SUMMARY, "mosAvg": 3.2, "relayed": True, "warnings": ["high-rtt"]}
    quality.report(call.pk, sam.pk, relayed)
    call.refresh_from_db()
    assert call.quality == {"caller": SUMMARY, "callee": relayed}
    assert (call.quality_mos, call.quality_relayed, call.quality_warned) == (3.2, True, True)
    assert [(role, summary) for _id, role, summary, _q in reported] == [
        ("caller", SUMMARY),
        ("callee", relayed),
    ]
    # The signal's call already holds the report.
    assert reported[1][3] == {"caller": SUMMARY, "callee": relayed}
    with pytest.raises(DirectCallError) as again:
        quality.report(call.pk, sam.pk, SUMMARY)
    assert again.value.code == errors.CALL_STATE
    call.refresh_from_db()
    assert call.quality["callee"] == relayed


@pytest.mark.django_db
def test_only_parties_of_answered_calls_report(answered):
    call, gil = answered["call"], answered["gil"]
    with pytest.raises(DirectCallError) as stranger:
        quality.report(call.pk, gil.pk, SUMMARY)
    assert stranger.value.code == errors.UNKNOWN_CALL
    with pytest.raises(DirectCallError) as unknown:
        quality.report("00000000-0000-0000-0000-000000000000", gil.pk, SUMMARY)
    assert unknown.value.code == errors.UNKNOWN_CALL
    Call.objects.filter(pk=call.pk).update(answered_at=None, status=CallStatus.DECLINED)
    with pytest.raises(DirectCallError) as unanswered:
        quality.report(call.pk, answered["jane"].pk, SUMMARY)
    assert unanswered.value.code == errors.CALL_STATE
    assert Call.objects.get(pk=call.pk).quality is None


@pytest.mark.django_db
def test_a_report_that_loses_its_race_is_written_on_the_row_it_lost_to(answered, monkeypatch):
    """The conditional UPDATE is made on what was read: a report stored in between (the
    other side's) is kept, and this one is merged with it on the next try."""
    call, jane, sam = answered["call"], answered["jane"], answered["sam"]
    real_filter = Call.objects.filter
    raced = []

    def filter_then_race(*args, **kwargs):
        rows = real_filter(*args, **kwargs)
        if not raced and kwargs == {"pk": call.pk}:
            raced.append(True)
            monkeypatch.setattr(Call.objects, "filter", real_filter)
            quality.report(call.pk, sam.pk, SUMMARY)  # lands between the read and the write
        return rows

    monkeypatch.setattr(Call.objects, "filter", filter_then_race)
    quality.report(call.pk, jane.pk, {**SUMMARY, "codec": "pcmu"})
    call.refresh_from_db()
    assert call.quality == {"caller": {**SUMMARY, "codec": "pcmu"}, "callee": SUMMARY}


@pytest.mark.django_db
def test_feedback_is_kept_once_per_side_of_an_ended_answered_call(answered):
    call, jane, sam, gil = (answered[k] for k in ("call", "jane", "sam", "gil"))
    posted = []
    signals.call_feedback_posted.connect(
        receiver := lambda sender, call, feedback, **kw: posted.append(feedback)
    )
    try:
        with pytest.raises(DirectCallError) as live:
            quality.post_feedback(call.pk, jane.pk, 4, [])
        assert live.value.code == errors.CALL_STATE
        Call.objects.filter(pk=call.pk).update(status=CallStatus.OVER, ended_at=timezone.now())
        quality.post_feedback(call.pk, jane.pk, 2, ["echo"])
        quality.post_feedback(call.pk, jane.pk, 3, ["echo", "choppy-audio"])  # replaces it
        quality.post_feedback(call.pk, sam.pk, 5, [])
        rows = {f.role: (f.score, f.issues, f.registration_id) for f in CallFeedback.objects.all()}
        assert rows == {
            "caller": (3, ["echo", "choppy-audio"], jane.pk),
            "callee": (5, [], sam.pk),
        }
        assert [f.score for f in posted] == [2, 3, 5]
        with pytest.raises(DirectCallError) as stranger:
            quality.post_feedback(call.pk, gil.pk, 5, [])
        assert stranger.value.code == errors.UNKNOWN_CALL
        answered["account"].ask_feedback = False
        answered["account"].save(update_fields=["ask_feedback"])
        with pytest.raises(DirectCallError) as off:
            quality.post_feedback(call.pk, sam.pk, 1, [])
        assert off.value.code == errors.FEEDBACK_DISABLED == "ERR_FEEDBACK_DISABLED"
    finally:
        signals.call_feedback_posted.disconnect(receiver)


# -- the frames ------------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("signaling")
async def test_the_hangup_carries_a_summary_call_ended_sees_it_the_other_side_reports_after(
    people, clients, reported
):
    ended = []

    def on_ended(sender, call, **kwargs):
        ended.append(call.quality)

    signals.call_ended.connect(on_ended)
    try:
        jane = await clients.sign_in(people["tutor_jane"])
        sam = await clients.sign_in(people["student_sam"])
        assert jane.ready["feedback"] is False
        call_id = await answered_call(jane, sam)
        await jane.send(type="hangup", call_id=call_id, quality=SUMMARY)
        await jane.next("state", call_id=call_id, status="over")
        await sam.next("state", call_id=call_id, status="over")
        assert ended == [{"caller": SUMMARY}]
        late = {**SUMMARY, "relayed": True, "localCandidate": "relay"}
        await sam.send(type="quality", call_id=call_id, quality=late, ref="q1")
        assert await sam.next("saved", ref="q1") == {
            "type": "saved",
            "ref": "q1",
            "call_id": call_id,
        }
        call = await database_sync_to_async(Call.objects.get)(pk=call_id)
        assert call.quality == {"caller": SUMMARY, "callee": late}
        assert call.quality_relayed is True
        assert [role for _id, role, _s, _q in reported] == ["caller", "callee"]
        # Refusals: a second report, a bad one, someone else's call.
        await sam.send(type="quality", call_id=call_id, quality=late, ref="q2")
        assert (await sam.next("error", ref="q2"))["code"] == "ERR_CALL_STATE"
        await sam.send(type="quality", call_id=call_id, quality={**late, "x": 1}, ref="q3")
        refused = await sam.next("error", ref="q3")
        assert refused["code"] == "ERR_BAD_FRAME" and "unknown field(s) x" in refused["message"]
        gil = await clients.sign_in(people["grocer_gil"])
        await gil.send(type="quality", call_id=call_id, quality=SUMMARY, ref="q4")
        assert (await gil.next("error", ref="q4"))["code"] == "ERR_UNKNOWN_CALL"
        # Feedback: this account does not ask for it.
        await sam.send(type="feedback", call_id=call_id, score=4, issues=[], ref="f1")
        assert (await sam.next("error", ref="f1"))["code"] == "ERR_FEEDBACK_DISABLED"
    finally:
        signals.call_ended.disconnect(on_ended)


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("signaling")
async def test_a_bad_summary_on_a_hangup_is_dropped_and_the_call_still_ends(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    call_id = await answered_call(jane, sam)
    await sam.send(type="hangup", call_id=call_id, quality={"mosAvg": "great"})
    await jane.next("state", call_id=call_id, status="over")
    await sam.next("state", call_id=call_id, status="over")
    assert [f for f in await sam.drain() if f["type"] == "error"] == []
    call = await database_sync_to_async(Call.objects.get)(pk=call_id)
    assert call.quality is None and call.status == CallStatus.OVER


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("signaling")
async def test_feedback_frames_on_an_account_that_asks(people, clients):
    account = people["tutor_jane"].account
    account.ask_feedback = True
    await database_sync_to_async(account.save)(update_fields=["ask_feedback"])
    jane = await clients.sign_in(people["tutor_jane"])
    sam = await clients.sign_in(people["student_sam"])
    assert jane.ready["feedback"] is True
    call_id = await answered_call(jane, sam)
    await jane.send(type="feedback", call_id=call_id, score=4, ref="early")
    assert (await jane.next("error", ref="early"))["code"] == "ERR_CALL_STATE"
    await jane.send(type="hangup", call_id=call_id)
    await jane.next("state", call_id=call_id, status="over")
    await asyncio.gather(
        jane.send(type="feedback", call_id=call_id, score=2, issues=["echo"], ref="f"),
        sam.send(type="feedback", call_id=call_id, score=5, ref="g"),
    )
    await jane.next("saved", ref="f")
    await sam.next("saved", ref="g")
    await jane.send(type="feedback", call_id=call_id, score=9, ref="h")
    assert (await jane.next("error", ref="h"))["code"] == "ERR_BAD_FRAME"
    rows = await database_sync_to_async(
        lambda: sorted(CallFeedback.objects.values_list("role", "score", "issues"))
    )()
    assert rows == [("callee", 5, []), ("caller", 2, ["echo"])]


# -- admin and dashboard ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_admin_call_page_shows_both_reports_escaped_and_the_ratings(answered, admin_client):
    call, jane, sam = answered["call"], answered["jane"], answered["sam"]
    quality.report(call.pk, jane.pk, {**SUMMARY, "warnings": ["high-rtt", "low-mos"]})
    Call.objects.filter(pk=call.pk).update(status=CallStatus.OVER, ended_at=timezone.now())
    quality.post_feedback(call.pk, sam.pk, 2, ["one-way-audio"])
    page = admin_client.get(reverse("admin:directcall_call_change", args=[call.pk]))
    html = page.content.decode()
    assert page.status_code == 200
    assert 'class="directcall-quality"' in html
    assert "4.31" in html and "38.5 ms" in html and "high-rtt, low-mos" in html
    assert "direct (host → host)" in html and "opus" in html
    assert "Callee (not reported)" in html
    assert "one-way audio" in html  # the feedback inline
    listing = admin_client.get(reverse("admin:directcall_call_changelist")).content.decode()
    assert "4.31" in listing
    ratings = admin_client.get(reverse("admin:directcall_callfeedback_changelist"))
    assert ratings.status_code == 200 and "one-way audio" in ratings.content.decode()
    account = admin_client.get(reverse("admin:directcall_account_change", args=[call.account_id]))
    assert 'name="ask_feedback"' in account.content.decode()


@pytest.mark.django_db
def test_the_dashboard_quality_panel(make_account, admin_client):
    account, _key = make_account()
    jane = make_registration(account, "tutor_jane", "Jane")
    sam = make_registration(account, "student_sam", "Sam")
    now = timezone.now()

    def ended_call(mos=None, relayed=None, warned=None, answered=True):
        report = {"caller": SUMMARY} if mos is not None else None
        return Call.objects.create(
            account=account,
            caller=jane,
            callee=sam,
            context="c",
            status=CallStatus.OVER if answered else CallStatus.MISSED,
            created_at=now - timedelta(minutes=5),
            answered_at=now - timedelta(minutes=4) if answered else None,
            ended_at=now,
            quality=report,
            quality_mos=mos,
            quality_relayed=relayed,
            quality_warned=warned,
        )

    for mos, relayed, warned in [
        (4.4, False, False),
        (4.2, True, False),
        (4.1, False, False),
        (3.9, True, True),
        (3.0, None, True),
    ]:
        ended_call(mos, relayed, warned)
    ended_call()  # answered, no report
    ended_call(answered=False)
    stats = dashboard.quality_stats(account)
    assert stats["answered"] == 6 and stats["reported"] == 5 and stats["with_mos"] == 5
    assert [(b["name"], b["count"]) for b in stats["bands"]] == [
        ("excellent", 1),
        ("great", 2),
        ("good", 1),
        ("fair", 0),
        ("degraded", 1),
    ]
    assert stats["relayed"] == 2 and stats["relay_known"] == 4 and stats["relayed_share"] == 0.5
    assert stats["warned"] == 2 and stats["warned_share"] == 0.4
    assert round(stats["mos_average"], 2) == 3.92
    page = admin_client.get(reverse("admin:directcall_call_dashboard")).content.decode()
    assert 'id="directcall-mos-distribution"' in page
    assert "2 (50.0%)" in page and "2 (40.0%)" in page and "3.92" in page
