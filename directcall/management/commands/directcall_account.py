"""``manage.py directcall_account create|rotate|revoke|list``: manage calling accounts."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...models import Account


class Command(BaseCommand):
    """Create accounts and rotate or revoke their API keys; keys are printed once."""

    help = "Create directcall accounts, rotate or revoke their API keys, list them."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Create an account and print its API key once.")
        create.add_argument("--name", required=True)
        create.add_argument(
            "--no-clevertap",
            action="store_true",
            help="Do not require a CleverTap instance at init.",
        )
        create.add_argument(
            "--origin",
            action="append",
            default=[],
            help="Allowed origin (repeatable); none allows every origin.",
        )
        rotate = sub.add_parser("rotate", help="Replace an account's API key and print it once.")
        rotate.add_argument("account_id")
        revoke = sub.add_parser("revoke", help="Revoke an account's API key.")
        revoke.add_argument("account_id")
        sub.add_parser("list", help="List accounts (never their keys).")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "create":
            account = Account(
                name=options["name"],
                require_clevertap=not options["no_clevertap"],
                allowed_origins="\n".join(options["origin"]),
            )
            key = account.set_new_api_key()
            try:
                account.full_clean(exclude=["key_prefix", "key_hash"])
            except ValidationError as exc:
                raise CommandError("; ".join(exc.messages)) from None
            account.save()
            self._print_key(account, key)
        elif action == "rotate":
            account = self._get(options["account_id"])
            self._print_key(account, account.rotate_api_key())
        elif action == "revoke":
            account = self._get(options["account_id"])
            account.revoke_api_key()
            self.stdout.write(f"Revoked the API key of {account.account_id}.")
        else:
            for account in Account.objects.order_by("created_at"):
                state = "revoked" if account.key_is_revoked else f"{account.key_prefix}.…"
                flags = ", ".join(
                    flag
                    for flag, on in (
                        ("inactive", not account.is_active),
                        ("no-clevertap", not account.require_clevertap),
                    )
                    if on
                )
                self.stdout.write(
                    f"{account.account_id}\t{account.name}\tkey {state}"
                    + (f"\t{flags}" if flags else "")
                )

    def _get(self, account_id: str) -> Account:
        try:
            return Account.objects.get(account_id=account_id)
        except Account.DoesNotExist:
            raise CommandError(f"No account with id {account_id!r}.") from None

    def _print_key(self, account: Account, key: str) -> None:
        self.stdout.write(f"accountId: {account.account_id}")
        self.stdout.write(f"apikey:    {key}")
        self.stdout.write(
            "Copy the key now; it is stored only as a hash and cannot be shown again."
        )
