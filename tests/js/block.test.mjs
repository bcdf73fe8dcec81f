// client.block(cuid) in node, with a fake socket (issue 13): the `block` frame it sends, the
// `blocked` reply that resolves it, the refusals that reject it {code, message}.
import { afterEach, test } from "node:test";
import assert from "node:assert/strict";

import { initDirectCall } from "../../directcall/static/directcall/js/client.js";
import { flush, signedInSession } from "./fakes.mjs";

let session = null;
let client = null;
afterEach(() => {
  if (session) session.end();
  session = client = null;
});

async function signedIn() {
  session = await signedInSession(initDirectCall);
  client = session.client;
  return session.ws;
}

test("block() sends a block frame and resolves on the server's blocked reply", async () => {
  const ws = await signedIn();
  let settled = false;
  const blocked = client.block("tutor_jane").then((value) => {
    settled = true;
    return value;
  });
  const frame = ws.sent.at(-1);
  assert.equal(frame.type, "block");
  assert.equal(frame.cuid, "tutor_jane");
  assert.ok(frame.ref);
  await flush();
  assert.equal(settled, false, "resolved before the server answered");
  ws.receive({ type: "blocked", ref: frame.ref, cuid: "tutor_jane" });
  assert.equal(await blocked, undefined);
});

test("block() rejects with the server's refusal", async () => {
  const ws = await signedIn();
  const blocked = client.block("tutor_jane");
  const frame = ws.sent.at(-1);
  ws.receive({ type: "error", code: "ERR_RATE_LIMITED", message: "Slow down.", ref: frame.ref });
  await assert.rejects(blocked, { code: "ERR_RATE_LIMITED", message: "Slow down." });
});

test("block() refuses an invalid or one's own cuid without sending anything", async () => {
  const ws = await signedIn();
  const before = ws.sent.length;
  for (const cuid of ["x", "91_8899555", null, "student_sam"]) {
    await assert.rejects(client.block(cuid), { code: "ERR_INVALID_CALL_PARAMETERS" });
  }
  assert.equal(ws.sent.length, before);
});

test("block() after logout() is ERR_NOT_INITIALIZED; a lost connection is ERR_INTERNET_LOST", async () => {
  const ws = await signedIn();
  ws.readyState = 3; // the socket is gone (the reconnect has not happened yet)
  await assert.rejects(client.block("tutor_jane"), { code: "ERR_INTERNET_LOST" });
  client.logout();
  await assert.rejects(client.block("tutor_jane"), { code: "ERR_NOT_INITIALIZED" });
});
