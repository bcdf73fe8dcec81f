"""``manage.py directcall_registrations prune --days N``: forget users not seen for N days.

A registration holds a cuid's name, picture and CleverTap ids, and when it last signed in:
personal data that a site usually keeps no longer than it needs. Run this from cron (daily)
with the site's retention period: it deletes the registrations that have not signed in
(``POST v1/init`` or ``v1/session``) for more than N days, with their calls, in batches of
``--batch`` rows, one transaction each. A user who comes back later signs in as new.

Kept, however long unseen:

- a registration that is online now (a tab left open signs in once and stays), or in a
  live call;
- one that blocked someone or is blocked by someone: deleting it would drop the block, and
  a blocked caller who came back would be unblocked.

A registration deleted here goes as one deleted in the admin: its calls with it (they
leave the other party's history too), and a socket it might still have is closed. Who is
online is read from the default cache, so the command refuses to run on a process-local one
(it would see nobody). Presence is read before a batch's transaction, not in it: a socket
that signs in again in between with a token from before the period (at most ``TOKEN_TTL``
old, so only with a period shorter than that) is closed with its registration.
"""

from __future__ import annotations

from datetime import datetime

from django.core.management.base import CommandError
from django.db import transaction
from django.db.models import Q, QuerySet

from directcall import presence
from directcall.checks import process_local_cache
from directcall.management.prune import PruneCommand
from directcall.models import Block, Call, Registration


def _unseen(cutoff: datetime) -> QuerySet[Registration]:
    """Registrations last seen before ``cutoff``, in no block and no live call."""
    live = Call.objects.live()
    return (
        Registration.objects.filter(last_seen_at__lt=cutoff)
        .exclude(pk__in=Block.objects.values("blocker"))
        .exclude(pk__in=Block.objects.values("blocked"))
        .exclude(Q(pk__in=live.values("caller")) | Q(pk__in=live.values("callee")))
    )


class Command(PruneCommand):
    """Delete registrations not seen for --days, with their calls."""

    help = "prune: delete the registrations that have not signed in for more than --days days."
    days_help = "Delete registrations that have not signed in for more than this many days."
    batch_help = "Registrations deleted per transaction (default 1000)."

    def prune(self, cutoff: datetime, days: str, batch: int, dry_run: bool) -> str:
        """Delete the registrations unseen since ``cutoff`` that are offline, with their calls."""
        backend = process_local_cache()
        if backend is not None:
            raise CommandError(
                f"The default cache is process-local ({backend}): this command cannot see who "
                "is online in the server's processes. Run it with the servers' shared cache "
                "(Redis)."
            )
        registrations = calls = 0
        after = 0  # the last pk looked at: the online ones are passed over, not looked at again
        while True:
            rows = list(
                _unseen(cutoff)
                .filter(pk__gt=after)
                .order_by("pk")
                .values_list("pk", "account_id", "cuid")[:batch]
            )
            if not rows:
                break
            after = rows[-1][0]
            online = presence.held_many((account_pk, cuid) for _pk, account_pk, cuid in rows)
            pks = [pk for pk, account_pk, cuid in rows if (account_pk, cuid) not in online]
            if dry_run:
                registrations += len(pks)
                continue
            with transaction.atomic():
                # Checked again and locked (PostgreSQL; SQLite has one writer at a time): a
                # user who signs in meanwhile stays, or waits and is registered anew.
                locked = _unseen(cutoff).filter(pk__in=pks).select_for_update()
                stale = list(locked.values_list("pk", flat=True))
                _deleted, by_model = Registration.objects.filter(pk__in=stale).delete()
            registrations += by_model.get(Registration._meta.label, 0)
            calls += by_model.get(Call._meta.label, 0)
        if dry_run:
            return f"Would delete {registrations} registration(s) not seen for {days} days."
        return (
            f"Deleted {registrations} registration(s) not seen for {days} days, with "
            f"{calls} call record(s)."
        )
