"""The statements of the call state machine's hot path, and of a sign-in's reads and
write, as SQL built once per database.

:mod:`directcall.calls` makes every transition of a call with :func:`update`: one
conditional ``UPDATE ... WHERE status IN (...) RETURNING ...`` that changes the row only if
the transition may still happen, and gives back the row as that very statement left it
(with the account's ``has_webhooks``, read by a scalar subquery of the same statement).
Of two processes racing, the database lets one change the row; the other gets no row.

Why raw SQL: Django 5.2 has no ``UPDATE ... RETURNING``, and an update followed by a
select is two round trips that can also read a later transition's row (in autocommit the
select may see what another process changed in between). And building and compiling a
queryset costs about ten times the statement itself on SQLite (~300 µs against ~30 µs of
CPU per query on the benchmark machine, docs/performance.md), several times per call.
The SQL is written from the models' metadata (tables, columns, field conversions), so it
follows the models; values go through the fields' own ``get_db_prep_*`` and converters.

``RETURNING`` is used on SQLite (3.35+) and PostgreSQL. On other backends :func:`update`
falls back to the ORM's update and one select of the row, inside the caller's transaction
(the row stays locked by the update until it commits, so the select reads this
transition's row).
"""

# Only identifiers from the models' metadata, quoted by the backend, are formatted into the
# SQL; every value is a %s parameter.
# ruff: noqa: S608

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from functools import cache
from typing import Any
from uuid import UUID

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, Error, connections, models, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model
from django.db.models.base import ModelState
from django.db.models.fields.related_descriptors import ForeignKeyDeferredAttribute
from django.db.models.query_utils import DeferredAttribute
from django.db.models.signals import post_init, pre_init

from .models import LIVE_STATUSES, Account, Block, Call, Registration

# Who may make a transition: the caller, the callee, either of them.
SIDES = ("caller", "callee", "either")


def supports_returning(connection: BaseDatabaseWrapper) -> bool:
    """Whether ``UPDATE ... RETURNING`` is used on this connection."""
    return connection.vendor in ("sqlite", "postgresql") and bool(
        connection.features.can_return_columns_from_insert
    )


def _q(connection: BaseDatabaseWrapper, name: str) -> str:
    return connection.ops.quote_name(name)


def _qualified(connection: BaseDatabaseWrapper, model: type[Model], table: str) -> str:
    """Every concrete column of ``model`` in field order, qualified by ``table``."""
    return ", ".join(f"{table}.{_q(connection, f.column)}" for f in model._meta.concrete_fields)


def _has_webhooks(connection: BaseDatabaseWrapper, table: str) -> str:
    """A scalar subquery: whether the account of ``table``'s row has a webhook endpoint."""
    account = _q(connection, Account._meta.db_table)
    return (
        f"(SELECT {account}.{_q(connection, 'has_webhooks')} FROM {account} "
        f"WHERE {account}.{_q(connection, 'id')} = {table}.{_q(connection, 'account_id')})"
    )


@cache
def _columns(model: type[Model], vendor: str, alias: str) -> str:
    connection = connections[alias]
    return ", ".join(_q(connection, f.column) for f in model._meta.concrete_fields)


@cache
def _converters(model: type[Model], alias: str) -> list[tuple[Any, list[Callable]]]:
    connection = connections[alias]
    table = model._meta.db_table
    result = []
    for field in model._meta.concrete_fields:
        col = field.get_col(table)
        converters = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
        result.append((col, converters))
    return result


