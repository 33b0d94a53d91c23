// The server's clock, as seen from the browser, immune to the computer's clock being changed.
// Each sample is a round trip: we send our monotonic time, the server answers with its time.
// The sample with the smallest round trip wins (its error is at most half that trip). Local time
// then advances with performance.now(), never Date.now(), so moving the system clock changes
// nothing.

export class ServerClock {
  constructor({ monotonic = () => performance.now(), keep = 8 } = {}) {
    this.monotonic = monotonic;
    this.keep = keep;
    this.samples = [];
    this.best = null;
  }

  // sentAt: monotonic ms when the ping left; serverNow: the server's ISO time in the reply.
  sample(sentAt, serverNow, receivedAt = this.monotonic()) {
    const rtt = receivedAt - sentAt;
    if (rtt < 0) return;
    const sample = { rtt, server: Date.parse(serverNow), at: sentAt + rtt / 2 };
    this.samples.push(sample);
    if (this.samples.length > this.keep) this.samples.shift();
    this.best = this.samples.reduce((a, b) => (b.rtt < a.rtt ? b : a));
  }

  get synced() {
    return this.best !== null;
  }

  // The server's current time in epoch milliseconds.
  now() {
    if (!this.best) return null;
    return this.best.server + (this.monotonic() - this.best.at);
  }

  remainingMs(deadlineIso) {
    const now = this.now();
    if (deadlineIso === null || now === null) return null;
    return Math.max(0, Date.parse(deadlineIso) - now);
  }
}
