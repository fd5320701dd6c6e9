// The console's page: signing in, getting and generating memes, a user's balance and
// history, and the admin's tools and service panel. It is a client of memesd's API like any
// other; every rule (prices, balances, who may do what) is memesd's, and every refusal is
// shown as memesd words it, through api.js's `describe`.

import { ApiError, bearerIsUsable, call, describe } from "./api.js";
import { balanceChart } from "./chart.js";
import { Intents } from "./intent.js";
import { duration, parse, percent, reading, summarize } from "./metrics.js";

/** Where the bearer is kept: this tab's session storage, gone when the tab closes. */
const STORAGE_KEY = "memes.console.bearer";
/** Ledger entries the chart shows at most. */
const CHART_ENTRIES = 200;
/** Seconds between two scrapes of /metrics. */
const SCRAPE_SECONDS = 4;

const $ = (id) => document.getElementById(id);

const state = {
  bearer: null,
  /** What /v1/whoami said. */
  who: null,
  /** Whose balance and history are shown. */
  subject: null,
  premium: false,
  /** History cursors: `pages[i]` is the `before` of page i (null: the newest page). */
  pages: [null],
  next: null,
  /** The entries the chart shows. */
  chartEntries: null,
  /** The service panel's timer and last metrics reading. */
  timer: null,
  lastReading: null,
};

// ---- small helpers ---------------------------------------------------------------------

function say(element, text, kind = "") {
  element.textContent = text;
  element.className = kind ? `message ${kind}` : "message";
  element.setAttribute("role", kind === "error" ? "alert" : "status");
}

function clear(element) {
  say(element, "");
}

/** Runs `work` with `button` disabled (so a second click does nothing until it is done). */
async function withButton(button, work) {
  if (button.disabled) return;
  button.disabled = true;
  button.setAttribute("aria-busy", "true");
  try {
    await work();
  } finally {
    button.disabled = false;
    button.removeAttribute("aria-busy");
  }
}

function api(method, path, options = {}) {
  return call(method, path, { ...options, bearer: state.bearer });
}

function userPath(user, rest) {
  return `/v1/users/${encodeURIComponent(user)}/${rest}`;
}

function tokens(n) {
  return `${n} token${n === 1 ? "" : "s"}`;
}

/** A new idempotency key (a UUID; crypto.randomUUID needs a secure context, and a console
 * behind plain http on another host is not one). */
