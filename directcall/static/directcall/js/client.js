// initDirectCall and the client it resolves: the contract of the original Direct Call Web SDK
// (call, hangup, logout) plus answer/decline/mute and events for sites that build their own UI.
// See docs/js-api.md.

import { Call } from "./call.js";
import { pushEvent } from "./clevertap.js";
import { dcError, ERR, fromServer } from "./errors.js";
import { getMicrophone, Media } from "./media.js";
import { ANSWERED_ELSEWHERE } from "./outcome.js";
import { readCallOptions, readInitOptions } from "./options.js";
import { loadScreensMarkup, Screens } from "./screens.js";
import { Signaling } from "./signaling.js";
import {
  clearCallRecord,
  readCallRecord,
  readDeviceKey,
  writeCallRecord,
  writeDeviceKey,
} from "./storage.js";
import { isValidCuid, isValidUrl } from "./validation.js";

// A Call's events (call.js) that the page sees, under their names in docs/js-api.md.
const PUBLIC_EVENTS = {
  statechange: "statechange",
  media: "media",
  peer: "peer",
  mute: "mute",
  audioblocked: "audioblocked",
  error: "error",
  end: "callend",
};
const CALL_EVENTS = ["placed", "connecting", "answered", "reconnecting", ...Object.keys(PUBLIC_EVENTS)];

// Refused as ERR_ALREADY_SIGNEDIN without a device key: another tab of this browser may be
// signing in for the first time right now, and its key (shared through localStorage) is
// about to arrive. How long to wait for it before believing the refusal.
export const DEVICE_KEY_WAIT_MS = 1500;

// The page's signed-in client (one per page, whichever copy of the SDK made it: the
// Django-served modules and an npm build share it through the global symbol registry).
const PAGE_CLIENT = Symbol.for("directcall.pageClient");

/**
 * Check the options, sign the cuid in and open the signaling connection.
 * Resolves the client; rejects `{code, message}`. A page has one client: while one is
 * signed in (or signing in), another initDirectCall rejects ERR_ALREADY_SIGNEDIN; after
 * its logout() a new one may sign in.
 */
export async function initDirectCall(options) {
  const config = readInitOptions(options);
  if (globalThis[PAGE_CLIENT]) {
    throw dcError(
      ERR.ALREADY_SIGNEDIN,
      "This page is already signed in: use the client initDirectCall resolved (or window.DirectCall.client), or call its logout() first.",
    );
  }
  const client = new DirectCallClient(config);
  globalThis[PAGE_CLIENT] = client;
  try {
    await client._start();
  } catch (error) {
    client._release();
    throw error;
  }
  client._afterStart();
  return client;
}

/** Resolves true once localStorage holds a device key other than `presented`, false after `ms`. */
function newDeviceKey(presented, ms) {
  return new Promise((resolve) => {
    const started = Date.now();
    const check = () => {
      const key = readDeviceKey();
      if (key && key !== presented) return resolve(true);
      if (Date.now() - started >= ms) return resolve(false);
      setTimeout(check, 100);
    };
    check();
  });
}

