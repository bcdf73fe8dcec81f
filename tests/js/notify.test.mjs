// A ringing call's browser notification (notify.js): shown only when every tab of the device is
// hidden — the tabs tell each other over a BroadcastChannel — and by one hidden tab (a Web Lock).
import { afterEach, test } from "node:test";
import assert from "node:assert/strict";

import { flush } from "./fakes.mjs";

/** BroadcastChannel between the "tabs" of this process: delivered a task later, never to the sender. */
class FakeBroadcastChannel {
  static all = [];
  constructor(name) {
    this.name = name;
    this.onmessage = null;
    FakeBroadcastChannel.all.push(this);
  }
  postMessage(data) {
    const copy = structuredClone(data);
    for (const other of FakeBroadcastChannel.all) {
      if (other !== this && other.name === this.name) setImmediate(() => other.onmessage && other.onmessage({ data: copy }));
    }
  }
  close() {
    FakeBroadcastChannel.all = FakeBroadcastChannel.all.filter((c) => c !== this);
  }
}

/** Web Locks with `ifAvailable`, enough for one notification per device. */
class FakeLocks {
  held = new Set();
  async request(name, options, callback) {
    if (this.held.has(name)) return callback(null);
    this.held.add(name);
    try {
      return await callback({ name });
    } finally {
      this.held.delete(name);
    }
  }
}

const notes = [];
class FakeNotification {
  static permission = "granted";
  constructor(title, options) {
    this.title = title;
    this.options = options;
    this.closed = false;
    notes.push(this);
  }
  close() {
    this.closed = true;
  }
}

const doc = new EventTarget();
doc.hidden = true;
for (const [name, value] of Object.entries({
  BroadcastChannel: FakeBroadcastChannel,
  Notification: FakeNotification,
  document: doc,
  navigator: { locks: new FakeLocks() },
  window: { focus() {} },
})) {
  Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
}

// Two tabs of one browser: the module loaded twice (two module instances, like two pages).
const tab1 = await import("../../directcall/static/directcall/js/notify.js");
const tab2 = await import("../../directcall/static/directcall/js/notify.js?tab=2");
const { CHANNEL_NAME, VISIBLE_WAIT_MS } = tab1;

/** A ringing incoming call, as notify.js sees one. */
class FakeCall extends EventTarget {
  constructor(id) {
    super();
    this.id = id;
    this.peer = { cuid: "tutor_jane", name: "Jane" };
    this.context = "Homework";
    this.image = null;
    this.isOver = false;
    this.notification = null;
  }
  end() {
    this.isOver = true;
    if (this.notification) this.notification.close();
    this.dispatchEvent(new Event("end"));
  }
}

/** Another tab, played by the test: its channel and what it heard. */
function otherTab({ visibleFor = [] } = {}) {
  const channel = new FakeBroadcastChannel(CHANNEL_NAME);
  const heard = [];
  channel.onmessage = ({ data }) => {
    heard.push(data);
    if (data.type === "visible?" && visibleFor.includes(data.callId)) channel.postMessage({ type: "shown", callId: data.callId });
  };
  return { channel, heard };
}

const calls = [];
function ringing(id) {
  const call = new FakeCall(id);
  calls.push(call);
  return call;
}

const others = [];
afterEach(() => {
  for (const call of calls.splice(0)) if (!call.isOver) call.end();
  for (const other of others.splice(0)) other.channel.close();
  notes.length = 0;
  doc.hidden = true;
});

async function until(predicate, what, ms = 3000) {
  for (const started = Date.now(); Date.now() - started < ms; ) {
    if (predicate()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`timed out waiting for ${what}`);
}

test("a hidden tab with no other tab showing the call shows one notification, after asking", async () => {
  const other = otherTab();
  others.push(other);
  const call = ringing("call-1");
  const started = Date.now();
  await tab1.notifyIncoming(call, null);
  await until(() => call.notified !== null, "the decision");
  assert.equal(call.notified, true);
  assert.ok(Date.now() - started >= VISIBLE_WAIT_MS - 20);
  assert.deepEqual(other.heard, [{ type: "visible?", callId: "call-1" }]);
  assert.deepEqual(
    notes.map((n) => [n.title, n.options.tag, n.options.body]),
    [["Incoming call", "directcall-call-1", "Jane: Homework"]],
  );
  call.end();
  assert.equal(notes[0].closed, true);
});

test("a hidden tab shows nothing while another tab shows the call visibly", async () => {
  others.push(otherTab({ visibleFor: ["call-2"] }));
  const call = ringing("call-2");
  await tab1.notifyIncoming(call, null);
  assert.equal(call.notified, false);
  assert.deepEqual(notes, []);
});

test("a visible tab says it shows the call, when it rings and when a hidden tab asks", async () => {
  const other = otherTab();
  others.push(other);
  doc.hidden = false;
  const call = ringing("call-3");
  await tab1.notifyIncoming(call, null);
  assert.equal(call.notified, false);
  await flush();
  assert.deepEqual(other.heard, [{ type: "shown", callId: "call-3" }]);
  other.channel.postMessage({ type: "visible?", callId: "call-3" });
  other.channel.postMessage({ type: "visible?", callId: "call-unknown" });
  await flush();
  await flush();
  assert.deepEqual(other.heard.slice(1), [{ type: "shown", callId: "call-3" }]);
  // Once the call ends here it is no longer shown.
  call.end();
  other.channel.postMessage({ type: "visible?", callId: "call-3" });
  await flush();
  await flush();
  assert.equal(other.heard.length, 2);
  assert.deepEqual(notes, []);
});

test("a tab that shows the call later closes the notification; a hidden tab turning visible says so", async () => {
  const other = otherTab();
  others.push(other);
  const call = ringing("call-4");
  await tab1.notifyIncoming(call, null);
  await until(() => call.notified === true, "the notification");
  other.channel.postMessage({ type: "shown", callId: "call-4" });
  await until(() => notes[0].closed, "the notification closed");
  assert.equal(call.notification, null);
  // This tab becomes visible while the call rings: it tells the others.
  doc.hidden = false;
  doc.dispatchEvent(new Event("visibilitychange"));
  await flush();
  assert.deepEqual(other.heard.at(-1), { type: "shown", callId: "call-4" });
});

test("all tabs hidden: one of them shows the notification", async () => {
  const first = ringing("call-5");
  const second = ringing("call-5");
  await Promise.all([tab1.notifyIncoming(first, null), tab2.notifyIncoming(second, null)]);
  await until(() => first.notified !== null && second.notified !== null, "both decisions");
  assert.deepEqual([first.notified, second.notified].sort(), [false, true]);
  assert.equal(notes.length, 1);
  assert.equal(notes[0].options.tag, "directcall-call-5");
});

test("a call that ends while the hidden tab waits gets no notification", async () => {
  const call = ringing("call-6");
  const deciding = tab1.notifyIncoming(call, null);
  call.end();
  await deciding;
  assert.equal(call.notified, false);
  assert.deepEqual(notes, []);
});
