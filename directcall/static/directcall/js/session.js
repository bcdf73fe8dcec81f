// Signing in: fetching a session (token, ICE servers, branding) from the directcall server
// (the key mode, v1/init) or from the site's own session URL.

import { dcError, ERR, fromServer, toError } from "./errors.js";

// A sign-in the server could not serve for a moment (503 while Redis or the database
// restarts, 502/504 from the proxy while a worker restarts, or no answer the page may read:
// during a Redis outage the CORS preflight itself fails) is tried this many times in all,
// after the response's Retry-After (or 1 s), each wait at most RETRY_WAIT_MAX_MS.
// A sign-in refused by a throttle (429: many pages behind one address, a school's first
// day) is tried again within the same attempts once its window has passed, when the
// response says so within RATE_LIMIT_WAIT_MAX_MS; a longer or unstated wait is final.
export const SESSION_ATTEMPTS = 4;
export const RETRY_WAIT_MAX_MS = 5000;
export const RATE_LIMIT_WAIT_MAX_MS = 61000; // a minute's window, and the server's extra second
const TRANSIENT = [502, 503, 504];

/**
 * POST the sign-in for `config`. Resolves the session; rejects `{code, message}`.
 * `attempts`: how many times an answer of a server that is briefly down is tried (1: no
 * retry; the reconnection has its own backoff).
 */
export async function fetchSession(config, { attempts = 1 } = {}) {
  const c = config;
  const body = c.sessionUrl
    ? { deviceId: c.deviceId }
    : { accountId: c.accountId, apikey: c.apikey, cuid: c.cuid, deviceId: c.deviceId };
  if (c.name && !c.sessionUrl) body.name = c.name;
  if (c.userToken) body.userToken = typeof c.userToken === "function" ? await askUserToken(c.userToken) : c.userToken;
  if (c.ringtone) body.ringtone = c.ringtone;
  if (c.ctAccountId) body.ctAccountId = c.ctAccountId;
  if (c.ctId) body.ctId = c.ctId;
  for (let attempt = 1; ; attempt += 1) {
    let response;
    try {
      response = await post(c, body);
    } catch (error) {
      if (attempt >= attempts) throw error;
      await waitBeforeRetry(null);
      continue;
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (response.ok) return data;
    const error = fromServer(data, ERR.INTERNET_LOST);
    if (attempt >= attempts) throw error;
    if (response.status === 429) {
      const asked = retryAfterMs(response);
      if (asked === null || asked > RATE_LIMIT_WAIT_MAX_MS) throw error;
      await jittered(asked);
      continue;
    }
    if (!TRANSIENT.includes(response.status)) throw error;
    await waitBeforeRetry(response);
  }
}

/** The page's own `userToken()`: what it resolves with, or `{code, message}` if it throws
 * or rejects (the site's token endpoint down, refused by CORS…), never an Error. */
async function askUserToken(userToken) {
  try {
    return await userToken();
  } catch (error) {
    const detail = toError(error, ERR.INVALID_USER_TOKEN).message;
    throw dcError(ERR.INVALID_USER_TOKEN, `Your userToken function failed: ${detail}`);
  }
}

async function post(c, body) {
  const headers = { "Content-Type": "application/json" };
  if (c.csrfToken) headers["X-CSRFToken"] = c.csrfToken;
  try {
    return await fetch(c.sessionUrl || new URL("v1/init", c.serverUrl), {
      method: "POST",
      headers,
      body: JSON.stringify(body),
      // A server-minted session rides on the site's login cookie; the key mode needs none.
      credentials: c.sessionUrl ? "same-origin" : "omit",
    });
  } catch {
    throw dcError(ERR.INTERNET_LOST, "The directcall server cannot be reached.");
  }
}

/** Wait before the next attempt at a sign-in: the response's Retry-After (seconds), or 1 s
 * without one (or without a response), capped, plus up to a fifth more so that the pages of
 * a busy site do not all come back at once. */
export function waitBeforeRetry(response = null) {
  const asked = retryAfterMs(response);
  return jittered(Math.min(asked === null ? 1000 : asked, RETRY_WAIT_MAX_MS));
}

/** The response's Retry-After in ms (delay-seconds only), or null without a usable one. */
function retryAfterMs(response) {
  const header = response && response.headers && response.headers.get ? response.headers.get("Retry-After") : null;
  const asked = header === null || header === "" ? NaN : Number(header);
  return Number.isFinite(asked) && asked >= 0 ? asked * 1000 : null;
}

function jittered(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms * (1 + Math.random() / 5)));
}
