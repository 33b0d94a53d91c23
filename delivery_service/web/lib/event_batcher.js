// Integrity events on their way to the server: kept durably in an outbox until acknowledged,
// sent in batches (one `integrity_batch` message, one server transaction) rather than one message
// per browser signal, and resent after a reconnect. The server stores a resend once, by
// client_event_id. No DOM code: the page feeds events and a `send` function.

const MAX_BATCH = 50;

export class EventBatcher {
  constructor({ outbox, send, delayMs = 500, setTimer = (fn, ms) => setTimeout(fn, ms),
                clearTimer = (id) => clearTimeout(id) }) {
    this.outbox = outbox;
    this.send = send;
    this.delayMs = delayMs;
    this.setTimer = setTimer;
    this.clearTimer = clearTimer;
    this.inFlight = new Set();
    this.timer = null;
  }

  // Keep first, then send soon: a crash between the two loses nothing.
  add(type, data) {
    this.outbox.event(type, data);
    if (this.timer === null) this.timer = this.setTimer(() => this.flush(), this.delayMs);
  }

  pending() {
    return this.outbox.pending().filter((i) => i.kind === "event");
  }

  flush() {
    if (this.timer !== null) this.clearTimer(this.timer);
    this.timer = null;
    const waiting = this.pending().filter((e) => !this.inFlight.has(e.client_event_id));
    for (let start = 0; start < waiting.length; start += MAX_BATCH) {
      const batch = waiting.slice(start, start + MAX_BATCH);
      const sent = this.send("integrity_batch", { events: batch.map((e) => ({ type: e.type, data: e.data })) });
      if (!sent) return; // offline: the outbox keeps them for the next connection
      for (const e of batch) this.inFlight.add(e.client_event_id);
    }
  }

  // After a (re)connect nothing is in flight any more: send everything still waiting.
  reconnected() {
    this.inFlight.clear();
    this.flush();
  }

  ack(recorded) {
    for (const r of recorded) {
      this.outbox.ackEvent(r.client_event_id);
      this.inFlight.delete(r.client_event_id);
    }
  }
}
