// Drives Debian's Firefox ESR for the browser tests, over WebDriver BiDi with puppeteer-core
// (no geckodriver). A long-running process: one JSON command per line on stdin, one JSON
// answer per line on stdout, in the order asked. tests/e2e/firefox_driver.py is the client.
//
//   {"id": 1, "cmd": "newPage", "initScript": "..."}        -> {"id": 1, "ok": true, "value": 0}
//   {"id": 2, "cmd": "goto", "page": 0, "url": "http://..."}
//   {"id": 3, "cmd": "evaluate", "page": 0, "fn": "(arg) => ...", "arg": ...}
//   {"id": 4, "cmd": "waitForFunction", "page": 0, "fn": "...", "arg": ..., "timeout": 15000}
//   {"id": 5, "cmd": "click", "page": 0, "selector": "host >>> [data-action=answer]"}
//   {"id": 6, "cmd": "closePage", "page": 0}
//   {"id": 7, "cmd": "quit"}
//
// Each page lives in its own browser context (own storage, so its own device id). Console
// messages and page errors are sent unasked as {"event": "console", "page": N, "text": ...}.
// A failure answers {"id": N, "ok": false, "error": "...", "timeout": true|false}.
//
// Environment: FIREFOX (default /usr/bin/firefox-esr); FIREFOX_PREFS, a JSON object of more
// preferences for this browser (e.g. {"media.autoplay.default": 1}: sound only after a gesture).

import { createInterface } from "node:readline";

import puppeteer from "puppeteer-core";

const executablePath = process.env.FIREFOX || "/usr/bin/firefox-esr";
const morePrefs = JSON.parse(process.env.FIREFOX_PREFS || "{}");

const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath,
  headless: true,
  protocolTimeout: 60_000,
  extraPrefsFirefox: {
    // A fake microphone (a tone), granted without a prompt.
    "media.navigator.streams.fake": true,
    "media.navigator.permission.disabled": true,
    // Nothing but the test server: no update checks, telemetry or captive-portal probes.
    "network.captive-portal-service.enabled": false,
    "network.connectivity-service.enabled": false,
    "app.update.enabled": false,
    "browser.safebrowsing.malware.enabled": false,
    "browser.safebrowsing.phishing.enabled": false,
    "datareporting.policy.dataSubmissionEnabled": false,
    "toolkit.telemetry.enabled": false,
    ...morePrefs,
  },
});

const pages = [];

function send(message) {
  process.stdout.write(`${JSON.stringify(message)}\n`);
}

/** `fn` called with `arg` in the page, as a JavaScript expression. */
function call(fn, arg) {
  return `(${fn})(${arg === undefined ? "" : JSON.stringify(arg)})`;
}

function page(index) {
  const p = pages[index];
  if (!p) throw new Error(`no page ${index}`);
  return p;
}

const commands = {
  async newPage({ initScript }) {
    const context = await browser.createBrowserContext();
    const p = await context.newPage();
    const index = pages.length;
    pages.push(p);
    p.on("console", (msg) => send({ event: "console", page: index, type: msg.type(), text: msg.text() }));
    p.on("pageerror", (error) =>
      send({ event: "console", page: index, type: "pageerror", text: String(error && (error.stack || error)) }),
    );
    if (initScript) await p.evaluateOnNewDocument(initScript);
    return index;
  },
  async goto({ page: index, url }) {
    const response = await page(index).goto(url, { waitUntil: "load" });
    return response ? response.status() : null;
  },
  async reload({ page: index }) {
    await page(index).reload({ waitUntil: "load" });
    return null;
  },
  async evaluate({ page: index, fn, arg }) {
    const value = await page(index).evaluate(call(fn, arg));
    return value === undefined ? null : value;
  },
  async waitForFunction({ page: index, fn, arg, timeout = 15_000, polling = 100 }) {
    const handle = await page(index).waitForFunction(call(fn, arg), { timeout, polling });
    const value = await handle.jsonValue();
    await handle.dispose();
    return value === undefined ? null : value;
  },
  async click({ page: index, selector, timeout = 15_000 }) {
    // A real click (user activation: audio may play), through shadow roots with ">>>".
    await page(index).locator(selector).setTimeout(timeout).click();
    return null;
  },
  async closePage({ page: index }) {
    const p = page(index);
    pages[index] = null;
    await p.browserContext().close();
    return null;
  },
  async version() {
    return browser.version();
  },
  async quit() {
    await browser.close();
    return null;
  },
};

// Commands run one at a time, in order: the client waits for each answer.
const lines = createInterface({ input: process.stdin });
send({ event: "ready", version: await browser.version() });
for await (const line of lines) {
  if (!line.trim()) continue;
  let message;
  try {
    message = JSON.parse(line);
  } catch (error) {
    send({ id: null, ok: false, error: `bad JSON: ${error}` });
    continue;
  }
  const handler = commands[message.cmd];
  try {
    if (!handler) throw new Error(`unknown command ${message.cmd}`);
    send({ id: message.id, ok: true, value: await handler(message) });
  } catch (error) {
    const timeout = !!error && error.name === "TimeoutError";
    send({ id: message.id, ok: false, timeout, error: String((error && error.message) || error) });
  }
  if (message.cmd === "quit") break;
}
await browser.close().catch(() => {});
process.exit(0);
