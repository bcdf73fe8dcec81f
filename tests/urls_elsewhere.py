"""A URLconf that mounts directcall somewhere else (tests of the template tags)."""

from django.urls import include, path

urlpatterns = [path("calls/", include("directcall.urls"))]
