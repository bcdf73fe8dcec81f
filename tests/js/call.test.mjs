// The Call (call.js) with its media and signaling injected: state, the way it ends, and
// what it does when the other side's media description cannot be used.
import { test, mock } from "node:test";
import assert from "node:assert/strict";

import { Call, ICE_GIVE_UP_MS, ICE_RESTART_AFTER_MS, RING_BOUND_MARGIN_S } from "../../directcall/static/directcall/js/call.js";
import { dcError, ERR } from "../../directcall/static/directcall/js/errors.js";
import { FakeMedia, FakeSignaling, flush, makeStream } from "./fakes.mjs";

/** A call with fake surroundings; `events` records every event the call emits, in order. */
function makeCall(init, { fail = {}, microphone = async () => makeStream(), sendLater } = {}) {
  const signaling = new FakeSignaling();
  const env = {
    signaling,
    sendLater,
    getMicrophone: microphone,
    createMedia: (mic, onCandidates) => {
      env.media = new FakeMedia(mic, onCandidates, fail);
      return env.media;
    },
  };
  const call = new Call(init, env);
  const events = [];
  const types = ["placed", "statechange", "connecting", "answered", "media", "reconnecting", "peer", "mute", "error", "end"];
  for (const type of types) call.addEventListener(type, (e) => events.push([type, e.detail]));
  return { call, env, signaling, events, named: (type) => events.filter((e) => e[0] === type).map((e) => e[1]) };
}

const callee = (options) =>
  makeCall(
    { role: "callee", id: "call-1", peer: { cuid: "tutor_jane", name: "Jane" }, context: "Homework", offer: "offer-sdp" },
    options,
  );
const caller = (options) =>
  makeCall({ role: "caller", peer: { cuid: "student_sam", name: "student_sam" }, context: "Homework" }, options);

async function answeredCaller(options) {
  const made = caller(options);
  await made.call.place({ receiver: "student_sam" });
  made.call.handleFrame({ type: "state", call_id: "call-1", status: "answered", sdp: "answer-sdp" });
  await flush();
  return made;
}

// -- status ----------------------------------------------------------------------------------------

test("status steps forward only; repeated and stale state frames change nothing", async () => {
  const { call, named } = callee();
  call.handleFrame({ type: "state", status: "ringing" });
  call.handleFrame({ type: "state", status: "ringing" });
  call.handleFrame({ type: "state", status: "answered" });
  call.handleFrame({ type: "state", status: "ringing" });
  call.handleFrame({ type: "state", status: "initiated" });
  assert.deepEqual(
    named("statechange").map((d) => d.status),
    ["ringing", "answered"],
  );
  assert.equal(call.status, "answered");
  assert.ok(call.answeredAt > 0);
});

test("finish() ends a call once, with a final status only", () => {
  const { call, named } = callee();
  assert.throws(() => call.finish("answered"), TypeError);
  call.finish("declined", "user_declined");
  call.finish("over", "user_hangup");
  call.handleFrame({ type: "state", status: "answered" });
  assert.deepEqual(named("end"), [{ callId: "call-1", role: "callee", status: "declined", reason: "user_declined", duration: null, quality: null }]);
  assert.equal(call.isOver, true);
  assert.equal(call.mediaStatus, "closed");
});

test("a Call can start from what the server knows of a live call", () => {
  const { call } = makeCall({
    role: "caller",
    id: "call-9",
    status: "answered",
    answeredAt: 1_700_000_000_000,
    peer: { cuid: "student_sam", name: "Sam" },
    context: "Homework",
  });
  assert.deepEqual(call.summary(), {
    callId: "call-9",
    role: "caller",
    status: "answered",
    peer: { cuid: "student_sam", name: "Sam" },
  });
  assert.equal(call.answeredAt, 1_700_000_000_000);
});

// -- placing ---------------------------------------------------------------------------------------

