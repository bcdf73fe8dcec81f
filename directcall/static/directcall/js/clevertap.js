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
