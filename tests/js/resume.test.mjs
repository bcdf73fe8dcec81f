// A call taken back after a reload (Call.resume) and the other side's part (replace offers):
// new peer connections, the glare rule, offers sent again, answers that come twice.
import { afterEach, test } from "node:test";
import assert from "node:assert/strict";

import { Call, ICE_GIVE_UP_MS, REPLACE_RETRY_MS } from "../../directcall/static/directcall/js/call.js";
import { dcError, ERR } from "../../directcall/static/directcall/js/errors.js";
import { FakeMedia, FakeSignaling, flush, makeStream } from "./fakes.mjs";

// Every call a test made is ended after it, so that no give-up timer outlives its test.
const calls = [];
afterEach(() => {
  for (const call of calls.splice(0)) call.finish("over", "test_end");
});

/** A call with fake surroundings; `medias` lists every media it made, `events` what it emitted. */
function makeCall(init, { microphone = async () => makeStream(), fail = {} } = {}) {
  const signaling = new FakeSignaling();
  const medias = [];
  const env = {
    signaling,
    getMicrophone: microphone,
    createMedia: (stream, onCandidates) => {
      const media = new FakeMedia(stream, onCandidates, fail);
      medias.push(media);
      return media;
    },
  };
  const call = new Call(init, env);
  calls.push(call);
  const events = [];
  for (const type of ["statechange", "answered", "media", "reconnecting", "peer", "error", "end", "audioblocked"]) {
    call.addEventListener(type, (e) => events.push([type, e.detail]));
  }
  call.result.catch(() => {});
  return { call, signaling, medias, events, named: (type) => events.filter((e) => e[0] === type).map((e) => e[1]) };
}

const resumed = (role, options) =>
  makeCall(
    {
      role,
      id: "call-1",
      status: "answered",
      answeredAt: Date.now() - 60_000,
      peer: { cuid: role === "caller" ? "student_sam" : "tutor_jane", name: "Peer" },
      context: "Homework",
      callKey: "k".repeat(43),
    },
    options,
  );

/** An answered call whose media is up, as on the side that did not reload. */
async function live(role) {
  let made;
  if (role === "caller") {
    made = makeCall({ role, peer: { cuid: "student_sam", name: "Sam" }, context: "Homework" });
    await made.call.place({ receiver: "student_sam" });
    made.call.handleFrame({ type: "state", call_id: "call-1", status: "answered", sdp: "answer-sdp" });
  } else {
    made = makeCall({ role, id: "call-1", peer: { cuid: "tutor_jane", name: "Jane" }, context: "Homework", offer: "o" });
    await made.call.answer();
    made.call.handleFrame({ type: "state", call_id: "call-1", status: "answered" });
  }
  await flush();
  made.medias[0].ice("connected");
  return made;
}

const replaceOffer = (sdp) => ({ type: "renegotiate", call_id: "call-1", sdp_type: "offer", sdp, replace: true });
const answerFrame = (sdp) => ({ type: "renegotiate", call_id: "call-1", sdp_type: "answer", sdp });

// -- the page that reloaded -----------------------------------------------------------------------

test("a resumed call gets the microphone, a new connection, and sends a replace offer", async () => {
  const { call, signaling, medias, named } = resumed("caller");
  assert.equal(call.status, "answered");
  await call.resume();
  assert.equal(medias.length, 1);
  assert.deepEqual(signaling.sent, [
    { type: "renegotiate", call_id: "call-1", sdp_type: "offer", sdp: "offer-" + medias[0].n, replace: true },
  ]);
  assert.deepEqual(named("reconnecting"), [{ on: true }]);
  call.handleFrame(answerFrame("their-answer"));
  await flush();
  assert.deepEqual(medias[0].remote, [["answer", "their-answer"]]);
  assert.equal(call.replacing, false);
  medias[0].ice("connected");
  assert.deepEqual(named("reconnecting"), [{ on: true }, { on: false }]);
  assert.deepEqual(named("media"), [{ callId: "call-1", state: "connected" }]);
});

test("an unanswered replace offer is sent again until the answer comes, then no more", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { call, signaling, medias } = resumed("callee");
  await call.resume();
  t.mock.timers.tick(REPLACE_RETRY_MS);
  t.mock.timers.tick(REPLACE_RETRY_MS);
  const offers = signaling.sent.filter((f) => f.replace === true);
  assert.equal(offers.length, 3);
  assert.ok(offers.every((f) => f.sdp === `offer-${medias[0].n}`)); // the same offer each time
  call.handleFrame(answerFrame("their-answer"));
  await flush();
  t.mock.timers.tick(REPLACE_RETRY_MS * 4);
  assert.equal(signaling.sent.filter((f) => f.replace === true).length, 3);
  // The answer to a copy of the offer, arriving too: applied once, no error.
  call.handleFrame(answerFrame("their-answer"));
  await flush();
  assert.deepEqual(medias[0].remote, [["answer", "their-answer"]]);
});

