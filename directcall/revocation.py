"""Revoking sessions so that it reaches live sockets within seconds.

Each function does two things once the surrounding transaction has committed:

1. the deny-list (:mod:`directcall.tokens`): the tokens concerned are refused by the socket
   from now on, so a client that reconnects with them cannot sign in again;
2. a ``dc.revoke`` message through the channel layer to the group of every connection
   concerned (``directcall.account.<pk>``, ``directcall.registration.<pk>``, joined by the
   consumer at ``auth``): the consumer sends ``ERR_SESSION_REVOKED``, ends its calls with
   reason ``revoked`` and closes with code 4011 (docs/protocol.md).

The receivers in :mod:`directcall.receivers` call these for account deactivation, key
rotation or revocation (page identities), signing-secret rotation, a change from page to
verified identities, deleted accounts and registrations, Django's ``user_logged_out``, and
a Django user saved inactive or deleted (in ``SESSION_ACCOUNT``). Call them yourself for
anything else (a user banned some other way, or of an account the adapter picks per
request: ``revoke_user_tokens(user, request=...)``; a user of a non-Django backend logging
out: ``revoke_user_token(account, jti, exp, cuid=cuid)``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.exceptions import ImproperlyConfigured, ObjectDoesNotExist
from django.db import transaction
from django.http import HttpRequest

from . import tokens
from .adapter import get_adapter
from .conf import get_settings
from .identity import LEEWAY
from .models import Account, EndReason, Registration

logger = logging.getLogger("directcall.revocation")

MESSAGE_TYPE = "dc.revoke"

# Why a session was revoked: the ``reason`` of a ``dc.revoke`` message (docs/security.md).
ACCOUNT_INACTIVE = "account_inactive"
ACCOUNT_DELETED = "account_deleted"
KEY_ROTATED = "key_rotated"
KEY_REVOKED = "key_revoked"
SIGNING_SECRET_ROTATED = "signing_secret_rotated"  # noqa: S105 (a reason, not a secret)
IDENTITY_CHANGED = "identity_changed"
REGISTRATION_DELETED = "registration_deleted"
LOGGED_OUT = "logged_out"
USER_INACTIVE = "user_inactive"
REVOKED = "revoked"  # revoked by the site's own code

REASONS = frozenset(
    {
        ACCOUNT_INACTIVE,
        ACCOUNT_DELETED,
        KEY_ROTATED,
        KEY_REVOKED,
        SIGNING_SECRET_ROTATED,
        IDENTITY_CHANGED,
        REGISTRATION_DELETED,
        LOGGED_OUT,
        USER_INACTIVE,
        REVOKED,
    }
)


def account_group(account_pk: int) -> str:
    """The channel-layer group of every connection signed in under an account."""
    return f"directcall.account.{int(account_pk)}"


def registration_group(registration_pk: int) -> str:
    """The channel-layer group of every connection of one registration (one cuid)."""
    return f"directcall.registration.{int(registration_pk)}"


def revoke_message(reason: str, sid: str = "", user_jti: str = "") -> dict[str, str]:
    """The ``dc.revoke`` message; with ``sid``, only connections of that Django session
    close; with ``user_jti``, only those signed in through that user token."""
    message = {"type": MESSAGE_TYPE, "reason": reason}
    if sid:
        message["sid"] = sid
    if user_jti:
        message["uj"] = user_jti
    return message


def concerns(message: dict[str, Any], session: tokens.Session) -> bool:
    """Whether a ``dc.revoke`` message received by a connection applies to its session."""
    sid, user_jti = message.get("sid"), message.get("uj")
    if sid and sid != session.sid:
        return False
    return not user_jti or user_jti == session.user_jti


def _after_commit(action: Callable[[], None]) -> None:
    def run() -> None:
        try:
            action()
        except Exception:
            # The change itself stands (it is committed); say loudly that live sockets
            # may not have heard of it. Tokens still expire within TOKEN_TTL.
            logger.exception("a revocation could not be completed")

    transaction.on_commit(run)


def _send(group: str, message: dict[str, str]) -> None:
    layer = get_channel_layer()
    if layer is None:
        logger.warning("no channel layer: live sockets of %s are not told of a revocation", group)
        return
    # The receiving connections handle it in their own context, not this call's (whose
    # thread-sensitive executor quits when it returns): connection.OrderedConsumer.deliver.
    async_to_sync(layer.group_send)(group, message)


def revoke_account(account_pk: int, reason: str) -> None:
    """Refuse every token issued so far under the account and close all its live sockets."""

    def action() -> None:
        tokens.revoke_issued_before("account", account_pk)
        _send(account_group(account_pk), revoke_message(reason))
        logger.info("sessions of account %s revoked: %s", account_pk, reason)

    _after_commit(action)


def revoke_registration(registration_pk: int, reason: str, *, deny: bool = True) -> None:
    """Refuse every token issued so far to the registration and close its live sockets.

    ``deny=False`` skips the deny-list: for a deleted registration, whose tokens the
    socket refuses anyway (and then logs whose token it was).
    """

    def action() -> None:
        if deny:
            tokens.revoke_issued_before("registration", registration_pk)
        _send(registration_group(registration_pk), revoke_message(reason))
        logger.info("sessions of registration %s revoked: %s", registration_pk, reason)

    _after_commit(action)


def end_calls_of_deleted_registration(registration_pk: int) -> None:
    """End the live calls of a registration about to be deleted (reason ``revoked``), and
    tell their parties once the deletion has committed.

    The calls are deleted with the registration (their rows cascade): without this, the
    other party of a live call was never told it had ended, and kept it open until it hung
    up itself. Called by a ``pre_delete`` receiver, inside the deletion's transaction (the
    ``call_ended`` signal and ``call.ended`` webhooks follow as for any end).
    """
    from . import calls, transport

    ended = [
        call
        for live in calls.live_calls_of(registration_pk)
        if (call := calls.leave(live.pk, registration_pk, EndReason.REVOKED, call=live))
    ]
    if not ended:
        return

    def action() -> None:
        for call in ended:
            async_to_sync(transport.announce)(call)

    _after_commit(action)


def user_registration_pks(user: Any, request: HttpRequest | None = None) -> list[int]:
    """The registrations the adapter maps ``user`` to (in the session account), if any."""
    adapter = get_adapter()
    try:
        account = adapter.get_account(request) if request is not None else None
    except (ImproperlyConfigured, ObjectDoesNotExist):
        return []  # this site gives its users no server-minted sessions
    if account is None:
        account_id = get_settings().SESSION_ACCOUNT
        account = Account.objects.filter(account_id=account_id).first() if account_id else None
    if account is None:
        return []
    return list(
        Registration.objects.filter(account=account, cuid=adapter.get_cuid(user)).values_list(
            "pk", flat=True
        )
    )


def revoke_user_tokens(
    user: Any,
    *,
    reason: str = REVOKED,
    session_key: str | None = None,
    request: HttpRequest | None = None,
) -> None:
    """Refuse the user's ``v1/session`` tokens and close the sockets that use them.

    With ``session_key``: only those of that Django session (logging out of one browser
    leaves the others signed in); without: every token issued so far to the user.
    """
    sid = tokens.session_hash(session_key) if session_key else ""
    registrations = user_registration_pks(user, request)

    def action() -> None:
        if sid:
            tokens.revoke_session_key_hash(sid)
        else:
            tokens.revoke_issued_before("user", user.pk)
        for pk in registrations:
            _send(registration_group(pk), revoke_message(reason, sid))
        logger.info("sessions of user %s revoked: %s", user.pk, reason)

    _after_commit(action)


def revoke_user_token(account: Any, jti: str, exp: float, *, cuid: str | None = None) -> None:
    """Revoke a user token: refuse it at ``v1/init`` and refuse every session token issued
    for it, and close the sockets signed in with those (reason ``revoked``).

    ``account``: the :class:`~directcall.models.Account` (or its pk) the token was minted
    for; ``jti`` and ``exp``: the token's claims. A user token without a ``jti`` cannot be
    revoked (it lives until ``exp``). With ``cuid`` (the token's ``sub``) the message goes
    to that registration's sockets only; without it, to the account's, each of which
    checks whether it was signed in through this token.
    """
    account_pk = getattr(account, "pk", account)
    # Refused as long as the user token itself is accepted (exp plus the clock leeway),
    # and as long as any session token issued for it before now lives.
    until = max(float(exp) + LEEWAY, time.time() + get_settings().TOKEN_TTL)
    if cuid is None:
        groups = [account_group(account_pk)]
    else:
        groups = [
            registration_group(pk)
            for pk in Registration.objects.filter(account_id=account_pk, cuid=cuid).values_list(
                "pk", flat=True
            )
        ]

    def action() -> None:
        tokens.revoke_token(jti, until)
        for group in groups:
            _send(group, revoke_message(REVOKED, user_jti=jti))
        logger.info("user token of account %s revoked", account_pk)

    _after_commit(action)
