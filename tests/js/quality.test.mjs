// Call quality: the E-model, the warning rules with their hysteresis, reading getStats()
// reports, and the summary, against fixed samples.
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  barsOf,
  estimateMos,
  gradeOf,
  LevelMeter,
  LEVEL_WARNING,
  MIN_RAISED_MS,
  QualityMonitor,
  QualityWarnings,
  readReport,
  sampleOf,
  summarize,
} from "../../directcall/static/directcall/js/quality.js";

const near = (actual, expected, digits = 2) =>
  assert.equal(Number(actual.toFixed(digits)), expected, `${actual} is not ${expected}`);

test("the E-model: a clean path scores about 4.4, delay, jitter and loss bring it down", () => {
  near(estimateMos(0, 0, 0), 4.43); // R = 94.768 - 10 ms / 40
  near(estimateMos(20, 2, 0), 4.42);
  near(estimateMos(150, 0, 0), 4.36); // 160 ms effective delay: the steeper slope starts
  near(estimateMos(400, 0, 0), 3.39); // R = 94.768 - (410 - 120) / 10 = 65.77
  near(estimateMos(20, 30, 0), 4.4); // jitter counts twice
  near(estimateMos(20, 2, 1), 4.37); // each percent of loss: 2.5 points of R
  near(estimateMos(20, 2, 5), 4.08);
  near(estimateMos(500, 40, 5), 1.84);
  // Loss above R/2.5 leaves nothing: the floor is 1.
  near(estimateMos(20, 2, 40), 1);
  // A delay of a second or more: R is 0, then R's floor of 6.52, which is MOS 1 too.
  near(estimateMos(990, 10, 0), 1);
  assert.ok(estimateMos(20, 2, 2) > estimateMos(20, 2, 3));
});

test("the E-model needs three non-negative numbers", () => {
  for (const args of [[null, 1, 1], [1, undefined, 1], [1, 1, NaN], [-1, 0, 0], [0, 0, Infinity], ["5", 0, 0]]) {
    assert.equal(estimateMos(...args), null, JSON.stringify(args));
  }
});

test("grades follow Twilio's MOS bands, without their gaps", () => {
  const rows = [
    [4.5, "excellent"],
    [4.21, "excellent"],
    [4.2, "great"],
    [4.1, "great"],
    [4.05, "good"], // in Twilio's 4.0-4.1 gap
    [3.7, "good"],
    [3.65, "fair"], // in Twilio's 3.6-3.7 gap
    [3.1, "fair"],
    [3.0, "degraded"],
    [1, "degraded"],
    [null, null],
  ];
  for (const [mos, grade] of rows) assert.equal(gradeOf(mos), grade, String(mos));
  assert.deepEqual([4.4, 4.15, 3.8, 3.2, 2].map(barsOf), [5, 4, 3, 2, 1]);
  assert.equal(barsOf(null), 0);
});

/** Feed samples one a second; return the changes of each push as "+name" / "-name". */
function run(samples, { muted = () => false, start = 0 } = {}) {
  let clock = start;
  const warnings = new QualityWarnings({ now: () => clock });
  const log = [];
  samples.forEach((sample, i) => {
    clock = start + i * 1000;
    for (const change of warnings.push(sample, { muted: muted(i) })) {
      log.push(`${i}:${change.raised ? "+" : "-"}${change.name}`);
    }
  });
  return { log, warnings };
}

const GOOD = { rtt: 40, jitter: 3, loss: 0, mos: 4.4, inputLevel: null };

test("a warning is raised by 3 samples in the last 5 over the threshold", () => {
  const high = { ...GOOD, rtt: 450 };
  // two high samples: not yet; the third (within the last five) raises it
  const { log } = run([GOOD, high, GOOD, high, GOOD, high]);
  assert.deepEqual(log, ["5:+high-rtt"]);
  // 400 ms itself is not over the threshold
  assert.deepEqual(run([{ ...GOOD, rtt: 400 }, { ...GOOD, rtt: 400 }, { ...GOOD, rtt: 400 }]).log, []);
  // high samples spread wider than five apart never raise it
  const spaced = [high, GOOD, GOOD, GOOD, GOOD, high, GOOD, GOOD, GOOD, GOOD, high];
  assert.deepEqual(run(spaced).log, []);
});

