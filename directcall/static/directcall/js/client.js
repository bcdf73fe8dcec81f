// initDirectCall and the client it resolves: the contract of the original Direct Call Web SDK
// (call, hangup, logout) plus answer/decline/mute and events for sites that build their own UI.
// See docs/js-api.md.

import { Call } from "./call.js";
import { trackCall } from "./clevertap.js";
import { Devices, listDevices, speakerSelectionSupported } from "./devices.js";
import { followConnection, revoked } from "./connectivity.js";
import { dcError, ERR, fromServer } from "./errors.js";
import { postFeedback } from "./feedback.js";
import { wantedLanguage } from "./i18n.js";
import { Media } from "./media.js";
import { askNotificationPermission, notifyIncoming } from "./notify.js";
import { readCallOptions, readInitOptions } from "./options.js";
import { preflight } from "./preflight.js";
import { loadScreensMarkup } from "./screens.js";
import { claimKeptCall, resumedCall, resumeList, saveCallRecord } from "./resume.js";
import { fetchSession, SESSION_ATTEMPTS, waitBeforeRetry } from "./session.js";
import { Signaling } from "./signaling.js";
import { newDeviceKey, readDeviceKey, writeDeviceKey } from "./storage.js";
import { adoptCall, enableAudio, mountScreens } from "./ui.js";
import { isValidCuid, isValidUrl } from "./validation.js";
import { Watcher } from "./watch.js";

