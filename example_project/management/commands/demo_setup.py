"""``manage.py demo_setup``: the demo's accounts, people and admin, with fresh credentials."""

from __future__ import annotations

from typing import Any
from urllib.parse import urljoin

from django.core.management.base import BaseCommand
from django.urls import reverse

from directcall.models import Account
from directcall.webhooks.models import WebhookEndpoint
from example_project import demo, webhooks


class Command(BaseCommand):
    """Set the demo up (``example_project.demo.set_up``) and print where to go and how to log in."""

    help = (
        "Create the demo accounts, people and admin if needed; print a new API key for the "
        "/call/ page and a new password for the demo admin."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000/")

    def handle(self, *args: Any, **options: Any) -> None:
        made = demo.set_up()
        base = options["url"] if options["url"].endswith("/") else options["url"] + "/"

        def url(name: str) -> str:
            return urljoin(base, reverse(name).lstrip("/"))

        receiver = url("demo_webhooks")
        WebhookEndpoint.objects.update_or_create(
            account=Account.objects.get(account_id=demo.SESSION_ACCOUNT_ID),
            description=webhooks.DESCRIPTION,
            defaults={"url": receiver},
        )

        people = ", ".join(user.username for user in made.people)
        lines = [
            "",
            f"  directcall demo:  {base}",
            "",
            "  Main demo: logged-in users call each other (no key in the page)",
            f"    log in as:      {url('login_as')}  ({people})",
            f"    people page:    {url('people')}  (a second browser or a private window",
            "                    for the other person)",
            "",
            "  Admin: accounts, the call log and the call dashboard",
            f"    admin:          {url('admin:index')}",
            f"    call log:       {url('admin:directcall_call_changelist')}",
            f"    dashboard:      {url('admin:directcall_call_dashboard')}",
            f"    username:       {made.admin_username}",
            f"    password:       {made.admin_password}",
            "",
            "  Webhooks: the logged-in people's call events, signed, logged by the demo's receiver",
            f"    receiver:       {receiver}",
            f"    deliveries:     {url('admin:directcall_webhookdelivery_changelist')}",
            "",
            "  API-key mode: the original SDK's initDirectCall, with the key in the page",
            f"    call page:      {url('call')}  (open it in two tabs)",
            f"    accountId:      {made.key_account.account_id}",
            f"    apikey:         {made.api_key}",
            "",
            "  (a new key and a new admin password at every start; the previous ones stop working)",
            "",
        ]
        self.stdout.write("\n".join(lines))
