// initDirectCall and the client it resolves: the contract of the original Direct Call Web SDK
// (call, hangup, logout) plus answer/decline/mute and events for sites that build their own UI.
// See docs/js-api.md.

import { pushEvent, readCleverTap } from "./clevertap.js";
import { dcError, ERR, fromServer } from "./errors.js";
import { getMicrophone, Media } from "./media.js";
import { loadScreensMarkup, Screens } from "./screens.js";
import { Signaling } from "./signaling.js";
import {
  isBlank,
  isValidAccountId,
  isValidApiKey,
  isValidContext,
  isValidCuid,
  isValidName,
  isValidUrl,
  trim,
} from "./validation.js";

const UNANSWERED = new Set(["declined", "missed", "cancelled", "busy"]);
const FINAL = new Set(["over", "declined", "missed", "cancelled", "busy", "failed"]);
const ICE_RESTART_AFTER_MS = 2000;
const ICE_GIVE_UP_MS = 20000;
const DEVICE_KEY = "directcall.deviceId";

function deviceId() {
  const make = () => {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  };
  try {
    let id = localStorage.getItem(DEVICE_KEY);
    if (!/^[A-Za-z0-9_-]{8,64}$/.test(id || "")) {
      id = make();
      localStorage.setItem(DEVICE_KEY, id);
    }
    return id;
  } catch {
    return make(); // storage blocked: this page is its own device
  }
}

function defaultServerUrl() {
  return new URL("/directcall/", import.meta.url).href;
}

/**
 * Check the options, sign the cuid in and open the signaling connection.
 * Resolves the client; rejects `{code, message}`.
 */
export async function initDirectCall(options) {
  if (!options || typeof options !== "object") {
    throw dcError(ERR.MISSING_INITPARAMETERS, "initDirectCall needs an options object.");
  }
  // Two ways to sign in: the original SDK's accountId + apikey + cuid, or a session the
  // host's server mints for its logged-in user (`sessionUrl`; no key in the page).
  const sessionMode = !isBlank(options.sessionUrl);
  const missing = sessionMode
    ? []
    : ["accountId", "apikey", "cuid"].filter((key) => isBlank(options[key]));
  if (!sessionMode && !("clevertap" in options)) missing.push("clevertap");
  if (missing.length) {
    throw dcError(ERR.MISSING_INITPARAMETERS, `Missing parameters: ${missing.join(", ")}.`);
  }
  const invalid = [];
  if (!sessionMode) {
    if (!isValidAccountId(options.accountId)) invalid.push("accountId");
    if (!isValidApiKey(options.apikey)) invalid.push("apikey");
    if (!isValidCuid(options.cuid)) invalid.push("cuid");
  } else {
    try {
      new URL(options.sessionUrl, location.href);
    } catch {
      invalid.push("sessionUrl");
    }
    if (!isBlank(options.csrfToken) && typeof options.csrfToken !== "string") invalid.push("csrfToken");
  }
  if (!isBlank(options.name) && !isValidName(options.name)) invalid.push("name");
  if (!isBlank(options.ringtone) && !isValidUrl(options.ringtone)) invalid.push("ringtone");
  const ct = options.clevertap;
  if (ct !== null && ct !== undefined && ct !== false && typeof ct !== "object") invalid.push("clevertap");
  let serverUrl;
  try {
    serverUrl = new URL(options.serverUrl || defaultServerUrl(), location.href);
    if (!serverUrl.pathname.endsWith("/")) serverUrl.pathname += "/";
  } catch {
    invalid.push("serverUrl");
  }
  if (invalid.length) {
    throw dcError(ERR.INVALID_INITPARAMETERS, `Invalid parameters: ${invalid.join(", ")}.`);
  }
  let ctAccountId = null;
  let ctId = null;
  if (ct) {
    ({ accountId: ctAccountId, ctId } = readCleverTap(ct));
    if (!ctAccountId) throw dcError(ERR.MISSING_CT_ACCOUNTID);
    if (!ctId) throw dcError(ERR.MISSING_CT_ID);
  }
  const client = new DirectCallClient({
    serverUrl: serverUrl.href,
    sessionUrl: sessionMode ? new URL(options.sessionUrl, location.href).href : null,
    csrfToken: sessionMode && !isBlank(options.csrfToken) ? options.csrfToken : null,
    accountId: sessionMode ? null : options.accountId,
    apikey: sessionMode ? null : options.apikey,
    cuid: sessionMode ? null : options.cuid,
    name: isBlank(options.name) ? null : trim(options.name),
    ringtone: isBlank(options.ringtone) ? null : options.ringtone,
    clevertap: ct || null,
    ctAccountId,
    ctId,
    deviceId: deviceId(),
    showScreens: options.showScreens !== false,
  });
  await client._start();
  return client;
}

