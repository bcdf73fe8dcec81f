// CleverTap events: each is reported by one tab of a device, however many tabs ring.
import { test } from "node:test";
import assert from "node:assert/strict";

import { oncePerDevice, REPORT_HOLD_MS, REPORTED_ITEM, trackCall } from "../../directcall/static/directcall/js/clevertap.js";
import { MemoryStorage } from "./fakes.mjs";

/** Web Locks as a browser grants them: one holder per name at a time, in request order;
 * `ifAvailable` gets null while the lock is held. `released` counts the locks let go. */
class FakeLocks {
  constructor() {
    this.tails = new Map();
    this.held = new Set();
    this.released = 0;
  }
  request(name, options, callback) {
    if (typeof options === "function") [options, callback] = [{}, options];
    if (options.ifAvailable && this.held.has(name)) return Promise.resolve(callback(null));
    const before = this.tails.get(name) || Promise.resolve();
    this.held.add(name);
    const held = before
      .then(() => callback({ name }))
      .finally(() => {
        this.held.delete(name);
        this.released += 1;
      });
    this.tails.set(name, held.catch(() => {}));
    return held;
  }
}

function withGlobals(values, body) {
  const saved = {};
  for (const [name, value] of Object.entries(values)) {
    saved[name] = Object.getOwnPropertyDescriptor(globalThis, name);
    Object.defineProperty(globalThis, name, { value, configurable: true, writable: true });
  }
  return Promise.resolve(body()).finally(() => {
    for (const [name, descriptor] of Object.entries(saved)) {
      if (descriptor) Object.defineProperty(globalThis, name, descriptor);
      else delete globalThis[name];
    }
  });
}

const recorder = () => {
  const pushed = [];
  return { pushed, event: { push: (name, props) => pushed.push([name, props]) } };
};

test("three tabs ringing for one call report DCIncoming once; the next call is reported again", () =>
  withGlobals({ localStorage: new MemoryStorage(), navigator: { locks: new FakeLocks() } }, async () => {
    const ct = recorder();
    const config = { clevertap: ct, cuid: "student_sam", accountId: "acc" };
    const settle = () => new Promise((resolve) => setTimeout(resolve, 0));
    for (let tab = 0; tab < 3; tab += 1) trackCall(config, null, "DCIncoming", { id: "call-1", context: "Homework" });
    await settle();
    assert.deepEqual(ct.pushed.map((e) => [e[0], e[1].call_id, e[1].context]), [["DCIncoming", "call-1", "Homework"]]);
    trackCall(config, null, "DCIncoming", { id: "call-2", context: "x" });
    trackCall(config, null, "DCIncoming", { id: "call-2", context: "x" });
    await settle();
    assert.deepEqual(ct.pushed.map((e) => e[1].call_id), ["call-1", "call-2"]);
    // Each event once: the end of a call cancelled while two tabs rang, then another call.
    trackCall(config, null, "DCEnd", { id: "call-2", context: "x" }, { call_status: "cancelled" });
    trackCall(config, null, "DCEnd", { id: "call-2", context: "x" }, { call_status: "cancelled" });
    trackCall(config, null, "DCOutgoing", { id: "call-3", context: "x" });
    await settle();
    assert.deepEqual(ct.pushed.slice(2).map((e) => [e[0], e[1].call_id]), [["DCEnd", "call-2"], ["DCOutgoing", "call-3"]]);
  }));

test("the list of reported calls stays short", () =>
  withGlobals({ localStorage: new MemoryStorage(), navigator: { locks: new FakeLocks() } }, async () => {
    for (let n = 0; n < 80; n += 1) await oncePerDevice(`call-${n}`, () => {});
    const kept = JSON.parse(localStorage.getItem(REPORTED_ITEM));
    assert.equal(kept.length, 50);
    assert.equal(kept.at(-1), "call-79");
  }));

test("without Web Locks or storage every tab reports (nothing is lost)", () =>
  withGlobals({ localStorage: undefined, navigator: {} }, async () => {
    let reports = 0;
    await oncePerDevice("call-1", () => (reports += 1));
    await oncePerDevice("call-1", () => (reports += 1));
    assert.equal(reports, 2);
  }));

test("a tab that finds the event's lock held leaves the event to its holder, even if localStorage does not show it yet", () =>
  withGlobals({ localStorage: new MemoryStorage(), navigator: { locks: new FakeLocks() } }, async () => {
    // Two tabs' processes: each has its own view of localStorage, and the first tab's write
    // has not reached the second one's yet.
    const locks = globalThis.navigator.locks;
    const mine = new MemoryStorage();
    const theirs = new MemoryStorage();
    let reports = 0;
    globalThis.localStorage = mine;
    await oncePerDevice("student_sam:DCEnd:call-1", () => (reports += 1));
    globalThis.localStorage = theirs;
    await oncePerDevice("student_sam:DCEnd:call-1", () => (reports += 1));
    assert.equal(reports, 1);
    assert.equal(theirs.getItem(REPORTED_ITEM), null);
    assert.equal(locks.released, 0, `the reporting tab keeps the lock ${REPORT_HOLD_MS} ms`);
  }));