def from_row(model: type[Model], row: Sequence[Any], alias: str) -> Model:
    """A model instance from a row of all its concrete columns (in field order).

    What ``model.from_db`` gives for the row after the columns' converters, made for
    less where nothing can tell the difference (:func:`_reader`): on SQLite with UTC
    datetimes, a datetime or UUID column is converted as Django's converter does it
    (``fromisoformat``, made aware in UTC; ``UUID(text)``), without its call layers; and
    with no ``pre_init``/``post_init`` receiver for the model, the instance is built as
    ``Model.__init__`` builds it from positional values (its state, then each column's
    value in its ``__dict__``), without the signals and the ``setattr`` of each field.
    """
    connection = connections[alias]
    attnames, columns, bare = _reader(model, alias)
    fast = settings.USE_TZ and connection.timezone is UTC
    values = list(row)
    for i, col, converters, kind in columns:  # the columns that have converters, in order
        if i >= len(values):
            break
        value = values[i]
        if value is not None and fast and kind is not None:
            values[i] = _convert(value, kind, col, converters, connection)
        else:
            for converter in converters:
                value = converter(value, col, connection)
            values[i] = value
    if not bare or len(values) != len(attnames) or _watched(model):
        return model.from_db(alias, list(attnames), values)
    instance = model.__new__(model)
    state = instance._state = ModelState()
    state.adding, state.db = False, alias
    instance.__dict__.update(zip(attnames, values, strict=True))
    return instance


# The two converters of SQLite's backend that from_row applies itself (named, not
# imported: a deployment on another database never loads that backend).
_DATETIME, _UUID = "datetime", "uuid"
_SQLITE_OPERATIONS = "django.db.backends.sqlite3.operations"
_FAST_CONVERTERS = {
    "DatabaseOperations.convert_datetimefield_value": _DATETIME,
    "DatabaseOperations.convert_uuidfield_value": _UUID,
}
# What Django's fields put on the model class for their values: descriptors whose
# ``__set__`` (if any) only stores the value for an instance that has no cached relation.
_PLAIN_DESCRIPTORS = (DeferredAttribute, ForeignKeyDeferredAttribute)


def _convert(
    value: Any, kind: str, col: Any, converters: list[Callable], connection: BaseDatabaseWrapper
) -> Any:
    """A datetime or UUID column's value as SQLite's converter makes it with UTC datetimes:
    a datetime (or its ISO text) made aware in UTC, a UUID from its text."""
    try:
        if kind is _UUID:
            return UUID(value)
        parsed = value if type(value) is datetime else datetime.fromisoformat(value)
    except (TypeError, ValueError):  # what fromisoformat does not read: Django's own parser
        for converter in converters:
            value = converter(value, col, connection)
        return value
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@cache
def _reader(
    model: type[Model], alias: str
) -> tuple[tuple[str, ...], list[tuple[int, Any, list[Callable], str | None]], bool]:
    """For :func:`from_row`: the model's attribute names; each column that has converters
    (its index, expression, converters and whether from_row may apply them itself: SQLite's
    datetime or UUID converter alone); and whether instances may be built without
    ``__init__`` (the model keeps ``Model.from_db`` and plain field descriptors)."""
    columns = []
    for i, (col, converters) in enumerate(_converters(model, alias)):
        if not converters:
            continue
        kind = None
        if len(converters) == 1:
            function = getattr(converters[0], "__func__", converters[0])
            if getattr(function, "__module__", None) == _SQLITE_OPERATIONS:
                kind = _FAST_CONVERTERS.get(getattr(function, "__qualname__", ""))
        columns.append((i, col, converters, kind))
    fields = model._meta.concrete_fields
    bare = model.from_db.__func__ is Model.from_db.__func__ and all(
        type(inspect.getattr_static(model, f.attname, None)) in _PLAIN_DESCRIPTORS for f in fields
    )
    return tuple(f.attname for f in fields), columns, bare


def _watched(model: type[Model]) -> bool:
    """Whether a ``pre_init`` or ``post_init`` receiver listens to ``model``'s instances."""
    return any(signal.receivers and signal.has_listeners(model) for signal in _INIT_SIGNALS)


_INIT_SIGNALS = (pre_init, post_init)


def _prep(model: type[Model], name: str, value: Any, connection: BaseDatabaseWrapper) -> Any:
    return saved(model._meta.get_field(name), value, connection)


