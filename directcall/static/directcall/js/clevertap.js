// Reading a CleverTap Web SDK instance and pushing Direct Call events through it.

/** The CleverTap account id and CleverTap id of an instance (either may be missing). */
export function readCleverTap(clevertap) {
  let accountId;
  let ctId;
  try {
    accountId = typeof clevertap.getAccountID === "function" ? clevertap.getAccountID() : undefined;
  } catch {
    accountId = undefined;
  }
  if (!accountId && Array.isArray(clevertap.account) && clevertap.account[0]) {
    accountId = clevertap.account[0].id;
  }
  try {
    ctId = typeof clevertap.getCleverTapID === "function" ? clevertap.getCleverTapID() : undefined;
  } catch {
    ctId = undefined;
  }
  return {
    accountId: typeof accountId === "string" && accountId ? accountId : null,
    ctId: typeof ctId === "string" && ctId ? ctId : null,
  };
}

/** `clevertap.event.push(name, props)`, never letting the analytics SDK break a call. */
export function pushEvent(clevertap, name, props) {
  if (!clevertap || !clevertap.event || typeof clevertap.event.push !== "function") return;
  try {
    clevertap.event.push(name, props);
  } catch {
    /* analytics must not break calls */
  }
}

// Every tab of a device rings for an incoming call and ends with it when it is cancelled or
// missed; one of them reports each event. The first tab to get here takes the event's Web
// Lock (exclusive across the tabs of an origin), reports, notes the event in localStorage
// and keeps the lock a while: a tab that finds the lock taken leaves the event to its
// holder. Taking turns on the lock and reading localStorage inside it is not enough:
// Chromium hands a localStorage write to the other tabs' processes later than it hands
// them the lock, so the second tab could still read the list without the event (seen as
// two DCEnd pushed under load). A tab that comes later than the hold finds the event in
// localStorage. Without Web Locks (or storage) each tab reports.
export const REPORTED_ITEM = "directcall.reported";
const REPORTED_KEEP = 50;
export const REPORT_HOLD_MS = 5000;

function firstReport(key) {
  try {
    const seen = JSON.parse(localStorage.getItem(REPORTED_ITEM) || "[]");
    const list = Array.isArray(seen) ? seen : [];
    if (list.includes(key)) return false;
    localStorage.setItem(REPORTED_ITEM, JSON.stringify([...list, key].slice(-REPORTED_KEEP)));
  } catch {
    /* no storage: this tab reports */
  }
  return true;
}

/** Run `report` in the first tab of this device to get here with `key`, in no other.
 * Resolves once this tab has reported or left it to another. */
export function oncePerDevice(key, report) {
  let ran = false;
  const run = () => {
    if (ran) return;
    ran = true;
    if (firstReport(key)) report();
  };
  const locks = globalThis.navigator && globalThis.navigator.locks;
  if (!locks || typeof locks.request !== "function") return Promise.resolve(run());
  return new Promise((resolve) => {
    const held = (lock) => {
      if (!lock) return resolve(); // another tab holds it: that tab reports
      run();
      resolve();
      return new Promise((release) => {
        const timer = setTimeout(release, REPORT_HOLD_MS);
        if (timer && typeof timer.unref === "function") timer.unref(); // node's tests
      });
    };
    locks.request(`directcall.report.${key}`, { ifAvailable: true }, held).catch(() => {
      run(); // no lock to be had (an opaque origin): report rather than lose the event
      resolve();
    });
  });
}

/** Push a Direct Call event `name` about `call` with the signed-in client's ids (if tracking),
 * once per device however many tabs see it. */
export function trackCall(config, session, name, call, extra = {}) {
  if (!config.clevertap) return;
  const push = () => pushEvent(config.clevertap, name, {
    dc_account_id: session ? session.accountId : config.accountId,
    ct_account_id: config.ctAccountId,
    guid: config.ctId,
    call_id: call.id,
    cuid: config.cuid,
    epoch: Date.now(),
    context: call.context,
    ...extra,
  });
  if (call.id) oncePerDevice(`${config.cuid}:${name}:${call.id}`, push);
  else push();
}
