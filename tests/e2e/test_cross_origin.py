"""A page on another origin than the Django server (an SPA) calls a page on the server's own.

The SPA is served by a small HTTP server of this test on 127.0.0.2: loopback, so a
secure context, but a host that is not in the server's ``ALLOWED_HOSTS`` (Channels'
``AllowedHostsOriginValidator`` refused its socket while ``v1/init`` answered it). The
server serves the SPA its own copy of the SDK (as an app that bundles or vendors it); the
page passes ``serverUrl`` to ``initDirectCall``. The init request (CORS) and the signaling
socket (``DirectCallOriginValidator``, then the account check at ``auth``) go to the
daphne server. Each test gets a fresh port, so an origin one test lists is never one that
another test expects refused (a listed origin stays in a server process's memory for a
few seconds).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.conf import settings
from playwright.sync_api import expect

from directcall.models import Call, CallStatus
from tests.conftest import needs_redis_server
from tests.e2e import timings
from tests.e2e.harness import (
    ROOT,
    E2EServer,
    SiteDatabase,
    env_var,
    start_server,
    wait_for_audio,
)
from tests.e2e.sdk import SDK, click, outcome, screen, sign_in, start_call
from tests.test_outages import KillableRedis

STATIC = ROOT / "directcall" / "static"
SPA_HOST = "127.0.0.2"
SPA_PAGE = b"""<!doctype html>
<html lang="en"><meta charset="utf-8"><title>SPA on another origin</title>
<body><h1>An app served from another origin</h1></body></html>
"""


class _SPAHandler(SimpleHTTPRequestHandler):
    """``/`` is the app's page; ``/static/directcall/...`` its copy of the SDK; no listing."""

    def do_GET(self) -> None:
        if self.path == "/":
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(SPA_PAGE)))
            self.end_headers()
            self.wfile.write(SPA_PAGE)
        elif self.path.startswith("/static/directcall/") and not self.path.endswith("/"):
            self.path = self.path.removeprefix("/static")
            super().do_GET()
        else:
            self.send_error(404)

    def log_message(self, format: str, *args) -> None:
        pass  # the test's output is for failures


@dataclass
class SPAServer:
    """The other origin: ``url`` is ``http://127.0.0.2:<port>``."""

    httpd: ThreadingHTTPServer

    @property
    def url(self) -> str:
        return f"http://{SPA_HOST}:{self.httpd.server_address[1]}"