# Field classes (exactly these, not subclasses) whose value None is saved as NULL.
_NULLABLE = frozenset(
    {
        models.CharField,
        models.URLField,
        models.TextField,
        models.DateTimeField,
        models.UUIDField,
        models.ForeignKey,
        models.FloatField,
        models.BooleanField,
    }
)
_TEXT = frozenset({models.CharField, models.URLField, models.TextField})
_INTEGER_KEYS = frozenset({models.AutoField, models.BigAutoField})


def saved(field: Field, value: Any, connection: BaseDatabaseWrapper) -> Any:
    """``field.get_db_prep_save(value, connection)``: the value as the database gets it.

    On SQLite the values a call row holds (text, a UUID, integer keys, UTC datetimes,
    booleans, NULL) are made here directly, as Django's fields and SQLite's operations make
    them: a UTC datetime is its naive text in the connection's UTC, a UUID its hex. Anything
    else (another database, field class, type of value or time zone) goes to the field
    itself. The field's path costs 2-6 µs each on the benchmark machine, and a call set-up
    prepares about thirty values.
    """
    if connection.vendor != "sqlite":
        return field.get_db_prep_save(value, connection)
    kind = type(field)
    if value is None:
        if kind in _NULLABLE:
            return None
    elif kind in _TEXT:
        if isinstance(value, str):  # what the field's to_python gives back (choices too)
            return value
    elif kind is models.DateTimeField:
        if type(value) is datetime and value.tzinfo is UTC and connection.timezone is UTC:
            return str(value.replace(tzinfo=None))
    elif kind is models.UUIDField:
        if type(value) is UUID:
            return value.hex
    elif kind is models.ForeignKey:
        if type(value) is int and type(field.target_field) in _INTEGER_KEYS:
            return value
    elif kind is models.BooleanField and type(value) is bool:
        return value
    return field.get_db_prep_save(value, connection)


def _run(connection: BaseDatabaseWrapper, sql: str, params: Sequence[Any]) -> Any:
    """Execute ``sql`` (``%s`` marks) with ``params``; return a cursor to read and close.

    On SQLite, with nothing watching the connection's queries (``DEBUG``, the query
    counting of the tests, ``execute_wrapper``), the statement goes to the driver's own
    connection with ``?`` marks, after the checks Django's cursor makes (the thread, a
    broken transaction) and inside its error wrapping: the same statement, the same
    values, the same errors, without Django's cursor and statement-rewriting layers
    around each of the set-up's nine statements (docs/performance.md, run O). Elsewhere
    it goes through Django's cursor, with the marks named (:func:`_execute`).
    """
    raw = _driver(connection)
    if raw is not None:
        connection.validate_thread_sharing()
        connection.validate_no_broken_transaction()
        with connection.wrap_database_errors:
            return raw.execute(_qmark(sql), params)
    cursor = connection.cursor()
    try:
        _execute(cursor, sql, params)
    except BaseException:
        cursor.close()
        raise
    return cursor


def _driver(connection: BaseDatabaseWrapper) -> Any:
    """The driver's connection, if statements may go to it directly (:func:`_run`)."""
    raw = connection.connection
    if (
        raw is not None
        and connection.vendor == "sqlite"
        and not connection.queries_logged
        and not connection.execute_wrappers
    ):
        return raw
    return None


def atomic(using: str = DEFAULT_DB_ALIAS) -> AbstractContextManager[Any]:
    """``transaction.atomic(using)`` for a transition: the same block, leaner on SQLite.

    Where :func:`_run` sends statements to the driver's connection, and no transaction is
    open, the block begins and commits there too (:class:`_DriverAtomic`), without the
    layers Django's outermost block goes through for each (about two thirds of a
    transition's transaction handling on the benchmark machine, docs/performance.md run
    P). Anywhere else it is Django's own block.
    """
    connection = connections[using]
    if (
        _driver(connection) is None
        or not connection.autocommit
        or connection.in_atomic_block
        or connection.closed_in_transaction
        or (connection.health_check_enabled and not connection.health_check_done)
    ):
        return transaction.atomic(using)
    return _DriverAtomic(connection)


