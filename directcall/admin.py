"""Admin for accounts (keys shown once), registrations, blocks and the read-only call log."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import models
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import dashboard, export
from .models import Account, Block, Call, CallFeedback, Identity, Registration
from .webhooks.admin import render_shown_once  # also registers the webhook admin


def format_rate(value: float | None) -> str:
    """A fraction as a percentage with one decimal (``66.7%``); an em dash for none."""
    return "—" if value is None else f"{value:.1%}"


def format_duration(value: timedelta | None) -> str:
    """``h:mm:ss`` (or ``m:ss``) for a talk time; an em dash for none."""
    if value is None:
        return "—"
    seconds = int(value.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    """Accounts: a new or rotated API key or signing secret is shown once, on a page of its own.

    Saving an account that goes inactive or from page to verified identities, and rotating or
    revoking keys or secrets, revokes its live sessions (``directcall.receivers``).
    """

    list_display = [
        "name",
        "account_id",
        "identity",
        "is_active",
        "require_clevertap",
        "key_state",
        "created_at",
    ]
    list_filter = ["identity", "is_active", "require_clevertap"]
    search_fields = ["name", "account_id"]
    readonly_fields = [
        "account_id",
        "key_prefix",
        "key_created_at",
        "key_revoked_at",
        "signing_secret_created_at",
        "server_key_created_at",
        "has_webhooks",
        "created_at",
    ]
    actions = [
        "rotate_keys",
        "revoke_keys",
        "rotate_signing_secrets",
        "rotate_server_keys",
        "revoke_server_keys",
    ]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = [
        (
            None,
            {"fields": ["name", "account_id", "is_active", "require_clevertap", "ask_feedback"]},
        ),
        (
            _("Security"),
            {
                "fields": [
                    "identity",
                    "allowed_origins",
                    "key_prefix",
                    "key_created_at",
                    "key_revoked_at",
                    "signing_secret_created_at",
                    "server_key_created_at",
                    "has_webhooks",
                ]
            },
        ),
        (_("Branding"), {"fields": ["logo_url", "background_color", "text_color", "button_theme"]}),
        (_("Timing"), {"fields": ["ring_timeout", "max_call_duration"]}),
        (None, {"fields": ["created_at"]}),
    ]

    @admin.display(description=_("API key"))
    def key_state(self, obj: Account) -> str:
        """The key's public prefix, or that it is revoked."""
        return _("revoked") if obj.key_is_revoked else f"{obj.key_prefix}.…"

    def save_model(self, request: HttpRequest, obj: Account, form, change: bool) -> None:
        """A new account gets its first key and signing secret, kept on the object to show once."""
        if not change:
            obj._new_api_key = obj.set_new_api_key()
            obj._new_signing_secret = obj.set_new_signing_secret()
        super().save_model(request, obj, form, change)

    def response_add(self, request: HttpRequest, obj: Account, post_url_continue=None):
        """Show the new key and secret instead of redirecting: they are never shown again."""
        row = {"account": obj, "key": obj._new_api_key, "secret": obj._new_signing_secret}
        return self._render_keys(request, [row], title=_("New API key and signing secret"))

    @admin.action(description=_("Rotate API key of selected accounts (shows the new keys once)"))
    def rotate_keys(self, request: HttpRequest, queryset: QuerySet[Account]) -> HttpResponse:
        """Replace each selected account's key; the old keys stop working at once."""
        rows = [{"account": account, "key": account.rotate_api_key()} for account in queryset]
        for row in rows:
            self.log_change(
                request, row["account"], [{"changed": {"fields": ["API key (rotated)"]}}]
            )
        return self._render_keys(request, rows, title=_("Rotated API keys"))

    @admin.action(
        description=_("Rotate user-token signing secret of selected accounts (shows them once)")
    )
    def rotate_signing_secrets(
        self, request: HttpRequest, queryset: QuerySet[Account]
    ) -> HttpResponse:
        """Replace each selected account's signing secret; tokens signed with the old one fail."""
        rows = [
            {"account": account, "secret": account.rotate_signing_secret()} for account in queryset
        ]
        for row in rows:
            change = [{"changed": {"fields": ["Signing secret (rotated)"]}}]
            self.log_change(request, row["account"], change)
        return self._render_keys(request, rows, title=_("Rotated signing secrets"))

    @admin.action(description=_("Revoke API key of selected accounts"))
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[Account]) -> None:
        """Make each selected account's key unusable until it is rotated."""
        count = 0
        for account in queryset:
            account.revoke_api_key()
            self.log_change(request, account, [{"changed": {"fields": ["API key (revoked)"]}}])
            count += 1
        self.message_user(
            request,
            ngettext("Revoked %d API key.", "Revoked %d API keys.", count) % count,
            messages.SUCCESS,
        )

    @admin.action(description=_("Issue a new server key for the calls API (shows it once)"))
    def rotate_server_keys(self, request: HttpRequest, queryset: QuerySet[Account]) -> HttpResponse:
        """A new server key for each selected account; the previous one stops working."""
        rows = []
        for account in queryset:
            key = account.rotate_server_key()
            self.log_change(request, account, [{"changed": {"fields": ["Server key (new)"]}}])
            url = reverse("admin:directcall_account_change", args=[account.pk])
            rows.append({"label": str(account), "url": url, "value": key})
        warning = _(
            "Copy each server key now: it is stored only as a hash and will not be shown "
            "again. It is for your servers only (the calls API); never put it in a page."
        )
        return render_shown_once(
            self, request, _("New server keys"), warning, _("server key"), rows
        )

    @admin.action(description=_("Revoke server key of selected accounts"))
    def revoke_server_keys(self, request: HttpRequest, queryset: QuerySet[Account]) -> None:
        """Remove each selected account's server key: the calls API refuses it at once."""
        count = 0
        for account in queryset:
            account.revoke_server_key()
            self.log_change(request, account, [{"changed": {"fields": ["Server key (revoked)"]}}])
            count += 1
        self.message_user(
            request,
            ngettext("Revoked %d server key.", "Revoked %d server keys.", count) % count,
            messages.SUCCESS,
        )

    def _render_keys(self, request: HttpRequest, rows: list[dict], title: str) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": title,
            "rows": rows,
            "show_keys": any("key" in row for row in rows),
            "show_secrets": any("secret" in row for row in rows),
            "page_identity": Identity.PAGE,
        }
        response = TemplateResponse(request, "directcall/admin/api_keys.html", context)
        response["Cache-Control"] = "no-store"
        return response