export class DirectCallClient extends EventTarget {
  constructor(config) {
    super();
    this.config = config;
    this.current = null;
    this.loggedOut = false;
    this.session = null;
    this.signalingUp = false;
    this.early = new Map(); // frames for a call id we do not know yet (invite in flight)
  }

  /** The cuid this client is signed in as. */
  get cuid() {
    return this.config.cuid;
  }

  /** The current call as `{callId, role, status, peer}`, or null. */
  get activeCall() {
    const call = this.current;
    return call ? { callId: call.id, role: call.role, status: call.status, peer: { ...call.peer } } : null;
  }

  async _fetchSession() {
    const c = this.config;
    const body = c.sessionUrl
      ? { deviceId: c.deviceId }
      : { accountId: c.accountId, apikey: c.apikey, cuid: c.cuid, deviceId: c.deviceId };
    if (c.name && !c.sessionUrl) body.name = c.name;
    if (c.ringtone) body.ringtone = c.ringtone;
    if (c.ctAccountId) body.ctAccountId = c.ctAccountId;
    if (c.ctId) body.ctId = c.ctId;
    let response;
    try {
      const headers = { "Content-Type": "application/json" };
      if (c.csrfToken) headers["X-CSRFToken"] = c.csrfToken;
      response = await fetch(c.sessionUrl || new URL("v1/init", c.serverUrl), {
        method: "POST",
        headers,
        body: JSON.stringify(body),
        // A server-minted session rides on the site's login cookie; the key mode needs none.
        credentials: c.sessionUrl ? "same-origin" : "omit",
      });
    } catch {
      throw dcError(ERR.INTERNET_LOST, "The directcall server cannot be reached.");
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) throw fromServer(data, ERR.INTERNET_LOST);
    this.session = data;
    this.config.cuid = data.cuid; // in session mode the server decides who this is
    return data;
  }

  async _start() {
    const [session, markup] = await Promise.all([
      this._fetchSession(),
      this.config.showScreens ? loadScreensMarkup(this.config.serverUrl) : Promise.resolve(null),
    ]);
    this.signaling = new Signaling(() => this._fetchSession());
    this.signaling.resumeIds = () => (this.current && this.current.id ? [this.current.id] : []);
    let ready;
    try {
      ready = await this.signaling.connect(session);
    } catch (frame) {
      this.signaling.close();
      throw fromServer(frame, ERR.INTERNET_LOST);
    }
    this.screens = markup
      ? new Screens(markup, session.branding || {}, { ringtone: session.ringtone || this.config.ringtone })
      : null;
    if (this.screens) this.screens.addEventListener("action", (e) => this._onAction(e.detail));
    this.signaling.addEventListener("frame", (e) => this._onFrame(e.detail));
    this.signaling.addEventListener("down", (e) => this._onSignalingDown(e.detail));
    this.signaling.addEventListener("up", (e) => this._onSignalingUp(e.detail));
    this._onlineHandler = () => this._restartIce();
    window.addEventListener("online", this._onlineHandler);
    this._onReady(ready);
  }

  _emit(type, detail, cancelable = false) {
    return this.dispatchEvent(new CustomEvent(type, { detail, cancelable }));
  }

  _onReady(ready) {
    this.signalingUp = true;
    this.name = ready.name;
    this.reconnectGrace = Number(ready.reconnect_grace) || 20;
  }

  // -- placing a call ---------------------------------------------------------------------

