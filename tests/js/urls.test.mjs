// URLs the page gives may be relative to it; the screens' markup that cannot be loaded is a
// `{code, message}` rejection like every other.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";

import { ERR } from "../../directcall/static/directcall/js/errors.js";
import { readCallOptions, readInitOptions } from "../../directcall/static/directcall/js/options.js";
import { loadScreensMarkup } from "../../directcall/static/directcall/js/screens.js";
import { resolveUrl } from "../../directcall/static/directcall/js/validation.js";

const PAGE = "https://shop.example/app/page?x=1";
before(() => {
  globalThis.location = { href: PAGE };
});
after(() => {
  delete globalThis.location;
});

const KEYED = { accountId: "acct1", apikey: "pre.secret", cuid: "tutor_jane", clevertap: null };

test("resolveUrl: relative to the page, http(s) only once resolved", () => {
  assert.equal(resolveUrl("/sounds/ring.mp3", PAGE), "https://shop.example/sounds/ring.mp3");
  assert.equal(resolveUrl("img/a.png", PAGE), "https://shop.example/app/img/a.png");
  assert.equal(resolveUrl("//cdn.example/a.png", PAGE), "https://cdn.example/a.png");
  assert.equal(resolveUrl("http://other.example/a.png", PAGE), "http://other.example/a.png");
  for (const bad of ["javascript:alert(1)", "data:image/png;base64,AAAA", "ftp://x.example/a", " /a.png", "/a b.png", "", 5, null, "/a\u0000.png"]) {
    assert.equal(resolveUrl(bad, PAGE), null, String(bad));
  }
  const saved = globalThis.location;
  delete globalThis.location;
  try {
    assert.equal(resolveUrl("/a.png"), null); // no page to resolve against
    assert.equal(resolveUrl("https://x.example/a.png"), "https://x.example/a.png");
  } finally {
    globalThis.location = saved;
  }
});

test("init: ringtone, serverUrl, assetsUrl and sessionUrl may be relative to the page", () => {
  const config = readInitOptions({ ...KEYED, ringtone: "/sounds/ring.mp3", serverUrl: "/calls", assetsUrl: "tones" });
  assert.equal(config.ringtone, "https://shop.example/sounds/ring.mp3");
  assert.equal(config.serverUrl, "https://shop.example/calls/");
  assert.equal(config.assetsUrl, "https://shop.example/app/tones/");
  const session = readInitOptions({ sessionUrl: "/directcall/v1/session", serverUrl: "/directcall/" });
  assert.equal(session.sessionUrl, "https://shop.example/directcall/v1/session");
});

test("init: URLs that are not http(s) once resolved are ERR_INVALID_INITPARAMETERS, named", () => {
  for (const [option, value] of [
    ["ringtone", "javascript:alert(1)"],
    ["serverUrl", "ftp://x.example/"],
    ["assetsUrl", "data:text/plain,x"],
    ["ringtone", " /sounds/ring.mp3"],
  ]) {
    assert.throws(
      () => readInitOptions({ ...KEYED, [option]: value }),
      (error) => error.code === ERR.INVALID_INITPARAMETERS && error.message.includes(option),
    );
  }
  assert.throws(
    () => readInitOptions({ sessionUrl: "javascript:x" }),
    (error) => error.code === ERR.INVALID_INITPARAMETERS && error.message.includes("sessionUrl"),
  );
});

test("call(): relative images become absolute; other schemes are refused", () => {
  const options = readCallOptions("student_sam", "hi", { receiver_image: "/img/sam.png", initiator_image: "me.png" }, "tutor_jane");
  assert.equal(options.receiverImage, "https://shop.example/img/sam.png");
  assert.equal(options.initiatorImage, "https://shop.example/app/me.png");
  assert.throws(
    () => readCallOptions("student_sam", "hi", { receiver_image: "javascript:alert(1)" }, "tutor_jane"),
    (error) => error.code === ERR.INVALID_CALL_PARAMETERS && error.message.includes("receiver_image"),
  );
  assert.deepEqual(readCallOptions("student_sam", "hi", { receiver_image: "  " }, "tutor_jane").receiverImage, null);
});

test("screens that cannot be fetched reject {code, message}, never a TypeError", async () => {
  const server = "https://api.example/directcall/";
  const down = async () => {
    throw new TypeError("Failed to fetch");
  };
  let error = await loadScreensMarkup(server, down).catch((e) => e);
  assert.deepEqual(Object.keys(error), ["code", "message"]);
  assert.equal(error.code, ERR.INTERNET_LOST);
  assert.match(error.message, /Failed to fetch/);
  const notFound = async () => ({ ok: false, status: 404, text: async () => "<h1>Not Found</h1>" });
  error = await loadScreensMarkup(server, notFound).catch((e) => e);
  assert.equal(error.code, ERR.INTERNET_LOST);
  assert.match(error.message, /HTTP 404/);
  const limited = async () => ({
    ok: false,
    status: 429,
    text: async () => JSON.stringify({ code: "ERR_RATE_LIMITED", message: "Too many requests." }),
  });
  error = await loadScreensMarkup(server, limited).catch((e) => e);
  assert.deepEqual(error, { code: "ERR_RATE_LIMITED", message: "Too many requests." });
});