@admin.register(Registration)
class RegistrationAdmin(admin.ModelAdmin):
    """Cuids signed in under each account."""

    list_display = ["cuid", "name", "account", "ct_id", "last_seen_at", "created_at"]
    list_filter = ["account"]
    search_fields = ["cuid", "name", "ct_id"]
    list_select_related = ["account"]
    readonly_fields = ["created_at", "last_seen_at"]
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}


@admin.register(Block)
class BlockAdmin(admin.ModelAdmin):
    """Who blocked whom (the ``block`` frame): listed, searchable; deleting one unblocks."""

    list_display = ["blocker", "blocked", "account", "created_at"]
    list_filter = ["account", "created_at"]
    search_fields = ["blocker__cuid", "blocked__cuid"]
    list_select_related = ["account", "blocker", "blocked"]
    readonly_fields = ["account", "blocker", "blocked", "created_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Users block for themselves (the SDK's block()); the admin only lists and unblocks.
        return False

    def has_change_permission(self, request: HttpRequest, obj: Block | None = None) -> bool:
        return False


# The rows of a call's quality table: (label, summary key, unit) — docs/protocol.md.
QUALITY_ROWS = [
    (_("MOS, average"), "mosAvg", ""),
    (_("MOS, lowest"), "mosMin", ""),
    (_("Round trip, average"), "rttAvg", " ms"),
    (_("Round trip, highest"), "rttMax", " ms"),
    (_("Jitter, average"), "jitterAvg", " ms"),
    (_("Jitter, highest"), "jitterMax", " ms"),
    (_("Packet loss, whole call"), "lossAvg", " %"),
    (_("Packet loss, worst second"), "lossMax", " %"),
    (_("Seconds sampled"), "samples", ""),
]


def _quality_value(summary: dict | None, key: str, unit: str) -> str:
    value = summary.get(key) if summary else None
    if value is None:
        return "—"
    return f"{value:g}{unit}" if isinstance(value, int | float) else str(value)


def quality_table(quality: dict | None) -> str:
    """A call's quality reports as an HTML table, a column per party (escaped template)."""
    sides = [(role, (quality or {}).get(role)) for role in ("caller", "callee")]
    rows = [
        (label, [_quality_value(summary, key, unit) for _role, summary in sides])
        for label, key, unit in QUALITY_ROWS
    ]

    def path(summary: dict | None) -> str:
        if not summary or summary.get("relayed") is None:
            return "—"
        how = _("through TURN") if summary["relayed"] else _("direct")
        pair = f"{summary.get('localCandidate') or '?'} → {summary.get('remoteCandidate') or '?'}"
        return f"{how} ({pair})"

    extra = [
        (_("Media path"), [path(summary) for _role, summary in sides]),
        (_("Codec"), [_quality_value(summary, "codec", "") for _role, summary in sides]),
        (
            _("Warnings"),
            [", ".join((summary or {}).get("warnings") or ["—"]) for _r, summary in sides],
        ),
    ]
    context = {"rows": rows + extra, "reported": [summary is not None for _r, summary in sides]}
    return render_to_string("directcall/admin/call_quality.html", context)


class CallFeedbackInline(admin.TabularInline):
    """The parties' ratings of a call, read-only."""

    model = CallFeedback
    extra = 0
    can_delete = False
    fields = ["role", "registration", "score", "issue_list", "created_at"]
    readonly_fields = fields

    @admin.display(description=_("issues"))
    def issue_list(self, obj: CallFeedback) -> str:
        """The issues the party named, in words."""
        return ", ".join(obj.issue_labels) or "—"

    def has_add_permission(self, request: HttpRequest, obj: Call | None = None) -> bool:
        return False


@admin.register(CallFeedback)
class CallFeedbackAdmin(admin.ModelAdmin):
    """Every rating the parties gave (accounts that ask for feedback), read-only."""

    list_display = ["created_at", "call", "role", "registration", "score", "issue_list", "account"]
    list_filter = ["score", "role", "created_at", "account"]
    search_fields = ["registration__cuid", "=call__id"]
    list_select_related = ["call__caller", "call__callee", "registration", "account"]
    readonly_fields = ["call", "account", "registration", "role", "score", "issues", "created_at"]
    issue_list = CallFeedbackInline.issue_list

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: CallFeedback | None = None) -> bool:
        return False


