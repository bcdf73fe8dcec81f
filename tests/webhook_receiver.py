"""A real webhook receiver on 127.0.0.1 that verifies every signature, and a real worker.

:class:`Receiver` is an HTTP server in a thread. Each POST is checked as a receiver
following docs/webhooks.md would: the Standard Webhooks signature against the secrets it
knows (any of them may match), the timestamp within tolerance. It answers with the next
scripted status (200 when the script is empty), can be stopped and started again on the
same port (a receiver that is down), and records what it got.

:func:`running_worker` runs django-tasks-db's own ``db_worker`` loop (its ``Worker``
class) in a thread, as ``manage.py db_worker`` would run it in a process.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from directcall.webhooks import signing


@dataclass
class Received:
    """One request the receiver got."""

    msg_id: str
    timestamp: int
    signatures: list[str]
    body: dict[str, Any]
    verified_with: list[str]  # which of the known secrets verify it
    status: int  # what the receiver answered
    headers: dict[str, str] = field(default_factory=dict)
    raw: bytes = b""

    @property
    def type(self) -> str:
        return self.body["type"]


class Receiver:
    """The test's webhook receiver (see the module's docstring)."""

    def __init__(self) -> None:
        self.secrets: list[str] = []
        self.script: list[int] = []
        self.received: list[Received] = []
        self.unverified: list[dict[str, Any]] = []
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._lock = threading.Lock()
        self.changed = threading.Condition(self._lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                status = receiver._handle({k.lower(): v for k, v in self.headers.items()}, body)
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening (the port refuses connections until :meth:`start`)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def _handle(self, headers: dict[str, str], body: bytes) -> int:
        verified = []
        for secret in self.secrets:
            with contextlib.suppress(signing.InvalidSignature):
                signing.verify(secret, headers, body)
                verified.append(secret)
        with self._lock:
            if not verified:
                self.unverified.append({"headers": headers, "body": body})
                status = 401
            else:
                status = self.script.pop(0) if self.script else 200
                self.received.append(
                    Received(
                        msg_id=headers["webhook-id"],
                        timestamp=int(headers["webhook-timestamp"]),
                        signatures=headers["webhook-signature"].split(" "),
                        body=json.loads(body),
                        verified_with=verified,
                        status=status,
                        headers=headers,
                        raw=body,
                    )
                )
            self.changed.notify_all()
        return status

    def wait_for(self, condition: Callable[[list[Received]], bool], timeout: float = 15) -> None:
        """Wait until ``condition(received)`` holds (checked on every request)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not condition(self.received):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"receiver: condition not met; got {self.summary()}")
                self.changed.wait(remaining)

    def summary(self) -> list[tuple[str, str, int]]:
        return [(r.type, r.msg_id, r.status) for r in self.received]


def wait_until(condition: Callable[[], Any], timeout: float = 15, what: str = "") -> Any:
    """Poll ``condition()`` (a database read) until it is truthy; return its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)


@contextlib.contextmanager
def running_worker(interval: float = 0.02) -> Iterator[Any]:
    """django-tasks-db's worker loop in a thread, stopped (and its connection closed) after."""
    from django.db import connections
    from django_tasks_db.management.commands.db_worker import Worker

    worker = Worker(
        queue_names=["default"],
        interval=interval,
        batch=False,
        backend_name="default",
        startup_delay=False,
        max_tasks=None,
        worker_id="test-worker",
        excluded_queue_names=[],
    )
    failure: list[BaseException] = []

    def run() -> None:
        try:
            worker.run()
        except BaseException as error:  # surfaced by the test below
            failure.append(error)
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, name="db_worker", daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.running = False
        thread.join(10)
    assert not thread.is_alive(), "the worker did not stop"
    assert not failure, failure