def alone(using: str = DEFAULT_DB_ALIAS) -> bool:
    """Whether a transition may be its conditional ``UPDATE`` alone, with no transaction
    around it: on PostgreSQL, under autocommit (no block of the caller's is open).

    A transition's transaction holds its ``UPDATE`` and, for an account with webhook
    endpoints, the outbox rows written with it (:func:`directcall.calls._won`); without
    them it holds the ``UPDATE`` alone, which PostgreSQL makes atomic by itself, with the
    same row lock and the same re-check of its conditions against a racing transition.
    ``BEGIN`` and ``COMMIT`` are a round trip each to the server (psycopg sends ``BEGIN``
    on its own before the first statement): two of a transition's three
    (docs/performance.md, run T). On SQLite the block stays: there ``BEGIN IMMEDIATE``
    takes the write lock before the statement reads (an ``UPDATE`` alone would start as a
    reader, and fail rather than wait when another connection wrote meanwhile), and it
    costs no round trip.
    """
    connection = connections[using]
    return (
        connection.vendor == "postgresql"
        and supports_returning(connection)
        and connection.get_autocommit()
        and not connection.in_atomic_block
    )


class _DriverAtomic:
    """The outermost ``transaction.atomic`` block on SQLite, begun and committed on the
    driver's connection.

    Django's own block (``django.db.transaction.Atomic``) does the same for an outermost
    block under autocommit, which :func:`atomic` made sure of: ``BEGIN`` (with the
    database's ``transaction_mode``), the connection marked in an atomic block (so
    ``on_commit`` hooks wait, inner blocks are savepoints, a durable block inside is
    refused), then ``COMMIT`` and the hooks run, or on an exception or a block marked for
    rollback, Django's own rollback (its hooks dropped). Django keeps SQLite's driver in
    autocommit (``isolation_level=None``) and begins explicitly, as here; the statements,
    and so the transaction, are the same.
    """

    # Read by transaction.Atomic when a durable block is opened inside this one.
    _from_testcase = False

    def __init__(self, connection: BaseDatabaseWrapper) -> None:
        self.connection = connection

    def __enter__(self) -> None:
        connection = self.connection
        connection.validate_thread_sharing()
        connection.commit_on_exit = True
        connection.needs_rollback = False
        mode = connection.transaction_mode
        with connection.wrap_database_errors:
            connection.connection.execute(f"BEGIN {mode}" if mode else "BEGIN")
        connection.autocommit = False
        connection.in_atomic_block = True
        connection.atomic_blocks.append(self)

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        connection = self.connection
        connection.atomic_blocks.pop()
        connection.in_atomic_block = False
        try:
            if connection.closed_in_transaction:
                pass  # the database rolls back by itself
            elif exc_type is None and not connection.needs_rollback:
                try:
                    with connection.wrap_database_errors:
                        connection.connection.commit()
                except DatabaseError:
                    try:
                        connection.rollback()
                    except Error:
                        connection.close()
                    raise
                connection.errors_occurred = False
                connection.run_commit_hooks_on_set_autocommit_on = True
            else:
                connection.needs_rollback = False
                try:
                    connection.rollback()
                except Error:
                    connection.close()
        finally:
            if connection.closed_in_transaction:
                connection.connection = None
            else:
                connection.autocommit = True
                if connection.run_commit_hooks_on_set_autocommit_on:
                    connection.run_and_clear_commit_hooks()
                    connection.run_commit_hooks_on_set_autocommit_on = False


@cache
def _qmark(sql: str) -> str:
    # Only identifiers and ``%s`` marks are in the SQL built here (no literal ``%``).
    return sql.replace("%s", "?")


