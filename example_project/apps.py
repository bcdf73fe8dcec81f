"""The demo site as an app: its commands, its models and its signal receivers."""

from django.apps import AppConfig


class ExampleProjectConfig(AppConfig):
    """Holds the demo site's commands (``demo_setup``) and connects its call billing."""

    name = "example_project"
    verbose_name = "Demo site"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from directcall.signals import call_ended

        from .receivers import bill_metered_call

        call_ended.connect(bill_metered_call, dispatch_uid="example_project.bill_metered_call")
