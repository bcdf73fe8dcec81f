// Who is online (docs/js-api.md#who-is-online): client.watch(cuids) asks the server for the
// state of a list of cuids in one frame, and the client then dispatches `online`, `offline`
// and `busy` events ({cuid, state}) as they change. The server answers only about people
// this user may call; anyone else is "offline" for good. Watches belong to the connection:
// after a reconnect they are sent again, and what changed meanwhile is dispatched.

import { dcError, ERR } from "./errors.js";
import { isValidCuid } from "./validation.js";

export const STATES = Object.freeze(["online", "offline", "busy"]);

export class Watcher {
  constructor(client) {
    this.client = client;
    this.watched = new Set(); // cuids, in the order first watched
    this.states = new Map(); // cuid -> the last state dispatched
    client.signaling.addEventListener("frame", (e) => {
      if (e.detail.type === "presence") this._apply(e.detail.presence);
    });
    client.signaling.addEventListener("up", () => this._rewatch());
  }

  /** Watch `cuids`; resolves `{cuid: "online" | "offline" | "busy"}`; rejects `{code, message}`. */
  async watch(cuids) {
    this._check(cuids, "watch");
    const wanted = [...new Set(cuids)];
    if (!wanted.length) return {};
    const answer = await this.client.signaling.request({ type: "watch", cuids: wanted });
    for (const cuid of wanted) this.watched.add(cuid);
    this._apply(answer.presence);
    return Object.fromEntries(wanted.map((cuid) => [cuid, this.states.get(cuid) || "offline"]));
  }

  /** Stop watching `cuids` (all of them without an argument). */
  async unwatch(cuids) {
    if (cuids !== undefined) this._check(cuids, "unwatch");
    const dropped = cuids === undefined ? [...this.watched] : cuids.filter((c) => this.watched.has(c));
    for (const cuid of dropped) {
      this.watched.delete(cuid);
      this.states.delete(cuid);
    }
    if (!dropped.length) return;
    const frame = cuids === undefined ? { type: "unwatch" } : { type: "unwatch", cuids: dropped };
    await this.client.signaling.request(frame);
  }

  /** The last known state of a watched cuid, or null. */
  stateOf(cuid) {
    return this.states.get(cuid) || null;
  }

  _check(cuids, method) {
    if (this.client.loggedOut) throw dcError(ERR.NOT_INITIALIZED);
    if (!Array.isArray(cuids) || !cuids.every(isValidCuid)) {
      throw dcError(ERR.INVALID_CALL_PARAMETERS, `${method}() takes an array of cuids.`);
    }
  }

  /** Dispatch the states that changed (`online`, `offline`, `busy` events on the client). */
  _apply(presence) {
    if (!presence || typeof presence !== "object") return;
    for (const [cuid, state] of Object.entries(presence)) {
      if (!this.watched.has(cuid) || !STATES.includes(state) || this.states.get(cuid) === state) continue;
      this.states.set(cuid, state);
      this.client._emit(state, { cuid, state });
    }
  }

  /** A new connection knows nothing of the old one's watches: send them again. */
  async _rewatch() {
    if (!this.watched.size || this.client.loggedOut) return;
    try {
      const answer = await this.client.signaling.request({ type: "watch", cuids: [...this.watched] });
      this._apply(answer.presence);
    } catch (error) {
      console.warn("directcall: could not watch again after reconnecting", error);
    }
  }
}

/**
 * The page's call buttons ({% directcall_button %}, with data-directcall-watch and the page's
 * nonce) follow their receivers: while one is offline or in a call its button says so
 * (data-directcall-offline-label / -busy-label, and the -aria accessible names) and is
 * aria-disabled; data-directcall-presence holds the state. Buttons in the page when the
 * client signs in are followed (for others, call client.watch() yourself).
 */
export function followButtons(client, nonce, root = document) {
  const ours = () =>
    [...root.querySelectorAll("[data-directcall-call][data-directcall-watch]")].filter(
      (button) => nonce !== null && button.getAttribute("data-directcall-nonce") === nonce,
    );
  const cuids = [...new Set(ours().map((b) => b.getAttribute("data-directcall-call")))].filter(
    (cuid) => isValidCuid(cuid) && cuid !== client.cuid,
  );
  if (!cuids.length) return null;
  for (const state of STATES) {
    client.addEventListener(state, (event) => {
      for (const button of ours()) {
        if (button.getAttribute("data-directcall-call") === event.detail.cuid) showPresence(button, state);
      }
    });
  }
  return client.watch(cuids).catch((error) => console.warn("directcall: call buttons not watched", error));
}

/** The dataset keys of a state's label and accessible name (data-directcall-offline-label...). */
const LABELS = Object.freeze({
  offline: ["directcallOfflineLabel", "directcallOfflineAria"],
  busy: ["directcallBusyLabel", "directcallBusyAria"],
  unavailable: ["directcallUnavailableLabel", "directcallUnavailableAria"],
});

/**
 * Show `state` on a call button: its own text when online, the state's label otherwise
 * ("unavailable": this page could not sign in to calls, see markUnavailable).
 */
export function showPresence(button, state) {
  const data = button.dataset;
  if (data.directcallText === undefined) {
    // What the host wrote, to put back when the receiver is online again.
    data.directcallText = button.textContent;
    data.directcallAria = button.getAttribute("aria-label") || "";
  }
  data.directcallPresence = state;
  const [labelKey, ariaKey] = LABELS[state] || [];
  const label = labelKey && data[labelKey];
  if (label) {
    button.textContent = label;
    if (data[ariaKey]) button.setAttribute("aria-label", data[ariaKey]);
    else button.removeAttribute("aria-label");
    button.setAttribute("aria-disabled", "true");
    return;
  }
  button.textContent = data.directcallText;
  if (data.directcallAria) button.setAttribute("aria-label", data.directcallAria);
  else button.removeAttribute("aria-label");
  // No label to say so: the host wrote the button to stay as it is (on a page that cannot
  // call, a click on it still dispatches directcall:result with the error).
  button.removeAttribute("aria-disabled");
}

/**
 * This page's call buttons (those with its nonce, followed or not, in the page now) when
 * it cannot place calls: its sign-in failed for good, or its client logged out (or was
 * logged out by the server). Those with data-directcall-unavailable-label say it and are
 * aria-disabled, so that a click does nothing instead of failing where the user cannot
 * see it; data-directcall-presence is "unavailable" on each. A reload signs in again.
 */
export function markUnavailable(nonce, root = document) {
  if (nonce === null) return;
  for (const button of root.querySelectorAll("[data-directcall-call]")) {
    if (button.getAttribute("data-directcall-nonce") === nonce) showPresence(button, "unavailable");
  }
}
