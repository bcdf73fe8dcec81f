"""Verified identities (issue 13): Account.identity and signing secret, Registration.image_url,
and the end reason ``revoked``.

Accounts that exist before this migration become "page" accounts: they keep working as
they did (the page's API key and cuid are taken at their word). New accounts default to
"verified". The one exception is the account named by ``DIRECTCALL["SESSION_ACCOUNT"]``:
its users are the site's logged-in users, so it becomes "verified" (v1/session works as
before; the API key alone no longer signs anybody in under it; system check E008).
"""

from django.conf import settings
from django.db import migrations, models


def session_account_verified(apps, schema_editor):
    Account = apps.get_model("directcall", "Account")
    conf = getattr(settings, "DIRECTCALL", None) or {}
    account_id = conf.get("SESSION_ACCOUNT") if isinstance(conf, dict) else None
    if isinstance(account_id, str) and account_id:
        Account.objects.using(schema_editor.connection.alias).filter(
            account_id=account_id
        ).update(identity="verified")


class Migration(migrations.Migration):

    dependencies = [
        ("directcall", "0002_remove_end_reason_server_restart"),
    ]

    operations = [
        # Existing rows get "page"; the field's default for new rows is set just below.
        migrations.AddField(
            model_name="account",
            name="identity",
            field=models.CharField(
                choices=[
                    ("verified", "verified (Django session or signed user token)"),
                    ("page", "page (API key and cuid taken at their word)"),
                ],
                default="page",
                help_text="Verified: users sign in through the Django login or a user token your server signs. Page: any page with the API key may sign in as any cuid.",
                max_length=16,
                verbose_name="identity",
            ),
        ),
        migrations.RunPython(session_account_verified, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="account",
            name="identity",
            field=models.CharField(
                choices=[
                    ("verified", "verified (Django session or signed user token)"),
                    ("page", "page (API key and cuid taken at their word)"),
                ],
                default="verified",
                help_text="Verified: users sign in through the Django login or a user token your server signs. Page: any page with the API key may sign in as any cuid.",
                max_length=16,
                verbose_name="identity",
            ),
        ),
        # Empty for existing rows (one default for every row would be one shared secret):
        # a rotation gives each its own.
        migrations.AddField(
            model_name="account",
            name="signing_secret",
            field=models.CharField(blank=True, editable=False, max_length=64),
        ),
        migrations.AddField(
            model_name="account",
            name="signing_secret_created_at",
            field=models.DateTimeField(
                blank=True, editable=False, null=True, verbose_name="signing secret created"
            ),
        ),
        migrations.AddField(
            model_name="registration",
            name="image_url",
            field=models.URLField(blank=True, max_length=2048, verbose_name="picture"),
        ),
        migrations.AlterField(
            model_name="call",
            name="end_reason",
            field=models.CharField(
                blank=True,
                choices=[
                    ("user_hangup", "user hung up"),
                    ("invite_timeout", "not answered in time"),
                    ("ice_failed", "media connection failed"),
                    ("user_media_failed", "microphone unavailable"),
                    ("user_busy", "receiver busy"),
                    ("user_declined", "receiver declined"),
                    ("caller_cancelled", "caller cancelled"),
                    ("connection_lost", "connection lost"),
                    ("max_duration", "maximum duration reached"),
                    ("revoked", "session revoked"),
                ],
                max_length=32,
                verbose_name="end reason",
            ),
        ),
    ]
