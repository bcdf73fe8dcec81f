"""The signaling socket's origin check (directcall/origins.py), through the demo's real ASGI stack.

Sockets are opened with ``WebsocketCommunicator`` on ``example_project.asgi.application``
(the documented routing: ``DirectCallOriginValidator(URLRouter(...))``) with real
``Origin`` and ``Host`` headers. A refused socket is accepted only to be told why: an
``error`` frame ``ERR_ORIGIN_NOT_ALLOWED``, then close code 4010.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from directcall import tokens
from directcall.models import Account
from directcall.origins import (
    CLOSE_ORIGIN_NOT_ALLOWED,
    DirectCallOriginValidator,
    ListedOrigins,
    Origin,
    listed_origins,
    origin_allowed,
    parse_origin,
    socket_origin_allowed,
)

from .wsclient import WS_PATH, make_registration

pytestmark = pytest.mark.django_db(transaction=True)


def sockets(test):
    """A test that opens sockets: the in-memory layer is enough for an origin check."""
    test = pytest.mark.usefixtures("signaling")(test)
    return pytest.mark.parametrize("channel_backend", ["memory"], indirect=True)(test)


@pytest.fixture(autouse=True)
def fresh_listed_origins():
    """No test sees another's accounts through the process-wide cache."""
    listed_origins.forget()
    yield
    listed_origins.forget()


def communicator(origin: str | None, host: str | None = "testserver", **scope) -> Any:
    from example_project.asgi import application

    headers = []
    if origin is not None:
        headers.append((b"origin", origin.encode()))
    if host is not None:
        headers.append((b"host", host.encode()))
    for name, value in scope.pop("extra_headers", []):
        headers.append((name, value))
    comm = WebsocketCommunicator(application, WS_PATH, headers=headers)
    comm.scope.update(scope)  # e.g. scheme="wss", as daphne sets it behind TLS
    return comm


async def refused(comm: WebsocketCommunicator) -> None:
    """Assert the socket got ERR_ORIGIN_NOT_ALLOWED and close 4010, and nothing else."""
    connected, _ = await comm.connect(timeout=5)
    assert connected  # accepted only to be told why
    frame = json.loads(await comm.receive_from(timeout=5))
    assert frame["type"] == "error" and frame["code"] == "ERR_ORIGIN_NOT_ALLOWED", frame
    closing = await comm.receive_output(timeout=5)
    assert closing == {"type": "websocket.close", "code": CLOSE_ORIGIN_NOT_ALLOWED}


async def reaches_the_consumer(comm: WebsocketCommunicator) -> None:
    """Assert the socket is the consumer's: a frame before auth is answered as such."""
    connected, _ = await comm.connect(timeout=5)
    assert connected
    await comm.send_to(text_data=json.dumps({"type": "ping"}))
    frame = json.loads(await comm.receive_from(timeout=5))
    assert frame["code"] == "ERR_NOT_AUTHENTICATED", frame
    await comm.disconnect()


# -- the site's own origin: scheme, host and port, exactly --------------------------------------


@sockets
async def test_own_origin_exact_match_is_accepted():
    await reaches_the_consumer(communicator("http://testserver"))


@sockets
async def test_own_origin_with_a_port_is_accepted(settings):
    settings.ALLOWED_HOSTS = ["127.0.0.1"]
    await reaches_the_consumer(communicator("http://127.0.0.1:8000", host="127.0.0.1:8000"))


@sockets
@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:9999",  # another port on the same host (channels' check let it in)
        "http://127.0.0.1",  # the default port is a port too
        "http://localhost:8000",  # another host, even one in ALLOWED_HOSTS
        "https://127.0.0.1:8000",  # another scheme
    ],
)
async def test_other_port_host_or_scheme_is_refused(settings, origin):
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    await refused(communicator(origin, host="127.0.0.1:8000"))


@sockets
async def test_scheme_mismatch_is_refused():
    # A plain ws:// socket from an https page: not this site's origin.
    await refused(communicator("https://testserver"))


@sockets
async def test_secure_socket_takes_the_https_origin(settings):
    await reaches_the_consumer(communicator("https://testserver", scheme="wss"))
    await refused(communicator("http://testserver", scheme="wss"))


