// A session WebSocket that keeps itself connected: a fresh single-use ticket per attempt,
// reconnects with backoff and jitter, resumes from the last event seen (last_event_id),
// heartbeats every 15 s, and drops events it has already seen. No DOM code here.

import { backoffDelay } from "./backoff.js";
import { Positions } from "./positions.js";

const HEARTBEAT_MS = 15000;
const FINAL_CODES = new Set([4401, 4403, 4404, 4409]);

export class LiveSocket {
  constructor({ api, path, onMessage, onStatus = () => {}, WebSocketImpl = globalThis.WebSocket }) {
    this.api = api;
    this.path = path;
    this.onMessage = onMessage;
    this.onStatus = onStatus;
    this.WebSocketImpl = WebSocketImpl;
    this.positions = new Positions();
    this.failures = 0;
    this.stopped = false;
    this.counter = 0;
  }

  async connect() {
    if (this.stopped) return;
    this.onStatus("connecting");
    let ticket;
    try {
      ticket = (await this.api.post("/api/v1/ws-tickets", {})).ticket;
    } catch (error) {
      return this.retry();
    }
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const resume = this.positions.toParam();
    const query = `ticket=${encodeURIComponent(ticket)}` +
      (resume ? `&last_event_id=${encodeURIComponent(resume)}` : "");
    const socket = new this.WebSocketImpl(`${scheme}//${location.host}${this.path}?${query}`);
    this.socket = socket;
    socket.onopen = () => {
      this.failures = 0;
      this.onStatus("open");
      this.heartbeat = setInterval(() => this.send("heartbeat"), HEARTBEAT_MS);
    };
    socket.onmessage = (event) => {
      const message = JSON.parse(event.data);
      if (message.type === "connected") this.positions.adopt(message.data.positions);
      if (this.positions.see(message.seq)) this.onMessage(message);
    };
    socket.onclose = (event) => {
      clearInterval(this.heartbeat);
      if (this.socket !== socket) return;
      if (FINAL_CODES.has(event.code)) {
        this.onStatus(event.code === 4409 ? "superseded" : "closed");
        return;
      }
      this.retry();
    };
  }

  retry() {
    if (this.stopped) return;
    this.onStatus("reconnecting");
    setTimeout(() => this.connect(), backoffDelay(this.failures++));
  }

  send(type, data = {}) {
    const id = `c${++this.counter}`;
    if (this.socket?.readyState === 1) this.socket.send(JSON.stringify({ type, id, data }));
    return id;
  }

  stop() {
    this.stopped = true;
    clearInterval(this.heartbeat);
    this.socket?.close(1000);
  }
}
