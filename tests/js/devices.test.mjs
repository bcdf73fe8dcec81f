// Devices (devices.js) against a fake navigator.mediaDevices: choosing, switching during a
// call, falling back to the default when the chosen device goes away; postFeedback's checks.
import { test } from "node:test";
import assert from "node:assert/strict";

import { Devices, listDevices } from "../../directcall/static/directcall/js/devices.js";
import { ERR } from "../../directcall/static/directcall/js/errors.js";
import { postFeedback } from "../../directcall/static/directcall/js/feedback.js";
import { flush } from "./fakes.mjs";

function track(deviceId, label) {
  const t = new EventTarget();
  Object.assign(t, {
    kind: "audio",
    enabled: true,
    readyState: "live",
    label,
    getSettings: () => ({ deviceId }),
    stop() {
      t.readyState = "ended";
    },
  });
  return t;
}

const stream = (t) => ({ getAudioTracks: () => [t], getTracks: () => [t] });

/** A browser's media devices: `devices` can change, `opened` records each getUserMedia. */
function install({ sinkId = true } = {}) {
  const md = new EventTarget();
  md.devices = [
    { kind: "audioinput", deviceId: "default", groupId: "g0", label: "Default" },
    { kind: "audioinput", deviceId: "mic-usb", groupId: "g1", label: "USB mic" },
    { kind: "audioinput", deviceId: "mic-built-in", groupId: "g2", label: "Built-in mic" },
    { kind: "audiooutput", deviceId: "default", groupId: "g0", label: "Default" },
    { kind: "audiooutput", deviceId: "spk-hdmi", groupId: "g3", label: "HDMI" },
  ];
  md.opened = [];
  md.enumerateDevices = async () => md.devices.map((d) => ({ ...d }));
  md.getUserMedia = async ({ audio }) => {
    const id = audio.deviceId ? audio.deviceId.exact : "default";
    md.opened.push(id);
    const found = md.devices.find((d) => d.kind === "audioinput" && d.deviceId === id);
    if (!found) throw Object.assign(new Error("no such device"), { name: "OverconstrainedError" });
    return stream(track(id, found.label));
  };
  const saved = [Object.getOwnPropertyDescriptor(globalThis, "navigator"), globalThis.HTMLMediaElement];
  Object.defineProperty(globalThis, "navigator", { value: { mediaDevices: md }, configurable: true, writable: true });
  globalThis.HTMLMediaElement = function HTMLMediaElement() {};
  if (sinkId) globalThis.HTMLMediaElement.prototype.setSinkId = async () => {};
  return {
    md,
    restore() {
      if (saved[0]) Object.defineProperty(globalThis, "navigator", saved[0]);
      else delete globalThis.navigator;
      if (saved[1]) globalThis.HTMLMediaElement = saved[1];
      else delete globalThis.HTMLMediaElement;
    },
  };
}

/** A call's media as devices.js uses it. */
function fakeMedia(initial) {
  return {
    stream: initial,
    replaced: [],
    sinks: [],
    muted: null,
    async replaceMicrophone(next) {
      this.replaced.push(next.getAudioTracks()[0].getSettings().deviceId);
      for (const t of this.stream.getTracks()) t.stop();
      this.stream = next;
    },
    setMuted(muted) {
      this.muted = muted;
      for (const t of this.stream.getAudioTracks()) t.enabled = !muted;
    },
    async setSpeaker(id) {
      this.sinks.push(id);
    },
  };
}

function recorder(devices) {
  const events = [];
  devices.addEventListener("devicechange", (e) => events.push(e.detail));
  return events;
}

test("the devices are listed; speakers only where a speaker can be chosen", async (t) => {
  const env = install();
  t.after(env.restore);
  const found = await listDevices();
  assert.deepEqual(found.microphones.map((d) => d.deviceId), ["default", "mic-usb", "mic-built-in"]);
  assert.deepEqual(found.speakers.map((d) => d.label), ["Default", "HDMI"]);
  assert.equal(found.speakerSelection, true);
  env.restore();
  const without = install({ sinkId: false });
  t.after(without.restore);
  const none = await listDevices();
  assert.deepEqual(none.speakers, []);
  assert.equal(none.speakerSelection, false);
});

test("a microphone chosen between calls is the next call's; an unknown one is refused", async (t) => {
  const env = install();
  t.after(env.restore);
  const devices = new Devices(() => null);
  const events = recorder(devices);
  await devices.setMicrophone("mic-usb");
  assert.equal(devices.microphoneId, "mic-usb");
  const opened = await devices.openMicrophone();
  assert.equal(opened.getAudioTracks()[0].label, "USB mic");
  assert.deepEqual(events, [{ kind: "microphone", deviceId: "mic-usb", label: "USB mic", reason: "selected" }]);
  await assert.rejects(devices.setMicrophone("nope"), (e) => e.code === ERR.DEVICE_UNAVAILABLE);
  devices.close();
});

