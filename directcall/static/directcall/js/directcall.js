// directcall browser SDK: the entry point.
//
//   import { initDirectCall } from "/static/directcall/js/directcall.js";
//
// A page without modules can use window.DirectCall.initDirectCall once the
// "directcall:ready" event has fired on window (module scripts run deferred).
//
// Pages built with the template tags need no script at all: {% directcall_session %}
// writes <script type="application/json" id="directcall-config">, from which this module
// signs the logged-in user in, and an element with data-directcall-call="<cuid>" becomes a
// call button when its data-directcall-nonce is the page's button nonce, which
// {% directcall_scripts %} writes into <script type="application/json" id="directcall-buttons">.

import { DirectCallClient, initDirectCall } from "./client.js";
import { dcError, ERR } from "./errors.js";
import { followButtons, markUnavailable } from "./watch.js";

export { DirectCallClient, ERR, initDirectCall };

/**
 * The object in the page's <script type="application/json" id="...">, or null.
 * Only such a script element counts, and several that disagree count as none: markup that
 * users put into the page (an element with that id) cannot replace the host's JSON.
 */
function readJsonScript(id) {
  const elements = document.querySelectorAll(`script[type="application/json"][id="${id}"]`);
  if (elements.length === 0) return null;
  const text = elements[0].textContent;
  for (const element of elements) if (element.textContent !== text) return null;
  try {
    const value = JSON.parse(text);
    return value && typeof value === "object" ? value : null;
  } catch {
    return null;
  }
}

function readConfig() {
  return readJsonScript("directcall-config");
}

/** The nonce the host's call buttons carry ({% directcall_scripts %}), or null. */
function readButtonNonce() {
  const config = readJsonScript("directcall-buttons");
  const nonce = config && config.nonce;
  return typeof nonce === "string" && nonce.length >= 16 ? nonce : null;
}

/** `{code, message}` (or anything thrown) as one line of text: "ERR_X: message". */
function describeError(error) {
  if (error && typeof error === "object") {
    const code = error.code !== undefined ? String(error.code) : error.name || "error";
    return error.message ? `${code}: ${error.message}` : code;
  }
  return String(error);
}

/**
 * Place the call of a call button (its data-directcall-* attributes). The callee's name the
 * button carries (data-directcall-name) is shown on the outgoing screen from the start,
 * until the server's answer names them.
 */
function callFromButton(client, dataset) {
  const screens = client.screens;
  const forget =
    screens && typeof screens.expectName === "function"
      ? screens.expectName(dataset.directcallCall, dataset.directcallName)
      : () => {};
  try {
    // call() opens the outgoing screen before it returns.
    return client.call(dataset.directcallCall, dataset.directcallContext, {
      receiver_image: dataset.directcallReceiverImage || null,
      initiator_image: dataset.directcallInitiatorImage || null,
    });
  } finally {
    forget();
  }
}

function autoInit(config) {
  const options = { ...config };
  if (typeof config.clevertap === "string") options.clevertap = window[config.clevertap] || null;
  const client = initDirectCall(options);
  client.then(
    (c) => window.dispatchEvent(new CustomEvent("directcall:client", { detail: c })),
    (error) => {
      // Said in the console too: a page without script of its own has no other way to learn
      // why it has no calling.
      console.warn(`directcall: signing in to calls failed: ${describeError(error)}`);
      window.dispatchEvent(new CustomEvent("directcall:error", { detail: error }));
    },
  );
  return client;
}

/**
 * Clicks on the host's call buttons place calls with the auto-initialised client. A button
 * is the host's when its data-directcall-nonce is this page's nonce (compared exactly):
 * the server made the nonce for this response, so markup planted in the page cannot know it.
 */
function wireButtons(clientPromise, nonce) {
  document.addEventListener("click", async (event) => {
    const button = event.target.closest && event.target.closest("[data-directcall-call]");
    if (!button) return;
    if (nonce === null || button.getAttribute("data-directcall-nonce") !== nonce) {
      console.warn("directcall: ignored a call button without this page's button nonce");
      return;
    }
    event.preventDefault();
    // Busy placing a call, the receiver is offline or in a call (watch.js followButtons), or
    // this page cannot call (markUnavailable).
    if (button.getAttribute("aria-busy") === "true" || button.getAttribute("aria-disabled") === "true") return;
    button.setAttribute("aria-busy", "true");
    let detail;
    try {
      if (!clientPromise) throw dcError(ERR.NOT_INITIALIZED, "Not signed in to calls.");
      const client = await clientPromise;
      const result = await callFromButton(client, button.dataset);
      detail = { result };
    } catch (error) {
      detail = { error };
    } finally {
      button.removeAttribute("aria-busy");
    }
    button.dispatchEvent(new CustomEvent("directcall:result", { detail, bubbles: true }));
  });
}

if (typeof window !== "undefined") {
  const api = { initDirectCall, ERR, version: "0.1.0", client: null };
  const config = readConfig();
  const nonce = readButtonNonce();
  if (config) {
    api.client = autoInit(config);
    api.client.catch(() => {}); // reported through the directcall:error event
    // The call buttons show whether their receivers are online (watch.js), and that this
    // page cannot call when its sign-in failed or its client logged out.
    api.client.then(
      (client) => {
        if (client.loggedOut) return markUnavailable(nonce); // by the page's own script already
        client.addEventListener("logout", () => markUnavailable(nonce));
        return followButtons(client, nonce);
      },
      () => markUnavailable(nonce),
    );
  }
  // Without a config (an anonymous visitor) a call button answers ERR_NOT_INITIALIZED.
  wireButtons(api.client, nonce);
  window.DirectCall = Object.freeze(api);
  window.dispatchEvent(new CustomEvent("directcall:ready"));
}
