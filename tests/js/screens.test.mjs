// The call screens' decisions at the end of a call and about names, in node (no DOM): what
// the screen says once a call has ended (from what call() settles with), that a new screen
// replaces it, and the name a call button gives the outgoing screen. A real browser shows
// them in tests/e2e/test_screens.py.
import { test } from "node:test";
import assert from "node:assert/strict";

import { Call } from "../../directcall/static/directcall/js/call.js";
import { dcError, ERR } from "../../directcall/static/directcall/js/errors.js";
import { ENGLISH } from "../../directcall/static/directcall/js/i18n.js";
import { endedOutcome, ENDED_SCREEN_MS, Screens, shownName } from "../../directcall/static/directcall/js/screens.js";
import { FakeMedia, FakeSignaling, flush, makeStream } from "./fakes.mjs";

test("the outcome of a call: the caller is told declined, busy, no answer; one's own cancel says nothing", () => {
  assert.deepEqual(endedOutcome("caller", "declined"), { key: "declined" });
  assert.deepEqual(endedOutcome("caller", "busy"), { key: "busy" });
  assert.deepEqual(endedOutcome("caller", "missed"), { key: "noAnswer" });
  assert.equal(endedOutcome("caller", "cancelled"), null);
  // The callee declined, let it ring out, was cancelled, or answered in another tab.
  for (const status of ["declined", "missed", "cancelled", "busy", "answered_elsewhere"]) {
    assert.equal(endedOutcome("callee", status), null, status);
  }
  for (const role of ["caller", "callee"]) assert.deepEqual(endedOutcome(role, "over"), { key: "announceEnded" });
});

test("the outcome of a failed call is the error's own message, else 'Call failed'", () => {
  const limited = { code: ERR.RATE_LIMITED, message: "Your last call to Jane was not answered: you may call them again in 30 s." };
  assert.deepEqual(endedOutcome("caller", limited), { text: limited.message });
  const lost = dcError(ERR.INTERNET_LOST);
  assert.deepEqual(endedOutcome("callee", lost, true), { text: lost.message }); // answered, then lost
  assert.equal(endedOutcome("callee", lost, false), null); // an incoming call never answered: closes
  const refused = dcError(ERR.MIC_UNAVAILABLE, "Microphone unavailable: NotAllowedError");
  assert.deepEqual(endedOutcome("callee", "declined", false, refused), { text: refused.message });
  assert.deepEqual(endedOutcome("caller", { code: 404, message: "  " }), { key: "callFailed" });
  assert.deepEqual(endedOutcome("caller", { code: 404 }), { key: "callFailed" });
  for (const key of ["declined", "busy", "noAnswer", "callFailed", "close", "announceEnded"]) assert.ok(ENGLISH[key], key);
  assert.ok(ENDED_SCREEN_MS >= 2000 && ENDED_SCREEN_MS <= 3000);
});

test("the name shown: the server's, else the page's, else the cuid", () => {
  assert.equal(shownName({ cuid: "user_2", name: "Jane Tutor" }, "Jane"), "Jane Tutor");
  assert.equal(shownName({ cuid: "user_2", name: "user_2" }, "Jane Tutor"), "Jane Tutor");
  assert.equal(shownName({ cuid: "user_2", name: "user_2" }), "user_2");
  assert.equal(shownName({ cuid: "user_2", name: "" }, null), "user_2");
  assert.equal(shownName(null), "");
});

/**
 * A Screens whose drawing is recorded instead of done (node has no DOM): its own update(),
 * _end() and name logic run; `log` lists what it showed, said and hid.
 */
function recordingScreens() {
  const screens = Object.create(Screens.prototype);
  const log = [];
  Object.assign(screens, {
    log,
    strings: { ...ENGLISH, declined: "Rechazada" },
    epoch: 0,
    destroyed: false,
    expected: null,
    names: new WeakMap(),
    failures: new WeakMap(),
    screen: null,
  });
  const record = (name) => (...args) => log.push([name, ...args]);
  const quiet = ["stopTone", "stopTimer", "startTimer", "setMuted", "_refreshEnableAudio", "setStatus", "setReconnecting"];
  for (const name of quiet) {
    screens[name] = () => {};
  }
  screens.play = record("play");
  screens.announce = record("announce");
  screens.setName = record("setName");
  screens.hide = record("hide");
  screens._showEnded = (call, text) => log.push(["ended", text]);
  // As the real show(): a new screen bumps the epoch (an end decided later is dropped).
  screens.show = (screen, { name }) => {
    screens.epoch += 1;
    screens.screen = screen;
    log.push(["show", screen, name]);
  };
  return screens;
}