def _rows(connection: BaseDatabaseWrapper, sql: str, params: Sequence[Any]) -> list[Any]:
    """Every row ``sql`` gives (the statement run to its end, the cursor closed)."""
    cursor = _run(connection, sql, params)
    try:
        with connection.wrap_database_errors:
            return cursor.fetchall()
    finally:
        cursor.close()


def _execute(cursor: Any, sql: str, params: Sequence[Any]) -> None:
    """``cursor.execute(sql, params)`` on Django's cursor, with the ``%s`` marks named
    (``%(p0)s``, ...).

    Django's SQLite cursor rewrites every statement for the driver before running it: a
    regular expression over the whole text for ``%s`` marks (~12 µs for an ``UPDATE ...
    RETURNING`` of every column on the benchmark machine), ``%`` formatting for named ones
    (~3 µs). PostgreSQL's driver takes either.
    """
    named, names = _named(sql)
    cursor.execute(named, dict(zip(names, params, strict=True)))


@cache
def _named(sql: str) -> tuple[str, tuple[str, ...]]:
    first, *rest = sql.split("%s")
    names = tuple(f"p{i}" for i in range(len(rest)))
    return first + "".join(f"%({n})s{part}" for n, part in zip(names, rest, strict=True)), names


# -- the conditional update of a transition -------------------------------------------------


@cache
def _update_sql(
    alias: str,
    names: tuple[str, ...],
    n_sources: int,
    side: str | None,
    deadline_op: str | None,
    unless_webhooks: bool = False,
) -> str:
    connection = connections[alias]
    meta = Call._meta
    table = _q(connection, meta.db_table)
    column = {name: _q(connection, meta.get_field(name).column) for name in names}
    sets = ", ".join(f"{column[name]} = %s" for name in names)
    where = [f"{_q(connection, 'id')} = %s"]
    where.append(f"{_q(connection, 'status')} IN ({', '.join(['%s'] * n_sources)})")
    caller, callee = _q(connection, "caller_id"), _q(connection, "callee_id")
    if side == "caller":
        where.append(f"{caller} = %s")
    elif side == "callee":
        where.append(f"{callee} = %s")
    elif side == "either":
        where.append(f"({caller} = %s OR {callee} = %s)")
    if deadline_op is not None:
        where.append(f"{_q(connection, 'deadline')} {deadline_op} %s")
    has_webhooks = _has_webhooks(connection, table)
    if unless_webhooks:
        where.append(f"NOT {has_webhooks}")
    returning = ""
    if supports_returning(connection):
        returning = f" RETURNING {_columns(Call, connection.vendor, alias)}, {has_webhooks}"
    return f"UPDATE {table} SET {sets} WHERE {' AND '.join(where)}{returning}"


def update(
    call_id: UUID | str,
    sources: tuple[str, ...],
    values: dict[str, Any],
    party: tuple[str, int] | None = None,
    deadline: tuple[str, datetime] | None = None,
    using: str = "default",
    unless_webhooks: bool = False,
) -> tuple[Call, bool] | None:
    """Set ``values`` on the call if its status is one of ``sources`` (and ``party``: who
    asks is ``(side, registration pk)``; ``deadline``: ``("<" or ">=", when)``;
    ``unless_webhooks``: its account has no webhook endpoint, as the statement reads it).

    Return the row as changed and the account's ``has_webhooks``, or None when the row
    did not change (another transition won, or the conditions do not hold). Run inside a
    transaction (``transaction.atomic``) that the caller commits, or alone, where
    :func:`alone` allows it.
    """
    connection = connections[using]
    names = tuple(values)
    side = party[0] if party else None
    if side is not None and side not in SIDES:
        raise ValueError(f"unknown side {side!r}")
    op = deadline[0] if deadline else None
    if op not in (None, "<", ">="):
        raise ValueError(f"unknown deadline comparison {op!r}")
    sql = _update_sql(using, names, len(sources), side, op, unless_webhooks)
    params = [_prep(Call, name, values[name], connection) for name in names]
    params.append(
        _prep(Call, "id", call_id if isinstance(call_id, UUID) else UUID(str(call_id)), connection)
    )
    params.extend(str(s) for s in sources)
    if party is not None:
        params.extend([party[1]] * (2 if side == "either" else 1))
    if deadline is not None:
        params.append(_prep(Call, "deadline", deadline[1], connection))
    if supports_returning(connection):
        rows = _rows(connection, sql, params)
        if not rows:
            return None
        row = rows[0]
        return from_row(Call, row[:-1], using), bool(row[-1])
    cursor = _run(connection, sql, params)
    try:
        if cursor.rowcount != 1:
            return None
    finally:
        cursor.close()
    call = Call.objects.using(using).select_related("account").get(pk=call_id)
    return call, call.account.has_webhooks


