// The call screens: markup from the Django template directcall/screens.html, rendered in a
// shadow root so the host page's CSS cannot break them. Everything the other party
// controls (name, context, image URLs) is inserted as text or as a checked http(s) URL.

import { dcError, ERR, fromServer } from "./errors.js";
import { isValidUrl } from "./validation.js";

// The SDK's tones. Their URLs resolve when a tone first plays, never at module load: a
// bundle (the npm package) has no module URL of its own to resolve them against.
const TONE_FILES = { ringtone: "ringtone.wav", ringback: "ringback.wav", end: "end.wav" };

/** This module's URL when it is served as a file (Django's static files); null in a bundle. */
function moduleUrl() {
  // The npm build (npm/build.mjs) defines import.meta.url as undefined, so a bundle never
  // resolves anything next to itself.
  return import.meta.url || null;
}

/**
 * The URL of a tone ("ringtone", "ringback", "end"), or null when there is none to play.
 * In order: the `assetsUrl` option (a folder holding the three files), the URL the server's
 * screens markup advertises (`data-tone-*`), the audio folder next to this module.
 */
export function resolveTone(kind, { assetsUrl, advertised, pageUrl, moduleBase = moduleUrl() } = {}) {
  const file = TONE_FILES[kind];
  if (!file) return null;
  const page = pageUrl || (typeof document !== "undefined" ? document.baseURI : undefined);
  try {
    if (assetsUrl) {
      const base = new URL(assetsUrl, page);
      if (!base.pathname.endsWith("/")) base.pathname += "/";
      return new URL(file, base).href;
    }
    if (advertised) return new URL(advertised, page).href;
    if (moduleBase) return new URL(`../audio/${file}`, moduleBase).href;
  } catch {
    // an unusable base: no tone rather than a broken load
  }
  return null;
}

/** Make the markup's relative URLs (stylesheet, tones) absolute against the server's URL. */
function absolutize(markup, baseUrl) {
  const template = document.createElement("template");
  template.innerHTML = markup;
  const fix = (el, attr) => {
    const value = el.getAttribute(attr);
    if (!value) return;
    try {
      el.setAttribute(attr, new URL(value, baseUrl).href);
    } catch {
      // left as it was
    }
  };
  for (const link of template.content.querySelectorAll("link[href]")) fix(link, "href");
  for (const el of template.content.querySelectorAll("[data-tone-ringtone], [data-tone-ringback], [data-tone-end]")) {
    for (const attr of ["data-tone-ringtone", "data-tone-ringback", "data-tone-end"]) fix(el, attr);
  }
  return template.innerHTML;
}

