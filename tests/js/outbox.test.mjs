import { test } from "node:test";
import assert from "node:assert/strict";
import { Outbox } from "../../delivery_service/web/lib/outbox.js";

const memory = () => {
  const map = new Map();
  return { getItem: (k) => map.get(k) ?? null, setItem: (k, v) => map.set(k, v) };
};

test("answers survive a reload until acknowledged", () => {
  const storage = memory();
  const box = new Outbox("a1", storage);
  box.answer("q1", "B");
  box.answer("q2", ["A", "C"]);
  const again = new Outbox("a1", storage);
  assert.deepEqual(again.pending().map((i) => [i.client_seq, i.item_id]), [[1, "q1"], [2, "q2"]]);
  again.ack(1);
  assert.deepEqual(new Outbox("a1", storage).pending().map((i) => i.item_id), ["q2"]);
});

test("a newer answer replaces the queued one for the same item and seq only grows", () => {
  const box = new Outbox("a1", memory());
  box.answer("q1", "A");
  box.answer("q1", "C");
  assert.deepEqual(box.pending().map((i) => [i.client_seq, i.response]), [[2, "C"]]);
});

test("another browser starts above what the server has seen", () => {
  const box = new Outbox("a1", memory(), { serverSeq: 41 });
  assert.equal(box.answer("q1", "A").client_seq, 42);
});
