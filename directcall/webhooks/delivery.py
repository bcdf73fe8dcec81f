"""One attempt of a webhook delivery, its log entry, and what comes next.

An attempt is claimed with a conditional UPDATE (``attempts`` from n-1 to n while
pending), so a task that was queued twice (a retry and a "send again") sends once. A 2xx
answer delivers; anything else — another status (3xx included: redirects are not
followed), a timeout, a refused connection — is retried after an exponential backoff with
jitter until the delivery's ``retry_until``, then the delivery is failed. A URL refused
outright (a non-public address) fails at once.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from ..conf import get_settings
from . import outbound, signing
from .models import DeliveryStatus, WebhookAttempt, WebhookDelivery
from .outbox import enqueue

logger = logging.getLogger("directcall.webhooks")

USER_AGENT = "directcall-webhooks/1"
LEASE_MARGIN = 60  # seconds beyond WEBHOOK_TIMEOUT before a running attempt counts as lost


def backoff(attempt: int) -> float:
    """Seconds to wait after failed attempt ``attempt``: doubling from WEBHOOK_RETRY_DELAY
    up to WEBHOOK_RETRY_MAX_DELAY, then a random part of it taken off (equal jitter), so
    that deliveries failing together do not come back together."""
    conf = get_settings()
    delay = min(conf.WEBHOOK_RETRY_MAX_DELAY, conf.WEBHOOK_RETRY_DELAY * 2 ** (attempt - 1))
    return random.uniform(delay / 2, delay)  # noqa: S311 (jitter, not a secret)


def attempt(delivery_id: int, number: int) -> str:
    """Make attempt ``number`` of a delivery if it is still due; return the outcome.

    ``"skipped"`` (delivered, failed, or this attempt already made by another task),
    ``"succeeded"``, ``"retrying"`` or ``"failed"``.
    """
    conf = get_settings()
    # While the attempt runs, next_attempt_at is its lease: should the worker die in the
    # middle, `directcall_webhooks requeue` finds the delivery overdue after that.
    lease = timezone.now() + timedelta(seconds=conf.WEBHOOK_TIMEOUT + LEASE_MARGIN)
    claimed = WebhookDelivery.objects.filter(
        pk=delivery_id, status=DeliveryStatus.PENDING, attempts=number - 1
    ).update(attempts=number, next_attempt_at=lease)
    if not claimed:
        return "skipped"
    delivery = WebhookDelivery.objects.select_related("message", "endpoint").get(pk=delivery_id)
    endpoint, message = delivery.endpoint, delivery.message
    body = message.body.encode()
    started_at = timezone.now()
    started = time.monotonic()
    code, excerpt, error, final = None, "", "", False
    if not endpoint.is_active:
        error, final = "endpoint deactivated", True
    else:
        headers = {
            **signing.headers(endpoint.signing_secrets(started_at), message.id, body),
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        try:
            answer = outbound.post(
                endpoint.url, body, headers, conf.WEBHOOK_TIMEOUT, conf.WEBHOOK_ALLOW_PRIVATE
            )
        except outbound.RefusedURL as refused:
            error, final = f"refused: {refused}", True
        except outbound.DeliveryFailed as failed:
            error = str(failed)
        else:
            code, excerpt = answer.status, answer.excerpt
            if not 200 <= code < 300:
                error = f"HTTP {code}"
    latency = int((time.monotonic() - started) * 1000)
    return _record(delivery, number, started_at, code, latency, error[:200], excerpt, final)


def _record(
    delivery: WebhookDelivery,
    number: int,
    started_at: datetime,
    code: int | None,
    latency: int,
    error: str,
    excerpt: str,
    final: bool,
) -> str:
    now = timezone.now()
    fields = {
        "last_response_code": code,
        "last_latency_ms": latency,
        "last_error": error,
        "next_attempt_at": None,
    }
    if not error:
        outcome, fields = "succeeded", {**fields, "status": DeliveryStatus.SUCCEEDED}
        fields["delivered_at"] = now
    elif final or now >= delivery.retry_until:
        outcome, fields = "failed", {**fields, "status": DeliveryStatus.FAILED}
    else:
        outcome = "retrying"
        next_at = min(now + timedelta(seconds=backoff(number)), delivery.retry_until)
        fields["next_attempt_at"] = next_at
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery,
            number=number,
            started_at=started_at,
            response_code=code,
            latency_ms=latency,
            error=error,
            response_excerpt=excerpt,
        )
        WebhookDelivery.objects.filter(pk=delivery.pk, attempts=number).update(**fields)
        if outcome == "retrying":
            enqueue(delivery.pk, number + 1, run_after=fields["next_attempt_at"])
    log = logger.info if outcome == "succeeded" else logger.warning
    log(
        "webhook %s (%s) to endpoint %s, attempt %d: %s%s",
        delivery.message_id,
        delivery.message.event_type,
        delivery.endpoint_id,
        number,
        outcome,
        f" ({error})" if error else "",
    )
    return outcome


def send_again(deliveries: Iterable[WebhookDelivery]) -> int:
    """Queue each delivery once more, whatever its state, with a fresh retry window.

    The message keeps its id: a receiver that already has it can tell it is no new event.
    """
    window = timedelta(seconds=get_settings().WEBHOOK_RETRY_WINDOW)
    count = 0
    for delivery in deliveries:
        now = timezone.now()
        with transaction.atomic():
            WebhookDelivery.objects.filter(pk=delivery.pk).update(
                status=DeliveryStatus.PENDING, retry_until=now + window, next_attempt_at=now
            )
            attempts = WebhookDelivery.objects.values_list("attempts", flat=True).get(
                pk=delivery.pk
            )
            enqueue(delivery.pk, attempts + 1)
        count += 1
    return count
