// The WebRTC side of one call: microphone, peer connection, trickled and batched ICE
// candidates, remote audio, mute, and ICE restarts.
//
// Events: ice (detail: the ICE connection state), audioblocked (the browser refused to play
// the remote audio without a user gesture; playRemote() from a click retries).

import { dcError, ERR } from "./errors.js";

const CANDIDATE_BATCH_MS = 40;

/**
 * Ask for the microphone (`deviceId`: that one, else the default); rejects with
 * `ERR_MIC_UNAVAILABLE`.
 */
export async function getMicrophone(deviceId = null) {
  if (!navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
    throw dcError(ERR.MIC_UNAVAILABLE, "This browser cannot capture audio.");
  }
  const audio = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
  if (deviceId) audio.deviceId = { exact: deviceId };
  try {
    return await navigator.mediaDevices.getUserMedia({ audio, video: false });
  } catch (err) {
    throw dcError(ERR.MIC_UNAVAILABLE, `Microphone unavailable: ${(err && err.name) || err}`);
  }
}

export class Media extends EventTarget {
  /**
   * @param {MediaStream} stream  the local microphone
   * @param {object} options
   * @param {RTCIceServer[]} [options.iceServers]
   * @param {"all"|"relay"} [options.iceTransportPolicy]
   * @param {(batch: {candidates: object[], end: boolean}) => void} options.onCandidates
   *   receives our ICE candidates in batches (the last one with `end: true`)
   */
  constructor(stream, { iceServers = [], iceTransportPolicy = "all", onCandidates }) {
    super();
    this.stream = stream;
    this.onCandidates = onCandidates;
    this.queue = [];
    this.flushTimer = null;
    this.remoteReady = false;
    this.pendingRemote = [];
    this.pc = new RTCPeerConnection({
      iceServers: iceServers || [],
      iceTransportPolicy: iceTransportPolicy === "relay" ? "relay" : "all",
    });
    for (const track of stream.getAudioTracks()) this.pc.addTrack(track, stream);
    this._preferOpus();
    this.audio = new Audio();
    this.audio.autoplay = true;
    this.audioBlocked = false;
    this.pc.ontrack = (event) => {
      this.audio.srcObject = event.streams[0] || new MediaStream([event.track]);
      this.playRemote().catch(() => {});
    };
    this.pc.onicecandidate = (event) => this._queueCandidate(event.candidate);
    this.pc.oniceconnectionstatechange = () =>
      this.dispatchEvent(new CustomEvent("ice", { detail: this.pc.iceConnectionState }));
  }

  /** Whether the media path is up now (ICE connected or completed). */
  get connected() {
    const state = this.pc.iceConnectionState;
    return state === "connected" || state === "completed";
  }

  _preferOpus() {
    if (typeof RTCRtpSender === "undefined" || !RTCRtpSender.getCapabilities) return;
    const caps = RTCRtpSender.getCapabilities("audio");
    if (!caps) return;
    const opus = caps.codecs.filter((c) => /opus/i.test(c.mimeType));
    const rest = caps.codecs.filter((c) => !/opus/i.test(c.mimeType));
    for (const transceiver of this.pc.getTransceivers()) {
      if (transceiver.setCodecPreferences && opus.length) {
        try {
          transceiver.setCodecPreferences([...opus, ...rest]);
        } catch {
          /* keep the browser's order */
        }
      }
    }
  }

  _queueCandidate(candidate) {
    if (candidate && candidate.candidate) {
      this.queue.push({
        candidate: candidate.candidate,
        sdpMid: candidate.sdpMid,
        sdpMLineIndex: candidate.sdpMLineIndex,
        usernameFragment: candidate.usernameFragment || null,
      });
      if (!this.flushTimer) this.flushTimer = setTimeout(() => this._flush(false), CANDIDATE_BATCH_MS);
    } else {
      this._flush(true); // end of candidates
    }
  }

