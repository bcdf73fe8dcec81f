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
//   audioblocked {callId, kind}     the browser refused to play the remote audio ("remote")
//                                   without a user gesture; a click may retry (media.playRemote)
//   error {code, message}           something about this call failed that did not end it by
//                                   itself (ERR_MIC_UNAVAILABLE, ERR_MEDIA_FAILED, …)
//   quality {callId, rtt, jitter, loss, mos, inputLevel, bars}   each second of media
//   warning {callId, name, value, threshold} / warningcleared {callId, name}   (quality.js)
//   end {callId, role, status, reason, duration, quality}   once, from finish(); quality: the
//                                   summary this side reports (null for an unanswered call)

import { dcError, ERR, toError } from "./errors.js";
import { getMicrophone, Media } from "./media.js";
import { ANSWERED_ELSEWHERE, callOutcome, isFinal } from "./outcome.js";
import { QualityMonitor } from "./quality.js";

export const ICE_RESTART_AFTER_MS = 2000;
export const ICE_GIVE_UP_MS = 20000;
// Back on line, but the server did not list the call: how long its `state` frame may take.
export const STATE_AFTER_RESUME_MS = 3000;
// A replace offer (after a reload) not answered yet is sent again this often: the other
// side's tab may have been between connections when the first one went out.
export const REPLACE_RETRY_MS = 2500;
// Seconds past the server's ring timeout after which a callee stops ringing on its own.
export const RING_BOUND_MARGIN_S = 5;

/** The steps `status` may take before the end (a repeated or stale state frame is ignored). */
const NEXT = Object.freeze({
  initiated: ["ringing", "answered"],
  ringing: ["answered"],
  answered: [],
});

const stopTracks = (stream) => stream.getTracks().forEach((track) => track.stop());
const describe = (err) => (err && (err.message || err.name)) || String(err);

