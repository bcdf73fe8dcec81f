// One call, as caller or callee: its declared state, its media, and its one way to end.
//
// The client (client.js) signs in, keeps the connection and hands each call the frames
// about it; a Call speaks the call's part of the protocol and emits named events, which
// the client forwards to the page (docs/js-api.md) and the built-in screens follow.
//
// Three states, kept apart as in a phone call:
//   status           the call itself, in the server's words: initiated → ringing → answered,
//                    then one final status (over, declined, missed, cancelled, busy, failed)
//                    entered only through finish()
//   mediaStatus      idle → connecting → open ⇄ reconnecting → closed
//   signalingStatus  open ⇄ reconnecting: whether our connection, since it last dropped,
//                    came back with this call still live on the server
//
// Events (CustomEvent, `detail` in braces):
//   placed {callId}                 the server took the caller's invite: the call has its id
//   statechange {callId, role, status}
//   connecting {callId}             the callee is answering (microphone, media)
//   answered {callId}               answered and the remote description applied
//   media {callId, state}           the media path is connected
//   reconnecting {on}               the call is (no longer) trying to get its connection back
//   peer {callId, connected}        the other party's connection dropped / came back
//   mute {callId, muted}
//   error {code, message}           something about this call failed that did not end it by
//                                   itself (ERR_MIC_UNAVAILABLE, ERR_MEDIA_FAILED, …)
//   end {callId, role, status, reason, duration}   once, from finish()

import { dcError, ERR, toError } from "./errors.js";
import { getMicrophone, Media } from "./media.js";
import { callOutcome, isFinal } from "./outcome.js";

export const ICE_RESTART_AFTER_MS = 2000;
export const ICE_GIVE_UP_MS = 20000;
// Back on line, but the server did not list the call: how long its `state` frame may take.
export const STATE_AFTER_RESUME_MS = 3000;

/** The steps `status` may take before the end (a repeated or stale state frame is ignored). */
const NEXT = Object.freeze({
  initiated: ["ringing", "answered"],
  ringing: ["answered"],
  answered: [],
});

const stopTracks = (stream) => stream.getTracks().forEach((track) => track.stop());
const describe = (err) => (err && (err.message || err.name)) || String(err);

export class Call extends EventTarget {
  /**
   * @param {object} init  what is known of the call (a caller's has no id until `placed`)
   * @param {"caller"|"callee"} init.role
   * @param {string|null} [init.id]
   * @param {{cuid: string, name: string}} init.peer  the other party
   * @param {string} init.context
   * @param {string|null} [init.image]  the other party's picture
   * @param {string|null} [init.offer]  the caller's SDP offer (callee side)
   * @param {string} [init.status]  a non-final status (default "initiated")
   * @param {number|null} [init.answeredAt]  ms since the epoch, when answered
   * @param {object} env  what the call uses of its device
   * @param {{ready: boolean, send: Function, request: Function}} env.signaling
   * @param {(stream: MediaStream, onCandidates: Function) => Media} [env.createMedia]
   * @param {() => Promise<MediaStream>} [env.getMicrophone]
   */
  constructor(init, env) {
    super();
    this.id = init.id || null;
    this.role = init.role;
    this.peer = { cuid: String(init.peer.cuid), name: String(init.peer.name) };
    this.context = init.context;
    this.image = init.image || null;
    this.offer = init.offer || null;
    this.status = init.status && init.status in NEXT ? init.status : "initiated";
    this.answeredAt = init.answeredAt || null;
    this.mediaStatus = "idle";
    this.signalingStatus = "open";
    this.reason = null; // the end reason, once over
    this.muted = false;
    this.showScreens = false; // the client decides: the built-in screens follow this call
    this.notification = null; // the browser notification of a ringing call, closed at the end
    this.media = null;
    this.signaling = env.signaling;
    this.getMicrophone = env.getMicrophone || getMicrophone;
    this.createMedia = env.createMedia || ((stream, onCandidates) => new Media(stream, { onCandidates }));
    this.remoteCandidates = []; // the caller's, until the callee has media
    this.heldCandidates = []; // ours, until the caller's invite has an id
    this.cancelWhenPlaced = false; // hung up while the invite was in flight
    this.timers = new Map(); // name -> timeout id; finish() clears them all
    // What call() settles with (the caller's only; see outcome.js).
    this.result = new Promise((resolve, reject) => {
      this._settle = { resolve, reject };
    });
    if (this.role !== "caller") this.result.catch(() => {});
  }

