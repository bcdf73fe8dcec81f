// Call quality: a sample of the peer connection's getStats() every second (round-trip time,
// jitter, packet loss, the estimated MOS, the microphone's level), named warnings raised and
// cleared with hysteresis, and the summary reported when the call ends (docs/js-api.md,
// "Call quality").
//
// The thresholds are the ones Twilio Voice JS documents for its call-quality warnings
// (Voice Insights SDK events; twilio-voice.js lib/twilio/statsMonitor.ts), so that numbers
// read the same on both:
//   high-rtt            round-trip time > 400 ms        in 3 of the last 5 samples
//   high-jitter         jitter > 30 ms                  in 3 of the last 5 samples
//   high-packet-loss    packet loss > 1 %               in 3 of the last 5 samples
//   high-packets-lost-fraction   packet loss averaged over the last 7 samples > 3 %;
//                       cleared once that average is at or below 1 % (Twilio's second
//                       packetsLostFraction threshold: maxAverage 3, clearValue 1,
//                       sampleCount 7, which its call.ts names high-packets-lost-fraction)
//   low-mos             MOS < 3.5                       in 3 of the last 5 samples
//   constant-audio-input-level   the microphone's level varies by less than 1 % of full
//                       scale (standard deviation) over the last 10 s: a dead or
//                       muted-by-hardware microphone (never raised while the call is muted).
//                       As Twilio: over every reading of those 10 s, read every 50 ms from
//                       an analyser on the microphone (LevelMeter); where no AudioContext
//                       runs (no user gesture on the page yet), over the 10 per-second RMS
//                       levels, which a steady noise floor can also hold still.
// A count warning clears when none of the last 5 samples crosses its threshold (the level
// one: when the level varies again), and no warning clears sooner than 5 s after it was
// raised.

export const SAMPLE_INTERVAL_MS = 1000;
export const WINDOW = 5;
export const RAISE_AFTER = 3;
export const MIN_RAISED_MS = 5000;
export const LEVEL_WINDOW = 10;
export const LEVEL_MIN_DEVIATION = 0.01;
export const LEVEL_READ_MS = 50;

export const NETWORK_RULES = Object.freeze([
  Object.freeze({ name: "high-rtt", metric: "rtt", above: 400 }),
  Object.freeze({ name: "high-jitter", metric: "jitter", above: 30 }),
  Object.freeze({ name: "high-packet-loss", metric: "loss", above: 1 }),
  Object.freeze({ name: "low-mos", metric: "mos", below: 3.5 }),
]);
// Rules on the average of the last `samples` samples: raised above `maxAverage`, cleared at
// or below `clearValue`, held in between.
export const AVERAGE_RULES = Object.freeze([
  Object.freeze({ name: "high-packets-lost-fraction", metric: "loss", maxAverage: 3, clearValue: 1, samples: 7 }),
]);
export const LEVEL_WARNING = "constant-audio-input-level";
export const WARNING_NAMES = Object.freeze([
  "high-rtt",
  "high-jitter",
  "high-packet-loss",
  "high-packets-lost-fraction",
  "low-mos",
  LEVEL_WARNING,
]);
const KEPT_SAMPLES = Math.max(WINDOW, ...AVERAGE_RULES.map((rule) => rule.samples));

// Preflight's grades (Twilio's PreflightTest.CallQuality), by average MOS: excellent above
// 4.2, great from 4.1, good from 3.7, fair from 3.1, degraded below. Twilio's documented
// bands leave gaps (4.0-4.1, 3.6-3.7); here each band ends where the one above starts.
export const GRADES = Object.freeze(["excellent", "great", "good", "fair", "degraded"]);

const finite = (value) => typeof value === "number" && Number.isFinite(value);
const nonNegative = (value) => finite(value) && value >= 0;
const round = (value, digits) => (finite(value) ? Number(value.toFixed(digits)) : null);

// -- the E-model ------------------------------------------------------------------------------

// The simplified ITU-T G.107 E-model with the parameters Twilio uses: the round-trip time
// stands for the delay, jitter counts twice, 10 ms for the codec; each percent of loss
// costs 2.5 points of R; R never drops below 6.52 unless the loss alone would take it to 0.
const R_MAX = 94.768;
const R_FLOOR = 6.52;

/**
 * The estimated MOS (1 to about 4.5) for a round-trip time and jitter in ms and a packet
 * loss in percent; null when a value is missing or negative.
 */
