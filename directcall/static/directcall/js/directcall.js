// directcall browser SDK: the entry point.
//
//   import { initDirectCall } from "/static/directcall/js/directcall.js";
//
// A page without modules can use window.DirectCall.initDirectCall once the
// "directcall:ready" event has fired on window (module scripts run deferred).

import { DirectCallClient, initDirectCall } from "./client.js";
import { ERR } from "./errors.js";

export { DirectCallClient, ERR, initDirectCall };

if (typeof window !== "undefined") {
  window.DirectCall = Object.freeze({ initDirectCall, ERR, version: "0.1.0" });
  window.dispatchEvent(new CustomEvent("directcall:ready"));
}