  get isOver() {
    return isFinal(this.status);
  }

  /** `{callId, role, status, peer}`, as `client.activeCall` shows it. */
  summary() {
    return { callId: this.id, role: this.role, status: this.status, peer: { ...this.peer } };
  }

  _emit(type, detail = {}) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  _advance(status) {
    if (!(NEXT[this.status] || []).includes(status)) return false;
    this.status = status;
    this._emit("statechange", { callId: this.id, role: this.role, status });
    return true;
  }

  _setTimer(name, fn, ms) {
    this._clearTimer(name);
    this.timers.set(
      name,
      setTimeout(() => {
        this.timers.delete(name);
        fn();
      }, ms),
    );
  }

  _clearTimer(name) {
    clearTimeout(this.timers.get(name));
    this.timers.delete(name);
  }

  _send(frame) {
    return this.signaling.send({ ...frame, call_id: this.id });
  }

  // -- placing (caller) ----------------------------------------------------------------------

  /** Microphone, offer, invite. Never rejects: a failure finishes the call with its error. */
  async place({ receiver, receiverImage = null, initiatorImage = null }) {
    try {
      await this._place(receiver, receiverImage, initiatorImage);
    } catch (err) {
      this.finish("failed", "", { error: toError(err, ERR.MEDIA_FAILED) });
    }
  }

  async _place(receiver, receiverImage, initiatorImage) {
    const stream = await this.getMicrophone();
    if (this.isOver) return stopTracks(stream);
    this._startMedia(stream);
    const sdp = await this.media.createOffer();
    if (this.isOver) return;
    const invited = await this.signaling.request({
      type: "invite",
      receiver,
      context: this.context,
      sdp,
      receiver_image: receiverImage,
      initiator_image: initiatorImage,
    });
    this.id = invited.call_id;
    if (this.isOver) return this._send({ type: "cancel" }); // ended locally meanwhile
    if (invited.receiver && typeof invited.receiver.name === "string") this.peer.name = invited.receiver.name;
    for (const batch of this.heldCandidates.splice(0)) this._sendCandidates(batch);
    this._emit("placed", { callId: this.id });
    if (this.cancelWhenPlaced) this._send({ type: "cancel" });
  }

  _startMedia(stream) {
    this.mediaStatus = "connecting";
    this.media = this.createMedia(stream, (batch) => this._sendCandidates(batch));
    this.media.addEventListener("ice", (event) => this._onIce(event.detail));
  }

  _sendCandidates(batch) {
    if (this.id) this._send({ type: "candidates", ...batch });
    else this.heldCandidates.push(batch);
  }

  // -- answering (callee) --------------------------------------------------------------------

  /** Answer a ringing incoming call. A refused microphone or an unusable offer declines it. */
  async answer() {
    if (this.role !== "callee" || this.isOver || this.mediaStatus !== "idle") return;
    this.mediaStatus = "connecting";
    this._emit("connecting", { callId: this.id });
    let stream;
    try {
      stream = await this.getMicrophone();
    } catch (error) {
      return this._declineFor("user_media_failed", error);
    }
    if (this.isOver) return stopTracks(stream);
    this._startMedia(stream);
    let sdp;
    try {
      sdp = await this.media.acceptOffer(this.offer);
    } catch (err) {
      if (this.isOver) return; // closed under us: the call ended meanwhile
      const message = `The caller's offer could not be used: ${describe(err)}`;
      return this._declineFor("user_media_failed", dcError(ERR.MEDIA_FAILED, message));
    }
    if (this.isOver) return;
    await this.media.addRemoteCandidates(this.remoteCandidates.splice(0));
    this._send({ type: "accept", sdp });
  }