# -- signing in: the registration, the live calls ---------------------------------------------
# A sign-in is made on every page that loads the SDK. Its two reads were querysets: each
# cost about a millisecond of query building and compiling on the benchmark machine, most
# of a sign-in's database thread (docs/performance.md, run T). The statements are built
# here once per database, from the models' metadata.


def _width(model: type[Model]) -> int:
    return len(model._meta.concrete_fields)


def _related(instance: Model, **related: Model) -> Model:
    """``instance`` with these related objects cached, as ``select_related`` leaves them."""
    instance._state.fields_cache.update(related)
    return instance


def registration_of(
    pk: int, account_pk: int, cuid: str, using: str = DEFAULT_DB_ALIAS
) -> Registration | None:
    """The registration ``pk`` with its account, if it is still ``cuid`` of that account and
    the account is active (one query); else None."""
    connection = connections[using]
    rows = _rows(connection, _registration_sql(using), [pk, account_pk, cuid, True])
    if not rows:
        return None
    row, width = rows[0], _width(Registration)
    account = from_row(Account, row[width:], using)
    return _related(from_row(Registration, row[:width], using), account=account)


@cache
def _registration_sql(alias: str) -> str:
    connection = connections[alias]
    registration = _q(connection, Registration._meta.db_table)
    account = _q(connection, Account._meta.db_table)
    return (
        f"SELECT {_qualified(connection, Registration, registration)}, "
        f"{_qualified(connection, Account, account)} FROM {registration} "
        f"INNER JOIN {account} ON {account}.{_q(connection, 'id')} = "
        f"{registration}.{_q(connection, 'account_id')} "
        f"WHERE {registration}.{_q(connection, 'id')} = %s "
        f"AND {registration}.{_q(connection, 'account_id')} = %s "
        f"AND {registration}.{_q(connection, 'cuid')} = %s "
        f"AND {account}.{_q(connection, 'is_active')} = %s"
    )


def live_calls_of(registration_pk: int, using: str = DEFAULT_DB_ALIAS) -> list[Call]:
    """The live calls of a registration, as either party, newest first, each with its
    account and parties (one query)."""
    connection = connections[using]
    live = [str(status) for status in LIVE_STATUSES]
    rows = _rows(connection, _live_calls_sql(using), [*live, registration_pk, registration_pk])
    calls = []
    call_width, account_width = _width(Call), _width(Account)
    registration_width = _width(Registration)
    for row in rows:
        at = call_width
        account = from_row(Account, row[at : at + account_width], using)
        at += account_width
        caller = from_row(Registration, row[at : at + registration_width], using)
        at += registration_width
        callee = from_row(Registration, row[at : at + registration_width], using)
        call = from_row(Call, row[:call_width], using)
        calls.append(_related(call, account=account, caller=caller, callee=callee))
    return calls