function newKey() {
  if (typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** The intents of the two paying forms (intent.js): getting a meme, generating one. */
const memeIntents = new Intents(newKey);
const generateIntents = new Intents(newKey);

function localTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const thisYear = date.getFullYear() === new Date().getFullYear();
  return date.toLocaleString([], {
    year: thisYear ? undefined : "numeric",
    month: "short",
    day: "numeric",
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
  });
}

/** One line for a place memesd reports (as `memes get` prints it). */
function describePlace(location) {
  const parts = [];
  for (const part of [location.city, location.region, location.country]) {
    if (part && parts[parts.length - 1] !== part) parts.push(part);
  }
  const place = parts.join(", ");
  const distance = `${Number(location.distance_km).toFixed(1)} km`;
  const named = [location.city, location.region, location.country].map((p) => (p || "").toLowerCase());
  const landmass =
    location.landmass && !named.includes(location.landmass.toLowerCase()) ? location.landmass : null;
  if (location.at_sea) {
    return landmass ? `at sea, ${distance} from ${place} (${landmass})` : `at sea, ${distance} from ${place}`;
  }
  if (!location.city) return place;
  return landmass ? `${place} (${landmass}, ${distance})` : `${place} (${distance})`;
}

function facts(list, rows) {
  list.replaceChildren();
  for (const [name, term, value, kind] of rows) {
    const wrap = document.createElement("div");
    wrap.dataset.fact = name;
    const dt = document.createElement("dt");
    dt.textContent = term;
    const dd = document.createElement("dd");
    dd.textContent = value;
    if (kind) dd.className = kind;
    wrap.append(dt, dd);
    list.append(wrap);
  }
}

// ---- signing in and out ----------------------------------------------------------------

async function signIn(bearer) {
  const message = $("sign-in-message");
  if (!bearer) {
    say(message, "Enter a bearer credential.", "error");
    return false;
  }
  if (!bearerIsUsable(bearer)) {
    say(
      message,
      "A bearer credential is printable ASCII without spaces (a token, an admin key, or a plain user id in development mode).",
      "error",
    );
    return false;
  }
  say(message, "Signing in…");
  let who;
  try {
    who = await call("GET", "/v1/whoami", { bearer });
  } catch (error) {
    say(message, describe(error), "error");
    return false;
  }
  if (who.kind !== "user" && who.kind !== "admin") {
    say(message, "memesd did not recognise this credential.", "error");
    return false;
  }
  clear(message);
  state.bearer = bearer;
  state.who = who;
  try {
    sessionStorage.setItem(STORAGE_KEY, bearer);
  } catch {
    // Storage may be off (private modes): the console still works until the tab reloads.
  }
  $("bearer").value = "";
  $("sign-in").hidden = true;
  $("who").hidden = false;
  if (who.kind === "admin") {
    $("who-name").textContent = `admin key “${who.name}”`;
    showAdmin();
  } else {
    $("who-name").textContent = who.user;
    showUser();
  }
  return true;
}

function signOut() {
  stopService();
  try {
    sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // Nothing kept, nothing to remove.
  }
  Object.assign(state, { bearer: null, who: null, subject: null, premium: false, pages: [null], next: null });
  for (const id of ["user-view", "admin-view", "account", "who", "meme", "generated", "changes", "audit"]) {
    $(id).hidden = true;
  }
  for (const form of document.querySelectorAll("form")) form.reset();
  for (const message of document.querySelectorAll(".message")) clear(message);
  $("sign-in").hidden = false;
  say($("sign-in-message"), "Signed out.");
  $("bearer").focus();
}

// ---- the user's view ------------------------------------------------------------------

function showUser() {
  $("admin-view").hidden = true;
  $("user-view").hidden = false;
  $("user-account-slot").append($("account"));
  state.subject = state.who.user;
  state.premium = Boolean(state.who.premium);
  resetPages();
  showTier(null);
  $("query").focus();
  loadAccount();
}

function showTier(tier) {
  state.premium = Boolean(state.who && state.who.premium) || tier === "premium";
  const badge = $("tier-badge");
  badge.textContent = state.premium ? "premium" : "premium only";
  badge.className = state.premium ? "badge premium" : "badge";
  $("generate-note").textContent = state.premium
    ? "You are a premium user: memesd renders a new meme with your caption on top (it costs more than a catalogue meme)."
    : "Generating memes is for premium users. On the free tier memesd refuses, and charges nothing.";
}

function showMeme(data) {
  const meme = data.meme;
  const image = $("meme-image");
  $("meme").hidden = false;
  image.classList.remove("broken");
  image.alt = meme.title;
  image.src = meme.image;
  $("meme-title").textContent = meme.title;
  const source = $("meme-source");
  source.href = meme.source;
  let host = meme.source;
  try {
    host = new URL(meme.source).host;
  } catch {
    // Shown as it is.
  }
  source.textContent = `About this meme on ${host}`;
  const place = $("meme-place");
  if (data.location) {
    place.hidden = false;
    place.textContent = `Where you are, as memesd places it: ${describePlace(data.location)}`;
  } else {
    place.hidden = true;
    place.textContent = "";
  }
  $("meme-charge").textContent = data.replayed
    ? `Replayed: nothing charged this time. Balance ${tokens(data.balance)}.`
    : `Charged ${tokens(data.charged)}. New balance: ${tokens(data.balance)}.`;
}

async function getMeme(coordinates) {
  const message = $("get-message");
  const body = {};
  const query = $("query").value.trim();
  if (query) body.query = query;
  if (coordinates) Object.assign(body, coordinates);
  await paying(memeIntents, { user: state.subject, ...body }, message, async (key) => {
    say(message, coordinates ? "Getting a meme for where you are…" : "Getting a meme…");
    const data = await api("POST", "/v1/memes", { body, headers: { "Idempotency-Key": key } });
    clear(message);
    showMeme(data);
    $("balance").textContent = tokens(data.balance);
  });
}

/**
 * Sends one press of a paying button as its intent (intent.js): nothing when the press is
 * the intent already sent, else `send(key)` with the intent's key. A failure is shown; one
 * without an answer says that pressing again is safe. The intent is settled only once the
 * account shows the outcome, so a double click's second press still finds it.
 */
async function paying(intents, params, message, send) {
  const key = intents.press(params);
  if (key === null) return;
  let failure;
  try {
    await send(key);
  } catch (error) {
    failure = error;
    await sayWithBalance(message, error);
  }
  try {
    resetPages();
    await loadAccount();
  } finally {
    intents.settle(key, failure);
    if (failure && intents.retrying) {
      message.textContent += " Pressing the button again retries the same request: it is charged once at most.";
    }
  }
}

/** An error, and for `insufficient_tokens` the balance as memesd has it now. */
async function sayWithBalance(message, error) {
  let text = describe(error);
  if (error instanceof ApiError && error.code === "insufficient_tokens") {
    try {
      const account = await api("GET", userPath(state.subject, "balance"));
      text += ` Your balance: ${tokens(account.balance)}.`;
    } catch {
      // The refusal's own words say the balance.
    }
  }
  say(message, text, "error");
}

function locate() {
  return new Promise((resolve, reject) => {
    if (!("geolocation" in navigator)) {
      reject(new Error("this browser cannot tell where it is"));
      return;
    }
    navigator.geolocation.getCurrentPosition(
      (position) =>
        resolve({
          lat: Math.round(position.coords.latitude * 1e5) / 1e5,
          long: Math.round(position.coords.longitude * 1e5) / 1e5,
        }),
      (error) => {
        const why = {
          1: "the browser was not allowed to tell where you are (location permission denied)",
          2: "the browser could not find out where you are",
          3: "finding out where you are took too long",
        };
        reject(new Error(why[error.code] || error.message));
      },
      { enableHighAccuracy: false, timeout: 15000, maximumAge: 60000 },
    );
  });
}

async function getMemeHere() {
  const message = $("get-message");
  say(message, "Asking the browser where you are…");
  let coordinates;
  try {
    coordinates = await locate();
  } catch (error) {
    say(message, `No location: ${error.message}. You can still get a meme by query.`, "error");
    return;
  }
  await getMeme(coordinates);
}

async function generate() {
  const message = $("generate-message");
  const caption = $("caption").value.trim();
  if (!caption) {
    say(message, "Write a caption first.", "error");
    return;
  }
  const body = { generate: true, query: caption };
  await paying(generateIntents, { user: state.subject, ...body }, message, async (key) => {
    say(message, "memesd is rendering your meme…");
    const data = await api("POST", "/v1/memes", { body, headers: { "Idempotency-Key": key } });
    const made = data.generated;
    const url = `/v1/images/${made.sha256}.png`;
    const image = $("generated-image");
    image.width = made.width;
    image.height = made.height;
    image.alt = `${made.top} / ${made.bottom}`;
    image.src = url;
    image.dataset.width = made.width;
    image.dataset.height = made.height;
    $("generated-title").textContent = `“${made.top}” / “${made.bottom}”`;
    $("generated-link").href = url;
    $("generated-link").textContent = `The PNG (${made.width}×${made.height}, ${Math.round(made.bytes / 1024)} KiB)`;
    $("generated-charge").textContent = data.replayed
      ? `Replayed: nothing charged this time. Balance ${tokens(data.balance)}.`
      : `Charged ${tokens(data.charged)}. New balance: ${tokens(data.balance)}.`;
    $("generated").hidden = false;
    clear(message);
  });
}

// ---- balance and history ----------------------------------------------------------------

function resetPages() {
  state.pages = [null];
  state.next = null;
}

const KINDS = {
  welcome: "Welcome grant",
  charge: "Meme",
  topup: "Top-up",
  deduct: "Deduction",
  entitle: "Entitlement",
  expire: "Expiry",
};

const LOT_KINDS = { paid: "Paid", promo: "Promotional" };

function details(entry) {
  const parts = [];
  if (entry.memes && entry.memes.length) {
    parts.push(entry.memes.map((id) => (id.startsWith("generated:") ? "a generated image" : id)).join(", "));
  }
  if (entry.tier) parts.push(entry.until ? `${entry.tier} until ${localTime(entry.until)}` : entry.tier);
  if (entry.reason) parts.push(entry.reason);
  if (entry.lot !== undefined) parts.push(`opened lot #${entry.lot}`);
  if (entry.from && entry.from.length) {
    parts.push(`from ${entry.from.map((take) => `lot #${take.lot} (${take.tokens})`).join(", ")}`);
  }
  // Idempotency keys matter to whoever reconciles payments, not to the user.
  if (entry.key && state.who && state.who.kind === "admin") parts.push(`key ${entry.key}`);
  return parts.join(" · ");
}

/** Fills a table body with one row per item (`cells` gives each row's [text, class] pairs),
 * or one row saying `empty` across `columns` columns. */
function fillRows(rows, items, cells, columns, empty) {
  rows.replaceChildren();
  for (const item of items) {
    const tr = document.createElement("tr");
    for (const [text, kind] of cells(item)) {
      const td = document.createElement("td");
      td.textContent = text;
      if (kind) td.className = kind;
      tr.append(td);
    }
    rows.append(tr);
  }
  if (items.length === 0) {
    const tr = document.createElement("tr");
    const td = document.createElement("td");
    td.colSpan = columns;
    td.className = "empty";
    td.textContent = empty;
    tr.append(td);
    rows.append(tr);
  }
  return rows;
}

/** The spendable lots as memesd lists them: already in burn order. */
function renderLots(lots) {
  fillRows(
    $("lots-rows"),
    lots,
    (lot) => [
      [`#${lot.id}`, ""],
      [LOT_KINDS[lot.kind] || lot.kind, ""],
      [String(lot.remaining), "num"],
      [String(lot.amount), "num"],
      [lot.expires_at ? localTime(lot.expires_at) : "never", ""],
      [String(lot.priority), "num"],
    ],
    6,
    "No tokens to spend.",
  );
}

/** The holds open now. An admin may end one here: capture all it holds, or void it. */
function renderHolds(holds) {
  const rows = fillRows(
    $("holds-rows"),
    holds,
    (hold) => [
      [`#${hold.hold}`, ""],
      [String(hold.amount), "num"],
      [localTime(hold.created_at), ""],
      [localTime(hold.expires_at), ""],
      ["", "ends"],
    ],
    5,
    "Nothing held.",
  );
  if (!(state.who && state.who.kind === "admin")) return;
  holds.forEach((hold, i) => {
    const cell = rows.children[i].lastElementChild;
    for (const [label, end] of [["Capture", "capture"], ["Void", "void"]]) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "secondary";
      button.textContent = label;
      button.setAttribute("aria-label", `${label} hold ${hold.hold}`);
      button.addEventListener("click", () => withButton(button, () => endHold(hold, end)));
      cell.append(button);
    }
  });
}

/** Captures all a hold holds, or voids it, and says what happened to its tokens. */
async function endHold(hold, end) {
  const message = $("holds-message");
  say(message, end === "capture" ? "Capturing…" : "Voiding…");
  try {
    const data = await api("POST", `/v1/holds/${hold.hold}/${end}`, {
      body: { user: state.subject },
      headers: { "Idempotency-Key": newKey() },
    });
    const back = data.returned ? ` ${tokens(data.returned)} went back.` : "";
    say(
      message,
      end === "capture"
        ? `Captured hold #${data.hold}: ${tokens(data.captured)} spent.${back} New balance: ${tokens(data.new_balance)}.`
        : `Voided hold #${data.hold}:${back || " nothing went back."} New balance: ${tokens(data.new_balance)}.`,
      "ok",
    );
  } catch (error) {
    say(message, describe(error), "error");
  }
  resetPages();
  await loadAccount();
}

function renderHistory(entries) {
  const ordered = [...entries].reverse();
  const rows = fillRows(
    $("history-rows"),
    ordered,
    (entry) => [
      [String(entry.seq), ""],
      [localTime(entry.time), ""],
      [KINDS[entry.kind] || entry.kind, ""],
      [entry.delta > 0 ? `+${entry.delta}` : entry.delta < 0 ? `−${-entry.delta}` : "0", "num"],
      [String(entry.balance), "num"],
      [details(entry), "details"],
    ],
    6,
    "No entries.",
  );
  ordered.forEach((entry, i) => {
    rows.children[i].dataset.kind = entry.kind;
  });
}

function renderChart(entries) {
  state.chartEntries = entries;
  const holder = $("chart");
  holder.replaceChildren();
  if (entries.length < 2) {
    $("chart-caption").textContent = "The chart needs two ledger entries or more.";
    return;
  }
  holder.append(balanceChart(entries, holder.clientWidth || undefined));
  $("chart-caption").textContent = `Balance after each of the last ${entries.length} ledger entries.`;
}

async function loadAccount() {
  const user = state.subject;
  if (!user) return;
  const section = $("account");
  section.hidden = false;
  const message = $("account-message");
  $("account-title").textContent =
    state.who && state.who.kind === "admin" ? `${user}: balance and history` : "Your balance and history";
  const pageSize = Number($("page-size").value);
  const before = state.pages[state.pages.length - 1];
  const query = new URLSearchParams({ limit: String(pageSize) });
  if (before) query.set("before", before);
  try {
    const [account, lots, page, recent] = await Promise.all([
      api("GET", userPath(user, "balance")),
      api("GET", userPath(user, "lots")),
      api("GET", userPath(user, `history?${query}`)),
      api("GET", userPath(user, `history?limit=${CHART_ENTRIES}`)),
    ]);
    if (user !== state.subject) return;
    clear(message);
    $("balance").textContent = tokens(account.balance);
    $("balance-tier").textContent = account.tier_until
      ? `${account.tier} until ${localTime(account.tier_until)}`
      : account.tier;
    $("balance-tier").className = account.tier === "premium" ? "badge premium" : "badge";
    if (state.who.kind === "user") showTier(account.tier);
    renderLots(lots.lots);
    renderHolds(lots.holds || []);
    state.next = page.next || null;
    renderHistory(page.entries);
    renderChart(recent.entries);
  } catch (error) {
    if (user !== state.subject) return;
    state.next = null;
    renderLots([]);
    renderHolds([]);
    renderHistory([]);
    renderChart([]);
    $("balance-tier").textContent = "";
    if (error instanceof ApiError && error.code === "not_found") {
      $("balance").textContent = "No account yet";
      say(
        message,
        state.who.kind === "admin"
          ? `memesd has no account for ${user}: a top-up opens one.`
          : "Your first meme opens one, with the welcome tokens.",
      );
    } else {
      $("balance").textContent = "–";
      say(message, describe(error), "error");
    }
  }
  const page = state.pages.length;
  $("page-label").textContent = `Page ${page}`;
  $("history-caption").textContent = `Ledger entries, newest first (page ${page})`;
  $("newer").disabled = page === 1;
  $("older").disabled = !state.next;
}

/** Pages are turned with both buttons off until the page is in; loadAccount then says
 * which way there is more. */
async function older() {
  if (!state.next || $("older").disabled) return;
  $("older").disabled = $("newer").disabled = true;
  state.pages.push(state.next);
  await loadAccount();
}

async function newer() {
  if (state.pages.length <= 1 || $("newer").disabled) return;
  $("older").disabled = $("newer").disabled = true;
  state.pages.pop();
  await loadAccount();
}

// ---- the admin's view ------------------------------------------------------------------

function showAdmin() {
  $("user-view").hidden = true;
  $("admin-view").hidden = false;
  $("admin-account-slot").append($("account"));
  $("account").hidden = true;
  $("changes").hidden = true;
  state.subject = null;
  $("lookup-user").focus();
  startService();
}

async function lookUp() {
  const user = $("lookup-user").value.trim();
  const message = $("lookup-message");
  if (!user) {
    say(message, "Enter a user id.", "error");
    return;
  }
  clear(message);
  state.subject = user;
  delete $("topup-form").dataset.key;
  resetPages();
  $("topup-title").textContent = `Top up or deduct: ${user}`;
  $("entitle-title").textContent = `Entitlement: ${user}`;
  $("changes").hidden = false;
  clear($("topup-message"));
  clear($("entitle-message"));
  await loadAccount();
}

async function topUp() {
  const form = $("topup-form");
  const message = $("topup-message");
  const amount = Number($("amount").value);
  if (!Number.isInteger(amount) || amount === 0) {
    say(message, "Tokens: a whole number other than 0 (negative deducts).", "error");
    return;
  }
  const reason = $("reason").value.trim();
  // One key per intended change: a second click while this one is on its way, or a retry
  // after no answer, sends the same key, and memesd applies it once.
  if (!form.dataset.key) form.dataset.key = newKey();
  const key = form.dataset.key;
  const body = { amount };
  if (reason) body.reason = reason;
  // The lot's terms as typed: whether they fit (a deduction has none, an expiry must be a
  // duration) is memesd's to say.
  const expiresIn = $("expires-in").value.trim();
  if (expiresIn) body.expires_in = expiresIn;
  const priority = $("priority").value.trim();
  if (priority) body.priority = Number(priority);
  if ($("promo").checked) body.promo = true;
  say(message, amount > 0 ? "Topping up…" : "Deducting…");
  try {
    const data = await api("POST", userPath(state.subject, "topups"), {
      body,
      headers: { "Idempotency-Key": key },
    });
    delete form.dataset.key;
    form.reset();
    const what = data.amount > 0 ? `Topped up ${tokens(data.amount)}` : `Deducted ${tokens(-data.amount)}`;
    // A top-up that opened the account also recorded the welcome grant: say why the
    // balance is more than the amount.
    const welcome = data.welcome_grant
      ? ` This opened the account: the balance includes its welcome grant of ${tokens(data.welcome_grant)}.`
      : "";
    say(
      message,
      data.replayed
        ? `Already applied (replayed): nothing changed. Balance ${tokens(data.new_balance)}.${welcome}`
        : `${what} for ${data.user_id}. New balance: ${tokens(data.new_balance)}.${welcome}`,
      "ok",
    );
  } catch (error) {
    // Without an answer (or when told to come back) the same change may be retried with the
    // same key; a refusal ends this change.
    const retryable = ["unreachable", "busy", "unavailable", "rate_limited", "internal"];
    if (!(error instanceof ApiError && retryable.includes(error.code))) delete form.dataset.key;
    say(message, describe(error, new Date(), { deduction: amount < 0 }), "error");
  }
  resetPages();
  await loadAccount();
}

async function entitle() {
  const message = $("entitle-message");
  const tier = $("tier").value;
  const untilText = $("until").value;
  const body = { tier };
  if (untilText) {
    const until = new Date(untilText);
    if (Number.isNaN(until.getTime())) {
      say(message, "Until: a date and time.", "error");
      return;
    }
    body.until = until.toISOString();
  }
  say(message, "Setting the tier…");
  try {
    const data = await api("PUT", userPath(state.subject, "entitlement"), { body });
    say(
      message,
      data.until
        ? `${data.user_id} is ${data.tier} until ${localTime(data.until)}.`
        : `${data.user_id} is ${data.tier}.`,
      "ok",
    );
  } catch (error) {
    say(message, describe(error), "error");
  }
  resetPages();
  await loadAccount();
}

async function audit() {
  const message = $("audit-message");
  const list = $("audit");
  say(message, "Auditing the ledger…");
  const started = performance.now();
  try {
    const report = await api("POST", "/v1/audit");
    const took = (performance.now() - started) / 1000;
    facts(list, [
      ["result", "Result", report.ok ? "passed" : `FAILED: ${report.discrepancy || "a discrepancy"}`, report.ok ? "good" : "bad"],
      ["transactions", "Transactions replayed", String(report.transactions)],
      ["entries", "Entries", String(report.entries)],
      ["accounts", "Accounts checked", String(report.accounts)],
      ["keys", "Idempotency keys", String(report.keys)],
      ["welcomes", "Welcome grants", String(report.welcomes)],
      ["took", "Took", duration(took)],
    ]);
    list.hidden = false;
    say(message, report.ok ? "The ledger is consistent." : "The audit found a discrepancy.", report.ok ? "ok" : "error");
  } catch (error) {
    list.hidden = true;
    say(message, describe(error), "error");
  }
}

// ---- the service panel -----------------------------------------------------------------

function startService() {
  stopService();
  state.lastReading = null;
  pollService();
  state.timer = setInterval(() => {
    if (!document.hidden) pollService();
  }, SCRAPE_SECONDS * 1000);
}

function stopService() {
  if (state.timer) clearInterval(state.timer);
  state.timer = null;
  state.lastReading = null;
}

function uptime(seconds) {
  const s = Math.floor(seconds);
  if (s < 120) return `${s} s`;
  if (s < 7200) return `${Math.floor(s / 60)} min`;
  if (s < 172800) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} days`;
}

async function pollService() {
  const message = $("service-message");
  const rows = [];
  let trouble = null;
  try {
    const status = await api("GET", "/v1/status");
    // While the database is out of reach the counts are the last ones read: say so.
    const lost = status.unreachable;
    const count = (n) => {
      if (!lost) return String(n);
      return lost.counted_at ? `${n} (last known, counted ${lost.counted_at})` : "not known";
    };
    const writable = lost
      ? `NO: the database at ${lost.store} is unreachable since ${lost.since}: ${lost.reason}`
      : status.writable ? "yes" : "NO: changes are refused";
    rows.push(
      ["version", "memesd", `${status.version} (protocol ${status.protocol})`],
      ["uptime", "Up for", uptime(status.uptime_secs)],
      ["accounts", "Accounts", count(status.accounts)],
      ["memes", "Memes in the catalogue", String(status.memes)],
      ["entries", "Ledger entries", count(status.entries)],
      ["writable", "Ledger writable", writable, status.writable ? "good" : "bad"],
    );
  } catch (error) {
    trouble = describe(error);
  }
  let metrics = null;
  try {
    const text = await api("GET", "/metrics", { accept: "text" });
    metrics = reading(parse(text), Date.now());
  } catch (error) {
    if (error instanceof ApiError && error.status === 404) {
      metrics = "absent";
    } else {
      metrics = `metrics not available: ${describe(error)}`;
    }
  }
  // Signed out (or another view) while the answers were on their way.
  if (!state.timer || !state.who || state.who.kind !== "admin") return;
  if (metrics === "absent") {
    rows.push(["metrics", "Metrics", "metrics not available (this memesd serves no /metrics)"]);
  } else if (typeof metrics === "string") {
    rows.push(["metrics", "Metrics", metrics]);
  } else if (state.lastReading === null) {
    rows.push(["metrics", "Metrics", `measuring over ${SCRAPE_SECONDS} s…`]);
    state.lastReading = metrics;
  } else {
    const s = summarize(state.lastReading, metrics);
    state.lastReading = metrics;
    rows.push(
      ["rps", "Requests/s", s.requestsPerSecond === null ? "–" : s.requestsPerSecond.toFixed(1)],
      ["p50", "Latency p50", duration(s.p50)],
      ["p99", "Latency p99", duration(s.p99)],
      ["errors", "Server errors", percent(s.serverErrorRatio), s.serverErrorRatio > 0 ? "bad" : ""],
      ["refused", "Refused requests", percent(s.refusedRatio)],
    );
    for (const [store, writable] of Object.entries(s.stores)) {
      rows.push([`store-${store}`, `Store ${store} writable`, writable ? "yes" : "NO", writable ? "good" : "bad"]);
    }
    rows.push(["window", "Measured over", `${s.seconds.toFixed(1)} s`]);
  }
  facts($("service"), rows);
  if (trouble) say(message, trouble, "error");
  else clear(message);
}

// ---- wiring ----------------------------------------------------------------------------

function on(id, event, handler) {
  $(id).addEventListener(event, handler);
}

function submit(formId, buttonSelector, work) {
  on(formId, "submit", (event) => {
    event.preventDefault();
    const button = $(formId).querySelector(buttonSelector);
    withButton(button, work);
  });
}

function start() {
  // The page's forms are sent by this script only: until it runs, signing in is off (a form
  // sent by the browser itself would put the credential in a request body to "/").
  $("sign-in-button").disabled = false;
  submit("sign-in-form", "button[type=submit]", () => signIn($("bearer").value.trim()));
  on("sign-out", "click", signOut);
  submit("get-form", "#get-button", () => getMeme(null));
  on("get-here", "click", () => withButton($("get-here"), getMemeHere));
  submit("generate-form", "#generate-button", generate);
  submit("lookup-form", "button[type=submit]", lookUp);
  submit("topup-form", "#topup-button", topUp);
  // Other parameters are another change: it gets a key of its own.
  on("topup-form", "input", () => delete $("topup-form").dataset.key);
  submit("entitle-form", "#entitle-button", entitle);
  on("audit-button", "click", () => withButton($("audit-button"), audit));
  on("older", "click", older);
  on("newer", "click", newer);
  on("page-size", "change", () => {
    resetPages();
    loadAccount();
  });
  on("meme-image", "error", () => {
    const image = $("meme-image");
    image.classList.add("broken");
    let origin = image.src;
    try {
      origin = new URL(image.src).host;
    } catch {
      // Shown as it is.
    }
    $("meme-charge").textContent += ` (The image did not load from ${origin}.)`;
  });
  // The chart is drawn at its box's size: again when that changes.
  let redraw = null;
  window.addEventListener("resize", () => {
    clearTimeout(redraw);
    redraw = setTimeout(() => {
      if (state.chartEntries && !$("account").hidden) renderChart(state.chartEntries);
    }, 150);
  });
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && state.timer) pollService();
  });
  let kept = null;
  try {
    kept = sessionStorage.getItem(STORAGE_KEY);
  } catch {
    kept = null;
  }
  if (kept) {
    signIn(kept).then((ok) => {
      if (!ok) sessionStorage.removeItem(STORAGE_KEY);
    });
  } else {
    $("bearer").focus();
  }
  document.body.dataset.ready = "true";
}

start();