  _declineFor(reason, error) {
    this._send({ type: "decline", reason });
    this._emit("error", error);
    this.finish("declined", reason);
  }

  /** Decline a ringing incoming call. */
  decline() {
    if (this.role !== "callee" || this.isOver) return;
    this._send({ type: "decline" });
    if (!this.signaling.ready) this.finish("declined", "user_declined");
  }

  // -- in the call -----------------------------------------------------------------------------

  /** Hang up an answered call, cancel a ringing one, or decline an incoming one. */
  hangup() {
    if (this.isOver) return;
    if (this.role === "callee" && this.status !== "answered") return this.decline();
    if (!this.id) {
      this.cancelWhenPlaced = true;
      // Nothing has left the browser before the microphone answered: end at once.
      if (this.mediaStatus === "idle") this.finish("cancelled", "caller_cancelled");
      return;
    }
    const answered = this.status === "answered";
    if (!this._send({ type: answered || this.role === "callee" ? "hangup" : "cancel" })) {
      this.finish(answered ? "over" : "cancelled", "user_hangup");
    }
  }

  setMuted(muted) {
    if (!this.media) return;
    this.media.setMuted(muted);
    this.muted = muted;
    this._emit("mute", { callId: this.id, muted });
  }

  /** A frame from the server about this call: state, candidates, renegotiate or peer. */
  handleFrame(frame) {
    if (this.isOver) return;
    if (frame.type === "state") this._onState(frame);
    else if (frame.type === "candidates") this._onCandidates(frame.candidates);
    else if (frame.type === "renegotiate") this._onRenegotiate(frame);
    else if (frame.type === "peer") this._emit("peer", { callId: this.id, connected: !!frame.connected });
  }

  async _onState(frame) {
    const status = frame.status;
    if (isFinal(status)) return this.finish(status, frame.reason || "");
    if (!this._advance(status) || status !== "answered") return;
    this.answeredAt = Date.now();
    if (this.role === "caller" && frame.sdp) {
      try {
        await this.media.setAnswer(frame.sdp);
      } catch (err) {
        if (this.isOver) return;
        const message = `The callee's answer could not be used: ${describe(err)}`;
        this._emit("error", dcError(ERR.MEDIA_FAILED, message));
        this._send({ type: "hangup", reason: "ice_failed" });
        return;
      }
    }
    if (!this.isOver) this._emit("answered", { callId: this.id });
  }

  _onCandidates(candidates) {
    if (!Array.isArray(candidates)) return;
    // Media buffers candidates until the remote description is set; a callee that has not
    // answered has no media yet, so they wait here.
    if (this.media) this.media.addRemoteCandidates(candidates);
    else this.remoteCandidates.push(...candidates);
  }

  async _onRenegotiate(frame) {
    if (!this.media) return;
    let sdp;
    try {
      sdp = await this.media.renegotiate(frame.sdp_type, frame.sdp);
    } catch (err) {
      if (this.isOver) return;
      this._emit("error", dcError(ERR.MEDIA_FAILED, `Renegotiation failed: ${describe(err)}`));
      // Renegotiation only restarts ICE. If our media path is up, it is untouched; if not,
      // this is the ICE failure path: retry after a pause, end with ice_failed if it stays down.
      if (!this.media.connected) this._mediaTrouble(ICE_RESTART_AFTER_MS);
      return;
    }
    if (sdp && !this.isOver) this._send({ type: "renegotiate", sdp_type: "answer", sdp });
  }

  // -- connectivity ------------------------------------------------------------------------------

