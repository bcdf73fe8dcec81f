"""Driving the browser SDK from tests: sign in, call, and read outcomes through ``window``."""

from __future__ import annotations

import json
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
  for (const type of ["incoming", "statechange", "callend", "error", "connection", "logout"]) {
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