test("the caller's candidates wait for the call id, then go out with it", async () => {
  const { call, env, signaling, named } = caller();
  const placing = call.place({ receiver: "student_sam" });
  await flush();
  env.media.onCandidates({ candidates: [{ candidate: "a" }], end: false });
  await placing;
  env.media.onCandidates({ candidates: [], end: true });
  assert.deepEqual(signaling.sent, [
    { type: "invite", receiver: "student_sam", context: "Homework", sdp: `offer-${env.media.n}`, receiver_image: null, initiator_image: null },
    { type: "candidates", call_id: "call-1", candidates: [{ candidate: "a" }], end: false },
    { type: "candidates", call_id: "call-1", candidates: [], end: true },
  ]);
  assert.deepEqual(named("placed"), [{ callId: "call-1" }]);
  assert.equal(call.peer.name, "Sam");
});

test("hanging up while the invite is in flight cancels once the call has an id", async () => {
  const { call, signaling } = caller();
  const placing = call.place({ receiver: "student_sam" });
  await flush();
  call.hangup();
  assert.equal(call.isOver, false);
  await placing;
  assert.deepEqual(signaling.sent.at(-1), { type: "cancel", call_id: "call-1" });
});

test("hanging up before the microphone answered ends the call at once as cancelled", async () => {
  let grant;
  const { call, signaling } = caller({ microphone: () => new Promise((resolve) => (grant = resolve)) });
  const placing = call.place({ receiver: "student_sam" });
  call.hangup();
  await assert.rejects(call.result, (outcome) => outcome === "cancelled");
  grant(makeStream());
  await placing;
  assert.deepEqual(signaling.sent, []);
});

test("a refused invite rejects call() with the server's error", async () => {
  const { call, signaling } = caller();
  signaling.request = () => Promise.reject(dcError(404));
  await call.place({ receiver: "student_sam" });
  await assert.rejects(call.result, (error) => error.code === 404);
});

// -- answering -----------------------------------------------------------------------------------

test("answering sends the answer SDP once, even when asked twice", async () => {
  const { call, env, signaling, named } = callee();
  await Promise.all([call.answer(), call.answer()]);
  assert.deepEqual(signaling.types(), ["accept"]);
  assert.deepEqual(signaling.sent[0], { type: "accept", call_id: "call-1", sdp: `answer-${env.media.n}` });
  assert.equal(named("connecting").length, 1);
});

test("an offer that cannot be used declines the call with a reason and an error event", async () => {
  const { call, env, signaling, events } = callee({ fail: { acceptOffer: true } });
  await call.answer(); // resolves: nothing is left unhandled
  assert.deepEqual(signaling.sent, [{ type: "decline", call_id: "call-1", reason: "user_media_failed" }]);
  const error = events.find((e) => e[0] === "error")[1];
  assert.equal(error.code, ERR.MEDIA_FAILED);
  assert.match(error.message, /offer could not be used/);
  assert.deepEqual(
    events.filter((e) => e[0] === "end").map((e) => [e[1].status, e[1].reason]),
    [["declined", "user_media_failed"]],
  );
  assert.ok(env.media.closed);
});

test("a refused microphone declines with user_media_failed and ERR_MIC_UNAVAILABLE", async () => {
  const { call, signaling, named } = callee({
    microphone: async () => {
      throw dcError(ERR.MIC_UNAVAILABLE);
    },
  });
  await call.answer();
  assert.deepEqual(signaling.sent, [{ type: "decline", call_id: "call-1", reason: "user_media_failed" }]);
  assert.equal(named("error")[0].code, ERR.MIC_UNAVAILABLE);
  assert.equal(call.status, "declined");
});

