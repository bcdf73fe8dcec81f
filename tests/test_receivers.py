"""The demo site's call_ended receiver (example_project/receivers.py): metered billing."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from django.utils import timezone

from directcall import requestdb
from directcall.models import Call, CallStatus, EndReason, Registration
from directcall.signals import call_ended
from example_project.models import CallCharge

pytestmark = pytest.mark.django_db


@pytest.fixture
def make_call(make_account):
    account, _key = make_account()
    sam = Registration.objects.create(account=account, cuid="student_sam", name="Sam")
    jane = Registration.objects.create(account=account, cuid="tutor_jane", name="Jane")

    def make(status: str, talk: timedelta | None) -> Call:
        now = timezone.now()
        return Call.objects.create(
            account=account,
            caller=sam,
            callee=jane,
            context="Sam is calling",
            status=status,
            end_reason=EndReason.USER_HANGUP,
            answered_at=now - talk if talk is not None else None,
            ended_at=now,
        )

    return make


def end(call: Call) -> None:
    """Send call_ended the way directcall.calls does after a final transition."""
    call_ended.send(
        sender=Call, call=call, status=call.status, reason=call.end_reason, duration=call.duration
    )


@pytest.mark.parametrize(
    "talk,minutes",
    [
        (timedelta(seconds=1), 1),
        (timedelta(seconds=60), 1),
        (timedelta(seconds=61), 2),
        (timedelta(minutes=10, seconds=30), 11),
    ],
)
def test_an_answered_call_is_billed_per_started_minute(make_call, talk, minutes, caplog):
    call = make_call(CallStatus.OVER, talk)
    with caplog.at_level(logging.INFO, logger="example_project.billing"):
        end(call)
    charge = CallCharge.objects.get()
    assert charge.call_id == call.pk and charge.account_id == call.account.account_id
    assert (charge.payer_cuid, charge.payee_cuid) == ("student_sam", "tutor_jane")
    assert charge.minutes == minutes and charge.amount_cents == minutes * 25
    assert f"billed call {call.pk}: student_sam pays {minutes} min" in caplog.text


def test_the_price_is_a_setting(make_call, settings):
    settings.DEMO_PRICE_PER_MINUTE_CENTS = 40
    end(make_call(CallStatus.OVER, timedelta(seconds=90)))
    assert CallCharge.objects.get().amount_cents == 80


@pytest.mark.parametrize(
    "status",
    [CallStatus.DECLINED, CallStatus.MISSED, CallStatus.CANCELLED, CallStatus.BUSY, "failed"],
)
def test_unanswered_calls_are_free(make_call, status):
    end(make_call(status, None))
    assert not CallCharge.objects.exists()


def test_a_call_is_billed_once(make_call):
    call = make_call(CallStatus.OVER, timedelta(seconds=30))
    end(call)
    end(call)
    assert CallCharge.objects.count() == 1


def test_the_bill_outlives_the_call_record(make_call):
    call = make_call(CallStatus.OVER, timedelta(seconds=30))
    end(call)
    call.delete()
    assert CallCharge.objects.get().minutes == 1


@pytest.mark.django_db(transaction=True)
async def test_a_request_threads_database_connection_is_closed_when_it_finishes(
    make_account, monkeypatch
):
    """Django's ASGI handler runs a request's views in a thread of its own that ends with
    it: the connection that thread opened is closed at the end, not left for the garbage
    collector (persistent connections: 70-90 open on PostgreSQL in a burst of sign-ins)."""
    import threading

    from asgiref.sync import sync_to_async
    from django.db import connections
    from django.db.backends.signals import connection_created

    from .asgi_http import init_body, post_init

    # Persistent connections, as in production (the tests' settings close each at once).
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 600)
    account, key = await sync_to_async(make_account)(require_clevertap=False)
    opened = []

    def created(sender, connection, **kwargs):
        opened.append((threading.get_ident(), connection))

    connection_created.connect(created)
    try:
        for _ in range(3):
            status, body = await post_init(init_body(account, key))
            assert status == 200, body
    finally:
        connection_created.disconnect(created)
        # make_account's thread (asgiref's shared one) opened a persistent connection too:
        # closed, so that later tests without database access do not find it open. On
        # PostgreSQL the requests' connection is parked for the next request: closed too.
        await sync_to_async(connections.close_all)()
        requestdb.close_parked()
    here = threading.get_ident()
    in_request_threads = [wrapper for thread, wrapper in opened if thread != here]
    assert len(in_request_threads) == 3  # a thread, and so a connection, per request
    # Closed, or parked (on PostgreSQL): no request thread's wrapper holds one.
    assert all(wrapper.connection is None for wrapper in in_request_threads)
