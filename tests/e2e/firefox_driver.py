"""Firefox in the browser tests: a client of ``tests/e2e/firefox/driver.mjs``.

The driver is a node process that runs Debian's Firefox ESR over WebDriver BiDi with
puppeteer-core (from the repository's ``node_modules``; ``npm ci``). ``FirefoxPage`` answers
the part of Playwright's ``Page`` that the helpers of ``tests/e2e/sdk.py`` and
``tests/e2e/harness.py`` use (``evaluate``, ``wait_for_function``), so ``sign_in``,
``start_call``, ``outcome``, ``events`` and ``wait_for_audio`` work on a Firefox user as
they do on a Chromium one. Screens are read and clicked through the shadow root with
``screen_visible`` and ``click``.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from tests.e2e.harness import INIT_SCRIPT, ROOT

DRIVER = Path(__file__).resolve().parent / "firefox" / "driver.mjs"
PUPPETEER = ROOT / "node_modules" / "puppeteer-core"


class FirefoxError(AssertionError):
    """A command the driver could not carry out (a page error, a bad selector...)."""


class Firefox:
    """One Firefox process behind one driver process; pages are ``new_page()``."""

    def __init__(self, executable: str, startup_timeout: float = 90) -> None:
        node = shutil.which("node")
        if node is None:
            pytest.fail("node is needed for the Firefox tests", pytrace=False)
        if not PUPPETEER.is_dir():
            pytest.fail(
                f"{PUPPETEER} is missing: run `npm ci` in the repository (scripts/test.sh does)",
                pytrace=False,
            )
        self.proc = subprocess.Popen(
            [node, str(DRIVER)],
            cwd=ROOT,
            env={**os.environ, "FIREFOX": executable},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self._answers: queue.Queue[dict[str, Any]] = queue.Queue()
        self._consoles: dict[int, list[str]] = {}
        self._stderr: list[str] = []
        self._next_id = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()
        ready = self._receive(startup_timeout)
        if ready.get("event") != "ready":
            raise FirefoxError(f"the Firefox driver did not start: {ready}")
        self.version: str = ready["version"]

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                self._stderr.append(f"(stdout) {line.rstrip()}")
                continue
            if message.get("event") == "console":
                where = self._consoles.setdefault(message["page"], [])
                where.append(f"console.{message['type']}: {message['text']}")
            else:
                self._answers.put(message)
        self._answers.put({"event": "exit"})

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self._stderr.append(line.rstrip())

    def _receive(self, timeout: float) -> dict[str, Any]:
        try:
            message = self._answers.get(timeout=timeout)
        except queue.Empty:
            raise FirefoxError(
                f"no answer from the Firefox driver in {timeout} s; its stderr:\n"
                + "\n".join(self._stderr[-40:])
            ) from None
        if message.get("event") == "exit":
            raise FirefoxError(
                f"the Firefox driver exited ({self.proc.poll()}); its stderr:\n"
                + "\n".join(self._stderr[-40:])
            )
        return message

    def command(self, cmd: str, *, answer_timeout: float = 60, **fields: Any) -> Any:
        """Send one command and wait up to ``answer_timeout`` s for its answer; its value."""
        with self._lock:
            self._next_id += 1
            ident = self._next_id
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.write(json.dumps({"id": ident, "cmd": cmd, **fields}) + "\n")
                self.proc.stdin.flush()
            except BrokenPipeError:
                raise FirefoxError(
                    "the Firefox driver is gone; its stderr:\n" + "\n".join(self._stderr[-40:])
                ) from None
            answer = self._receive(answer_timeout)
            if answer.get("id") != ident:
                raise FirefoxError(f"answer out of order: asked {ident}, got {answer}")
        if not answer["ok"]:
            if answer.get("timeout"):
                raise PlaywrightTimeoutError(f"Firefox: {cmd}: {answer['error']}")
            raise FirefoxError(f"Firefox: {cmd}: {answer['error']}")
        return answer["value"]

    def console(self, page: int) -> list[str]:
        return self._consoles.setdefault(page, [])

    def new_page(self, base_url: str) -> FirefoxPage:
        """A page in a fresh browser context (own storage), with the tests' init script."""
        index = self.command("newPage", initScript=INIT_SCRIPT)
        return FirefoxPage(self, index, base_url)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(FirefoxError, OSError):
                self.command("quit", answer_timeout=30)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


