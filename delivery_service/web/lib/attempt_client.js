// The candidate's connection to one attempt: keeps the attempt WebSocket open (fresh ticket each
// time, backoff with full jitter, resume from the last event), replays the outbox after every
// (re)connect, measures the clock offset on connect and every 30 s, and reports what happens
// through callbacks. No DOM code: the page renders what this tells it.

import { backoffDelay } from "./backoff.js";
import { ServerClock } from "./clock.js";
import { EventBatcher } from "./event_batcher.js";
import { Outbox } from "./outbox.js";

const HEARTBEAT_MS = 15000;
const CLOCK_MS = 30000;
const FINAL = new Set([4401, 4403, 4404, 4409]);
// Refusals that sending again cannot change: the answer leaves the outbox and is reported.
const PERMANENT = new Set(["invalid_response", "unknown_item", "client_seq_conflict", "invalid_message", "item_locked"]);
// Refusals that end every pending answer: the attempt no longer takes any.
const CLOSED = new Set(["deadline_passed", "attempt_not_in_progress"]);

export class AttemptClient {
  constructor({ api, attemptId, storage, on, WebSocketImpl = globalThis.WebSocket,
                monotonic = () => performance.now(), locationHost = globalThis.location?.host,
                secure = globalThis.location?.protocol === "https:" }) {
    this.api = api;
    this.attemptId = attemptId;
    this.storage = storage;
    this.on = on;
    this.WebSocketImpl = WebSocketImpl;
    this.monotonic = monotonic;
    this.host = locationHost;
    this.secure = secure;
    this.clock = new ServerClock({ monotonic });
    this.outbox = null;
    this.failures = 0;
    this.counter = 0;
    this.lastEventId = null;
    this.pings = new Map();
    this.sentAnswers = new Map();
    this.stopped = false;
    // Integrity events (self-paced attempts) have their own outbox: answers are replayed by
    // client_seq, events by client_event_id.
    this.events = new EventBatcher({
      outbox: new Outbox(`events-${attemptId}`, storage),
      send: (type, data) => this.send(type, data),
    });
  }

  async connect() {
    if (this.stopped) return;
    this.on.status?.("connecting");
    let ticket;
    try {
      ticket = (await this.api.post("/api/v1/ws-tickets", { attempt_id: this.attemptId })).ticket;
    } catch (error) {
      if (error.status === 401 || error.status === 403) return this.on.status?.("signed-out");
      return this.retry();
    }
    const scheme = this.secure ? "wss:" : "ws:";
    const resume = this.lastEventId ? `&last_event_id=${encodeURIComponent(this.lastEventId)}` : "";
    const socket = new this.WebSocketImpl(
      `${scheme}//${this.host}/api/v1/attempts/${this.attemptId}/ws?ticket=${encodeURIComponent(ticket)}${resume}`,
    );
    this.socket = socket;
    socket.onopen = () => {
      this.failures = 0;
      this.timers = [
        setInterval(() => this.send("heartbeat"), HEARTBEAT_MS),
        setInterval(() => this.ping(), CLOCK_MS),
      ];
    };
    socket.onmessage = (event) => this.receive(JSON.parse(event.data));
    socket.onclose = (event) => {
      for (const t of this.timers ?? []) clearInterval(t);
      if (this.socket !== socket) return;
      if (FINAL.has(event.code)) {
        this.stopped = true;
        return this.on.status?.(event.code === 4409 ? "superseded" : "closed");
      }
      this.retry();
    };
  }

  retry() {
    if (this.stopped) return;
    this.on.status?.("offline");
    setTimeout(() => this.connect(), backoffDelay(this.failures++));
  }

  receive(message) {
    if (message.seq) this.lastEventId = message.seq;
    switch (message.type) {
      case "auth_success":
        if (!this.lastEventId) this.lastEventId = message.data.last_event_id || null;
        return;
      case "attempt_state": {
        const state = message.data;
        this.outbox ??= new Outbox(this.attemptId, this.storage, { serverSeq: state.last_client_seq });
        this.on.status?.("online");
        this.on.state?.(state);
        this.ping();
        this.flush();
        this.events.reconnected();
        return;
      }
      case "events_recorded":
        return this.events.ack(message.data);
      case "event_recorded":
        return this.events.ack([message.data]);
      case "answer_feedback":
        this.sentAnswers.delete(message.re);
        this.outbox?.ack(message.data.client_seq);
        return this.on.saved?.(message.data, this.outbox?.pending().length ?? 0);
      case "timer":
        if (message.re && this.pings.has(message.re)) {
          this.clock.sample(this.pings.get(message.re), message.data.timer.server_now);
          this.pings.delete(message.re);
        }
        return this.on.timer?.(message.data);
      case "error": {
        const seq = this.sentAnswers.get(message.re);
        if (CLOSED.has(message.data.code)) this.outbox?.clear();
        else if (seq !== undefined && PERMANENT.has(message.data.code)) this.outbox?.ack(seq);
        this.sentAnswers.delete(message.re);
        return this.on.error?.(message.data, message.re);
      }
      default:
        return this.on.message?.(message);
    }
  }

  // Queue an answer durably first, then send it if we can; it is resent until acknowledged.
  answer(itemId, response) {
    const entry = this.outbox.answer(itemId, response);
    this.on.saved?.(null, this.outbox.pending().length);
    this.sendAnswer(entry);
  }

  flush() {
    for (const entry of this.outbox?.pending() ?? []) {
      if (entry.kind === "answer") this.sendAnswer(entry);
    }
  }

  // An integrity event from the page's sensors: durable first, then batched to the server.
  event(type, data) {
    this.events.add(type, data);
  }

  sendAnswer(entry) {
    const id = this.send("submit_answer", {
      item_id: entry.item_id, response: entry.response, client_seq: entry.client_seq,
    });
    if (id) this.sentAnswers.set(id, entry.client_seq);
  }

  ping() {
    const id = this.send("ping", { client_time: Date.now() });
    if (id) this.pings.set(id, this.monotonic());
  }

  send(type, data = {}) {
    if (this.socket?.readyState !== 1) return null;
    const id = `c${++this.counter}`;
    this.socket.send(JSON.stringify({ type, id, data }));
    return id;
  }

  stop() {
    this.stopped = true;
    this.socket?.close(1000);
  }
}
