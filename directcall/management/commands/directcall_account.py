"""``manage.py directcall_account create|rotate|revoke|rotate-secret|identity|list``."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from ...models import Account, Identity


class Command(BaseCommand):
    """Create accounts, rotate or revoke their keys and signing secrets; secrets print once."""

    help = (
        "Create directcall accounts, rotate or revoke their API keys, rotate their user-token "
        "signing secrets, set their identity mode, list them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser(
            "create", help="Create an account and print its API key and signing secret once."
        )
        create.add_argument("--name", required=True)
        create.add_argument(
            "--identity",
            choices=Identity.values,
            default=Identity.VERIFIED,
            help="verified (default): only the Django login or a user token signed by your "
            "server signs users in. page: the page's API key and cuid are taken at their "
            "word (the original SDK's contract; anyone who reads the page can be anyone).",
        )
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
        secret = sub.add_parser(
            "rotate-secret",
            help="Replace an account's user-token signing secret and print it once.",
        )
        secret.add_argument("account_id")
        identity = sub.add_parser("identity", help="Set an account's identity mode.")
        identity.add_argument("account_id")
        identity.add_argument("mode", choices=Identity.values)
        sub.add_parser("list", help="List accounts (never their keys or secrets).")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "create":
            self._create(options)
        elif action == "rotate":
            account = self._get(options["account_id"])
            self._print_key(account, account.rotate_api_key())
        elif action == "revoke":
            account = self._get(options["account_id"])
            account.revoke_api_key()
            self.stdout.write(f"Revoked the API key of {account.account_id}.")
        elif action == "rotate-secret":
            account = self._get(options["account_id"])
            self.stdout.write(f"accountId:     {account.account_id}")
            self._print_secret(account.rotate_signing_secret())
        elif action == "identity":
            account = self._get(options["account_id"])
            account.identity = options["mode"]
            try:
                account.full_clean(exclude=["key_prefix", "key_hash"])
            except ValidationError as exc:
                raise CommandError("; ".join(exc.messages)) from None
            account.save(update_fields=["identity"])
            self.stdout.write(f"{account.account_id} now takes {account.identity} identities.")
        else:
            self._list()

    def _create(self, options: dict[str, Any]) -> None:
        account = Account(
            name=options["name"],
            identity=options["identity"],
            require_clevertap=not options["no_clevertap"],
            allowed_origins="\n".join(options["origin"]),
        )
        key = account.set_new_api_key()
        secret = account.set_new_signing_secret()
        try:
            account.full_clean(exclude=["key_prefix", "key_hash"])
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from None
        account.save()
        self._print_key(account, key)
        self.stdout.write(f"identity:  {account.identity}")
        self._print_secret(secret)
        if account.identity == Identity.PAGE:
            self.stdout.write(
                "This account takes page identities: anyone who reads a page with the key "
                "can sign in as any cuid. See docs/security.md."
            )

    def _list(self) -> None:
        for account in Account.objects.order_by("created_at"):
            state = "revoked" if account.key_is_revoked else f"{account.key_prefix}.…"
            flags = ", ".join(
                flag
                for flag, on in (
                    ("inactive", not account.is_active),
                    ("no-clevertap", not account.require_clevertap),
                    ("no-signing-secret", not account.signing_secret),
                )
                if on
            )
            self.stdout.write(
                f"{account.account_id}\t{account.name}\t{account.identity}\tkey {state}"
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

    def _print_secret(self, secret: str) -> None:
        self.stdout.write(f"signingSecret: {secret}")
        self.stdout.write(
            "The signing secret signs user tokens on your server (docs/accounts.md); keep "
            "it there, never in a page. It is not shown again: rotate-secret makes a new one."
        )
