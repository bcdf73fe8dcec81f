"""Webhooks: signatures, safe outbound requests, the outbox and its deliveries.

Deliveries go to a real HTTP receiver on 127.0.0.1 (tests/webhook_receiver.py) that
verifies every signature, and are made by django-tasks-db's real worker loop in a thread.
The events of a real call over the WebSocket are in tests/test_webhooks_calls.py.
"""

from __future__ import annotations

import itertools
import re
import socket
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from directcall.models import Account, Registration
from directcall.webhooks import outbound, outbox, signing
from directcall.webhooks.models import (
    DeliveryStatus,
    Event,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookMessage,
)

from .webhook_receiver import Receiver, running_worker, wait_until

FAST_RETRIES = {
    "WEBHOOK_ALLOW_PRIVATE": True,
    "WEBHOOK_RETRY_DELAY": 0.1,
    "WEBHOOK_RETRY_MAX_DELAY": 0.4,
    "WEBHOOK_TIMEOUT": 3,
}


@pytest.fixture
def receiver():
    started = Receiver().start()
    yield started
    started.stop()


@pytest.fixture
def hooked(transactional_db, settings, make_account, receiver):
    """An account with one endpoint (every event) at the receiver, which knows its secret."""
    settings.DIRECTCALL = {**settings.DIRECTCALL, **FAST_RETRIES}
    account, key = make_account(name="Hooked")
    endpoint = WebhookEndpoint.objects.create(account=account, url=receiver.url)
    receiver.secrets = [endpoint.secret]
    account.refresh_from_db()
    return account, endpoint, key


def emit(account: Account, data: dict | None = None, event: str = Event.CALL_ENDED) -> str:
    """Emit one event as the state changes do (inside a transaction); its message id."""
    with transaction.atomic():
        assert outbox.emit(account, event, data or {"n": 1}) >= 1
    return WebhookMessage.objects.latest("created_at").id


def delivery_of(msg_id: str) -> WebhookDelivery:
    return WebhookDelivery.objects.get(message_id=msg_id)


def settled(msg_id: str) -> WebhookDelivery | None:
    delivery = delivery_of(msg_id)
    return delivery if delivery.status != DeliveryStatus.PENDING else None


# -- signatures ------------------------------------------------------------------------------