test("each metric has its own rule: jitter > 30 ms, loss > 1 %, MOS < 3.5", () => {
  const bad = { rtt: 40, jitter: 31, loss: 1.5, mos: 3.4, inputLevel: null };
  const { log } = run([bad, bad, bad]);
  assert.deepEqual(log.sort(), ["2:+high-jitter", "2:+high-packet-loss", "2:+low-mos"]);
  const edge = { rtt: 40, jitter: 30, loss: 1, mos: 3.5, inputLevel: null };
  assert.deepEqual(run([edge, edge, edge, edge, edge]).log, []);
});

test("a warning clears once none of the last 5 samples crosses, and not within 5 s of being raised", () => {
  const lossy = { ...GOOD, loss: 2 }; // over 1 %, never 3 % on average over 7 samples
  const samples = [lossy, lossy, lossy, GOOD, GOOD, GOOD, GOOD, GOOD, GOOD, GOOD];
  const { log } = run(samples);
  // raised at 2; the last lossy sample (2) leaves the window of five at sample 7
  assert.deepEqual(log, ["2:+high-packet-loss", "7:-high-packet-loss"]);
  // one bad sample in the window holds it: it is neither raised again nor cleared
  const flicker = [lossy, lossy, lossy, GOOD, GOOD, GOOD, lossy, GOOD, GOOD, GOOD, GOOD, GOOD];
  assert.deepEqual(run(flicker).log, ["2:+high-packet-loss", "11:-high-packet-loss"]);
});

test("the minimum time raised holds a warning even when the window is clean", () => {
  // Samples every 500 ms: the window clears 5 samples (2.5 s) after the last bad one.
  let clock = 0;
  const warnings = new QualityWarnings({ now: () => clock });
  const lossy = { ...GOOD, loss: 2 };
  const changes = [];
  for (const [i, sample] of [lossy, lossy, lossy, GOOD, GOOD, GOOD, GOOD, GOOD, GOOD, GOOD, GOOD, GOOD, GOOD, GOOD].entries()) {
    clock = i * 500;
    for (const change of warnings.push(sample)) changes.push([clock, change.raised]);
  }
  assert.deepEqual(changes, [
    [1000, true],
    [1000 + MIN_RAISED_MS, false],
  ]);
});

test("a gap in a metric decides nothing", () => {
  const high = { ...GOOD, rtt: 500 };
  assert.deepEqual(run([high, { ...GOOD, rtt: null }, high, high]).log, []);
  // raised, then a gap in every later window: never cleared by missing values
  const { log } = run([high, high, high, { ...GOOD, rtt: null }, GOOD, GOOD, GOOD, GOOD, GOOD, GOOD, GOOD, GOOD]);
  assert.deepEqual(log, ["2:+high-rtt", "8:-high-rtt"]);
});

// Twilio's second packet-loss rule (statsMonitor.ts: packetsLostFraction {maxAverage: 3,
// clearValue: 1, sampleCount: 7}; call.ts names it high-packets-lost-fraction).
const AVERAGE = "high-packets-lost-fraction";
const losses = (values) => values.map((loss) => ({ ...GOOD, loss }));

test("an average loss over 3 % in the last 7 samples raises high-packets-lost-fraction", () => {
  // Two lossy seconds in the last five: not the count rule; 22 / 7 = 3.14 % on average: this one.
  const { log } = run(losses([5, 0, 0, 5, 0, 0, 12]));
  assert.deepEqual(log, [`6:+${AVERAGE}`]);
  const warnings = new QualityWarnings({ now: () => 0 });
  const changes = losses([5, 0, 0, 5, 0, 0, 12]).flatMap((sample) => warnings.push(sample));
  assert.deepEqual(changes, [{ name: AVERAGE, raised: true, value: 3.14, threshold: 3 }]);
  // an average of exactly 3 % is not over it
  assert.deepEqual(run(losses([0, 0, 0, 0, 0, 0, 21])).log, []);
  // six samples are not enough, however lossy: only the count rule speaks
  assert.deepEqual(run(losses([9, 9, 9, 9, 9, 9])).log, ["2:+high-packet-loss"]);
  assert.deepEqual(run(losses([9, 9, 9, 9, 9, 9, 9])).log, ["2:+high-packet-loss", `6:+${AVERAGE}`]);
});

