import { test } from "node:test";
import assert from "node:assert/strict";
import { EventBatcher } from "../../delivery_service/web/lib/event_batcher.js";
import { Outbox } from "../../delivery_service/web/lib/outbox.js";

class Memory {
  constructor() { this.map = new Map(); }
  getItem(k) { return this.map.get(k) ?? null; }
  setItem(k, v) { this.map.set(k, v); }
}

function rig({ online = true } = {}) {
  const storage = new Memory();
  const sent = [];
  const timers = [];
  const link = { online };
  const batcher = new EventBatcher({
    outbox: new Outbox("events-a", storage),
    send: (type, data) => (link.online ? (sent.push({ type, data }), "m") : null),
    setTimer: (fn) => (timers.push(fn), timers.length),
    clearTimer: () => {},
  });
  return { storage, sent, timers, link, batcher };
}

const ev = (n) => ({ kind: "tab_hidden", client_event_id: `e${n}`, client_time: n });

test("events of one moment go out as one batch", () => {
  const { sent, timers, batcher } = rig();
  for (const n of [1, 2, 3]) batcher.add("integrity_event", ev(n));
  assert.equal(timers.length, 1);
  timers[0]();
  assert.equal(sent.length, 1);
  assert.equal(sent[0].type, "integrity_batch");
  assert.deepEqual(sent[0].data.events.map((e) => e.data.client_event_id), ["e1", "e2", "e3"]);
});

test("an event is kept until acknowledged, across a reload", () => {
  const { storage, batcher } = rig({ online: false });
  batcher.add("integrity_event", ev(1));
  batcher.flush();
  const reloaded = new EventBatcher({ outbox: new Outbox("events-a", storage), send: () => "m" });
  assert.deepEqual(reloaded.pending().map((e) => e.client_event_id), ["e1"]);
  reloaded.ack([{ client_event_id: "e1" }]);
  assert.deepEqual(new Outbox("events-a", storage).pending(), []);
});

test("in-flight events are not resent until a reconnect", () => {
  const { sent, batcher } = rig();
  batcher.add("integrity_event", ev(1));
  batcher.flush();
  batcher.add("integrity_event", ev(2));
  batcher.flush();
  assert.deepEqual(sent.map((m) => m.data.events.length), [1, 1]);
  batcher.reconnected();
  assert.deepEqual(sent[2].data.events.map((e) => e.data.client_event_id), ["e1", "e2"]);
});

test("a long backlog goes out in batches of at most 50", () => {
  const { sent, link, batcher } = rig({ online: false });
  for (let n = 0; n < 120; n++) batcher.add("integrity_event", ev(n));
  link.online = true;
  batcher.reconnected();
  assert.deepEqual(sent.map((m) => m.data.events.length), [50, 50, 20]);
});
