// memesd's own metrics (`GET /metrics`, Prometheus text format 0.0.4), read by the console:
// a parser, and the service's vital signs from two scrapes taken a few seconds apart.
// Pure functions, no page and no network, so node can test them.
//
// The series read:
//   memes_requests_total{front,op,code}                counter ("ok" or an error code)
//   memes_request_duration_seconds_bucket{front,op,le} histogram buckets (+ _sum, _count)
//   memes_store_writable{store}                        gauge, 1 or 0

/** Codes that mean memesd failed, as opposed to refusing a request it did not like. */
const SERVER_ERRORS = new Set(["internal", "unavailable", "busy"]);

/** Parses the text exposition format into `[{name, labels, value}]`; comments and lines
 * that do not parse are skipped. */
export function parse(text) {
  const samples = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const sample = parseLine(line);
    if (sample) samples.push(sample);
  }
  return samples;
}

function parseLine(line) {
  const nameEnd = line.search(/[{\s]/);
  if (nameEnd <= 0) return null;
  const name = line.slice(0, nameEnd);
  const labels = {};
  let at = nameEnd;
  if (line[at] === "{") {
    at += 1;
    for (;;) {
      while (line[at] === " " || line[at] === ",") at += 1;
      if (line[at] === "}") {
        at += 1;
        break;
      }
      const eq = line.indexOf("=", at);
      if (eq < 0 || line[eq + 1] !== '"') return null;
      const label = line.slice(at, eq).trim();
      let value = "";
      let i = eq + 2;
      for (; i < line.length && line[i] !== '"'; i += 1) {
        if (line[i] === "\\" && i + 1 < line.length) {
          i += 1;
          value += line[i] === "n" ? "\n" : line[i];
        } else {
          value += line[i];
        }
      }
      if (i >= line.length) return null;
      labels[label] = value;
      at = i + 1;
    }
  }
  const fields = line.slice(at).trim().split(/\s+/);
  const value = number(fields[0]);
  if (value === null) return null;
  return { name, labels, value };
}

/** A sample value: a float, "+Inf", "-Inf" or "NaN". */
function number(text) {
  if (text === undefined || text === "") return null;
  if (text === "+Inf" || text === "Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  if (text === "NaN") return NaN;
  const value = Number(text);
  return Number.isNaN(value) ? null : value;
}

/** What one scrape says: counters summed, histogram buckets summed by bound. */
export function reading(samples, time) {
  let requests = 0;
  let serverErrors = 0;
  let refused = 0;
  const buckets = new Map();
  const stores = {};
  let sawRequests = false;
  let sawHistogram = false;
  for (const { name, labels, value } of samples) {
    if (name === "memes_requests_total") {
      sawRequests = true;
      requests += value;
      const code = labels.code || "ok";
      if (SERVER_ERRORS.has(code) || /^5\d\d$/.test(code)) serverErrors += value;
      else if (code !== "ok" && !/^[123]\d\d$/.test(code)) refused += value;
    } else if (name === "memes_request_duration_seconds_bucket") {
      sawHistogram = true;
      const le = number(labels.le);
      if (le !== null) buckets.set(le, (buckets.get(le) || 0) + value);
    } else if (name === "memes_store_writable") {
      stores[labels.store || "store"] = value === 1;
    }
  }
  return { time, requests, serverErrors, refused, buckets, stores, sawRequests, sawHistogram };
}

/** Cumulative bucket counts `[[le, count]]`, sorted by bound, as a histogram_quantile does. */
function sortedBuckets(map) {
  return [...map.entries()].sort((a, b) => a[0] - b[0]);
}

/** The q-quantile of cumulative buckets, interpolating linearly inside the bucket it falls
 * in (Prometheus' histogram_quantile); null without observations. */
export function quantile(q, cumulative) {
  if (cumulative.length === 0) return null;
  const total = cumulative[cumulative.length - 1][1];
  if (!(total > 0)) return null;
  const rank = q * total;
  let lowerBound = 0;
  let lowerCount = 0;
  for (const [le, count] of cumulative) {
    if (count >= rank) {
      if (le === Infinity) return lowerBound;
      if (count === lowerCount) return le;
      return lowerBound + (le - lowerBound) * ((rank - lowerCount) / (count - lowerCount));
    }
    lowerBound = le;
    lowerCount = count;
  }
  return lowerBound;
}

/** A counter's increase, read across a restart (a counter that went down started over). */
function increase(before, after) {
  return after >= before ? after - before : after;
}

/**
 * The service between two readings: requests per second, p50 and p99 latency (seconds),
 * the share of requests memesd failed (server errors) and refused (client errors), and
 * whether each store is writable (from the later reading). Null figures: not measurable
 * (no requests in between, or the series are missing).
 */
export function summarize(before, after) {
  const seconds = (after.time - before.time) / 1000;
  const requests = increase(before.requests, after.requests);
  const buckets = new Map();
  for (const [le, count] of after.buckets) {
    buckets.set(le, increase(before.buckets.get(le) || 0, count));
  }
  const cumulative = sortedBuckets(buckets);
  return {
    seconds,
    requestsPerSecond: after.sawRequests && seconds > 0 ? requests / seconds : null,
    p50: after.sawHistogram ? quantile(0.5, cumulative) : null,
    p99: after.sawHistogram ? quantile(0.99, cumulative) : null,
    serverErrorRatio:
      after.sawRequests && requests > 0
        ? increase(before.serverErrors, after.serverErrors) / requests
        : null,
    refusedRatio:
      after.sawRequests && requests > 0 ? increase(before.refused, after.refused) / requests : null,
    stores: after.stores,
  };
}

/** "12.5 ms", "340 µs", "1.20 s". */
export function duration(seconds) {
  if (seconds === null || !Number.isFinite(seconds)) return "–";
  if (seconds >= 1) return `${seconds.toFixed(2)} s`;
  if (seconds >= 0.001) return `${(seconds * 1000).toPrecision(3)} ms`;
  return `${Math.round(seconds * 1e6)} µs`;
}

/** "0.5 %", "–" when unknown. */
export function percent(ratio) {
  if (ratio === null || !Number.isFinite(ratio)) return "–";
  return `${(ratio * 100).toFixed(ratio > 0 && ratio < 0.001 ? 3 : 1)} %`;
}