  /**
   * Call `receiver` (a cuid). Resolves "over" when an answered call ends; rejects
   * "declined" | "missed" | "cancelled" | "busy" or `{code, message}`.
   */
  call(receiver, context, callOptions) {
    if (this.loggedOut) return Promise.reject(dcError(ERR.NOT_INITIALIZED));
    const options = callOptions === undefined || callOptions === null ? {} : callOptions;
    const problems = [];
    if (!isValidCuid(receiver)) problems.push("receiver");
    else if (receiver === this.config.cuid) problems.push("receiver (yourself)");
    if (!isValidContext(context)) problems.push("context");
    if (typeof options !== "object" || Array.isArray(options)) problems.push("callOptions");
    else {
      for (const key of ["receiver_image", "initiator_image"]) {
        if (!isBlank(options[key]) && !isValidUrl(options[key])) problems.push(key);
      }
    }
    if (problems.length) {
      return Promise.reject(
        dcError(ERR.INVALID_CALL_PARAMETERS, `Invalid call parameters: ${problems.join(", ")}.`),
      );
    }
    if (this.current) return Promise.reject(dcError(ERR.OUTGOING_CALL_IN_PROGRESS));
    const call = {
      id: null,
      role: "caller",
      status: "initiated",
      peer: { cuid: receiver, name: receiver },
      context: trim(context),
      remoteCandidates: [],
    };
    this.current = call;
    const receiverImage = isBlank(options.receiver_image) ? null : options.receiver_image;
    // A server-minted session may carry the user's picture (the adapter's get_image_url).
    const initiatorImage = isBlank(options.initiator_image)
      ? (this.session && isValidUrl(this.session.image) ? this.session.image : null)
      : options.initiator_image;
    if (this.screens) {
      this.screens.show("outgoing", {
        name: receiver,
        context: "",
        image: receiverImage,
        status: this.screens.label("calling"),
      });
    }
    this._askNotificationPermission();
    const promise = new Promise((resolve, reject) => {
      call.resolve = resolve;
      call.reject = reject;
    });
    this._placeCall(call, receiver, receiverImage, initiatorImage).catch((error) =>
      this._finish(call, "failed", "", error),
    );
    return promise;
  }

  async _placeCall(call, receiver, receiverImage, initiatorImage) {
    const stream = await getMicrophone();
    if (call.ended) {
      stream.getTracks().forEach((t) => t.stop());
      return;
    }
    call.media = this._newMedia(call, stream);
    call.media.holdCandidates();
    const sdp = await call.media.createOffer();
    if (call.ended) return;
    let invited;
    try {
      invited = await this.signaling.request({
        type: "invite",
        receiver,
        context: call.context,
        sdp,
        receiver_image: receiverImage,
        initiator_image: initiatorImage,
      });
    } catch (frame) {
      throw fromServer(frame, ERR.INTERNET_LOST);
    }
    call.id = invited.call_id;
    if (invited.receiver && typeof invited.receiver.name === "string") {
      call.peer.name = invited.receiver.name;
      if (this.screens && !call.ended) this.screens.setName(call.peer.name);
    }
    call.media.releaseCandidates();
    this._track("DCOutgoing", call);
    if (this.screens && call.status === "initiated") this.screens.play("ringback");
    if (call.cancelRequested) this.signaling.send({ type: "cancel", call_id: call.id });
    const early = this.early.get(call.id) || [];
    this.early.delete(call.id);
    for (const frame of early) this._onFrame(frame);
  }

  _newMedia(call, stream) {
    const media = new Media(
      stream,
      this.session.iceServers,
      (batch) => {
        if (call.id) this.signaling.send({ type: "candidates", call_id: call.id, ...batch });
      },
      this.session.iceTransportPolicy,
    );
    media.addEventListener("ice", (e) => this._onIce(call, e.detail));
    return media;
  }

  // -- receiving a call -------------------------------------------------------------------

