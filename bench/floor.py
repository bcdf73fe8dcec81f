"""The floor under directcall's rules: its call protocol served with no framework.

``bench/signaling.py --configs peerjs,floor,uvicorn-lean`` runs it as the ``floor``
configuration, side by side with PeerJS and directcall, driven by the same load generator
with the same frames. uvicorn with directcall's WebSocket protocol
(``directcall.uvicorn_ws``, as ``uvicorn-lean``) serves :func:`app` below, a bare ASGI
application on a copy of the benchmark's prepared SQLite database. It does what
directcall's rules make a call set-up do, written the shortest way, with none of Django's,
Channels' or directcall's code on the path of a frame:

- a connection signs in with the token that ``/directcall/v1/init`` issued (its signature
  checked with ``django.core.signing``, the user's row read) before any other frame;
- every frame is size-checked and decoded, and its fields are validated;
- the call's state is the database's: each transition is a transaction on a database
  thread (one worker, as asgiref's), never on the event loop, with directcall's own
  statements on the driver's connection (WAL, ``synchronous=NORMAL``, ``BEGIN
  IMMEDIATE``). The invite reads the callee (not blocked by them) outside it, then checks
  that neither party is in a live call and inserts the row (5 statements); ringing,
  accept and hang-up are each one conditional ``UPDATE ... RETURNING`` (3 each), as
  ``directcall/callsql.py`` sends them;
- only the two parties are told: ``invited`` to the caller, ``incoming`` to each of the
  callee's connections, every state to both, candidates to the other party of a live call;
- a ringing call has a deadline (a timer on the loop) that ends it as missed.

So a set-up is the same 4 frames in and 8 out as directcall's and the same 14 statements;
what it leaves out is everything directcall adds over that floor: Django's ORM,
transactions, signals and connection handling, Channels' consumer, presence with a TTL,
rate limits, call keys, webhooks and screens. Its set-up cost is the lowest a server
keeping those rules in Python can reach; PeerJS's (3 frames in, 3 out, no database, no
authentication) is not held to them.

SQLite only (``FLOOR_DATABASE``: the file's path); secrets as ``bench/settings.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core import signing

from bench.frame_floor import hop

SECRET_KEY = os.environ.get("BENCH_SECRET_KEY", "bench-only-secret-key")
TOKEN_SALT = "directcall.session.v1"  # noqa: S105 (directcall.tokens' salt, not a secret)
MAX_FRAME = 65536
RING_TIMEOUT = 30.0
CUID = re.compile(r"^[A-Za-z0-9_]{5,50}$")
LIVE = ("initiated", "ringing", "answered")
_local = threading.local()


def _db() -> sqlite3.Connection:
    """The database thread's connection to the SQLite file (made once, in that thread)."""
    db = getattr(_local, "db", None)
    if db is None:
        db = _local.db = sqlite3.connect(
            os.environ["FLOOR_DATABASE"], isolation_level=None, timeout=20
        )
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
    return db


