"""Keep ``Account.has_webhooks`` in step with the account's endpoints.

Changes made with ``QuerySet.update()`` send no signals: call :func:`refresh_has_webhooks`
yourself then.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Exists, OuterRef
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from .models import WebhookEndpoint


def refresh_has_webhooks(account_id: int) -> None:
    """Set the account's ``has_webhooks`` from its endpoints, in one UPDATE."""
    from ..models import Account

    active = WebhookEndpoint.objects.filter(account_id=OuterRef("pk"), is_active=True)
    Account.objects.filter(pk=account_id).update(has_webhooks=Exists(active))


@receiver(post_save, sender=WebhookEndpoint, dispatch_uid="directcall.webhook_endpoint_saved")
def endpoint_saved(sender: type, instance: WebhookEndpoint, **kwargs: Any) -> None:
    """An endpoint added, switched on or off: the account's flag follows."""
    refresh_has_webhooks(instance.account_id)


@receiver(post_delete, sender=WebhookEndpoint, dispatch_uid="directcall.webhook_endpoint_deleted")
def endpoint_deleted(sender: type, instance: WebhookEndpoint, **kwargs: Any) -> None:
    """An endpoint removed: the account's flag follows."""
    refresh_has_webhooks(instance.account_id)
