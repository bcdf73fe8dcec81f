"""Signal receivers of directcall (connected in ``DirectCallConfig.ready()``): revocation,
and who is online (a call placed or ended tells the parties' watchers, :mod:`directcall.watch`).

What revokes sessions (docs/security.md#revocation):

- an account saved inactive, from page to verified identities, with its API key rotated or
  revoked (page identities: the key is what signed them in), or its signing secret
  rotated; an account deleted;
- a registration deleted (also by the cascade of an account's deletion): its live calls
  end first (``revoked``), and their other party is told;
- the Django user logging out (``user_logged_out``): the tokens of that Django session;
- the Django user saved inactive (banned, closed): every token of the user;
- the Django user deleted: the registration the adapter maps it to goes too (its name,
  picture and calls are the user's data), which closes its sockets and ends its calls.

And two for the database: the connections of a thread made for one HTTP request are parked
for the next request or closed when the request finishes
(:func:`close_request_thread_connections`, :mod:`directcall.requestdb`).

Changes made with ``QuerySet.update()`` send no signals: call :mod:`directcall.revocation`
yourself then.
"""

from __future__ import annotations

import logging
from typing import Any

from django.apps import apps
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_out
from django.core.exceptions import FieldDoesNotExist
from django.core.signals import request_finished, request_started
from django.db import transaction
from django.db.models.signals import (
    class_prepared,
    post_delete,
    post_save,
    pre_delete,
    pre_save,
)
from django.dispatch import receiver

from . import requestdb, revocation, watch
from .models import WATCHED_FIELDS, Account, Call, Identity, Registration
from .signals import call_ended, call_initiated

logger = logging.getLogger("directcall.revocation")


def account_change_reason(before: dict[str, Any], account: Account) -> str | None:
    """Why saving ``account`` over the loaded values ``before`` revokes its sessions, or None."""

    def changed(name: str) -> bool:
        return name in before and before[name] != getattr(account, name)

    if before.get("is_active") and not account.is_active:
        return revocation.ACCOUNT_INACTIVE
    if before.get("identity") == Identity.PAGE and account.identity == Identity.VERIFIED:
        # Connections signed in on the page's word are not vouched for.
        return revocation.IDENTITY_CHANGED
    if before.get("signing_secret") and changed("signing_secret"):
        return revocation.SIGNING_SECRET_ROTATED
    if account.identity == Identity.PAGE:
        if changed("key_hash"):
            return revocation.KEY_ROTATED
        newly_revoked = account.key_revoked_at is not None
        if "key_revoked_at" in before and before["key_revoked_at"] is None and newly_revoked:
            return revocation.KEY_REVOKED
    return None


@receiver(post_save, sender=Account, dispatch_uid="directcall.account_saved")
def account_saved(sender: type, instance: Account, created: bool, **kwargs: Any) -> None:
    """Revoke the account's sessions when a save takes away what signed them in."""
    before = getattr(instance, "_loaded", None)
    # What the row holds now, for the next save of this instance (deferred fields: unknown).
    instance._loaded = {
        name: getattr(instance, name) for name in WATCHED_FIELDS if name in instance.__dict__
    }
    if created or before is None:
        return
    reason = account_change_reason(before, instance)
    if reason is not None:
        revocation.revoke_account(instance.pk, reason)


@receiver(post_delete, sender=Account, dispatch_uid="directcall.account_deleted")
def account_deleted(sender: type, instance: Account, **kwargs: Any) -> None:
    """A deleted account's live sockets close."""
    revocation.revoke_account(instance.pk, revocation.ACCOUNT_DELETED)


@receiver(pre_delete, sender=Registration, dispatch_uid="directcall.registration_deleting")
def registration_deleting(sender: type, instance: Registration, **kwargs: Any) -> None:
    """A registration's live calls end (``revoked``) before they are deleted with it, and
    the other party is told.

    Not when its account is being deleted (``origin``): both parties go with it, every
    socket of the account is closed anyway, and a webhook queued now would name an
    account whose deletion has already gathered what to delete.
    """
    origin = kwargs.get("origin")
    model = getattr(origin, "model", type(origin))  # an instance or a queryset
    if origin is None or model is Registration:
        revocation.end_calls_of_deleted_registration(instance.pk)


@receiver(post_delete, sender=Registration, dispatch_uid="directcall.registration_deleted")
def registration_deleted(sender: type, instance: Registration, **kwargs: Any) -> None:
    """A deleted registration's live sockets close.

    No deny-list entry: the socket refuses the tokens of a registration that no longer
    exists by itself (and names whose token it was in its log).
    """
    revocation.revoke_registration(instance.pk, revocation.REGISTRATION_DELETED, deny=False)


@receiver(user_logged_out, dispatch_uid="directcall.user_logged_out")
def logged_out(sender: type, request: Any, user: Any, **kwargs: Any) -> None:
    """Logging out of the site ends the sockets of that browser's Django session."""
    if user is None or request is None:
        return
    session = getattr(request, "session", None)
    session_key = getattr(session, "session_key", None)
    revocation.revoke_user_tokens(
        user, reason=revocation.LOGGED_OUT, session_key=session_key, request=request
    )


def user_deactivating(
    sender: type, instance: Any, update_fields: Any = None, **kwargs: Any
) -> None:
    """Note whether this save makes an active Django user inactive (for :func:`user_saved`).

    One query, only when an existing user is saved inactive: a login's save
    (``update_fields=["last_login"]``) or an active user's costs nothing.
    """
    instance._directcall_deactivated = False
    if not _is_user_model(sender):
        return
    if kwargs.get("raw") or instance.pk is None or getattr(instance, "is_active", True):
        return  # a fixture loaded, a new user, or an active one
    if update_fields is not None and "is_active" not in update_fields:
        return
    try:
        sender._meta.get_field("is_active")
    except FieldDoesNotExist:  # a custom user model without the field: always active
        return
    manager = sender._base_manager.using(kwargs.get("using"))
    instance._directcall_deactivated = manager.filter(pk=instance.pk, is_active=True).exists()


