// The console's pure modules under node: the metrics parser and the figures read off two
// scrapes, the error sentences, and the chart's geometry. (The browser test drives the rest.)

import { test } from "node:test";
import assert from "node:assert/strict";
import { ApiError, bearerIsUsable, describe, problemOf, waitText } from "../../src/fronts/http/console/api.js";
import { geometry, HEIGHT } from "../../src/fronts/http/console/chart.js";
import { duration, parse, percent, quantile, reading, summarize } from "../../src/fronts/http/console/metrics.js";
import { Intents, REPEAT_MS } from "../../src/fronts/http/console/intent.js";

test("the text format parses: labels with escapes, special values, comments", () => {
  const samples = parse(`# HELP memes_requests_total Requests.
# TYPE memes_requests_total counter
memes_requests_total{front="unix",op="get",code="ok"} 12
memes_requests_total{ front="http", op="get",code="not_found",} 3 1700000000000
weird{path="a\\"b\\\\c\\nd"} 1.5e3
memes_request_duration_seconds_bucket{le="+Inf"} +Inf
up NaN
broken{le="0.1" 4
no_value{a="b"}

`);
  assert.deepEqual(samples.slice(0, 3), [
    { name: "memes_requests_total", labels: { front: "unix", op: "get", code: "ok" }, value: 12 },
    { name: "memes_requests_total", labels: { front: "http", op: "get", code: "not_found" }, value: 3 },
    { name: "weird", labels: { path: 'a"b\\c\nd' }, value: 1500 },
  ]);
  assert.equal(samples[3].value, Infinity);
  assert.ok(Number.isNaN(samples[4].value));
  assert.equal(samples.length, 5, "malformed lines are skipped");
});

test("quantiles interpolate inside their bucket, as histogram_quantile does", () => {
  const buckets = [[0.001, 50], [0.0025, 100], [0.005, 180], [0.01, 190], [0.05, 200], [Infinity, 200]];
  assert.equal(quantile(0.5, buckets), 0.0025);
  assert.ok(Math.abs(quantile(0.99, buckets) - 0.042) < 1e-12);
  assert.equal(quantile(0.1, buckets), 0.001 * (20 / 50));
  // Beyond the last finite bound: that bound.
  assert.equal(quantile(0.99, [[0.1, 1], [Infinity, 100]]), 0.1);
  assert.equal(quantile(0.5, []), null);
  assert.equal(quantile(0.5, [[0.1, 0], [Infinity, 0]]), null, "no observations");
});

test("two scrapes give rates, quantiles, error ratios and writability", () => {
  const first = reading(
    parse(`memes_requests_total{front="unix",op="get",code="ok"} 100
memes_requests_total{front="http",op="get",code="insufficient_tokens"} 10
memes_requests_total{front="http",op="get",code="internal"} 1
memes_request_duration_seconds_bucket{front="unix",op="get",le="0.001"} 90
memes_request_duration_seconds_bucket{front="http",op="get",le="0.001"} 5
memes_request_duration_seconds_bucket{front="unix",op="get",le="0.01"} 100
memes_request_duration_seconds_bucket{front="http",op="get",le="0.01"} 11
memes_request_duration_seconds_bucket{front="unix",op="get",le="+Inf"} 100
memes_request_duration_seconds_bucket{front="http",op="get",le="+Inf"} 11
memes_store_writable{store="file"} 1`),
    0,
  );
  const second = reading(
    parse(`memes_requests_total{front="unix",op="get",code="ok"} 140
memes_requests_total{front="http",op="get",code="insufficient_tokens"} 15
memes_requests_total{front="http",op="get",code="internal"} 6
memes_request_duration_seconds_bucket{front="unix",op="get",le="0.001"} 110
memes_request_duration_seconds_bucket{front="http",op="get",le="0.001"} 10
memes_request_duration_seconds_bucket{front="unix",op="get",le="0.01"} 140
memes_request_duration_seconds_bucket{front="http",op="get",le="0.01"} 21
memes_request_duration_seconds_bucket{front="unix",op="get",le="+Inf"} 140
memes_request_duration_seconds_bucket{front="http",op="get",le="+Inf"} 21
memes_store_writable{store="file"} 0`),
    5000,
  );
  const s = summarize(first, second);
  assert.equal(s.seconds, 5);
  assert.equal(s.requestsPerSecond, 50 / 5);
  assert.equal(s.serverErrorRatio, 5 / 50);
  assert.equal(s.refusedRatio, 5 / 50);
  // 25 of 50 by 1 ms: the median is the first bucket's bound.
  assert.equal(s.p50, 0.001);
  assert.ok(s.p99 > 0.001 && s.p99 <= 0.01);
  assert.deepEqual(s.stores, { file: false });
});