test("the other side coming back (peer connected) gets the pending offer at once", async () => {
  const { call, signaling } = resumed("caller");
  await call.resume();
  call.handleFrame({ type: "peer", call_id: "call-1", connected: true });
  assert.equal(signaling.sent.filter((f) => f.replace === true).length, 2);
});

test("while its replace offer is out, a resumed page ignores ICE-restart offers meant for the old connection", async () => {
  const { call, signaling, medias } = resumed("callee");
  await call.resume();
  call.handleFrame({ type: "renegotiate", call_id: "call-1", sdp_type: "offer", sdp: "restart-of-old" });
  await flush();
  assert.deepEqual(medias[0].remote, []);
  assert.deepEqual(signaling.types(), ["renegotiate"]);
});

test("a resumed call whose connection never comes up ends with ice_failed", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { call, signaling, named } = resumed("caller");
  await call.resume();
  t.mock.timers.tick(ICE_GIVE_UP_MS);
  const { quality, ...hangup } = signaling.sent.at(-1);
  assert.deepEqual(hangup, { type: "hangup", call_id: "call-1", reason: "ice_failed" });
  assert.equal(quality.samples, 0);
  assert.deepEqual(named("end").map((e) => [e.status, e.reason]), [["failed", "ice_failed"]]);
});

test("a resumed call without a microphone hangs up with user_media_failed", async () => {
  const { call, signaling, named } = resumed("callee", {
    microphone: async () => {
      throw dcError(ERR.MIC_UNAVAILABLE);
    },
  });
  await call.resume();
  assert.deepEqual(
    signaling.sent.map(({ quality, ...frame }) => frame),
    [{ type: "hangup", call_id: "call-1", reason: "user_media_failed" }],
  );
  assert.equal(named("error")[0].code, ERR.MIC_UNAVAILABLE);
  assert.deepEqual(named("end").map((e) => [e.status, e.reason]), [["failed", "user_media_failed"]]);
});

test("an ICE restart is not started while a replace offer is out", async () => {
  const { call, medias } = resumed("caller");
  await call.resume();
  await call.restartIce();
  assert.equal(medias[0].restarts, 0);
});

// -- the side that did not reload -----------------------------------------------------------------

for (const role of ["caller", "callee"]) {
  test(`a replace offer to the ${role}: old connection closed (microphone kept), a new one answers`, async () => {
    const { call, signaling, medias, named } = await live(role);
    const old = medias[0];
    call.setMuted(true);
    const sentBefore = signaling.sent.length;
    call.handleFrame(replaceOffer("new-offer"));
    await flush();
    assert.equal(medias.length, 2);
    const fresh = medias[1];
    assert.deepEqual(old.closed, { keepStream: true });
    assert.equal(fresh.stream, old.stream);
    assert.equal(fresh.muted, true);
    assert.deepEqual(fresh.remote, [["offer", "new-offer"]]);
    assert.deepEqual(signaling.sent.slice(sentBefore), [answerFrame(`answer-${fresh.n}`)]);
    assert.deepEqual(named("reconnecting").at(-1), { on: true });
    // The old connection's late events are not this call's any more.
    old.ice("failed");
    fresh.ice("connected");
    assert.deepEqual(named("reconnecting").at(-1), { on: false });
    assert.equal(call.mediaStatus, "open");
    assert.equal(call.isOver, false);
  });
}

test("the same replace offer twice is answered twice with the same answer, one new connection", async () => {
  const { call, signaling, medias } = await live("callee");
  call.handleFrame(replaceOffer("new-offer"));
  await flush();
  call.handleFrame(replaceOffer("new-offer"));
  await flush();
  assert.equal(medias.length, 2);
  const answers = signaling.sent.filter((f) => f.sdp_type === "answer" && f.type === "renegotiate");
  assert.deepEqual(answers, [answerFrame(`answer-${medias[1].n}`), answerFrame(`answer-${medias[1].n}`)]);
});

test("the candidates of a replaced connection are no longer sent", async () => {
  const { call, signaling, medias } = await live("caller");
  call.handleFrame(replaceOffer("new-offer"));
  await flush();
  const before = signaling.sent.length;
  medias[0].onCandidates({ candidates: [{ candidate: "old" }], end: false });
  medias[1].onCandidates({ candidates: [{ candidate: "new" }], end: false });
  assert.deepEqual(signaling.sent.slice(before), [
    { type: "candidates", call_id: "call-1", candidates: [{ candidate: "new" }], end: false },
  ]);
});

