import { test } from "node:test";
import assert from "node:assert/strict";
import { Sensors, suspiciousShortcut } from "../../delivery_service/web/lib/sensors.js";
import { Outbox } from "../../delivery_service/web/lib/outbox.js";

function sensors() {
  let mono = 0;
  let id = 0;
  const events = [];
  const s = new Sensors({
    emit: (type, data) => events.push({ type, ...data }),
    monotonic: () => mono, clientTime: () => 1000 + mono, newId: () => `e${++id}`,
  });
  return { s, events, advance: (ms) => (mono += ms) };
}

test("a hidden tab reports how long it was away, as a violation too", () => {
  const { s, events, advance } = sensors();
  s.visibility(true);
  advance(4200);
  s.visibility(false);
  assert.deepEqual(events.map((e) => [e.type, e.kind ?? e.violation_type, e.duration_ms]), [
    ["integrity_event", "tab_hidden", undefined],
    ["integrity_event", "tab_visible", 4200],
    ["tab_violation", "tab_switch", 4200],
  ]);
  assert.deepEqual(events.map((e) => e.client_event_id), ["e1", "e2", "e3"]);
});

test("an end without a start, or a second start, reports nothing extra", () => {
  const { s, events } = sensors();
  s.focus(true);
  s.fullscreen(false);
  s.fullscreen(false);
  assert.deepEqual(events.map((e) => e.kind), ["fullscreen_exit"]);
});

test("highlights carry the text and positions; empty selections are ignored", () => {
  const { s, events } = sensors();
  s.highlight("   ", "q1", 0, 3);
  s.highlight(" the Treaty of ", "q1", 4, 17);
  s.highlight("the Treaty of", "q1", 4, 17); // the same selection, reported again
  assert.deepEqual(events.map((e) => [e.type, e.text, e.item_id, e.position_start, e.position_end]), [
    ["text_highlighted", "the Treaty of", "q1", 4, 17],
  ]);
});

test("only suspicious shortcuts are reported", () => {
  assert.equal(suspiciousShortcut({ key: "c", ctrlKey: true }), "Ctrl+C");
  assert.equal(suspiciousShortcut({ key: "PrintScreen" }), "PrintScreen");
  assert.equal(suspiciousShortcut({ key: "Tab", altKey: true }), "Alt+Tab");
  assert.equal(suspiciousShortcut({ key: "b", ctrlKey: true }), null);
  assert.equal(suspiciousShortcut({ key: "c" }), null);
});

test("events wait in the outbox until their id is acknowledged", () => {
  const map = new Map();
  const storage = { getItem: (k) => map.get(k) ?? null, setItem: (k, v) => map.set(k, v) };
  const box = new Outbox("s1", storage);
  box.event("integrity_event", { kind: "copy", client_event_id: "e1" });
  box.event("integrity_event", { kind: "paste", client_event_id: "e2" });
  box.ackEvent("e1");
  assert.deepEqual(new Outbox("s1", storage).pending().map((e) => e.client_event_id), ["e2"]);
});
