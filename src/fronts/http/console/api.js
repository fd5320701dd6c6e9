// Talking to memesd's HTTP API: one `call` for every request, and one place that turns what
// went wrong (a problem+json body, a non-JSON answer, no answer at all) into a sentence for
// people. Nothing here touches the page.

/** A refused or failed request. `code` is the protocol's error code, or "unreachable" when
 * no answer came, or "http" when the answer was not a problem document. */
export class ApiError extends Error {
  constructor({ status = 0, code, detail, retryAfter = null }) {
    super(detail);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.detail = detail;
    /** Seconds to wait before trying again, when memesd said. */
    this.retryAfter = retryAfter;
  }
}

/** True when a bearer can travel in an HTTP header as it is: printable ASCII, no spaces. */
export function bearerIsUsable(bearer) {
  return /^[\x21-\x7e]+$/.test(bearer);
}

/**
 * Sends a request and answers its JSON body; throws an ApiError otherwise.
 * `options`: `bearer`, `body` (sent as JSON), `headers`, `accept` ("json" or "text").
 */
export async function call(method, path, options = {}) {
  const headers = new Headers(options.headers || {});
  if (options.bearer) headers.set("Authorization", `Bearer ${options.bearer}`);
  let body;
  if (options.body !== undefined) {
    headers.set("Content-Type", "application/json");
    body = JSON.stringify(options.body);
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body, cache: "no-store", credentials: "omit" });
  } catch (error) {
    throw new ApiError({
      code: "unreachable",
      detail: `no answer from memesd (${error.message || error})`,
    });
  }
  if (response.ok) {
    return options.accept === "text" ? response.text() : response.json();
  }
  throw await problemOf(response);
}

/** The ApiError a non-2xx response stands for. */
export async function problemOf(response) {
  const type = response.headers.get("Content-Type") || "";
  const headerWait = Number.parseInt(response.headers.get("Retry-After") || "", 10);
  let problem = null;
  if (type.includes("json")) {
    try {
      problem = await response.json();
    } catch {
      problem = null;
    }
  }
  if (problem && typeof problem.code === "string") {
    return new ApiError({
      status: response.status,
      code: problem.code,
      detail: String(problem.detail || problem.title || response.statusText),
      retryAfter: Number.isFinite(problem.retry_after)
        ? problem.retry_after
        : Number.isFinite(headerWait) ? headerWait : null,
    });
  }
  return new ApiError({
    status: response.status,
    code: "http",
    detail: `HTTP ${response.status} ${response.statusText}`.trim(),
    retryAfter: Number.isFinite(headerWait) ? headerWait : null,
  });
}

/** "in 3 s (at 14:02:07)" for a wait, from `now`. */
export function waitText(seconds, now = new Date()) {
  const wait = Math.max(1, Math.ceil(seconds ?? 1));
  const at = new Date(now.getTime() + wait * 1000);
  const clock = at.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return `in ${wait} s (at ${clock})`;
}

/** One sentence saying what went wrong and what to do about it; `deduction` when the refused
 * request was a deduction (more tokens are not the answer to that). */
export function describe(error, now = new Date(), { deduction = false } = {}) {
  if (!(error instanceof ApiError)) {
    return `Something went wrong in the console: ${error && error.message ? error.message : error}`;
  }
  const detail = error.detail;
  switch (error.code) {
    case "unreachable":
      return `memesd is unreachable: ${detail}. Is it running, and is this page served by it?`;
    case "unauthorized":
      return `Not signed in, or the credential was refused: ${detail}. Sign in again.`;
    case "insufficient_tokens":
      if (deduction) {
        return `Not deducted: ${detail}. A deduction never takes a balance below zero; deduct at most the balance.`;
      }
      return `Not enough tokens: ${detail}. Nothing was charged; an admin can top the account up.`;
    case "rate_limited":
      return `Too many requests: try again ${waitText(error.retryAfter, now)}. Nothing was charged.`;
    case "not_allowed":
      return `Not allowed: ${detail}.`;
    case "busy":
      return `memesd is busy: ${detail}. Try again ${waitText(error.retryAfter, now)}.`;
    case "unavailable":
      return `memesd cannot take changes now: ${detail}. Nothing was changed; try again ${waitText(error.retryAfter, now)}.`;
    case "not_found":
      return `Not found: ${detail}.`;
    case "idempotency_conflict":
      return `Conflict: ${detail}.`;
    case "hold_expired":
    case "hold_closed":
      return `Already over: ${detail}.`;
    case "bad_request":
    case "invalid_argument":
    case "payload_too_large":
      return `Check the input: ${detail}.`;
    case "internal":
      return `memesd failed: ${detail}.`;
    default:
      return `memesd answered ${detail}.`;
  }
}
