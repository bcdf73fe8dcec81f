"""URLs of the HTTP API, versioned under ``v1/``."""

from django.urls import path, register_converter

from .calls import AccountCallsView, AccountCallView, MyCallsView, RegistrationView
from .views import InitView, SessionView


class AnyText:
    """Any non-empty text, newlines too: Django's ``path:`` (``.+``) stops at a newline,
    so ``/registrations/x%0A`` would miss the route and get Django's HTML 404 page."""

    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(AnyText, "directcall_text")

urlpatterns = [
    path("v1/init", InitView.as_view(), name="init"),
    path("v1/session", SessionView.as_view(), name="session"),
    path("v1/me/calls", MyCallsView.as_view(), name="my_calls"),
    path("v1/calls", AccountCallsView.as_view(), name="calls"),
    # Any text: an id or cuid that is not valid gets the API's JSON 404, not a page.
    path("v1/calls/<directcall_text:call_id>", AccountCallView.as_view(), name="call"),
    path(
        "v1/registrations/<directcall_text:cuid>", RegistrationView.as_view(), name="registration"
    ),
]
