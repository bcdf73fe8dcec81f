"""Pages of the demo site."""

from __future__ import annotations

from django.contrib.auth import get_user_model, login
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from directcall.adapter import get_adapter

from .demo import KEY_ACCOUNT_ID, KEY_MODE_USERS, ROLE_OF, demo_users, read_key


def call_page(request: HttpRequest) -> HttpResponse:
    """API-key mode: pick a cuid in this tab and call the one picked in another tab.

    The key of the demo's key account is in the page, as in the original SDK; that account
    is not ``SESSION_ACCOUNT``, so the key signs nobody in as a logged-in person.
    """
    config = {"accountId": KEY_ACCOUNT_ID, "apikey": read_key(), "users": KEY_MODE_USERS}
    return render(request, "call.html", {"config": config})


@require_http_methods(["GET", "POST"])
def login_as(request: HttpRequest) -> HttpResponse:
    """Log in as one of the demo people, without a password. Demo only: never on a real site."""
    if request.method == "POST":
        username = request.POST.get("username", "")
        user = (
            get_user_model()
            .objects.filter(username=username, is_active=True, is_staff=False)
            .first()
            if username in ROLE_OF
            else None
        )
        if user is None:
            return HttpResponseBadRequest("Not a demo person.")
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        return redirect("people")
    people = [(user, ROLE_OF[user.username]) for user in demo_users()]
    return render(request, "login_as.html", {"people": people})


def calling_context(user, name: str) -> str:
    """The context of the demo's calls: "Student is calling", as in the original SDK's README."""
    role = ROLE_OF.get(user.get_username())
    if role is None:
        return _("%(name)s is calling") % {"name": name}
    return _("%(role)s is calling") % {"role": role.capitalize()}


@login_required
def setup_page(request: HttpRequest) -> HttpResponse:
    """The "Test my setup" page: the logged-in person's browser runs client.preflight()."""
    return render(request, "setup.html")


@login_required
def people_page(request: HttpRequest) -> HttpResponse:
    """Every other demo person with a call button: the template tags and nothing else."""
    adapter = get_adapter()
    me = adapter.get_display_name(request.user) or request.user.get_username()
    others = [(user, ROLE_OF[user.username]) for user in demo_users() if user.pk != request.user.pk]
    return render(
        request,
        "people.html",
        {
            "me": me,
            "my_role": ROLE_OF.get(request.user.get_username()),
            "people": others,
            # What the callee's incoming screen shows under the caller's name.
            "calling_context": calling_context(request.user, me),
        },
    )