@cache
def _live_calls_sql(alias: str) -> str:
    connection = connections[alias]
    call = _q(connection, Call._meta.db_table)
    account = _q(connection, Account._meta.db_table)
    registration = _q(connection, Registration._meta.db_table)
    caller, callee = _q(connection, "caller"), _q(connection, "callee")
    pk = _q(connection, "id")
    caller_id, callee_id = _q(connection, "caller_id"), _q(connection, "callee_id")
    live = ", ".join(["%s"] * len(LIVE_STATUSES))
    return (
        f"SELECT {_qualified(connection, Call, call)}, {_qualified(connection, Account, account)}, "
        f"{_qualified(connection, Registration, caller)}, "
        f"{_qualified(connection, Registration, callee)} FROM {call} "
        f"INNER JOIN {account} ON {account}.{pk} = {call}.{_q(connection, 'account_id')} "
        f"INNER JOIN {registration} {caller} ON {caller}.{pk} = {call}.{caller_id} "
        f"INNER JOIN {registration} {callee} ON {callee}.{pk} = {call}.{callee_id} "
        f"WHERE {call}.{_q(connection, 'status')} IN ({live}) "
        f"AND ({call}.{caller_id} = %s OR {call}.{callee_id} = %s) "
        f"ORDER BY {call}.{_q(connection, 'created_at')} DESC"
    )


# -- POST v1/init: the account, the registration --------------------------------------------
# Every page that loads the SDK makes one. The account was read by a queryset, and the
# registration upserted by update_or_create: a transaction, a savepoint, a locking SELECT
# and an UPDATE of every column (seven round trips on PostgreSQL, with BEGIN and COMMIT).


def account_by_id(account_id: str, using: str = DEFAULT_DB_ALIAS) -> Account | None:
    """The account whose public ``account_id`` this is (unique), or None (one query)."""
    rows = _rows(connections[using], _account_sql(using), [account_id])
    return from_row(Account, rows[0], using) if rows else None


@cache
def _account_sql(alias: str) -> str:
    connection = connections[alias]
    account = _q(connection, Account._meta.db_table)
    return (
        f"SELECT {_qualified(connection, Account, account)} FROM {account} "
        f"WHERE {account}.{_q(connection, 'account_id')} = %s"
    )


def registration_by_cuid(
    account: Account, cuid: str, using: str = DEFAULT_DB_ALIAS
) -> Registration | None:
    """``cuid``'s registration in ``account``, with the account cached, or None: one
    ``SELECT``, no transaction."""
    connection = connections[using]
    rows = _rows(connection, _registration_by_cuid_sql(using), [account.pk, cuid])
    if not rows:
        return None
    return _related(from_row(Registration, rows[0], using), account=account)


@cache
def _registration_by_cuid_sql(alias: str) -> str:
    connection = connections[alias]
    table = _q(connection, Registration._meta.db_table)
    return (
        f"SELECT {_columns(Registration, connection.vendor, alias)} FROM {table} "
        f"WHERE {_q(connection, 'account_id')} = %s AND {_q(connection, 'cuid')} = %s"
    )


def update_registration(
    account: Account, cuid: str, values: dict[str, Any], using: str = DEFAULT_DB_ALIAS
) -> Registration | None:
    """Set ``values`` on ``cuid``'s registration in ``account`` and return it as the
    statement left it, with the account cached; None when there is none (or the database
    has no ``RETURNING``): then nothing was written.

    One ``UPDATE ... RETURNING``, atomic on its own: the row is updated whole or not at all.
    """
    connection = connections[using]
    if not supports_returning(connection):
        return None
    names = sorted(values)
    params = [_prep(Registration, name, values[name], connection) for name in names]
    sql = _update_registration_sql(using, tuple(names))
    rows = _rows(connection, sql, [*params, account.pk, cuid])
    if not rows:
        return None
    return _related(from_row(Registration, rows[0], using), account=account)


@cache
def _update_registration_sql(alias: str, names: tuple[str, ...]) -> str:
    connection = connections[alias]
    table = _q(connection, Registration._meta.db_table)
    fields = [Registration._meta.get_field(name) for name in names]
    assignments = ", ".join(f"{_q(connection, field.column)} = %s" for field in fields)
    return (
        f"UPDATE {table} SET {assignments} "
        f"WHERE {_q(connection, 'account_id')} = %s AND {_q(connection, 'cuid')} = %s "
        f"RETURNING {_columns(Registration, connection.vendor, alias)}"
    )


