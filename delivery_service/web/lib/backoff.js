// Reconnect delays: exponential with full jitter, so a thousand clients dropped at once do not
// come back at once (DESIGN.md §6). Pure: the random source is passed in for tests.

export function backoffDelay(attempt, { baseMs = 250, capMs = 15000, random = Math.random } = {}) {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.max(0, attempt));
  return Math.floor(random() * ceiling);
}
