import { test } from "node:test";
import assert from "node:assert/strict";
import { ServerClock } from "../../delivery_service/web/lib/clock.js";

test("the smallest round trip wins and time advances monotonically", () => {
  let mono = 1000;
  const clock = new ServerClock({ monotonic: () => mono });
  clock.sample(900, "2026-11-22T09:00:00.000Z", 1000); // rtt 100
  clock.sample(990, "2026-11-22T09:00:00.500Z", 1000); // rtt 10: better
  assert.equal(clock.now(), Date.parse("2026-11-22T09:00:00.500Z") + 5);
  mono = 61000;
  assert.equal(clock.now(), Date.parse("2026-11-22T09:01:00.505Z"));
});

test("changing the system clock changes nothing", () => {
  let mono = 0;
  const clock = new ServerClock({ monotonic: () => mono });
  clock.sample(0, "2026-11-22T09:00:00.000Z", 0);
  const realDateNow = Date.now;
  Date.now = () => realDateNow() + 3_600_000; // the candidate moves their clock an hour ahead
  try {
    mono = 30_000;
    assert.equal(clock.remainingMs("2026-11-22T09:10:00.000Z"), 570_000);
  } finally {
    Date.now = realDateNow;
  }
});

test("no answer before the first sample", () => {
  assert.equal(new ServerClock({ monotonic: () => 0 }).remainingMs("2026-11-22T09:10:00Z"), null);
});
