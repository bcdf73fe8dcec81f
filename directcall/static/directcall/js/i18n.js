// The call screens' language and texts. The server translates (Django's i18n, catalogs
// under directcall/locale/): the screens' markup comes in one language, with the texts the
// SDK writes as JSON (directcall/screen_strings.py). Here: which language the page wants,
// whether a markup is in it, and reading a text with its placeholders filled in.

// BCP 47 as the SDK accepts it: "ar", "es-MX", "zh-Hant-TW".
const LANGUAGE = /^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$/;

// English, for a markup that carries no strings (a host's template overridden before
// they existed): the same keys as directcall/screen_strings.py.
export const ENGLISH = Object.freeze({
  calling: "Calling…",
  ringing: "Ringing…",
  connecting: "Connecting…",
  reconnecting: "Reconnecting…",
  incoming: "Incoming call",
  notification: "Incoming call",
  mute: "Mute",
  unmute: "Unmute",
  enableAudio: "Tap to enable audio",
  answerLabel: "Answer the call from %(name)s",
  declineLabel: "Decline the call from %(name)s",
  cancelLabel: "Cancel the call to %(name)s",
  hangupLabel: "Hang up the call with %(name)s",
  muteLabel: "Mute the microphone",
  unmuteLabel: "Unmute the microphone",
  announceCalling: "Calling %(name)s",
  announceIncoming: "Incoming call from %(name)s",
  announceConnected: "Call connected with %(name)s",
  announceMuted: "Microphone muted",
  announceUnmuted: "Microphone on",
  announceReconnected: "Connection restored",
  announceEnded: "Call ended",
  declined: "Declined",
  busy: "Busy",
  noAnswer: "No answer",
  callFailed: "Call failed",
  close: "Close",
});

/** Whether `value` is a language tag the SDK accepts (the `language` option). */
export function isValidLanguage(value) {
  return typeof value === "string" && value.length <= 35 && LANGUAGE.test(value);
}

/** The language the screens should speak: the `language` option, else the page's `<html lang>`, else null. */
export function wantedLanguage(option, doc = typeof document !== "undefined" ? document : null) {
  if (isValidLanguage(option)) return option;
  const pageLang = doc && doc.documentElement ? doc.documentElement.lang : "";
  return isValidLanguage(pageLang) ? pageLang : null;
}

/** Whether a markup rendered in `have` serves a page that wants `want` (same primary language). */
export function speaks(have, want) {
  if (!want) return true;
  if (!have) return false;
  return have.split("-")[0].toLowerCase() === want.split("-")[0].toLowerCase();
}

/** The language a screens markup was rendered in (its overlay's `lang`), or "". */
export function markupLanguage(markup) {
  const match = /class="dc-overlay"[^>]*\slang="([^"]*)"/.exec(markup) || /\slang="([^"]*)"/.exec(markup);
  return match ? match[1] : "";
}

/** Fill `%(name)s` placeholders from `params` (values as text). */
export function format(text, params = {}) {
  return String(text).replace(/%\((\w+)\)s/g, (whole, key) => (key in params ? String(params[key]) : whole));
}

/** The strings a screens root carries (`<script type="application/json" data-directcall-strings>`), or {}. */
export function readStrings(root) {
  const script = root.querySelector("script[data-directcall-strings]");
  if (!script) return {};
  try {
    const value = JSON.parse(script.textContent);
    return value && typeof value === "object" && !Array.isArray(value) ? value : {};
  } catch {
    return {};
  }
}