test("high-packets-lost-fraction holds between 1 % and 3 % and clears at an average of 1 % or less", () => {
  // 4 % for 7 s, then 1.5 % (an average of 1.5 %: held), then nothing: 3 clean samples
  // bring the average to 6 / 7 = 0.86 %, two only to 7.5 / 7 = 1.07 %.
  const samples = losses([...Array(7).fill(4), ...Array(7).fill(1.5), ...Array(5).fill(0)]);
  assert.deepEqual(run(samples).log, ["2:+high-packet-loss", `6:+${AVERAGE}`, `16:-${AVERAGE}`, "18:-high-packet-loss"]);
  // and not sooner than 5 s after it was raised: samples every 500 ms
  let clock = 0;
  const warnings = new QualityWarnings({ now: () => clock });
  const changes = [];
  for (const [i, sample] of losses([...Array(7).fill(5), ...Array(12).fill(0)]).entries()) {
    clock = i * 500;
    for (const change of warnings.push(sample)) if (change.name === AVERAGE) changes.push([clock, change.raised]);
  }
  // raised at 3 s; the average is at 1 % or below from the fourth clean sample (5 s on)
  // but it stays up until 8 s
  assert.deepEqual(changes, [
    [3000, true],
    [3000 + MIN_RAISED_MS, false],
  ]);
});

test("a gap in the last 7 losses decides nothing for the average rule", () => {
  const { log } = run(losses([4, 4, 4, null, 4, 4, 4, 4, 4, 4, 4]));
  // the count rule looks at 5 samples, the average rule waits until the gap is 7 behind
  assert.deepEqual(log, ["2:+high-packet-loss", `10:+${AVERAGE}`]);
});

const level = (inputLevel) => ({ ...GOOD, inputLevel });

test("a microphone whose level does not move for 10 samples raises constant-audio-input-level", () => {
  const silent = Array.from({ length: 10 }, () => level(0));
  assert.deepEqual(run(silent).log, [`9:+${LEVEL_WARNING}`]);
  // a steady hum: varies by less than 1 % of full scale
  const hum = Array.from({ length: 10 }, (_, i) => level(0.2 + (i % 2) * 0.01));
  assert.deepEqual(run(hum).log, [`9:+${LEVEL_WARNING}`]);
  // speech: it moves
  const speech = Array.from({ length: 12 }, (_, i) => level([0.02, 0.3, 0.1, 0.45][i % 4]));
  assert.deepEqual(run(speech).log, []);
  // nine samples are not enough
  assert.deepEqual(run(silent.slice(1)).log, []);
});

test("the level warning clears when the level moves again, and is never raised while muted", () => {
  const samples = [...Array.from({ length: 10 }, () => level(0)), ...[0.3, 0.01, 0.4, 0.02, 0.5, 0.1].map(level)];
  const { log } = run(samples);
  // the level moves from sample 10 on, but the warning stays up its 5 s
  assert.deepEqual(log, [`9:+${LEVEL_WARNING}`, `14:-${LEVEL_WARNING}`]);
  // muted all along: silence is expected
  assert.deepEqual(run(Array.from({ length: 15 }, () => level(0)), { muted: () => true }).log, []);
  // raised, then the user mutes: cleared at once; unmuting starts the count again
  const muted = (i) => i >= 12 && i < 14;
  const { log: mutedLog } = run(Array.from({ length: 26 }, () => level(0)), { muted });
  assert.deepEqual(mutedLog, [`9:+${LEVEL_WARNING}`, `12:-${LEVEL_WARNING}`, `23:+${LEVEL_WARNING}`]);
});

// Twilio's readings: one set a second of the analyser's readings every 50 ms (0..1 on its
// -127..0 dB scale). What Chromium gave, each over 10 s (an analyser as LevelMeter's on a
// fake microphone playing a file): silence 0 every time; white noise at -70 / -50 / -35
// dBFS a spread of 0.013 / 0.015 / 0.021; the fake device's beep 0.139.
const readingsOf = (values) => ({ ...GOOD, inputLevel: 0.006, inputLevels: values });
const wobble = (mean, spread) => Array.from({ length: 20 }, (_, i) => mean + (i % 2 ? spread : -spread));

