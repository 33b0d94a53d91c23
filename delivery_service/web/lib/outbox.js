// Answers and events waiting for the server's acknowledgement, kept in storage (localStorage in
// the page, a Map in tests) so a reload, a crash or a lost connection loses nothing. Each answer
// carries a client_seq that only grows for the attempt, across tabs and browsers: it starts above
// both what this browser used and what the server has seen.

export class Outbox {
  constructor(attemptId, storage, { serverSeq = 0 } = {}) {
    this.key = `examserver.outbox.${attemptId}`;
    this.storage = storage;
    const saved = JSON.parse(storage.getItem(this.key) ?? "null") ?? { seq: 0, items: [] };
    this.seq = Math.max(saved.seq, serverSeq);
    this.items = saved.items;
  }

  save() {
    this.storage.setItem(this.key, JSON.stringify({ seq: this.seq, items: this.items }));
  }

  // Queue an answer; a newer answer to the same item replaces the queued older one.
  answer(itemId, response) {
    const entry = { kind: "answer", client_seq: ++this.seq, item_id: itemId, response };
    this.items = this.items.filter((i) => !(i.kind === "answer" && i.item_id === itemId));
    this.items.push(entry);
    this.save();
    return entry;
  }

  // Queue a monitoring event under its own id (the server stores a resend once).
  event(type, data) {
    const entry = { kind: "event", type, data, client_event_id: data.client_event_id };
    this.items.push(entry);
    this.save();
    return entry;
  }

  ackEvent(clientEventId) {
    const before = this.items.length;
    this.items = this.items.filter((i) => i.client_event_id !== clientEventId);
    if (this.items.length !== before) this.save();
  }

  ack(clientSeq) {
    const before = this.items.length;
    this.items = this.items.filter((i) => i.kind !== "answer" || i.client_seq !== clientSeq);
    if (this.items.length !== before) this.save();
  }

  pending() {
    return [...this.items];
  }

  clear() {
    this.items = [];
    this.save();
  }
}