@contextlib.contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[None]:
    """A write transaction (``BEGIN IMMEDIATE``): committed when the block ends, a
    ``return`` from it included (a refused invite commits a transaction that wrote
    nothing); rolled back if it raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _now() -> str:
    """A UTC datetime as Django stores it in SQLite."""
    return str(datetime.now(UTC).replace(tzinfo=None))


def _user(account: int, pk: int, cuid: str) -> tuple[str, str] | None:
    row = (
        _db()
        .execute(
            "SELECT name, image_url FROM directcall_registration "
            "WHERE id = ? AND account_id = ? AND cuid = ?",
            (pk, account, cuid),
        )
        .fetchall()
    )
    return row[0] if row else None


def _place(account: int, caller: int, receiver: str, context: str) -> dict[str, Any]:
    """The invite's transaction: the callee, neither party busy, the row inserted."""
    db = _db()
    found = db.execute(
        "SELECT id, name, image_url, EXISTS (SELECT 1 FROM directcall_block "
        "WHERE blocker_id = directcall_registration.id AND blocked_id = ?) "
        "FROM directcall_registration WHERE account_id = ? AND cuid = ?",
        (caller, account, receiver),
    ).fetchall()
    if not found or found[0][3] or found[0][0] == caller:
        return {"error": "ERR_CALL_NOT_ALLOWED"}
    callee, name, image, _ = found[0]
    call_id = uuid.uuid4()
    now = datetime.now(UTC).replace(tzinfo=None)
    with _immediate(db):
        busy = db.execute(
            "SELECT caller_id, callee_id FROM directcall_call WHERE status IN (?, ?, ?) "
            "AND (caller_id IN (?, ?) OR callee_id IN (?, ?))",
            (*LIVE, caller, callee, caller, callee),
        ).fetchall()
        if busy:
            return {"error": "ERR_CALL_STATE"}
        db.execute(
            "INSERT INTO directcall_call (id, context, caller_image, receiver_image, status, "
            "end_reason, created_at, answered_at, ended_at, deadline, account_id, callee_id, "
            "caller_id, callee_key_hash, caller_key_hash, quality, quality_mos, "
            "quality_relayed, quality_warned) "
            "VALUES (?, ?, '', '', 'initiated', '', ?, NULL, NULL, ?, ?, ?, ?, '', '', "
            "NULL, NULL, NULL, NULL)",
            (
                call_id.hex,
                context,
                str(now),
                str(now + timedelta(seconds=RING_TIMEOUT)),
                account,
                callee,
                caller,
            ),
        )
    return {"call_id": str(call_id), "callee": callee, "name": name, "image": image}


def _update(call_id: str, to: str, allowed: tuple[str, ...], **values: Any) -> str | None:
    """One conditional transition; the new status, or None when the call was not in
    ``allowed``."""
    db = _db()
    sets = ", ".join(f"{column} = ?" for column in ("status", *values))
    marks = ", ".join("?" for _ in allowed)
    with _immediate(db):
        row = db.execute(
            # Column names and marks are this module's own; values are bound.
            f"UPDATE directcall_call SET {sets} WHERE id = ? AND status IN ({marks}) "  # noqa: S608
            "RETURNING status",
            (to, *values.values(), uuid.UUID(call_id).hex, *allowed),
        ).fetchall()
    return row[0][0] if row else None


@dataclass(eq=False)
class Conn:
    send: Any
    account: int = 0
    pk: int = 0
    cuid: str = ""
    name: str = ""

    async def frame(self, data: dict[str, Any]) -> None:
        await self.send({"type": "websocket.send", "text": json.dumps(data)})


@dataclass(eq=False)
class Call:
    id: str
    caller: Conn
    callee: int
    status: str = "initiated"
    deadline: asyncio.TimerHandle | None = None
    answerer: Conn | None = None
    expiry: asyncio.Task | None = None

    def parties(self) -> list[Conn]:
        return [self.caller, *online.get(self.callee, ())]


online: dict[int, set[Conn]] = {}  # a user's pk → their connections
calls: dict[str, Call] = {}


async def _tell(call: Call, status: str, reason: str = "", **extra: Any) -> None:
    state = {"type": "state", "call_id": call.id, "status": status, "reason": reason}
    for conn in call.parties():
        await conn.frame({**state, "duration": None, **(extra if conn is call.caller else {})})


async def _end(call: Call, to: str, reason: str) -> bool:
    if await hop(lambda: _update(call.id, to, LIVE, end_reason=reason, ended_at=_now())) is None:
        return False
    calls.pop(call.id, None)
    if call.deadline is not None:
        call.deadline.cancel()
    await _tell(call, "over", reason)
    return True


def _missed(call: Call) -> None:
    if call.status in ("initiated", "ringing"):
        call.expiry = asyncio.get_running_loop().create_task(_end(call, "missed", "invite_timeout"))


