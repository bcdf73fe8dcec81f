// The one table from a call's end to what call() settles with: every row.
import { test } from "node:test";
import assert from "node:assert/strict";

import { dcError, ERR } from "../../directcall/static/directcall/js/errors.js";
import { callOutcome, FINAL, isFinal, UNANSWERED } from "../../directcall/static/directcall/js/outcome.js";

const LOST = { reject: dcError(ERR.INTERNET_LOST) };

const ROWS = [
  // [what happened, the end, what call() settles with]
  ["an error before it rang", { status: "failed", error: dcError(ERR.MIC_UNAVAILABLE) }, { reject: dcError(ERR.MIC_UNAVAILABLE) }],
  ["an error wins over everything else", { status: "over", answered: true, lostLocally: true, error: dcError(404) }, { reject: dcError(404) }],
  ["answered, then someone hung up", { status: "over", reason: "user_hangup", answered: true }, { resolve: "over" }],
  ["answered, the server's maximum duration", { status: "over", reason: "max_duration", answered: true }, { resolve: "over" }],
  ["answered, the other party's connection was lost", { status: "over", reason: "connection_lost", answered: true }, { resolve: "over" }],
  ["answered, our connection was down when it ended", { status: "over", reason: "connection_lost", answered: true, signalingDown: true }, LOST],
  ["answered, we gave up waiting for our connection", { status: "over", reason: "connection_lost", answered: true, lostLocally: true }, LOST],
  ["answered, our media gave up", { status: "failed", reason: "ice_failed", answered: true, lostLocally: true }, LOST],
  ["answered, the other side's media gave up", { status: "failed", reason: "ice_failed", answered: true }, LOST],
  ["answered, ended by a new sign-in of this device", { status: "over", reason: "replaced", answered: true }, { resolve: "over" }],
  ...UNANSWERED.map((status) => [`not answered: ${status}`, { status, reason: "whatever" }, { reject: status }]),
  ["not answered, our connection was down when it was missed", { status: "missed", reason: "connection_lost", signalingDown: true }, LOST],
  ["not answered, we gave up waiting for our connection", { status: "over", reason: "connection_lost", lostLocally: true }, LOST],
  ["not answered, the other party's connection was lost", { status: "over", reason: "connection_lost" }, LOST],
  ["not answered, failed", { status: "failed", reason: "" }, LOST],
  ["not answered, ended by a new sign-in of this device", { status: "over", reason: "replaced" }, LOST],
  ["rang here, answered in another tab", { status: "answered_elsewhere", reason: "answered_elsewhere" }, { reject: "answered_elsewhere" }],
  ["answered, our session revoked", { status: "over", reason: "revoked", answered: true, error: dcError(ERR.SESSION_REVOKED) }, { reject: dcError(ERR.SESSION_REVOKED) }],
];

for (const [name, end, expected] of ROWS) {
  test(`outcome: ${name}`, () => {
    assert.deepEqual(callOutcome(end), expected);
  });
}

test("an unanswered status that is not one of the four reads as a lost connection", () => {
  assert.deepEqual(callOutcome({ status: "over" }), LOST);
});

test("final statuses", () => {
  assert.deepEqual([...FINAL], ["over", "declined", "missed", "cancelled", "busy", "failed", "answered_elsewhere"]);
  assert.equal(isFinal("answered"), false);
  assert.equal(isFinal("ringing"), false);
  assert.equal(FINAL.every(isFinal), true);
});
