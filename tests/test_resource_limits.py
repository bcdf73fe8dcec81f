"""Issue 13, 7 — resources a stranger could hold without signing in: 2000 unauthenticated
sockets from one address; frames JSON-parsed before the "not authenticated" check (six
sockets sending 64 KB frames cost 5.7 s of CPU in 12 s); the socket's origin check on the
host only. Now: a frame before sign-in may have ``MAX_AUTH_FRAME_BYTES`` (4096), checked
before any parsing, and a larger one ends the socket (1009); ``AUTH_TIMEOUT`` closes a
socket that does not sign in (4001); ``MAX_CONNECTIONS_PER_IP`` sockets per address and
process (4029, ``ERR_RATE_LIMITED``); origins compared on scheme, host and port (4010).

Through the demo's real ASGI stack (``WebsocketCommunicator``), on the in-memory layer and
on Redis.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from channels.testing import WebsocketCommunicator

from directcall import iplimit, protocol

from .wsclient import WS_PATH, Client

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("signaling")]


def communicator(
    client: tuple[str, int] | None = ("203.0.113.5", 40000),
    origin: str = "http://testserver",
    host: str = "testserver",
    headers: list[tuple[bytes, bytes]] = (),
) -> WebsocketCommunicator:
    from example_project.asgi import application

    comm = WebsocketCommunicator(
        application,
        WS_PATH,
        headers=[(b"origin", origin.encode()), (b"host", host.encode()), *headers],
    )
    if client is not None:
        comm.scope["client"] = list(client)  # as daphne sets it
    return comm


async def receive_json(comm: WebsocketCommunicator) -> dict[str, Any]:
    return json.loads(await comm.receive_from(timeout=5))


# -- the pre-auth frame limit, before parsing ------------------------------------------------------


async def test_a_big_frame_before_sign_in_is_refused_unparsed_and_ends_the_socket():
    comm = communicator()
    assert (await comm.connect(timeout=5))[0]
    # Not JSON at all: had it been parsed, the answer would be ERR_BAD_FRAME.
    await comm.send_to(text_data="{" * (protocol.MAX_AUTH_FRAME_BYTES + 1))
    error = await receive_json(comm)
    assert error["code"] == "ERR_FRAME_TOO_LARGE" and "4096 bytes" in error["message"]
    assert await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": 1009}
    await comm.disconnect()


async def test_the_limit_counts_bytes_of_utf8():
    comm = communicator()
    assert (await comm.connect(timeout=5))[0]
    # 1366 characters of 3 bytes each: 4098 bytes.
    await comm.send_to(
        text_data=json.dumps({"type": "auth", "token": "€" * 1366}, ensure_ascii=False)
    )
    assert (await receive_json(comm))["code"] == "ERR_FRAME_TOO_LARGE"
    assert (await comm.receive_output(timeout=5))["code"] == 1009
    await comm.disconnect()


async def test_a_small_frame_before_sign_in_is_answered_and_the_socket_stays(people, clients):
    anonymous = await clients.anonymous()
    await anonymous.send_raw(text="{" * protocol.MAX_AUTH_FRAME_BYTES)
    assert (await anonymous.next("error"))["code"] == "ERR_BAD_FRAME"
    # The same socket signs in: the limit did not end it.
    ready = await anonymous.authenticate(people["tutor_jane"])
    assert ready["cuid"] == "tutor_jane"


async def test_signed_in_sockets_keep_the_larger_limit(people, clients):
    jane = await clients.sign_in(people["tutor_jane"])
    await jane.send_raw(text="{" * (protocol.MAX_AUTH_FRAME_BYTES * 4))
    assert (await jane.next("error"))["code"] == "ERR_BAD_FRAME"  # parsed: it is allowed
    await jane.alive()


async def test_an_auth_frame_with_every_field_fits():
    from directcall import tokens

    token = tokens.issue(1, 1, "c" * 50, "d" * 64)
    keys = [{"call_id": "0" * 36, "call_key": "k" * 43} for _ in range(protocol.MAX_RESUME)]
    frame = {"type": "auth", "token": token, "device_key": "k" * 43, "resume": keys}
    assert len(json.dumps(frame)) < protocol.MAX_AUTH_FRAME_BYTES / 2


# -- the auth deadline -----------------------------------------------------------------------------


async def test_a_socket_that_never_signs_in_is_closed_at_the_auth_timeout(settings):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "AUTH_TIMEOUT": 0.3}
    comm = communicator()
    assert (await comm.connect(timeout=5))[0]
    assert (await receive_json(comm))["code"] == "ERR_NOT_AUTHENTICATED"
    assert await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": 4001}
    await comm.disconnect()  # the server's end of the closing handshake
    assert iplimit.connections.open_count("203.0.113.5") == 0  # its place is given back


# -- sockets per address ---------------------------------------------------------------------------


async def open_sockets(n: int, **kwargs: Any) -> list[WebsocketCommunicator]:
    opened = []
    for _ in range(n):
        comm = communicator(**kwargs)
        assert (await comm.connect(timeout=5))[0]
        opened.append(comm)
    return opened


async def assert_refused(comm: WebsocketCommunicator) -> None:
    assert (await comm.connect(timeout=5))[0]  # accepted only to be told why
    error = await receive_json(comm)
    assert error["code"] == "ERR_RATE_LIMITED" and "Too many connections" in error["message"]
    assert await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": 4029}


async def assert_open(comm: WebsocketCommunicator) -> None:
    """The socket is the consumer's and open: a frame is answered as before sign-in."""
    await comm.send_to(text_data=json.dumps({"type": "ping"}))
    assert (await receive_json(comm))["code"] == "ERR_NOT_AUTHENTICATED"


