// client.watch() in node, with a fake socket (issue 15, who is online): the watch frame, the
// online/offline/busy events for the states that change, unwatch, a reconnect watching
// again, and a call button showing its receiver's state.
import { afterEach, test } from "node:test";
import assert from "node:assert/strict";

import { initDirectCall } from "../../directcall/static/directcall/js/client.js";
import { markUnavailable, showPresence } from "../../directcall/static/directcall/js/watch.js";
import { flush, READY, signedInSession } from "./fakes.mjs";

let session = null;
let client = null;
afterEach(() => {
  if (session) session.end();
  session = client = null;
});

async function signedIn() {
  session = await signedInSession(initDirectCall);
  client = session.client;
  return session.ws;
}

function record(target) {
  const seen = [];
  for (const type of ["online", "offline", "busy"]) {
    target.addEventListener(type, (e) => seen.push([type, e.detail.cuid, e.detail.state]));
  }
  return seen;
}

test("watch() sends one frame, resolves the states and dispatches each state once", async () => {
  const ws = await signedIn();
  const seen = record(client);
  const watching = client.watch(["tutor_jane", "grocer_gil", "tutor_jane"]);
  const frame = ws.sent.at(-1);
  assert.deepEqual([frame.type, frame.cuids], ["watch", ["tutor_jane", "grocer_gil"]]);
  ws.receive({ type: "watching", ref: frame.ref, presence: { tutor_jane: "online", grocer_gil: "offline" } });
  assert.deepEqual(await watching, { tutor_jane: "online", grocer_gil: "offline" });
  assert.deepEqual(seen, [
    ["online", "tutor_jane", "online"],
    ["offline", "grocer_gil", "offline"],
  ]);
  // Pushes: only changes, only of watched cuids, only known states.
  ws.receive({ type: "presence", presence: { tutor_jane: "online", grocer_gil: "busy" } });
  ws.receive({ type: "presence", presence: { stranger_x: "online", grocer_gil: "sleeping" } });
  assert.deepEqual(seen.at(-1), ["busy", "grocer_gil", "busy"]);
  assert.equal(seen.length, 3);
});

test("watch() refuses what is not a list of cuids, and rejects the server's refusals", async () => {
  const ws = await signedIn();
  const before = ws.sent.length;
  for (const cuids of ["tutor_jane", [1], ["91_8899555"], null]) {
    await assert.rejects(client.watch(cuids), { code: "ERR_INVALID_CALL_PARAMETERS" });
  }
  assert.equal(ws.sent.length, before);
  const watching = client.watch(["tutor_jane"]);
  const frame = ws.sent.at(-1);
  ws.receive({ type: "error", code: "ERR_WATCH_LIMIT", message: "Too many.", ref: frame.ref });
  await assert.rejects(watching, { code: "ERR_WATCH_LIMIT" });
  client.logout();
  await assert.rejects(client.watch(["tutor_jane"]), { code: "ERR_NOT_INITIALIZED" });
});

test("unwatch() stops the events; a new connection watches again and tells what changed", async () => {
  const ws = await signedIn();
  const seen = record(client);
  const watching = client.watch(["tutor_jane", "grocer_gil"]);
  ws.receive({
    type: "watching",
    ref: ws.sent.at(-1).ref,
    presence: { tutor_jane: "online", grocer_gil: "online" },
  });
  await watching;
  const unwatched = client.unwatch(["grocer_gil"]);
  const frame = ws.sent.at(-1);
  assert.deepEqual([frame.type, frame.cuids], ["unwatch", ["grocer_gil"]]);
  ws.receive({ type: "unwatched", ref: frame.ref, cuids: ["grocer_gil"] });
  await unwatched;
  ws.receive({ type: "presence", presence: { grocer_gil: "offline" } });
  assert.equal(seen.length, 2);
  // The connection came back (a new socket in real life): the watches are sent again.
  client.signaling.dispatchEvent(new CustomEvent("up", { detail: READY }));
  const again = ws.sent.at(-1);
  assert.deepEqual([again.type, again.cuids], ["watch", ["tutor_jane"]]);
  ws.receive({ type: "watching", ref: again.ref, presence: { tutor_jane: "busy" } });
  await flush();
  assert.deepEqual(seen.at(-1), ["busy", "tutor_jane", "busy"]);
});

