"""The directcall Django app."""

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class DirectCallConfig(AppConfig):
    """Registers the system checks and signal receivers of directcall."""

    name = "directcall"
    verbose_name = _("Direct Call")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