  _flush(end) {
    clearTimeout(this.flushTimer);
    this.flushTimer = null;
    const candidates = this.queue.splice(0, 64);
    if (candidates.length || end) this.onCandidates({ candidates, end });
    if (this.queue.length) this._flush(end);
  }

  async createOffer() {
    const offer = await this.pc.createOffer();
    await this.pc.setLocalDescription(offer);
    return this.pc.localDescription.sdp;
  }

  async acceptOffer(sdp) {
    await this._setRemote({ type: "offer", sdp });
    const answer = await this.pc.createAnswer();
    await this.pc.setLocalDescription(answer);
    return this.pc.localDescription.sdp;
  }

  async setAnswer(sdp) {
    await this._setRemote({ type: "answer", sdp });
  }

  async _setRemote(description) {
    await this.pc.setRemoteDescription(description);
    this.remoteReady = true;
    const pending = this.pendingRemote.splice(0);
    for (const candidate of pending) await this._addCandidate(candidate);
  }

  async addRemoteCandidates(candidates) {
    for (const candidate of candidates || []) {
      if (this.remoteReady) await this._addCandidate(candidate);
      else this.pendingRemote.push(candidate);
    }
  }

  async _addCandidate(candidate) {
    try {
      await this.pc.addIceCandidate(candidate);
    } catch {
      /* a stale candidate (e.g. from before an ICE restart) is harmless */
    }
  }

  /** An ICE-restart offer (sent as a `renegotiate` frame). */
  async restartIce() {
    const offer = await this.pc.createOffer({ iceRestart: true });
    await this.pc.setLocalDescription(offer);
    return this.pc.localDescription.sdp;
  }

  /** Apply a `renegotiate` frame; returns the answer SDP when it was an offer. */
  async renegotiate(sdpType, sdp) {
    if (sdpType === "offer") {
      await this.pc.setRemoteDescription({ type: "offer", sdp });
      const answer = await this.pc.createAnswer();
      await this.pc.setLocalDescription(answer);
      return this.pc.localDescription.sdp;
    }
    await this.pc.setRemoteDescription({ type: "answer", sdp });
    return null;
  }

  /**
   * Play the remote audio. When the browser's autoplay policy refuses (NotAllowedError: no
   * user gesture yet, as after a reload), emits `audioblocked` and rejects; calling this again
   * from a click plays it.
   */
  async playRemote() {
    if (!this.audio.srcObject) return;
    try {
      await this.audio.play();
      this.audioBlocked = false;
    } catch (err) {
      if (err && err.name === "NotAllowedError" && this.audio.srcObject) {
        this.audioBlocked = true;
        this.dispatchEvent(new CustomEvent("audioblocked"));
      }
      throw err;
    }
  }

  setMuted(muted) {
    for (const track of this.stream.getAudioTracks()) track.enabled = !muted;
  }

  /**
   * Send `stream`'s audio instead of the current microphone's: the sender's track is
   * replaced (no renegotiation), then the old microphone is stopped.
   */
  async replaceMicrophone(stream) {
    const track = stream.getAudioTracks()[0];
    const sender = this.pc.getSenders().find((s) => !s.track || s.track.kind === "audio");
    if (sender) await sender.replaceTrack(track);
    const old = this.stream;
    this.stream = stream;
    for (const t of old.getTracks()) if (t !== track) t.stop();
  }

  /** Play the other party through the speaker `deviceId` ("" is the default). */
  async setSpeaker(deviceId) {
    if (typeof this.audio.setSinkId === "function") await this.audio.setSinkId(deviceId || "");
  }

  /** Close the peer connection; the microphone too unless `keepStream` (a replacement). */
  close({ keepStream = false } = {}) {
    clearTimeout(this.flushTimer);
    this.pc.onicecandidate = null;
    this.pc.ontrack = null;
    this.pc.oniceconnectionstatechange = null;
    try {
      this.pc.close();
    } catch {
      /* already closed */
    }
    if (!keepStream) for (const track of this.stream.getTracks()) track.stop();
    this.audio.srcObject = null;
  }
}
