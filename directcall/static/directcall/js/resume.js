// Taking a call back after a reload or a navigation: the call record this tab keeps in
// sessionStorage, what the `auth` frame asks about, and the answered call rebuilt from it.
//
// A browser copies sessionStorage into a duplicated tab ("Duplicate tab", window.open()
// keeping the opener), call record and key included, while the page that holds the call
// lives on: such a copy must not take the call over. So a new page presents the key only
// when the record says its page went away (`left`, set on pagehide) a moment ago, and the
// holding page keeps a Web Lock named after the call that a new page must be able to take.

import { Call } from "./call.js";
import { clearCallRecord, readCallRecord, writeCallRecord } from "./storage.js";
import { isValidUrl } from "./validation.js";

// How recently the page before must have left (pagehide) for a new page of the tab to
// present the call it held: a reload or a link takes seconds; the server's page grace is less.
export const LEFT_RECENTLY_MS = 60_000;
// How long a new page waits for the call's Web Lock, which the page it replaces held until
// it was unloaded (a live holder, i.e. this page is a copy of its tab, keeps it for good).
export const LOCK_WAIT_MS = 2_000;

const held = new Map(); // call id -> release() of this page's Web Lock on the call
const following = new WeakSet(); // the calls whose end lets their lock go

const lockName = (callId) => `directcall.call.${callId}`;

/**
 * Take the call's Web Lock and keep it until releaseCallLock(callId); waits up to `waitMs`
 * (0: only if free now). Resolves false when another page holds it; true when taken or
 * when the browser has no Web Locks (then the `left` mark is the only guard).
 */
export function holdCallLock(callId, waitMs = 0) {
  const locks = globalThis.navigator && globalThis.navigator.locks;
  if (!locks || typeof locks.request !== "function" || held.has(callId)) return Promise.resolve(true);
  let release;
  const kept = new Promise((resolve) => (release = resolve));
  held.set(callId, release);
  const options =
    waitMs > 0 && typeof AbortSignal !== "undefined" && typeof AbortSignal.timeout === "function"
      ? { signal: AbortSignal.timeout(waitMs) }
      : { ifAvailable: true };
  return new Promise((resolve) => {
    const given = (lock) => {
      resolve(!!lock);
      if (!lock) held.delete(callId);
      return lock ? kept : undefined;
    };
    try {
      locks.request(lockName(callId), options, given).catch((error) => {
        held.delete(callId);
        resolve(!(error && error.name === "AbortError")); // waited in vain: someone holds it
      });
    } catch {
      held.delete(callId);
      resolve(true); // Web Locks refused here (an opaque origin): no second guard
    }
  });
}

/** Let go of the call's Web Lock, if this page holds it. */
export function releaseCallLock(callId) {
  const release = held.get(callId);
  held.delete(callId);
  if (release) release();
}

function forget(record) {
  clearCallRecord();
  if (record) releaseCallLock(record.call_id);
}

const leftRecently = (record) => {
  const left = Number(record.left);
  return left > 0 && Math.abs(Date.now() - left) <= LEFT_RECENTLY_MS;
};

/**
 * Before the first sign-in: keep the call record only if it is this tab's to take back —
 * its page left a moment ago and no live page holds the call's lock (a copy of a live tab
 * has no `left` mark, or finds the lock held). Otherwise forget it. Resolves whether kept.
 */
export async function claimKeptCall() {
  const record = readCallRecord();
  if (!record) return false;
  if (!leftRecently(record) || !(await holdCallLock(record.call_id, LOCK_WAIT_MS))) {
    forget(record);
    return false;
  }
  return true;
}

/**
 * The calls to ask about: the current one when reconnecting, with its key so that this
 * connection is bound to it; on the first sign-in, the one this tab held before a reload.
 */
export function resumeList(call, signedIn, cuid) {
  if (call && call.id) return [call.callKey ? { call_id: call.id, call_key: call.callKey } : call.id];
  if (signedIn) return [];
  // Only an answered call can be taken back by a new page: one that still rang went with
  // the page that placed it (its offer and its call() promise are gone; the server cancels it).
  const record = readCallRecord();
  if (record && record.cuid === cuid && record.answered_at && leftRecently(record)) {
    return [{ call_id: record.call_id, call_key: record.call_key }];
  }
  return [];
}

/**
 * The Call fields of the call this tab held before the page reloaded or navigated, if the
 * server has handed it back (listed answered in `ready.calls`); else null (record cleared).
 */
export function resumedCallFields(ready, cuid) {
  const record = readCallRecord();
  if (!record) return null;
  const summary =
    record.cuid === cuid &&
    (ready.calls || []).find((c) => c && c.call_id === record.call_id && c.status === "answered");
  if (!summary) {
    forget(record);
    return null;
  }
  const peer = summary.peer && typeof summary.peer.cuid === "string" ? summary.peer : record.peer;
  const image = [peer.image, record.peer.image].find((url) => isValidUrl(url)) || null;
  const answeredAt = Number(summary.answered_at || record.answered_at) * 1000 || Date.now();
  return {
    role: summary.role === "caller" || summary.role === "callee" ? summary.role : record.role,
    id: summary.call_id,
    status: "answered",
    answeredAt,
    peer: { cuid: peer.cuid, name: peer.name || peer.cuid },
    context: String(summary.context ?? record.context ?? ""),
    image,
    callKey: record.call_key,
  };
}

/** The Call rebuilt from resumedCallFields (or null), its call() promise awaited by no page. */
export function resumedCall(ready, cuid, env) {
  const fields = resumedCallFields(ready, cuid);
  if (!fields) return null;
  const call = new Call(fields, env);
  call.result.catch(() => {}); // the page that awaited call() is gone
  return call;
}

/**
 * Keep the call this tab holds (for `cuid`) in sessionStorage, for a reload or a navigation
 * (without a `left` mark: this page holds it now), and hold its Web Lock until it ends.
 */
export function saveCallRecord(cuid, call) {
  if (!call.id || !call.callKey || call.isOver) return;
  if (!following.has(call)) {
    following.add(call);
    const id = call.id;
    holdCallLock(id);
    call.addEventListener("end", () => releaseCallLock(id), { once: true });
  }
  writeCallRecord({
    cuid,
    call_id: call.id,
    call_key: call.callKey,
    role: call.role,
    answered_at: call.answeredAt ? call.answeredAt / 1000 : null,
    peer: { cuid: call.peer.cuid, name: call.peer.name, image: call.image },
    context: call.context,
  });
}
