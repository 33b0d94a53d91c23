import { test } from "node:test";
import assert from "node:assert/strict";
import { AttemptClient } from "../../delivery_service/web/lib/attempt_client.js";

const memory = () => {
  const map = new Map();
  return { getItem: (k) => map.get(k) ?? null, setItem: (k, v) => map.set(k, v) };
};

function connected() {
  const sent = [];
  const client = new AttemptClient({
    api: null, attemptId: "a1", storage: memory(), on: {}, monotonic: () => 0,
  });
  client.socket = { readyState: 1, send: (text) => sent.push(JSON.parse(text)) };
  client.receive({ type: "attempt_state", data: { last_client_seq: 0, state: "in_progress" } });
  return { client, sent };
}

const answers = (sent) => sent.filter((m) => m.type === "submit_answer");

test("an acknowledged answer leaves the outbox; an unacknowledged one is sent again", () => {
  const { client, sent } = connected();
  client.answer("q1", "A");
  client.answer("q2", "B");
  const [first] = answers(sent);
  client.receive({ type: "answer_feedback", re: first.id, data: { client_seq: 1 } });
  assert.deepEqual(client.outbox.pending().map((e) => e.item_id), ["q2"]);
  client.flush();
  assert.deepEqual(answers(sent).map((m) => m.data.client_seq), [1, 2, 2]);
});

test("a permanent refusal drops the answer instead of resending it forever", () => {
  const { client, sent } = connected();
  client.answer("q9", "Z");
  const [bad] = answers(sent);
  const errors = [];
  client.on.error = (e) => errors.push(e.code);
  client.receive({ type: "error", re: bad.id, data: { code: "unknown_item", message: "no" } });
  assert.deepEqual(client.outbox.pending(), []);
  assert.deepEqual(errors, ["unknown_item"]);
});

test("a transient refusal keeps the answer for the next attempt", () => {
  const { client, sent } = connected();
  client.answer("q1", "A");
  const [msg] = answers(sent);
  client.receive({ type: "error", re: msg.id, data: { code: "internal_error", message: "retry" } });
  assert.equal(client.outbox.pending().length, 1);
});

test("after the deadline nothing is left to send", () => {
  const { client, sent } = connected();
  client.answer("q1", "A");
  client.receive({ type: "error", re: answers(sent)[0].id, data: { code: "deadline_passed", message: "late" } });
  assert.deepEqual(client.outbox.pending(), []);
});

test("every (re)connect re-measures the clock and resends what is pending", () => {
  const { client, sent } = connected();
  client.answer("q1", "A");
  sent.length = 0;
  // The server greets again after a reconnect.
  client.receive({ type: "attempt_state", data: { last_client_seq: 0, state: "in_progress" } });
  assert.deepEqual(sent.map((m) => m.type), ["ping", "submit_answer"]);
  const [ping] = sent;
  client.receive({
    type: "timer", re: ping.id,
    data: { timer: { server_now: "2026-11-22T09:00:00.000Z" }, state: "in_progress" },
  });
  assert.equal(client.clock.synced, true);
});

test("integrity events go out in a batch, apart from answers, and leave when recorded", () => {
  const { client, sent } = connected();
  client.answer("q1", "A");
  client.event("integrity_event", { kind: "tab_hidden", client_event_id: "e1" });
  client.event("integrity_event", { kind: "tab_visible", duration_ms: 900, client_event_id: "e2" });
  client.events.flush();
  const batch = sent.filter((m) => m.type === "integrity_batch");
  assert.equal(batch.length, 1);
  assert.deepEqual(batch[0].data.events.map((e) => e.data.client_event_id), ["e1", "e2"]);
  assert.equal(answers(sent).length, 1);  // the answer outbox never carries events
  client.receive({ type: "events_recorded", re: batch[0].id,
    data: [{ client_event_id: "e1" }, { client_event_id: "e2" }] });
  sent.length = 0;
  client.receive({ type: "attempt_state", data: { last_client_seq: 0, state: "in_progress" } });
  assert.deepEqual(sent.filter((m) => m.type === "integrity_batch"), []);
});
