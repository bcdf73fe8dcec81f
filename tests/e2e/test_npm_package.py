"""The npm package in a real browser: an app bundled from the tarball, and a page that loads
the classic-script build, each make a call with audio to a page using the Django-served SDK.

The tarball is packed and installed like a user would (``npm install <tarball>`` into an app
folder); the app is bundled with esbuild. Its files are served on the test server's origin
under /npm-app/ and /npm-sdk/ (Playwright routes for those paths only), inside a real page of
the demo site that has no SDK of its own.
"""

from __future__ import annotations

import json
import mimetypes
from pathlib import Path

import pytest
from playwright.sync_api import expect

from directcall.models import Call, CallStatus
from tests.e2e.harness import wait_for_audio
from tests.e2e.sdk import SDK, click, events, outcome, overlay, screen, sign_in, start_call
from tests.npm_package import PACKAGE_NAME, install, pack_sdk, run, tool

# The host app's own code: it imports the SDK by its package name, signs in with the options
# the test hands it and keeps the client where tests/e2e/sdk.py's helpers look for it.
APP = f"""
import {{ initDirectCall, ERR }} from "{PACKAGE_NAME}";

window.app = {{
  ERR,
  async signIn(options) {{
    window.dcEvents = [];
    try {{
      window.dc = await initDirectCall(options);
    }} catch (error) {{
      return {{ error }};
    }}
    for (const type of ["incoming", "statechange", "callend", "error", "connection", "logout"]) {{
      window.dc.addEventListener(type, (e) => window.dcEvents.push([type, e.detail]));
    }}
    return {{ ok: true }};
  }},
}};
"""

_KEEP_CLIENT = """async (options) => {
  window.dcEvents = [];
  try {
    window.dc = await window.DirectCall.initDirectCall(options);
  } catch (error) {
    return { error };
  }
  for (const type of ["incoming", "statechange", "callend", "error"]) {
    window.dc.addEventListener(type, (e) => window.dcEvents.push([type, e.detail]));
  }
  return { ok: true };
}"""


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory) -> Path:
    """A host app with the packed SDK installed and bundled, as ESM and as a classic script."""
    work = tmp_path_factory.mktemp("npm-e2e")
    tarball = pack_sdk(work)
    app = work / "host-app"
    install(tarball, app)
    (app / "app.js").write_text(APP)
    for fmt in ("esm", "iife"):
        run(
            [
                tool("esbuild"),
                "app.js",
                "--bundle",
                f"--format={fmt}",
                f"--outfile=out/{fmt}.js",
            ],
            cwd=app,
        )
    return app


def _serve(user, prefix: str, folder: Path) -> None:
    """Answer GET {prefix}<file> on the server's origin from ``folder`` (a static host)."""

    def fulfill(route):
        name = route.request.url.split(prefix, 1)[1].split("?", 1)[0]
        path = (folder / name).resolve()
        if folder.resolve() not in path.parents or not path.is_file():
            route.fulfill(status=404, body="not found")
            return
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if path.suffix in (".js", ".mjs"):
            kind = "text/javascript"
        route.fulfill(path=str(path), content_type=kind)

    user.page.route(f"**{prefix}**", fulfill)


def _record(user) -> list[tuple[str, str, int]]:
    """Every response the page gets: (method, url, status)."""
    seen: list[tuple[str, str, int]] = []
    user.page.on("response", lambda r: seen.append((r.request.method, r.url, r.status)))
    return seen


def _path_ends(suffix: str):
    return lambda response: response.url.split("?", 1)[0].endswith(suffix)


@pytest.fixture
def account(e2e_account):
    return e2e_account()


@pytest.mark.parametrize("fmt", ["esm", "iife"])
def test_a_bundled_app_calls_a_plain_page(new_user, e2e_server, account, app_dir, fmt):
    acct, key = account
    jane = new_user("jane")
    assert sign_in(jane, acct, key, "tutor_jane", name="Jane Tutor") == {"ok": True}
    sam = new_user(f"sam-{fmt}-app")
    seen = _record(sam)
    # Served from a folder of its own: nothing may resolve next to the bundle.
    _serve(sam, "/npm-app/assets/", app_dir / "out")
    sam.page.add_script_tag(url=f"/npm-app/assets/{fmt}.js", type="module" if fmt == "esm" else "")
    # No serverUrl: the bundle defaults to /directcall/ on the page's origin.
    signed_in = sam.page.evaluate(
        "(o) => window.app.signIn(o)",
        {
            "accountId": acct.account_id,
            "apikey": key,
            "cuid": "student_sam",
            "name": "Sam Student",
            "clevertap": None,
        },
    )
    assert signed_in == {"ok": True}
    with sam.page.expect_response(_path_ends("/ringback.wav")) as ringback:
        start_call(sam, "tutor_jane", "Student is calling")
    expect(screen(sam, "outgoing")).to_be_visible()
    expect(screen(jane, "incoming")).to_be_visible()
    expect(jane.page.locator("[data-directcall-screens] [data-slot=name]")).to_have_text(
        "Sam Student"
    )
    click(jane, "answer")
    expect(screen(sam, "ongoing")).to_be_visible()
    wait_for_audio(sam.page)
    wait_for_audio(jane.page)
    click(jane, "hangup")
    assert outcome(sam) == {"resolved": "over"}
    expect(overlay(sam)).to_be_hidden()
    call = Call.objects.get()
    assert (call.status, call.caller.cuid, call.callee.cuid) == (
        CallStatus.OVER,
        "student_sam",
        "tutor_jane",
    )
    # The server and the tones were found where they are, not next to the bundle.
    server = e2e_server.url
    assert ("POST", f"{server}/directcall/v1/init", 200) in seen
    assert ringback.value.url == f"{server}/static/directcall/audio/ringback.wav"
    assert ringback.value.status in (200, 206)
    strays = [r for r in seen if "/npm-app/" in r[1] and not r[1].endswith(f"/{fmt}.js")]
    assert strays == []
    sam.assert_no_errors()


