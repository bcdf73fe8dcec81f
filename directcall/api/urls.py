"""URLs of the HTTP API, versioned under ``v1/``."""

from django.urls import path

from .views import InitView, SessionView

urlpatterns = [
    path("v1/init", InitView.as_view(), name="init"),
    path("v1/session", SessionView.as_view(), name="session"),
]
