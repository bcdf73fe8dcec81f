// initDirectCall and the client it resolves: the contract of the original Direct Call Web SDK
// (call, hangup, logout) plus answer/decline/mute and events for sites that build their own UI.
// See docs/js-api.md.

import { Call } from "./call.js";
import { pushEvent } from "./clevertap.js";
import { dcError, ERR, fromServer } from "./errors.js";
import { getMicrophone, Media } from "./media.js";
import { readCallOptions, readInitOptions } from "./options.js";
import { loadScreensMarkup, Screens } from "./screens.js";
import { Signaling } from "./signaling.js";
import { isValidUrl } from "./validation.js";

// A Call's events (call.js) that the page sees, under their names in docs/js-api.md.
const PUBLIC_EVENTS = {
  statechange: "statechange",
  media: "media",
  peer: "peer",
  mute: "mute",
  error: "error",
  end: "callend",
};
const CALL_EVENTS = ["placed", "connecting", "answered", "reconnecting", ...Object.keys(PUBLIC_EVENTS)];

/**
 * Check the options, sign the cuid in and open the signaling connection.
 * Resolves the client; rejects `{code, message}`.
 */
export async function initDirectCall(options) {
  const client = new DirectCallClient(readInitOptions(options));
  await client._start();
  return client;
}

export class DirectCallClient extends EventTarget {
  constructor(config) {
    super();
    this.config = config;
    this.current = null; // the Call (call.js) in progress, if any
    this.loggedOut = false;
    this.session = null;
    this.early = new Map(); // frames for a call id we do not know yet (invite in flight)
  }

  /** The cuid this client is signed in as. */
  get cuid() {
    return this.config.cuid;
  }

  /** The current call as `{callId, role, status, peer}`, or null. */
  get activeCall() {
    return this.current ? this.current.summary() : null;
  }

  async _fetchSession() {
    const c = this.config;
    const body = c.sessionUrl
      ? { deviceId: c.deviceId }
      : { accountId: c.accountId, apikey: c.apikey, cuid: c.cuid, deviceId: c.deviceId };
    if (c.name && !c.sessionUrl) body.name = c.name;
    if (c.userToken) body.userToken = typeof c.userToken === "function" ? await c.userToken() : c.userToken;
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
    this.signaling = new Signaling(() => this._fetchSession(), {
      resumeIds: () => (this.current && this.current.id ? [this.current.id] : []),
    });
    let ready;
    try {
      ready = await this.signaling.connect(session);
    } catch (error) {
      this.signaling.close();
      throw error;
    }
    this.screens = markup
      ? new Screens(markup, session.branding || {}, {
          ringtone: session.ringtone || this.config.ringtone,
          assetsUrl: this.config.assetsUrl,
        })
      : null;
    if (this.screens) this.screens.addEventListener("action", (e) => this._onAction(e.detail));
    this.signaling.addEventListener("frame", (e) => this._onFrame(e.detail));
    this.signaling.addEventListener("down", (e) => this._onSignalingDown(e.detail));
    this.signaling.addEventListener("up", (e) => this._onSignalingUp(e.detail));
    this._onlineHandler = () => this.current && this.current.restartIce();
    window.addEventListener("online", this._onlineHandler);
    this._onReady(ready);
  }

  _emit(type, detail, cancelable = false) {
    return this.dispatchEvent(new CustomEvent(type, { detail, cancelable }));
  }

  _onReady(ready) {
    this.name = ready.name;
    this.reconnectGrace = Number(ready.reconnect_grace) || 20;
  }

  // -- calls ----------------------------------------------------------------------------------

  /** What a Call uses of this device: the connection, and media made with this session. */
  _callEnv() {
    return {
      signaling: this.signaling,
      getMicrophone,
      createMedia: (stream, onCandidates) =>
        new Media(stream, {
          iceServers: this.session.iceServers,
          iceTransportPolicy: this.session.iceTransportPolicy,
          onCandidates,
        }),
    };
  }

  /** Make `call` the current one and relay its events: screens first, then the page. */
  _adopt(call) {
    this.current = call;
    for (const type of CALL_EVENTS) {
      call.addEventListener(type, (event) => this._onCallEvent(call, type, event.detail));
    }
  }

  _onCallEvent(call, type, detail) {
    if (this.screens && call.showScreens) this.screens.update(call, type, detail);
    if (type === "placed") this._track("DCOutgoing", call);
    if (type === "end") {
      if (this.current === call) this.current = null;
      if (call.id) this._track("DCEnd", call, { call_status: detail.status });
    }
    if (PUBLIC_EVENTS[type]) this._emit(PUBLIC_EVENTS[type], detail);
  }