def test_the_signature_of_the_standard_webhooks_example():
    # The example of the Standard Webhooks specification (and its reference libraries).
    signature = signing.sign(
        "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        b'{"test": 2432232314}',
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_verify_accepts_any_listed_signature_and_refuses_tampering():
    old, new = "whsec_" + "A" * 44, "whsec_" + "B" * 44
    body = b'{"type":"call.ended"}'
    headers = signing.headers([new, old], "msg_1", body)
    assert headers["webhook-signature"].count("v1,") == 2
    assert signing.verify(new, headers, body) == "msg_1"
    assert signing.verify(old, headers, body) == "msg_1"
    with pytest.raises(signing.InvalidSignature):
        signing.verify("whsec_" + "C" * 44, headers, body)
    with pytest.raises(signing.InvalidSignature):
        signing.verify(new, headers, body + b" ")
    with pytest.raises(signing.InvalidSignature):
        signing.verify(new, {**headers, "webhook-id": "msg_2"}, body)
    stale = signing.headers([new], "msg_1", body, timestamp=int(time.time()) - 301)
    with pytest.raises(signing.InvalidSignature, match="tolerance"):
        signing.verify(new, stale, body)


def test_new_secrets_and_ids_have_the_standard_shapes(db, make_account):
    account, _key = make_account()
    endpoint = WebhookEndpoint.objects.create(account=account, url="https://hooks.example.com/")
    assert endpoint.secret.startswith("whsec_")
    assert len(signing.secret_key(endpoint.secret)) == 32
    message = WebhookMessage.objects.create(account=account, event_type="call.ended", body="{}")
    assert message.id.startswith("msg_") and "." not in message.id


# -- safe outbound requests -------------------------------------------------------------------


@pytest.mark.parametrize(
    "address,public",
    [
        ("93.184.215.14", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),  # noqa: S104
        ("224.0.0.1", False),
        ("::1", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped loopback
        ("::ffff:10.0.0.1", False),
        # NAT64 (64:ff9b::/96, the last 32 bits): a gateway relays to the IPv4 address.
        ("64:ff9b::a00:1", False),  # 10.0.0.1
        ("64:ff9b::7f00:1", False),  # 127.0.0.1
        ("64:ff9b::a9fe:a9fe", False),  # 169.254.169.254
        ("64:ff9b::5db8:d70e", True),  # 93.184.215.14
        ("64:ff9b:1::5db8:d70e", False),  # local-use NAT64 prefix (RFC 8215)
        # 6to4 (2002::/16, the next 32 bits).
        ("2002:7f00:1::", False),  # 127.0.0.1
        ("2002:a00:1::1", False),  # 10.0.0.1
        ("2002:5db8:d70e::1", True),
        # Teredo (2001::/32): the client's address, obfuscated (10.0.0.1 here).
        ("2001:0:5db8:d70e:0:fbaa:f5ff:fffe", False),
    ],
)
def test_only_public_addresses_are_public(address, public):
    assert outbound.is_public(address) is public


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9/x", "http://localhost:9/x", "http://[::1]:9/", "http://10.0.0.1/"],
)
def test_private_addresses_are_refused_before_connecting(url):
    # localhost is a name: it is resolved, and its addresses are checked.
    with pytest.raises(outbound.RefusedURL, match="non-public"):
        outbound.post(url, b"{}", {}, timeout=1)


@pytest.mark.parametrize("url", ["ftp://example.com/", "http://user:pw@example.com/", "nohost"])
def test_other_urls_are_refused(url):
    with pytest.raises(outbound.RefusedURL):
        outbound.post(url, b"{}", {}, timeout=1)


def test_a_silent_receiver_times_out():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()  # accepts connections (the kernel does) and never answers
    try:
        started = time.monotonic()
        with pytest.raises(outbound.DeliveryFailed, match="timed out"):
            outbound.post(f"http://127.0.0.1:{server.getsockname()[1]}/", b"{}", {}, 0.5, True)
        assert time.monotonic() - started < 3
    finally:
        server.close()


class TricklingReceiver(threading.Thread):
    """An HTTP server on 127.0.0.1 that answers one request slowly: with ``part`` "body",
    the status line and headers at once, then the 12 bytes of the body one every 0.5 s;
    with "headers", all of it (status line and headers too) a byte every 0.1 s. Either way
    the whole answer takes about 6 s."""

    def __init__(self, part: str) -> None:
        super().__init__(daemon=True)
        self.part = part
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen()
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/hook"
        self.stop = threading.Event()
        self.requested = threading.Event()

    def run(self) -> None:
        head = b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\nX-Pad: ppppppp\r\n\r\n"
        body = b"x" * 12
        connection, _ = self.server.accept()
        with connection:
            connection.recv(65536)
            self.requested.set()
            if self.part == "body":
                connection.sendall(head)
                rest, interval = body, 0.5
            else:
                rest, interval = head + body, 0.1
            for byte in rest:
                if self.stop.wait(interval):
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:  # the client gave up and closed
                    return

    def close(self) -> None:
        self.stop.set()
        self.join(5)
        self.server.close()


@pytest.mark.parametrize("part", ["body", "headers"])
def test_a_trickling_receiver_times_out(part):
    """WEBHOOK_TIMEOUT bounds the whole attempt, not each read: a receiver sending 12 body
    bytes one every 0.5 s kept an attempt with a 1 s timeout busy for 6 s (and took it)."""
    receiver = TricklingReceiver(part)
    receiver.start()
    try:
        started = time.monotonic()
        with pytest.raises(outbound.DeliveryFailed, match="timed out"):
            outbound.post(receiver.url, b"{}", {}, timeout=1.0, allow_private=True)
        elapsed = time.monotonic() - started
        assert receiver.requested.is_set()
        assert 0.9 < elapsed < 1.5, elapsed
    finally:
        receiver.close()


def test_answers_that_close_the_connection_are_read_whole(receiver):
    """The receiver speaks HTTP/1.0 (the connection closes after the answer): http.client
    closes its end as soon as the headers are read, and the body must still be read (a
    reader that let the socket go with it failed about one attempt in two)."""
    receiver.secrets = []  # unverified requests are answered 401: the status is the point
    for _ in range(20):
        answer = outbound.post(receiver.url, b"{}", {}, timeout=3, allow_private=True)
        assert (answer.status, answer.excerpt) == (401, "ok")


def test_a_redirect_is_not_followed(receiver):
    receiver.secrets = []  # unverified requests are answered 401: use the raw status
    # A receiver answering 302 with a Location: the answer is the 302 itself.
    got = []

    class Redirecting(threading.Thread):
        def run(self) -> None:
            from http.server import BaseHTTPRequestHandler, HTTPServer

            class Handler(BaseHTTPRequestHandler):
                def do_POST(self) -> None:
                    got.append(self.path)
                    self.send_response(302)
                    self.send_header("Location", receiver.url)
                    self.send_header("Content-Length", "0")
                    self.end_headers()

                def log_message(self, *args) -> None:
                    pass

            self.server = HTTPServer(("127.0.0.1", 0), Handler)
            self.ready.set()
            self.server.handle_request()

    thread = Redirecting()
    thread.ready = threading.Event()
    thread.start()
    thread.ready.wait(5)
    port = thread.server.server_address[1]
    answer = outbound.post(f"http://127.0.0.1:{port}/start", b"{}", {}, 2, True)
    thread.join(5)
    thread.server.server_close()
    assert answer.status == 302
    assert got == ["/start"]
    assert receiver.received == [] and receiver.unverified == []


# -- has_webhooks and the outbox -----------------------------------------------------------------


def test_has_webhooks_follows_the_endpoints(db, make_account):
    account, _key = make_account()
    assert not account.has_webhooks

    def flag() -> bool:
        return Account.objects.values_list("has_webhooks", flat=True).get(pk=account.pk)

    endpoint = WebhookEndpoint.objects.create(account=account, url="https://h.example.com/")
    assert flag()
    endpoint.is_active = False
    endpoint.save()
    assert not flag()
    endpoint.is_active = True
    endpoint.save()
    account.name = "Renamed"  # a save from a copy loaded before: the flag is read again
    account.has_webhooks = False
    account.save()
    assert flag()
    endpoint.delete()
    assert not flag()


def test_an_account_without_endpoints_costs_no_query(db, make_account):
    account, _key = make_account()
    with CaptureQueriesContext(connection) as queries:
        assert outbox.emit(account, Event.CALL_ENDED, {"n": 1}) == 0
    assert len(queries) == 0


def test_an_event_rolled_back_queues_nothing(hooked):
    account, _endpoint, _key = hooked
    with pytest.raises(RuntimeError), transaction.atomic():
        outbox.emit(account, Event.CALL_ENDED, {"n": 1})
        raise RuntimeError("the state change failed")
    assert not WebhookMessage.objects.exists()
    assert not DBTaskResult.objects.exists()


def test_only_the_events_an_endpoint_wants(hooked, receiver):
    account, endpoint, _key = hooked
    endpoint.events = [Event.CALL_ENDED]
    endpoint.save()
    with transaction.atomic():
        assert outbox.emit(account, Event.CALL_RINGING, {}) == 0
    assert not WebhookMessage.objects.exists()


# -- deliveries -----------------------------------------------------------------------------------


def test_registration_created_is_delivered_signed(hooked, receiver, api_client):
    account, _endpoint, key = hooked
    body = {"accountId": account.account_id, "apikey": key, "cuid": "tutor_jane", "name": "Jane"}
    with running_worker():
        assert api_client.post("/directcall/v1/init", body, format="json").status_code == 200
        receiver.wait_for(lambda got: len(got) == 1)
        # A second sign-in of the same cuid creates nothing: no event.
        assert api_client.post("/directcall/v1/init", body, format="json").status_code == 200
        assert WebhookMessage.objects.count() == 1
    (got,) = receiver.received
    assert got.type == "registration.created"
    assert got.body["data"] == {
        "accountId": account.account_id,
        "cuid": "tutor_jane",
        "name": "Jane",
        "image": None,
        "createdAt": got.body["data"]["createdAt"],
        "lastSeenAt": got.body["data"]["lastSeenAt"],
    }
    assert got.headers["content-type"] == "application/json"
    assert got.verified_with == receiver.secrets and receiver.unverified == []
    assert Registration.objects.get(cuid="tutor_jane").account_id == account.pk


def test_retried_on_500_with_the_same_id_until_it_succeeds(hooked, receiver):
    account, _endpoint, _key = hooked
    receiver.script = [500, 503]
    with running_worker():
        msg_id = emit(account)
        delivery = wait_until(lambda: settled(msg_id), what="the delivery")
        other = emit(account)
        wait_until(lambda: settled(other), what="the second delivery")
    assert delivery.status == DeliveryStatus.SUCCEEDED
    assert delivery.attempts == 3 and delivery.last_response_code == 200
    assert [r.status for r in receiver.received if r.msg_id == msg_id] == [500, 503, 200]
    # One id per event, the same on every attempt; nothing after the success.
    assert [r.msg_id for r in receiver.received] == [msg_id] * 3 + [other]
    log = list(WebhookAttempt.objects.filter(delivery=delivery).order_by("number"))
    assert [(a.number, a.response_code, a.error) for a in log] == [
        (1, 500, "HTTP 500"),
        (2, 503, "HTTP 503"),
        (3, 200, ""),
    ]
    assert all(a.latency_ms >= 0 for a in log)
    # Exponential backoff: the second wait is longer than the first (jitter keeps it >= half).
    gaps = [(b.started_at - a.started_at).total_seconds() for a, b in itertools.pairwise(log)]
    assert gaps[0] >= 0.05 and gaps[1] >= 0.1, gaps
    assert not receiver.unverified
    assert not DBTaskResult.objects.ready().exists()


def test_retried_while_the_receiver_is_down_then_delivered_once(hooked, receiver):
    account, _endpoint, _key = hooked
    receiver.stop()
    with running_worker():
        msg_id = emit(account)
        wait_until(
            lambda: WebhookAttempt.objects.filter(delivery__message_id=msg_id).count() >= 2,
            what="two refused attempts logged",
        )
        receiver.start()  # back, on the same port
        delivery = wait_until(lambda: settled(msg_id), what="the delivery")
    assert delivery.status == DeliveryStatus.SUCCEEDED
    errors = list(WebhookAttempt.objects.filter(delivery=delivery).values_list("error", flat=True))
    assert errors[:2] == ["connection refused", "connection refused"] and errors[-1] == ""
    assert [r.msg_id for r in receiver.received] == [msg_id]


def test_failed_after_the_retry_window(hooked, receiver, settings):
    account, _endpoint, _key = hooked
    settings.DIRECTCALL = {**settings.DIRECTCALL, "WEBHOOK_RETRY_WINDOW": 1.5}
    receiver.script = [500] * 1000
    with running_worker():
        msg_id = emit(account)
        delivery = wait_until(lambda: settled(msg_id), timeout=20, what="the failure")
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts >= 3 and delivery.last_response_code == 500
    last = WebhookAttempt.objects.filter(delivery=delivery).latest("number")
    assert last.started_at >= delivery.retry_until - timedelta(seconds=0.05)
    assert {r.msg_id for r in receiver.received} == {msg_id}
    assert len(receiver.received) == delivery.attempts
    assert not DBTaskResult.objects.ready().exists()  # nothing more queued


def test_a_secret_rotated_mid_stream(hooked, receiver, settings):
    account, endpoint, _key = hooked
    old = endpoint.secret
    with running_worker():
        first = emit(account)
        receiver.wait_for(lambda got: len(got) == 1)
        new = WebhookEndpoint.objects.get(pk=endpoint.pk).rotate_secret()
        receiver.secrets = [old, new]
        second = emit(account)
        receiver.wait_for(lambda got: len(got) == 2)
        # The grace ends: only the new secret signs.
        WebhookEndpoint.objects.filter(pk=endpoint.pk).update(
            previous_secret_expires_at=timezone.now() - timedelta(seconds=1)
        )
        third = emit(account)
        receiver.wait_for(lambda got: len(got) == 3)
    by_id = {r.msg_id: r for r in receiver.received}
    assert by_id[first].verified_with == [old] and len(by_id[first].signatures) == 1
    # During the grace: two signatures, a receiver knowing either secret verifies.
    assert by_id[second].verified_with == [old, new] and len(by_id[second].signatures) == 2
    assert by_id[third].verified_with == [new] and len(by_id[third].signatures) == 1
    assert not receiver.unverified


def test_a_private_address_is_refused_by_default(hooked, receiver, settings):
    account, _endpoint, _key = hooked
    settings.DIRECTCALL = {**settings.DIRECTCALL, "WEBHOOK_ALLOW_PRIVATE": False}
    WebhookEndpoint.objects.create(account=account, url=f"http://localhost:{receiver.port}/by-name")
    with running_worker():
        with transaction.atomic():
            assert outbox.emit(account, Event.CALL_ENDED, {"n": 1}) == 2
        wait_until(
            lambda: not WebhookDelivery.objects.filter(status=DeliveryStatus.PENDING).exists(),
            what="both deliveries settled",
        )
    for delivery in WebhookDelivery.objects.all():
        assert delivery.status == DeliveryStatus.FAILED and delivery.attempts == 1
        assert delivery.last_error.startswith("refused: ") and "non-public" in delivery.last_error
        assert delivery.last_response_code is None
    assert receiver.received == [] and receiver.unverified == []


def test_send_again_keeps_the_id(hooked, receiver):
    from directcall.webhooks.delivery import send_again

    account, _endpoint, _key = hooked
    with running_worker():
        msg_id = emit(account)
        wait_until(lambda: settled(msg_id))
        send_again(WebhookDelivery.objects.filter(message_id=msg_id))
        receiver.wait_for(lambda got: len(got) == 2)
        delivery = wait_until(lambda: settled(msg_id))
    assert [r.msg_id for r in receiver.received] == [msg_id, msg_id]
    assert delivery.attempts == 2 and delivery.status == DeliveryStatus.SUCCEEDED


def test_a_task_queued_twice_sends_once(hooked, receiver):
    from directcall.webhooks import delivery as deliveries

    account, _endpoint, _key = hooked
    with transaction.atomic():
        outbox.emit(account, Event.CALL_ENDED, {"n": 1})
    delivery = WebhookDelivery.objects.get()
    assert deliveries.attempt(delivery.pk, 1) == "succeeded"
    assert deliveries.attempt(delivery.pk, 1) == "skipped"
    assert len(receiver.received) == 1


# -- the receiver's snippet in docs/webhooks.md ---------------------------------------------------


def _documented_verifier():
    text = (Path(__file__).resolve().parent.parent / "docs" / "webhooks.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", text, re.S) if "verify_webhook" in b]
    namespace: dict = {}
    exec(compile(block, "docs/webhooks.md", "exec"), namespace)  # noqa: S102 (our own docs)
    return namespace["verify_webhook"]


