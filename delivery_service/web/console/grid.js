// The live grid's state: rows by student id, changed by session events. Pure (no DOM), so the
// page only renders rows marked dirty, at most once per animation frame.

export class Grid {
  constructor() {
    this.rows = new Map();
    this.dirty = new Set();
    this.feed = [];
  }

  load(participants) {
    this.rows.clear();
    const byName = (a, b) => a.student.username.localeCompare(b.student.username, undefined, { numeric: true });
    for (const row of [...participants].sort(byName)) {
      this.rows.set(row.student.id, { ...row });
      this.dirty.add(row.student.id);
    }
  }

  update(studentId, change) {
    const row = this.rows.get(studentId);
    if (!row) return;
    Object.assign(row, change);
    this.dirty.add(studentId);
  }

  // A keyed note replaces the earlier note with the same key (an incident that grows stays one
  // line and moves to the top) instead of adding another.
  note(message, at, key = null, extra = {}) {
    if (key !== null) this.feed = this.feed.filter((entry) => entry.key !== key);
    this.feed.unshift({ message, at, key, ...extra });
    this.feed.length = Math.min(this.feed.length, 200);
  }

  // Apply one event from the session socket; returns true when the grid changed.
  apply(event) {
    const d = event.data ?? {};
    const who = d.student_id;
    const name = this.rows.get(who)?.student.username ?? d.username ?? "a student";
    switch (event.type) {
      case "participant_joined":
        this.update(who, { connected: true, last_activity: d.at, attempt_id: d.attempt_id ?? this.rows.get(who)?.attempt_id });
        this.note(`${name} joined`, d.at);
        return true;
      case "participant_disconnected":
        this.update(who, { connected: false });
        this.note(`${name} disconnected`, d.at);
        return true;
      case "session_started":
        for (const [id, a] of Object.entries(d.assignments ?? {})) {
          this.update(id, { attempt_id: a.attempt_id, state: "in_progress", deadline: a.deadline, position: 0 });
        }
        this.note("session started", d.at);
        return true;
      case "answer_submitted":
        this.update(who, { answered: d.answered, total_items: d.total_items, last_activity: d.at });
        return true;
      case "progress_update":
        this.update(who, { position: d.position, last_activity: d.at });
        return true;
      case "tab_violation":
        // Counted here; shown in the feed as part of its incident (integrity_alert).
        this.update(who, { violations: d.count, last_activity: d.at });
        return true;
      case "text_highlighted":
        this.update(who, { highlights: d.count, last_activity: d.at });
        this.note(`${name} highlighted “${d.text}”`, d.at);
        return true;
      case "integrity_event":
        this.update(who, { last_activity: d.at });
        return true;
      case "integrity_alert": {
        const flagged = d.marked_for_review || Boolean(this.rows.get(who)?.marked_for_review);
        this.update(who, { marked_for_review: flagged, last_activity: d.last_at });
        this.note(`${name}: ${describeIncident(d)}`, d.last_at, `incident:${d.incident_id}`, {
          attemptId: d.attempt_id, serious: d.violations.length > 0,
        });
        return true;
      }
      case "timer_changed":
        this.update(who, { state: d.state, deadline: d.timer.deadline, remaining_ms: d.timer.remaining_ms });
        return true;
      case "assessment_completed":
        this.update(who, { state: d.state, deadline: null, remaining_ms: 0, score: d.score ?? null });
        this.note(`${name}: ${d.reason}`, d.ended_at);
        return true;
      case "accommodation_changed":
        this.update(who, { extra_seconds: d.extra_seconds, time_multiplier: d.time_multiplier });
        return true;
      case "notice":
        this.note(`notice: ${d.message}`, d.at);
        return true;
      default:
        return false;
    }
  }

  take() {
    const ids = [...this.dirty];
    this.dirty.clear();
    return ids.map((id) => this.rows.get(id)).filter(Boolean);
  }
}

// One line for one incident: what happened, how long the candidate was away, what it led to.
export function describeIncident(alert) {
  const kinds = Object.entries(alert.kinds)
    .map(([kind, n]) => `${kind.replaceAll("_", " ")}${n > 1 ? ` ×${n}` : ""}`)
    .join(", ");
  const away = alert.longest_absence_ms ? `, away ${Math.round(alert.longest_absence_ms / 1000)} s` : "";
  const verdict = alert.violations.map((v) => `${v.reason} → ${v.action}`).join("; ");
  return `${kinds}${away}${verdict ? ` — ${verdict}` : ""}`;
}

// Milliseconds left on a row, from its deadline and the measured server clock offset.
export function remainingMs(row, nowMs) {
  if (row.deadline) return Math.max(0, Date.parse(row.deadline) - nowMs);
  return row.remaining_ms ?? null;
}

export function formatClock(ms) {
  if (ms === null || ms === undefined) return "—";
  const total = Math.ceil(ms / 1000);
  const m = Math.floor(total / 60);
  const s = total % 60;
  return `${m}:${String(s).padStart(2, "0")}`;
}