function callerCall(signaling = new FakeSignaling(), peer = { cuid: "student_sam", name: "student_sam" }) {
  const env = {
    signaling,
    getMicrophone: async () => makeStream(),
    createMedia: (stream, onCandidates) => new FakeMedia(stream, onCandidates),
  };
  return new Call({ role: "caller", peer: { ...peer }, context: "Homework" }, env);
}

/** Relay the call's events to `screens` as ui.js does (screens first). */
function follow(screens, call) {
  for (const type of ["placed", "statechange", "answered", "end"]) {
    call.addEventListener(type, (e) => screens.update(call, type, e.detail));
  }
  screens.update(call, "outgoing");
}

test("the caller's screen says 'Declined' (in the screens' language) when the callee declines", async () => {
  const screens = recordingScreens();
  const call = callerCall();
  follow(screens, call);
  await call.place({ receiver: "student_sam" });
  call.handleFrame({ type: "state", call_id: "call-1", status: "declined", reason: "user_declined" });
  await call.result.catch(() => {});
  await flush();
  assert.deepEqual(
    screens.log.filter(([what]) => what === "ended" || what === "hide" || what === "announce").slice(-2),
    [
      ["announce", "Rechazada"],
      ["ended", "Rechazada"],
    ],
  );
});

test("busy and no answer are said too; the caller's own cancel closes the screen at once", async () => {
  for (const [status, said] of [
    ["busy", "Busy"],
    ["missed", "No answer"],
  ]) {
    const screens = recordingScreens();
    const call = callerCall();
    follow(screens, call);
    await call.place({ receiver: "student_sam" });
    call.handleFrame({ type: "state", call_id: "call-1", status, reason: "" });
    await call.result.catch(() => {});
    await flush();
    assert.deepEqual(screens.log.at(-1), ["ended", said], status);
  }
  const screens = recordingScreens();
  const call = callerCall();
  follow(screens, call);
  await call.place({ receiver: "student_sam" });
  call.hangup();
  call.handleFrame({ type: "state", call_id: "call-1", status: "cancelled", reason: "caller_cancelled" });
  await call.result.catch(() => {});
  await flush();
  assert.deepEqual(screens.log.slice(-2), [["hide"], ["announce", "Call ended"]]);
  assert.ok(!screens.log.some(([what]) => what === "ended"));
});

test("a callee whose answer fails (microphone refused) is told why, not left with a vanished screen", async () => {
  const screens = recordingScreens();
  const env = {
    signaling: new FakeSignaling(),
    getMicrophone: async () => {
      throw dcError(ERR.MIC_UNAVAILABLE, "Microphone unavailable: NotAllowedError");
    },
    createMedia: (stream, onCandidates) => new FakeMedia(stream, onCandidates),
  };
  const call = new Call(
    { role: "callee", id: "call-1", peer: { cuid: "tutor_jane", name: "Jane" }, context: "Hi", offer: "offer-sdp" },
    env,
  );
  for (const type of ["connecting", "error", "end"]) {
    call.addEventListener(type, (e) => screens.update(call, type, e.detail));
  }
  await call.answer();
  await flush();
  assert.deepEqual(screens.log.filter(([what]) => what === "ended").at(-1), [
    "ended",
    "Microphone unavailable: NotAllowedError",
  ]);
  // Without such an error an unanswered incoming call still closes at once (the test above).
});

test("a call the server refuses (ring backoff) shows the server's message, not a flash of 'Calling…'", async () => {
  const signaling = new FakeSignaling();
  const message = "Your last call to Jane was not answered: you may call them again in 30 s.";
  signaling.request = (frame) => {
    signaling.sent.push(frame);
    return Promise.reject({ code: ERR.RATE_LIMITED, message });
  };
  const screens = recordingScreens();
  const call = callerCall(signaling);
  follow(screens, call);
  await call.place({ receiver: "student_sam" });
  await assert.rejects(call.result, { code: ERR.RATE_LIMITED, message });
  await flush();
  assert.deepEqual(screens.log.slice(-2), [
    ["announce", message],
    ["ended", message],
  ]);
});

