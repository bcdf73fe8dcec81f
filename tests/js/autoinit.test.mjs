// The template-tag mode of directcall.js (no script of the page's own): a sign-in that fails
// is said in the console, with its code and message, as well as in the directcall:error event.
import { test, mock } from "node:test";
import assert from "node:assert/strict";

test("a failed automatic sign-in warns in the console and still fires directcall:error", async () => {
  const win = new EventTarget();
  // The page's {% directcall_session %} JSON, here without the account: refused at once.
  const config = { cuid: "student_sam" };
  const doc = {
    querySelectorAll: (selector) =>
      selector.includes('id="directcall-config"') ? [{ textContent: JSON.stringify(config) }] : [],
    addEventListener: () => {},
  };
  const saved = { window: globalThis.window, document: globalThis.document };
  globalThis.window = win;
  globalThis.document = doc;
  const warn = mock.method(console, "warn", () => {});
  try {
    const reported = new Promise((resolve) => win.addEventListener("directcall:error", (e) => resolve(e.detail)));
    await import("../../directcall/static/directcall/js/directcall.js?autoinit");
    const error = await reported;
    assert.ok(error.code && error.message, JSON.stringify(error));
    const lines = warn.mock.calls.map((c) => c.arguments.join(" "));
    assert.ok(
      lines.some((line) => line.includes(String(error.code)) && line.includes(error.message)),
      `no console warning naming ${error.code}: ${JSON.stringify(lines)}`,
    );
    assert.ok(win.DirectCall && win.DirectCall.client, "window.DirectCall.client is still the promise");
  } finally {
    warn.mock.restore();
    for (const [name, value] of Object.entries(saved)) {
      if (value === undefined) delete globalThis[name];
      else globalThis[name] = value;
    }
  }
});
