// Error codes of the Direct Call SDK contract (see docs/errors.md).

export const ERR = Object.freeze({
  MISSING_INITPARAMETERS: "ERR_MISSING_INITPARAMETERS",
  INVALID_INITPARAMETERS: "ERR_INVALID_INITPARAMETERS",
  MISSING_CT_ACCOUNTID: "ERR_MISSING_CT_ACCOUNTID",
  MISSING_CT_ID: "ERR_MISSING_CT_ID",
  INVALID_CREDENTIALS: "ERR_INVALID_CREDENTIALS",
  ALREADY_SIGNEDIN: "ERR_ALREADY_SIGNEDIN",
  MIC_UNAVAILABLE: "ERR_MIC_UNAVAILABLE",
  OUTGOING_CALL_IN_PROGRESS: "ERR_OUTGOING_CALL_IN_PROGRESS",
  INVALID_CALL_PARAMETERS: "ERR_INVALID_CALL_PARAMETERS",
  INTERNET_LOST: "ERR_INTERNET_LOST",
  RECEIVER_OFFLINE: 404,
  ORIGIN_NOT_ALLOWED: "ERR_ORIGIN_NOT_ALLOWED",
  SESSION_REVOKED: "ERR_SESSION_REVOKED",
  INVALID_TOKEN: "ERR_INVALID_TOKEN",
  NOT_INITIALIZED: "ERR_NOT_INITIALIZED",
  MEDIA_FAILED: "ERR_MEDIA_FAILED",
  INTERNAL: "ERR_INTERNAL",
  INVALID_PARAMETERS: "ERR_INVALID_PARAMETERS",
  UNKNOWN_CALL: "ERR_UNKNOWN_CALL",
  FEEDBACK_DISABLED: "ERR_FEEDBACK_DISABLED",
  DEVICE_UNAVAILABLE: "ERR_DEVICE_UNAVAILABLE",
  NOT_SUPPORTED: "ERR_NOT_SUPPORTED",
  RATE_LIMITED: "ERR_RATE_LIMITED",
  SERVICE_UNAVAILABLE: "ERR_SERVICE_UNAVAILABLE",
  INVALID_USER_TOKEN: "ERR_INVALID_USER_TOKEN",
  NOT_SIGNED_IN: "ERR_NOT_SIGNED_IN",
  CALL_NOT_ALLOWED: "ERR_CALL_NOT_ALLOWED",
  CALL_STATE: "ERR_CALL_STATE",
  WATCH_LIMIT: "ERR_WATCH_LIMIT",
});

const MESSAGES = {
  ERR_MISSING_INITPARAMETERS: "One or more mandatory initialization parameters are missing.",
  ERR_INVALID_INITPARAMETERS: "Initialization parameters are not valid.",
  ERR_MISSING_CT_ACCOUNTID: "Unable to find the CleverTap account id.",
  ERR_MISSING_CT_ID: "Unable to find the CleverTap id.",
  ERR_INVALID_CREDENTIALS: "The account id or API key is incorrect.",
  ERR_ALREADY_SIGNEDIN: "This cuid is currently connected elsewhere.",
  ERR_MIC_UNAVAILABLE: "Microphone permission denied.",
  ERR_OUTGOING_CALL_IN_PROGRESS: "A call is already in progress.",
  ERR_INVALID_CALL_PARAMETERS: "The call parameters are not valid.",
  ERR_INTERNET_LOST: "The call could not continue because the internet connection was lost.",
  404: "The receiver is offline.",
  ERR_ORIGIN_NOT_ALLOWED: "This origin is not allowed for this account.",
  ERR_SESSION_REVOKED: "This session was revoked; sign in again.",
  ERR_INVALID_TOKEN: "The session token is invalid or has expired.",
  ERR_NOT_INITIALIZED: "The client is logged out; call initDirectCall again.",
  ERR_MEDIA_FAILED: "The call's audio connection could not be set up.",
  ERR_INTERNAL: "The server could not handle this frame.",
  ERR_INVALID_PARAMETERS: "The request's parameters are not valid.",
  ERR_UNKNOWN_CALL: "No such call for this connection.",
  ERR_FEEDBACK_DISABLED: "This account does not collect call feedback.",
  ERR_DEVICE_UNAVAILABLE: "That microphone or speaker cannot be used.",
  ERR_NOT_SUPPORTED: "This browser cannot do that.",
  ERR_RATE_LIMITED: "Too many requests; try again later.",
  ERR_SERVICE_UNAVAILABLE: "The service is briefly unavailable; try again in a few seconds.",
  ERR_INVALID_USER_TOKEN: "The user token is missing, invalid or expired.",
  ERR_NOT_SIGNED_IN: "Sign in to the site to make and receive calls.",
  ERR_CALL_NOT_ALLOWED: "You may not call this person.",
  ERR_CALL_STATE: "The call is not in a state that allows this.",
  ERR_WATCH_LIMIT: "Too many people watched on one connection.",
};

// Close codes of the signaling socket that say why it closed (docs/protocol.md), as the
// error the SDK reports when no `error` frame said it first.
const CLOSE_CODES = {
  4001: "ERR_INVALID_TOKEN",
  4002: "ERR_ALREADY_SIGNEDIN",
  4010: "ERR_ORIGIN_NOT_ALLOWED",
  4011: "ERR_SESSION_REVOKED",
  4012: "ERR_RATE_LIMITED", // too many sign-ins (the SDK tries again with backoff)
  4029: "ERR_RATE_LIMITED", // too many sockets from this address (likewise)
};

/** The `{code, message}` a close code of the signaling socket stands for, or null. */
export function fromCloseCode(closeCode) {
  const code = CLOSE_CODES[closeCode];
  return code ? dcError(code) : null;
}

/** The `{code, message}` object every error of the SDK is. */
export function dcError(code, message) {
  return { code, message: message || MESSAGES[code] || String(code) };
}

/** Anything caught as `{code, message}`: an SDK error as it is, an exception under `fallbackCode`. */
export function toError(err, fallbackCode) {
  const plain = err !== null && typeof err === "object" && Object.getPrototypeOf(err) === Object.prototype;
  if (plain && (typeof err.code === "string" || typeof err.code === "number")) {
    return dcError(err.code, typeof err.message === "string" ? err.message : undefined);
  }
  const detail = err && (err.message || err.name);
  return dcError(fallbackCode, detail ? `${MESSAGES[fallbackCode] || fallbackCode} (${detail})` : undefined);
}

/** Normalise anything the server sent into `{code, message}`. A `retry_after` (seconds:
 * when trying again will work) is kept as `retryAfter`, not enumerable, so that the error
 * a page sees stays `{code, message}`. */
export function fromServer(body, fallbackCode) {
  if (body && (typeof body.code === "string" || typeof body.code === "number")) {
    const error = dcError(body.code, typeof body.message === "string" ? body.message : undefined);
    const after = body.retry_after;
    if (typeof after === "number" && Number.isFinite(after) && after >= 0) {
      Object.defineProperty(error, "retryAfter", { value: after, enumerable: false });
    }
    return error;
  }
  return dcError(fallbackCode);
}