async def test_one_address_may_hold_only_so_many_sockets(settings):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "MAX_CONNECTIONS_PER_IP": 3}
    opened = await open_sockets(3)
    try:
        extra = communicator()
        await assert_refused(extra)
        await extra.disconnect()
        # Another address is not affected.
        other = communicator(client=("198.51.100.7", 40000))
        assert (await other.connect(timeout=5))[0]
        await assert_open(other)
        await other.disconnect()
        # A socket that ends gives its place back.
        await opened.pop().disconnect()
        again = communicator()
        assert (await again.connect(timeout=5))[0]
        await assert_open(again)
        opened.append(again)
        for comm in opened:
            await assert_open(comm)
    finally:
        for comm in opened:
            await comm.disconnect()
    assert iplimit.connections.open_count("203.0.113.5") == 0


async def test_signed_in_sockets_count_too(people, settings):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "MAX_CONNECTIONS_PER_IP": 1}
    comm = communicator()
    assert (await comm.connect(timeout=5))[0]
    client = Client(comm, "tutor_jane", people["tutor_jane"].pk)
    await client.authenticate(people["tutor_jane"])
    try:
        extra = communicator()
        await assert_refused(extra)
        await extra.disconnect()
    finally:
        await comm.disconnect()


async def test_x_forwarded_for_counts_only_behind_configured_proxies(settings):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "MAX_CONNECTIONS_PER_IP": 1}
    proxy = ("10.0.0.2", 40000)
    spoofed = [(b"x-forwarded-for", b"192.0.2.1")]
    first = communicator(client=proxy, headers=spoofed)
    assert (await first.connect(timeout=5))[0]
    try:
        # Without NUM_PROXIES the header is the client's word: the proxy's address counts.
        extra = communicator(client=proxy, headers=[(b"x-forwarded-for", b"192.0.2.99")])
        await assert_refused(extra)
        await extra.disconnect()
    finally:
        await first.disconnect()
    settings.REST_FRAMEWORK = {**getattr(settings, "REST_FRAMEWORK", {}), "NUM_PROXIES": 1}
    a = communicator(client=proxy, headers=[(b"x-forwarded-for", b"192.0.2.1")])
    b = communicator(client=proxy, headers=[(b"x-forwarded-for", b"192.0.2.2")])
    c = communicator(client=proxy, headers=[(b"x-forwarded-for", b"192.0.2.66, 192.0.2.1")])
    try:
        assert (await a.connect(timeout=5))[0]
        assert (await b.connect(timeout=5))[0]
        await assert_open(a)
        await assert_open(b)
        # The last address the one trusted proxy appended is the client's: 192.0.2.1 again.
        await assert_refused(c)
    finally:
        for comm in (a, b, c):
            await comm.disconnect()


def test_client_ip_rules(settings):
    scope = {"client": ["10.0.0.2", 1], "headers": [(b"x-forwarded-for", b"1.1.1.1, 2.2.2.2")]}
    assert iplimit.client_ip(scope) == "10.0.0.2"
    settings.REST_FRAMEWORK = {"NUM_PROXIES": 1}
    assert iplimit.client_ip(scope) == "2.2.2.2"
    settings.REST_FRAMEWORK = {"NUM_PROXIES": 2}
    assert iplimit.client_ip(scope) == "1.1.1.1"
    settings.REST_FRAMEWORK = {"NUM_PROXIES": 0}
    assert iplimit.client_ip(scope) == "10.0.0.2"
    assert iplimit.client_ip({"headers": []}) is None


async def test_none_turns_the_cap_off(settings):
    settings.DIRECTCALL = {**settings.DIRECTCALL, "MAX_CONNECTIONS_PER_IP": None}
    opened = await open_sockets(5)
    try:
        for comm in opened:
            await assert_open(comm)
    finally:
        for comm in opened:
            await comm.disconnect()


def test_the_default_serves_a_school_behind_one_address():
    from django.test import override_settings

    from directcall.conf import get_settings

    with override_settings(DIRECTCALL={}):
        assert get_settings().MAX_CONNECTIONS_PER_IP == 500


# -- the origin check on scheme, host and port -----------------------------------------------------


async def test_another_port_of_localhost_is_refused(settings):
    settings.ALLOWED_HOSTS = ["localhost"]
    comm = communicator(origin="http://localhost:9999", host="localhost:8000")
    assert (await comm.connect(timeout=5))[0]
    assert (await receive_json(comm))["code"] == "ERR_ORIGIN_NOT_ALLOWED"
    assert await comm.receive_output(timeout=5) == {"type": "websocket.close", "code": 4010}
    await comm.disconnect()
    same = communicator(origin="http://localhost:8000", host="localhost:8000")
    assert (await same.connect(timeout=5))[0]
    await assert_open(same)
    await same.disconnect()