/** Format seconds as m:ss or h:mm:ss. */
export function formatDuration(totalSeconds) {
  const s = Math.max(0, Math.floor(totalSeconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const pad = (n) => String(n).padStart(2, "0");
  return h ? `${h}:${pad(m)}:${pad(s % 60)}` : `${pad(m)}:${pad(s % 60)}`;
}

/**
 * Load the screens' markup: a <template id="directcall-screens"> in the page, else the server's.
 * Rejects `{code, message}`: the server's error when it sent one (ERR_RATE_LIMITED, …), else
 * ERR_INTERNET_LOST (no answer, or an answer that is not the markup).
 */
export async function loadScreensMarkup(serverUrl, fetchImpl = globalThis.fetch) {
  const inPage = typeof document !== "undefined" && document.getElementById("directcall-screens");
  if (inPage && inPage.content) return inPage.innerHTML;
  const url = new URL("v1/screens", serverUrl).href;
  const lost = (why) => dcError(ERR.INTERNET_LOST, `The call screens could not be loaded from ${url} (${why}).`);
  let response;
  let text;
  try {
    response = await fetchImpl(url, { credentials: "omit" });
    text = await response.text();
  } catch (err) {
    throw lost((err && (err.message || err.name)) || "no answer");
  }
  if (!response.ok) {
    let body = null;
    try {
      body = JSON.parse(text);
    } catch {
      body = null;
    }
    throw body && body.code ? fromServer(body, ERR.INTERNET_LOST) : lost(`HTTP ${response.status}`);
  }
  // Relative URLs in it are the server's, not the page's (a page on another origin).
  return absolutize(text, response.url || url);
}

export class Screens extends EventTarget {
  constructor(markup, branding = {}, { ringtone, assetsUrl } = {}) {
    super();
    this.host = document.createElement("div");
    this.host.setAttribute("data-directcall-screens", "");
    this.root = this.host.attachShadow({ mode: "open" });
    // The markup is our own server's template, never the other party's data.
    this.root.innerHTML = markup;
    this.overlay = this.root.querySelector(".dc-overlay");
    this.labels = { ...this.overlay.dataset };
    this.branding = branding;
    this.host.style.setProperty("--dc-bg", branding.backgroundColor || "");
    this.host.style.setProperty("--dc-fg", branding.textColor || "");
    this.overlay.classList.add(`theme-${branding.buttonTheme || "standard"}`);
    this.ringtone = ringtone || null;
    this.assetsUrl = assetsUrl || null;
    this.audio = null;
    this.toneBlocked = false; // the browser refused to play the tone
    this.remoteBlocked = false; // … or the other party's audio
    this.timer = null;
    this.enableAudioButton = this._enableAudioButton();
    this.root.addEventListener("click", (event) => {
      const button = event.target.closest("[data-action]");
      if (button) this.dispatchEvent(new CustomEvent("action", { detail: button.dataset.action }));
    });
    (document.body || document.documentElement).appendChild(this.host);
  }

  label(name, fallback = name) {
    return this.labels[`label${name[0].toUpperCase()}${name.slice(1)}`] || fallback;
  }

  /**
   * The "Tap to enable audio" button: the template's `[data-action="enable-audio"]`, or one
   * made here when an overridden template has none. Shown while the browser refuses to play
   * the call's audio without a user gesture; a click on it plays it (client.enableAudio()).
   */
  _enableAudioButton() {
    let button = this.root.querySelector('[data-action="enable-audio"]');
    if (!button) {
      button = document.createElement("button");
      button.type = "button";
      button.className = "dc-btn dc-plain dc-enable-audio";
      button.setAttribute("data-action", "enable-audio");
      button.textContent = this.label("enableAudio", "Tap to enable audio");
      const card = this.root.querySelector(".dc-card") || this.overlay;
      card.appendChild(button);
    }
    button.hidden = true;
    return button;
  }

  /** The "Tap to enable audio" button shows while a screen is up and some sound is held back. */
  _refreshEnableAudio() {
    this.enableAudioButton.hidden = !(this.screen && (this.toneBlocked || this.remoteBlocked));
  }

  /** Whether the browser holds back the other party's audio (until client.enableAudio()). */
  setRemoteBlocked(on) {
    this.remoteBlocked = on;
    this._refreshEnableAudio();
  }

  slot(name) {
    return this.root.querySelector(`[data-slot="${name}"]`);
  }

  _setImage(slot, url) {
    const img = this.slot(slot);
    if (isValidUrl(url)) {
      img.src = url;
      img.hidden = false;
    } else {
      img.removeAttribute("src");
      img.hidden = true;
    }
  }

  /** Show one screen: "outgoing", "incoming" or "ongoing". */
  show(screen, { name, context, image, status } = {}) {
    this.screen = screen;
    for (const el of this.root.querySelectorAll("[data-screen]")) el.hidden = el.dataset.screen !== screen;
    if (name !== undefined) this.slot("name").textContent = name;
    if (context !== undefined) this.slot("context").textContent = context || "";
    if (image !== undefined) this._setImage("image", image);
    this._setImage("logo", this.branding.logoUrl);
    this.setStatus(status || "");
    this.slot("timer").hidden = screen !== "ongoing";
    // A call in progress docks in a corner, leaving the page usable: people keep browsing
    // (and follow links: the next page takes the call back). Ringing screens are modal.
    const docked = screen === "ongoing";
    this.overlay.classList.toggle("dc-docked", docked);
    this.overlay.setAttribute("aria-modal", String(!docked));
    this.overlay.hidden = false;
    this._refreshEnableAudio();
    const primary = this.root.querySelector(`[data-screen="${screen}"] [data-action]`);
    if (primary) primary.focus({ preventScroll: true });
  }

  setName(name) {
    this.slot("name").textContent = name;
  }

  setStatus(text) {
    const status = this.slot("status");
    status.textContent = text;
    status.hidden = !text;
  }

  startTimer(since = Date.now()) {
    this.stopTimer();
    const tick = () => {
      this.slot("timer").textContent = formatDuration((Date.now() - since) / 1000);
    };
    tick();
    this.timer = setInterval(tick, 1000);
  }

  stopTimer() {
    clearInterval(this.timer);
    this.timer = null;
  }

  setReconnecting(on) {
    if (this.screen === "ongoing") this.setStatus(on ? this.label("reconnecting") : "");
  }

  setMuted(muted) {
    const button = this.root.querySelector('[data-action="mute"]');
    if (!button) return;
    button.setAttribute("aria-pressed", String(muted));
    button.textContent = muted ? this.label("unmute") : this.label("mute");
  }

  /** Loop a tone ("ringtone", "ringback") or play one once ("end"). */
  play(kind) {
    this.stopTone();
    const url = this.toneUrl(kind);
    if (!url) return;
    const audio = new Audio(url);
    audio.loop = kind !== "end";
    this.audio = audio;
    this.toneBlocked = false;
    audio.play().catch((err) => {
      // Autoplay refused before a user gesture: offer the button that plays it from a click
      // (the end tone is not worth one: its screen is gone).
      if (!err || err.name !== "NotAllowedError" || this.audio !== audio || kind === "end") return;
      this.toneBlocked = true;
      this._refreshEnableAudio();
      this.dispatchEvent(new CustomEvent("audioblocked", { detail: { kind } }));
    });
  }

  /** Play again a tone the browser refused to start (from a click). */
  async retryTone() {
    const audio = this.audio;
    if (!audio || !this.toneBlocked) return;
    await audio.play();
    if (this.audio === audio) this.toneBlocked = false;
    this._refreshEnableAudio();
  }

  /** Where the tone `kind` is: the ringtone option first, then resolveTone's order. */
  toneUrl(kind) {
    if (kind === "ringtone" && this.ringtone) return this.ringtone;
    const advertised = this.overlay.getAttribute(`data-tone-${kind}`);
    return resolveTone(kind, { assetsUrl: this.assetsUrl, advertised });
  }

  stopTone() {
    this.toneBlocked = false;
    this._refreshEnableAudio();
    if (this.audio) {
      this.audio.pause();
      this.audio.src = "";
      this.audio = null;
    }
  }

  hide() {
    this.stopTone();
    this.stopTimer();
    this.overlay.hidden = true;
    this.screen = null;
    this.remoteBlocked = false;
    this._refreshEnableAudio();
    this.setMuted(false);
  }

  /** The ongoing screen of `call`: the callee sees the caller's context and picture; the caller
   * wrote the context, and keeps the receiver's picture (`keepImage`: the one already shown). */
  _showOngoing(call, { keepImage = false } = {}) {
    const callee = call.role === "callee";
    this.show("ongoing", {
      name: call.peer.name,
      context: callee ? call.context : "",
      image: callee || !keepImage ? call.image : undefined,
    });
    this.startTimer(call.answeredAt);
  }

  /**
   * Follow a call (call.js): "outgoing", "incoming" and "resumed" (a call taken back after a
   * reload) open its screen; the Call's events ("placed", "statechange", "connecting",
   * "answered", "reconnecting", "mute", "audioblocked", "end") move it on.
   */
  update(call, type, detail = {}) {
    if (type === "outgoing") {
      const status = this.label("calling");
      this.show("outgoing", { name: call.peer.name, context: "", image: call.image, status });
    } else if (type === "incoming") {
      this.show("incoming", { name: call.peer.name, context: call.context, image: call.image });
      this.play("ringtone");
    } else if (type === "placed") {
      this.setName(call.peer.name);
      if (call.status === "initiated") this.play("ringback");
    } else if (type === "statechange") {
      if (detail.status === "ringing" && call.role === "caller") this.setStatus(this.label("ringing"));
    } else if (type === "connecting") {
      this.stopTone();
      this.setStatus(this.label("connecting"));
    } else if (type === "answered") {
      this.stopTone();
      this._showOngoing(call, { keepImage: true });
    } else if (type === "resumed") {
      this._showOngoing(call);
      this.setReconnecting(true);
    } else if (type === "audioblocked") {
      this.setRemoteBlocked(true);
    } else if (type === "reconnecting") {
      this.setReconnecting(detail.on);
    } else if (type === "mute") {
      this.setMuted(detail.muted);
    } else if (type === "end") {
      this.hide();
      if (call.answeredAt) this.play("end");
    }
  }

  destroy() {
    this.hide();
    this.host.remove();
  }
}
