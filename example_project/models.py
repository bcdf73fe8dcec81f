"""The demo site's own data: what its metered calls cost (see ``receivers.py``)."""

from django.db import models


class CallCharge(models.Model):
    """One answered call billed per started minute to the caller.

    Keyed by the call's id rather than a foreign key: a bill outlives the call record,
    which an administrator may delete.
    """

    call_id = models.UUIDField(unique=True)
    account_id = models.CharField(max_length=64)
    payer_cuid = models.CharField(max_length=50)
    payee_cuid = models.CharField(max_length=50)
    seconds = models.PositiveIntegerField()
    minutes = models.PositiveIntegerField()
    amount_cents = models.PositiveIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.payer_cuid}: {self.minutes} min, {self.amount_cents / 100:.2f}"
