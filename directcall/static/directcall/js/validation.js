// The parameter rules of initDirectCall and call(): the same as directcall/validation.py,
// checked against the same cases (tests/validation_cases.json). Lengths count code points
// after trimming surrounding whitespace.

export const LIMITS = Object.freeze({
  cuid: [5, 50],
  name: [3, 50],
  context_max: 280,
  url_max: 2048,
});

const CUID = /^[A-Za-z0-9_]{5,50}$/;
const NUMBER_NUMBER = /^[0-9]+(?:_[0-9]+)+$/;
const ACCOUNT_ID = /^[A-Za-z0-9_-]{1,64}$/;
const API_KEY = /^[A-Za-z0-9_.-]{1,128}$/;
const DEVICE_ID = /^[A-Za-z0-9_-]{8,64}$/;
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
// Lone surrogates (in a "u" regex, paired ones form one code point and do not match).
const LONE_SURROGATE = /\p{Cs}/u;
const unsafe = (s) => CONTROL.test(s) || LONE_SURROGATE.test(s);
// Python's str.strip() whitespace, so both sides trim the same characters.
const EDGE_SPACE = /^[\s\u001c-\u001f\u0085]+|[\s\u001c-\u001f\u0085]+$/g;

const isString = (v) => typeof v === "string";
const codePoints = (s) => [...s].length;
export const trim = (s) => s.replace(EDGE_SPACE, "");

export function isValidCuid(v) {
  return isString(v) && CUID.test(v) && !NUMBER_NUMBER.test(v);
}
export function isValidAccountId(v) {
  return isString(v) && ACCOUNT_ID.test(v);
}
export function isValidApiKey(v) {
  return isString(v) && API_KEY.test(v);
}
export function isValidDeviceId(v) {
  return isString(v) && DEVICE_ID.test(v);
}
export function isValidName(v) {
  if (!isString(v)) return false;
  const t = trim(v);
  const n = codePoints(t);
  return n >= LIMITS.name[0] && n <= LIMITS.name[1] && !unsafe(t);
}
export function isValidContext(v) {
  if (!isString(v)) return false;
  const t = trim(v);
  const n = codePoints(t);
  return n >= 1 && n <= LIMITS.context_max && !unsafe(t);
}

/** An absolute http(s) URL with a host, at most 2048 characters, no surrounding spaces. */
export function isValidUrl(v) {
  if (!isString(v) || v.length > LIMITS.url_max || v !== v.trim() || /\s/.test(v)) return false;
  if (unsafe(v)) return false;
  if (!/^https?:\/\/[^/?#]/i.test(v)) return false;
  let url;
  try {
    url = new URL(v);
  } catch {
    return false;
  }
  return (url.protocol === "http:" || url.protocol === "https:") && url.hostname !== "";
}

/** The page's URL (the base of relative URLs), or undefined outside a browser. */
export function pageUrl() {
  if (typeof document !== "undefined" && document.baseURI) return document.baseURI;
  if (typeof location !== "undefined") return location.href;
  return undefined;
}

/**
 * `v` resolved against `base` (the page, as the browser does for `<img src>`) when it is an
 * http(s) URL after resolving, else null. Refused before resolving: what isValidUrl refuses
 * in any URL (surrounding or inner whitespace, control characters, lone surrogates, length).
 */
export function resolveUrl(v, base = pageUrl()) {
  if (!isString(v) || v === "" || v.length > LIMITS.url_max || /\s/.test(v) || unsafe(v)) return null;
  let url;
  try {
    url = new URL(v, base);
  } catch {
    return null;
  }
  return isValidUrl(url.href) ? url.href : null;
}

export const isBlank = (v) => v === undefined || v === null || (isString(v) && trim(v) === "");
