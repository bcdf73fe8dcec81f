// The call screens: markup from the Django template directcall/screens.html, rendered in a
// shadow root so the host page's CSS cannot break them. Everything the other party
// controls (name, context, image URLs) is inserted as text or as a checked http(s) URL.

import { dcError, ERR, fromServer } from "./errors.js";
import { ENGLISH, format, markupLanguage, readStrings, speaks } from "./i18n.js";
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
 * Load the screens' markup: a <template id="directcall-screens"> in the page when it speaks
 * `language` (or no language is asked for), else the server's, in `language` (the server
 * answers its closest catalog). Rejects `{code, message}`: the server's error when it sent
 * one (ERR_RATE_LIMITED, …), else ERR_INTERNET_LOST (no answer, or an answer that is not the
 * markup).
 */
export async function loadScreensMarkup(serverUrl, fetchImpl = globalThis.fetch, language = null) {
  const inPage = typeof document !== "undefined" && document.getElementById("directcall-screens");
  if (inPage && inPage.content && speaks(markupLanguage(inPage.innerHTML), language)) return inPage.innerHTML;
  const address = new URL("v1/screens", serverUrl);
  if (language) address.searchParams.set("lang", language);
  const url = address.href;
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

// Where modules mount their UI (screens.mount): created when an overridden template lacks them.
const REGIONS = {
  indicator: { shownOn: "ongoing", before: ".dc-logo" },
  notice: { shownOn: "", before: "[data-action='enable-audio']" },
  controls: { shownOn: "ongoing", before: null },
  prompt: { shownOn: "prompt", before: null },
};
// The screens on which the dialog is modal (the page behind it waits): focus stays inside.
// The "ended" screen keeps the modality of the screen it follows.
const MODAL = new Set(["outgoing", "incoming"]);

/** How long the outcome of a call ("Declined", "Busy", an error's message…) stays on screen. */
export const ENDED_SCREEN_MS = 2500;

// What the caller's screen says of an unanswered call (the status call() rejects with); a
// status not listed here (the caller's own "cancelled") closes the screen at once.
const UNANSWERED_TEXT = { declined: "declined", busy: "busy", missed: "noAnswer" };

/**
 * What the screen of a call that just ended says, from what call() settled with (`"over"`, a
 * status string or `{code, message}`): `{key}` (a screen text), `{text}` (an error's own
 * message) or null (close at once: one's own cancel or decline, a call answered in another
 * tab, an unanswered incoming call). `failure`: the `{code, message}` of the call's own
 * "error" event (answering failed here: a refused microphone), said for a callee instead
 * of closing.
 */
export function endedOutcome(role, settled, answered = false, failure = null) {
  if (settled === "over") return { key: "announceEnded" };
  if (role !== "caller" && !answered) {
    // An incoming call never answered closes, unless answering it failed here: say why.
    return failure && failure.message ? { text: failure.message } : null;
  }
  if (settled && typeof settled === "object") {
    const message = typeof settled.message === "string" ? settled.message.trim() : "";
    return message ? { text: message } : { key: "callFailed" };
  }
  if (role !== "caller") return null;
  const key = UNANSWERED_TEXT[settled];
  return key ? { key } : null;
}

/**
 * The name a screen shows for the other party (`peer`: {cuid, name}): the server's name for
 * them, else the name the page gave (`pageName`: a call button's), else the cuid (a caller's
 * Call names the receiver by its cuid until the server answers the invite).
 */
export function shownName(peer, pageName = null) {
  const { cuid = "", name = "" } = peer || {};
  if (name && name !== cuid) return name;
  return pageName || name || cuid || "";
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
    this.card = this.root.querySelector(".dc-card") || this.overlay;
    // The texts the SDK writes, in the markup's language; older templates' data-label-*.
    this.strings = { ...ENGLISH, ...legacyLabels(this.overlay.dataset), ...readStrings(this.root) };
    this.lang = this.overlay.getAttribute("lang") || "";
    this.dir = this.overlay.getAttribute("dir") === "rtl" ? "rtl" : "ltr";
    this.branding = branding;
    this.host.style.setProperty("--dc-bg", branding.backgroundColor || "");
    this.host.style.setProperty("--dc-fg", branding.textColor || "");
    this.overlay.classList.add(`theme-${branding.buttonTheme || "standard"}`);
    this.ringtone = ringtone || null;
    this.assetsUrl = assetsUrl || null;
    this.audio = null;
    this.toneKind = null; // which tone this.audio plays
    this.toneBlocked = false; // the browser refused to play the tone
    this.remoteBlocked = false; // … or the other party's audio
    this.timer = null;
    this.screen = null;
    this.peerName = "";
    this.returnFocus = null; // what had the page's focus before a screen opened
    this.closePrompt = null;
    // The outcome of the call that just ended stays this long ("ended" screen; 0: no pause).
    this.endedMs = ENDED_SCREEN_MS;
    this.endedTimer = null;
    // Bumped by every show, prompt and hide: a call's end decided later (a microtask on)
    // does nothing once another screen has replaced its own.
    this.epoch = 0;
    this.destroyed = false;
    this.expected = null; // {cuid, name}: the name of the person the next outgoing call is to
    this.names = new WeakMap(); // call -> the name its outgoing screen started with
    this.failures = new WeakMap(); // call -> the {code, message} its "error" event told
    this.regions = this._regions();
    this.live = this._liveRegion();
    this.enableAudioButton = this._enableAudioButton();
    this.closeButton = this._closeButton();
    this.root.addEventListener("click", (event) => {
      const button = event.target.closest("[data-action]");
      if (!button) return;
      // "close" dismisses the outcome of a call that has ended: the screens' own business.
      if (button.dataset.action === "close") return this._closeEnded();
      this.dispatchEvent(new CustomEvent("action", { detail: button.dataset.action }));
    });
    this.root.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && this.screen === "ended") {
        event.preventDefault();
        this._closeEnded();
        return;
      }
      this._trapFocus(event);
    });
    (document.body || document.documentElement).appendChild(this.host);
  }

  /** A screen text in the markup's language, `%(name)s` placeholders filled from `params`. */
  t(key, params = {}, fallback = undefined) {
    const text = key in this.strings ? this.strings[key] : fallback !== undefined ? fallback : key;
    return format(text, params);
  }

  /** A screen text by key (kept for callers of the older API: `t` without placeholders). */
  label(name, fallback = name) {
    return this.t(name, {}, fallback);
  }

  // -- regions other modules mount into (docs/js-api.md, "Call screens") ----------------------

  _regions() {
    const regions = {};
    for (const [name, { shownOn, before }] of Object.entries(REGIONS)) {
      let el = this.root.querySelector(`[data-region="${name}"]`);
      if (!el) {
        el = document.createElement("div");
        el.className = `dc-region dc-${name}`;
        el.setAttribute("data-region", name);
        if (shownOn) el.setAttribute("data-shown-on", shownOn);
        const anchor = before && this.card.querySelector(before);
        if (anchor) anchor.before(el);
        else this.card.appendChild(el);
      }
      regions[name] = el;
    }
    return regions;
  }

  _liveRegion() {
    let live = this.root.querySelector('[data-slot="live"]');
    if (!live) {
      live = document.createElement("div");
      live.className = "dc-sr";
      live.setAttribute("data-slot", "live");
      live.setAttribute("aria-live", "polite");
      live.setAttribute("aria-atomic", "true");
      this.root.appendChild(live);
    }
    return live;
  }

  /**
   * Put `element` into a region of the call card: "indicator" (ongoing screen, top corner),
   * "notice" (every screen, under the status), "controls" (ongoing screen, under its buttons).
   * Returns a function that takes it out again.
   */
  mount(region, element) {
    const container = this.regions[region];
    if (!container || region === "prompt") throw new TypeError(`No screen region "${region}".`);
    container.appendChild(element);
    return () => element.remove();
  }

  /**
   * After a call: a small docked card holding `element` (a rating prompt, say), with focus
   * moved into it; `label` is its accessible name. Returns the function that closes it; a
   * new call's screen closes it too.
   */
  showPrompt(element, { label = "" } = {}) {
    if (this.closePrompt) this.closePrompt();
    this._leaveEnded();
    const region = this.regions.prompt;
    region.replaceChildren(element);
    this.overlay.setAttribute("aria-label", label);
    this.overlay.removeAttribute("aria-labelledby");
    this.overlay.removeAttribute("aria-describedby");
    this._setScreen("prompt");
    this.overlay.classList.add("dc-docked", "dc-prompting");
    this.overlay.setAttribute("aria-modal", "false");
    this.overlay.hidden = false;
    const first = this._focusables()[0];
    (first || this.card).focus({ preventScroll: true });
    const close = () => {
      if (this.closePrompt !== close) return;
      this.closePrompt = null;
      region.replaceChildren();
      this.overlay.classList.remove("dc-prompting");
      this.overlay.removeAttribute("aria-label");
      this.overlay.setAttribute("aria-labelledby", "dc-name");
      this.overlay.setAttribute("aria-describedby", "dc-status");
      if (this.screen === "prompt") {
        this.overlay.hidden = true;
        this._setScreen(null);
        this._restoreFocus();
      }
    };
    this.closePrompt = close;
    return close;
  }

  /** Say `text` to screen readers (the screens' polite live region). */
  announce(text) {
    if (!text) return;
    // A new text node each time: the same words twice in a row are said twice.
    this.live.textContent = "";
    setTimeout(() => {
      this.live.textContent = text;
    }, 50);
  }

  _setScreen(screen, call = null) {
    this.screen = screen;
    for (const el of this.root.querySelectorAll("[data-shown-on]")) {
      const on = el.getAttribute("data-shown-on");
      el.hidden = on !== "" && on !== screen;
    }
    this.dispatchEvent(new CustomEvent("screen", { detail: { screen, call } }));
  }

  /** The focusable controls of the card that show now, in order. */
  _focusables() {
    const selector = "button, [href], input, select, textarea, [tabindex]:not([tabindex='-1'])";
    return [...this.card.querySelectorAll(selector)].filter(
      (el) => !el.disabled && el.getClientRects().length > 0,
    );
  }

  /** Whether the screen up now is modal (outgoing, incoming, and the end of one of them). */
  _isModal() {
    return !this.overlay.hidden && this.screen !== null && this.overlay.getAttribute("aria-modal") === "true";
  }

  /** Tab and Shift+Tab stay inside a modal screen (outgoing, incoming). */
  _trapFocus(event) {
    if (event.key !== "Tab" || !this._isModal()) return;
    const items = this._focusables();
    if (!items.length) return;
    const current = this.root.activeElement;
    const first = items[0];
    const last = items[items.length - 1];
    if (event.shiftKey && (current === first || current === this.card)) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && current === last) {
      event.preventDefault();
      first.focus();
    }
  }

  /** Focus goes back where it was before the screens took it (if still on the page). */
  _restoreFocus() {
    const active = this.root.activeElement;
    const target = this.returnFocus;
    this.returnFocus = null;
    if (!active) return; // the user has moved on: leave the focus alone
    if (target && target.isConnected && typeof target.focus === "function" && target !== document.body) {
      target.focus({ preventScroll: true });
    } else {
      active.blur();
    }
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
      button.textContent = this.t("enableAudio");
      this.card.appendChild(button);
    }
    button.hidden = true;
    return button;
  }

  /**
   * The "Close" button of the screen that shows how a call ended: the template's
   * `[data-action="close"]` (in its `data-screen="ended"` actions), or one made here when an
   * overridden template has none.
   */
  _closeButton() {
    let button = this.root.querySelector('[data-action="close"]');
    if (!button) {
      const actions = document.createElement("div");
      actions.className = "dc-actions";
      actions.setAttribute("data-screen", "ended");
      actions.hidden = true;
      button = document.createElement("button");
      button.type = "button";
      button.className = "dc-btn dc-plain";
      button.setAttribute("data-action", "close");
      button.textContent = this.t("close");
      actions.appendChild(button);
      const anchor = this.regions.controls;
      if (anchor && anchor.parentNode) anchor.before(actions);
      else this.card.appendChild(actions);
    }
    return button;
  }

  /** The "Tap to enable audio" button shows while a screen is up and some sound is held back. */
  _refreshEnableAudio() {
    const calling = this.screen && this.screen !== "prompt" && this.screen !== "ended";
    this.enableAudioButton.hidden = !(calling && (this.toneBlocked || this.remoteBlocked));
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
    if (!img) return false;
    if (isValidUrl(url)) {
      img.src = url;
      img.hidden = false;
      return true;
    }
    img.removeAttribute("src");
    img.hidden = true;
    return false;
  }

  /** The other party's picture, or their initial in a circle when there is none. */
  _setAvatar(url) {
    const shown = this._setImage("image", url);
    const initials = this.slot("initials");
    if (!initials) return;
    const letter = Array.from((this.peerName || "").trim())[0] || "";
    initials.textContent = letter.toLocaleUpperCase(this.lang || undefined);
    initials.hidden = shown || !letter;
  }

  /** The accessible names of the buttons, naming the other party. */
  _labelButtons() {
    const name = this.peerName;
    for (const action of ["answer", "decline", "cancel", "hangup"]) {
      const button = this.root.querySelector(`[data-action="${action}"]`);
      if (button) button.setAttribute("aria-label", this.t(`${action}Label`, { name }));
    }
    const mute = this.root.querySelector('[data-action="mute"]');
    if (mute) this.setMuted(mute.getAttribute("data-muted") === "true");
  }

  /** Show one screen: "outgoing", "incoming" or "ongoing". */
  show(screen, { name, context, image, status, call = null } = {}) {
    if (this.closePrompt) this.closePrompt();
    // A new call's screen replaces the outcome of the last one at once.
    this._leaveEnded();
    // Read before the buttons that may hold the focus are hidden.
    const inside = this.root.activeElement;
    if (this.overlay.hidden && !this.returnFocus) {
      const active = document.activeElement;
      this.returnFocus = active && active !== this.host ? active : null;
    }
    for (const el of this.root.querySelectorAll("[data-screen]")) el.hidden = el.dataset.screen !== screen;
    if (name !== undefined) this.setName(name);
    if (context !== undefined) this.slot("context").textContent = context || "";
    if (image !== undefined) this._setAvatar(image);
    this._setImage("logo", this.branding.logoUrl);
    this.setStatus(status || "");
    this.slot("timer").hidden = screen !== "ongoing";
    // A call in progress docks in a corner, leaving the page usable: people keep browsing
    // (and follow links: the next page takes the call back). Ringing screens are modal.
    const docked = screen === "ongoing";
    this.overlay.classList.toggle("dc-docked", docked);
    this.overlay.setAttribute("aria-modal", String(!docked));
    this.overlay.hidden = false;
    this._setScreen(screen, call);
    this._refreshEnableAudio();
    // Focus moves to the card (its name is the dialog's, its status its description); Tab
    // reaches the buttons. Not onto Answer or Hang up: an Enter meant for the page must not
    // act on the call. An ongoing screen takes focus only from a ringing one.
    if (MODAL.has(screen) || inside) this.card.focus({ preventScroll: true });
  }

  /**
   * The end of a call, for ENDED_SCREEN_MS: its screen stays (name, picture; modal or docked
   * as it was) with `text` as its status, the final duration for an answered call, and only
   * a Close button (Escape closes it too). Then, or on Close, the screens hide as at any end.
   */
  _showEnded(call, text, duration = null) {
    const inside = this.root.activeElement;
    this._leaveEnded();
    for (const el of this.root.querySelectorAll("[data-screen]")) el.hidden = el.dataset.screen !== "ended";
    this.setStatus(text);
    // An answered call: its timer stays, stopped at the call's length.
    if (call.answeredAt) {
      const seconds = Number.isFinite(duration) ? duration : (Date.now() - call.answeredAt) / 1000;
      this.slot("timer").textContent = formatDuration(seconds);
    }
    this.slot("timer").hidden = !call.answeredAt;
    this.overlay.hidden = false;
    this._setScreen("ended", call);
    this._refreshEnableAudio();
    // The focus was in the screens (on the card, or on a button now hidden): it goes to the
    // card, whose description is the outcome; a page that has the focus keeps it.
    if (inside) this.card.focus({ preventScroll: true });
    const epoch = this.epoch;
    if (this.endedMs > 0) {
      this.endedTimer = setTimeout(() => {
        this.endedTimer = null;
        if (this.epoch === epoch && this.screen === "ended") this.hide();
      }, this.endedMs);
    } else {
      this.hide();
    }
  }

  /** Stop the pause of an "ended" screen (another screen replaces it). */
  _leaveEnded() {
    clearTimeout(this.endedTimer);
    this.endedTimer = null;
    this.epoch += 1;
  }

  /** Close the "ended" screen now (its Close button, Escape). */
  _closeEnded() {
    if (this.screen === "ended") this.hide();
  }

  setName(name) {
    this.peerName = name || "";
    this.slot("name").textContent = this.peerName;
    this._labelButtons();
    const initials = this.slot("initials");
    if (initials && !initials.hidden) this._setAvatar(null);
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
    if (this.screen !== "ongoing") return;
    const was = this.reconnecting;
    this.reconnecting = on;
    this.setStatus(on ? this.t("reconnecting") : "");
    if (on && !was) this.announce(this.t("reconnecting"));
    else if (!on && was) this.announce(this.t("announceReconnected"));
  }

  setMuted(muted) {
    const button = this.root.querySelector('[data-action="mute"]');
    if (!button) return;
    // The button names what it does next (Mute / Unmute); the change is announced.
    button.setAttribute("data-muted", String(muted));
    button.textContent = muted ? this.t("unmute") : this.t("mute");
    button.setAttribute("aria-label", muted ? this.t("unmuteLabel") : this.t("muteLabel"));
  }

  /** Loop a tone ("ringtone", "ringback") or play one once ("end"). */
  play(kind) {
    this.stopTone();
    const url = this.toneUrl(kind);
    if (!url) return;
    const audio = new Audio(url);
    audio.loop = kind !== "end";
    this.audio = audio;
    this.toneKind = kind;
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
      this.toneKind = null;
    }
  }

  hide() {
    this._leaveEnded();
    // The end tone (played once, short) is let finish as the screen closes.
    if (this.toneKind !== "end") this.stopTone();
    this.stopTimer();
    if (this.screen === "prompt") return; // a prompt shown after the call stays until closed
    this.overlay.hidden = true;
    this.remoteBlocked = false;
    this.reconnecting = false;
    this._refreshEnableAudio();
    this.setMuted(false);
    if (this.screen !== null) this._setScreen(null);
    this._restoreFocus();
  }

  /** The ongoing screen of `call`: the callee sees the caller's context and picture; the caller
   * wrote the context, and keeps the receiver's picture (`keepImage`: the one already shown). */
  _showOngoing(call, { keepImage = false } = {}) {
    const callee = call.role === "callee";
    this.show("ongoing", {
      name: this._nameOf(call),
      context: callee ? call.context : "",
      image: callee || !keepImage ? call.image : undefined,
      call,
    });
    this.startTimer(call.answeredAt);
  }

  /**
   * Follow a call (call.js): "outgoing", "incoming" and "resumed" (a call taken back after a
   * reload) open its screen; the Call's events ("placed", "statechange", "connecting",
   * "answered", "reconnecting", "mute", "audioblocked", "end") move it on. Each change is
   * said in the live region.
   */
  update(call, type, detail = {}) {
    if (type === "outgoing") this._takeExpectedName(call);
    const name = this._nameOf(call);
    if (type === "outgoing") {
      const status = this.t("calling");
      this.show("outgoing", { name, context: "", image: call.image, status, call });
    } else if (type === "incoming") {
      this.show("incoming", { name, context: call.context, image: call.image, status: this.t("incoming"), call });
      this.announce(this.t("announceIncoming", { name }));
      this.play("ringtone");
    } else if (type === "placed") {
      // Said now, with the name the server gave (until then the screen shows the name the
      // call button gave, else the cuid).
      this.setName(name);
      this.announce(this.t("announceCalling", { name }));
      if (call.status === "initiated") this.play("ringback");
    } else if (type === "statechange") {
      if (detail.status === "ringing" && call.role === "caller") this.setStatus(this.t("ringing"));
    } else if (type === "connecting") {
      this.stopTone();
      this.setStatus(this.t("connecting"));
    } else if (type === "answered") {
      this.stopTone();
      this._showOngoing(call, { keepImage: true });
      this.announce(this.t("announceConnected", { name }));
    } else if (type === "resumed") {
      this._showOngoing(call);
      this.setReconnecting(true);
    } else if (type === "audioblocked") {
      this.setRemoteBlocked(true);
    } else if (type === "reconnecting") {
      this.setReconnecting(detail.on);
    } else if (type === "mute") {
      this.setMuted(detail.muted);
      this.announce(this.t(detail.muted ? "announceMuted" : "announceUnmuted"));
    } else if (type === "error") {
      // What went wrong with this call (a callee's microphone refused while answering):
      // said on its ended screen, which otherwise closes at once for an unanswered callee.
      this.failures.set(call, detail);
    } else if (type === "end") {
      this._end(call, detail);
    }
  }

  /**
   * A call has ended. Its sounds, timer and call state stop now; what the screen says comes
   * from what call() settles with (a status or `{code, message}`), which finish() settles
   * just after this event: "Declined", "Busy", "No answer", an error's message, or "Call
   * ended", shown for ENDED_SCREEN_MS (endedOutcome); one's own cancel closes at once.
   * Nothing happens if another screen (a new call, the rating prompt) has come meanwhile.
   */
  _end(call, detail = {}) {
    this.stopTone();
    this.stopTimer();
    this.remoteBlocked = false;
    this.reconnecting = false;
    this.setMuted(false);
    this._refreshEnableAudio();
    if (call.answeredAt) this.play("end");
    const epoch = this.epoch;
    const settled = call.result
      ? call.result.then(
          (value) => value,
          (reason) => reason,
        )
      : Promise.resolve(call.status === "over" ? "over" : call.status);
    settled.then((value) => {
      if (this.destroyed) return;
      if (this.epoch !== epoch) {
        // Replaced meanwhile: by a new call's screen (which speaks for itself), or by the
        // rating prompt of this one, which still says that it has ended.
        if (this.screen === "prompt") this.announce(this.t("announceEnded"));
        return;
      }
      const answered = Boolean(call.answeredAt);
      const outcome = endedOutcome(call.role, value, answered, this.failures.get(call));
      const text = outcome ? (outcome.key ? this.t(outcome.key) : outcome.text) : "";
      if (!text) {
        this.hide();
        this.announce(this.t("announceEnded"));
        return;
      }
      this.announce(text);
      this._showEnded(call, text, detail.duration);
    });
  }

  // -- the other party's name -----------------------------------------------------------------

  /**
   * The name of the person the next outgoing call to `cuid` goes to, as the page knows it
   * (a call button's data-directcall-name): its screen shows it until the server's answer
   * names them. Returns a function that forgets it (call it once call() has returned).
   */
  expectName(cuid, name) {
    const text = typeof name === "string" ? name.trim() : "";
    const expected = text && typeof cuid === "string" ? { cuid, name: text.slice(0, 100) } : null;
    this.expected = expected;
    return () => {
      if (this.expected === expected) this.expected = null;
    };
  }

  _takeExpectedName(call) {
    const expected = this.expected;
    this.expected = null;
    if (expected && call.peer && expected.cuid === call.peer.cuid) this.names.set(call, expected.name);
  }

  /** The name to show for the other party of `call` (shownName). */
  _nameOf(call) {
    return shownName(call.peer, this.names.get(call));
  }

  destroy() {
    this.destroyed = true;
    if (this.closePrompt) this.closePrompt();
    this.hide();
    this.stopTone();
    this.host.remove();
  }
}

/** The labels of a template made before the strings JSON (`data-label-calling` …). */
function legacyLabels(dataset) {
  const labels = {};
  for (const [key, value] of Object.entries(dataset || {})) {
    if (key.startsWith("label") && key.length > 5) labels[key[5].toLowerCase() + key.slice(6)] = value;
  }
  return labels;
}