test("a restart (counters going down) is read as counting from zero", () => {
  const before = reading(parse(`memes_requests_total{code="ok"} 1000`), 0);
  const after = reading(parse(`memes_requests_total{code="ok"} 30`), 3000);
  assert.equal(summarize(before, after).requestsPerSecond, 10);
});

test("no requests between the scrapes: no ratios, no quantiles", () => {
  const text = `memes_requests_total{code="ok"} 7
memes_request_duration_seconds_bucket{le="0.001"} 7
memes_request_duration_seconds_bucket{le="+Inf"} 7`;
  const s = summarize(reading(parse(text), 0), reading(parse(text), 4000));
  assert.equal(s.requestsPerSecond, 0);
  assert.equal(s.serverErrorRatio, null);
  assert.equal(s.p50, null);
  const none = summarize(reading([], 0), reading([], 4000));
  assert.equal(none.requestsPerSecond, null, "no series: not measurable, not zero");
});

test("figures read as people write them", () => {
  assert.equal(duration(0.0025), "2.50 ms");
  assert.equal(duration(0.042), "42.0 ms");
  assert.equal(duration(0.00034), "340 µs");
  assert.equal(duration(1.2), "1.20 s");
  assert.equal(duration(null), "–");
  assert.equal(percent(0.01), "1.0 %");
  assert.equal(percent(0.0002), "0.020 %");
  assert.equal(percent(null), "–");
});

test("problem documents become errors with their code and wait", async () => {
  const limited = await problemOf(
    new Response(JSON.stringify({ type: "about:blank", title: "Too Many Requests", status: 429, detail: "slow down", code: "rate_limited", retry_after: 3 }), {
      status: 429,
      headers: { "Content-Type": "application/problem+json", "Retry-After": "3" },
    }),
  );
  assert.equal(limited.code, "rate_limited");
  assert.equal(limited.retryAfter, 3);
  const gateway = await problemOf(new Response("<h1>bad gateway</h1>", { status: 502, statusText: "Bad Gateway", headers: { "Content-Type": "text/html", "Retry-After": "9" } }));
  assert.equal(gateway.code, "http");
  assert.equal(gateway.detail, "HTTP 502 Bad Gateway");
  assert.equal(gateway.retryAfter, 9);
});

test("every error code has its own sentence", () => {
  const now = new Date(2026, 0, 1, 12, 0, 0);
  const say = (code, detail = "why", retryAfter = null) => describe(new ApiError({ status: 400, code, detail, retryAfter }), now);
  assert.match(say("unreachable"), /^memesd is unreachable: why\. Is it running/);
  assert.match(say("unauthorized"), /^Not signed in, or the credential was refused: why\. Sign in again\.$/);
  assert.match(say("insufficient_tokens", 'user "u" has 0 tokens, 1 needed'), /^Not enough tokens: user "u" has 0 tokens, 1 needed\. Nothing was charged/);
  // A refused deduction is not a reason to top up.
  const deduction = describe(new ApiError({ status: 402, code: "insufficient_tokens", detail: 'user "u" has 150 tokens, 100000 needed' }), now, { deduction: true });
  assert.match(deduction, /^Not deducted: .*deduct at most the balance\.$/);
  assert.doesNotMatch(deduction, /top the account up/);
  assert.match(say("rate_limited", "x", 2), /^Too many requests: try again in 2 s \(at 12:00:02( PM)?\)\./);
  assert.match(say("not_allowed"), /^Not allowed: why\.$/);
  assert.match(say("busy", "full", null), /^memesd is busy: full\. Try again in 1 s/);
  assert.match(say("unavailable", "disk full", 4), /^memesd cannot take changes now: disk full\. Nothing was changed; try again in 4 s/);
  assert.match(say("not_found"), /^Not found: why\.$/);
  assert.match(say("idempotency_conflict"), /^Conflict: why\.$/);
  assert.match(say("invalid_argument"), /^Check the input: why\.$/);
  assert.match(say("internal"), /^memesd failed: why\.$/);
  assert.match(say("http", "HTTP 502 Bad Gateway"), /^memesd answered HTTP 502 Bad Gateway\.$/);
  assert.match(describe(new TypeError("oops")), /^Something went wrong in the console: oops$/);
  assert.match(waitText(0.2, now), /^in 1 s \(at 12:00:01( PM)?\)$/);
});

