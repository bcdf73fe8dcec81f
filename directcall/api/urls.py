"""URLs of the HTTP API, versioned under ``v1/``."""

from django.urls import path

from .calls import AccountCallsView, AccountCallView, MyCallsView, RegistrationView
from .views import InitView, SessionView

urlpatterns = [
    path("v1/init", InitView.as_view(), name="init"),
    path("v1/session", SessionView.as_view(), name="session"),
    path("v1/me/calls", MyCallsView.as_view(), name="my_calls"),
    path("v1/calls", AccountCallsView.as_view(), name="calls"),
    # Any text (path:): an id or cuid that is not valid gets the API's JSON 404, not a page.
    path("v1/calls/<path:call_id>", AccountCallView.as_view(), name="call"),
    path("v1/registrations/<path:cuid>", RegistrationView.as_view(), name="registration"),
]
