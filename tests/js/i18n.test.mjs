// The call screens' language (issue 15): which language the page wants, whether a markup
// speaks it, the texts with their placeholders, and the screens asked for in it.
import { test } from "node:test";
import assert from "node:assert/strict";

import {
  ENGLISH,
  format,
  isValidLanguage,
  markupLanguage,
  readStrings,
  speaks,
  wantedLanguage,
} from "../../directcall/static/directcall/js/i18n.js";
import { loadScreensMarkup } from "../../directcall/static/directcall/js/screens.js";

const page = (lang) => ({ documentElement: { lang } });

test("the language option wins, then the page's <html lang>; anything else is no language", () => {
  assert.equal(wantedLanguage("ar", page("es")), "ar");
  assert.equal(wantedLanguage(undefined, page("hi-IN")), "hi-IN");
  assert.equal(wantedLanguage(null, page("")), null);
  assert.equal(wantedLanguage("<script>", page("x y")), null);
  for (const tag of ["es", "es-MX", "zh-Hant-TW"]) assert.ok(isValidLanguage(tag), tag);
  for (const tag of ["", "e", "es_MX", "es-", "a".repeat(40), 5]) assert.ok(!isValidLanguage(tag), tag);
});

test("a markup speaks a language when the primary subtags match", () => {
  assert.ok(speaks("es", "es-MX") && speaks("es-mx", "ES") && speaks("en-us", null));
  assert.ok(!speaks("en-us", "ar") && !speaks("", "ar"));
  const markup = '<link rel="stylesheet" href="x.css">\n<div class="dc-overlay" role="dialog" lang="ar" dir="rtl">';
  assert.equal(markupLanguage(markup), "ar");
});

test("texts fill %(name)s placeholders, and leave unknown ones as they are", () => {
  assert.equal(format(ENGLISH.answerLabel, { name: "Sam <b>" }), "Answer the call from Sam <b>");
  assert.equal(format("%(a)s and %(b)s", { a: 1 }), "1 and %(b)s");
});

test("the strings of a markup are read from its JSON; junk gives none", () => {
  const root = (text) => ({ querySelector: () => (text === null ? null : { textContent: text }) });
  assert.deepEqual(readStrings(root('{"calling": "Llamando…"}')), { calling: "Llamando…" });
  assert.deepEqual(readStrings(root("[1]")), {});
  assert.deepEqual(readStrings(root("{")), {});
  assert.deepEqual(readStrings(root(null)), {});
});

test("the screens are asked for in the wanted language", async () => {
  const asked = [];
  const fetchImpl = async (url) => {
    asked.push(url);
    throw new TypeError("offline");
  };
  await loadScreensMarkup("https://api.example/directcall/", fetchImpl, "ar").catch(() => {});
  await loadScreensMarkup("https://api.example/directcall/", fetchImpl, null).catch(() => {});
  assert.deepEqual(asked, [
    "https://api.example/directcall/v1/screens?lang=ar",
    "https://api.example/directcall/v1/screens",
  ]);
});
