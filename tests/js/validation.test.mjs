// The SDK's parameter rules against the cases the Python tests use too.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import * as v from "../../directcall/static/directcall/js/validation.js";

const cases = JSON.parse(readFileSync(new URL("../validation_cases.json", import.meta.url)));
const rules = {
  cuid: v.isValidCuid,
  name: v.isValidName,
  context: v.isValidContext,
  url: v.isValidUrl,
  accountId: v.isValidAccountId,
  apikey: v.isValidApiKey,
  deviceId: v.isValidDeviceId,
};

for (const [name, rule] of Object.entries(rules)) {
  test(`${name}: valid cases pass`, () => {
    assert.deepEqual(cases[name].valid.filter((x) => !rule(x)), []);
  });
  test(`${name}: invalid cases fail`, () => {
    assert.deepEqual(cases[name].invalid.filter((x) => rule(x)), []);
  });
}

test("limits match the Python module's", () => {
  assert.deepEqual(cases.limits, { ...v.LIMITS });
});

test("context length bound", () => {
  const n = cases.context.invalid_length;
  assert.equal(v.isValidContext("x".repeat(n - 1)), true);
  assert.equal(v.isValidContext("x".repeat(n)), false);
  // Code points, not UTF-16 units: 280 emoji are fine.
  assert.equal(v.isValidContext("😀".repeat(n - 1)), true);
});
