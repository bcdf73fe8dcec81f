// directcall browser SDK: the entry point.
//
//   import { initDirectCall } from "/static/directcall/js/directcall.js";
//
// A page without modules can use window.DirectCall.initDirectCall once the
// "directcall:ready" event has fired on window (module scripts run deferred).
//
// Pages built with the template tags need no script at all: {% directcall_session %}
// writes <script type="application/json" id="directcall-config">, from which this module
// signs the logged-in user in, and any element with data-directcall-call="<cuid>" becomes
// a call button.

import { DirectCallClient, initDirectCall } from "./client.js";
import { ERR } from "./errors.js";

export { DirectCallClient, ERR, initDirectCall };

function readConfig() {
  const element = document.getElementById("directcall-config");
  if (!element) return null;
  try {
    const config = JSON.parse(element.textContent);
    return config && typeof config === "object" ? config : null;
  } catch {
    return null;
  }
}

function autoInit(config) {
  const options = { ...config };
  if (typeof config.clevertap === "string") options.clevertap = window[config.clevertap] || null;
  const client = initDirectCall(options);
  client.then(
    (c) => window.dispatchEvent(new CustomEvent("directcall:client", { detail: c })),
    (error) => window.dispatchEvent(new CustomEvent("directcall:error", { detail: error })),
  );
  return client;
}

/** Clicks on [data-directcall-call] place calls with the auto-initialised client. */
function wireButtons(clientPromise) {
  document.addEventListener("click", async (event) => {
    const button = event.target.closest && event.target.closest("[data-directcall-call]");
    if (!button) return;
    event.preventDefault();
    if (button.getAttribute("aria-busy") === "true") return;
    button.setAttribute("aria-busy", "true");
    let detail;
    try {
      if (!clientPromise) throw { code: ERR.NOT_INITIALIZED, message: "Not signed in to calls." };
      const client = await clientPromise;
      const d = button.dataset;
      const result = await client.call(d.directcallCall, d.directcallContext, {
        receiver_image: d.directcallReceiverImage || null,
        initiator_image: d.directcallInitiatorImage || null,
      });
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
  if (config) {
    api.client = autoInit(config);
    api.client.catch(() => {}); // reported through the directcall:error event
  }
  // Without a config (an anonymous visitor) a call button answers ERR_NOT_INITIALIZED.
  wireButtons(api.client);
  window.DirectCall = Object.freeze(api);
  window.dispatchEvent(new CustomEvent("directcall:ready"));
}