test("an answer that cannot be used hangs up with ice_failed and an error event", async () => {
  const { call, signaling, named } = await answeredCaller({ fail: { setAnswer: true } });
  assert.equal(named("error")[0].code, ERR.MEDIA_FAILED);
  const { quality, ...hangup } = signaling.sent.at(-1);
  assert.deepEqual(hangup, { type: "hangup", call_id: "call-1", reason: "ice_failed" });
  assert.equal(quality.mosAvg, null); // no media was measured
  assert.deepEqual(named("answered"), []);
  call.handleFrame({ type: "state", status: "failed", reason: "ice_failed" });
  await assert.rejects(call.result, (error) => error.code === ERR.INTERNET_LOST);
});

// -- renegotiation ------------------------------------------------------------------------------

test("a renegotiation that fails while media is down follows the ICE failure path", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { call, env, signaling, named } = await answeredCaller({ fail: { renegotiate: true } });
  env.media.ice("connected");
  env.media.ice("disconnected");
  t.mock.timers.tick(ICE_RESTART_AFTER_MS);
  await flush();
  assert.equal(env.media.restarts, 1);
  call.handleFrame({ type: "renegotiate", call_id: "call-1", sdp_type: "answer", sdp: "garbage" });
  await flush();
  assert.equal(named("error")[0].code, ERR.MEDIA_FAILED);
  assert.match(named("error")[0].message, /Renegotiation failed/);
  assert.equal(call.mediaStatus, "reconnecting");
  t.mock.timers.tick(ICE_RESTART_AFTER_MS);
  await flush();
  assert.equal(env.media.restarts, 2); // tried again after a pause
  t.mock.timers.tick(ICE_GIVE_UP_MS);
  const { quality, ...hangup } = signaling.sent.at(-1);
  assert.deepEqual(hangup, { type: "hangup", call_id: "call-1", reason: "ice_failed" });
  assert.equal(quality.samples, 0); // an answered call's hangup carries its quality summary
  assert.deepEqual(
    named("end").map((d) => [d.status, d.reason]),
    [["failed", "ice_failed"]],
  );
  await assert.rejects(call.result, (error) => error.code === ERR.INTERNET_LOST);
});

test("a renegotiation that fails while media flows leaves the call as it is", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const made = callee({ fail: { renegotiate: true } });
  const { call, env, signaling, named } = made;
  await call.answer();
  call.handleFrame({ type: "state", status: "answered" });
  env.media.ice("connected");
  call.handleFrame({ type: "renegotiate", call_id: "call-1", sdp_type: "offer", sdp: "garbage" });
  await flush();
  assert.equal(named("error")[0].code, ERR.MEDIA_FAILED);
  assert.deepEqual(named("reconnecting"), [{ on: false }]);
  t.mock.timers.tick(ICE_GIVE_UP_MS * 2);
  assert.equal(call.isOver, false);
  assert.deepEqual(signaling.types(), ["accept"]);
});

test("a renegotiation offer is answered", async () => {
  const { call, env, signaling } = callee();
  await call.answer();
  call.handleFrame({ type: "state", status: "answered" });
  env.media.ice("connected");
  call.handleFrame({ type: "renegotiate", call_id: "call-1", sdp_type: "offer", sdp: "restart" });
  await flush();
  assert.deepEqual(signaling.sent.at(-1), { type: "renegotiate", call_id: "call-1", sdp_type: "answer", sdp: `reanswer-${env.media.n}` });
});

// -- the connection -----------------------------------------------------------------------------

test("an answered call outlives a short signaling drop and ends ERR_INTERNET_LOST after a long one", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { call, signaling } = await answeredCaller();
  signaling.ready = false;
  call.signalingLost({ final: false, graceMs: 5000 });
  assert.equal(call.signalingStatus, "reconnecting");
  signaling.ready = true;
  call.signalingBack(true);
  t.mock.timers.tick(10_000);
  assert.equal(call.isOver, false);
  assert.equal(call.signalingStatus, "open");
  signaling.ready = false;
  call.signalingLost({ final: false, graceMs: 5000 });
  t.mock.timers.tick(5000);
  assert.deepEqual([call.status, call.reason], ["over", "connection_lost"]);
  await assert.rejects(call.result, (error) => error.code === ERR.INTERNET_LOST);
});