@sockets
async def test_secure_proxy_ssl_header_is_honoured(settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    proto = [(b"x-forwarded-proto", b"https")]
    await reaches_the_consumer(communicator("https://testserver", extra_headers=proto))
    await refused(communicator("http://testserver", extra_headers=proto))


@sockets
async def test_x_forwarded_host_only_with_use_x_forwarded_host(settings):
    settings.ALLOWED_HOSTS = ["calls.example.com", "backend"]
    forwarded = [(b"x-forwarded-host", b"calls.example.com")]
    comm = communicator("http://calls.example.com", host="backend", extra_headers=forwarded)
    await refused(comm)
    settings.USE_X_FORWARDED_HOST = True
    comm = communicator("http://calls.example.com", host="backend", extra_headers=forwarded)
    await reaches_the_consumer(comm)


@sockets
async def test_host_outside_allowed_hosts_is_not_own(settings):
    settings.ALLOWED_HOSTS = ["calls.example.com"]
    await refused(communicator("http://evil.example", host="evil.example"))


@sockets
@pytest.mark.parametrize("origin", [None, "null", "file://", "http://testserver/path", "nonsense"])
async def test_missing_or_malformed_origin_is_refused(origin):
    await refused(communicator(origin))


@sockets
async def test_a_repeated_origin_header_is_refused():
    comm = communicator("http://testserver", extra_headers=[(b"origin", b"http://testserver")])
    await refused(comm)


@sockets
async def test_csrf_trusted_origins_are_the_site_s_own(settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://www.example.com", "https://*.shop.example"]
    await reaches_the_consumer(communicator("https://www.example.com"))
    await reaches_the_consumer(communicator("https://eu.shop.example"))
    await refused(communicator("http://eu.shop.example"))  # scheme
    await refused(communicator("https://eu.shop.example:8443"))  # port


# -- origins that accounts allow ----------------------------------------------------------------


@sockets
async def test_an_active_account_s_allowed_origin_is_accepted(make_account):
    await database_sync_to_async(make_account)(
        allowed_origins="https://app.example.com\nhttp://localhost:5173"
    )
    await reaches_the_consumer(communicator("https://app.example.com"))
    await reaches_the_consumer(communicator("http://localhost:5173"))
    await refused(communicator("https://app.example.com:8443"))
    await refused(communicator("http://app.example.com"))
    await refused(communicator("http://localhost:5174"))


@sockets
async def test_an_inactive_account_s_origin_is_refused(make_account):
    await database_sync_to_async(make_account)(
        allowed_origins="https://app.example.com", is_active=False
    )
    await refused(communicator("https://app.example.com"))


@sockets
async def test_an_empty_list_opens_the_socket_to_no_other_origin(make_account):
    # An account without a list lets init answer any origin; the socket still admits only
    # the site's own origin and listed ones, so a page elsewhere is told ERR_ORIGIN_NOT_ALLOWED.
    await database_sync_to_async(make_account)(allowed_origins="")
    await refused(communicator("https://anywhere.example"))


@sockets
async def test_a_new_account_s_origin_counts_at_once(make_account):
    await refused(communicator("https://app.example.com"))  # the (empty) list is now cached
    await database_sync_to_async(make_account)(allowed_origins="https://app.example.com")
    await reaches_the_consumer(communicator("https://app.example.com"))


@sockets
async def test_a_full_call_sign_in_from_an_allowed_origin(make_account):
    account, _key = await database_sync_to_async(make_account)(
        allowed_origins="https://app.example.com"
    )
    jane = await database_sync_to_async(make_registration)(account, "tutor_jane", "Jane")
    comm = communicator("https://app.example.com")
    assert (await comm.connect(timeout=5))[0]
    token = tokens.issue(account.pk, jane.pk, jane.cuid, "device-0001")
    await comm.send_to(text_data=json.dumps({"type": "auth", "token": token}))
    assert json.loads(await comm.receive_from(timeout=5))["type"] == "ready"
    await comm.disconnect()


async def test_not_for_http():
    validator = DirectCallOriginValidator(lambda *args: None)
    with pytest.raises(ValueError, match="WebSocket"):
        await validator({"type": "http"}, None, None)


# -- the cache of listed origins ----------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


A = Origin("https", "a.example", 443)
B = Origin("https", "b.example", 443)


def test_listed_origins_are_read_once_per_ttl(make_account, django_assert_num_queries):
    clock = Clock()
    origins = ListedOrigins(ttl=10, recheck=0.5, clock=clock)
    account, _ = make_account(allowed_origins="https://a.example")
    with django_assert_num_queries(1):
        assert origins.contains(A) and origins.contains(A)
    # A change that sends no signal here (a queryset update, another process): a listed
    # origin is served from memory until the ttl is over.
    Account.objects.filter(pk=account.pk).update(allowed_origins="https://b.example")
    clock.now += 9.9
    with django_assert_num_queries(0):
        assert origins.contains(A)
    clock.now += 0.2
    with django_assert_num_queries(1):
        assert not origins.contains(A)
    assert origins.contains(B)


def test_an_unlisted_origin_reads_again_at_most_once_per_recheck(
    make_account, django_assert_num_queries
):
    clock = Clock()
    origins = ListedOrigins(ttl=10, recheck=0.5, clock=clock)
    with django_assert_num_queries(1):
        for _ in range(20):  # a flood of refused sockets
            assert not origins.contains(A)
    Account.objects.create(name="New", allowed_origins="https://a.example")  # no signal needed
    clock.now += 0.5
    with django_assert_num_queries(1):
        assert origins.contains(A)  # a newly listed origin works within `recheck`


def test_saving_or_deleting_an_account_clears_the_process_cache(
    make_account, django_assert_num_queries
):
    listed_origins.recheck = 1e9  # only the signals may make it read again
    try:
        assert not listed_origins.contains(A)
        account, _ = make_account(allowed_origins="https://a.example")
        assert listed_origins.contains(A)
        account.is_active = False
        account.save()
        assert not listed_origins.contains(A)
        account.is_active = True
        account.save()
        assert listed_origins.contains(A)
        account.delete()
        assert not listed_origins.contains(A)
    finally:
        listed_origins.recheck = ListedOrigins().recheck


# -- the account check at auth: origin_allowed and socket_origin_allowed ------------------------


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("https://App.Example.com", Origin("https", "app.example.com", 443)),
        ("https://app.example.com:443/", Origin("https", "app.example.com", 443)),
        ("http://127.0.0.1:8000", Origin("http", "127.0.0.1", 8000)),
        ("http://[::1]:8000", Origin("http", "::1", 8000)),
        ("ws://app.example.com", None),
        ("https://user@app.example.com", None),
        ("https://app.example.com/path", None),
        ("https://app.example.com:99999", None),
        ("null", None),
        ("", None),
        (None, None),
    ],
)
def test_parse_origin(value, parsed):
    assert parse_origin(value) == parsed