export class Call extends EventTarget {
  /** The ringing callee side of an `incoming` frame. */
  static incoming(frame, env) {
    const caller = frame.caller || {};
    return new Call(
      {
        role: "callee",
        id: frame.call_id,
        peer: { cuid: caller.cuid || "", name: caller.name || caller.cuid || "" },
        image: caller.image || null,
        context: String(frame.context || ""),
        offer: frame.sdp,
      },
      env,
    );
  }

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
   * @param {string|null} [init.callKey]  the server's proof that this tab holds the call
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
    this.callKey = init.callKey || null;
    // Media made anew after a reload: our replace offer waits for its answer.
    this.replacing = false;
    this.replaceOffer = null; // the SDP of that offer (sent again until answered)
    this.lastReplace = null; // {offer, answer}: the replace offer we answered last
    this.appliedReplaceAnswer = null; // the answer to our replace offer, once applied
    this.pendingReplace = null; // a replace offer that came before our microphone (callee)
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
    // Measures the media each second (quality.js); its summary goes to the server at the end.
    this.quality = new QualityMonitor({ isMuted: () => this.muted });
    for (const type of ["sample", "warning", "warningcleared"]) {
      this.quality.addEventListener(type, (e) => this._emit(type === "sample" ? "quality" : type, { callId: this.id, ...e.detail }));
    }
    this.reportedQuality = null; // the quality summary, once sent with our hangup
    this.sendLater = env.sendLater || ((frame) => this.signaling.send(frame));
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
    // The party that hangs up an answered call reports its quality with it (docs/protocol.md).
    const report = frame.type === "hangup" && this.answeredAt !== null && !this.reportedQuality;
    const full = report ? { ...frame, call_id: this.id, quality: this.quality.summary() } : { ...frame, call_id: this.id };
    const sent = this.signaling.send(full);
    if (sent && report) this.reportedQuality = full.quality;
    return sent;
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
    this.callKey = typeof invited.call_key === "string" ? invited.call_key : null;
    if (this.isOver) return this._send({ type: "cancel" }); // ended locally meanwhile
    if (invited.receiver && typeof invited.receiver.name === "string") this.peer.name = invited.receiver.name;
    for (const batch of this.heldCandidates.splice(0)) this._sendCandidates(batch);
    this._emit("placed", { callId: this.id });
    if (this.cancelWhenPlaced) this._send({ type: "cancel" });
  }

  _startMedia(stream) {
    this.mediaStatus = "connecting";
    const media = this.createMedia(stream, (batch) => {
      if (this.media === media) this._sendCandidates(batch); // not a replaced connection's
    });
    media.addEventListener("ice", (event) => {
      if (this.media === media) this._onIce(event.detail);
    });
    media.addEventListener("audioblocked", () => {
      if (this.media === media) this._emit("audioblocked", { callId: this.id, kind: "remote" });
    });
    this.media = media;
    if (media.pc) this.quality.attach(media.pc);
    return media;
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

  /**
   * End a ringing incoming call as missed if no final state arrives within the ring timeout the
   * server gave (plus a margin): a lost message must never leave a screen ringing for ever.
   */
  boundRinging(ringTimeoutSeconds) {
    const seconds = Number(ringTimeoutSeconds);
    if (this.role !== "callee" || this.isOver || !Number.isFinite(seconds) || seconds < 0) return;
    this._setTimer(
      "ringBound",
      () => {
        if (this.isOver || this.status === "answered") return;
        // Answering when the ring ran out: the server refused or never heard the accept.
        if (this.mediaStatus !== "idle") this._send({ type: "hangup" });
        this.finish("missed", "invite_timeout");
      },
      (seconds + RING_BOUND_MARGIN_S) * 1000,
    );
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
    else if (frame.type === "peer") this._onPeer(!!frame.connected);
  }

  _onPeer(connected) {
    this._emit("peer", { callId: this.id, connected });
    // The other side's tab is back (a reload, a new connection): it may have missed our offer.
    if (connected && this.replacing) this._sendReplaceOffer();
  }

  async _onState(frame) {
    const status = frame.status;
    if (isFinal(status)) return this.finish(status, frame.reason || "");
    // Another tab of this device answered the call that rang here too.
    if (status === "answered" && frame.elsewhere === true && this.role === "callee") {
      return this.finish(ANSWERED_ELSEWHERE, ANSWERED_ELSEWHERE);
    }
    if (status === "answered" && typeof frame.call_key === "string") this.callKey = frame.call_key;
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
    if (frame.sdp_type === "offer" && frame.replace === true) return this._onReplaceOffer(frame.sdp);
    if (!this.media) return;
    if (this.replacing) {
      // Our replace offer is out: an ICE-restart offer was meant for the connection we no
      // longer have (the other side answers our offer instead); an answer is the one to ours.
      if (frame.sdp_type === "answer") await this._onReplaceAnswer(frame.sdp);
      return;
    }
    // The answer to a replace offer that we sent again, arriving twice: already applied.
    if (frame.sdp_type === "answer" && frame.sdp === this.appliedReplaceAnswer) return;
    const media = this.media;
    let sdp;
    try {
      sdp = await media.renegotiate(frame.sdp_type, frame.sdp);
    } catch (err) {
      if (this.isOver || this.media !== media) return;
      this._emit("error", dcError(ERR.MEDIA_FAILED, `Renegotiation failed: ${describe(err)}`));
      // Renegotiation only restarts ICE. If our media path is up, it is untouched; if not,
      // this is the ICE failure path: retry after a pause, end with ice_failed if it stays down.
      if (!media.connected) this._mediaTrouble(ICE_RESTART_AFTER_MS);
      return;
    }
    if (sdp && !this.isOver && this.media === media) this._send({ type: "renegotiate", sdp_type: "answer", sdp });
  }

  // -- a reloaded page takes its call back ---------------------------------------------------

  /**
   * This page was reloaded (or navigated) while the call was answered, and the server has
   * handed the call back to it: microphone, a new peer connection, and a replace offer that
   * the other side answers from a new connection of its own. Never rejects.
   */
  async resume() {
    if (this.isOver || this.media) return;
    this.mediaStatus = "connecting";
    this._emit("reconnecting", { on: true });
    let stream;
    try {
      stream = await this.getMicrophone();
    } catch (error) {
      if (this.isOver) return;
      this._emit("error", toError(error, ERR.MIC_UNAVAILABLE));
      this._send({ type: "hangup", reason: "user_media_failed" });
      return this.finish("failed", "user_media_failed");
    }
    if (this.isOver) return stopTracks(stream);
    const media = this._startMedia(stream);
    this._giveUpUnlessConnected();
    const pending = this.pendingReplace;
    this.pendingReplace = null;
    // The caller's replace offer came while we waited for the microphone: answer it instead.
    if (pending) return this._onReplaceOffer(pending);
    let sdp;
    try {
      sdp = await media.createOffer();
    } catch (err) {
      if (this.isOver || this.media !== media) return;
      this._emit("error", dcError(ERR.MEDIA_FAILED, `The call's audio could not be set up again: ${describe(err)}`));
      this._send({ type: "hangup", reason: "ice_failed" });
      return this.finish("failed", "ice_failed", { lostLocally: true });
    }
    // Meanwhile a replace offer of the caller may have won (glare): that one stands.
    if (this.isOver || this.media !== media) return;
    this.replacing = true;
    this.replaceOffer = sdp;
    this._sendReplaceOffer();
  }

  _sendReplaceOffer() {
    if (!this.replacing || this.isOver) return;
    this._send({ type: "renegotiate", sdp_type: "offer", sdp: this.replaceOffer, replace: true });
    this._setTimer("replaceRetry", () => this._sendReplaceOffer(), REPLACE_RETRY_MS);
  }

  async _onReplaceAnswer(sdp) {
    const media = this.media;
    this.replacing = false;
    this._clearTimer("replaceRetry");
    this.appliedReplaceAnswer = sdp; // the same answer may come twice (we sent the offer twice)
    try {
      await media.setAnswer(sdp);
    } catch (err) {
      if (this.isOver || this.media !== media) return;
      this._emit("error", dcError(ERR.MEDIA_FAILED, `The answer to our new connection could not be used: ${describe(err)}`));
      this.replacing = true; // ask again: the other side answers the next offer from a new connection
      this._setTimer("replaceRetry", () => this._sendReplaceOffer(), REPLACE_RETRY_MS);
    }
  }

  /**
   * The other side made a new peer connection (its page reloaded): close ours, make a new one
   * with the same microphone, answer from it. In glare (both pages reloaded) the caller's
   * offer wins: the caller ignores the callee's, the callee drops its own.
   */
  async _onReplaceOffer(offer) {
    if (this.status !== "answered") return;
    if (this.replacing && this.role === "caller") return;
    if (this.lastReplace && this.lastReplace.offer === offer) {
      // The same offer again (sent before our answer reached it): the same answer.
      this._send({ type: "renegotiate", sdp_type: "answer", sdp: this.lastReplace.answer });
      return;
    }
    if (!this.media) {
      // A resumed call still waiting for its microphone: a callee answers this offer once it
      // has one (resume()); a caller makes its own, which wins.
      if (this.role === "callee") this.pendingReplace = offer;
      return;
    }
    const stream = this.media.stream;
    this.replacing = false;
    this._clearTimer("replaceRetry");
    this._clearTimer("iceRestart");
    if (this.media) this.media.close({ keepStream: true });
    const media = this._startMedia(stream);
    media.setMuted(this.muted);
    this._giveUpUnlessConnected();
    this._emit("reconnecting", { on: true });
    let answer;
    try {
      answer = await media.acceptOffer(offer);
    } catch (err) {
      if (this.isOver || this.media !== media) return;
      this._emit("error", dcError(ERR.MEDIA_FAILED, `The other side's new connection could not be used: ${describe(err)}`));
      return; // the give-up timer ends the call if nothing better comes
    }
    if (this.isOver || this.media !== media) return;
    this.lastReplace = { offer, answer };
    this._send({ type: "renegotiate", sdp_type: "answer", sdp: answer });
  }

  /** A new peer connection must connect within ICE_GIVE_UP_MS, or the call ends with ice_failed. */
  _giveUpUnlessConnected() {
    this._setTimer(
      "iceGiveUp",
      () => {
        this._send({ type: "hangup", reason: "ice_failed" });
        this.finish("failed", "ice_failed", { lostLocally: true });
      },
      ICE_GIVE_UP_MS,
    );
  }

  // -- connectivity ------------------------------------------------------------------------------

  _onIce(state) {
    if (this.isOver) return;
    this._clearTimer("iceRestart");
    if (state === "connected" || state === "completed") {
      this._clearTimer("iceGiveUp");
      this.mediaStatus = "open";
      this.quality.start();
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
    if (this.replacing) return; // our replace offer is the restart
    let sdp;
    try {
      sdp = await this.media.restartIce();
    } catch {
      return; // retried on the next ICE state change; the give-up timer is running
    }
    if (!this.isOver) this._send({ type: "renegotiate", sdp_type: "offer", sdp });
  }

  /**
   * Our signaling connection dropped; `final` when it will not come back. `error`: why it was
   * closed for good, when the server said (ERR_SESSION_REVOKED, …): call() rejects with it.
   */
  signalingLost({ final, graceMs, error = null }) {
    if (this.isOver) return;
    if (final && error) return this.finish("over", error.code === ERR.SESSION_REVOKED ? "revoked" : "connection_lost", { error });
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
    if (this.replacing) this._sendReplaceOffer();
    else this.restartIce();
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
    this.quality.stop();
    if (this.media) this.media.close();
    this.mediaStatus = "closed";
    if (this.notification) this.notification.close();
    const duration = this.answeredAt ? (Date.now() - this.answeredAt) / 1000 : null;
    // An answered call's quality: sent with our hangup, or now (kept until the connection is back).
    const quality = this.answeredAt ? this.reportedQuality || this.quality.summary() : null;
    if (quality && !this.reportedQuality && this.id) this.sendLater({ type: "quality", call_id: this.id, quality });
    this._emit("end", { callId: this.id, role: this.role, status, reason, duration, quality });
    const answered = this.answeredAt !== null;
    const outcome = callOutcome({ status, reason, answered, lostLocally, signalingDown, error });
    if ("resolve" in outcome) this._settle.resolve(outcome.resolve);
    else this._settle.reject(outcome.reject);
  }
}
