"""Pages of the demo site."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

DEMO_USERS = [
    {"cuid": "student_sam", "name": "Sam (student)"},
    {"cuid": "tutor_jane", "name": "Jane (tutor)"},
    {"cuid": "shopper_sue", "name": "Sue (shopper)"},
    {"cuid": "grocer_gil", "name": "Gil (grocer)"},
]


def demo_key_file() -> Path:
    """Where ``demo_setup`` leaves the demo account's key for the demo pages (demo only)."""
    return Path(getattr(settings, "DEMO_CREDENTIALS_FILE", settings.BASE_DIR / ".demo-credentials"))


def call_page(request: HttpRequest) -> HttpResponse:
    """Pick a demo user in this tab and call the user picked in another tab."""
    from .management.commands.demo_setup import DEMO_ACCOUNT_ID

    key_file = demo_key_file()
    config = {
        "accountId": DEMO_ACCOUNT_ID,
        "apikey": key_file.read_text().strip() if key_file.exists() else "",
        "users": DEMO_USERS,
    }
    return render(request, "call.html", {"config": config})