  _onIncoming(frame) {
    if (this.current) {
      if (this.current.id !== frame.call_id) {
        this.signaling.send({ type: "decline", call_id: frame.call_id, reason: "user_busy" });
      }
      return; // a repeat after a reconnect: we already show it
    }
    const caller = frame.caller || {};
    const call = {
      id: frame.call_id,
      role: "callee",
      status: "initiated",
      peer: { cuid: String(caller.cuid || ""), name: String(caller.name || caller.cuid || "") },
      image: caller.image || null,
      context: String(frame.context || ""),
      offer: frame.sdp,
      remoteCandidates: [],
    };
    this.current = call;
    const shown = this._emit(
      "incoming",
      { callId: call.id, from: { ...call.peer, image: call.image }, context: call.context },
      true,
    );
    call.screensShown = shown && !!this.screens;
    if (call.screensShown) {
      this.screens.show("incoming", { name: call.peer.name, context: call.context, image: call.image });
      this.screens.play("ringtone");
    }
    this._notify(call);
    this.signaling.send({ type: "ringing", call_id: call.id });
    this._track("DCIncoming", call);
  }

  /** Answer the ringing incoming call. */
  async answer() {
    const call = this.current;
    if (!call || call.role !== "callee" || call.media || FINAL.has(call.status)) return;
    if (this.screens && call.screensShown) {
      this.screens.stopTone();
      this.screens.setStatus(this.screens.label("connecting"));
    }
    let stream;
    try {
      stream = await getMicrophone();
    } catch (error) {
      this.signaling.send({ type: "decline", call_id: call.id, reason: "user_media_failed" });
      this._emit("error", error);
      this._finish(call, "declined", "user_media_failed");
      return;
    }
    if (call.ended) {
      stream.getTracks().forEach((t) => t.stop());
      return;
    }
    call.media = this._newMedia(call, stream);
    const sdp = await call.media.acceptOffer(call.offer);
    await call.media.addRemoteCandidates(call.remoteCandidates.splice(0));
    this.signaling.send({ type: "accept", call_id: call.id, sdp });
  }

  /** Decline the ringing incoming call. */
  decline() {
    const call = this.current;
    if (!call || call.role !== "callee" || FINAL.has(call.status)) return;
    this.signaling.send({ type: "decline", call_id: call.id });
    if (!this.signalingUp) this._finish(call, "declined", "user_declined");
  }

  // -- ending -------------------------------------------------------------------------------

  /** End the current call: hang up an answered call, cancel or decline a ringing one. */
  hangup() {
    const call = this.current;
    if (!call) return;
    if (call.role === "callee" && call.status !== "answered") return this.decline();
    if (!call.id) {
      call.cancelRequested = true;
      if (!call.media) this._finish(call, "cancelled", "caller_cancelled");
      return;
    }
    const type = call.status === "answered" ? "hangup" : call.role === "caller" ? "cancel" : "hangup";
    const sent = this.signaling.send({ type, call_id: call.id });
    if (!sent) {
      this._finish(call, call.status === "answered" ? "over" : "cancelled", "user_hangup");
    }
  }

  /** Close everything; `call()` is refused until initDirectCall runs again. */
  logout() {
    if (this.loggedOut) return;
    if (this.current) {
      this.hangup();
      const call = this.current;
      if (call) this._finish(call, call.status === "answered" ? "over" : "cancelled", "user_hangup");
    }
    this.loggedOut = true;
    if (this.signaling) this.signaling.close();
    if (this.screens) this.screens.destroy();
    window.removeEventListener("online", this._onlineHandler);
    this._emit("logout", {});
  }

  /** Mute or unmute the microphone during a call. */
  mute() {
    this._setMuted(true);
  }

  unmute() {
    this._setMuted(false);
  }

  _setMuted(muted) {
    const call = this.current;
    if (!call || !call.media) return;
    call.media.setMuted(muted);
    call.muted = muted;
    if (this.screens) this.screens.setMuted(muted);
    this._emit("mute", { callId: call.id, muted });
  }