  /**
   * Call `receiver` (a cuid). Resolves "over" when an answered call ends; rejects
   * "declined" | "missed" | "cancelled" | "busy" or `{code, message}`.
   */
  call(receiver, context, callOptions) {
    if (this.loggedOut) return Promise.reject(dcError(ERR.NOT_INITIALIZED));
    let options;
    try {
      options = readCallOptions(receiver, context, callOptions, this.config.cuid);
    } catch (error) {
      return Promise.reject(error);
    }
    if (this.current) return Promise.reject(dcError(ERR.OUTGOING_CALL_IN_PROGRESS));
    const { receiverImage } = options;
    // A server-minted session may carry the user's picture (the adapter's get_image_url).
    const initiatorImage =
      options.initiatorImage || (this.session && isValidUrl(this.session.image) ? this.session.image : null);
    const call = new Call(
      { role: "caller", peer: { cuid: receiver, name: receiver }, context: options.context, image: receiverImage },
      this._callEnv(),
    );
    call.showScreens = !!this.screens;
    this._adopt(call);
    if (call.showScreens) this.screens.update(call, "outgoing");
    this._askNotificationPermission();
    call.place({ receiver, receiverImage, initiatorImage }).then(() => this._replayEarly(call));
    return call.result;
  }

  /** Frames about our call that arrived before the server acknowledged its invite. */
  _replayEarly(call) {
    const early = (call.id && this.early.get(call.id)) || [];
    this.early.clear();
    for (const frame of early) this._onFrame(frame);
  }

  _onIncoming(frame) {
    if (this.current) {
      if (this.current.id !== frame.call_id) {
        this.signaling.send({ type: "decline", call_id: frame.call_id, reason: "user_busy" });
      }
      return; // a repeat after a reconnect: we already show it
    }
    const caller = frame.caller || {};
    const call = new Call(
      {
        role: "callee",
        id: frame.call_id,
        peer: { cuid: caller.cuid || "", name: caller.name || caller.cuid || "" },
        image: caller.image || null,
        context: String(frame.context || ""),
        offer: frame.sdp,
      },
      this._callEnv(),
    );
    this._adopt(call);
    const shown = this._emit(
      "incoming",
      { callId: call.id, from: { ...call.peer, image: call.image }, context: call.context },
      true,
    );
    call.showScreens = shown && !!this.screens;
    if (call.showScreens) this.screens.update(call, "incoming");
    this._notify(call);
    this.signaling.send({ type: "ringing", call_id: call.id });
    this._track("DCIncoming", call);
  }

  /** Answer the ringing incoming call. */
  async answer() {
    if (this.current) await this.current.answer();
  }

  /** Decline the ringing incoming call. */
  decline() {
    if (this.current) this.current.decline();
  }

  /** End the current call: hang up an answered call, cancel or decline a ringing one. */
  hangup() {
    if (this.current) this.current.hangup();
  }

  /** Close everything; `call()` is refused until initDirectCall runs again. */
  logout() {
    if (this.loggedOut) return;
    const call = this.current;
    if (call) {
      call.hangup();
      call.finish(call.status === "answered" ? "over" : "cancelled", "user_hangup");
    }
    this.loggedOut = true;
    if (this.signaling) this.signaling.close();
    if (this.screens) this.screens.destroy();
    window.removeEventListener("online", this._onlineHandler);
    this._emit("logout", {});
  }

  /** Mute or unmute the microphone during a call. */
  mute() {
    if (this.current) this.current.setMuted(true);
  }

  unmute() {
    if (this.current) this.current.setMuted(false);
  }

  // -- frames and connectivity ------------------------------------------------------------------

  _onFrame(frame) {
    if (frame.type === "incoming") return this._onIncoming(frame);
    if (frame.type === "replaced") return this._onReplaced();
    if (frame.type === "error") return this._emit("error", fromServer(frame, ERR.INTERNAL));
    if (frame.type === "pong") return;
    const call = this.current;
    if (!call || !frame.call_id) return;
    if (call.id === frame.call_id) return call.handleFrame(frame);
    if (call.role === "caller" && !call.id) {
      const list = this.early.get(frame.call_id) || [];
      list.push(frame);
      this.early.set(frame.call_id, list);
    }
  }

  _onReplaced() {
    // This device signed in again elsewhere (another tab or a reload): step aside quietly.
    if (this.current) this.current.finish("over", "replaced");
    this.loggedOut = true;
    this.signaling.close();
    if (this.screens) this.screens.destroy();
    this._emit("logout", { reason: "replaced" });
  }

  _onSignalingDown(detail) {
    this._emit("connection", { state: "down", final: !!detail.final });
    const call = this.current;
    if (call) call.signalingLost({ final: !!detail.final, graceMs: (this.reconnectGrace + 2) * 1000 });
    if (detail.final && !this.loggedOut && detail.code === 4002) this.logout();
  }

  _onSignalingUp(ready) {
    this._onReady(ready);
    this._emit("connection", { state: "up" });
    const call = this.current;
    if (call) call.signalingBack((ready.calls || []).some((c) => c.call_id === call.id));
  }

  // -- screens, notifications, analytics ---------------------------------------------------

  async _onAction(action) {
    const call = this.current;
    if (!call) return;
    if (action === "answer") await call.answer();
    else if (action === "decline") call.decline();
    else if (action === "cancel" || action === "hangup") call.hangup();
    else if (action === "mute") call.setMuted(!call.muted);
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
