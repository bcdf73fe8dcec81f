"""URLs of the demo host site."""

from django.contrib import admin
from django.contrib.auth.views import LogoutView
from django.urls import include, path
from django.views.generic import TemplateView
from drf_spectacular.views import SpectacularAPIView

from . import views, webhooks

urlpatterns = [
    path("", TemplateView.as_view(template_name="home.html"), name="home"),
    path("call/", views.call_page, name="call"),
    path("login-as/", views.login_as, name="login_as"),
    path("logout/", LogoutView.as_view(next_page="home"), name="logout"),
    path("people/", views.people_page, name="people"),
    path("setup/", views.setup_page, name="setup"),
    path("demo-webhooks/", webhooks.receive, name="demo_webhooks"),
    path("admin/", admin.site.urls),
    path("directcall/", include("directcall.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
]
