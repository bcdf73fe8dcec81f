// The SDK's errors (errors.js): close codes of the signaling socket as {code, message}.
import { test } from "node:test";
import assert from "node:assert/strict";

import { ERR, fromCloseCode } from "../../directcall/static/directcall/js/errors.js";
import { Signaling } from "../../directcall/static/directcall/js/signaling.js";
import { FakeWebSocket, flush } from "./fakes.mjs";

test("each close code that says why is its error (docs/protocol.md's table)", () => {
  const codes = { 4001: "ERR_INVALID_TOKEN", 4002: "ERR_ALREADY_SIGNEDIN", 4010: "ERR_ORIGIN_NOT_ALLOWED", 4011: "ERR_SESSION_REVOKED", 4012: "ERR_RATE_LIMITED", 4029: "ERR_RATE_LIMITED" };
  for (const [closeCode, code] of Object.entries(codes)) {
    const error = fromCloseCode(Number(closeCode));
    assert.deepEqual(Object.keys(error), ["code", "message"]);
    assert.equal(error.code, code);
    assert.ok(error.message.length > 0 && error.message !== code, closeCode);
  }
  assert.equal(ERR.RATE_LIMITED, "ERR_RATE_LIMITED");
  for (const closeCode of [1000, 1001, 1006, 1011, 4008]) assert.equal(fromCloseCode(closeCode), null);
});

test("a sign-in closed with 4012 (no error frame) rejects ERR_RATE_LIMITED, not ERR_INTERNET_LOST", async () => {
  const saved = globalThis.WebSocket;
  globalThis.WebSocket = FakeWebSocket;
  FakeWebSocket.all = [];
  try {
    const signaling = new Signaling(async () => ({ token: "t", websocketUrl: "ws://127.0.0.1:1/ws/" }));
    const pending = signaling.connect({ token: "t", websocketUrl: "ws://127.0.0.1:1/ws/" });
    await flush();
    const ws = FakeWebSocket.all[0];
    ws.open();
    assert.equal(ws.sent[0].type, "auth");
    ws.closeFromServer(4012);
    await assert.rejects(pending, (error) => error.code === ERR.RATE_LIMITED);
    signaling.close();
  } finally {
    globalThis.WebSocket = saved;
  }
});
