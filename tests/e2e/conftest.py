"""Fixtures of the browser end-to-end tests: a real daphne server and headless Chromium.

- ``e2e_server`` — the daphne server (``tests/e2e_settings.py``, ``tests/e2e_asgi.py``) on
  pytest-django's test database; requesting it gives the test ``transactional_db``, so
  that what the test commits is visible to the server and the other way round.
- ``e2e_account(**fields) -> (account, api_key)`` — a committed account.
- ``browser`` — Playwright's Chromium (``CHROMIUM``, default ``/usr/bin/chromium``).
- ``new_user(name=None, path="/") -> BrowserUser`` — a fresh browser context and page on
  the server's origin; see ``tests/e2e/harness.py``.

Every test here is marked ``e2e`` (``pytest -m "not e2e"`` leaves them out) and must be
a plain ``def`` test: Playwright's sync API runs its own event loop.

The server and the browser live as long as this package's tests, not the whole session:

- While Playwright's sync API is started, the thread looks to asyncio as if an event
  loop were running in it (the API's dispatcher marks its loop as running between calls).
  Django then refuses ORM calls (``SynchronousOnlyOperation``), so ``browser`` sets
  ``DJANGO_ALLOW_ASYNC_UNSAFE`` while it lives, and the async tests of other modules could
  not start their loops, so it must be gone before they run.
- The server's sweep loop finalizes live calls whose parties it does not see present; left
  running, it would end the calls of other modules' transactional tests in the same
  database.

When a test fails, its report gets the server's log lines written during the test and the
console of each browser user. The whole server log is in ``tests/artifacts/``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import timings
from tests.e2e.harness import (
    CHROMIUM_ARGS,
    INIT_SCRIPT,
    BrowserUser,
    E2EServer,
    env_var,
    free_port,
    start_server,
)

E2E_DIR = Path(__file__).resolve().parent
_LOG_OFFSET = pytest.StashKey[int]()
_SERVER = pytest.StashKey[E2EServer]()
_USERS = pytest.StashKey[list[BrowserUser]]()
_REPORTED = pytest.StashKey[bool]()


def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if E2E_DIR in Path(item.path).parents:
            item.add_marker(pytest.mark.e2e)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the server log of this test and the browser consoles."""
    report = yield
    if report.failed and not item.stash.get(_REPORTED, False):
        item.stash[_REPORTED] = True
        server = item.stash.get(_SERVER, None)
        if server is not None:
            state = "running" if server.alive() else f"EXITED ({server.proc.returncode})"
            log = server.log_since(item.stash.get(_LOG_OFFSET, 0)) or "(nothing)"
            report.sections.append((f"{server.kind} server log [{state}] {server.log_path}", log))
        for user in item.stash.get(_USERS, []):
            report.sections.append(
                (f"browser console: {user.name}", "\n".join(user.console) or "(nothing)")
            )
    return report


# -- server ----------------------------------------------------------------------------------


def serve(kind: str) -> Iterator[E2EServer]:
    """A server of ``kind`` (daphne, uvicorn-lean) on the test database, until the end."""
    from django.conf import settings
    from django.db import connection

    name = str(connection.settings_dict["NAME"])
    if connection.vendor == "sqlite" and (name == ":memory:" or "mode=memory" in name):
        pytest.fail("the e2e server needs a file SQLite test database, not an in-memory one")
    server = start_server(
        name, run_prefix=settings.RUN_PREFIX, directcall=timings.DIRECTCALL, kind=kind
    )
    yield server
    server.stop()


def restart(server: E2EServer) -> None:
    """Start a stopped server again, on another port if its own was taken meanwhile."""
    try:
        server.start()
    except RuntimeError:
        server.port = free_port()
        server.start()


@pytest.fixture(scope="package")
def e2e_server_process(django_db_setup) -> Iterator[E2EServer]:
    """The daphne process (the demo's server), started once for this package.

    A module may override this fixture to run its tests on another server
    (``test_firefox.py``: the recommended production server)."""
    yield from serve("daphne")


@pytest.fixture
def e2e_server(request, e2e_server_process: E2EServer, transactional_db) -> E2EServer:
    """The running server (``.url``, ``.ws_url``, ``.port``, ``.directcall``, ``.log_path``)."""
    server = e2e_server_process
    if not server.alive():
        pytest.fail(
            f"the e2e {server.kind} server has exited ({server.proc.returncode}):\n"
            f"{server.log_tail()}",
            pytrace=False,
        )
    request.node.stash[_SERVER] = e2e_server_process
    request.node.stash[_LOG_OFFSET] = e2e_server_process.log_size()
    return e2e_server_process


@pytest.fixture
def e2e_account(transactional_db) -> Callable[..., tuple[Any, str]]:
    """Factory: ``e2e_account(**fields) -> (account, api_key)``, committed at once.

    A page-identity account unless ``identity`` is given (the pages sign in with the key).
    """
    from directcall.models import Account

    def make(**fields: Any) -> tuple[Account, str]:
        fields.setdefault("name", "E2E account")
        fields.setdefault("require_clevertap", False)
        fields.setdefault("identity", "page")
        account = Account(**fields)
        key = account.set_new_api_key()
        account.save()
        return account, key

    return make


# -- browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    """Headless Chromium through Playwright's sync API (Debian's, never a downloaded one)."""
    import os

    from playwright.sync_api import sync_playwright

    executable = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not os.access(executable, os.X_OK):
        pytest.fail(
            f"Chromium not found at {executable}: run scripts/test.sh (installs Debian's "
            "chromium), `apt-get install chromium`, or set CHROMIUM=/path/to/chromium",
            pytrace=False,
        )
    with env_var("DJANGO_ALLOW_ASYNC_UNSAFE", "true"):
        playwright = sync_playwright().start()
        try:
            chromium = playwright.chromium.launch(
                executable_path=executable, args=CHROMIUM_ARGS, headless=True
            )
            try:
                yield chromium
            finally:
                chromium.close()
        finally:
            playwright.stop()


@pytest.fixture
def new_user(request, browser, e2e_server: E2EServer) -> Iterator[Callable[..., BrowserUser]]:
    """Factory: ``new_user(name=None, path="/") -> BrowserUser``.

    Each call opens a fresh browser context (microphone and notifications granted for the
    server's origin, ``base_url`` set to it, the ``RTCPeerConnection`` wrapper installed)
    and a page, and goes to ``path`` unless it is None. Contexts close at teardown.
    """
    users: list[BrowserUser] = []
    request.node.stash[_USERS] = users

    def make(name: str | None = None, path: str | None = "/") -> BrowserUser:
        context = browser.new_context(base_url=e2e_server.url)
        context.grant_permissions(["microphone", "notifications"], origin=e2e_server.url)
        context.set_default_timeout(15_000)
        context.add_init_script(INIT_SCRIPT)
        page = context.new_page()
        user = BrowserUser(name or f"user{len(users) + 1}", context, page)
        user.watch(page)
        context.on("page", lambda p: user.watch(p) if p is not user.page else None)
        users.append(user)
        if path is not None:
            page.goto(path)
        return user

    yield make
    # The list is also the failure report's: other browsers' users (test_firefox's) are in
    # it too, and close themselves.
    for user in users:
        if not isinstance(user, BrowserUser):
            continue
        try:
            user.context.close()
        except Exception as exc:  # a crashed browser must not hide the test's own failure
            print(f"closing the browser context of {user.name} failed: {exc}")