test("with readings, the level rule is Twilio's: the deviation of every reading of the last 10 s", () => {
  // A steady noise floor: every second's RMS the same (the per-second rule would raise),
  // but its readings move by 1.5 % of the scale: nothing.
  const noise = Array.from({ length: 12 }, () => readingsOf(wobble(0.3, 0.015)));
  assert.deepEqual(run(noise).log, []);
  // Digital silence: all zeros, raised after ten sets, the deviation as its value.
  const warnings = new QualityWarnings({ now: () => 0 });
  const changes = Array.from({ length: 10 }, () => readingsOf(Array(20).fill(0))).flatMap((x) => warnings.push(x));
  assert.deepEqual(changes, [{ name: LEVEL_WARNING, raised: true, value: 0, threshold: 0.01 }]);
  // Just under 1 % of the scale is still constant; the sets are pooled, not averaged.
  assert.deepEqual(run(Array.from({ length: 10 }, () => readingsOf(wobble(0.5, 0.0099)))).log, [`9:+${LEVEL_WARNING}`]);
  const alternating = Array.from({ length: 10 }, (_, i) => readingsOf(Array(20).fill(i % 2 ? 0.33 : 0.3)));
  assert.deepEqual(run(alternating).log, []); // each set flat, the ten together spread by 0.015
});

test("readings clear the level warning when they move, and the two ways of measuring do not mix", () => {
  const silent = Array.from({ length: 10 }, () => readingsOf(Array(20).fill(0)));
  const speech = Array.from({ length: 6 }, () => readingsOf(wobble(0.4, 0.2)));
  // the readings move from sample 10 on; the warning keeps its 5 s
  assert.deepEqual(run([...silent, ...speech]).log, [`9:+${LEVEL_WARNING}`, `14:-${LEVEL_WARNING}`]);
  // nine seconds of readings, then a second without (the AudioContext stopped): the count
  // starts again on the per-second levels, which need ten of their own
  const nine = silent.slice(1);
  const fallback = Array.from({ length: 9 }, () => level(0));
  assert.deepEqual(run([...nine, ...fallback]).log, []);
  assert.deepEqual(run([...nine, ...fallback, level(0)]).log, [`18:+${LEVEL_WARNING}`]);
  // muted: neither counts
  assert.deepEqual(run(silent, { muted: () => true }).log, []);
});

/** A Web Audio stand-in: an analyser whose bins the test sets, a context that may be suspended. */
function fakeAudio({ state = "running", resumes = true } = {}) {
  const made = [];
  class FakeContext {
    constructor() {
      this.state = state;
      this.closed = false;
      this.sources = [];
      made.push(this);
    }
    createAnalyser() {
      this.analyser = { frequencyBinCount: 16, bins: Array(16).fill(0) };
      this.analyser.getByteFrequencyData = (out) => out.set(this.analyser.bins);
      return this.analyser;
    }
    createMediaStreamSource(stream) {
      const source = { stream, connected: null, disconnect() { this.connected = null; } };
      source.connect = (node) => { source.connected = node; };
      this.sources.push(source);
      return source;
    }
    async resume() {
      if (resumes) this.state = "running";
    }
    async close() {
      this.closed = true;
      this.state = "closed";
    }
  }
  return { FakeContext, made };
}

test("LevelMeter reads the analyser as Twilio does, follows the sent track, and waits for a gesture", async () => {
  const saved = globalThis.MediaStream;
  globalThis.MediaStream = class {
    constructor(tracks) {
      this.tracks = tracks;
    }
  };
  try {
    const { FakeContext, made } = fakeAudio();
    let activated = false;
    const meter = new LevelMeter({ AudioContext: FakeContext, interval: 60_000, activated: () => activated });
    const mic = { kind: "audio", id: "mic1" };
    meter.follow(mic);
    assert.equal(made.length, 0); // no gesture on the page yet: no AudioContext at all
    assert.equal(meter.take(), null);
    activated = true;
    meter.follow(mic);
    const context = made[0];
    assert.equal(context.analyser.fftSize, 32);
    assert.equal(context.analyser.smoothingTimeConstant, 0);
    assert.deepEqual([context.analyser.minDecibels, context.analyser.maxDecibels], [-127, 0]);
    assert.deepEqual(context.sources[0].stream.tracks, [mic]);
    context.analyser.bins = [...Array(8).fill(255), ...Array(8).fill(0)];
    meter._read();
    context.analyser.bins = Array(16).fill(51);
    meter._read();
    assert.deepEqual(meter.take(), [0.5, 0.2]); // the bins' average over 255
    assert.equal(meter.take(), null); // nothing read since
    // a device switch: the new track is listened to, the old source let go
    const other = { kind: "audio", id: "mic2" };
    meter.follow(other);
    assert.equal(context.sources[0].connected, null);
    assert.deepEqual(context.sources[1].stream.tracks, [other]);
    assert.equal(made.length, 1);
    meter.close();
    assert.equal(context.closed, true);
    assert.equal(meter.take(), null);
    // a context the browser keeps suspended gives no readings (zeros are not silence)
    const { FakeContext: Suspended } = fakeAudio({ state: "suspended", resumes: false });
    const held = new LevelMeter({ AudioContext: Suspended, interval: 60_000, activated: () => true });
    held.follow(mic);
    held._read();
    assert.equal(held.take(), null);
    held.close();
  } finally {
    globalThis.MediaStream = saved;
  }
});

