// One user intent, one charge. A press of a paying button is an intent; its Idempotency-Key is
// made when the person acts and kept for as long as that intent lasts, so memesd applies it
// at most once however often the page sends it:
//
// - while its request is on its way, a press with the same parameters sends nothing (the
//   second click of a double click, Enter pressed again);
// - just after its answer was shown, a press with the same parameters is still the same
//   intent (a double click whose first request was answered within the click interval), and
//   sends nothing either;
// - when no answer came (the network failed, memesd was busy or restarting), pressing again
//   retries the same intent with the same key: if the first request did reach memesd, the
//   retry gets its stored reply back instead of a second charge.
//
// Anything else (other parameters, a press once the answer has been up for a while) is a new
// intent with a new key. Nothing here touches the page or the network.

/** How long after an intent's answer is shown a press with the same parameters still belongs
 * to it, in milliseconds: longer than any desktop's double-click interval (500 ms by default
 * on most), shorter than it takes to look at a meme and want another. */
export const REPEAT_MS = 800;

/** Error codes after which memesd may or may not have applied the request: it is retried
 * with the same key. Any other refusal is an answer. */
export const UNANSWERED = ["unreachable", "busy", "unavailable", "rate_limited", "internal", "http"];

/** The intents of one kind of action (one form). */
export class Intents {
  /** `newKey()` makes a fresh idempotency key. */
  constructor(newKey) {
    this.newKey = newKey;
    this.last = null;
  }

  /**
   * A press with `params` (anything JSON can hold) at `now` (ms): the key to send it with, or
   * null when it must not be sent (it is the intent already on its way or just answered).
   */
  press(params, now = Date.now()) {
    const text = JSON.stringify(params);
    const last = this.last;
    if (last && last.params === text) {
      if (last.state === "sending") return null;
      if (last.state === "answered" && now - last.answeredAt < REPEAT_MS) return null;
      if (last.state === "unanswered") {
        last.state = "sending";
        return last.key;
      }
    }
    this.last = { params: text, key: this.newKey(), state: "sending", answeredAt: 0 };
    return this.last.key;
  }

  /**
   * The outcome of the request sent with `key`, once the page has shown it: `error` is
   * undefined on success, else the ApiError (or any error) it failed with.
   */
  settle(key, error, now = Date.now()) {
    const last = this.last;
    if (!last || last.key !== key) return;
    const code = error && typeof error.code === "string" ? error.code : null;
    if (error && (code === null || UNANSWERED.includes(code))) {
      last.state = "unanswered";
    } else {
      last.state = "answered";
      last.answeredAt = now;
    }
  }

  /** True when the last intent got no answer: pressing again retries it. */
  get retrying() {
    return this.last !== null && this.last.state === "unanswered";
  }
}
