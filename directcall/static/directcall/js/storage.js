// What the SDK keeps in the browser between page loads (docs/js-api.md, docs/protocol.md):
//
//   localStorage   directcall.deviceId    this browser's device id (options.js)
//                  directcall.deviceKey   the proof the server gave this device when its first
//                                         tab signed in; every tab presents it in `auth`
//   sessionStorage directcall.call        the call this tab holds: {cuid, call_id, call_key,
//                                         role, answered_at, peer, context, left?}, so that a
//                                         reload or a same-tab navigation can take the call
//                                         back; `left` (ms) is set when the page holding it
//                                         goes away (pagehide), so that a copy of the tab
//                                         made while that page is alive is told apart
//
// Storage may be missing (outside a browser) or blocked (privacy settings): then nothing is
// kept and this page is its own device, whose calls end with it.

export const DEVICE_KEY_ITEM = "directcall.deviceKey";
export const CALL_ITEM = "directcall.call";

const KEY = /^[A-Za-z0-9_-]{16,128}$/;

function storage(kind) {
  try {
    return globalThis[kind] || null;
  } catch {
    return null; // a sandboxed frame throws on access
  }
}

function read(kind, item) {
  try {
    const store = storage(kind);
    return store ? store.getItem(item) : null;
  } catch {
    return null;
  }
}

function write(kind, item, value) {
  try {
    const store = storage(kind);
    if (!store) return;
    if (value === null) store.removeItem(item);
    else store.setItem(item, value);
  } catch {
    /* quota or blocked: this page simply keeps nothing */
  }
}

/** The device key of this browser, or null. */
export function readDeviceKey() {
  const key = read("localStorage", DEVICE_KEY_ITEM);
  return key && KEY.test(key) ? key : null;
}

/** Keep the device key the server issued (`ready.device_key`), for every tab. */
export function writeDeviceKey(key) {
  if (typeof key === "string" && KEY.test(key)) write("localStorage", DEVICE_KEY_ITEM, key);
}

const isText = (v) => typeof v === "string";

/** The call this tab holds (see the top of this file), or null when there is none or it is unreadable. */
export function readCallRecord() {
  let record;
  try {
    record = JSON.parse(read("sessionStorage", CALL_ITEM) || "null");
  } catch {
    return null;
  }
  if (!record || typeof record !== "object") return null;
  const { cuid, call_id: callId, call_key: callKey, role, peer } = record;
  if (!isText(cuid) || !isText(callId) || !isText(callKey) || !KEY.test(callKey)) return null;
  if (role !== "caller" && role !== "callee") return null;
  if (!peer || typeof peer !== "object" || !isText(peer.cuid)) return null;
  return record;
}

/** Keep the call this tab holds. */
export function writeCallRecord(record) {
  write("sessionStorage", CALL_ITEM, JSON.stringify(record));
}

/** Note on the call record when the page holding it went away (`left`, ms), or that it is back (null). */
export function markCallRecordLeft(left) {
  const record = readCallRecord();
  if (!record) return;
  if (left === null) delete record.left;
  else record.left = left;
  writeCallRecord(record);
}

/** Forget the call this tab held (only `callId`'s, when given). */
export function clearCallRecord(callId = null) {
  if (callId !== null) {
    const record = readCallRecord();
    if (record && record.call_id !== callId) return;
  }
  write("sessionStorage", CALL_ITEM, null);
}

/** Resolves true once localStorage holds a device key other than `presented`, false after `ms`. */
export function newDeviceKey(presented, ms) {
  return new Promise((resolve) => {
    const started = Date.now();
    const check = () => {
      const key = readDeviceKey();
      if (key && key !== presented) return resolve(true);
      if (Date.now() - started >= ms) return resolve(false);
      setTimeout(check, 100);
    };
    check();
  });
}
