"""``manage.py demo_setup``: the demo account, the demo people, and fresh credentials."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from directcall.models import Account
from example_project.people import ensure_demo_people
from example_project.views import demo_key_file

DEMO_ACCOUNT_ID = "demo_account"


class Command(BaseCommand):
    """Create (or re-key) the demo account and create the demo people's users."""

    help = "Create the demo account and demo users if needed and print a new API key."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000/")

    def handle(self, *args: Any, **options: Any) -> None:
        account = Account.objects.filter(account_id=DEMO_ACCOUNT_ID).first()
        if account is None:
            account = Account(account_id=DEMO_ACCOUNT_ID, name="Demo", require_clevertap=False)
            key = account.set_new_api_key()
            account.save()
        else:
            key = account.rotate_api_key()
        # The demo's call page reads the key from here, so a newcomer has nothing to paste.
        key_file = demo_key_file()
        key_file.write_text(key + "\n")
        key_file.chmod(0o600)
        # Logged-in users of the /people/ page: DIRECTCALL["SESSION_ACCOUNT"] is this account.
        people = ensure_demo_people()
        url = options["url"]
        self.stdout.write("")
        self.stdout.write(f"  directcall demo:  {url}")
        self.stdout.write(
            f"  people page:      {url}people/  (log in as a demo person at {url}login-as/)"
        )
        self.stdout.write(f"  demo people:      {', '.join(u.username for u in people)}")
        self.stdout.write(f"  call page:        {url}call/  (open it in two tabs)")
        self.stdout.write(f"  accountId:        {account.account_id}")
        self.stdout.write(f"  apikey:           {key}")
        self.stdout.write("  (a new key is issued at every start; the previous one stops working)")
        self.stdout.write("")
