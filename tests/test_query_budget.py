"""The query budget of a call: every database query of signing in and of a whole call
(invite, ring, answer, hang-up), counted on the connection of the thread where the
signaling consumer runs its ORM work, so that a query added on the hot path fails here.

What the budget is (docs/performance.md, "Queries per call"): signing in reads the
registration with its account and the live calls handed back; the invite reads the callee
(and whether it blocked the caller) and both parties' live calls, and inserts the call, in
one transaction (SQLite: ``BEGIN IMMEDIATE`` counts as a query; PostgreSQL also locks the
two registrations); each transition is one ``UPDATE ... RETURNING`` in a transaction, on
PostgreSQL without one (:func:`directcall.callsql.alone`); the
callee's connection is handed the call in the ``incoming`` message and reads nothing. The
account here has no webhook endpoint (one with endpoints writes its outbox rows too), and
only directcall's own signal receivers run (a host site's, such as the demo's billing, add
their own queries), and the sweep (its own background queries) is held off. Django logs
``BEGIN`` and ``COMMIT`` as queries.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
from asgiref.sync import sync_to_async
from django.db import DEFAULT_DB_ALIAS, connections

from .wsclient import ANSWER, full_call

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("signaling")]


def _budget() -> dict[str, int]:
    """Queries per step on this database."""
    connection = connections[DEFAULT_DB_ALIAS]
    transaction = 2  # BEGIN and COMMIT, as Django logs them
    lock = 1 if connection.features.has_select_for_update else 0
    # PostgreSQL: a transition of an account without webhooks is its UPDATE alone.
    alone = 0 if connection.vendor == "postgresql" else transaction
    return {
        "sign-in": 2,  # the registration (with its account), its live calls
        "invite": 3 + lock + transaction,  # callee + block, [lock], both busy?, INSERT
        "ringing": 1 + alone,  # UPDATE ... RETURNING
        "accept": 1 + alone,
        "hangup": 1 + alone,
    }


@pytest.fixture(autouse=True)
def no_sweep(channel_backend, settings):
    """The sweep's periodic queries are not the call's."""
    settings.DIRECTCALL = {**settings.DIRECTCALL, "SWEEP_INTERVAL": 3600}


@pytest.fixture(autouse=True)
def directcall_receivers_only():
    """Only directcall's own receivers of the call signals (not the demo site's billing)."""
    from directcall import signals

    kept = {}
    for signal in (
        signals.call_initiated,
        signals.call_ringing,
        signals.call_answered,
        signals.call_ended,
    ):
        kept[signal] = list(signal.receivers)
        with signal.lock:
            signal.receivers = [
                r for r in signal.receivers if _module_of(r).startswith("directcall")
            ]
            signal.sender_receivers_cache.clear()
    yield
    for signal, receivers in kept.items():
        with signal.lock:
            signal.receivers = receivers
            signal.sender_receivers_cache.clear()


def _module_of(receiver_entry) -> str:
    reference = receiver_entry[1]
    function = (
        reference() if callable(reference) and not hasattr(reference, "__module__") else reference
    )
    function = getattr(function, "__func__", function)
    return getattr(function, "__module__", "") or ""


@contextlib.asynccontextmanager
async def queries(django_assert_num_queries, number: int, step: str) -> AsyncIterator[None]:
    """Exactly ``number`` queries by the consumers' database thread during the block."""
    # database_sync_to_async runs in asgiref's one thread-sensitive thread: its connection.
    connection = await sync_to_async(lambda: connections[DEFAULT_DB_ALIAS])()
    counting = django_assert_num_queries(number, connection=connection, info=step)
    await sync_to_async(counting.__enter__)()
    try:
        yield
    finally:
        await sync_to_async(counting.__exit__)(None, None, None)


async def test_a_whole_call_stays_within_its_query_budget(
    people, clients, django_assert_num_queries
):
    budget = await sync_to_async(_budget)()
    async with queries(django_assert_num_queries, budget["sign-in"], "sign-in"):
        jane = await clients.sign_in(people["tutor_jane"])
    async with queries(django_assert_num_queries, budget["sign-in"], "sign-in"):
        sam = await clients.sign_in(people["student_sam"])

    async with queries(django_assert_num_queries, budget["invite"], "invite"):
        call_id = (await jane.invite(sam.cuid))["call_id"]
        await sam.next("incoming", call_id=call_id)
    async with queries(django_assert_num_queries, budget["ringing"], "ringing"):
        await sam.send(type="ringing", call_id=call_id)
        await jane.next("state", call_id=call_id, status="ringing")
        await sam.next("state", call_id=call_id, status="ringing")
    async with queries(django_assert_num_queries, budget["accept"], "accept"):
        await sam.send(type="accept", call_id=call_id, sdp=ANSWER)
        await jane.next("state", call_id=call_id, status="answered")
        await sam.next("state", call_id=call_id, status="answered")
    async with queries(django_assert_num_queries, 0, "candidates"):
        candidate = {"candidate": "candidate:1 1 udp 1 192.0.2.1 9 typ host", "sdpMid": "0"}
        await jane.send(type="candidates", call_id=call_id, candidates=[candidate])
        await sam.next("candidates", call_id=call_id)
    async with queries(django_assert_num_queries, budget["hangup"], "hangup"):
        await jane.send(type="hangup", call_id=call_id)
        await jane.next("state", call_id=call_id, status="over")
        await sam.next("state", call_id=call_id, status="over")


async def test_the_whole_lifecycle_has_a_ceiling(people, clients, django_assert_max_num_queries):
    """The same call in one block (both sign-ins, the callee hangs up), against the total."""
    budget = await sync_to_async(_budget)()
    ceiling = sum(budget.values()) + budget["sign-in"]  # two sign-ins
    async with contextlib.AsyncExitStack() as stack:
        connection = await sync_to_async(lambda: connections[DEFAULT_DB_ALIAS])()
        counting = django_assert_max_num_queries(ceiling, connection=connection, info="a call")
        await sync_to_async(counting.__enter__)()
        stack.push_async_callback(sync_to_async(counting.__exit__), None, None, None)
        jane = await clients.sign_in(people["tutor_jane"])
        sam = await clients.sign_in(people["student_sam"])
        await full_call(jane, sam, hangs_up=sam)
