"""Call keys (issues 12 and 13): the hash of the key each side's tab holds its call with."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("directcall", "0003_identity_and_revocation"),
    ]

    operations = [
        migrations.AddField(
            model_name="call",
            name="callee_key_hash",
            field=models.CharField(blank=True, editable=False, max_length=64),
        ),
        migrations.AddField(
            model_name="call",
            name="caller_key_hash",
            field=models.CharField(blank=True, editable=False, max_length=64),
        ),
    ]