  _onIce(state) {
    if (this.isOver) return;
    this._clearTimer("iceRestart");
    if (state === "connected" || state === "completed") {
      this._clearTimer("iceGiveUp");
      this.mediaStatus = "open";
      if (this.signaling.ready) this._emit("reconnecting", { on: false });
      this._emit("media", { callId: this.id, state });
    } else if (state === "disconnected" || state === "failed") {
      this._mediaTrouble(state === "failed" ? 0 : ICE_RESTART_AFTER_MS);
    }
  }

  /** The media path is down: restart ICE after `restartAfterMs`; give up after ICE_GIVE_UP_MS. */
  _mediaTrouble(restartAfterMs) {
    this.mediaStatus = "reconnecting";
    this._emit("reconnecting", { on: true });
    this._setTimer("iceRestart", () => this.restartIce(), restartAfterMs);
    if (this.timers.has("iceGiveUp")) return;
    this._setTimer(
      "iceGiveUp",
      () => {
        this._send({ type: "hangup", reason: "ice_failed" });
        this.finish("failed", "ice_failed", { lostLocally: true });
      },
      ICE_GIVE_UP_MS,
    );
  }

  /** An ICE restart, when answered and the media path is down. Only the caller restarts, so
   * the two sides never offer at once. */
  async restartIce() {
    if (this.role !== "caller" || this.status !== "answered" || !this.media || this.media.connected) return;
    let sdp;
    try {
      sdp = await this.media.restartIce();
    } catch {
      return; // retried on the next ICE state change; the give-up timer is running
    }
    if (!this.isOver) this._send({ type: "renegotiate", sdp_type: "offer", sdp });
  }

  /** Our signaling connection dropped; `final` when it will not come back. */
  signalingLost({ final, graceMs }) {
    if (this.isOver) return;
    if (final) return this.finish("over", "connection_lost", { lostLocally: true });
    this.signalingStatus = "reconnecting";
    this._emit("reconnecting", { on: true });
    this._setTimer(
      "signalingGiveUp",
      () => {
        if (!this.signaling.ready) this.finish("over", "connection_lost", { lostLocally: true });
      },
      graceMs,
    );
  }

  /** Our signaling is back; `live` tells whether the server's `ready` still lists this call. */
  signalingBack(live) {
    if (this.isOver) return;
    this._clearTimer("signalingGiveUp");
    if (!live) {
      // The call ended while we were away; the server's `state` frame (asked for with
      // `resume`) tells how — the peer may simply have hung up. If none comes, the drop ended it.
      const lost = () => this.finish("over", "connection_lost", { lostLocally: true });
      this._setTimer("signalingGiveUp", lost, STATE_AFTER_RESUME_MS);
      return;
    }
    this.signalingStatus = "open";
    if (this.media && this.media.connected) this._emit("reconnecting", { on: false });
    this.restartIce();
  }

  // -- the end -------------------------------------------------------------------------------------

  /**
   * End the call here, once: stop timers and media, emit `end`, settle `result`.
   * @param {string} status  a final status
   * @param {string} [reason]
   * @param {{error?: object, lostLocally?: boolean}} [how]  `error` rejects call() with it;
   *   `lostLocally`: our own connection or media ended the call
   */
  finish(status, reason = "", { error = null, lostLocally = false } = {}) {
    if (this.isOver) return;
    if (!isFinal(status)) throw new TypeError(`finish() needs a final status, not ${status}`);
    const signalingDown = this.signalingStatus !== "open";
    this.status = status;
    this.reason = reason;
    for (const timer of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    if (this.media) this.media.close();
    this.mediaStatus = "closed";
    if (this.notification) this.notification.close();
    const duration = this.answeredAt ? (Date.now() - this.answeredAt) / 1000 : null;
    this._emit("end", { callId: this.id, role: this.role, status, reason, duration });
    const answered = this.answeredAt !== null;
    const outcome = callOutcome({ status, reason, answered, lostLocally, signalingDown, error });
    if ("resolve" in outcome) this._settle.resolve(outcome.resolve);
    else this._settle.reject(outcome.reject);
  }
}
