"""The demo site as an app, for its management commands."""

from django.apps import AppConfig


class ExampleProjectConfig(AppConfig):
    """Holds the demo site's commands (``demo_setup``)."""

    name = "example_project"
    default_auto_field = "django.db.models.BigAutoField"
