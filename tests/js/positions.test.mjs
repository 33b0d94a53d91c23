import { test } from "node:test";
import assert from "node:assert/strict";
import { Positions } from "../../delivery_service/web/lib/positions.js";

test("remembers the latest offset per kind and rejects replays", () => {
  const p = new Positions();
  assert.equal(p.see("session:e1:1"), true);
  assert.equal(p.see("proctor:e2:7"), true);
  assert.equal(p.see("session:e1:2"), true);
  assert.equal(p.see("session:e1:2"), false);
  assert.equal(p.see("session:e1:1"), false);
  assert.equal(p.toParam(), "session:e1:2,proctor:e2:7");
});

test("a new epoch starts over", () => {
  const p = new Positions();
  p.see("session:old:40");
  assert.equal(p.see("session:new:1"), true);
  assert.equal(p.toParam(), "session:new:1");
});

test("messages without a seq always pass", () => {
  assert.equal(new Positions().see(undefined), true);
});

test("positions from the greeting fill only the kinds not seen yet", () => {
  const p = new Positions();
  p.see("session:e1:5");
  p.adopt({ session: "session:e1:9", proctor: "proctor:e2:3" });
  assert.equal(p.toParam(), "session:e1:5,proctor:e2:3");
  assert.equal(p.see("session:e1:6"), true, "replayed events after 5 still pass");
});
