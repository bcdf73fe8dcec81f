"""The admin of webhooks and server keys: secrets shown once, the delivery log, send again."""

from __future__ import annotations

import re

import pytest
from django.db import transaction
from django.urls import reverse
from django_tasks_db.models import DBTaskResult

from directcall.models import Account
from directcall.webhooks import outbox
from directcall.webhooks.models import (
    DeliveryStatus,
    Event,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)


def _shown(response) -> list[str]:
    return re.findall(r'class="directcall-shown-once">([^<]+)<', response.content.decode())


@pytest.fixture
def endpoint(make_account) -> WebhookEndpoint:
    account, _key = make_account(name="Hooked")
    return WebhookEndpoint.objects.create(account=account, url="https://hooks.example.com/in")


def test_add_an_endpoint_shows_its_secret_once(admin_client, make_account):
    account, _key = make_account()
    response = admin_client.post(
        reverse("admin:directcall_webhookendpoint_add"),
        {
            "account": account.pk,
            "url": "https://hooks.example.com/<script>",
            "description": "CRM",
            "events": ["call.ended", "registration.created"],
            "is_active": "on",
        },
    )
    assert response.status_code == 200, response.content[:500]
    endpoint = WebhookEndpoint.objects.get()
    assert _shown(response) == [endpoint.secret] and endpoint.secret.startswith("whsec_")
    assert "no-store" in response["Cache-Control"]
    assert "<script>" not in response.content.decode()  # the URL is escaped
    assert endpoint.events == ["call.ended", "registration.created"]
    assert Account.objects.get(pk=account.pk).has_webhooks
    page = admin_client.get(reverse("admin:directcall_webhookendpoint_change", args=[endpoint.pk]))
    assert endpoint.secret not in page.content.decode()


def test_the_add_form_starts_with_every_event_ticked(admin_client):
    """As webhooks.md says and the model's default is: a new endpoint gets every event."""
    from directcall.webhooks.models import all_events

    page = admin_client.get(reverse("admin:directcall_webhookendpoint_add")).content.decode()
    for event in all_events():
        assert re.search(rf"<input[^>]*value=\"{re.escape(event)}\"[^>]*checked", page), event


def test_an_endpoint_url_must_be_http(admin_client, make_account):
    account, _key = make_account()
    response = admin_client.post(
        reverse("admin:directcall_webhookendpoint_add"),
        {"account": account.pk, "url": "ftp://hooks.example.com/", "events": ["call.ended"]},
    )
    assert response.status_code == 200 and not WebhookEndpoint.objects.exists()


def test_rotate_shows_the_new_secret_and_keeps_the_old_one_for_the_grace(admin_client, endpoint):
    old = endpoint.secret
    response = admin_client.post(
        reverse("admin:directcall_webhookendpoint_changelist"),
        {"action": "rotate_secrets", "_selected_action": [endpoint.pk]},
    )
    endpoint.refresh_from_db()
    assert _shown(response) == [endpoint.secret] != [old]
    assert endpoint.previous_secret == old
    assert endpoint.signing_secrets() == [endpoint.secret, old]


def test_the_delivery_log_and_send_again(admin_client, endpoint):
    with transaction.atomic():
        outbox.emit(Account.objects.get(pk=endpoint.account_id), Event.CALL_ENDED, {"x": "<b>"})
    delivery = WebhookDelivery.objects.get()
    WebhookDelivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.FAILED, attempts=3, last_response_code=500, last_latency_ms=12
    )
    WebhookAttempt.objects.create(
        delivery=delivery,
        number=3,
        started_at=delivery.created_at,
        response_code=500,
        latency_ms=12,
        error="HTTP 500",
        response_excerpt="<h1>oops</h1>",
    )
    listing = admin_client.get(reverse("admin:directcall_webhookdelivery_changelist"))
    assert listing.status_code == 200 and delivery.message_id in listing.content.decode()
    detail = admin_client.get(
        reverse("admin:directcall_webhookdelivery_change", args=[delivery.pk])
    ).content.decode()
    assert "&lt;h1&gt;oops&lt;/h1&gt;" in detail and "<h1>oops" not in detail
    assert "HTTP 500" in detail
    queued = DBTaskResult.objects.count()
    response = admin_client.post(
        reverse("admin:directcall_webhookdelivery_changelist"),
        {"action": "send_again", "_selected_action": [delivery.pk]},
        follow=True,
    )
    assert "Queued 1 delivery again." in response.content.decode()
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING
    assert DBTaskResult.objects.count() == queued + 1
    task = DBTaskResult.objects.order_by("-enqueued_at").first()
    assert task.args_kwargs["args"] == [delivery.pk, 4]  # the next attempt, same message id


def test_a_server_key_is_issued_in_the_admin_and_shown_once(admin_client, api_client, make_account):
    account, _key = make_account()
    response = admin_client.post(
        reverse("admin:directcall_account_changelist"),
        {"action": "rotate_server_keys", "_selected_action": [account.pk]},
    )
    (key,) = _shown(response)
    assert key.startswith("dcsk_")
    ok = api_client.get("/directcall/v1/calls", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert ok.status_code == 200
    page = admin_client.get(reverse("admin:directcall_account_change", args=[account.pk]))
    assert key.partition(".")[2] not in page.content.decode()
    admin_client.post(
        reverse("admin:directcall_account_changelist"),
        {"action": "revoke_server_keys", "_selected_action": [account.pk]},
    )
    refused = api_client.get("/directcall/v1/calls", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert refused.status_code == 401


@pytest.mark.parametrize("model", ["webhookendpoint", "webhookdelivery"])
def test_the_webhook_changelists_render(admin_client, endpoint, model):
    assert admin_client.get(reverse(f"admin:directcall_{model}_changelist")).status_code == 200