// Refused as ERR_ALREADY_SIGNEDIN without a device key: another tab of this browser may be
// signing in for the first time right now, and its key (shared through localStorage) is
// about to arrive. How long to wait for it before believing the refusal.
export const DEVICE_KEY_WAIT_MS = 1500;
// The longest hold of another browser on this cuid that the first sign-in waits out (the
// server says how long it has left, plus a second: DEVICE_HOLD, 10 s by default, or a
// call's grace). A minute, and that second.
export const HOLD_WAIT_MAX_MS = 61000;

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
    this.lastAnsweredCall = null; // the id postFeedback() rates by default
    this.outbox = []; // frames sent when the connection is back (a call's quality summary)
    this.devices = new Devices(() => this.current && this.current.media);
    this.devices.addEventListener("devicechange", (e) => this._emit("devicechange", e.detail));
  }

  /** The cuid this client is signed in as. */
  get cuid() {
    return this.config.cuid;
  }

  /** The current call as `{callId, role, status, peer}`, or null. */
  get activeCall() {
    return this.current ? this.current.summary() : null;
  }

  async _fetchSession(options) {
    const data = await fetchSession(this.config, options);
    this.session = data;
    this.config.cuid = data.cuid; // in session mode the server decides who this is
    return data;
  }

  async _start() {
    const loadMarkup = () =>
      this.config.showScreens
        ? loadScreensMarkup(this.config.serverUrl, undefined, wantedLanguage(this.config.language))
        : Promise.resolve(null);
    // Both requests at once; the sign-in's decides. A page that loads while the server
    // restarts (or cannot be reached) waits it out there, and its error is the one told.
    const early = loadMarkup();
    early.catch(() => {}); // awaited below, once the sign-in is through
    const session = await this._fetchSession({ attempts: SESSION_ATTEMPTS });
    // Screens that failed while the sign-in was still waiting for the server: once more.
    const markup = await early.catch(() => loadMarkup());
    await claimKeptCall(); // the call record of the page before, unless this tab is a copy
    this.signaling = new Signaling(() => this._fetchSession(), {
      authFields: () => this._authFields(),
      // Refused while reconnecting because another tab got this device a new key meanwhile,
      // or because another browser's hold on the cuid has a known end (retryAfter).
      retryRefusal: (error) =>
        error.code === ERR.ALREADY_SIGNEDIN && (readDeviceKey() !== this.presentedKey || error.retryAfter != null),
    });
    let ready;
    try {
      ready = await this._connect(session);
    } catch (error) {
      this.signaling.close();
      throw error;
    }
    this.screens = mountScreens(this, markup, session);
    this.watcher = new Watcher(this);
    this.signaling.addEventListener("frame", (e) => this._onFrame(e.detail));
    this._unfollow = followConnection(this);
    this._onReady(ready);
    this._resumeCall(ready);
  }

  /**
   * The first `ready`, with ERR_ALREADY_SIGNEDIN tried again when another tab brings a new
   * key or when the hold of another, closed browser ends (the refusal's retryAfter), and an
   * `auth` the server could not serve for a moment (Redis restarting: an error frame
   * ERR_SERVICE_UNAVAILABLE, then close 1011) tried again 1 s later, as the sign-in's
   * request is (SESSION_ATTEMPTS in all).
   */
  async _connect(session) {
    let unavailable = 0;
    for (let attempt = 0; ; attempt += 1) {
      try {
        return await this.signaling.connect(session);
      } catch (error) {
        if (error && error.code === ERR.SERVICE_UNAVAILABLE && ++unavailable < SESSION_ATTEMPTS) {
          await waitBeforeRetry();
          continue;
        }
        if (!error || error.code !== ERR.ALREADY_SIGNEDIN || attempt >= 3) throw error;
        if (error.retryAfter != null) {
          // No tab of another browser is open: it was closed a moment ago and its hold on
          // the cuid ends in retryAfter seconds. Sign in then, if that is soon enough.
          if (error.retryAfter * 1000 > HOLD_WAIT_MAX_MS) throw error;
          await new Promise((resolve) => setTimeout(resolve, error.retryAfter * 1000));
          continue;
        }
        const wait = this.presentedKey ? 300 : DEVICE_KEY_WAIT_MS;
        if (!(await newDeviceKey(this.presentedKey, wait))) throw error;
      }
    }
  }

  /** What the `auth` frame carries besides the token: this device's key and the call to take back. */
  _authFields() {
    this.presentedKey = readDeviceKey();
    const fields = { resume: resumeList(this.current, this.signedIn, this.config.cuid) };
    if (this.presentedKey) fields.device_key = this.presentedKey;
    return fields;
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

  /** The call this tab held before a reload, if the server handed it back: show it, re-establish its media. */
  _resumeCall(ready) {
    const call = resumedCall(ready, this.config.cuid, this._callEnv());
    if (!call) return;
    call.showScreens = !!this.screens;
    adoptCall(this, call);
    this.resumedCall = call;
    saveCallRecord(this.config.cuid, call);
    if (call.showScreens) this.screens.update(call, "resumed");
    call.resume();
  }

  _emit(type, detail, cancelable = false) {
    return this.dispatchEvent(new CustomEvent(type, { detail, cancelable }));
  }

  _onReady(ready) {
    this.signedIn = true;
    this.name = ready.name;
    this.reconnectGrace = Number(ready.reconnect_grace) || 20;
    this.feedback = ready.feedback === true; // the account asks for a rating after each call
    // The first tab of this device to sign in is given the key the others present.
    if (typeof ready.device_key === "string") writeDeviceKey(ready.device_key);
  }

  // -- calls ----------------------------------------------------------------------------------

  /** What a Call uses of this device: the connection, and media made with this session. */
  _callEnv() {
    return {
      signaling: this.signaling,
      getMicrophone: () => this.devices.openMicrophone(),
      sendLater: (frame) => this.signaling.send(frame) || this.outbox.push(frame),
      createMedia: (stream, onCandidates) =>
        this.devices.adopt(
          new Media(stream, {
            iceServers: this.session.iceServers,
            iceTransportPolicy: this.session.iceTransportPolicy,
            onCandidates,
          }),
        ),
    };
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
    adoptCall(this, call);
    if (call.showScreens) this.screens.update(call, "outgoing");
    askNotificationPermission();
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
    const call = Call.incoming(frame, this._callEnv());
    adoptCall(this, call);
    call.boundRinging(frame.ring_timeout);
    const shown = this._emit(
      "incoming",
      { callId: call.id, from: { ...call.peer, image: call.image }, context: call.context },
      true,
    );
    call.showScreens = shown && !!this.screens;
    if (call.showScreens) this.screens.update(call, "incoming");
    notifyIncoming(call, this.screens);
    this.signaling.send({ type: "ringing", call_id: call.id });
    trackCall(this.config, this.session, "DCIncoming", call);
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
    this.devices.close();
    if (this._unfollow) this._unfollow();
    this._emit("logout", detail);
  }

  /**
   * Play the call's audio that the browser refused to start without a user gesture (the
   * `audioblocked` event): call it from a click. Resolves whether everything plays now.
   */
  enableAudio() {
    return enableAudio(this);
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

  /** Follow who of `cuids` is online: resolves `{cuid: state}`; `online`/`offline`/`busy` events follow. */
  watch(cuids) {
    return this.watcher.watch(cuids);
  }

  /** Stop following `cuids` (all without an argument). */
  unwatch(cuids) {
    return this.watcher.unwatch(cuids);
  }

  // -- devices, feedback, preflight (devices.js, feedback.js, preflight.js) ---------------------

  /** `{microphones, speakers, speakerSelection}`: the devices this page can use. */
  listDevices() {
    return listDevices();
  }

  /** Whether this browser can choose the speaker (setSpeaker()). */
  get speakerSelection() {
    return speakerSelectionSupported();
  }

  /** Use microphone `deviceId` (null: the default), at once during a call (no renegotiation). */
  setMicrophone(deviceId) {
    return this.devices.setMicrophone(deviceId);
  }

  /** Play calls through speaker `deviceId` (null: the default); ERR_NOT_SUPPORTED without setSinkId. */
  setSpeaker(deviceId) {
    return this.devices.setSpeaker(deviceId);
  }

  /** Rate an answered call that ended (default: the last one): score 1-5 and issues. */
  postFeedback(score, issues, callId) {
    return postFeedback(this, score, issues, callId);
  }

  /** Check the microphone, signaling and a media path through TURN; resolves a report. */
  preflight(options) {
    return preflight(this, options);
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
    if (frame.type === "error" && frame.code === ERR.SESSION_REVOKED) return revoked(this, fromServer(frame));
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
}