test("the monitor gives the rules its meter's readings, and keeps them out of the samples", async () => {
  let received = 0;
  const pc = {
    getStats: async () => {
      received += 50;
      return chromiumReport({ received, lost: 0, energy: received / 1000, duration: received / 50 });
    },
  };
  const meter = { follow() {}, take: () => Array(20).fill(0), close() {} };
  let clock = 0;
  const monitor = new QualityMonitor({ now: () => clock, meter });
  const raised = [];
  let sample = null;
  monitor.addEventListener("warning", (e) => raised.push(e.detail));
  monitor.addEventListener("sample", (e) => (sample = e.detail));
  monitor.attach(pc);
  for (let i = 0; i < 10; i++, clock += 1000) await monitor.tick();
  // the per-second levels (0.05, then 0.22 each second) would not raise it; the readings do
  assert.deepEqual(raised, [{ name: LEVEL_WARNING, value: 0, threshold: 0.01 }]);
  assert.equal("inputLevels" in sample, false);
  assert.equal(monitor.samples.some((s) => "inputLevels" in s), false);
});

// -- getStats reports -----------------------------------------------------------------------------------

/** A Chromium-shaped stats report of an audio call through TURN. */
function chromiumReport({ received, lost, jitter = 0.004, rtt = 0.05, energy = 0, duration = 0, local = "relay" }) {
  const stats = [
    { id: "IT01A", type: "inbound-rtp", kind: "audio", packetsReceived: received, packetsLost: lost, jitter, codecId: "CIT01_111" },
    { id: "OT01A", type: "outbound-rtp", kind: "audio", codecId: "COT01_111" },
    { id: "CIT01_111", type: "codec", mimeType: "audio/opus" },
    { id: "RI01", type: "remote-inbound-rtp", kind: "audio", roundTripTime: 0.2 },
    { id: "SA1", type: "media-source", kind: "audio", audioLevel: 0.05, totalAudioEnergy: energy, totalSamplesDuration: duration },
    { id: "T01", type: "transport", selectedCandidatePairId: "CP1" },
    { id: "CP1", type: "candidate-pair", currentRoundTripTime: rtt, localCandidateId: "L1", remoteCandidateId: "R1" },
    { id: "L1", type: "local-candidate", candidateType: local },
    { id: "R1", type: "remote-candidate", candidateType: "relay" },
  ];
  return new Map(stats.map((s) => [s.id, s]));
}

test("a report gives counters, RTT from the selected pair, jitter in ms, the candidates and the codec", () => {
  const reading = readReport(chromiumReport({ received: 100, lost: 2, rtt: 0.123 }));
  assert.equal(reading.packetsReceived, 100);
  assert.equal(reading.packetsLost, 2);
  near(reading.rtt, 123);
  near(reading.jitter, 4);
  assert.equal(reading.local, "relay");
  assert.equal(reading.remote, "relay");
  assert.equal(reading.codec, "opus");
  // Without a candidate pair's RTT (Firefox): the RTCP round trip
  const firefox = chromiumReport({ received: 1, lost: 0 });
  firefox.delete("T01");
  firefox.set("CP1", { id: "CP1", type: "candidate-pair", selected: true, localCandidateId: "L1", remoteCandidateId: "R1" });
  const read = readReport(firefox);
  near(read.rtt, 200);
  assert.equal(read.local, "relay");
});

test("a sample is the loss over the interval, the MOS of it, and the RMS level from the audio energy", () => {
  const first = readReport(chromiumReport({ received: 50, lost: 0, energy: 0, duration: 0 }));
  const opening = sampleOf(first, null);
  assert.equal(opening.loss, null); // no interval yet
  assert.equal(opening.mos, null);
  assert.equal(opening.inputLevel, 0.05); // the browser's own level until there is an interval
  const second = readReport(chromiumReport({ received: 95, lost: 5, energy: 0.04, duration: 1 }));
  const sample = sampleOf(second, first);
  assert.equal(sample.loss, 10); // 5 lost of 50 expected
  assert.equal(sample.received, 45);
  assert.equal(opening.received, 50); // counted from the connection's start
  assert.equal(sample.lost, 5);
  assert.equal(sample.inputLevel, 0.2); // sqrt(0.04 / 1 s)
  assert.equal(sample.mos, Number(estimateMos(50, 4, 10).toFixed(2)));
  // nothing arrived (the path is down): no loss figure rather than 0 %
  assert.equal(sampleOf(second, second).loss, null);
});