def test_the_documented_verifier_checks_real_deliveries(hooked, receiver):
    verify_webhook = _documented_verifier()
    account, endpoint, _key = hooked
    with running_worker():
        msg_id = emit(account)
        receiver.wait_for(lambda got: len(got) == 1)
        new = WebhookEndpoint.objects.get(pk=endpoint.pk).rotate_secret()
        receiver.secrets = [endpoint.secret, new]
        rotated = emit(account)
        receiver.wait_for(lambda got: len(got) == 2)
    first, second = receiver.received
    assert verify_webhook(endpoint.secret, first.headers, first.raw) == msg_id
    assert verify_webhook(endpoint.secret, second.headers, second.raw) == rotated
    assert verify_webhook(new, second.headers, second.raw) == rotated
    for secret, got, body in [
        (new, first, first.raw),  # the new secret did not sign the first one
        (endpoint.secret, first, first.raw + b" "),  # a body changed on the way
    ]:
        with pytest.raises(ValueError):
            verify_webhook(secret, got.headers, body)
    stale = signing.headers([new], "msg_x", b"{}", timestamp=int(time.time()) - 600)
    with pytest.raises(ValueError, match="timestamp"):
        verify_webhook(new, stale, b"{}")


def test_requeue_queues_overdue_deliveries_whose_task_went_missing(hooked, receiver):
    from io import StringIO

    from django.core.management import call_command

    account, _endpoint, _key = hooked
    msg_id = emit(account)
    DBTaskResult.objects.all().delete()  # as if the queue (elsewhere) lost the task
    WebhookDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(minutes=10))
    out = StringIO()
    call_command("directcall_webhooks", "requeue", "--older-than", "60", stdout=out)
    assert "Queued 1 overdue" in out.getvalue()
    with running_worker():
        delivery = wait_until(lambda: settled(msg_id))
    assert delivery.status == DeliveryStatus.SUCCEEDED and len(receiver.received) == 1
    call_command("directcall_webhooks", "requeue", stdout=out)  # nothing pending any more
    assert out.getvalue().endswith("Queued 0 overdue webhook deliveries again.\n")