export function estimateMos(rttMs, jitterMs, lossPercent) {
  if (!nonNegative(rttMs) || !nonNegative(jitterMs) || !nonNegative(lossPercent)) return null;
  const delay = rttMs + 2 * jitterMs + 10;
  let r = 0;
  if (delay < 160) r = R_MAX - delay / 40;
  else if (delay < 1000) r = R_MAX - (delay - 120) / 10;
  r = lossPercent <= r / 2.5 ? Math.max(r - 2.5 * lossPercent, R_FLOOR) : 0;
  return 1 + 0.035 * r + 0.000007 * r * (r - 60) * (100 - r);
}

/** The grade of an average MOS: excellent, great, good, fair or degraded (null: no MOS). */
export function gradeOf(mos) {
  if (!finite(mos)) return null;
  if (mos > 4.2) return "excellent";
  if (mos >= 4.1) return "great";
  if (mos >= 3.7) return "good";
  if (mos >= 3.1) return "fair";
  return "degraded";
}

/** Bars for a connection indicator, 1 (degraded) to 5 (excellent); 0 without a MOS. */
export function barsOf(mos) {
  const grade = gradeOf(mos);
  return grade ? GRADES.length - GRADES.indexOf(grade) : 0;
}

// -- warnings with hysteresis ---------------------------------------------------------------------

function deviation(values) {
  const mean = values.reduce((sum, v) => sum + v, 0) / values.length;
  return Math.sqrt(values.reduce((sum, v) => sum + (v - mean) ** 2, 0) / values.length);
}

/**
 * The warning rules over a stream of samples (`{rtt, jitter, loss, mos, inputLevel}`, any
 * of them null; `inputLevels`, the second's LevelMeter readings, where there are any). `push(sample)` returns the changes it caused, each
 * `{name, raised: true, value, threshold}` or `{name, raised: false}`. Pure: the clock is
 * `now`, the mute state is given with each sample.
 */
export class QualityWarnings {
  constructor({ now = () => Date.now() } = {}) {
    this.now = now;
    this.samples = [];
    this.levels = [];
    this.levelSets = [];
    this.active = new Map(); // name -> when it was raised (ms)
    this.seen = new Set(); // every name raised during the call
  }

  push(sample, { muted = false } = {}) {
    this.samples.push(sample);
    if (this.samples.length > KEPT_SAMPLES) this.samples.shift();
    const changes = [];
    for (const rule of NETWORK_RULES) this._network(rule, changes);
    for (const rule of AVERAGE_RULES) this._average(rule, changes);
    this._level(sample, muted, changes);
    return changes;
  }

  _network(rule, changes) {
    const values = this.samples.slice(-WINDOW).map((s) => s[rule.metric]);
    if (values.some((v) => !finite(v))) return; // a gap: not enough to decide either way
    const threshold = rule.above !== undefined ? rule.above : rule.below;
    const crosses = (v) => (rule.above !== undefined ? v > rule.above : v < rule.below);
    const count = values.filter(crosses).length;
    if (count >= RAISE_AFTER) this._raise(rule.name, values[values.length - 1], threshold, changes);
    else if (count === 0) this._clear(rule.name, changes);
  }

  _average(rule, changes) {
    const values = this.samples.slice(-rule.samples).map((s) => s[rule.metric]);
    if (values.length < rule.samples || values.some((v) => !finite(v))) return;
    const average = values.reduce((sum, v) => sum + v, 0) / values.length;
    if (average > rule.maxAverage) this._raise(rule.name, round(average, 2), rule.maxAverage, changes);
    else if (average <= rule.clearValue) this._clear(rule.name, changes);
  }

  _level(sample, muted, changes) {
    if (muted) {
      // A muted call is silent on purpose.
      this.levels = [];
      this.levelSets = [];
      this._clear(LEVEL_WARNING, changes, true);
      return;
    }
    const readings = sample.inputLevels;
    if (Array.isArray(readings) && readings.length) {
      // Twilio's rule (statsMonitor.ts audioInputLevel {minStandardDeviation: 1 % of full
      // scale, sampleCount: 10}): one set of readings a second, the deviation of them all.
      this.levels = [];
      this.levelSets.push(readings);
      if (this.levelSets.length > LEVEL_WINDOW) this.levelSets.shift();
      if (this.levelSets.length === LEVEL_WINDOW) this._levelSpread(deviation(this.levelSets.flat()), changes);
      return;
    }
    this.levelSets = []; // no readings this second: the per-second levels decide
    const level = sample.inputLevel;
    if (!finite(level)) {
      this.levels = []; // a gap starts the count again
      return;
    }
    this.levels.push(level);
    if (this.levels.length > LEVEL_WINDOW) this.levels.shift();
    if (this.levels.length === LEVEL_WINDOW) this._levelSpread(deviation(this.levels), changes);
  }

