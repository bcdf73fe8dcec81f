"""The demo's people: Django users who log in on the demo site and call each other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model


@dataclass(frozen=True)
class DemoPerson:
    """One demo user: a username, a name and a role that the demo adapter's can_call reads."""

    username: str
    first_name: str
    last_name: str
    role: str

    @property
    def full_name(self) -> str:
        return f"{self.first_name} {self.last_name}"


DEMO_PEOPLE = [
    DemoPerson("sam", "Sam", "Student", "student"),
    DemoPerson("jane", "Jane", "Tutor", "tutor"),
    DemoPerson("sue", "Sue", "Shopper", "shopper"),
    DemoPerson("gil", "Gil", "Grocer", "grocer"),
]
ROLE_OF = {person.username: person.role for person in DEMO_PEOPLE}


def ensure_demo_people() -> list[Any]:
    """Create (or refresh) the demo users; they log in only through the demo's log-in-as page."""
    users = []
    for person in DEMO_PEOPLE:
        user, _created = get_user_model().objects.update_or_create(
            username=person.username,
            defaults={"first_name": person.first_name, "last_name": person.last_name},
        )
        if user.has_usable_password():
            user.set_unusable_password()
            user.save(update_fields=["password"])
        users.append(user)
    return users


def demo_users() -> list[Any]:
    """The demo users that exist, in the order of ``DEMO_PEOPLE``."""
    by_name = {
        user.username: user for user in get_user_model().objects.filter(username__in=list(ROLE_OF))
    }
    return [by_name[p.username] for p in DEMO_PEOPLE if p.username in by_name]
