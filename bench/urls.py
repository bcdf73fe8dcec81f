"""URLs of the benchmarks' servers: directcall's HTTP API only (``bench/settings.py``)."""

from django.urls import include, path

urlpatterns = [path("directcall/", include("directcall.urls"))]