def user_saved(sender: type, instance: Any, created: bool, **kwargs: Any) -> None:
    """A Django user made inactive (banned, closed) is signed out of calls everywhere: its
    tokens are refused, its sockets close and its live calls end ``revoked``."""
    if getattr(instance, "_directcall_deactivated", False):  # set by every pre_save
        revocation.revoke_user_tokens(instance, reason=revocation.USER_INACTIVE)


def user_deleting(sender: type, instance: Any, **kwargs: Any) -> None:
    """Find the registrations of a Django user about to be deleted (for :func:`user_deleted`).

    Before the deletion, while the adapter's ``get_cuid`` can still read what it needs (a
    profile deleted with the user). If it cannot, the user is deleted all the same and
    the registration is kept: logged, for the site to delete.
    """
    if not _is_user_model(sender):
        return
    try:
        # In a savepoint: a database error here must not abort the deletion's transaction.
        with transaction.atomic(using=kwargs.get("using")):
            instance._directcall_registrations = revocation.user_registration_pks(instance)
    except Exception:
        logger.exception("the registrations of deleted user %s were not found", instance.pk)
        instance._directcall_registrations = []


def user_deleted(sender: type, instance: Any, **kwargs: Any) -> None:
    """A deleted Django user's registration (in the session account) is deleted too: its
    name and picture, and its calls, are the user's data. Deleting it closes its sockets
    and ends its live calls (:func:`registration_deleting`). A site that keeps them
    disconnects this receiver (``dispatch_uid="directcall.user_deleted"``)."""
    pks = getattr(instance, "_directcall_registrations", None)
    if pks:
        Registration.objects.filter(pk__in=pks).delete()


# The Django user's receivers, by signal (their dispatch_uid is the same for each sender).
USER_RECEIVERS = (
    (pre_save, user_deactivating, "directcall.user_deactivating"),
    (post_save, user_saved, "directcall.user_saved"),
    (pre_delete, user_deleting, "directcall.user_deleting"),
    (post_delete, user_deleted, "directcall.user_deleted"),
)


def _is_user_model(model: Any) -> bool:
    """Whether ``model`` is the Django user model or a proxy of it."""
    meta = getattr(model, "_meta", None)
    return meta is not None and meta.concrete_model is get_user_model()


def user_models() -> list[type]:
    """The Django user model and its proxy models (those loaded so far)."""
    return [model for model in apps.get_models() if _is_user_model(model)]


def connect_user_receivers(model: type | None = None) -> None:
    """Connect the Django user's receivers to ``model``, or to the user model and each of
    its proxies (``DirectCallConfig.ready()``).

    Django sends a proxy's model signals with the proxy as sender, and a receiver of the
    user model does not get them (https://code.djangoproject.com/ticket/9318): a site
    whose admin edits its users through a proxy (a ``Staff`` or ``Student`` model) would
    ban or delete users unseen. Not one receiver for every sender: a ``pre_delete``
    receiver for every model turns off Django's fast deletes for all of them.
    """
    for each in [model] if model is not None else user_models():
        for signal, function, uid in USER_RECEIVERS:
            signal.connect(function, sender=each, dispatch_uid=uid)


@receiver(class_prepared, dispatch_uid="directcall.user_proxy_prepared")
def user_proxy_prepared(sender: type, **kwargs: Any) -> None:
    """A proxy of the user model defined after the app registry is ready gets the user's
    receivers too (those defined before get them in ``ready()``)."""
    if apps.models_ready and sender._meta.proxy and _is_user_model(sender):
        connect_user_receivers(sender)


@receiver(call_initiated, sender=Call, dispatch_uid="directcall.watch.call_initiated")
@receiver(call_ended, sender=Call, dispatch_uid="directcall.watch.call_ended")
def call_started_or_ended(sender: type, call: Call, **kwargs: Any) -> None:
    """Both parties are busy now, or no longer: their watchers look again."""
    watch.call_changed(call)


@receiver(request_started, dispatch_uid="directcall.request_thread_connections_started")
def request_thread_connections_started(sender: Any, **kwargs: Any) -> None:
    """A thread that serves one ASGI request takes a parked PostgreSQL connection, if any,
    instead of opening one (:mod:`directcall.requestdb`)."""
    requestdb.take_parked()


@receiver(request_finished, dispatch_uid="directcall.close_request_thread_connections")
def close_request_thread_connections(sender: Any, **kwargs: Any) -> None:
    """Park or close the database connections of a thread that served one ASGI request only.

    Django's ASGI handler runs each request's synchronous code (the views of ``v1/``, the
    admin) in a thread of its own (``ThreadSensitiveContext``), which ends with the
    request. With persistent connections (``CONN_MAX_AGE``, which the signaling
    consumer's database thread needs: docs/deployment.md) each such thread left its
    connection open until it was collected: 70-90 PostgreSQL connections from two workers
    during a burst of sign-ins (``bench/sizing.py``), past the server's 100 at times. Now
    an idle PostgreSQL connection is parked for the next request (a few per process,
    :mod:`directcall.requestdb`) and the others are closed. The signaling consumer's
    thread, shared by every connection of the process, keeps its own; under WSGI (no such
    context) Django's own rules apply.
    """
    requestdb.park_or_close()