def test_origin_str_leaves_out_default_ports():
    assert str(Origin("https", "app.example.com", 443)) == "https://app.example.com"
    assert str(Origin("http", "::1", 8000)) == "http://[::1]:8000"


def test_origin_allowed_compares_scheme_host_and_port(make_account):
    account, _ = make_account(allowed_origins="https://app.example.com\nhttp://localhost:5173")
    assert origin_allowed(account, "https://app.example.com")
    assert origin_allowed(account, "https://app.example.com:443")
    assert origin_allowed(account, "HTTP://LOCALHOST:5173")
    assert not origin_allowed(account, "http://app.example.com")
    assert not origin_allowed(account, "https://app.example.com:8443")
    assert not origin_allowed(account, "http://localhost:9999")
    assert not origin_allowed(account, "https://evil.example.com")
    assert not origin_allowed(account, None)
    assert not origin_allowed(account, "null")


def test_origin_allowed_with_an_empty_list_admits_any(make_account):
    account, _ = make_account(allowed_origins="")
    assert origin_allowed(account, "https://anywhere.example")
    assert origin_allowed(account, None)


def scope(origin: str, host: str = "testserver") -> dict:
    return {
        "type": "websocket",
        "headers": [(b"origin", origin.encode()), (b"host", host.encode())],
    }


def test_socket_origin_allowed_at_auth(make_account):
    shop, _ = make_account(name="Shop", allowed_origins="https://shop.example")
    other, _ = make_account(name="Other", allowed_origins="https://other.example")
    open_account, _ = make_account(name="Open", allowed_origins="")
    # The site's own pages may sign in under any account (the session account, say).
    assert socket_origin_allowed(shop, scope("http://testserver"))
    assert socket_origin_allowed(shop, scope("https://shop.example"))
    # An origin the handshake let in because another account lists it: not for this one.
    assert not socket_origin_allowed(shop, scope("https://other.example"))
    assert socket_origin_allowed(other, scope("https://other.example"))
    assert socket_origin_allowed(open_account, scope("https://other.example"))


@sockets
async def test_auth_refuses_an_origin_that_only_another_account_allows(make_account):
    shop, _ = await database_sync_to_async(make_account)(
        name="Shop", allowed_origins="https://shop.example"
    )
    await database_sync_to_async(make_account)(
        name="Other", allowed_origins="https://other.example"
    )
    jane = await database_sync_to_async(make_registration)(shop, "tutor_jane", "Jane")
    token = tokens.issue(shop.pk, jane.pk, jane.cuid, "device-0001")
    # The handshake lets https://other.example in (an account lists it); auth under the
    # shop account must not.
    comm = communicator("https://other.example")
    assert (await comm.connect(timeout=5))[0]
    await comm.send_to(text_data=json.dumps({"type": "auth", "token": token}))
    frame = json.loads(await comm.receive_from(timeout=5))
    assert frame["type"] == "error" and frame["code"] == "ERR_ORIGIN_NOT_ALLOWED", frame
    assert (await comm.receive_output(timeout=5))["code"] == CLOSE_ORIGIN_NOT_ALLOWED
