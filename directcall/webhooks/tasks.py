"""The background task that makes one attempt of a webhook delivery (django-tasks).

Run by the task backend's worker (``manage.py db_worker`` with django-tasks-db), never in
a request or a socket handler.
"""

from __future__ import annotations

from django_tasks import task

from . import delivery


@task()
def deliver_webhook(delivery_id: int, attempt: int) -> str:
    """Make attempt ``attempt`` of a delivery; what became of it (see delivery.attempt)."""
    return delivery.attempt(delivery_id, attempt)
