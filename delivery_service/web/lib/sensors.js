// Integrity sensors: raw browser signals in, monitoring events out, each with an id (so the
// server stores a resend once) and a duration where it has one, so a proctor can tell a two-second
// notification from a ten-minute absence. No DOM code: the page feeds the signals.

export class Sensors {
  constructor({ emit, monotonic = () => performance.now(), clientTime = () => Date.now(),
                newId = () => crypto.randomUUID() }) {
    this.emit = emit;
    this.monotonic = monotonic;
    this.clientTime = clientTime;
    this.newId = newId;
    this.since = new Map();
  }

  send(type, data) {
    this.emit(type, { ...data, client_time: this.clientTime(), client_event_id: this.newId() });
  }

  // A state that starts and ends (hidden, blurred, out of fullscreen, offline): the end reports
  // how long it lasted.
  span(key, started, startKind, endKind) {
    if (started) {
      if (this.since.has(key)) return;
      this.since.set(key, this.monotonic());
      this.send("integrity_event", { kind: startKind });
      return null;
    }
    const at = this.since.get(key);
    if (at === undefined) return null;
    this.since.delete(key);
    const duration = Math.round(this.monotonic() - at);
    this.send("integrity_event", { kind: endKind, duration_ms: duration });
    return duration;
  }

  visibility(hidden) {
    const duration = this.span("hidden", hidden, "tab_hidden", "tab_visible");
    if (duration !== null && duration !== undefined) {
      this.send("tab_violation", { violation_type: "tab_switch", duration_ms: duration });
    }
  }

  focus(focused) {
    this.span("blur", !focused, "window_blur", "window_focus");
  }

  fullscreen(active) {
    this.span("fullscreen", !active, "fullscreen_exit", "fullscreen_enter");
  }

  network(online) {
    this.span("offline", !online, "network_offline", "network_online");
  }

  clipboard(kind) {
    this.send("integrity_event", { kind });
  }

  contextMenu() {
    this.send("integrity_event", { kind: "context_menu" });
  }

  shortcut(description) {
    this.send("integrity_event", { kind: "keyboard_shortcut", detail: description.slice(0, 200) });
  }

  highlight(text, itemId, start, end) {
    const trimmed = text.trim();
    if (!trimmed) return;
    // Selection events jitter: the same selection reported again is noise, not a new highlight.
    const key = `${itemId}:${start}:${end}:${trimmed}`;
    if (key === this.lastHighlight) return;
    this.lastHighlight = key;
    this.send("text_highlighted", {
      text: trimmed.slice(0, 5000), item_id: itemId, position_start: start, position_end: end,
    });
  }
}

// Which key combinations are worth reporting (copying, printing, saving, searching, switching).
export function suspiciousShortcut({ key, ctrlKey, metaKey, altKey }) {
  if (key === "PrintScreen") return "PrintScreen";
  if (altKey && key === "Tab") return "Alt+Tab";
  const mod = ctrlKey ? "Ctrl" : metaKey ? "Meta" : null;
  if (!mod) return null;
  const k = key.length === 1 ? key.toUpperCase() : key;
  return ["C", "V", "X", "P", "S", "F", "A", "U", "Tab"].includes(k) ? `${mod}+${k}` : null;
}
