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

/** Push a Direct Call event `name` about `call` with the signed-in client's ids (if tracking). */
export function trackCall(config, session, name, call, extra = {}) {
  if (!config.clevertap) return;
  pushEvent(config.clevertap, name, {
    dc_account_id: session ? session.accountId : config.accountId,
    ct_account_id: config.ctAccountId,
    guid: config.ctId,
    call_id: call.id,
    cuid: config.cuid,
    epoch: Date.now(),
    context: call.context,
    ...extra,
  });
}