  _finish(call, status, reason, error) {
    if (call.ended) return;
    call.ended = true;
    call.status = status;
    if (this.current === call) this.current = null;
    clearTimeout(call.iceTimer);
    clearTimeout(call.iceGiveUp);
    clearTimeout(call.lostTimer);
    if (call.media) call.media.close();
    if (this.screens && (call.role === "caller" || call.screensShown)) {
      this.screens.hide();
      if (call.answeredAt) this.screens.play("end");
    }
    if (call.notification) call.notification.close();
    if (call.id) this._track("DCEnd", call, { call_status: status });
    const duration = call.answeredAt ? (Date.now() - call.answeredAt) / 1000 : null;
    this._emit("callend", { callId: call.id, role: call.role, status, reason, duration });
    if (call.role !== "caller") return;
    // Our own connection ended it (not the other party's): that is ERR_INTERNET_LOST.
    const lost = call.lostLocally || (reason === "connection_lost" && call.wasDown);
    if (error) call.reject(error);
    else if (call.answeredAt) {
      if (lost || (status === "failed" && reason === "ice_failed")) {
        call.reject(dcError(ERR.INTERNET_LOST));
      } else call.resolve("over");
    } else if (lost) call.reject(dcError(ERR.INTERNET_LOST));
    else if (UNANSWERED.has(status)) call.reject(status);
    else call.reject(dcError(ERR.INTERNET_LOST));
  }

  // -- frames -------------------------------------------------------------------------------

  _onFrame(frame) {
    if (frame.type === "incoming") return this._onIncoming(frame);
    if (frame.type === "replaced") return this._onReplaced();
    if (frame.type === "error") return this._emit("error", fromServer(frame, "ERR_INTERNAL"));
    if (frame.type === "pong") return;
    const call = this.current;
    if (!call || !frame.call_id) return;
    if (call.id !== frame.call_id) {
      if (call.role === "caller" && !call.id) {
        const list = this.early.get(frame.call_id) || [];
        list.push(frame);
        this.early.set(frame.call_id, list);
      }
      return;
    }
    if (frame.type === "state") this._onState(call, frame);
    else if (frame.type === "candidates") {
      // Media buffers candidates until the remote description is set; before the callee
      // answers there is no media yet, so they wait on the call.
      if (call.media) call.media.addRemoteCandidates(frame.candidates);
      else call.remoteCandidates.push(...(frame.candidates || []));
    } else if (frame.type === "renegotiate" && call.media) {
      call.media
        .renegotiate(frame.sdp_type, frame.sdp)
        .then((sdp) => {
          if (sdp) this.signaling.send({ type: "renegotiate", call_id: call.id, sdp_type: "answer", sdp });
        })
        .catch(() => {});
    } else if (frame.type === "peer") {
      this._emit("peer", { callId: call.id, connected: !!frame.connected });
    }
  }

  async _onState(call, frame) {
    const status = frame.status;
    if (FINAL.has(status)) return this._finish(call, status, frame.reason || "");
    call.status = status;
    this._emit("statechange", { callId: call.id, role: call.role, status });
    if (status === "ringing" && call.role === "caller" && this.screens) {
      this.screens.setStatus(this.screens.label("ringing"));
    }
    if (status === "answered" && !call.answeredAt) {
      call.answeredAt = Date.now();
      if (call.role === "caller" && frame.sdp) {
        try {
          await call.media.setAnswer(frame.sdp);
        } catch {
          this.signaling.send({ type: "hangup", call_id: call.id, reason: "ice_failed" });
          return;
        }
      }
      if (this.screens && (call.role === "caller" || call.screensShown)) {
        this.screens.stopTone();
        this.screens.show("ongoing", {
          name: call.peer.name,
          context: call.role === "callee" ? call.context : "", // the caller wrote it
          image: call.role === "callee" ? call.image : undefined,
        });
        this.screens.startTimer(call.answeredAt);
      }
    }
  }

  _onReplaced() {
    // This device signed in again elsewhere (another tab or a reload): step aside quietly.
    if (this.current) this._finish(this.current, "over", "replaced");
    this.loggedOut = true;
    this.signaling.close();
    if (this.screens) this.screens.destroy();
    this._emit("logout", { reason: "replaced" });
  }

  // -- connectivity ---------------------------------------------------------------------------

  _onSignalingDown(detail) {
    this.signalingUp = false;
    this._emit("connection", { state: "down", final: !!detail.final });
    const call = this.current;
    if (detail.final) {
      if (call) {
        call.lostLocally = true;
        this._finish(call, "over", "connection_lost");
      }
      if (!this.loggedOut && detail.code === 4002) this.logout();
      return;
    }
    if (!call) return;
    call.wasDown = true;
    if (this.screens) this.screens.setReconnecting(true);
    const waitMs = (this.reconnectGrace + 2) * 1000;
    clearTimeout(call.lostTimer);
    call.lostTimer = setTimeout(() => {
      if (!this.signalingUp && this.current === call) {
        call.lostLocally = true;
        this._finish(call, "over", "connection_lost");
      }
    }, waitMs);
  }

