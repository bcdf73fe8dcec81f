"""Decisions a host site wants to make its own, in one class named by ``DIRECTCALL["ADAPTER"]``.

Subclass :class:`DefaultCallAdapter` and override what you need::

    # myapp/calling.py
    from directcall.adapter import DefaultCallAdapter

    class TutoringAdapter(DefaultCallAdapter):
        def can_call(self, caller, callee):
            # Students may call their own tutors, tutors their own students.
            a, b = self.get_user(caller), self.get_user(callee)
            return a is not None and b is not None and are_paired(a, b)

    # settings.py
    DIRECTCALL = {"ADAPTER": "myapp.calling.TutoringAdapter", "SESSION_ACCOUNT": "..."}
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.dispatch import receiver
from django.http import HttpRequest
from django.utils.module_loading import import_string

from .conf import get_settings
from .models import Account, Block, Registration
from .validation import NAME_MAX, NAME_MIN, is_valid_name

_USER_CUID = re.compile(r"user_([0-9]+)")


class DefaultCallAdapter:
    """Who a Django user is on calls, and who may call whom (default: anyone in the account)."""

    def get_cuid(self, user: Any) -> str:
        """The cuid of a user: stable, valid under the cuid rules, never reused.

        Default ``user_<pk>`` (e.g. ``user_42``): 5+ characters, letters, digits and ``_``,
        and not "number_number". Override to use e.g. a public id of your own.
        """
        return f"user_{user.pk}"

    def get_user(self, registration: Registration) -> Any | None:
        """The user behind a registration (the inverse of :meth:`get_cuid`), or None."""
        match = _USER_CUID.fullmatch(registration.cuid)
        if match is None:
            return None
        return get_user_model()._default_manager.filter(pk=int(match.group(1))).first()

    def get_display_name(self, user: Any) -> str:
        """The name the other party sees: full name, else username; "" if neither fits."""
        for candidate in (user.get_full_name(), user.get_username()):
            name = (candidate or "").strip()[:NAME_MAX]
            if len(name) >= NAME_MIN and is_valid_name(name):
                return name
        return ""

    def get_image_url(self, user: Any) -> str | None:
        """An http(s) URL of the user's picture for the call screens, or None."""
        return None

    def get_account(self, request: HttpRequest) -> Account:
        """The account that server-minted sessions (the template tags) belong to."""
        account_id = get_settings().SESSION_ACCOUNT
        if not account_id:
            raise ImproperlyConfigured(
                "Set DIRECTCALL['SESSION_ACCOUNT'] to the account id used for signed-in users."
            )
        account = Account.objects.filter(account_id=account_id).first()
        if account is None:
            raise ImproperlyConfigured(
                f"DIRECTCALL['SESSION_ACCOUNT'] is {account_id!r}, and no account has that id: "
                "create one with 'manage.py directcall_account create --name ...' and put the "
                "accountId it prints there."
            )
        return account

    def can_call(self, caller: Registration, callee: Registration) -> bool:
        """Whether ``caller`` may call ``callee`` (both in the same account). Default: yes.

        A refusal reaches the caller as ``ERR_CALL_NOT_ALLOWED`` and nothing is recorded.
        """
        return True

    def callable_among(self, caller: Registration, callees: list[Registration]) -> set[int]:
        """The pks of ``callees`` whom ``caller`` may call: not blocked by them, and
        :meth:`can_call`. Who-is-online answers only about these (``client.watch()``).

        The default asks :meth:`is_blocked` and :meth:`can_call` per callee, reading the
        default blocks in one query. Override to answer a whole list at once.
        """
        if type(self).is_blocked is DefaultCallAdapter.is_blocked:
            rows = Block.objects.filter(blocked=caller, blocker__in=callees)
            blocked = set(rows.values_list("blocker_id", flat=True))
        else:
            blocked = {c.pk for c in callees if self.is_blocked(caller, c)}
        return {c.pk for c in callees if c.pk not in blocked and self.can_call(caller, c)}

    def is_blocked(self, caller: Registration, callee: Registration) -> bool:
        """Whether ``callee`` has blocked ``caller`` (default: a :class:`Block` row says so).

        Asked with :meth:`can_call`, before presence; a blocked caller gets the same
        ``ERR_CALL_NOT_ALLOWED``, so it learns neither that it is blocked nor whether the
        callee is online. Override to keep blocks in your own tables (then override
        :meth:`block` too).
        """
        return Block.objects.filter(blocker=callee, blocked=caller).exists()

    def block(self, blocker: Registration, blocked: Registration) -> None:
        """Record that ``blocker`` refuses calls from ``blocked`` (the ``block`` frame)."""
        Block.objects.get_or_create(account_id=blocker.account_id, blocker=blocker, blocked=blocked)


@cache
def get_adapter() -> DefaultCallAdapter:
    """The adapter instance named by ``DIRECTCALL["ADAPTER"]``."""
    path = get_settings().ADAPTER
    adapter_class = import_string(path)
    if not (isinstance(adapter_class, type) and issubclass(adapter_class, DefaultCallAdapter)):
        raise ImproperlyConfigured(f"DIRECTCALL['ADAPTER'] {path!r} is not a DefaultCallAdapter.")
    return adapter_class()


@receiver(setting_changed)
def _reset_adapter(*, setting: str, **kwargs: Any) -> None:
    if setting == "DIRECTCALL":
        get_adapter.cache_clear()
