"""Include in the host's URLconf: ``path("directcall/", include("directcall.urls"))``."""

from django.urls import include, path

from . import views

app_name = "directcall"

urlpatterns = [
    path("", include("directcall.api.urls")),
    path("v1/screens", views.screens, name="screens"),
]
