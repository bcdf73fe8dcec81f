"""Driving the browser SDK from tests: sign in, call, and read outcomes through ``window``."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

SDK = "/static/directcall/js/directcall.js"

# Runs in the page: import the SDK, call initDirectCall, keep the client (or the error).
_SIGN_IN = """async (options) => {
  const sdk = await import(options.__sdk);
  delete options.__sdk;
  if (options.__clevertap === "real") {
    options.clevertap = window.clevertap;
  } else if (options.__clevertap === "recorder") {
    window.ctEvents = [];
    options.clevertap = {
      getAccountID: () => "CT-ACCOUNT-1",
      getCleverTapID: () => "ct_guid_1",
      event: { push: (name, props) => window.ctEvents.push([name, props]) },
    };
  }
  delete options.__clevertap;
  window.dcEvents = [];
  try {
    window.dc = await sdk.initDirectCall(options);
  } catch (error) {
    return { error };
  }
  const kinds = ["incoming", "statechange", "callend", "error", "connection", "logout", "resumed",
                 "peer", "audioblocked"];
  for (const type of kinds) {
    window.dc.addEventListener(type, (e) => window.dcEvents.push([type, e.detail]));
  }
  return { ok: true };
}"""


def sign_in(
    user, account, key: str, cuid: str, clevertap: Any = None, **options: Any
) -> dict[str, Any]:
    """Run ``initDirectCall`` in the user's page; return ``{"ok": True}`` or ``{"error": ...}``."""
    opts = {"accountId": account.account_id, "apikey": key, "cuid": cuid, **options}
    if clevertap in ("real", "recorder"):
        opts["__clevertap"] = clevertap
    elif "clevertap" not in options:
        opts["clevertap"] = clevertap
    opts["__sdk"] = SDK
    return user.page.evaluate(_SIGN_IN, opts)


def init_raw(user, options_js: str) -> dict[str, Any]:
    """``initDirectCall(<options_js>)`` with options written as JavaScript; returns the error."""
    return user.page.evaluate(
        f"""async () => {{
          const sdk = await import({json.dumps(SDK)});
          try {{ await sdk.initDirectCall({options_js}); return {{ ok: true }}; }}
          catch (error) {{ return {{ error }}; }}
        }}"""
    )


def start_call(user, receiver: str, context: str = "Tutor is calling", **call_options: Any) -> None:
    """``dc.call(...)`` without waiting; the outcome lands in ``window.outcome``."""
    user.page.evaluate(
        """([receiver, context, options]) => {
          window.outcome = undefined;
          window.dc.call(receiver, context, options).then(
            (value) => { window.outcome = { resolved: value }; },
            (error) => { window.outcome = { rejected: error }; });
        }""",
        [receiver, context, call_options or None],
    )


def outcome(user, timeout_ms: int = 20_000) -> dict[str, Any]:
    """Wait for the call() promise of ``start_call`` to settle; return how."""
    user.page.wait_for_function("() => window.outcome !== undefined", timeout=timeout_ms)
    return user.page.evaluate("() => window.outcome")


def screen(user, name: str):
    """The actions of one call screen ("outgoing", "incoming", "ongoing") in the shadow root."""
    return user.page.locator(f'[data-directcall-screens] [data-screen="{name}"]')


def overlay(user):
    return user.page.locator("[data-directcall-screens] .dc-overlay")


def slot(user, name: str):
    return user.page.locator(f'[data-directcall-screens] [data-slot="{name}"]')


def click(user, action: str) -> None:
    user.page.locator(f'[data-directcall-screens] [data-action="{action}"]').click()


def events(user, kind: str) -> list[Any]:
    return user.page.evaluate(
        "(kind) => window.dcEvents.filter((e) => e[0] === kind).map((e) => e[1])", kind
    )


class RawClient:
    """A party with no browser, speaking signaling frames itself (see ``raw_client``).

    For sending what no SDK would send (a corrupt offer, say) to a browser user.
    """

    def __init__(self, ws) -> None:
        self.ws = ws
        self.inbox: list[dict[str, Any]] = []
        self.ready: dict[str, Any] = {}

    def send(self, **frame: Any) -> None:
        self.ws.send(json.dumps(frame))

    def next(self, kind: str, timeout: float = 10, **fields: Any) -> dict[str, Any]:
        """The first frame of type ``kind`` (with ``fields``), kept or still to come."""
        deadline = time.monotonic() + timeout
        while True:
            for frame in self.inbox:
                if frame.get("type") == kind and all(frame.get(k) == v for k, v in fields.items()):
                    self.inbox.remove(frame)
                    return frame
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no {kind} {fields} frame in {timeout} s; got {self.inbox}")
            try:
                self.inbox.append(json.loads(self.ws.recv(timeout=remaining)))
            except TimeoutError:
                continue


@contextlib.contextmanager
def raw_client(
    server, account, key: str, cuid: str, device: str = "raw-client-0001"
) -> Iterator[RawClient]:
    """Sign ``cuid`` in through ``v1/init`` and its WebSocket, as a page would; close on exit."""
    from websockets.sync.client import connect

    body = {"accountId": account.account_id, "apikey": key, "cuid": cuid, "deviceId": device}
    request = urllib.request.Request(  # noqa: S310 (the test server on 127.0.0.1)
        f"{server.url}/directcall/v1/init",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Origin": server.url},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        session = json.load(response)
    with connect(session["websocketUrl"], origin=server.url, open_timeout=10) as ws:
        client = RawClient(ws)
        client.send(type="auth", token=session["token"])
        client.ready = client.next("ready")
        yield client
