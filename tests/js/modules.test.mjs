// Unit tests of the SDK's pure modules (node --test).
import { test } from "node:test";
import assert from "node:assert/strict";

import { readCleverTap, pushEvent } from "../../directcall/static/directcall/js/clevertap.js";
import { dcError, fromServer, ERR } from "../../directcall/static/directcall/js/errors.js";
import { formatDuration } from "../../directcall/static/directcall/js/screens.js";
import { backoffDelay } from "../../directcall/static/directcall/js/signaling.js";

test("backoff doubles from 0.5 s to a cap of 8 s, with ±50 % jitter", () => {
  const mid = () => 0.5;
  assert.deepEqual([0, 1, 2, 3, 4, 5, 9].map((n) => backoffDelay(n, mid)), [500, 1000, 2000, 4000, 8000, 8000, 8000]);
  assert.equal(backoffDelay(0, () => 0), 250);
  assert.equal(backoffDelay(4, () => 0.999999), 12000);
});

test("durations read m:ss under an hour and h:mm:ss above", () => {
  assert.equal(formatDuration(0), "00:00");
  assert.equal(formatDuration(65.9), "01:05");
  assert.equal(formatDuration(3600 + 62), "1:01:02");
  assert.equal(formatDuration(-3), "00:00");
});

test("errors are {code, message}", () => {
  assert.deepEqual(dcError(ERR.MIC_UNAVAILABLE), {
    code: "ERR_MIC_UNAVAILABLE",
    message: "Microphone permission denied.",
  });
  assert.equal(dcError(404).code, 404);
  assert.deepEqual(fromServer({ code: "ERR_X", message: "m" }, "ERR_Y"), { code: "ERR_X", message: "m" });
  assert.equal(fromServer(null, ERR.INTERNET_LOST).code, "ERR_INTERNET_LOST");
  assert.equal(fromServer({ code: { evil: 1 } }, ERR.INTERNET_LOST).code, "ERR_INTERNET_LOST");
});

test("CleverTap ids: getAccountID, the account[0].id fallback, and a null id", () => {
  assert.deepEqual(readCleverTap({ getAccountID: () => "ACC", getCleverTapID: () => "g1" }), {
    accountId: "ACC",
    ctId: "g1",
  });
  assert.deepEqual(readCleverTap({ account: [{ id: "ACC2" }], getCleverTapID: () => null }), {
    accountId: "ACC2",
    ctId: null,
  });
  assert.deepEqual(readCleverTap({ getAccountID: () => { throw new Error("x"); } }), {
    accountId: null,
    ctId: null,
  });
});

test("pushEvent never throws", () => {
  const seen = [];
  pushEvent({ event: { push: (n, p) => seen.push([n, p]) } }, "DCEnd", { call_status: "over" });
  assert.deepEqual(seen, [["DCEnd", { call_status: "over" }]]);
  pushEvent({ event: { push: () => { throw new Error("boom"); } } }, "DCEnd", {});
  pushEvent(null, "DCEnd", {});
  pushEvent({}, "DCEnd", {});
});