def _person(registration: Registration) -> str:
    """``Name (cuid)``, or the cuid of a registration without a name of its own."""
    if registration.name and registration.name != registration.cuid:
        return f"{registration.name} ({registration.cuid})"
    return registration.cuid


@admin.register(Call)
class CallAdmin(admin.ModelAdmin):
    """The call log: read-only (superusers may delete), filterable, searchable by cuid.

    It also serves the call dashboard (``dashboard/``), linked from the changelist.
    """

    change_list_template = "directcall/admin/call_change_list.html"

    list_display = [
        "created_at",
        "caller_shown",
        "callee_shown",
        "status",
        "end_reason",
        "talk_time",
        "mos",
        "account",
    ]
    list_filter = [
        "status",
        "end_reason",
        "created_at",
        "account",
        "quality_relayed",
        "quality_warned",
    ]
    date_hierarchy = "created_at"
    search_fields = ["caller__cuid", "callee__cuid", "caller__name", "callee__name", "=id"]
    list_select_related = ["account", "caller", "callee"]
    readonly_fields = [
        "id",
        "account",
        "caller",
        "callee",
        "context",
        "caller_image",
        "receiver_image",
        "status",
        "end_reason",
        "created_at",
        "answered_at",
        "ended_at",
        "talk_time",
        "quality_report",
    ]
    inlines = [CallFeedbackInline]

    @admin.display(description=_("caller"), ordering="caller__cuid")
    def caller_shown(self, obj: Call) -> str:
        """The caller as people know them: name and cuid (escaped by the admin)."""
        return _person(obj.caller)

    @admin.display(description=_("callee"), ordering="callee__cuid")
    def callee_shown(self, obj: Call) -> str:
        """The callee as people know them: name and cuid (escaped by the admin)."""
        return _person(obj.callee)

    @admin.display(description=_("duration"))
    def talk_time(self, obj: Call) -> str:
        """Talk time of the call."""
        return format_duration(obj.duration)

    @admin.display(description=_("MOS"), ordering="quality_mos")
    def mos(self, obj: Call) -> str:
        """The lower of the parties' average MOS, when they reported one."""
        return "—" if obj.quality_mos is None else f"{obj.quality_mos:.2f}"

    @admin.display(description=_("quality"))
    def quality_report(self, obj: Call) -> str:
        """What each party's browser measured (docs/protocol.md, "Quality and feedback")."""
        return quality_table(obj.quality)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Call | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Call | None = None) -> bool:
        # Superusers only: without it, deleting an account or a registration that has
        # calls (which cascades to them) would be refused to everyone.
        return request.user.is_superuser

    def get_urls(self) -> list[URLPattern]:
        """The model's URLs plus ``dashboard/`` and ``export/`` (first: ``<path:object_id>/``
        would catch them)."""
        dashboard_url = path(
            "dashboard/",
            self.admin_site.admin_view(self.dashboard_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_dashboard",
        )
        export_url = path(
            "export/",
            self.admin_site.admin_view(self.export_view),
            name=f"{self.opts.app_label}_{self.opts.model_name}_export",
        )
        return [dashboard_url, export_url, *super().get_urls()]

    def export_view(self, request: HttpRequest) -> HttpResponse:
        """The calls the changelist shows (its filters, search and dates) as a streamed CSV."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        changelist = self.get_changelist_instance(request)
        calls = changelist.get_queryset(request)
        return export.csv_response(calls, "calls.csv")

    def dashboard_view(self, request: HttpRequest) -> TemplateResponse:
        """Calls per day by outcome, answer rate and talk time for 30 days; who is online.

        Open to whoever may view calls. ``?account=<pk>`` limits it to one account.
        """
        if not self.has_view_permission(request):
            raise PermissionDenied
        accounts = list(Account.objects.only("pk", "name", "account_id"))
        account = None
        selected = request.GET.get("account", "")
        if selected:
            account = next((a for a in accounts if str(a.pk) == selected), None)
            if account is None:
                raise Http404(_("No such account."))
        stats = dashboard.call_stats(account)
        quality = dashboard.quality_stats(account)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _("Call dashboard"),
            "subtitle": str(account) if account else _("All accounts"),
            "accounts": accounts,
            "account": account,
            "stats": stats,
            "chart": dashboard.chart(stats),
            "outcomes": dashboard.OUTCOMES,
            "answer_rate": format_rate(stats["answer_rate"]),
            "talk_time_total": format_duration(stats["talk_time_total"]),
            "talk_time_average": format_duration(stats["talk_time_average"]),
            "quality": quality,
            "quality_rates": {
                "relayed": format_rate(quality["relayed_share"]),
                "warned": format_rate(quality["warned_share"]),
                "mos_average": "—"
                if quality["mos_average"] is None
                else f"{quality['mos_average']:.2f}",
                "bands": [
                    {**band, "share": format_rate(band["share"])} for band in quality["bands"]
                ],
            },
            "online": dashboard.online_registrations(account),
            "online_hours": int(dashboard.ONLINE_SEEN_WITHIN.total_seconds() // 3600),
        }
        return TemplateResponse(request, "directcall/admin/call_dashboard.html", context)
