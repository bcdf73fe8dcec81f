"""directcall.requestdb: a request thread's PostgreSQL connection is parked for the next.

Each request goes through Django's own ASGI handler, which runs it in a thread of its own
(``ThreadSensitiveContext``), as a server runs it. On SQLite nothing is parked, and each
request's connection is closed at its end (``tests/test_receivers.py``); the tests here
run when the suite runs on PostgreSQL (CI).
"""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.db import connection, connections
from django.db.backends.signals import connection_created

from directcall import requestdb

from .asgi_http import init_body, post_init

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def persistent(monkeypatch):
    """Persistent connections, as in production (the tests' settings close each at once)."""
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 600)
    yield
    requestdb.close_parked()


@pytest.fixture
async def signed(make_account):
    account, key = await sync_to_async(make_account)(require_clevertap=False)
    return init_body(account, key)


async def init(body: str) -> int:
    status, _ = await post_init(body)
    return status


async def sessions_of_requests(body: str, requests: int) -> list[int | None]:
    """The status of each request; the database session each request thread connected to."""
    sessions: list[int | None] = []

    def created(sender, connection, **kwargs):
        if requestdb.in_request_thread():
            info = getattr(connection.connection, "info", None)
            sessions.append(getattr(info, "backend_pid", None))

    connection_created.connect(created)
    try:
        for _ in range(requests):
            assert await init(body) == 200
    finally:
        connection_created.disconnect(created)
        await sync_to_async(connections.close_all)()
    return sessions


def postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("parking is for PostgreSQL (DATABASE_URL=postgres://...)")


async def test_request_threads_share_one_parked_connection(persistent, signed):
    postgres_only()
    sessions = await sessions_of_requests(signed, 4)
    # Four threads, each through Django's connect(), on one database session.
    assert len(sessions) == 4 and len(set(sessions)) == 1
    assert len(requestdb._parked["default"]) == 1


async def test_without_persistent_connections_nothing_is_parked(signed):
    postgres_only()
    sessions = await sessions_of_requests(signed, 3)
    assert len(set(sessions)) == 3
    assert not requestdb._parked.get("default")


async def test_a_connection_broken_while_parked_fails_one_request_and_is_dropped(
    persistent, signed
):
    """After a database restart: the request that takes the dead connection is answered
    503 (ERR_SERVICE_UNAVAILABLE, retry), and the next one connects anew."""
    postgres_only()
    [first] = await sessions_of_requests(signed, 1)

    def terminate():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [first])

    await sync_to_async(terminate)()
    assert await init(signed) == 503
    assert not requestdb._parked.get("default")  # closed, not parked again
    [second] = await sessions_of_requests(signed, 1)
    assert second != first


async def test_a_connection_parked_through_a_quiet_spell_is_checked_before_reuse(
    persistent, signed, monkeypatch
):
    """Parked longer than QUIET (here at once): a connection the database ended is found
    dead by a ``SELECT 1`` and replaced; the request never sees it."""
    postgres_only()
    monkeypatch.setattr(requestdb, "QUIET", 0.0)
    [first] = await sessions_of_requests(signed, 1)

    def terminate():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [first])

    await sync_to_async(terminate)()
    [second, third] = await sessions_of_requests(signed, 2)
    assert first not in (second, third) and second == third  # the new one parked in turn