test("bearers must travel in a header as they are", () => {
  assert.ok(bearerIsUsable("u1"));
  assert.ok(bearerIsUsable("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1MSJ9.sig-_"));
  for (const bad of ["", "has space", "Zoë", "tab\there", "line\n"]) assert.equal(bearerIsUsable(bad), false, bad);
});

test("the chart puts time left to right and balance bottom to top", () => {
  const g = geometry(
    [
      { time: "2026-01-01T00:00:00Z", balance: 150 },
      { time: "2026-01-01T00:00:30Z", balance: 100 },
      { time: "2026-01-01T00:01:00Z", balance: 0 },
    ],
    400,
  );
  const [a, b, c] = g.points;
  assert.ok(a.x < b.x && b.x < c.x);
  assert.equal(b.x - a.x, c.x - b.x, "equal times, equal steps");
  assert.ok(a.y < b.y && b.y < c.y, "lower balances lower down");
  assert.equal(c.y, g.baseline);
  assert.equal(a.y, g.top);
  assert.ok(c.x <= 400 && g.baseline < HEIGHT);
  assert.equal(g.path, `M${a.x} ${a.y}H${b.x}V${b.y}H${c.x}V${c.y}`);
  // Scaled to the balances shown: 1-token charges from 150 span the whole height.
  const charges = geometry([
    { time: "2026-01-01T00:00:00Z", balance: 150 },
    { time: "2026-01-01T00:00:30Z", balance: 149 },
    { time: "2026-01-01T00:01:00Z", balance: 148 },
  ]);
  assert.equal(charges.low, 148);
  assert.equal(charges.high, 150);
  assert.equal(charges.points[0].y, charges.top);
  assert.equal(charges.points[2].y, charges.baseline);
  assert.ok(charges.baseline - charges.top > HEIGHT / 2, "not a flat line");
  // One balance throughout: drawn inside the chart, with a token of room below.
  const flat = geometry([{ time: "2026-01-01T00:00:00Z", balance: 150 }]);
  assert.ok(flat.low === 149 && flat.high === 150 && flat.points[0].y === flat.top);
  const empty = geometry([{ time: "2026-01-01T00:00:00Z", balance: 0 }]);
  assert.ok(empty.low === 0 && empty.high === 1 && empty.points[0].y === empty.baseline);
  // All at one instant: spread evenly.
  const same = geometry([{ time: "2026-01-01T00:00:00Z", balance: 2 }, { time: "2026-01-01T00:00:00Z", balance: 1 }, { time: "2026-01-01T00:00:00Z", balance: 0 }]);
  assert.ok(same.points[0].x < same.points[1].x && same.points[1].x < same.points[2].x);
});

test("one intent, one key: kept while in flight, just after its answer, and across retries", () => {
  let made = 0;
  const intents = new Intents(() => `k${(made += 1)}`);
  const cats = { user: "u1", query: "cats" };
  assert.equal(intents.press(cats, 0), "k1");
  assert.equal(intents.press({ ...cats }, 100), null, "on its way: nothing is sent");
  intents.settle("k1", undefined, 200);
  assert.equal(intents.press(cats, 200 + REPEAT_MS - 1), null, "a double click's second press");
  assert.equal(intents.press(cats, 200 + REPEAT_MS), "k2", "later: a new intent");
  // No answer: pressing again retries with the same key, as often as it takes.
  intents.settle("k2", new ApiError({ code: "unreachable", detail: "x" }), 5000);
  assert.ok(intents.retrying);
  assert.equal(intents.press(cats, 5001), "k2");
  intents.settle("k2", new ApiError({ status: 503, code: "busy", detail: "x" }), 6000);
  assert.equal(intents.press(cats, 6001), "k2");
  intents.settle("k2", undefined, 7000);
  assert.ok(!intents.retrying);
  // Other parameters are another intent, whatever the last one's state.
  assert.equal(intents.press({ user: "u1", query: "dogs" }, 7001), "k3");
  // A refusal is an answer: the intent is over.
  intents.settle("k3", new ApiError({ status: 402, code: "insufficient_tokens", detail: "x" }), 8000);
  assert.equal(intents.press({ user: "u1", query: "dogs" }, 8000 + REPEAT_MS), "k4");
  // An outcome for a key that is no longer the last one changes nothing.
  intents.settle("k1", new ApiError({ code: "unreachable", detail: "x" }), 9000);
  assert.ok(!intents.retrying);
});
