import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay } from "../../delivery_service/web/lib/backoff.js";

test("the ceiling doubles per attempt up to the cap", () => {
  const top = (attempt) => backoffDelay(attempt, { baseMs: 100, capMs: 1000, random: () => 0.999999 });
  assert.deepEqual([0, 1, 2, 3, 4, 10].map(top), [99, 199, 399, 799, 999, 999]);
});

test("full jitter spreads delays from zero", () => {
  assert.equal(backoffDelay(5, { random: () => 0 }), 0);
});
