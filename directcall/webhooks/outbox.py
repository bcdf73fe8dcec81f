"""The transactional outbox: an event written as rows in the transaction that made it.

:func:`emit` is called inside the transaction of a state change (a call transition, a new
registration). It writes the message and one delivery per endpoint that wants the event,
and queues a delivery task for each: in the same transaction when the task backend keeps
its queue in this database (django-tasks-db's ``DatabaseBackend``: the state change, the
outbox rows and the queued tasks commit together or not at all), otherwise once the
transaction commits. An account without an active endpoint (``Account.has_webhooks``,
read from the row already loaded) costs no query at all.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timedelta
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from ..conf import get_settings
from .models import Event, WebhookDelivery, WebhookEndpoint, WebhookMessage

logger = logging.getLogger("directcall.webhooks")


def envelope(event_type: str, data: dict[str, Any], now: datetime) -> str:
    """The body of a message: ``{"type", "timestamp", "data"}`` as compact JSON."""
    body = {"type": event_type, "timestamp": now.isoformat(), "data": data}
    return json.dumps(body, cls=DjangoJSONEncoder, separators=(",", ":"), ensure_ascii=False)


def emit(account: Any, event_type: Event | str, data: dict[str, Any] | None = None) -> int:
    """Queue ``event_type`` for the account's endpoints that want it; return how many.

    Call inside the transaction of the change the event reports; ``data`` is the event's
    object (``data`` of the body). Returns at once, with no query, when the account has
    no active endpoint.
    """
    if not account.has_webhooks:
        return 0
    endpoints = [e for e in WebhookEndpoint.objects.filter(account=account) if e.wants(event_type)]
    if not endpoints:
        return 0
    now = timezone.now()
    message = WebhookMessage.objects.create(
        account=account, event_type=event_type, body=envelope(event_type, data or {}, now)
    )
    window = timedelta(seconds=get_settings().WEBHOOK_RETRY_WINDOW)
    deliveries = WebhookDelivery.objects.bulk_create(
        WebhookDelivery(
            message=message,
            endpoint=endpoint,
            retry_until=now + window,
            next_attempt_at=now,
            created_at=now,
        )
        for endpoint in endpoints
    )
    for delivery in deliveries:
        enqueue(delivery.pk, 1)
    return len(deliveries)


def enqueue(delivery_id: int, attempt: int, run_after: datetime | None = None) -> None:
    """Queue attempt ``attempt`` of a delivery (at ``run_after``) with the task backend.

    With a database task backend the task row is written now, in the caller's transaction;
    with any other, once that transaction commits (never a task for a rolled-back event).
    """
    from .tasks import deliver_webhook  # its decorator reads TASKS: not at import time

    task = deliver_webhook
    backend = task.get_backend()
    if run_after is not None:
        if not backend.supports_defer:
            # ImmediateBackend and the like cannot wait: the delivery stays pending (the
            # admin's "send again" tries it). System check directcall.W010 says so.
            logger.warning(
                "webhook delivery %s not retried: the task backend %r cannot defer tasks",
                delivery_id,
                backend.alias,
            )
            return
        task = task.using(run_after=run_after)
    if _in_database(backend):
        task.enqueue(delivery_id, attempt)
    else:
        transaction.on_commit(lambda: task.enqueue(delivery_id, attempt))


def _in_database(backend: Any) -> bool:
    try:
        from django_tasks_db.backend import DatabaseBackend
    except ImportError:  # pragma: no cover - django-tasks-db is a dependency
        return False
    return isinstance(backend, DatabaseBackend)


def emit_call(call: Any) -> int:
    """Queue the event of a call's new state (``call.initiated`` … ``call.ended``).

    Call it where a transition is known to have won, inside its transaction, with the call
    as the winning statement left it and its ``account``, ``caller`` and ``callee`` loaded:
    no query when the account has no active endpoint.
    """
    if not call.account.has_webhooks:
        return 0
    from ..api.records import CallSerializer  # the API's shape: one definition of a call
    from ..models import CallStatus

    event = {
        CallStatus.INITIATED: Event.CALL_INITIATED,
        CallStatus.RINGING: Event.CALL_RINGING,
        CallStatus.ANSWERED: Event.CALL_ANSWERED,
    }.get(call.status, Event.CALL_ENDED)
    return emit(call.account, event, dict(CallSerializer(call).data))


def emit_call_quality(call: Any, role: str) -> int:
    """Queue ``call.quality``: ``role``'s summary, stored after the call ended.

    Call it inside the transaction that stored the summary, with the call as read after
    that write (its ``account``, ``caller`` and ``callee`` loaded). ``data`` is the call
    (the API's shape, every side's summary so far) and ``reportedBy``, the side whose
    summary this is. No query when the account has no active endpoint.
    """
    if not call.account.has_webhooks:
        return 0
    from ..api.records import CallSerializer

    data = {**CallSerializer(call).data, "reportedBy": role}
    return emit(call.account, Event.CALL_QUALITY, data)