test("the other side hanging up while we were away is not a lost connection", async () => {
  const { call, signaling } = await answeredCaller();
  signaling.ready = false;
  call.signalingLost({ final: false, graceMs: 5000 });
  signaling.ready = true;
  call.signalingBack(false); // the server no longer lists the call; its state frame follows
  call.handleFrame({ type: "state", status: "over", reason: "user_hangup" });
  assert.equal(await call.result, "over");
});

// -- the callee's own bound on ringing (a lost final state never rings for ever) ---------------

test("a ringing call whose end never arrives stops as missed after the ring timeout and a margin", (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { call, signaling, named } = callee();
  call.boundRinging(8);
  t.mock.timers.tick((8 + RING_BOUND_MARGIN_S) * 1000 - 1);
  assert.equal(call.isOver, false);
  t.mock.timers.tick(1);
  assert.deepEqual(
    named("end").map((d) => [d.status, d.reason]),
    [["missed", "invite_timeout"]],
  );
  assert.deepEqual(signaling.sent, []); // the server ended it already; nothing to say
});

test("an answer in flight when the ring bound runs out is hung up, not left connecting", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { call, signaling, named } = callee();
  call.boundRinging(1);
  await call.answer();
  assert.deepEqual(signaling.types(), ["accept"]);
  t.mock.timers.tick((1 + RING_BOUND_MARGIN_S) * 1000);
  assert.deepEqual(signaling.types(), ["accept", "hangup"]);
  assert.equal(named("end")[0].status, "missed");
});

test("an answered call is not ended by the ring bound", async (t) => {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const { call, named } = callee();
  call.boundRinging(1);
  await call.answer();
  call.handleFrame({ type: "state", call_id: "call-1", status: "answered" });
  t.mock.timers.tick((1 + RING_BOUND_MARGIN_S) * 1000);
  assert.equal(call.isOver, false);
  assert.deepEqual(named("end"), []);
});

// -- quality (quality.js) ------------------------------------------------------------------------

test("the party that hangs up reports its quality with the hangup; the other side after the end", async () => {
  const { call, signaling, named } = await answeredCaller();
  call.hangup();
  const hangup = signaling.sent.at(-1);
  assert.equal(hangup.type, "hangup");
  assert.deepEqual(Object.keys(hangup.quality).sort(), [
    "codec", "jitterAvg", "jitterMax", "localCandidate", "lossAvg", "lossMax", "mosAvg", "mosMin",
    "relayed", "remoteCandidate", "rttAvg", "rttMax", "samples", "warnings",
  ]);
  call.handleFrame({ type: "state", call_id: "call-1", status: "over", reason: "user_hangup" });
  assert.equal(signaling.sent.filter((f) => f.type === "quality").length, 0); // sent once, with the hangup
  assert.deepEqual(named("end")[0].quality, hangup.quality);

  const other = await answeredCaller();
  other.call.handleFrame({ type: "state", call_id: "call-1", status: "over", reason: "user_hangup" });
  const late = other.signaling.sent.at(-1);
  assert.equal(late.type, "quality");
  assert.equal(late.call_id, "call-1");
  assert.deepEqual(other.named("end")[0].quality, late.quality);
});

test("a quality summary that cannot go out now waits for the connection (sendLater)", async () => {
  const later = [];
  const { call, signaling } = makeCall(
    { role: "caller", id: "call-3", status: "answered", answeredAt: Date.now(), peer: { cuid: "s", name: "S" }, context: "c" },
    { sendLater: (frame) => later.push(frame) },
  );
  signaling.ready = false;
  call.hangup(); // cannot be sent: ends here at once
  assert.equal(call.status, "over");
  assert.deepEqual(later.map((f) => [f.type, f.call_id]), [["quality", "call-3"]]);
});