# -- placing a call ---------------------------------------------------------------------------


def callee_of(
    account_pk: int, cuid: str, caller_pk: int, using: str = "default"
) -> tuple[Registration, bool, bool] | None:
    """The registration of ``cuid`` in the account, whether it blocked ``caller_pk``, and
    the account's ``has_webhooks`` as it is now (the invite's outbox reads it)."""
    connection = connections[using]
    sql = _callee_sql(using)
    rows = _rows(connection, sql, [caller_pk, account_pk, cuid])
    if not rows:
        return None
    row = rows[0]
    return from_row(Registration, row[:-2], using), bool(row[-2]), bool(row[-1])


@cache
def _callee_sql(alias: str) -> str:
    connection = connections[alias]
    registration = _q(connection, Registration._meta.db_table)
    block = _q(connection, Block._meta.db_table)
    blocked = (
        f"EXISTS (SELECT 1 FROM {block} WHERE {block}.{_q(connection, 'blocker_id')} = "
        f"{registration}.{_q(connection, 'id')} AND {block}.{_q(connection, 'blocked_id')} = %s)"
    )
    columns = _qualified(connection, Registration, registration)
    webhooks = _has_webhooks(connection, registration)
    return (
        f"SELECT {columns}, {blocked}, {webhooks} FROM {registration} "
        f"WHERE {registration}.{_q(connection, 'account_id')} = %s "
        f"AND {registration}.{_q(connection, 'cuid')} = %s"
    )


def lock_parties(pks: list[int], using: str = "default") -> None:
    """Lock the registrations (``SELECT ... FOR UPDATE``, in pk order); nothing on SQLite.

    SQLite has no row locks: a transaction there takes the database's write lock at
    ``BEGIN IMMEDIATE`` (example_project's ``transaction_mode``), which serialises call
    set-ups the same way; Django would send the select without ``FOR UPDATE`` anyway.
    """
    connection = connections[using]
    if not connection.features.has_select_for_update:
        return
    table = _q(connection, Registration._meta.db_table)
    pk = _q(connection, "id")
    marks = ", ".join(["%s"] * len(pks))
    sql = f"SELECT {pk} FROM {table} WHERE {pk} IN ({marks}) ORDER BY {pk} FOR UPDATE"
    _rows(connection, sql, sorted(pks))


def in_live_calls(pks: list[int], using: str = "default") -> set[int]:
    """Which of the registrations ``pks`` are a party of a live call (one query)."""
    connection = connections[using]
    table = _q(connection, Call._meta.db_table)
    caller, callee = _q(connection, "caller_id"), _q(connection, "callee_id")
    marks = ", ".join(["%s"] * len(pks))
    live = ", ".join(["%s"] * len(LIVE_STATUSES))
    sql = (
        f"SELECT {caller}, {callee} FROM {table} WHERE {_q(connection, 'status')} IN ({live}) "
        f"AND ({caller} IN ({marks}) OR {callee} IN ({marks}))"
    )
    rows = _rows(connection, sql, [*(str(s) for s in LIVE_STATUSES), *pks, *pks])
    wanted = set(pks)
    return {pk for row in rows for pk in row if pk in wanted}


def insert(call: Call, using: str = "default") -> None:
    """Insert a new call row (every column, the values the model's fields prepare)."""
    connection = connections[using]
    fields = Call._meta.concrete_fields
    marks = ", ".join(["%s"] * len(fields))
    sql = (
        f"INSERT INTO {_q(connection, Call._meta.db_table)} "
        f"({_columns(Call, connection.vendor, using)}) VALUES ({marks})"
    )
    params = [saved(f, f.pre_save(call, True), connection) for f in fields]
    _run(connection, sql, params).close()
    call._state.adding = False
    call._state.db = using
