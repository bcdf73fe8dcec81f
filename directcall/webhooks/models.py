"""Webhook endpoints of an account, and the outbox of their deliveries (docs/webhooks.md).

An event becomes one :class:`WebhookMessage` (its id, type and exact body) and one
:class:`WebhookDelivery` per endpoint that wants it, written in the transaction that made
the event; every try of a delivery is a :class:`WebhookAttempt` in the delivery log.
"""

from __future__ import annotations

import base64
import secrets
from datetime import datetime, timedelta

from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..conf import get_settings

SECRET_PREFIX = "whsec_"  # noqa: S105 (the prefix of every secret, not one)
MESSAGE_ID_PREFIX = "msg_"


class Event(models.TextChoices):
    """The event types a webhook endpoint may subscribe to."""

    CALL_INITIATED = "call.initiated", _("call initiated")
    CALL_RINGING = "call.ringing", _("call ringing")
    CALL_ANSWERED = "call.answered", _("call answered")
    CALL_ENDED = "call.ended", _("call ended")
    CALL_QUALITY = "call.quality", _("call quality reported")
    REGISTRATION_CREATED = "registration.created", _("registration created")


def all_events() -> list[str]:
    """Every event type (a new endpoint's default)."""
    return [event.value for event in Event]


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: ``whsec_`` and 32 random bytes in base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def new_message_id() -> str:
    """A message id (``webhook-id``): ``msg_`` and 144 random bits, URL-safe, no dots."""
    return MESSAGE_ID_PREFIX + secrets.token_urlsafe(18)


class WebhookEndpoint(models.Model):
    """A URL of the host's that receives an account's events, signed with its secret."""

    account = models.ForeignKey(
        "directcall.Account",
        on_delete=models.CASCADE,
        related_name="webhook_endpoints",
        verbose_name=_("account"),
    )
    url = models.URLField(_("URL"), max_length=2048)
    description = models.CharField(_("description"), max_length=200, blank=True)
    events = models.JSONField(_("events"), default=all_events)
    is_active = models.BooleanField(_("active"), default=True)
    # Kept as it is, not hashed: signing needs the secret itself.
    secret = models.CharField(max_length=80, editable=False)
    secret_created_at = models.DateTimeField(_("secret created"), null=True, editable=False)
    # The secret before the last rotation; it signs too until previous_secret_expires_at.
    previous_secret = models.CharField(max_length=80, blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(
        _("previous secret valid until"), null=True, blank=True, editable=False
    )
    created_at = models.DateTimeField(_("created"), auto_now_add=True)

    class Meta:
        verbose_name = _("webhook endpoint")
        verbose_name_plural = _("webhook endpoints")
        ordering = ["account", "url"]

    def __str__(self) -> str:
        return self.url

    def save(self, *args, **kwargs) -> None:
        """Save; a new endpoint gets a secret (:meth:`set_new_secret` shows it)."""
        if not self.secret:
            self.set_new_secret()
        super().save(*args, **kwargs)

    def set_new_secret(self) -> str:
        """A fresh secret (the current one, if any, keeps signing for the grace). Call save()."""
        now = timezone.now()
        if self.secret:
            self.previous_secret = self.secret
            grace = timedelta(seconds=get_settings().WEBHOOK_SECRET_GRACE)
            self.previous_secret_expires_at = now + grace
        self.secret = new_webhook_secret()
        self.secret_created_at = now
        return self.secret

    def rotate_secret(self) -> str:
        """Replace the secret and return the new one; the old one signs too for a while."""
        secret = self.set_new_secret()
        self.save(
            update_fields=[
                "secret",
                "secret_created_at",
                "previous_secret",
                "previous_secret_expires_at",
            ]
        )
        return secret

    def signing_secrets(self, now: datetime | None = None) -> list[str]:
        """The secrets a delivery is signed with now: the current one, the previous one
        while it is still valid."""
        now = now or timezone.now()
        keys = [self.secret]
        expires = self.previous_secret_expires_at
        if self.previous_secret and expires is not None and now < expires:
            keys.append(self.previous_secret)
        return keys

    def wants(self, event_type: str) -> bool:
        """Whether this endpoint subscribed to ``event_type``."""
        return self.is_active and isinstance(self.events, list) and event_type in self.events


class WebhookMessage(models.Model):
    """One event of an account, with the exact body every endpoint is sent."""

    id = models.CharField(
        _("id"), primary_key=True, max_length=40, default=new_message_id, editable=False
    )
    account = models.ForeignKey(
        "directcall.Account",
        on_delete=models.CASCADE,
        related_name="+",
        verbose_name=_("account"),
    )
    event_type = models.CharField(_("event"), max_length=40, choices=Event)
    body = models.TextField(_("body"))
    created_at = models.DateTimeField(_("created"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("webhook message")
        verbose_name_plural = _("webhook messages")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.event_type} {self.id}"


class DeliveryStatus(models.TextChoices):
    """Where a delivery stands."""

    PENDING = "pending", _("pending")
    SUCCEEDED = "succeeded", _("succeeded")
    FAILED = "failed", _("failed")


class WebhookDelivery(models.Model):
    """One message to one endpoint: the outbox row, and its state as it is tried."""

    message = models.ForeignKey(
        WebhookMessage,
        on_delete=models.CASCADE,
        related_name="deliveries",
        verbose_name=_("message"),
    )
    endpoint = models.ForeignKey(
        WebhookEndpoint,
        on_delete=models.CASCADE,
        related_name="deliveries",
        verbose_name=_("endpoint"),
    )
    status = models.CharField(
        _("status"),
        max_length=16,
        choices=DeliveryStatus,
        default=DeliveryStatus.PENDING,
        db_index=True,
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    # Tried again until then, then failed (WEBHOOK_RETRY_WINDOW after the event, or after
    # "send again").
    retry_until = models.DateTimeField(_("retried until"))
    next_attempt_at = models.DateTimeField(_("next attempt"), null=True, blank=True)
    last_response_code = models.PositiveIntegerField(_("response code"), null=True, blank=True)
    last_latency_ms = models.PositiveIntegerField(_("latency (ms)"), null=True, blank=True)
    last_error = models.CharField(_("last error"), max_length=200, blank=True)
    delivered_at = models.DateTimeField(_("delivered"), null=True, blank=True)
    created_at = models.DateTimeField(_("created"), default=timezone.now, db_index=True)

    class Meta:
        verbose_name = _("webhook delivery")
        verbose_name_plural = _("webhook deliveries")
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.message_id} → {self.endpoint_id} ({self.status})"


class WebhookAttempt(models.Model):
    """One try of a delivery: when, the answer's status code, how long it took, what failed."""

    delivery = models.ForeignKey(
        WebhookDelivery,
        on_delete=models.CASCADE,
        related_name="attempt_log",
        verbose_name=_("delivery"),
    )
    number = models.PositiveIntegerField(_("attempt"))
    started_at = models.DateTimeField(_("started"))
    response_code = models.PositiveIntegerField(_("response code"), null=True, blank=True)
    latency_ms = models.PositiveIntegerField(_("latency (ms)"))
    error = models.CharField(_("error"), max_length=200, blank=True)
    # The start of the answer's body, for the admin (escaped there like any text).
    response_excerpt = models.CharField(_("response"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("webhook attempt")
        verbose_name_plural = _("webhook attempts")
        ordering = ["delivery", "number"]

    def __str__(self) -> str:
        return f"#{self.number} {self.response_code or self.error}"
