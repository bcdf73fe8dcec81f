"""The demo's call charges in the admin (read-only: receivers.py writes them)."""

from django.contrib import admin

from .models import CallCharge


@admin.register(CallCharge)
class CallChargeAdmin(admin.ModelAdmin):
    """Who paid how much for which call."""

    list_display = ["created_at", "payer_cuid", "payee_cuid", "minutes", "amount_cents"]
    readonly_fields = [field.name for field in CallCharge._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False
