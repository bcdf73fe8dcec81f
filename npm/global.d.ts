// window.DirectCall for pages that load the classic-script build
// (<script src=".../@directcall/web-sdk/directcall.min.js">):
//   /// <reference types="@directcall/web-sdk/global" />
import type { DirectCallGlobal } from "./directcall.mjs";

declare global {
  /** Set by the classic-script build as it runs. */
  var DirectCall: DirectCallGlobal;
}
