// How a call's end reads to the page that placed it: the one table from a final status and
// reason (and whether our own connection ended it) to what `call()` settles with.

import { dcError, ERR } from "./errors.js";

/** Final statuses of a call that was never answered; `call()` rejects with the status itself. */
export const UNANSWERED = Object.freeze(["declined", "missed", "cancelled", "busy"]);

/** A call that rang in several tabs of this device and was answered in another one (callee only). */
export const ANSWERED_ELSEWHERE = "answered_elsewhere";

/** Every final status (the server's words; "failed" also ends a call locally; "answered_elsewhere"
 * ends it in the tabs that did not answer). */
export const FINAL = Object.freeze(["over", ...UNANSWERED, "failed", ANSWERED_ELSEWHERE]);

export const isFinal = (status) => FINAL.includes(status);

/**
 * What `call()` settles with once the call has ended.
 *
 * @param {object} end
 * @param {string} end.status  the final status
 * @param {string} [end.reason]  the end reason (`user_hangup`, `connection_lost`, `ice_failed`, …)
 * @param {boolean} [end.answered]  the call had been answered
 * @param {boolean} [end.lostLocally]  our own connection or media ended it (we gave up waiting)
 * @param {boolean} [end.signalingDown]  our signaling was down, the call not yet seen again
 * @param {{code, message}} [end.error]  an error that ended the call before it rang
 * @returns {{resolve: "over"} | {reject: string | {code, message}}}
 */
export function callOutcome(end) {
  const { status, reason = "", answered = false, lostLocally = false, signalingDown = false } = end;
  const error = end.error || null;
  if (error) return { reject: error };
  // Our own connection ended it (not the other party's): that is ERR_INTERNET_LOST.
  const lost = lostLocally || (reason === "connection_lost" && signalingDown);
  if (answered) {
    // An answered call whose media gave up (either side's ICE) lost the connection too.
    const mediaLost = status === "failed" && reason === "ice_failed";
    return lost || mediaLost ? { reject: dcError(ERR.INTERNET_LOST) } : { resolve: "over" };
  }
  if (lost) return { reject: dcError(ERR.INTERNET_LOST) };
  if (UNANSWERED.includes(status) || status === ANSWERED_ELSEWHERE) return { reject: status };
  return { reject: dcError(ERR.INTERNET_LOST) };
}
