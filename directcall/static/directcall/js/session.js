// Signing in: fetching a session (token, ICE servers, branding) from the directcall server
// (the key mode, v1/init) or from the site's own session URL.

import { dcError, ERR, fromServer } from "./errors.js";

/** POST the sign-in for `config`. Resolves the session; rejects `{code, message}`. */
export async function fetchSession(config) {
  const c = config;
  const body = c.sessionUrl
    ? { deviceId: c.deviceId }
    : { accountId: c.accountId, apikey: c.apikey, cuid: c.cuid, deviceId: c.deviceId };
  if (c.name && !c.sessionUrl) body.name = c.name;
  if (c.userToken) body.userToken = typeof c.userToken === "function" ? await c.userToken() : c.userToken;
  if (c.ringtone) body.ringtone = c.ringtone;
  if (c.ctAccountId) body.ctAccountId = c.ctAccountId;
  if (c.ctId) body.ctId = c.ctId;
  let response;
  try {
    const headers = { "Content-Type": "application/json" };
    if (c.csrfToken) headers["X-CSRFToken"] = c.csrfToken;
    response = await fetch(c.sessionUrl || new URL("v1/init", c.serverUrl), {
      method: "POST",
      headers,
      body: JSON.stringify(body),
      // A server-minted session rides on the site's login cookie; the key mode needs none.
      credentials: c.sessionUrl ? "same-origin" : "omit",
    });
  } catch {
    throw dcError(ERR.INTERNET_LOST, "The directcall server cannot be reached.");
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) throw fromServer(data, ERR.INTERNET_LOST);
  return data;
}