function fakeButton(text, aria, dataset = null) {
  const attributes = new Map(aria ? [["aria-label", aria]] : []);
  return {
    textContent: text,
    dataset: dataset || {
      directcallOfflineLabel: "Offline",
      directcallBusyLabel: "In a call",
      directcallOfflineAria: "Offline (Jane)",
      directcallUnavailableLabel: "Unavailable",
      directcallUnavailableAria: "Unavailable (Jane)",
    },
    getAttribute: (name) => (attributes.has(name) ? attributes.get(name) : null),
    setAttribute: (name, value) => attributes.set(name, String(value)),
    removeAttribute: (name) => attributes.delete(name),
    attributes,
  };
}

test("a call button shows its receiver's state and comes back as the host wrote it", () => {
  const button = fakeButton("Call", "Call Jane");
  showPresence(button, "offline");
  assert.equal(button.textContent, "Offline");
  assert.equal(button.getAttribute("aria-label"), "Offline (Jane)");
  assert.equal(button.getAttribute("aria-disabled"), "true");
  assert.equal(button.dataset.directcallPresence, "offline");
  showPresence(button, "busy");
  assert.equal(button.textContent, "In a call");
  assert.equal(button.getAttribute("aria-label"), null); // no name known for busy here
  showPresence(button, "online");
  assert.equal(button.textContent, "Call");
  assert.equal(button.getAttribute("aria-label"), "Call Jane");
  assert.equal(button.getAttribute("aria-disabled"), null);
});

test("a page that cannot call marks its own buttons unavailable, and no one else's", () => {
  const ours = fakeButton("Call", "Call Jane");
  ours.attributes.set("data-directcall-nonce", "n".repeat(22));
  const handWritten = fakeButton("Ring the shop", null, {}); // no labels: keeps its text
  handWritten.attributes.set("data-directcall-nonce", "n".repeat(22));
  const planted = fakeButton("Call", null);
  planted.attributes.set("data-directcall-nonce", "x".repeat(22));
  const root = { querySelectorAll: () => [ours, handWritten, planted] };
  markUnavailable("n".repeat(22), root);
  assert.equal(ours.textContent, "Unavailable");
  assert.equal(ours.getAttribute("aria-label"), "Unavailable (Jane)");
  assert.equal(ours.getAttribute("aria-disabled"), "true");
  assert.equal(ours.dataset.directcallPresence, "unavailable");
  // Without the label: as the host wrote it (a click still reports the error).
  assert.equal(handWritten.textContent, "Ring the shop");
  assert.equal(handWritten.getAttribute("aria-disabled"), null);
  assert.equal(handWritten.dataset.directcallPresence, "unavailable");
  assert.equal(planted.getAttribute("aria-disabled"), null);
  assert.equal(planted.textContent, "Call");
  assert.equal(planted.dataset.directcallPresence, undefined);

  // A page without a nonce has no buttons of its own.
  const other = fakeButton("Call", null);
  other.attributes.set("data-directcall-nonce", "n".repeat(22));
  markUnavailable(null, { querySelectorAll: () => [other] });
  assert.equal(other.getAttribute("aria-disabled"), null);
  assert.equal(other.dataset.directcallPresence, undefined);
});

test("a followed button without the state's label keeps its text and stays enabled", () => {
  const button = fakeButton("Call", null, {});
  showPresence(button, "offline");
  assert.equal(button.textContent, "Call");
  assert.equal(button.getAttribute("aria-disabled"), null);
  assert.equal(button.dataset.directcallPresence, "offline");
});
