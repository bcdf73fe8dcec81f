// Tone URLs resolve lazily, in a documented order, and never next to a bundle.
import { test } from "node:test";
import assert from "node:assert/strict";

import { resolveTone } from "../../directcall/static/directcall/js/screens.js";

const page = "https://app.example.com/shop/cart";

test("the assetsUrl option wins, relative to the page, with or without a trailing slash", () => {
  const options = { pageUrl: page, advertised: "https://api.example.com/static/x.wav" };
  assert.equal(
    resolveTone("ringtone", { ...options, assetsUrl: "/sounds" }),
    "https://app.example.com/sounds/ringtone.wav",
  );
  assert.equal(
    resolveTone("end", { ...options, assetsUrl: "https://cdn.example.com/dc/audio/" }),
    "https://cdn.example.com/dc/audio/end.wav",
  );
});

test("then the URL the server's markup advertises, then the folder next to the module", () => {
  assert.equal(
    resolveTone("ringback", { pageUrl: page, advertised: "https://api.example.com/static/rb.wav" }),
    "https://api.example.com/static/rb.wav",
  );
  assert.equal(
    resolveTone("ringback", { pageUrl: page, moduleBase: "https://api.example.com/static/directcall/js/screens.js" }),
    "https://api.example.com/static/directcall/audio/ringback.wav",
  );
});

test("unbundled, the default is the audio folder next to screens.js", () => {
  const url = resolveTone("ringtone", { pageUrl: page });
  assert.match(url, /\/directcall\/static\/directcall\/audio\/ringtone\.wav$/);
});

test("in a bundle (no module URL) and with nothing advertised there is no tone, not an error", () => {
  assert.equal(resolveTone("ringtone", { pageUrl: page, moduleBase: null }), null);
  assert.equal(resolveTone("ringtone", { assetsUrl: "::bad", moduleBase: null }), null);
  assert.equal(resolveTone("nope", { pageUrl: page }), null);
});