async def _handle(conn: Conn, frame: dict[str, Any]) -> str | None:
    """One frame from a signed-in connection; an error code, or None."""
    kind = frame.get("type")
    if kind == "invite":
        ref, receiver, context, sdp = (frame.get(k) for k in ("ref", "receiver", "context", "sdp"))
        if not (
            isinstance(ref, str)
            and len(ref) <= 64
            and isinstance(receiver, str)
            and CUID.match(receiver)
            and isinstance(context, str)
            and 0 < len(context) <= 280
            and isinstance(sdp, str)
            and sdp
        ):
            return "ERR_BAD_FRAME"
        placed = await hop(lambda: _place(conn.account, conn.pk, receiver, context))
        if "error" in placed:
            return placed["error"]
        call = calls[placed["call_id"]] = Call(placed["call_id"], conn, placed["callee"])
        call.deadline = asyncio.get_running_loop().call_later(RING_TIMEOUT, _missed, call)
        peer = {"cuid": receiver, "name": placed["name"]}
        await conn.frame({"type": "invited", "ref": ref, "call_id": call.id, "receiver": peer})
        incoming = {
            "type": "incoming",
            "call_id": call.id,
            "caller": {"cuid": conn.cuid, "name": conn.name, "image": None},
            "receiver_image": None,
            "context": context,
            "sdp": sdp,
            "ring_timeout": RING_TIMEOUT,
        }
        for tab in online.get(call.callee, ()):
            await tab.frame(incoming)
        return None
    call = calls.get(frame.get("call_id"))  # type: ignore[arg-type]
    if call is None or conn.pk not in (call.caller.pk, call.callee):
        return "ERR_UNKNOWN_CALL"
    if kind == "ringing" and conn.pk == call.callee:
        if await hop(lambda: _update(call.id, "ringing", ("initiated",))) is None:
            return "ERR_UNKNOWN_CALL"
        call.status = "ringing"
        await _tell(call, "ringing")
    elif kind == "accept" and conn.pk == call.callee and isinstance(frame.get("sdp"), str):
        answered = await hop(
            lambda: _update(
                call.id, "answered", ("initiated", "ringing"), answered_at=_now(), deadline=None
            )
        )
        if answered is None:
            return "ERR_UNKNOWN_CALL"
        call.status, call.answerer = "answered", conn
        call.deadline.cancel()
        await _tell(call, "answered", sdp=frame["sdp"])
    elif kind == "hangup":
        if call.status == "answered":
            to = "over"
        else:
            to = "cancelled" if conn is call.caller else "declined"
        if not await _end(call, to, "user_hangup"):
            return "ERR_UNKNOWN_CALL"
    elif kind == "candidates" and call.status == "answered":
        if isinstance(frame.get("candidates"), list):
            other = [call.answerer] if conn is call.caller else [call.caller]
            for target in other:
                await target.frame(frame)
    else:
        return "ERR_BAD_FRAME"
    return None


async def _sign_in(conn: Conn, frame: dict[str, Any]) -> bool:
    try:
        session = signing.loads(
            frame.get("token"), key=SECRET_KEY, salt=TOKEN_SALT, fallback_keys=[]
        )
        account, pk, cuid = int(session["a"]), int(session["r"]), str(session["c"])
    except (signing.BadSignature, KeyError, TypeError, ValueError):
        return False
    user = await hop(lambda: _user(account, pk, cuid))
    if user is None:
        return False
    conn.account, conn.pk, conn.cuid, conn.name = account, pk, cuid, user[0]
    online.setdefault(pk, set()).add(conn)
    await conn.frame({"type": "ready", "cuid": cuid, "name": conn.name, "calls": []})
    return True


async def app(scope: dict, receive: Any, send: Any) -> None:
    """The ASGI application: a 404 for HTTP, directcall's protocol on any WebSocket path."""
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    if scope["type"] != "websocket":
        return
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    conn = Conn(send)
    try:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            text = message.get("text") or ""
            try:
                frame = json.loads(text) if len(text) <= MAX_FRAME else None
            except ValueError:
                frame = None
            if not isinstance(frame, dict):
                await conn.frame({"type": "error", "code": "ERR_BAD_FRAME"})
            elif not conn.pk:
                if frame.get("type") != "auth" or not await _sign_in(conn, frame):
                    await send({"type": "websocket.close", "code": 4001})
                    return
            else:
                code = await _handle(conn, frame)
                if code is not None:
                    await conn.frame({"type": "error", "code": code, "ref": frame.get("ref")})
    finally:
        online.get(conn.pk, set()).discard(conn)
