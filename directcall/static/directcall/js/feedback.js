// client.postFeedback(): a party's rating of an answered call that ended (1 to 5) and what
// went wrong, kept with the call when the account asks for feedback (docs/js-api.md,
// "Feedback"). The issues are Twilio Voice's postFeedback issues.

import { dcError, ERR } from "./errors.js";

export const FEEDBACK_ISSUES = Object.freeze([
  "audio-latency",
  "choppy-audio",
  "dropped-call",
  "echo",
  "noisy-call",
  "one-way-audio",
]);

/**
 * Send a rating for `callId` (default: this page's last answered call that ended).
 * Resolves once the server kept it; rejects `{code, message}`: ERR_INVALID_PARAMETERS (a
 * score that is not a whole number 1-5, an unknown issue), ERR_UNKNOWN_CALL (no such call
 * of this user), ERR_FEEDBACK_DISABLED, ERR_CALL_STATE (the call is not over, or was never
 * answered), ERR_NOT_INITIALIZED, ERR_INTERNET_LOST.
 */
export function postFeedback(client, score, issues = [], callId = client.lastAnsweredCall) {
  if (client.loggedOut) return Promise.reject(dcError(ERR.NOT_INITIALIZED));
  const list = issues == null ? [] : issues;
  if (!Number.isInteger(score) || score < 1 || score > 5) {
    return Promise.reject(dcError(ERR.INVALID_PARAMETERS, "The score is a whole number from 1 to 5."));
  }
  if (!Array.isArray(list) || list.some((issue) => !FEEDBACK_ISSUES.includes(issue))) {
    return Promise.reject(dcError(ERR.INVALID_PARAMETERS, `Issues are among ${FEEDBACK_ISSUES.join(", ")}.`));
  }
  if (typeof callId !== "string" || !callId) return Promise.reject(dcError(ERR.UNKNOWN_CALL, "No answered call to rate."));
  const frame = { type: "feedback", call_id: callId, score, issues: [...new Set(list)] };
  return client.signaling.request(frame).then(() => undefined);
}