// -- glare: both pages reloaded --------------------------------------------------------------------

test("glare: the resumed caller ignores the callee's replace offer; its own stands", async () => {
  const { call, signaling, medias } = resumed("caller");
  await call.resume();
  call.handleFrame(replaceOffer("callee-offer"));
  await flush();
  assert.equal(medias.length, 1);
  assert.deepEqual(medias[0].remote, []);
  assert.equal(call.replacing, true);
  assert.deepEqual(signaling.types(), ["renegotiate"]);
});

test("glare: the resumed callee drops its own offer and answers the caller's", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { call, signaling, medias } = resumed("callee");
  await call.resume();
  call.handleFrame(replaceOffer("caller-offer"));
  await flush();
  assert.equal(medias.length, 2);
  assert.deepEqual(medias[0].closed, { keepStream: true });
  assert.deepEqual(medias[1].remote, [["offer", "caller-offer"]]);
  assert.equal(call.replacing, false);
  assert.deepEqual(signaling.sent.at(-1), answerFrame(`answer-${medias[1].n}`));
  t.mock.timers.tick(REPLACE_RETRY_MS * 3); // its own offer is not sent again
  assert.equal(signaling.sent.filter((f) => f.replace === true).length, 1);
});

test("glare: a caller's offer that comes while the resumed callee waits for its microphone is answered", async () => {
  let grant;
  const { call, signaling, medias } = resumed("callee", { microphone: () => new Promise((r) => (grant = r)) });
  const resuming = call.resume();
  call.handleFrame(replaceOffer("caller-offer"));
  await flush();
  grant(makeStream());
  await resuming;
  await flush();
  assert.deepEqual(medias.at(-1).remote, [["offer", "caller-offer"]]);
  assert.equal(signaling.sent.filter((f) => f.replace === true).length, 0);
  assert.deepEqual(signaling.sent.at(-1), answerFrame(`answer-${medias.at(-1).n}`));
});

// -- tabs ----------------------------------------------------------------------------------------------

test("answered elsewhere: a ringing tab stops, ends as answered_elsewhere, nothing sent", async () => {
  const { call, signaling, named } = makeCall({
    role: "callee",
    id: "call-1",
    peer: { cuid: "tutor_jane", name: "Jane" },
    context: "Homework",
    offer: "o",
  });
  call.handleFrame({ type: "state", call_id: "call-1", status: "answered", elsewhere: true });
  assert.deepEqual(named("end"), [
    { callId: "call-1", role: "callee", status: "answered_elsewhere", reason: "answered_elsewhere", duration: null, quality: null },
  ]);
  assert.deepEqual(named("statechange"), []);
  assert.deepEqual(signaling.sent, []);
  assert.equal(call.answeredAt, null);
});

test("answered elsewhere while this tab was answering too: its new connection is closed", async () => {
  const { call, medias, named } = makeCall({ role: "callee", id: "call-1", peer: { cuid: "t", name: "T" }, context: "c", offer: "o" });
  await call.answer();
  call.handleFrame({ type: "state", call_id: "call-1", status: "answered", elsewhere: true });
  assert.deepEqual(medias[0].closed, { keepStream: false });
  assert.equal(named("end")[0].status, "answered_elsewhere");
});

test("the keys that bind a call to this tab: the caller's from invited, the callee's from its answered state", async () => {
  const caller = makeCall({ role: "caller", peer: { cuid: "student_sam", name: "s" }, context: "c" });
  caller.signaling.invited = { ...caller.signaling.invited, call_key: "caller-key" };
  await caller.call.place({ receiver: "student_sam" });
  assert.equal(caller.call.callKey, "caller-key");
  const callee = makeCall({ role: "callee", id: "call-1", peer: { cuid: "t", name: "T" }, context: "c", offer: "o" });
  await callee.call.answer();
  callee.call.handleFrame({ type: "state", call_id: "call-1", status: "answered", call_key: "callee-key" });
  assert.equal(callee.call.callKey, "callee-key");
});

test("a session revoked mid-call ends it with reason revoked and rejects call() with the error", async () => {
  const made = makeCall({ role: "caller", peer: { cuid: "student_sam", name: "s" }, context: "c" });
  await made.call.place({ receiver: "student_sam" });
  made.call.handleFrame({ type: "state", call_id: "call-1", status: "answered", sdp: "a" });
  await flush();
  made.call.signalingLost({ final: true, graceMs: 1000, error: dcError(ERR.SESSION_REVOKED) });
  assert.deepEqual(made.named("end").map((e) => [e.status, e.reason]), [["over", "revoked"]]);
  await assert.rejects(made.call.result, (error) => error.code === ERR.SESSION_REVOKED);
});
