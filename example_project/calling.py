"""The demo's call adapter: who may call whom (``DIRECTCALL["ADAPTER"]`` in the settings)."""

from __future__ import annotations

from directcall.adapter import DefaultCallAdapter
from directcall.conf import get_settings
from directcall.models import Registration

from .demo import ROLE_OF


class DemoCallAdapter(DefaultCallAdapter):
    """Students may call tutors only; everyone else may call anyone.

    The cuids, names and pictures are the default adapter's (``user_<pk>``, full name).
    Callers that are not demo users (the ``/call/`` page signs in cuids such as
    ``student_sam`` with the API key, in an account of its own) are not restricted.
    """

    def role(self, registration: Registration) -> str | None:
        """The demo role of the user behind a registration, or None for anyone else.

        Only registrations of ``SESSION_ACCOUNT`` are people: in the key account of the
        ``/call/`` page, a cuid such as ``user_2`` is whatever the page's visitor typed.
        """
        if registration.account.account_id != get_settings()["SESSION_ACCOUNT"]:
            return None
        user = self.get_user(registration)
        return ROLE_OF.get(user.get_username()) if user is not None else None

    def can_call(self, caller: Registration, callee: Registration) -> bool:
        """A refusal reaches the caller's ``call()`` as ``ERR_CALL_NOT_ALLOWED``."""
        if self.role(caller) == "student":
            return self.role(callee) == "tutor"
        return True
