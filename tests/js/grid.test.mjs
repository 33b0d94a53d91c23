import { test } from "node:test";
import assert from "node:assert/strict";
import { Grid, formatClock, remainingMs } from "../../delivery_service/web/console/grid.js";

const row = (id, username) => ({
  student: { id, username }, connected: false, state: null, answered: 0, total_items: 4,
  violations: 0, highlights: 0, extra_seconds: 0, time_multiplier: 1,
});

test("rows load in natural username order and are all dirty", () => {
  const grid = new Grid();
  grid.load([row("b", "student10"), row("a", "student2")]);
  assert.deepEqual(grid.take().map((r) => r.student.username), ["student2", "student10"]);
  assert.deepEqual(grid.take(), []);
});

test("events update only the rows they concern", () => {
  const grid = new Grid();
  grid.load([row("a", "student1"), row("b", "student2")]);
  grid.take();
  grid.apply({ type: "participant_joined", data: { student_id: "a", at: "2026-11-22T09:00:00Z" } });
  grid.apply({ type: "answer_submitted", data: { student_id: "a", answered: 2, total_items: 4 } });
  grid.apply({ type: "tab_violation", data: { student_id: "a", count: 3, duration_ms: 4000 } });
  const [changed, ...rest] = grid.take();
  assert.equal(rest.length, 0);
  assert.equal(changed.connected, true);
  assert.equal(changed.answered, 2);
  assert.equal(changed.violations, 3);
  assert.equal(grid.feed[0].message, "student1 joined");  // the violation waits for its incident
});

test("an incident that grows stays one line in the feed", () => {
  const grid = new Grid();
  grid.load([row("a", "student1")]);
  const alert = (kinds, violations, at) => ({
    type: "integrity_alert",
    data: { student_id: "a", attempt_id: "x", incident_id: 7, kinds, longest_absence_ms: 30000,
            violations, marked_for_review: violations.length > 0, last_at: at },
  });
  grid.apply(alert({ fullscreen_exit: 1 }, [], "2026-11-22T09:00:00Z"));
  grid.apply({ type: "notice", data: { message: "10 minutes left", at: "2026-11-22T09:00:10Z" } });
  grid.apply(alert({ fullscreen_exit: 1, tab_hidden: 1, tab_visible: 1 },
    [{ rule: "tab_switch_limit", action: "flag", reason: "left the exam 1 time (allowed 0)" }],
    "2026-11-22T09:00:30Z"));
  assert.equal(grid.feed.length, 2);
  assert.equal(grid.feed[0].message,
    "student1: fullscreen exit, tab hidden, tab visible, away 30 s — left the exam 1 time (allowed 0) → flag");
  assert.equal(grid.feed[0].serious, true);
  assert.equal(grid.feed[0].attemptId, "x");
  assert.equal(grid.rows.get("a").marked_for_review, true);
});

test("the start assigns attempts and deadlines", () => {
  const grid = new Grid();
  grid.load([row("a", "student1")]);
  grid.apply({ type: "session_started", data: { assignments: { a: { attempt_id: "x", deadline: "2026-11-22T10:00:00Z" } } } });
  assert.equal(grid.rows.get("a").state, "in_progress");
  assert.equal(remainingMs(grid.rows.get("a"), Date.parse("2026-11-22T09:59:00Z")), 60000);
});

test("unknown events change nothing", () => {
  const grid = new Grid();
  grid.load([row("a", "student1")]);
  grid.take();
  assert.equal(grid.apply({ type: "pong", data: {} }), false);
  assert.deepEqual(grid.take(), []);
});

test("clock format", () => {
  assert.equal(formatClock(61000), "1:01");
  assert.equal(formatClock(999), "0:01");
  assert.equal(formatClock(null), "—");
});

test("raw integrity events touch the row, not the feed: their incident is the feed line", () => {
  const grid = new Grid();
  grid.load([row("a", "student1")]);
  grid.apply({ type: "integrity_event", data: { student_id: "a", kind: "keyboard_shortcut", at: "2026-11-22T09:00:00Z" } });
  assert.equal(grid.feed.length, 0);
  assert.equal(grid.rows.get("a").last_activity, "2026-11-22T09:00:00Z");
});
