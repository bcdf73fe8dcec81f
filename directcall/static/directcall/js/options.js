// The options of initDirectCall and call(): checked against the rules of validation.js and
// turned into what the client uses. Every refusal is a `{code, message}` error.

import { readCleverTap } from "./clevertap.js";
import { dcError, ERR } from "./errors.js";
import { isValidLanguage } from "./i18n.js";
import {
  isBlank,
  isValidAccountId,
  isValidApiKey,
  isValidContext,
  isValidCuid,
  isValidName,
  pageUrl,
  resolveUrl,
  trim,
} from "./validation.js";

const DEVICE_KEY = "directcall.deviceId";

function deviceId() {
  const make = () => {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  };
  try {
    let id = localStorage.getItem(DEVICE_KEY);
    if (!/^[A-Za-z0-9_-]{8,64}$/.test(id || "")) {
      id = make();
      localStorage.setItem(DEVICE_KEY, id);
    }
    return id;
  } catch {
    return make(); // storage blocked: this page is its own device
  }
}

function defaultServerUrl() {
  // The origin this module was served from; the npm builds have no module URL (npm/build.mjs
  // defines import.meta.url as undefined), so for them it is the page's origin.
  return new URL("/directcall/", import.meta.url || pageUrl()).href;
}

/** A folder option (`serverUrl`, `assetsUrl`) resolved against the page, ending in "/"; null if
 * it is not an http(s) URL once resolved. */
function folderUrl(value) {
  const href = resolveUrl(value);
  if (!href) return null;
  const url = new URL(href);
  if (!url.pathname.endsWith("/")) url.pathname += "/";
  return url.href;
}

/** The options of initDirectCall as the client's config; throws `{code, message}`. */
export function readInitOptions(options) {
  if (!options || typeof options !== "object") {
    throw dcError(ERR.MISSING_INITPARAMETERS, "initDirectCall needs an options object.");
  }
  // Two ways to sign in: the original SDK's accountId + apikey + cuid, or a session the
  // host's server mints for its logged-in user (`sessionUrl`; no key in the page).
  const sessionMode = !isBlank(options.sessionUrl);
  const missing = sessionMode
    ? []
    : ["accountId", "apikey", "cuid"].filter((key) => isBlank(options[key]));
  if (!sessionMode && !("clevertap" in options)) missing.push("clevertap");
  if (missing.length) {
    throw dcError(ERR.MISSING_INITPARAMETERS, `Missing parameters: ${missing.join(", ")}.`);
  }
  const invalid = [];
  // URLs may be relative to the page; each must be http(s) once resolved.
  let sessionUrl = null;
  if (!sessionMode) {
    if (!isValidAccountId(options.accountId)) invalid.push("accountId");
    if (!isValidApiKey(options.apikey)) invalid.push("apikey");
    if (!isValidCuid(options.cuid)) invalid.push("cuid");
    // Verified accounts: a user token from the host's backend, or a function giving one (called
    // at every sign-in, so that an expired token is replaced). docs/accounts.md#user-tokens
    const token = options.userToken;
    if (!isBlank(token) && !["string", "function"].includes(typeof token)) invalid.push("userToken");
  } else {
    sessionUrl = resolveUrl(options.sessionUrl);
    if (!sessionUrl) invalid.push("sessionUrl");
    if (!isBlank(options.csrfToken) && typeof options.csrfToken !== "string") invalid.push("csrfToken");
  }
  if (!isBlank(options.name) && !isValidName(options.name)) invalid.push("name");
  const ringtone = isBlank(options.ringtone) ? null : resolveUrl(options.ringtone);
  if (!isBlank(options.ringtone) && !ringtone) invalid.push("ringtone");
  const ct = options.clevertap;
  if (ct !== null && ct !== undefined && ct !== false && typeof ct !== "object") invalid.push("clevertap");
  const serverUrl = folderUrl(isBlank(options.serverUrl) ? defaultServerUrl() : options.serverUrl);
  if (!serverUrl) invalid.push("serverUrl");
  let assetsUrl = null;
  if (!isBlank(options.assetsUrl)) {
    assetsUrl = folderUrl(options.assetsUrl);
    if (!assetsUrl) invalid.push("assetsUrl");
  }
  // The call screens' language (a BCP 47 tag); without it, the page's <html lang>.
  if (!isBlank(options.language) && !isValidLanguage(options.language)) invalid.push("language");
  if (invalid.length) {
    throw dcError(ERR.INVALID_INITPARAMETERS, `Invalid parameters: ${invalid.join(", ")}.`);
  }
  let ctAccountId = null;
  let ctId = null;
  if (ct) {
    ({ accountId: ctAccountId, ctId } = readCleverTap(ct));
    if (!ctAccountId) throw dcError(ERR.MISSING_CT_ACCOUNTID);
    if (!ctId) throw dcError(ERR.MISSING_CT_ID);
  }
  return {
    serverUrl,
    sessionUrl,
    csrfToken: sessionMode && !isBlank(options.csrfToken) ? options.csrfToken : null,
    accountId: sessionMode ? null : options.accountId,
    apikey: sessionMode ? null : options.apikey,
    cuid: sessionMode ? null : options.cuid,
    userToken: sessionMode || isBlank(options.userToken) ? null : options.userToken,
    name: isBlank(options.name) ? null : trim(options.name),
    ringtone,
    assetsUrl,
    clevertap: ct || null,
    ctAccountId,
    ctId,
    deviceId: deviceId(),
    showScreens: options.showScreens !== false,
    language: isBlank(options.language) ? null : options.language,
  };
}

/**
 * The arguments of `call(receiver, context, callOptions)` as `{context, receiverImage,
 * initiatorImage}` (images absolute, resolved against the page; null when absent); throws
 * ERR_INVALID_CALL_PARAMETERS.
 */
export function readCallOptions(receiver, context, callOptions, ownCuid) {
  const options = callOptions === undefined || callOptions === null ? {} : callOptions;
  const problems = [];
  if (!isValidCuid(receiver)) problems.push("receiver");
  else if (receiver === ownCuid) problems.push("receiver (yourself)");
  if (!isValidContext(context)) problems.push("context");
  if (typeof options !== "object" || Array.isArray(options)) problems.push("callOptions");
  const images = {};
  if (typeof options === "object" && !Array.isArray(options)) {
    for (const key of ["receiver_image", "initiator_image"]) {
      images[key] = isBlank(options[key]) ? null : resolveUrl(options[key]);
      if (!isBlank(options[key]) && !images[key]) problems.push(key);
    }
  }
  if (problems.length) {
    throw dcError(ERR.INVALID_CALL_PARAMETERS, `Invalid call parameters: ${problems.join(", ")}.`);
  }
  return {
    context: trim(context),
    receiverImage: images.receiver_image,
    initiatorImage: images.initiator_image,
  };
}
