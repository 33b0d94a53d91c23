// Event positions for resuming a session socket: the latest `seq` seen per channel kind
// ("kind:epoch:offset"), sent back as last_event_id. Pure, so it is unit-tested.

export class Positions {
  constructor() {
    this.latest = new Map();
  }

  // Returns false for an event already seen (a replay overlapping live delivery).
  see(seq) {
    if (!seq) return true;
    const [kind, epoch, offsetText] = seq.split(":");
    const offset = Number(offsetText);
    const known = this.latest.get(kind);
    if (known && known.epoch === epoch && offset <= known.offset) return false;
    this.latest.set(kind, { epoch, offset });
    return true;
  }

  // The server's current positions on connect: adopt those of kinds we have none for (the
  // kinds we do have are followed by their replayed events, which must not be skipped).
  adopt(positions) {
    for (const seq of Object.values(positions ?? {})) {
      const [kind] = seq.split(":");
      if (!this.latest.has(kind)) this.see(seq);
    }
  }

  toParam() {
    return [...this.latest].map(([kind, p]) => `${kind}:${p.epoch}:${p.offset}`).join(",");
  }
}