  _levelSpread(spread, changes) {
    if (spread < LEVEL_MIN_DEVIATION) this._raise(LEVEL_WARNING, round(spread, 4), LEVEL_MIN_DEVIATION, changes);
    else this._clear(LEVEL_WARNING, changes);
  }

  _raise(name, value, threshold, changes) {
    if (this.active.has(name)) return;
    this.active.set(name, this.now());
    this.seen.add(name);
    changes.push({ name, raised: true, value, threshold });
  }

  _clear(name, changes, force = false) {
    const since = this.active.get(name);
    if (since === undefined || (!force && this.now() - since < MIN_RAISED_MS)) return;
    this.active.delete(name);
    changes.push({ name, raised: false });
  }
}

// -- reading getStats() -----------------------------------------------------------------------------

/**
 * What one stats report says of the call's audio: cumulative counters, the current RTT and
 * jitter (ms), the selected candidate pair's types and the codec. Works on an
 * RTCStatsReport or anything with forEach/get (a Map of plain objects in tests).
 */
export function readReport(report) {
  const out = {
    packetsReceived: 0,
    packetsLost: 0,
    jitter: null,
    rtt: null,
    relayRtt: null,
    energy: null,
    energyDuration: null,
    audioLevel: null,
    local: null,
    remote: null,
    codec: null,
  };
  const byId = new Map();
  let pairId = null;
  let codecId = null;
  report.forEach((stat) => byId.set(stat.id, stat));
  for (const stat of byId.values()) {
    const audio = stat.kind === "audio" || stat.mediaType === "audio";
    if (stat.type === "inbound-rtp" && audio) {
      out.packetsReceived += stat.packetsReceived || 0;
      out.packetsLost += Math.max(0, stat.packetsLost || 0);
      if (finite(stat.jitter)) out.jitter = stat.jitter * 1000;
      codecId = codecId || stat.codecId;
    } else if (stat.type === "outbound-rtp" && audio) {
      codecId = codecId || stat.codecId;
    } else if (stat.type === "remote-inbound-rtp" && audio && finite(stat.roundTripTime)) {
      out.relayRtt = stat.roundTripTime * 1000;
    } else if (stat.type === "media-source" && audio) {
      if (finite(stat.totalAudioEnergy) && finite(stat.totalSamplesDuration)) {
        out.energy = stat.totalAudioEnergy;
        out.energyDuration = stat.totalSamplesDuration;
      }
      if (finite(stat.audioLevel)) out.audioLevel = stat.audioLevel;
    } else if (stat.type === "transport" && stat.selectedCandidatePairId) {
      pairId = stat.selectedCandidatePairId;
    } else if (stat.type === "candidate-pair" && stat.selected && !pairId) {
      pairId = stat.id; // Firefox marks the pair instead of naming it on a transport
    }
  }
  const pair = pairId && byId.get(pairId);
  if (pair) {
    if (finite(pair.currentRoundTripTime)) out.rtt = pair.currentRoundTripTime * 1000;
    const local = byId.get(pair.localCandidateId);
    const remote = byId.get(pair.remoteCandidateId);
    out.local = (local && local.candidateType) || null;
    out.remote = (remote && remote.candidateType) || null;
  }
  if (out.rtt === null) out.rtt = out.relayRtt;
  const codec = codecId && byId.get(codecId);
  if (codec && typeof codec.mimeType === "string") out.codec = codec.mimeType.replace(/^audio\//i, "").toLowerCase();
  return out;
}

/**
 * One sample from two successive readings (`previous` null for the first): rtt and jitter
 * in ms, loss in percent over the interval, MOS, and the microphone's level (0..1: the RMS
 * over the interval where the browser reports audio energy, else its last level).
 */
export function sampleOf(reading, previous) {
  // A connection's counters start at zero: the first reading counts from there, but gives
  // no loss figure (nothing says over how long).
  const received = Math.max(0, reading.packetsReceived - (previous ? previous.packetsReceived : 0));
  const lost = Math.max(0, reading.packetsLost - (previous ? previous.packetsLost : 0));
  const loss = previous && received + lost > 0 ? (lost / (received + lost)) * 100 : null;
  let inputLevel = reading.audioLevel;
  if (previous && finite(reading.energy) && finite(previous.energy)) {
    const span = reading.energyDuration - previous.energyDuration;
    if (span > 0) inputLevel = Math.sqrt(Math.max(0, reading.energy - previous.energy) / span);
  }
  const rtt = reading.rtt;
  const jitter = reading.jitter;
  return {
    rtt: round(rtt, 1),
    jitter: round(jitter, 1),
    loss: round(loss, 2),
    mos: round(estimateMos(rtt, jitter, loss), 2),
    inputLevel: round(inputLevel, 4),
    received,
    lost,
  };
}

// -- the summary ---------------------------------------------------------------------------------------

function spread(values, worst) {
  const known = values.filter(finite);
  if (!known.length) return [null, null];
  const avg = known.reduce((sum, v) => sum + v, 0) / known.length;
  return [avg, worst(...known)];
}

/**
 * What a party reports at the end of an answered call (docs/protocol.md, "Quality
 * summary"): averages and worst values, whether media went through TURN, the codec and the
 * warnings raised. `loss` is over the whole call (packets lost of packets expected).
 */
export function summarize({ samples, received, lost, local, remote, codec, warnings }) {
  const [mosAvg, mosMin] = spread(
    samples.map((s) => s.mos),
    Math.min,
  );
  const [rttAvg, rttMax] = spread(
    samples.map((s) => s.rtt),
    Math.max,
  );
  const [jitterAvg, jitterMax] = spread(
    samples.map((s) => s.jitter),
    Math.max,
  );
  const [, lossMax] = spread(
    samples.map((s) => s.loss),
    Math.max,
  );
  const relayed = local || remote ? local === "relay" || remote === "relay" : null;
  const type = (value) => (["host", "srflx", "prflx", "relay"].includes(value) ? value : null);
  return {
    samples: samples.length,
    mosAvg: round(mosAvg, 2),
    mosMin: round(mosMin, 2),
    rttAvg: round(rttAvg, 1),
    rttMax: round(rttMax, 1),
    jitterAvg: round(jitterAvg, 1),
    jitterMax: round(jitterMax, 1),
    lossAvg: received + lost > 0 ? round((lost / (received + lost)) * 100, 2) : null,
    lossMax: round(lossMax, 2),
    relayed,
    localCandidate: type(local),
    remoteCandidate: type(remote),
    codec: typeof codec === "string" && /^[a-z0-9._/-]{1,32}$/.test(codec) ? codec : null,
    warnings: WARNING_NAMES.filter((name) => warnings.has(name)),
  };
}

// -- the microphone's level, as Twilio reads it -------------------------------------------------

/**
 * Reads the level of the microphone being sent as Twilio Voice JS does for its level
 * warning (rtc/peerconnection.ts): an AnalyserNode of 32-point FFTs, no smoothing, -127 dB
 * to 0 dB, read every 50 ms; a reading is the bins' average on that scale, 0 to 1.
 * `follow(track)` listens to a track (a new one after a device switch); `take()` gives the
 * readings since the last take, or null while it cannot listen: no AudioContext, or none
 * allowed to run yet (browsers start one only after a user gesture on the page; until
 * then none is made, so no autoplay warning either).
 */
export class LevelMeter {
  constructor({ AudioContext = globalThis.AudioContext, interval = LEVEL_READ_MS, activated } = {}) {
    this.AudioContext = AudioContext;
    this.interval = interval;
    this.activated =
      activated ||
      (() => {
        const activation = globalThis.navigator && globalThis.navigator.userActivation;
        return !activation || activation.hasBeenActive;
      });
    this.context = null;
    this.analyser = null;
    this.source = null;
    this.track = null;
    this.timer = null;
    this.readings = [];
  }

  get running() {
    return Boolean(this.source && this.context && this.context.state === "running");
  }

  follow(track) {
    if (track === this.track && (this.source || !track)) return;
    this.track = track;
    this._disconnect();
    if (!track || !this._open()) return;
    try {
      this.source = this.context.createMediaStreamSource(new MediaStream([track]));
      this.source.connect(this.analyser);
    } catch {
      this.source = null; // an ended track, a browser that cannot: the fallback decides
    }
  }

  take() {
    const readings = this.readings;
    this.readings = [];
    if (this.context && this.context.state === "suspended") this.context.resume().catch(() => {});
    return this.running && readings.length ? readings : null;
  }

  close() {
    this._disconnect();
    clearInterval(this.timer);
    this.timer = null;
    if (this.context) this.context.close().catch(() => {});
    this.context = null;
    this.analyser = null;
    this.track = null;
  }

  _open() {
    if (this.context) return true;
    if (typeof this.AudioContext !== "function" || !this.activated()) return false;
    try {
      this.context = new this.AudioContext();
      const analyser = this.context.createAnalyser();
      analyser.fftSize = 32;
      analyser.smoothingTimeConstant = 0;
      analyser.minDecibels = -127;
      analyser.maxDecibels = 0;
      this.analyser = analyser;
      this.bins = new Uint8Array(analyser.frequencyBinCount);
    } catch {
      this.context = null;
      return false;
    }
    if (this.context.state === "suspended") this.context.resume().catch(() => {});
    this.timer = setInterval(() => this._read(), this.interval);
    return true;
  }

  _read() {
    if (!this.running) return;
    this.analyser.getByteFrequencyData(this.bins);
    let sum = 0;
    for (const bin of this.bins) sum += bin;
    this.readings.push(sum / this.bins.length / 255);
  }

  _disconnect() {
    if (this.source) {
      try {
        this.source.disconnect();
      } catch {
        // already gone with its context
      }
    }
    this.source = null;
    this.readings = [];
  }
}

// -- the monitor ------------------------------------------------------------------------------------------

/** The microphone track a peer connection sends, or null. */
function sentMicrophone(pc) {
  if (typeof pc.getSenders !== "function") return null;
  const sender = pc.getSenders().find((s) => s.track && s.track.kind === "audio");
  return sender ? sender.track : null;
}

/**
 * Samples a call's peer connection every second while `start()`ed. Events (CustomEvent):
 * `sample` {rtt, jitter, loss, mos, inputLevel, bars}, `warning` {name, value, threshold},
 * `warningcleared` {name}. `attach(pc)` follows a replaced peer connection (a reload); the
 * samples, warnings and totals carry on. `summary()` is what the call reports at its end.
 */
export class QualityMonitor extends EventTarget {
  constructor({ isMuted = () => false, interval = SAMPLE_INTERVAL_MS, now, meter } = {}) {
    super();
    this.isMuted = isMuted;
    this.meter = meter || new LevelMeter();
    this.interval = interval;
    this.pc = null;
    this.previous = null;
    this.timer = null;
    this.busy = false;
    this.samples = [];
    this.received = 0;
    this.lost = 0;
    this.local = null;
    this.remote = null;
    this.codec = null;
    this.warnings = new QualityWarnings(now ? { now } : {});
  }

  attach(pc) {
    if (pc === this.pc) return;
    this.pc = pc;
    this.previous = null; // a new connection counts from zero
  }

  start() {
    if (this.timer || !this.pc) return;
    this.timer = setInterval(() => this.tick(), this.interval);
  }

  stop() {
    clearInterval(this.timer);
    this.timer = null;
    this.meter.close();
  }

  get activeWarnings() {
    return [...this.warnings.active.keys()];
  }

  /** Take one sample now (the timer calls this; tests may too). */
  async tick() {
    if (this.busy || !this.pc) return null;
    this.busy = true;
    let reading;
    const pc = this.pc;
    this.meter.follow(this.timer ? sentMicrophone(pc) : null); // only while started
    try {
      reading = readReport(await pc.getStats());
    } catch {
      return null; // a closed connection: nothing to read
    } finally {
      this.busy = false;
    }
    if (pc !== this.pc) return null;
    const sample = sampleOf(reading, this.previous);
    const readings = this.meter.take();
    this.previous = reading;
    this.received += sample.received;
    this.lost += sample.lost;
    this.local = reading.local || this.local;
    this.remote = reading.remote || this.remote;
    this.codec = reading.codec || this.codec;
    this.samples.push(sample);
    const { received, lost, ...shown } = sample;
    this._emit("sample", { ...shown, bars: barsOf(sample.mos) });
    // The second's level readings go to the rules only (not kept for the summary).
    const judged = readings ? { ...sample, inputLevels: readings } : sample;
    for (const change of this.warnings.push(judged, { muted: this.isMuted() })) {
      if (change.raised) this._emit("warning", { name: change.name, value: change.value, threshold: change.threshold });
      else this._emit("warningcleared", { name: change.name });
    }
    return sample;
  }

  _emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  /** The summary of the samples so far (see summarize()). */
  summary() {
    return summarize({
      samples: this.samples,
      received: this.received,
      lost: this.lost,
      local: this.local,
      remote: this.remote,
      codec: this.codec,
      warnings: this.warnings.seen,
    });
  }
}