@pytest.fixture
def spa() -> Iterator[SPAServer]:
    """A small static server on a free port of another host: another origin."""
    httpd = ThreadingHTTPServer((SPA_HOST, 0), partial(_SPAHandler, directory=str(STATIC)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield SPAServer(httpd)
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)


def spa_user(new_user, spa: SPAServer, name: str):
    """A browser user whose page is the SPA's (its own SDK copy, another origin)."""
    user = new_user(name, path=None)
    user.context.grant_permissions(["microphone", "notifications"], origin=spa.url)
    user.page.goto(f"{spa.url}/")
    return user


def server_url(e2e_server) -> str:
    return f"{e2e_server.url}/directcall/"


# The accounts take page identities (the page's key and cuid, as in the original SDK).


def test_cross_origin_page_calls_a_same_origin_page_with_audio(
    e2e_server, e2e_account, new_user, spa
):
    account, key = e2e_account(identity="page", allowed_origins=f"{spa.url}\n{e2e_server.url}")
    sam = spa_user(new_user, spa, "sam (SPA)")
    jane = new_user("jane")  # a page of the Django site itself
    assert sign_in(sam, account, key, "student_sam", serverUrl=server_url(e2e_server)) == {
        "ok": True
    }
    assert sign_in(jane, account, key, "tutor_jane") == {"ok": True}
    # The SPA's SDK came from the SPA's origin; only the API and the socket are the server's.
    loaded = sam.page.evaluate(
        "() => performance.getEntriesByType('resource').map((entry) => entry.name)"
    )
    assert f"{spa.url}{SDK}" in loaded
    assert not any(name.startswith(f"{e2e_server.url}/static/directcall/js/") for name in loaded)

    start_call(sam, "tutor_jane", "Student is calling")
    expect(screen(jane, "incoming")).to_be_visible()
    click(jane, "answer")
    expect(screen(sam, "ongoing")).to_be_visible()
    wait_for_audio(sam.page)
    wait_for_audio(jane.page)
    sam.page.evaluate("() => window.dc.hangup()")
    assert outcome(sam) == {"resolved": "over"}
    call = Call.objects.get()
    assert (call.caller.cuid, call.callee.cuid) == ("student_sam", "tutor_jane")
    assert call.status == CallStatus.OVER and call.answered_at is not None
    sam.assert_no_errors()
    jane.assert_no_errors()


def test_same_origin_page_calls_the_cross_origin_page(e2e_server, e2e_account, new_user, spa):
    account, key = e2e_account(identity="page", allowed_origins=f"{spa.url}\n{e2e_server.url}")
    sam = spa_user(new_user, spa, "sam (SPA)")
    jane = new_user("jane")
    assert sign_in(sam, account, key, "student_sam", serverUrl=server_url(e2e_server)) == {
        "ok": True
    }
    assert sign_in(jane, account, key, "tutor_jane") == {"ok": True}
    start_call(jane, "student_sam")
    expect(screen(sam, "incoming")).to_be_visible()
    click(sam, "answer")
    wait_for_audio(sam.page)
    wait_for_audio(jane.page)
    click(sam, "hangup")
    assert outcome(jane) == {"resolved": "over"}
    sam.assert_no_errors()


def test_an_unlisted_origin_is_told_err_origin_not_allowed_by_the_socket(
    e2e_server, e2e_account, new_user, spa
):
    # An empty list lets init answer any origin, but the socket admits only the site's own
    # origin and listed ones. Before, this rejected with a misleading ERR_INTERNET_LOST.
    account, key = e2e_account(identity="page", allowed_origins="")
    sam = spa_user(new_user, spa, "sam (SPA)")
    result = sign_in(sam, account, key, "student_sam", serverUrl=server_url(e2e_server))
    assert result["error"]["code"] == "ERR_ORIGIN_NOT_ALLOWED", result


def test_an_origin_the_account_does_not_list_is_refused_at_init(
    e2e_server, e2e_account, new_user, spa
):
    account, key = e2e_account(identity="page", allowed_origins=e2e_server.url)
    sam = spa_user(new_user, spa, "sam (SPA)")
    result = sign_in(sam, account, key, "student_sam", serverUrl=server_url(e2e_server))
    assert result["error"]["code"] == "ERR_ORIGIN_NOT_ALLOWED", result


# -- a page that loads while the server's Redis restarts ------------------------------------------

_START_SIGN_IN = """async (options) => {
  const sdk = await import(options.__sdk);
  delete options.__sdk;
  window.signedIn = undefined;
  sdk.initDirectCall(options).then(
    (client) => { window.dc = client; window.signedIn = { ok: true }; },
    (error) => { window.signedIn = { error }; });
}"""


@contextlib.contextmanager
def outage_site(
    tmp_path: Path, spa: SPAServer, name: str
) -> Iterator[tuple[KillableRedis, SiteDatabase, E2EServer]]:
    """``(redis_server, site, server)``: a server of its own on a private redis-server that
    the test may kill, with a site whose account allows ``spa``'s origin; all stopped at
    the end."""
    redis_server = KillableRedis(tmp_path)
    redis_server.start()
    server = None
    try:
        site = SiteDatabase.create(tmp_path / f"{name}.sqlite3", "Outage")
        with sqlite3.connect(site.path) as db:
            db.execute("UPDATE directcall_account SET allowed_origins = ?", (spa.url,))
        with (
            env_var("DATABASE_URL", f"sqlite:///{site.path}"),
            env_var("DIRECTCALL_E2E_REDIS", "1"),
            env_var("REDIS_URL", redis_server.url),
        ):
            server = start_server(
                str(site.path),
                run_prefix=settings.RUN_PREFIX + name,
                directcall=timings.DIRECTCALL,
                name=name,
            )
        yield redis_server, site, server
    finally:
        if server is not None:
            server.stop()
        redis_server.stop()


def outage_options(site: SiteDatabase, server: E2EServer) -> dict:
    """``_START_SIGN_IN``'s options: the SPA's page signs a visitor in to ``server``."""
    return {
        "accountId": site.account_id,
        "apikey": site.api_key,
        "cuid": "shop_visitor",
        "clevertap": None,
        "showScreens": False,
        "serverUrl": f"{server.url}/directcall/",
        "__sdk": SDK,
    }


@needs_redis_server()
def test_a_page_that_loads_while_redis_restarts_signs_in_once_it_is_back(tmp_path, browser, spa):
    """A server of its own on a private redis-server, killed as the SPA's page loads: the
    preflight is answered, the init gets a 503 the page can read (CORS) and waits out its
    Retry-After, and the sign-in goes through once Redis is back."""
    with (
        outage_site(tmp_path, spa, "outage") as (redis_server, site, server),
        contextlib.closing(browser.new_context()) as context,
    ):
        page = context.new_page()
        page.goto(f"{spa.url}/")
        answers: list[tuple[str, int]] = []
        page.on(
            "response",
            lambda r: answers.append((r.request.method, r.status)) if "/v1/init" in r.url else None,
        )
        redis_server.kill()
        with page.expect_response(lambda r: "/v1/init" in r.url and r.status == 503):
            page.evaluate(_START_SIGN_IN, outage_options(site, server))
        redis_server.start()
        page.wait_for_function("() => window.signedIn !== undefined", timeout=30_000)
        assert page.evaluate("() => window.signedIn") == {"ok": True}, server.log_tail()
        posts = [status for method, status in answers if method == "POST"]
        assert posts[0] == 503 and posts[-1] == 200, answers
        assert ("OPTIONS", 503) not in answers, answers  # the preflight was answered
        page.evaluate("() => window.dc.logout()")


def test_pages_refused_by_a_throttle_sign_in_once_its_window_has_passed(tmp_path, browser, spa):
    """Three new visitors' pages behind one address sign in at once, with one new cuid a
    second allowed (a school's first day, in small): at least one is refused (429, its
    ``Retry-After`` readable across origins), waits the window out and signs in, without
    a reload. Each page is a browser context of its own."""
    site = SiteDatabase.create(tmp_path / "throttled.sqlite3", "Throttled")
    with sqlite3.connect(site.path) as db:
        db.execute("UPDATE directcall_account SET allowed_origins = ?", (spa.url,))
    throttled = {**timings.DIRECTCALL, "THROTTLE_RATES": {"directcall_init_ip_new": "1/s"}}
    with env_var("DATABASE_URL", f"sqlite:///{site.path}"):
        server = start_server(
            str(site.path),
            run_prefix=settings.RUN_PREFIX + "throttled",
            directcall=throttled,
            name="throttled",
        )
    contexts = [browser.new_context() for _ in range(3)]
    try:
        answers: list[int] = []
        pages = []
        for context in contexts:
            page = context.new_page()
            page.goto(f"{spa.url}/")
            page.on(
                "response",
                lambda r: (
                    answers.append(r.status)
                    if "/v1/init" in r.url and r.request.method == "POST"
                    else None
                ),
            )
            pages.append(page)
        # Three requests in at most two one-second windows: one at least is refused.
        for number, page in enumerate(pages):
            options = {**outage_options(site, server), "cuid": f"shop_visitor{number}"}
            page.evaluate(_START_SIGN_IN, options)
        for page in pages:
            page.wait_for_function("() => window.signedIn !== undefined", timeout=30_000)
            assert page.evaluate("() => window.signedIn") == {"ok": True}, (
                answers,
                server.log_tail(),
            )
        assert 429 in answers and answers.count(200) == 3, answers
    finally:
        for context in contexts:
            context.close()
        server.stop()


def test_a_page_that_loads_while_the_server_is_unreachable_gets_its_screens_too(
    e2e_server, e2e_account, new_user, spa
):
    """An SPA (no screens template in the page: they come from ``v1/screens``) loads while
    the server cannot be reached: its screens request fails at once and its sign-in gets a
    502 (a proxy while a worker restarts). The sign-in waits it out as documented, the
    screens are asked again, and the page can be called, instead of rejecting at once
    that the screens could not be loaded. The outage is the browser's network: the first
    request of each is refused."""
    account, key = e2e_account(identity="page", allowed_origins=f"{spa.url}\n{e2e_server.url}")
    sam = spa_user(new_user, spa, "sam (SPA)")
    failed: list[str] = []

    def refuse_once(route, kind: str) -> None:
        if kind in failed:
            route.continue_()
        elif kind == "screens":
            failed.append(kind)
            route.abort("connectionrefused")
        else:
            failed.append(kind)
            route.fulfill(status=502, body="<h1>502 Bad Gateway</h1>")

    sam.page.route("**/directcall/v1/screens*", lambda route: refuse_once(route, "screens"))
    sam.page.route(
        "**/directcall/v1/init",
        lambda route: (
            refuse_once(route, "init") if route.request.method == "POST" else route.continue_()
        ),
    )
    options = {
        "accountId": account.account_id,
        "apikey": key,
        "cuid": "student_sam",
        "clevertap": None,
        "serverUrl": server_url(e2e_server),
        "__sdk": SDK,
    }
    sam.page.evaluate(_START_SIGN_IN, options)
    sam.page.wait_for_function("() => window.signedIn !== undefined", timeout=30_000)
    assert sam.page.evaluate("() => window.signedIn") == {"ok": True}
    assert sorted(failed) == ["init", "screens"]
    jane = new_user("jane")
    assert sign_in(jane, account, key, "tutor_jane") == {"ok": True}
    start_call(jane, "student_sam")
    expect(screen(sam, "incoming")).to_be_visible()
    click(sam, "decline")
    assert outcome(jane) == {"rejected": "declined"}
