"""Admin for webhook endpoints (secrets shown once) and the delivery log ("send again")."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import delivery
from .models import Event, WebhookAttempt, WebhookDelivery, WebhookEndpoint, all_events


def render_shown_once(
    model_admin: admin.ModelAdmin,
    request: HttpRequest,
    title: str,
    warning: str,
    value_label: str,
    rows: list[dict],
) -> TemplateResponse:
    """A page showing new secrets once (``rows``: label, url, value); never cached."""
    opts = model_admin.model._meta
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": opts,
        "title": title,
        "warning": warning,
        "object_label": opts.verbose_name.capitalize(),
        "value_label": value_label,
        "rows": rows,
        "back_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
    }
    response = TemplateResponse(request, "directcall/admin/shown_once.html", context)
    response["Cache-Control"] = "no-store"
    return response


class WebhookEndpointForm(forms.ModelForm):
    """The events as checkboxes; the URL must be http(s)."""

    url = forms.URLField(
        label=_("URL"),
        max_length=2048,
        assume_scheme="https",
        widget=forms.URLInput(attrs={"size": 80}),
    )
    events = forms.MultipleChoiceField(
        choices=Event.choices,
        widget=forms.CheckboxSelectMultiple,
        label=_("Events"),
        initial=all_events,  # a new endpoint gets every event, as the model's default
    )

    class Meta:
        model = WebhookEndpoint
        fields = ["account", "url", "description", "events", "is_active"]

    def clean_url(self) -> str:
        """Only http and https (the address itself is checked at each delivery)."""
        url = self.cleaned_data["url"]
        if not url.lower().startswith(("http://", "https://")):
            raise forms.ValidationError(_("Webhook URLs are http:// or https://."))
        return url


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """Endpoints per account: a new or rotated secret is shown once, on a page of its own."""

    form = WebhookEndpointForm
    list_display = ["url", "account", "is_active", "secret_created_at", "created_at"]
    list_filter = ["is_active", "account"]
    search_fields = ["url", "description"]
    list_select_related = ["account"]
    readonly_fields = ["secret_created_at", "previous_secret_expires_at", "created_at"]
    actions = ["rotate_secrets"]

    def response_add(self, request: HttpRequest, obj: WebhookEndpoint, post_url_continue=None):
        """Show the new endpoint's secret (the receiver needs it to verify signatures)."""
        return self._show_secrets(request, [obj], _("New webhook secret"))

    @admin.action(description=_("Rotate secret of selected endpoints (shows the new ones once)"))
    def rotate_secrets(
        self, request: HttpRequest, queryset: QuerySet[WebhookEndpoint]
    ) -> HttpResponse:
        """New secrets; the old ones keep signing too for WEBHOOK_SECRET_GRACE seconds."""
        endpoints = list(queryset)
        for endpoint in endpoints:
            endpoint.rotate_secret()
            self.log_change(request, endpoint, [{"changed": {"fields": ["Secret (rotated)"]}}])
        return self._show_secrets(request, endpoints, _("Rotated webhook secrets"))

    def _show_secrets(
        self, request: HttpRequest, endpoints: list[WebhookEndpoint], title: str
    ) -> TemplateResponse:
        rows = [
            {
                "label": endpoint.url,
                "url": reverse("admin:directcall_webhookendpoint_change", args=[endpoint.pk]),
                "value": endpoint.secret,
            }
            for endpoint in endpoints
        ]
        warning = _(
            "Copy each secret into the receiver's configuration now: it will not be shown "
            "again. After a rotation deliveries are signed with the old secret too, until "
            "the grace period ends."
        )
        return render_shown_once(self, request, title, warning, _("secret"), rows)


class WebhookAttemptInline(admin.TabularInline):
    """Every try of a delivery, read-only."""

    model = WebhookAttempt
    extra = 0
    can_delete = False
    fields = ["number", "started_at", "response_code", "latency_ms", "error", "response_excerpt"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(admin.ModelAdmin):
    """The delivery log: attempts, last response code and latency; "send again"."""

    list_display = [
        "created_at",
        "event",
        "message_id",
        "endpoint",
        "status",
        "attempts",
        "last_response_code",
        "last_latency_ms",
        "next_attempt_at",
    ]
    list_filter = ["status", "message__event_type", "endpoint__account", "created_at"]
    search_fields = ["=message__id", "endpoint__url"]
    list_select_related = ["message", "endpoint"]
    date_hierarchy = "created_at"
    inlines = [WebhookAttemptInline]
    actions = ["send_again"]
    fields = [
        "message",
        "endpoint",
        "status",
        "attempts",
        "retry_until",
        "next_attempt_at",
        "last_response_code",
        "last_latency_ms",
        "last_error",
        "delivered_at",
        "created_at",
        "body",
    ]
    readonly_fields = fields

    @admin.display(description=_("event"), ordering="message__event_type")
    def event(self, obj: WebhookDelivery) -> str:
        """The message's event type."""
        return obj.message.event_type

    @admin.display(description=_("body"))
    def body(self, obj: WebhookDelivery) -> str:
        """The exact JSON body sent (escaped by the admin like any text)."""
        return obj.message.body

    @admin.action(description=_("Send again"), permissions=["change"])
    def send_again(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]) -> None:
        """Queue the selected deliveries once more (same message id, a new retry window)."""
        count = delivery.send_again(queryset)
        for item in queryset:
            self.log_change(request, item, [{"changed": {"fields": ["Sent again"]}}])
        self.message_user(
            request,
            ngettext("Queued %d delivery again.", "Queued %d deliveries again.", count) % count,
            messages.SUCCESS,
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        # Read-only; "send again" needs the change permission, checked by the action.
        return super().has_change_permission(request, obj) and obj is None