def test_a_classic_script_page_answers_a_call(new_user, e2e_server, account, app_dir):
    acct, key = account
    sam = new_user("sam-classic")
    dist = app_dir / "node_modules" / PACKAGE_NAME / "npm" / "dist"
    _serve(sam, "/npm-sdk/", dist)
    sam.page.add_script_tag(url="/npm-sdk/directcall.min.js")
    # A classic script: window.DirectCall is there as soon as it has run.
    assert sam.page.evaluate("() => [typeof DirectCall.initDirectCall, DirectCall.version]") == [
        "function",
        "0.1.0",
    ]
    signed_in = sam.page.evaluate(
        _KEEP_CLIENT,
        {
            "accountId": acct.account_id,
            "apikey": key,
            "cuid": "student_sam",
            "clevertap": None,
            # The tones the package ships, from where this site hosts them.
            "assetsUrl": "/npm-sdk/audio",
        },
    )
    assert signed_in == {"ok": True}
    jane = new_user("jane")
    assert sign_in(jane, acct, key, "tutor_jane", name="Jane Tutor") == {"ok": True}
    with sam.page.expect_response(_path_ends("/ringtone.wav")) as ringtone:
        start_call(jane, "student_sam", "Tutor is calling")
    expect(screen(sam, "incoming")).to_be_visible()
    assert ringtone.value.url == f"{e2e_server.url}/npm-sdk/audio/ringtone.wav"
    assert ringtone.value.status == 200
    click(sam, "answer")
    expect(screen(jane, "ongoing")).to_be_visible()
    wait_for_audio(sam.page)
    wait_for_audio(jane.page)
    sam.page.evaluate("() => window.dc.hangup()")
    assert outcome(jane) == {"resolved": "over"}
    expect(overlay(sam)).to_be_hidden()
    assert [e["status"] for e in events(sam, "callend")] == ["over"]
    assert Call.objects.get().status == CallStatus.OVER
    sam.assert_no_errors()


def test_a_bad_assets_url_is_refused(new_user, account, app_dir):
    acct, key = account
    user = new_user("bad-assets")
    _serve(user, "/npm-sdk/", app_dir / "node_modules" / PACKAGE_NAME / "npm" / "dist")
    user.page.add_script_tag(url="/npm-sdk/directcall.js")
    result = user.page.evaluate(
        _KEEP_CLIENT,
        {
            "accountId": acct.account_id,
            "apikey": key,
            "cuid": "student_sam",
            "clevertap": None,
            "assetsUrl": "javascript:alert(1)",
        },
    )
    assert result["error"]["code"] == "ERR_INVALID_INITPARAMETERS"
    assert "assetsUrl" in result["error"]["message"]


def test_the_original_import_line_through_an_import_map(browser, e2e_server, account):
    """A page without a bundler keeps `import {initDirectCall} from 'clevertap-directcall-sdk'`."""
    acct, key = account
    # An inline import map needs its hash in a strict CSP (docs/migrating.md); the demo's
    # policy has none, so this page's context ignores CSP.
    context = browser.new_context(base_url=e2e_server.url, bypass_csp=True)
    try:
        context.grant_permissions(["microphone"], origin=e2e_server.url)
        page = context.new_page()
        page.goto("/")
        page.add_script_tag(
            type="importmap",
            content=json.dumps({"imports": {"clevertap-directcall-sdk": SDK}}),
        )
        result = page.evaluate(
            """async (options) => {
              const {initDirectCall} = await import('clevertap-directcall-sdk');
              try {
                const client = await initDirectCall(options);
                return { cuid: client.cuid };
              } catch (error) {
                return { error };
              }
            }""",
            {"accountId": acct.account_id, "apikey": key, "cuid": "student_sam", "clevertap": None},
        )
        assert result == {"cuid": "student_sam"}
    finally:
        context.close()
