// How long the chat page waits before it reconnects: growing delays with jitter, and a cap.
//
// Attempt n waits between half and all of min(30 s, 0.5 s × 2^n). The lower half keeps the
// delays growing whatever the dice say: each wait is at least as long as the one before it
// until the cap (full jitter, anywhere from 0, can roll a run of near-zero waits, which is the
// tight loop this exists to prevent). The upper half spreads out the tabs that a restarted
// server sees coming back. The count of attempts goes back to 0 only once a connection has
// stayed open for STABLE_AFTER_MS: a server that accepts a socket and then drops it (an
// overloaded or broken one) is retried less and less often, not every half second.

export const FIRST_DELAY_MS = 500;
export const MAX_DELAY_MS = 30000;
export const STABLE_AFTER_MS = 10000;

export function reconnectDelay(attempt, random = Math.random) {
  const ceiling = Math.min(MAX_DELAY_MS, FIRST_DELAY_MS * 2 ** Math.min(Math.max(attempt, 0), 16));
  return Math.round(ceiling / 2 + random() * (ceiling / 2));
}