test("during a call the microphone is switched by replacing the track; mute carries over", async (t) => {
  const env = install();
  t.after(env.restore);
  const media = fakeMedia(stream(track("default", "Default")));
  media.setMuted(true);
  const devices = new Devices(() => media);
  const events = recorder(devices);
  const first = media.stream.getAudioTracks()[0];
  await devices.setMicrophone("mic-built-in");
  assert.deepEqual(media.replaced, ["mic-built-in"]);
  assert.equal(first.readyState, "ended"); // the old microphone is released
  assert.equal(media.stream.getAudioTracks()[0].enabled, false); // still muted
  assert.equal(events.at(-1).reason, "selected");
  await assert.rejects(devices.setMicrophone("gone"), (e) => e.code === ERR.DEVICE_UNAVAILABLE);
  assert.deepEqual(media.replaced, ["mic-built-in"]); // a failed switch keeps the current one
  devices.close();
});

test("the chosen microphone unplugged during a call: the default takes over, with an event", async (t) => {
  const env = install();
  t.after(env.restore);
  const media = fakeMedia(stream(track("default", "Default")));
  const devices = new Devices(() => media);
  await devices.setMicrophone("mic-usb");
  const events = recorder(devices);
  env.md.devices = env.md.devices.filter((d) => d.deviceId !== "mic-usb");
  media.stream.getAudioTracks()[0].readyState = "ended";
  env.md.dispatchEvent(new Event("devicechange"));
  await flush();
  await devices.checking;
  assert.deepEqual(media.replaced, ["mic-usb", "default"]);
  assert.equal(devices.microphoneId, null);
  assert.deepEqual(events, [{ kind: "microphone", deviceId: "default", label: "Default", reason: "lost" }]);
  // A devicechange that takes nothing in use away changes nothing.
  env.md.devices = env.md.devices.filter((d) => d.deviceId !== "mic-built-in");
  await devices.check();
  assert.equal(events.length, 1);
  devices.close();
});

test("a chosen speaker: set on the call's audio, refused without setSinkId, dropped when unplugged", async (t) => {
  const env = install();
  t.after(env.restore);
  const media = fakeMedia(stream(track("default", "Default")));
  const devices = new Devices(() => media);
  const events = recorder(devices);
  await devices.setSpeaker("spk-hdmi");
  assert.deepEqual(media.sinks, ["spk-hdmi"]);
  env.md.devices = env.md.devices.filter((d) => d.deviceId !== "spk-hdmi");
  await devices.check();
  assert.deepEqual(media.sinks, ["spk-hdmi", ""]);
  assert.deepEqual(events.map((e) => [e.kind, e.reason]), [["speaker", "selected"], ["speaker", "lost"]]);
  devices.close();
  env.restore();
  const safari = install({ sinkId: false });
  t.after(safari.restore);
  const plain = new Devices(() => null);
  await assert.rejects(plain.setSpeaker("spk-hdmi"), (e) => e.code === ERR.NOT_SUPPORTED);
  plain.close();
});

test("a chosen microphone that cannot be opened for a new call falls back to the default", async (t) => {
  const env = install();
  t.after(env.restore);
  const devices = new Devices(() => null);
  await devices.setMicrophone("mic-usb");
  const events = recorder(devices);
  env.md.devices = env.md.devices.filter((d) => d.deviceId !== "mic-usb");
  const opened = await devices.openMicrophone();
  assert.equal(opened.getAudioTracks()[0].getSettings().deviceId, "default");
  assert.deepEqual(env.md.opened, ["mic-usb", "default"]);
  assert.deepEqual(events.map((e) => e.reason), ["lost"]);
  devices.close();
});

test("postFeedback checks the score, the issues and that there is a call to rate", async () => {
  const sent = [];
  const client = {
    loggedOut: false,
    lastAnsweredCall: "call-7",
    signaling: { request: async (frame) => sent.push(frame) && { type: "saved" } },
  };
  await postFeedback(client, 4, ["echo", "echo", "noisy-call"]);
  assert.deepEqual(sent, [{ type: "feedback", call_id: "call-7", score: 4, issues: ["echo", "noisy-call"] }]);
  await postFeedback(client, 1, undefined, "call-9");
  assert.equal(sent.at(-1).call_id, "call-9");
  for (const [score, issues] of [[0, []], [6, []], [2.5, []], ["5", []], [3, ["bad"]], [3, "echo"]]) {
    await assert.rejects(postFeedback(client, score, issues), (e) => e.code === ERR.INVALID_PARAMETERS);
  }
  await assert.rejects(postFeedback({ ...client, lastAnsweredCall: null }, 3), (e) => e.code === ERR.UNKNOWN_CALL);
  await assert.rejects(postFeedback({ ...client, loggedOut: true }, 3), (e) => e.code === ERR.NOT_INITIALIZED);
  assert.equal(sent.length, 2);
});
