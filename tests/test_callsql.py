"""directcall.callsql's statements: named parameters, and values that only look like SQL."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from directcall import calls, callsql
from directcall.models import Call, CallStatus, Registration
from directcall.validation import clean_call_params

pytestmark = pytest.mark.django_db

LOOKALIKE = "50 %s off, %(p0)s :p1 ? %% '); --"


def test_marks_are_named_in_order():
    sql, names = callsql._named("UPDATE t SET a = %s WHERE id = %s AND s IN (%s, %s)")
    assert sql == "UPDATE t SET a = %(p0)s WHERE id = %(p1)s AND s IN (%(p2)s, %(p3)s)"
    assert names == ("p0", "p1", "p2", "p3")
    assert callsql._named("SELECT 1") == ("SELECT 1", ())


def test_values_that_look_like_marks_are_stored_as_they_are(people):
    """The values are bound by the driver, never formatted into the statement: a context
    full of marks goes in and comes back unchanged through the insert, the busy check,
    the conditional update and its RETURNING row."""
    jane, sam = people["tutor_jane"], people["student_sam"]
    call = calls.start(jane.pk, clean_call_params("student_sam", LOOKALIKE))
    assert Call.objects.get(pk=call.pk).context == LOOKALIKE
    rung = calls.ring(call.pk, sam.pk)
    assert rung is not None and rung.status == CallStatus.RINGING
    assert rung.context == LOOKALIKE
    assert callsql.in_live_calls([jane.pk, sam.pk]) == {jane.pk, sam.pk}


# -- SQLite's driver path (the "sqlite" database of the test settings, SQLite whatever
# "default" is) --------------------------------------------------------------------------


SIDE = "sqlite"
on_side = pytest.mark.django_db(databases=["default", SIDE])


def _side_call(account, jane, sam, context: str = "hi") -> Call:
    call = Call(
        account=account,
        caller=jane,
        callee=sam,
        context=context,
        status=CallStatus.INITIATED,
        created_at=timezone.now(),
        deadline=timezone.now() + timedelta(seconds=30),
    )
    with transaction.atomic(using=SIDE):
        callsql.insert(call, using=SIDE)
    return call


@on_side
def test_on_sqlite_the_statements_go_to_the_drivers_connection(side, monkeypatch):
    """With nothing watching the queries, callsql's statements skip Django's cursor (the
    set-up's hot path, docs/performance.md run O), with the same results: the callee
    found, the call recorded, the parties busy, the transition made once and its row
    returned, marks in the values stored as they are."""
    connection, account, jane, sam = side
    connection.ensure_connection()

    def through_djangos_cursor(cursor, sql, params):
        raise AssertionError(f"through Django's cursor: {sql}")

    monkeypatch.setattr(callsql, "_execute", through_djangos_cursor)
    found = callsql.callee_of(account.pk, "student_sam", jane.pk, using=SIDE)
    assert found is not None and found[0].pk == sam.pk and found[1:] == (False, False)
    assert callsql.callee_of(account.pk, "nobody_here", jane.pk, using=SIDE) is None
    call = _side_call(account, jane, sam, LOOKALIKE)
    assert callsql.in_live_calls([jane.pk, sam.pk], using=SIDE) == {jane.pk, sam.pk}
    ring = (call.pk, (CallStatus.INITIATED,), {"status": CallStatus.RINGING}, ("callee", sam.pk))
    with transaction.atomic(using=SIDE):
        changed = callsql.update(*ring, using=SIDE)
    assert changed is not None
    rung, has_webhooks = changed
    assert (rung.pk, rung.status, rung.context, has_webhooks) == (
        call.pk,
        CallStatus.RINGING,
        LOOKALIKE,
        False,
    )
    with transaction.atomic(using=SIDE):
        assert callsql.update(*ring, using=SIDE) is None  # made once
    monkeypatch.undo()
    stored = Call.objects.using(SIDE).get(pk=call.pk)
    assert (stored.status, stored.context) == (CallStatus.RINGING, LOOKALIKE)


@on_side
def test_watched_queries_go_through_djangos_cursor(side):
    """Query logging (DEBUG, the tests' query counting) sees every statement: the driver
    path steps aside for it."""
    from django.test.utils import CaptureQueriesContext

    connection, account, jane, sam = side
    call = _side_call(account, jane, sam)
    with CaptureQueriesContext(connection) as captured, transaction.atomic(using=SIDE):
        callsql.update(
            call.pk,
            (CallStatus.INITIATED,),
            {"status": CallStatus.RINGING},
            ("callee", sam.pk),
            using=SIDE,
        )
    updates = [q["sql"] for q in captured if q["sql"].startswith("UPDATE")]
    assert len(updates) == 1 and "RETURNING" in updates[0]


@on_side
def test_a_driver_error_is_djangos_error_and_breaks_the_transaction(side):
    """The same errors as through Django's cursor: a duplicate row is Django's
    ``IntegrityError``, and in an atomic block that an error has broken, the next
    statement is refused as Django refuses it."""
    from django.db import IntegrityError
    from django.db.transaction import TransactionManagementError

    _, account, jane, sam = side
    call = _side_call(account, jane, sam)
    twin = Call(pk=call.pk, account=account, caller=jane, callee=sam, context="x", status="over")
    with pytest.raises(IntegrityError), transaction.atomic(using=SIDE):
        callsql.insert(twin, using=SIDE)
    with transaction.atomic(using=SIDE):
        with pytest.raises(IntegrityError), transaction.atomic(using=SIDE):
            callsql.insert(twin, using=SIDE)
        # The inner block rolled back to its savepoint: the outer one carries on.
        assert callsql.in_live_calls([jane.pk], using=SIDE) == {jane.pk}
    with pytest.raises(TransactionManagementError), transaction.atomic(using=SIDE):
        # Swallowed past a block without a savepoint: the outer block is broken now.
        with contextlib.suppress(IntegrityError), transaction.atomic(using=SIDE, savepoint=False):
            callsql.insert(twin, using=SIDE)
        callsql.in_live_calls([jane.pk], using=SIDE)
    assert Call.objects.using(SIDE).filter(pk=call.pk).count() == 1


# -- a transition's block on SQLite's driver connection (callsql.atomic) -------------------
# Outside any test transaction (transaction=True): the block is only lean when it is the
# outermost one.

on_side_committed = pytest.mark.django_db(transaction=True, databases=["default", SIDE])


def _stored(call: Call) -> str | None:
    """The call's status as another connection to the file reads it (committed only)."""
    import sqlite3

    from django.db import connections

    with contextlib.closing(sqlite3.connect(connections[SIDE].settings_dict["NAME"])) as other:
        row = other.execute(
            "SELECT status FROM directcall_call WHERE id = ?", [call.pk.hex]
        ).fetchone()
    return row[0] if row else None


def _rung(call: Call, sam: Registration) -> tuple[Call, bool] | None:
    return callsql.update(
        call.pk,
        (CallStatus.INITIATED,),
        {"status": CallStatus.RINGING},
        ("callee", sam.pk),
        using=SIDE,
    )


@on_side_committed
def test_a_transitions_block_begins_and_commits_on_the_drivers_connection(side, monkeypatch):
    """Outermost, under autocommit, with nothing watching the queries: the block begins
    and commits on the driver's connection, and behaves as Django's: the connection is in
    an atomic block inside it, on_commit hooks wait for the commit, autocommit is back
    after it."""
    connection, account, jane, sam = side
    call = _side_call(account, jane, sam)
    connection.ensure_connection()

    def through_django(*args, **kwargs):
        raise AssertionError("began or committed through Django's connection")

    monkeypatch.setattr(connection, "_start_transaction_under_autocommit", through_django)
    monkeypatch.setattr(connection, "commit", through_django)
    ran = []
    block = callsql.atomic(SIDE)
    assert not isinstance(block, transaction.Atomic)
    with block:
        assert connection.in_atomic_block and not connection.get_autocommit()
        assert connection.connection.in_transaction
        assert _rung(call, sam) is not None
        transaction.on_commit(lambda: ran.append(_stored(call)), using=SIDE)
        assert ran == [] and _stored(call) == CallStatus.INITIATED  # not committed yet
    assert ran == [CallStatus.RINGING]  # the hook ran after the commit
    assert not connection.in_atomic_block and connection.get_autocommit()
    assert not connection.connection.in_transaction and connection.atomic_blocks == []


@on_side_committed
def test_a_transitions_block_rolls_back_as_djangos(side):
    """An exception, or a block marked for rollback, rolls the transition back and drops
    its hooks; an inner block is a savepoint; a durable block inside is refused."""
    from django.db import IntegrityError

    connection, account, jane, sam = side
    call = _side_call(account, jane, sam)
    ran = []
    with pytest.raises(ZeroDivisionError), callsql.atomic(SIDE):
        assert _rung(call, sam) is not None
        transaction.on_commit(lambda: ran.append("hook"), using=SIDE)
        1 / 0  # noqa: B018
    with callsql.atomic(SIDE):
        assert _rung(call, sam) is not None
        transaction.on_commit(lambda: ran.append("hook"), using=SIDE)
        transaction.set_rollback(True, using=SIDE)
    assert ran == [] and _stored(call) == CallStatus.INITIATED
    assert connection.get_autocommit() and not connection.connection.in_transaction
    twin = Call(pk=call.pk, account=account, caller=jane, callee=sam, context="x", status="over")
    with callsql.atomic(SIDE):
        with pytest.raises(IntegrityError), transaction.atomic(using=SIDE):
            callsql.insert(twin, using=SIDE)
        assert _rung(call, sam) is not None  # after the savepoint's rollback
        with pytest.raises(RuntimeError, match="durable"), transaction.atomic(SIDE, durable=True):
            pass
    assert _stored(call) == CallStatus.RINGING


@on_side_committed
def test_a_transitions_block_is_djangos_own_elsewhere(side):
    """Inside another block, or with the queries watched, it is Django's block."""
    from django.test.utils import CaptureQueriesContext

    connection, *_ = side
    connection.ensure_connection()
    assert not isinstance(callsql.atomic(SIDE), transaction.Atomic)
    with transaction.atomic(using=SIDE):
        assert isinstance(callsql.atomic(SIDE), transaction.Atomic)
    with CaptureQueriesContext(connection):
        assert isinstance(callsql.atomic(SIDE), transaction.Atomic)


@on_side
def test_values_are_saved_as_djangos_fields_save_them(side):
    """callsql.saved makes the values of a call row itself: each is what the field's own
    get_db_prep_save gives, on SQLite and on the database the suite runs on, for the
    values a call holds and for others that go to the field."""
    import uuid
    import zoneinfo
    from datetime import UTC, datetime

    from django.db import connections

    _, account, jane, _ = side
    when = datetime(2026, 11, 28, 21, 30, 5, 123456, tzinfo=UTC)
    samples = {
        "id": [uuid.uuid4(), str(uuid.uuid4()), None],
        "account": [account.pk, str(account.pk), None],
        "caller": [jane.pk, True],
        "context": ["", LOOKALIKE, "élan 🎉", 12, None],
        "caller_image": ["https://example.com/a.png", None],
        "status": [CallStatus.RINGING, "over"],
        "created_at": [
            when,
            when.astimezone(zoneinfo.ZoneInfo("Asia/Kolkata")),
            datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
            None,
        ],
        "deadline": [when + timedelta(seconds=30), None],
        "quality": [{"mos": 4.1, "note": LOOKALIKE}, None],
        "quality_mos": [4.25, 3, None],
        "quality_relayed": [True, False, None, 1],
    }
    for alias in ("default", SIDE):
        connection = connections[alias]
        for name, values in samples.items():
            field = Call._meta.get_field(name)
            for value in values:
                expected = field.get_db_prep_save(value, connection)
                got = callsql.saved(field, value, connection)
                # psycopg's JSON wrapper compares by identity: its object, then.
                same = (type(got), getattr(got, "obj", got))
                assert same == (type(expected), getattr(expected, "obj", expected)), (alias, name)


@on_side
@pytest.mark.parametrize("use_tz", [True, False])
def test_rows_make_the_instances_the_orm_makes(side, settings, use_tz):
    """callsql.from_row converts a row and builds the instance itself (SQLite's datetime
    and UUID columns, no __init__): the same values, types and state as the ORM's own
    instance of the row, on SQLite and on the database the suite runs on; with naive
    datetimes (USE_TZ off) too, where Django's converters do it all."""
    from django.db import connections

    settings.USE_TZ = use_tz

    from directcall.models import Account

    _, account, jane, sam = side
    for alias in (SIDE, "default"):
        if alias == "default":
            account = Account(name="Main", require_clevertap=False, identity="page")
            account.set_new_api_key()
            account.save()
            jane = Registration.objects.create(account=account, cuid="tutor_jane", name="Jane")
            sam = Registration.objects.create(account=account, cuid="student_sam")
            call = calls.start(jane.pk, clean_call_params(sam.cuid, LOOKALIKE))
        else:
            call = _side_call(account, jane, sam, LOOKALIKE)
        Call.objects.using(alias).filter(pk=call.pk).update(
            answered_at=timezone.now(), quality={"mos": 4.2}, quality_relayed=True
        )
        for model, pk in ((Call, call.pk), (Registration, jane.pk)):
            columns = ", ".join(
                connections[alias].ops.quote_name(f.column) for f in model._meta.concrete_fields
            )
            table = connections[alias].ops.quote_name(model._meta.db_table)
            key = model._meta.pk.get_db_prep_value(pk, connections[alias])
            with connections[alias].cursor() as cursor:
                cursor.execute(f"SELECT {columns} FROM {table} WHERE id = %s", [key])  # noqa: S608
                row = cursor.fetchone()
            made = callsql.from_row(model, row, alias)
            expected = model.objects.using(alias).get(pk=pk)
            assert type(made) is model
            assert (made._state.adding, made._state.db) == (False, alias)
            values = {f.attname: getattr(made, f.attname) for f in model._meta.concrete_fields}
            wanted = {f.attname: getattr(expected, f.attname) for f in model._meta.concrete_fields}
            assert values == wanted, (alias, model)
            assert [type(v) for v in values.values()] == [type(v) for v in wanted.values()]
            assert (made.created_at.tzinfo is not None) is use_tz


@on_side
def test_a_post_init_receiver_still_sees_the_instances_rows_make(side):
    """With a pre_init or post_init receiver for the model, from_row builds the instance
    through Model.__init__, so the receiver runs (libraries that track fields need it)."""
    from django.db.models.signals import post_init

    _, account, jane, sam = side
    call = _side_call(account, jane, sam)
    seen = []

    def receiver(sender, instance, **kwargs):
        seen.append(instance)

    post_init.connect(receiver, sender=Call)
    try:
        changed = callsql.update(
            call.pk, (CallStatus.INITIATED,), {"status": "ringing"}, using=SIDE
        )
    finally:
        post_init.disconnect(receiver, sender=Call)
    assert changed is not None
    assert seen == [changed[0]] and seen[0] is changed[0]


# -- signing in: the registration and the live calls, against the ORM's ----------------------


def _fields(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def _same(mine, orms, related: tuple[str, ...]) -> None:
    """The same row, and the same related rows cached (no query to read them)."""
    assert type(mine) is type(orms) and _fields(mine) == _fields(orms)
    assert not mine._state.adding and mine._state.db == orms._state.db
    for name in related:
        assert mine._state.fields_cache[name] is not None
        assert _fields(mine._state.fields_cache[name]) == _fields(getattr(orms, name))


def test_the_registration_at_sign_in_is_the_orms(people, django_assert_num_queries):
    from directcall.models import Account

    jane, mallory = people["tutor_jane"], people["mallory_m"]
    orms = Registration.objects.select_related("account").get(pk=jane.pk)
    with django_assert_num_queries(1):
        mine = callsql.registration_of(jane.pk, jane.account_id, "tutor_jane")
        _same(mine, orms, ("account",))
        assert mine.account.name == orms.account.name
    # Another cuid, another account, an unknown pk: nobody.
    assert callsql.registration_of(jane.pk, jane.account_id, "student_sam") is None
    assert callsql.registration_of(jane.pk, mallory.account_id, "tutor_jane") is None
    assert callsql.registration_of(10**9, jane.account_id, "tutor_jane") is None
    Account.objects.filter(pk=jane.account_id).update(is_active=False)
    assert callsql.registration_of(jane.pk, jane.account_id, "tutor_jane") is None


def test_the_live_calls_at_sign_in_are_the_orms(people, django_assert_num_queries):
    from django.db.models import Q

    jane, sam, gil = people["tutor_jane"], people["student_sam"], people["grocer_gil"]
    now = timezone.now()
    made = []
    for i, (caller, callee, status) in enumerate(
        [
            (jane, sam, CallStatus.OVER),
            (sam, jane, CallStatus.RINGING),
            (jane, gil, CallStatus.ANSWERED),
            (gil, sam, CallStatus.INITIATED),  # not jane's
            (gil, jane, CallStatus.INITIATED),
            (jane, gil, CallStatus.MISSED),
        ]
    ):
        made.append(
            Call.objects.create(
                account=jane.account,
                caller=caller,
                callee=callee,
                context=LOOKALIKE,
                status=status,
                created_at=now - timedelta(seconds=10 - i),
                deadline=now + timedelta(seconds=30) if status in calls.LIVE_STATUSES else None,
                answered_at=now if status == CallStatus.ANSWERED else None,
                caller_key_hash="k" * 64,
            )
        )
    orms = list(
        Call.objects.live()
        .filter(Q(caller_id=jane.pk) | Q(callee_id=jane.pk))
        .select_related("account", "caller", "callee")
    )
    assert [call.pk for call in orms] == [made[4].pk, made[2].pk, made[1].pk]  # newest first
    with django_assert_num_queries(1):
        mine = calls.live_calls_of(jane.pk)
        assert [call.pk for call in mine] == [call.pk for call in orms]
        for call, orms_call in zip(mine, orms, strict=True):
            _same(call, orms_call, ("account", "caller", "callee"))
    assert calls.live_calls_of(people["mallory_m"].pk) == []


def test_the_account_at_init_is_the_orms(people, django_assert_num_queries):
    from directcall.models import Account

    jane = people["tutor_jane"]
    orms = Account.objects.get(pk=jane.account_id)
    with django_assert_num_queries(1):
        mine = callsql.account_by_id(orms.account_id)
    assert type(mine) is Account and _fields(mine) == _fields(orms)
    assert callsql.account_by_id("NO-SUCH-ACCOUNT") is None
    assert callsql.account_by_id(orms.account_id.lower() + LOOKALIKE) is None


def test_the_registration_read_at_init_is_what_the_orm_reads(people, django_assert_num_queries):
    jane, mallory = people["tutor_jane"], people["mallory_m"]
    account = jane.account
    orms = Registration.objects.select_related("account").get(pk=jane.pk)
    with django_assert_num_queries(1):  # on Django's cursor: the queries are counted
        mine = callsql.registration_by_cuid(account, "tutor_jane")
    _same(mine, orms, ("account",))
    assert mine.account is account
    # On SQLite's driver (nothing counts the queries there), the same.
    _same(callsql.registration_by_cuid(account, "tutor_jane"), orms, ("account",))
    assert callsql.registration_by_cuid(mallory.account, "tutor_jane") is None
    assert callsql.registration_by_cuid(account, "nobody_here") is None


def test_the_registration_updated_at_init_is_what_the_orm_reads(people, django_assert_num_queries):
    jane, mallory = people["tutor_jane"], people["mallory_m"]
    account = jane.account
    seen = timezone.now() + timedelta(minutes=5)
    values = {
        "name": LOOKALIKE[:50],
        "image_url": "https://img.example/j.png?a=1&b='2'",
        "ct_account_id": "",
        "ct_id": "__g1",
        "device_id": "dev-jane",
        "last_seen_at": seen,
    }
    with django_assert_num_queries(1):
        mine = callsql.update_registration(account, "tutor_jane", values)
    orms = Registration.objects.select_related("account").get(pk=jane.pk)
    _same(mine, orms, ("account",))
    assert mine.account is account
    assert (orms.name, orms.ct_id, orms.last_seen_at) == (LOOKALIKE[:50], "__g1", seen)
    assert orms.created_at == jane.created_at  # only what it was given
    # Another account's cuid, or a cuid nobody has: nothing found, nothing written.
    before = list(Registration.objects.order_by("pk").values())
    assert callsql.update_registration(mallory.account, "tutor_jane", values) is None
    assert callsql.update_registration(account, "nobody_here", values) is None
    assert list(Registration.objects.order_by("pk").values()) == before