class _Value:
    """What ``wait_for_function`` returns: Playwright's handle, reduced to ``json_value``."""

    def __init__(self, value: Any) -> None:
        self._value = value

    def json_value(self) -> Any:
        return self._value


@dataclass
class FirefoxPage:
    """A Firefox page with Playwright's ``evaluate``/``wait_for_function`` conventions."""

    browser: Firefox
    index: int
    base_url: str
    default_timeout_ms: float = 15_000

    @property
    def url(self) -> str:
        return self.evaluate("() => location.href")

    def goto(self, path: str) -> None:
        url = path if "://" in path else self.base_url.rstrip("/") + path
        status = self.browser.command("goto", page=self.index, url=url)
        assert status is None or status < 400, f"GET {url}: {status}"

    def reload(self) -> None:
        self.browser.command("reload", page=self.index)

    def evaluate(self, fn: str, arg: Any = None) -> Any:
        """Run a function (its source, as in Playwright) with ``arg`` in the page."""
        return self.browser.command("evaluate", page=self.index, fn=fn, arg=arg)

    def wait_for_function(
        self, fn: str, arg: Any = None, timeout: float | None = None, polling: float = 100
    ) -> _Value:
        """Wait until ``fn(arg)`` is truthy; Playwright's ``TimeoutError`` when it is not."""
        timeout_ms = self.default_timeout_ms if timeout is None else timeout
        value = self.browser.command(
            "waitForFunction",
            answer_timeout=timeout_ms / 1000 + 30,
            page=self.index,
            fn=fn,
            arg=arg,
            timeout=timeout_ms,
            polling=polling,
        )
        return _Value(value)

    def click(self, selector: str, timeout: float | None = None) -> None:
        timeout_ms = self.default_timeout_ms if timeout is None else timeout
        self.browser.command(
            "click",
            answer_timeout=timeout_ms / 1000 + 30,
            page=self.index,
            selector=selector,
            timeout=timeout_ms,
        )

    def close(self) -> None:
        self.browser.command("closePage", page=self.index)


@dataclass
class FirefoxUser:
    """One person at Firefox: a fresh browser context and its page (like ``BrowserUser``)."""

    name: str
    page: FirefoxPage

    @property
    def console(self) -> list[str]:
        return self.page.browser.console(self.page.index)

    @property
    def errors(self) -> list[str]:
        """``console.error`` messages and uncaught errors of the page."""
        return [
            line
            for line in self.console
            if line.startswith(("console.error:", "console.pageerror:"))
        ]

    def assert_no_errors(self) -> None:
        assert not self.errors, f"{self.name}: browser errors:\n" + "\n".join(self.errors)


# -- the call screens, through the shadow root ------------------------------------------------

_SCREEN_SHOWN = """([screen]) => {
  const host = document.querySelector('[data-directcall-screens]');
  const root = host && host.shadowRoot;
  if (!root) return false;
  const overlay = root.querySelector('.dc-overlay');
  const actions = root.querySelector(`[data-screen="${screen}"]`);
  return !!overlay && !overlay.hidden && !!actions && !actions.hidden;
}"""

_OVERLAY_HIDDEN = """() => {
  const host = document.querySelector('[data-directcall-screens]');
  const overlay = host && host.shadowRoot && host.shadowRoot.querySelector('.dc-overlay');
  return !overlay || overlay.hidden;
}"""


def wait_screen(user: FirefoxUser, screen: str, timeout_ms: float = 15_000) -> None:
    """Wait until the call screen ``screen`` ("outgoing", "incoming", "ongoing") shows."""
    user.page.wait_for_function(_SCREEN_SHOWN, [screen], timeout=timeout_ms)


def wait_overlay_hidden(user: FirefoxUser, timeout_ms: float = 15_000) -> None:
    user.page.wait_for_function(_OVERLAY_HIDDEN, timeout=timeout_ms)


def click(user: FirefoxUser, action: str) -> None:
    """A real click on a screen's button (``data-action``), through the shadow root."""
    user.page.click(f'[data-directcall-screens] >>> [data-action="{action}"]')
