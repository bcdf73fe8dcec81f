// preflight(): is this browser ready for a call? Before a first call (a tutoring session,
// a shift) it checks the microphone (present, and producing sound), the signaling round
// trip, and a short media test through the account's TURN server: two peer connections in
// this page send the microphone to each other through the relay (relay-only ICE), and the
// path is measured as in a call (round-trip time, jitter, loss, MOS, warnings). The report
// grades it with Twilio's preflight bands (quality.js gradeOf). docs/js-api.md, "Preflight".

import { dcError, ERR, toError } from "./errors.js";
import { getMicrophone } from "./media.js";
import { gradeOf, QualityWarnings, readReport, sampleOf, summarize } from "./quality.js";

export const PREFLIGHT_DURATION_MS = 5000;
export const PREFLIGHT_TIMEOUT_MS = 10000;
const PINGS = 3;
// The microphone counts as producing sound when its level (RMS, 0..1) reached this.
const SOUND_LEVEL = 0.001;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const describe = (err) => (err && (err.message || err.name)) || String(err);
const isTurn = (url) => /^turns?:/i.test(url);
const round = (value, digits = 1) => (Number.isFinite(value) ? Number(value.toFixed(digits)) : null);

/** The signaling round trip: the median of a few ping/pong exchanges, in ms. */
async function signalingRoundTrip(signaling, timeoutMs) {
  const times = [];
  for (let i = 0; i < PINGS; i++) {
    const started = performance.now();
    const pong = new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        signaling.removeEventListener("frame", onFrame);
        reject(new Error(`no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      const onFrame = (event) => {
        if (event.detail.type !== "pong") return;
        clearTimeout(timer);
        signaling.removeEventListener("frame", onFrame);
        resolve();
      };
      signaling.addEventListener("frame", onFrame);
    });
    if (!signaling.send({ type: "ping" })) throw new Error("the signaling connection is down");
    await pong;
    times.push(performance.now() - started);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}

/** Two peer connections of this page wired to each other; relay-only when `relay`. */
function loopback(iceServers, relay, stream) {
  const config = { iceServers, iceTransportPolicy: relay ? "relay" : "all" };
  const sender = new RTCPeerConnection(config);
  const receiver = new RTCPeerConnection(config);
  const gathered = { relay: 0, errors: [] };
  sender.onicecandidate = (e) => {
    if (e.candidate && e.candidate.candidate) {
      if (/ typ relay/.test(e.candidate.candidate)) gathered.relay += 1;
      receiver.addIceCandidate(e.candidate).catch(() => {});
    }
  };
  receiver.onicecandidate = (e) => e.candidate && e.candidate.candidate && sender.addIceCandidate(e.candidate).catch(() => {});
  sender.onicecandidateerror = (e) => gathered.errors.push(e.errorCode ? `${e.errorCode} ${e.errorText || ""}`.trim() : "error");
  for (const track of stream.getAudioTracks()) sender.addTrack(track, stream);
  return { sender, receiver, gathered, close: () => [sender, receiver].forEach((pc) => pc.close()) };
}

async function connect({ sender, receiver }, timeoutMs) {
  const offer = await sender.createOffer({ offerToReceiveAudio: false });
  await sender.setLocalDescription(offer);
  await receiver.setRemoteDescription(offer);
  const answer = await receiver.createAnswer();
  await receiver.setLocalDescription(answer);
  await sender.setRemoteDescription(answer);
  const until = Date.now() + timeoutMs;
  while (Date.now() < until) {
    const state = sender.iceConnectionState;
    if (state === "connected" || state === "completed") return true;
    if (state === "failed") return false;
    await sleep(100);
  }
  return false;
}

/**
 * Run the checks. `env`: `{signaling, iceServers, getMicrophone?}` of a signed-in client.
 * Options: `duration` of the media test (ms, 1 000 to 30 000, default 5 000), `timeout`
 * for connecting (ms, default 10 000). Never rejects for a failed check: the report says
 * what failed (`ok: false`, each part's `error`).
 */
export async function runPreflight(env, { duration = PREFLIGHT_DURATION_MS, timeout = PREFLIGHT_TIMEOUT_MS } = {}) {
  const started = Date.now();
  const testMs = Math.min(30000, Math.max(1000, Number(duration) || PREFLIGHT_DURATION_MS));
  const waitMs = Math.max(1000, Number(timeout) || PREFLIGHT_TIMEOUT_MS);
  const iceServers = env.iceServers || [];
  const turn = iceServers.some((server) => [].concat(server.urls || []).some(isTurn));
  const report = {
    ok: false,
    grade: null,
    microphone: { ok: false, label: null, level: null, error: null },
    signaling: { ok: false, rtt: null, error: null },
    media: {
      ok: false,
      turn,
      relayed: null,
      rtt: null,
      jitter: null,
      loss: null,
      mos: null,
      codec: null,
      samples: 0,
      error: null,
    },
    warnings: [],
    duration: null,
  };

  try {
    report.signaling.rtt = round(await signalingRoundTrip(env.signaling, waitMs));
    report.signaling.ok = true;
  } catch (err) {
    report.signaling.error = `Signaling round trip failed: ${describe(err)}`;
  }

  let stream;
  try {
    stream = await (env.getMicrophone || getMicrophone)();
    report.microphone.label = (stream.getAudioTracks()[0] || {}).label || "";
  } catch (err) {
    report.microphone.error = toError(err, ERR.MIC_UNAVAILABLE).message;
    report.media.error = "No microphone to send.";
    report.duration = Date.now() - started;
    return report;
  }

  const pair = loopback(iceServers, turn, stream);
  const warnings = new QualityWarnings();
  const samples = [];
  let received = 0;
  let lost = 0;
  let level = 0;
  let previous = null;
  let previousSent = null;
  let sent = null;
  let reading = null;
  try {
    const connected = await connect(pair, waitMs);
    if (!connected) {
      const why = turn && pair.gathered.relay === 0 ? "the TURN server could not be reached" : "no media path was found";
      const errors = pair.gathered.errors.length ? ` (${[...new Set(pair.gathered.errors)].join(", ")})` : "";
      report.media.error = `The media test could not connect: ${why}${errors}.`;
    } else {
      for (let elapsed = 0; elapsed < testMs; elapsed += 1000) {
        await sleep(1000);
        reading = readReport(await pair.receiver.getStats());
        sent = readReport(await pair.sender.getStats());
        reading.rtt = sent.rtt; // the sender's candidate pair measures the round trip
        const sample = sampleOf(reading, previous);
        const sentLevel = sampleOf(sent, previousSent).inputLevel; // the microphone's level
        previousSent = sent;
        previous = reading;
        received += sample.received;
        lost += sample.lost;
        level = Math.max(level, sentLevel || 0);
        samples.push(sample);
        warnings.push({ ...sample, inputLevel: null });
      }
    }
  } catch (err) {
    report.media.error = `The media test failed: ${describe(err)}`;
  } finally {
    pair.close();
    stream.getTracks().forEach((track) => track.stop());
  }

  report.microphone.level = round(level, 4);
  report.microphone.ok = level >= SOUND_LEVEL;
  if (!report.microphone.ok && !report.microphone.error) {
    report.microphone.error = samples.length
      ? "The microphone is silent: check that it is not muted or switched off."
      : "The microphone's sound could not be measured (the media test did not run).";
  }
  if (samples.length) {
    const summary = summarize({
      samples,
      received,
      lost,
      local: sent && sent.local,
      remote: sent && sent.remote,
      codec: reading && reading.codec,
      warnings: warnings.seen,
    });
    Object.assign(report.media, {
      ok: true,
      relayed: summary.relayed,
      rtt: { avg: summary.rttAvg, max: summary.rttMax },
      jitter: { avg: summary.jitterAvg, max: summary.jitterMax },
      loss: summary.lossAvg,
      mos: { avg: summary.mosAvg, min: summary.mosMin },
      codec: summary.codec,
      samples: summary.samples,
    });
    report.warnings = summary.warnings;
    report.grade = gradeOf(summary.mosAvg);
  }
  report.ok = report.microphone.ok && report.signaling.ok && report.media.ok;
  report.duration = Date.now() - started;
  return report;
}

/** client.preflight(): refused while a call is in progress or after logout(). */
export function preflight(client, options) {
  if (client.loggedOut) return Promise.reject(dcError(ERR.NOT_INITIALIZED));
  if (client.current) return Promise.reject(dcError(ERR.OUTGOING_CALL_IN_PROGRESS));
  const env = {
    signaling: client.signaling,
    iceServers: client.session.iceServers,
    getMicrophone: client.devices ? () => client.devices.openMicrophone() : undefined,
  };
  return runPreflight(env, options || {});
}