export class DirectCallClient extends EventTarget {
  constructor(config) {
    super();
    this.config = config;
    this.current = null; // the Call (call.js) in progress, if any
    this.loggedOut = false;
    this.session = null;
    this.early = new Map(); // frames for a call id we do not know yet (invite in flight)
    this.presentedKey = null; // the device key the last auth frame carried
    this.resumedCall = null; // the call this page took back at sign-in (announced by `resumed`)
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
      authFields: () => this._authFields(),
      // Refused while reconnecting because another tab got this device a new key meanwhile.
      retryRefusal: (error) => error.code === ERR.ALREADY_SIGNEDIN && readDeviceKey() !== this.presentedKey,
    });
    let ready;
    try {
      ready = await this._connect(session);
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
    if (this.screens) {
      this.screens.addEventListener("action", (e) => this._onAction(e.detail));
      this.screens.addEventListener("audioblocked", (e) => {
        if (this.current) this._emit("audioblocked", { callId: this.current.id, kind: e.detail.kind });
      });
    }
    this.signaling.addEventListener("frame", (e) => this._onFrame(e.detail));
    this.signaling.addEventListener("down", (e) => this._onSignalingDown(e.detail));
    this.signaling.addEventListener("up", (e) => this._onSignalingUp(e.detail));
    this._onlineHandler = () => this.current && this.current.restartIce();
    window.addEventListener("online", this._onlineHandler);
    // Leaving the page (reload, navigation, closing the tab) with an answered call: tell the
    // server, so that the other side waits only PAGE_GRACE for this page to come back.
    this._pageHideHandler = () => {
      const call = this.current;
      if (call && call.id && call.status === "answered" && !call.isOver) this.signaling.send({ type: "leaving" });
    };
    window.addEventListener("pagehide", this._pageHideHandler);
    this._onReady(ready);
    this._resumeCall(ready);
  }

  /** The first `ready`, with ERR_ALREADY_SIGNEDIN tried again when another tab brings a new key. */
  async _connect(session) {
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await this.signaling.connect(session);
      } catch (error) {
        if (!error || error.code !== ERR.ALREADY_SIGNEDIN || attempt >= 3) throw error;
        const wait = this.presentedKey ? 300 : DEVICE_KEY_WAIT_MS;
        if (!(await newDeviceKey(this.presentedKey, wait))) throw error;
      }
    }
  }

  /** What the `auth` frame carries besides the token: this device's key and the call to take back. */
  _authFields() {
    this.presentedKey = readDeviceKey();
    const fields = { resume: this._resumeList() };
    if (this.presentedKey) fields.device_key = this.presentedKey;
    return fields;
  }

  /**
   * The calls to ask about: the current one when reconnecting, with its key so that this
   * connection is bound to it; on the first sign-in, the one this tab held before a reload.
   */
  _resumeList() {
    const call = this.current;
    if (call && call.id) return [call.callKey ? { call_id: call.id, call_key: call.callKey } : call.id];
    if (this.signedIn) return [];
    // Only an answered call can be taken back by a new page: one that still rang went with
    // the page that placed it (its offer and its call() promise are gone; the server cancels it).
    const record = readCallRecord();
    if (record && record.cuid === this.config.cuid && record.answered_at) {
      return [{ call_id: record.call_id, call_key: record.call_key }];
    }
    return [];
  }

  /** Release the page's one client slot (initDirectCall may run again). */
  _release() {
    if (globalThis[PAGE_CLIENT] === this) delete globalThis[PAGE_CLIENT];
  }

  /** Once initDirectCall has resolved: tell the page about the call it took back. */
  _afterStart() {
    const call = this.resumedCall;
    if (!call) return;
    // A task later, so that listeners added right after `await initDirectCall()` hear it.
    setTimeout(() => {
      if (!call.isOver) this._emit("resumed", { callId: call.id, role: call.role, peer: { ...call.peer } });
    }, 0);
  }

  /**
   * The call this tab held before the page reloaded or navigated, if the server has handed it
   * back (listed answered in `ready.calls`): show it and re-establish its media.
   */
  _resumeCall(ready) {
    const record = readCallRecord();
    if (!record) return;
    const summary =
      record.cuid === this.config.cuid &&
      (ready.calls || []).find((c) => c && c.call_id === record.call_id && c.status === "answered");
    if (!summary) return clearCallRecord();
    const peer = summary.peer && typeof summary.peer.cuid === "string" ? summary.peer : record.peer;
    const image = [peer.image, record.peer.image].find((url) => isValidUrl(url)) || null;
    const answeredAt = Number(summary.answered_at || record.answered_at) * 1000 || Date.now();
    const call = new Call(
      {
        role: summary.role === "caller" || summary.role === "callee" ? summary.role : record.role,
        id: summary.call_id,
        status: "answered",
        answeredAt,
        peer: { cuid: peer.cuid, name: peer.name || peer.cuid },
        context: String(summary.context ?? record.context ?? ""),
        image,
        callKey: record.call_key,
      },
      this._callEnv(),
    );
    call.result.catch(() => {}); // the page that awaited call() is gone
    call.showScreens = !!this.screens;
    this._adopt(call);
    this.resumedCall = call;
    this._saveCallRecord(call);
    if (call.showScreens) this.screens.update(call, "resumed");
    call.resume();
  }

  /** Keep the call this tab holds in sessionStorage, for a reload or a navigation. */
  _saveCallRecord(call) {
    if (!call.id || !call.callKey || call.isOver) return;
    writeCallRecord({
      cuid: this.config.cuid,
      call_id: call.id,
      call_key: call.callKey,
      role: call.role,
      answered_at: call.answeredAt ? call.answeredAt / 1000 : null,
      peer: { cuid: call.peer.cuid, name: call.peer.name, image: call.image },
      context: call.context,
    });
  }

  _emit(type, detail, cancelable = false) {
    return this.dispatchEvent(new CustomEvent(type, { detail, cancelable }));
  }

  _onReady(ready) {
    this.signedIn = true;
    this.name = ready.name;
    this.reconnectGrace = Number(ready.reconnect_grace) || 20;
    // The first tab of this device to sign in is given the key the others present.
    if (typeof ready.device_key === "string") writeDeviceKey(ready.device_key);
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
    if (type === "placed") {
      this._saveCallRecord(call);
      this._track("DCOutgoing", call);
    }
    if (type === "answered") this._saveCallRecord(call);
    if (type === "end") {
      if (this.current === call) this.current = null;
      if (this.resumedCall === call) this.resumedCall = null;
      clearCallRecord(call.id);
      // The tab that answered reports the call; the others only stop ringing.
      if (call.id && detail.status !== ANSWERED_ELSEWHERE) this._track("DCEnd", call, { call_status: detail.status });
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
    call.boundRinging(frame.ring_timeout);
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
    this._logout({});
  }

  /** logout(), with the reason the page is told in the `logout` event when it was not the page's call. */
  _logout(detail) {
    if (this.loggedOut) return;
    const call = this.current;
    if (call) {
      call.hangup();
      call.finish(call.status === "answered" ? "over" : "cancelled", "user_hangup");
    }
    this.loggedOut = true;
    this._release();
    if (this.signaling) this.signaling.close();
    if (this.screens) this.screens.destroy();
    window.removeEventListener("online", this._onlineHandler);
    window.removeEventListener("pagehide", this._pageHideHandler);
    this._emit("logout", detail);
  }

  /**
   * Play the call's audio that the browser refused to start without a user gesture (the
   * `audioblocked` event): call it from a click. Resolves whether everything plays now.
   */
  async enableAudio() {
    const tries = [];
    const media = this.current && this.current.media;
    if (media && media.audioBlocked) tries.push(media.playRemote());
    if (this.screens) tries.push(this.screens.retryTone());
    const results = await Promise.allSettled(tries);
    const playing = results.every((r) => r.status === "fulfilled");
    if (playing && this.screens) this.screens.setRemoteBlocked(false);
    return playing;
  }

  /**
   * Refuse calls from `cuid` from now on: its call() to this user is rejected with
   * ERR_CALL_NOT_ALLOWED. Resolves once the server has recorded it; rejects `{code, message}`.
   */
  block(cuid) {
    if (this.loggedOut) return Promise.reject(dcError(ERR.NOT_INITIALIZED));
    if (!isValidCuid(cuid) || cuid === this.cuid) {
      return Promise.reject(dcError(ERR.INVALID_CALL_PARAMETERS, "block() takes another user's cuid."));
    }
    return this.signaling.request({ type: "block", cuid }).then(() => undefined);
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
    if (frame.type === "error" && frame.code === ERR.SESSION_REVOKED) return this._onRevoked(fromServer(frame));
    if (frame.type === "error") {
      // Another tab answered or declined first (or the ring ended): the `state` frame that
      // follows says how this call ended; the refusal itself is no error of the page's.
      const late = ["accept", "decline", "ringing"].includes(frame.in_reply_to) && frame.code === "ERR_CALL_STATE";
      if (late && this.current && this.current.id === frame.call_id) return;
      return this._emit("error", fromServer(frame, ERR.INTERNAL));
    }
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
    // A server older than per-tab connections: this device signed in again elsewhere (another
    // tab or a reload) and took over; step aside quietly. Current servers never send it.
    if (this.current) this.current.finish("over", "replaced");
    this._logout({ reason: "replaced" });
  }

  /** The host revoked this session (its user logged out, …): close 4011 follows. Signed out. */
  _onRevoked(error) {
    const call = this.current;
    if (call) call.signalingLost({ final: true, error });
    this._logout({ reason: "revoked", error });
  }

  _onSignalingDown(detail) {
    const final = !!detail.final;
    const error = detail.error || null;
    this._emit("connection", { state: "down", final });
    const call = this.current;
    if (call) call.signalingLost({ final, graceMs: (this.reconnectGrace + 2) * 1000, error });
    // Closed for good with a reason (revoked, origin refused, another device): signed out.
    if (final && error && !this.loggedOut) {
      this._logout(error.code === ERR.SESSION_REVOKED ? { reason: "revoked", error } : { reason: "refused", error });
    }
  }

  _onSignalingUp(ready) {
    this._onReady(ready);
    this._emit("connection", { state: "up" });
    const call = this.current;
    if (call) call.signalingBack((ready.calls || []).some((c) => c.call_id === call.id));
  }

  // -- screens, notifications, analytics ---------------------------------------------------

  async _onAction(action) {
    if (action === "enable-audio") return this.enableAudio();
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