test("the summary: averages and worst values, loss over the whole call, relay, codec, warnings", () => {
  const samples = [
    { rtt: 40, jitter: 2, loss: null, mos: null },
    { rtt: 60, jitter: 4, loss: 0, mos: 4.4 },
    { rtt: 500, jitter: 30, loss: 20, mos: 2.1 },
  ];
  const summary = summarize({
    samples,
    received: 180,
    lost: 20,
    local: "relay",
    remote: "host",
    codec: "opus",
    warnings: new Set(["low-mos", "high-rtt"]),
  });
  assert.deepEqual(summary, {
    samples: 3,
    mosAvg: 3.25,
    mosMin: 2.1,
    rttAvg: 200,
    rttMax: 500,
    jitterAvg: 12,
    jitterMax: 30,
    lossAvg: 10,
    lossMax: 20,
    relayed: true,
    localCandidate: "relay",
    remoteCandidate: "host",
    codec: "opus",
    warnings: ["high-rtt", "low-mos"],
  });
  const empty = summarize({ samples: [], received: 0, lost: 0, local: null, remote: null, codec: "weird codec!", warnings: new Set() });
  assert.equal(empty.mosAvg, null);
  assert.equal(empty.lossAvg, null);
  assert.equal(empty.relayed, null);
  assert.equal(empty.codec, null);
  const direct = summarize({ samples, received: 1, lost: 0, local: "host", remote: "srflx", codec: "pcmu", warnings: new Set() });
  assert.equal(direct.relayed, false);
});

test("the monitor samples a peer connection, emits samples and warnings, and carries on across a new connection", async () => {
  let received = 0;
  let lost = 0;
  let lossPerTick = 0;
  const pc = {
    getStats: async () => {
      received += 50 - lossPerTick;
      lost += lossPerTick;
      return chromiumReport({ received, lost, energy: received / 1000, duration: received / 50 });
    },
  };
  let clock = 0;
  const monitor = new QualityMonitor({ now: () => clock });
  const events = [];
  for (const type of ["sample", "warning", "warningcleared"]) {
    monitor.addEventListener(type, (e) => events.push([type, e.detail]));
  }
  monitor.attach(pc);
  for (let i = 0; i < 3; i++, clock += 1000) await monitor.tick();
  lossPerTick = 10;
  for (let i = 0; i < 4; i++, clock += 1000) await monitor.tick();
  assert.deepEqual(monitor.activeWarnings.sort(), ["high-packet-loss", "low-mos"]);
  const sample = events.find(([type]) => type === "sample")[1];
  assert.deepEqual(Object.keys(sample).sort(), ["bars", "inputLevel", "jitter", "loss", "mos", "rtt"]);
  // a new peer connection (a reload): counters start again, the warnings stay
  received = 0;
  lost = 0;
  lossPerTick = 0;
  const pc2 = { getStats: pc.getStats };
  monitor.attach(pc2);
  for (let i = 0; i < 7; i++, clock += 1000) await monitor.tick();
  assert.deepEqual(monitor.activeWarnings, []);
  const names = (type) => events.filter(([t]) => t === type).map(([, d]) => d.name).sort();
  assert.deepEqual(names("warning"), ["high-packet-loss", "low-mos"]);
  assert.deepEqual(names("warningcleared"), ["high-packet-loss", "low-mos"]);
  const summary = monitor.summary();
  assert.equal(summary.samples, 14);
  // 40 lost of 700 expected, over both connections (each counted from its start)
  assert.equal(summary.lossAvg, Number(((40 / 700) * 100).toFixed(2)));
  assert.deepEqual(summary.warnings, ["high-packet-loss", "low-mos"]);
  assert.equal(summary.relayed, true);
  // a connection that throws (closed) gives no sample
  monitor.attach({ getStats: async () => Promise.reject(new Error("closed")) });
  assert.equal(await monitor.tick(), null);
});
