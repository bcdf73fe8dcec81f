"""Include in the host's URLconf: ``path("directcall/", include("directcall.urls"))``."""

from django.urls import include, path

app_name = "directcall"

urlpatterns = [
    path("", include("directcall.api.urls")),
]