  _onSignalingUp(ready) {
    this._onReady(ready);
    this._emit("connection", { state: "up" });
    const call = this.current;
    if (!call) return;
    clearTimeout(call.lostTimer);
    const live = (ready.calls || []).find((c) => c.call_id === call.id);
    if (!live) {
      // The call ended while we were away; the server's `state` frame (asked for with
      // `resume`) tells how — the peer may simply have hung up. If none comes, the drop
      // ended it.
      call.lostTimer = setTimeout(() => {
        call.lostLocally = true;
        this._finish(call, "over", "connection_lost");
      }, 3000);
      return;
    }
    call.wasDown = false;
    if (this.screens && call.media && ["connected", "completed"].includes(call.media.pc.iceConnectionState)) {
      this.screens.setReconnecting(false);
    }
    this._restartIce();
  }

  _onIce(call, state) {
    if (call.ended) return;
    clearTimeout(call.iceTimer);
    if (state === "connected" || state === "completed") {
      clearTimeout(call.iceGiveUp);
      call.iceGiveUp = null;
      if (this.screens && this.signalingUp) this.screens.setReconnecting(false);
      this._emit("media", { callId: call.id, state });
      return;
    }
    if (state === "disconnected" || state === "failed") {
      if (this.screens) this.screens.setReconnecting(true);
      call.iceTimer = setTimeout(() => this._restartIce(), state === "failed" ? 0 : ICE_RESTART_AFTER_MS);
      if (!call.iceGiveUp) {
        call.iceGiveUp = setTimeout(() => {
          if (this.current !== call || call.ended) return;
          call.lostLocally = true;
          this.signaling.send({ type: "hangup", call_id: call.id, reason: "ice_failed" });
          this._finish(call, "failed", "ice_failed");
        }, ICE_GIVE_UP_MS);
      }
    }
  }

  async _restartIce() {
    const call = this.current;
    // Only the caller restarts ICE, so the two sides never offer at once.
    if (!call || call.role !== "caller" || call.status !== "answered" || !call.media) return;
    const state = call.media.pc.iceConnectionState;
    if (state === "connected" || state === "completed") return;
    try {
      const sdp = await call.media.restartIce();
      this.signaling.send({ type: "renegotiate", call_id: call.id, sdp_type: "offer", sdp });
    } catch {
      /* retried on the next ICE state change */
    }
  }

  // -- screens, notifications, analytics ---------------------------------------------------

  _onAction(action) {
    if (action === "answer") this.answer();
    else if (action === "decline") this.decline();
    else if (action === "cancel" || action === "hangup") this.hangup();
    else if (action === "mute") this._setMuted(!(this.current && this.current.muted));
  }

  _askNotificationPermission() {
    if (typeof Notification !== "undefined" && Notification.permission === "default") {
      Notification.requestPermission().catch(() => {});
    }
  }

  _notify(call) {
    if (typeof Notification === "undefined" || Notification.permission !== "granted") return;
    if (!document.hidden) return;
    try {
      const title = this.screens ? this.screens.label("notification") : "Incoming call";
      // Notification text is plain text; the icon only if it is an http(s) URL.
      const options = { body: `${call.peer.name}: ${call.context}`, tag: `directcall-${call.id}` };
      if (isValidUrl(call.image)) options.icon = call.image;
      call.notification = new Notification(title, options);
      call.notification.onclick = () => window.focus();
    } catch {
      /* notifications are a courtesy */
    }
  }

  _track(name, call, extra = {}) {
    if (!this.config.clevertap) return;
    pushEvent(this.config.clevertap, name, {
      dc_account_id: this.session ? this.session.accountId : this.config.accountId,
      ct_account_id: this.config.ctAccountId,
      guid: this.config.ctId,
      call_id: call.id,
      cuid: this.config.cuid,
      epoch: Date.now(),
      context: call.context,
      ...extra,
    });
  }
}
