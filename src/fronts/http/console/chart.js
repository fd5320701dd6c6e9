// The balance over time as a small step chart, drawn as inline SVG (no chart library). The
// geometry is a pure function so node can test it; `balanceChart` builds the elements.
// Colours come from the stylesheet's classes: the policy allows no inline styles.

const SVG = "http://www.w3.org/2000/svg";

/** The drawing's size when its box's is not known. */
export const WIDTH = 600;
export const HEIGHT = 160;
const PAD = { left: 48, right: 12, top: 12, bottom: 24 };

/**
 * Where each history entry (oldest first: `{time, balance}`) goes in a drawing `width`
 * wide: `points`, the step line's `path`, and the axis labels. Time runs left to right;
 * when every entry has the same time, entries are spread evenly instead.
 */
export function geometry(entries, width = WIDTH) {
  const times = entries.map((e) => Date.parse(e.time));
  const balances = entries.map((e) => e.balance);
  const first = Math.min(...times);
  const last = Math.max(...times);
  // Scaled to the balances shown, not from 0: a run of 1-token charges on a balance of 150
  // must show as steps, not a flat line at the top. One token of room when they are all equal.
  let low = Math.min(...balances);
  let high = Math.max(...balances);
  if (!(high > low)) {
    low = Math.max(0, (Number.isFinite(low) ? low : 0) - 1);
    high = low + (Number.isFinite(high) && high > low ? high - low : 1);
  }
  const spread = last > first;
  const innerWidth = width - PAD.left - PAD.right;
  const innerHeight = HEIGHT - PAD.top - PAD.bottom;
  const x = (i) =>
    PAD.left +
    innerWidth * (spread ? (times[i] - first) / (last - first) : entries.length > 1 ? i / (entries.length - 1) : 1);
  const y = (balance) => PAD.top + innerHeight * (1 - (balance - low) / (high - low));
  const points = entries.map((e, i) => ({ x: round(x(i)), y: round(y(e.balance)) }));
  let path = "";
  points.forEach((p, i) => {
    if (i === 0) path += `M${p.x} ${p.y}`;
    else path += `H${p.x}V${p.y}`;
  });
  return {
    points,
    path,
    high,
    low,
    from: Number.isFinite(first) ? new Date(first) : null,
    to: Number.isFinite(last) ? new Date(last) : null,
    baseline: round(y(low)),
    top: round(y(high)),
  };
}

function round(n) {
  return Math.round(n * 10) / 10;
}

function element(name, attributes = {}, text = null) {
  const node = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== null) node.textContent = text;
  return node;
}

function shortTime(date) {
  return date.toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
}

/** An `<svg>` of the balance over `entries` (oldest first), labelled for screen readers,
 * `width` pixels wide (the box it goes in: drawn at that size, its labels keep theirs). */
export function balanceChart(entries, width = WIDTH) {
  const g = geometry(entries, width);
  const first = entries[0];
  const last = entries[entries.length - 1];
  const label = `Balance over the last ${entries.length} ledger entries: from ${first.balance} to ${last.balance} tokens, highest ${Math.max(...entries.map((e) => e.balance))}.`;
  const svg = element("svg", {
    viewBox: `0 0 ${width} ${HEIGHT}`,
    class: "balance-chart",
    role: "img",
    "aria-label": label,
  });
  svg.append(element("title", {}, label));
  svg.append(element("line", { x1: PAD.left, x2: width - PAD.right, y1: g.baseline, y2: g.baseline, class: "axis" }));
  svg.append(element("line", { x1: PAD.left, x2: width - PAD.right, y1: g.top, y2: g.top, class: "grid" }));
  svg.append(element("text", { x: PAD.left - 6, y: g.top + 4, class: "tick end" }, String(g.high)));
  svg.append(element("text", { x: PAD.left - 6, y: g.baseline + 4, class: "tick end" }, String(g.low)));
  if (g.from && g.to) {
    svg.append(element("text", { x: PAD.left, y: HEIGHT - 6, class: "tick" }, shortTime(g.from)));
    svg.append(element("text", { x: width - PAD.right, y: HEIGHT - 6, class: "tick end" }, shortTime(g.to)));
  }
  if (g.points.length > 0) {
    const end = g.points[g.points.length - 1];
    const area = `${g.path}V${g.baseline}H${g.points[0].x}Z`;
    svg.append(element("path", { d: area, class: "area" }));
    svg.append(element("path", { d: g.path, class: "line" }));
    svg.append(element("circle", { cx: end.x, cy: end.y, r: 3.5, class: "dot" }));
  }
  return svg;
}