test("an answered call that ends says 'Call ended' and plays the end tone", async () => {
  const screens = recordingScreens();
  const call = callerCall();
  follow(screens, call);
  await call.place({ receiver: "student_sam" });
  call.handleFrame({ type: "state", call_id: "call-1", status: "answered", sdp: "answer-sdp" });
  await flush();
  call.handleFrame({ type: "state", call_id: "call-1", status: "over", reason: "user_hangup" });
  assert.equal(await call.result, "over");
  await flush();
  assert.deepEqual(screens.log.slice(-3), [
    ["play", "end"],
    ["announce", "Call ended"],
    ["ended", "Call ended"],
  ]);
});

test("a screen shown before the end is decided (a new call, the rating prompt) is left alone", async () => {
  const screens = recordingScreens();
  const call = callerCall();
  follow(screens, call);
  await call.place({ receiver: "student_sam" });
  // A page's callend listener places the next call at once (ui.js relays screens first).
  call.addEventListener("end", () => screens.update(callerCall(), "outgoing"));
  call.handleFrame({ type: "state", call_id: "call-1", status: "declined", reason: "user_declined" });
  await call.result.catch(() => {});
  await flush();
  assert.equal(screens.log.at(-1)[0], "show");
  assert.ok(!screens.log.some(([what]) => what === "ended" || what === "hide"));
  // Destroyed meanwhile (logout): nothing either.
  const other = recordingScreens();
  const second = callerCall();
  follow(other, second);
  await second.place({ receiver: "student_sam" });
  second.addEventListener("end", () => (other.destroyed = true));
  second.handleFrame({ type: "state", call_id: "call-1", status: "busy", reason: "" });
  await second.result.catch(() => {});
  await flush();
  assert.ok(!other.log.some(([what]) => what === "ended" || what === "hide"));
});

test("the outgoing screen shows the name the call button gave until the server names the person", async () => {
  const screens = recordingScreens();
  const forget = screens.expectName("student_sam", "  Sam Student ");
  const call = callerCall();
  follow(screens, call);
  forget();
  assert.deepEqual(screens.log[0], ["show", "outgoing", "Sam Student"]);
  // The server's answer names them (FakeSignaling: "Sam").
  await call.place({ receiver: "student_sam" });
  assert.deepEqual(screens.log.find(([what]) => what === "setName"), ["setName", "Sam"]);
  // A server that sends no name: the button's name stays.
  const quiet = new FakeSignaling();
  quiet.invited = { type: "invited", call_id: "call-2" };
  const other = recordingScreens();
  other.expectName("student_sam", "Sam Student");
  const second = callerCall(quiet);
  follow(other, second);
  await second.place({ receiver: "student_sam" });
  assert.deepEqual(other.log.find(([what]) => what === "setName"), ["setName", "Sam Student"]);
});

test("a button's name is for its own call only: another cuid, a later call, or an empty name get none", () => {
  const screens = recordingScreens();
  screens.expectName("grocer_gil", "Gil");
  screens.update(callerCall(), "outgoing");
  assert.deepEqual(screens.log.at(-1), ["show", "outgoing", "student_sam"]);
  // Taken by the first outgoing screen (even of another cuid): not left for a later call.
  screens.update(callerCall(undefined, { cuid: "grocer_gil", name: "grocer_gil" }), "outgoing");
  assert.deepEqual(screens.log.at(-1), ["show", "outgoing", "grocer_gil"]);
  const forget = screens.expectName("student_sam", "Sam");
  forget(); // call() returned without a screen (refused before)
  screens.update(callerCall(), "outgoing");
  assert.deepEqual(screens.log.at(-1), ["show", "outgoing", "student_sam"]);
  screens.expectName("student_sam", "   ");
  screens.update(callerCall(), "outgoing");
  assert.deepEqual(screens.log.at(-1), ["show", "outgoing", "student_sam"]);
});