def test_the_calls_hook_costs_no_query_without_endpoints(db, make_account):
    from directcall import calls
    from directcall.models import Call

    account, _key = make_account()
    jane = Registration.objects.create(account=account, cuid="tutor_jane")
    sam = Registration.objects.create(account=account, cuid="student_sam")
    Call.objects.create(account=account, caller=jane, callee=sam, context="x")
    call = Call.objects.select_related("account", "caller", "callee").get()
    with CaptureQueriesContext(connection) as queries:
        calls._won(call, created=True)
    assert len(queries) == 0
    WebhookEndpoint.objects.create(account=account, url="https://hooks.example.com/")
    call = Call.objects.select_related("account", "caller", "callee").get()
    with transaction.atomic():
        calls._won(call, created=True)
    message = WebhookMessage.objects.get()
    assert message.event_type == "call.initiated" and str(call.pk) in message.body


def test_prune_deletes_old_settled_messages_only(hooked):
    from io import StringIO

    from django.core.management import CommandError, call_command

    account, _endpoint, _key = hooked
    old_done, old_pending, recent = emit(account), emit(account), emit(account)
    WebhookDelivery.objects.filter(message_id__in=[old_done, recent]).update(
        status=DeliveryStatus.SUCCEEDED
    )
    long_ago = timezone.now() - timedelta(days=40)
    WebhookMessage.objects.filter(pk__in=[old_done, old_pending]).update(created_at=long_ago)
    out = StringIO()
    call_command("directcall_webhooks", "prune", "--days", "30", "--dry-run", stdout=out)
    assert "Would delete 1 settled webhook messages (dry run)." in out.getvalue()
    assert WebhookMessage.objects.count() == 3
    for days in ("0", "-1"):  # 0 would wipe the log, deliveries of a moment ago included
        with pytest.raises(CommandError, match="greater than zero"):
            call_command("directcall_webhooks", "prune", "--days", days, stdout=StringIO())
    assert WebhookMessage.objects.count() == 3
    call_command("directcall_webhooks", "prune", "--days", "30", stdout=out)
    assert "Deleted 1 settled webhook messages" in out.getvalue()
    assert set(WebhookMessage.objects.values_list("pk", flat=True)) == {old_pending, recent}
    assert not WebhookDelivery.objects.filter(message_id=old_done).exists()


def test_an_attempt_whose_worker_died_is_requeued_after_its_lease(hooked, receiver):
    from io import StringIO

    from django.core.management import call_command

    account, _endpoint, _key = hooked
    msg_id = emit(account)
    # Attempt 1 was claimed (its lease set), then the worker died: no log entry, no task.
    DBTaskResult.objects.all().delete()
    WebhookDelivery.objects.update(attempts=1, next_attempt_at=timezone.now() + timedelta(hours=1))
    call_command("directcall_webhooks", "requeue", stdout=StringIO())
    assert not DBTaskResult.objects.exists()  # still within its lease
    WebhookDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(minutes=10))
    call_command("directcall_webhooks", "requeue", stdout=StringIO())
    with running_worker():
        delivery = wait_until(lambda: settled(msg_id))
    assert delivery.status == DeliveryStatus.SUCCEEDED and delivery.attempts == 2
    assert delivery.next_attempt_at is None and len(receiver.received) == 1
