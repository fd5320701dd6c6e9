// The web console in a real browser: Debian's Chromium, headless, driven by playwright-core,
// against a real memesd (HTTP front on a free loopback port, a fresh data directory, an
// admin key, a premium user). Screenshots of each page go to target/browser-screenshots/.
//
// Nothing leaves the machine: catalogue images (which live on the public web) are answered
// by the test with a drawn stand-in, after the page's Content-Security-Policy has allowed
// or refused them, and Chromium's own background traffic is switched off.

import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync, mkdirSync } from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";
import { Daemon, ROOT } from "./daemon.mjs";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SHOTS = path.join(ROOT, "target/browser-screenshots");
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };
/** Where the browser says it is, for "Get one for where I am". */
const PARIS = { latitude: 48.8566, longitude: 2.3522 };

let daemon;
let browser;

before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `Chromium is missing at ${CHROMIUM}: install Debian's chromium package (scripts/install-test-deps.sh does), or set CHROMIUM`,
    );
  }
  mkdirSync(SHOTS, { recursive: true });
  // Two welcome tokens, so that the third meme is refused.
  daemon = await Daemon.start(["--welcome-tokens", "2"]);
  daemon.memes("entitle", "--user", "p1", "--tier", "premium");
  daemon.memes("topup", "--user", "p1", "--amount", "20", "--reason", "test setup");
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    chromiumSandbox: false,
    args: [
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
      "--disable-default-apps",
      "--disable-domain-reliability",
    ],
  });
});

after(async () => {
  await browser?.close();
  await daemon?.dispose();
});

/** An SVG standing in for a catalogue image, naming where the real one lives. */
function standIn(url) {
  const text = url.replace(/[<>&"]/g, "");
  return `<svg xmlns="http://www.w3.org/2000/svg" width="480" height="360" viewBox="0 0 480 360">
<rect width="480" height="360" fill="#e0e7ff"/><rect x="8" y="8" width="464" height="344" fill="none" stroke="#1e3a8a" stroke-width="4" stroke-dasharray="12 8"/>
<text x="240" y="170" font-family="sans-serif" font-size="22" text-anchor="middle" fill="#1e3a8a">catalogue image (stand-in)</text>
<text x="240" y="205" font-family="sans-serif" font-size="13" text-anchor="middle" fill="#1e3a8a">${text}</text></svg>`;
}

/**
 * A fresh browser context and page on the console: CSP violations, console messages and page
 * errors recorded; requests to anywhere but memesd answered with a stand-in image.
 */
async function open(options = {}) {
  const context = await browser.newContext({
    viewport: DESKTOP,
    geolocation: PARIS,
    permissions: ["geolocation"],
    locale: "en-GB",
    timezoneId: "UTC",
    ...options,
  });
  await context.addInitScript(() => {
    window.__violations = [];
    document.addEventListener("securitypolicyviolation", (event) => {
      window.__violations.push(`${event.violatedDirective} ${event.blockedURI}`);
    });
  });
  await context.route(
    (url) => !url.href.startsWith(daemon.base),
    (route) =>
      route.fulfill({ status: 200, contentType: "image/svg+xml", body: standIn(route.request().url()) }),
  );
  const page = await context.newPage();
  page.problems = [];
  page.on("console", (message) => {
    if (/Content.Security.Policy/i.test(message.text())) page.problems.push(`console: ${message.text()}`);
  });
  page.on("pageerror", (error) => page.problems.push(`page error: ${error.message}`));
  page.response = await page.goto(`${daemon.base}/`);
  await page.waitForFunction(() => document.body.dataset.ready === "true");
  return page;
}

/** Fails if the page saw a CSP violation or a script error; closes its context. */
async function close(page) {
  const violations = await page.evaluate(() => window.__violations);
  const unexpected = [...violations, ...page.problems].filter(
    (problem) => !(page.expected || []).some((pattern) => pattern.test(problem)),
  );
  assert.deepEqual(unexpected, [], "no CSP violations, no script errors");
  await page.context().close();
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Waits until `selector` is visible and its text matches `pattern`; answers the text. */
async function waitText(page, selector, pattern, timeout = 15_000) {
  const locator = page.locator(selector);
  await locator.waitFor({ state: "visible", timeout });
  const deadline = Date.now() + timeout;
  for (;;) {
    const text = await locator.innerText();
    if (pattern.test(text)) return text;
    if (Date.now() > deadline) {
      assert.fail(`${selector} says ${JSON.stringify(text)}, expected ${pattern}`);
    }
    await sleep(50);
  }
}

async function signIn(page, bearer) {
  await page.fill("#bearer", bearer);
  await page.click("#sign-in-form button[type=submit]");
  await page.locator("#who").waitFor({ state: "visible" });
}

/** The number a "N tokens" text says. */
function tokensIn(text) {
  const found = text.match(/(\d+) tokens?/);
  assert.ok(found, `no token count in ${JSON.stringify(text)}`);
  return Number(found[1]);
}

/** The balance memesd's HTTP API gives, with `bearer`. */
async function apiBalance(user, bearer) {
  const response = await fetch(`${daemon.base}/v1/users/${user}/balance`, {
    headers: { Authorization: `Bearer ${bearer}` },
  });
  assert.equal(response.status, 200);
  return (await response.json()).balance;
}

/** Presses Tab until `selector` has the focus (at most `limit` times): it is reachable by
 * keyboard, and its focus is visible. */
async function tabTo(page, selector, limit = 40) {
  for (let i = 0; i < limit; i += 1) {
    await page.keyboard.press("Tab");
    if (await page.locator(selector).evaluate((el) => el === document.activeElement)) {
      const outline = await page.locator(selector).evaluate((el) => {
        const style = getComputedStyle(el);
        return { style: style.outlineStyle, width: parseFloat(style.outlineWidth) };
      });
      assert.ok(outline.style !== "none" && outline.width >= 2, `${selector} shows its focus: ${JSON.stringify(outline)}`);
      return;
    }
  }
  assert.fail(`${selector} was not reached with ${limit} presses of Tab`);
}

/** WCAG contrast ratio of two `rgb(…)` colours. */
function contrast(a, b) {
  const luminance = (rgb) => {
    const [r, g, bl] = rgb.match(/[\d.]+/g).slice(0, 3).map((v) => {
      const c = Number(v) / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * bl;
  };
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
  return (hi + 0.05) / (lo + 0.05);
}

test("the page comes with its policy, and every asset it names loads", async () => {
  const page = await open();
  const headers = page.response.headers();
  const policy = headers["content-security-policy"];
  assert.ok(policy, "a Content-Security-Policy header");
  for (const directive of [
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "connect-src 'self'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
    "form-action 'self'",
  ]) {
    assert.ok(policy.includes(`${directive};`) || policy.endsWith(directive), `${directive} in ${policy}`);
  }
  assert.match(policy, /img-src 'self' [^;]*https:\/\/i\.imgflip\.com/);
  assert.equal(headers["x-content-type-options"], "nosniff");
  assert.equal(headers["referrer-policy"], "no-referrer");
  assert.equal(headers["cache-control"], "no-cache");
  const assets = await page.evaluate(() =>
    [...document.querySelectorAll("[href^='/assets/'], [src^='/assets/']")].map((el) => el.getAttribute("href") || el.getAttribute("src")),
  );
  assert.ok(assets.length >= 3, `assets named: ${assets}`);
  for (const asset of new Set(assets)) {
    assert.match(asset, /^\/assets\/[a-z]+\.[0-9a-f]{16}\.(js|css|svg)$/);
    const response = await page.request.get(`${daemon.base}${asset}`);
    assert.equal(response.status(), 200, asset);
    assert.equal(response.headers()["cache-control"], "public, max-age=31536000, immutable", asset);
  }
  // The stylesheet applied, and the text is readable.
  const colours = await page.evaluate(() => {
    const of = (el) => getComputedStyle(el);
    const button = document.querySelector("#sign-in-form button");
    const hint = document.querySelector("#bearer-hint");
    return {
      body: [of(document.body).color, of(document.documentElement).backgroundColor],
      button: [of(button).color, of(button).backgroundColor],
      hint: [of(hint).color, of(document.querySelector("#sign-in")).backgroundColor],
    };
  });
  for (const [what, [fg, bg]] of Object.entries(colours)) {
    assert.ok(contrast(fg, bg) >= 4.5, `${what}: ${fg} on ${bg} has contrast ${contrast(fg, bg).toFixed(2)}`);
  }
  await shot(page, "sign-in");
  await close(page);
});

test("a user gets memes until the tokens run out, and sees why", async () => {
  const page = await open();
  await signIn(page, "u1");
  await waitText(page, "#who-name", /^u1$/);
  await waitText(page, "#balance", /^No account yet$/);
  await waitText(page, "#account-message", /first meme opens one/);

  // By query: one token.
  await page.fill("#query", "cats");
  await page.click("#get-button");
  const charge = await waitText(page, "#meme-charge", /Charged 1 token\. New balance: 1 token/);
  assert.equal(tokensIn(charge), 1);
  const meme = await page.evaluate(() => {
    const image = document.querySelector("#meme-image");
    return {
      title: document.querySelector("#meme-title").textContent,
      alt: image.alt,
      src: image.src,
      source: document.querySelector("#meme-source").href,
    };
  });
  assert.ok(meme.title.length > 0);
  assert.equal(meme.alt, meme.title, "the image's alt text is the meme's title");
  assert.match(meme.src, /^https:\/\//);
  assert.match(meme.source, /^https:\/\//);
  await page.waitForFunction(() => {
    const image = document.querySelector("#meme-image");
    return image.complete && image.naturalWidth > 0;
  });
  await waitText(page, "#balance", /^1 token$/);
  assert.equal(daemon.memes("balance", "--user", "u1").balance, 1, "memes balance agrees");
  assert.equal(await apiBalance("u1", "u1"), 1, "GET /v1/users/u1/balance agrees");
  assert.equal(await page.locator("#meme-place").isVisible(), false, "no place without a location");
  await shot(page, "user-meme");

  // By the browser's location: the place is shown under the meme.
  await page.fill("#query", "");
  await page.click("#get-here");
  await waitText(page, "#meme-place", /Paris.*France/);
  await waitText(page, "#meme-charge", /New balance: 0 tokens/);
  await waitText(page, "#balance", /^0 tokens$/);
  assert.equal(daemon.memes("balance", "--user", "u1").balance, 0);

  // No tokens left: refused, with the balance.
  await page.fill("#query", "dogs");
  await page.click("#get-button");
  const refused = await waitText(page, "#get-message", /Not enough tokens/);
  assert.match(refused, /0 tokens/);
  assert.match(refused, /Your balance: 0 tokens/);
  assert.equal(await page.getAttribute("#get-message", "role"), "alert");
  assert.equal(daemon.memes("balance", "--user", "u1").balance, 0, "nothing charged");

  // A free user may not generate.
  await page.fill("#caption", "free lunch");
  await page.click("#generate-button");
  await waitText(page, "#generate-message", /Not allowed: .*premium/);
  await shot(page, "user-refused");

  // The history: welcome, two memes.
  const kinds = await page.$$eval("#history-rows tr", (rows) => rows.map((r) => r.dataset.kind));
  assert.deepEqual(kinds, ["charge", "charge", "welcome"]);

  // A reload keeps the tab signed in; signing out forgets the credential.
  await page.reload();
  await waitText(page, "#who-name", /^u1$/);
  await waitText(page, "#balance", /^0 tokens$/);
  await page.click("#sign-out");
  await waitText(page, "#sign-in-message", /Signed out/);
  assert.equal(await page.locator("#user-view").isVisible(), false);
  assert.equal(await page.evaluate(() => document.activeElement.id), "bearer");
  await page.reload();
  await page.locator("#sign-in").waitFor({ state: "visible" });
  assert.equal(await page.locator("#who").isVisible(), false);
  await close(page);
});

test("an admin, by keyboard alone, looks a user up and tops them up", async () => {
  const page = await open();
  // The credential field has the focus from the start.
  assert.equal(await page.evaluate(() => document.activeElement.id), "bearer");
  await page.keyboard.type(daemon.adminKey);
  await page.keyboard.press("Enter");
  await waitText(page, "#who-name", /admin key “ops”/);
  assert.equal(await page.evaluate(() => document.activeElement.id), "lookup-user");
  await page.keyboard.type("u1");
  await page.keyboard.press("Enter");
  await waitText(page, "#balance", /^0 tokens$/);
  await tabTo(page, "#amount");
  await page.keyboard.type("20");
  await tabTo(page, "#reason");
  await page.keyboard.type("keyboard top-up");
  await tabTo(page, "#topup-button");
  await page.keyboard.press("Enter");
  await waitText(page, "#topup-message", /Topped up 20 tokens for u1\. New balance: 20 tokens/);
  await waitText(page, "#balance", /^20 tokens$/);
  assert.equal(daemon.memes("balance", "--user", "u1").balance, 20);
  // The entitlement form, by keyboard too.
  await tabTo(page, "#tier");
  await page.keyboard.press("Home");
  await tabTo(page, "#entitle-button");
  await page.keyboard.press("Space");
  await waitText(page, "#entitle-message", /u1 is premium/);
  assert.equal(daemon.memes("balance", "--user", "u1").tier, "premium");
  await close(page);
});

test("a double click on a top-up charges once", async () => {
  const page = await open();
  await signIn(page, daemon.adminKey);
  await page.fill("#lookup-user", "u1");
  await page.press("#lookup-user", "Enter");
  await waitText(page, "#balance", /^20 tokens$/);
  const keys = [];
  page.on("request", (request) => {
    if (request.method() === "POST" && request.url().endsWith("/v1/users/u1/topups")) {
      keys.push(request.headers()["idempotency-key"]);
    }
  });
  await page.fill("#amount", "5");
  await page.fill("#reason", "double click");
  await page.dblclick("#topup-button");
  await waitText(page, "#topup-message", /New balance: 25 tokens/);
  await sleep(300);
  assert.ok(keys.length >= 1);
  assert.match(keys[0], /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal(new Set(keys).size, 1, `every request of one top-up has one key: ${keys}`);
  assert.equal(daemon.memes("balance", "--user", "u1").balance, 25, "charged once");
  const entries = daemon.memes("history", "--user", "u1").filter((e) => e.reason && e.reason.includes("double click"));
  assert.equal(entries.length, 1, "one ledger entry");
  // A deduction, then a refused one (a zero amount never leaves the page).
  await page.fill("#amount", "-3");
  await page.fill("#reason", "refund");
  await page.click("#topup-button");
  await waitText(page, "#topup-message", /Deducted 3 tokens for u1\. New balance: 22 tokens/);
  await page.fill("#amount", "-1000");
  await page.click("#topup-button");
  await waitText(page, "#topup-message", /Not deducted: .*never takes a balance below zero/);
  assert.equal(daemon.memes("balance", "--user", "u1").balance, 22);
  await close(page);
});

test("an admin tops up a lot that expires, and the lots show in the order they are spent", async () => {
  const page = await open();
  await signIn(page, daemon.adminKey);
  await page.fill("#lookup-user", "lots1");
  await page.press("#lookup-user", "Enter");
  await waitText(page, "#lots-rows", /No tokens to spend/);
  await page.fill("#amount", "20");
  await page.fill("#reason", "trial credit");
  await page.fill("#expires-in", "30d");
  await page.fill("#priority", "10");
  await page.check("#promo");
  await page.click("#topup-button");
  // The welcome grant (2 tokens here) opened the account first.
  await waitText(page, "#topup-message", /Topped up 20 tokens for lots1\. New balance: 22 tokens/);
  const lots = daemon.memes("lots", "--user", "lots1").lots;
  assert.equal(lots.length, 2, JSON.stringify(lots));
  const [trial, welcome] = lots;
  assert.deepEqual([trial.amount, trial.priority, trial.kind], [20, 10, "promo"]);
  const expires = Date.parse(trial.expires_at) - Date.now();
  assert.ok(Math.abs(expires - 30 * 86_400_000) < 60_000, `expires in 30 days: ${trial.expires_at}`);
  // The page lists them as memesd does, in burn order: the lower priority first.
  const rows = () =>
    page.locator("#lots-rows tr").evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent)));
  await waitText(page, "#lots-rows", /#\d+/);
  let shown = await rows();
  assert.equal(shown.length, 2, JSON.stringify(shown));
  assert.deepEqual(shown[0].slice(0, 4), [`#${trial.id}`, "Promotional", "20", "20"]);
  assert.notEqual(shown[0][4], "never");
  assert.equal(shown[0][5], "10");
  assert.deepEqual(shown[1], [`#${welcome.id}`, "Promotional", "2", "2", "never", "50"]);
  // The history says which lot a credit opened and which lots a charge took from.
  await waitText(page, "#history-rows", new RegExp(`opened lot #${trial.id}`));
  await page.fill("#amount", "-21");
  await page.click("#topup-button");
  await waitText(page, "#topup-message", /Deducted 21 tokens for lots1\. New balance: 1 token\./);
  await waitText(page, "#history-rows", new RegExp(`from lot #${trial.id} \\(20\\), lot #${welcome.id} \\(1\\)`));
  shown = await rows();
  assert.deepEqual(shown.map((row) => row[0] + ":" + row[2]), [`#${welcome.id}:1`]);
  // Terms on a deduction are memesd's to refuse, and change nothing.
  await page.fill("#amount", "-1");
  await page.fill("#expires-in", "1d");
  await page.click("#topup-button");
  await waitText(page, "#topup-message", /expiry, priority or promo/);
  assert.equal(daemon.memes("balance", "--user", "lots1").balance, 1);
  await shot(page, "lots");
  await close(page);
});

test("an admin sees a user's open holds and captures one and voids another from the console", async () => {
  daemon.memes("topup", "--user", "held1", "--amount", "30");
  const first = daemon.memes("hold", "--user", "held1", "--amount", "7", "--ttl", "10m");
  const second = daemon.memes("hold", "--user", "held1", "--amount", "5", "--ttl", "10m");
  const page = await open();
  await signIn(page, daemon.adminKey);
  await page.fill("#lookup-user", "held1");
  await page.press("#lookup-user", "Enter");
  // 2 (welcome) + 30 - 7 - 5: what is held is not in the balance, and each hold is listed.
  await waitText(page, "#balance", /^20 tokens$/);
  const rows = () =>
    page.locator("#holds-rows tr").evaluateAll((trs) => trs.map((tr) => [...tr.cells].map((td) => td.textContent)));
  await waitText(page, "#holds-rows", new RegExp(`#${second.hold}`));
  let shown = await rows();
  assert.deepEqual(
    shown.map((row) => row.slice(0, 2)),
    [
      [`#${first.hold}`, "7"],
      [`#${second.hold}`, "5"],
    ],
  );
  await page.click(`button[aria-label="Capture hold ${first.hold}"]`);
  await waitText(page, "#holds-message", new RegExp(`Captured hold #${first.hold}: 7 tokens spent\. New balance: 20 tokens`));
  await page.click(`button[aria-label="Void hold ${second.hold}"]`);
  await waitText(page, "#holds-message", new RegExp(`Voided hold #${second.hold}: 5 tokens went back\. New balance: 25 tokens`));
  await waitText(page, "#holds-rows", /Nothing held/);
  await waitText(page, "#balance", /^25 tokens$/);
  const kinds = daemon.memes("history", "--user", "held1").map((entry) => entry.kind);
  assert.deepEqual(kinds.slice(-4), ["hold", "hold", "capture", "void"]);
  // The user sees their holds but has no buttons to end them: holds are an admin's.
  daemon.memes("hold", "--user", "held1", "--amount", "1", "--ttl", "10m");
  const user = await open();
  await signIn(user, "held1");
  await waitText(user, "#holds-rows", /#\d+/);
  assert.equal(await user.locator("#holds-rows button").count(), 0);
  await shot(page, "holds");
  await close(user);
  await close(page);
});

/** Records the Idempotency-Key of every POST /v1/memes the page sends. */
function memeKeys(page) {
  const keys = [];
  page.on("request", (request) => {
    if (request.method() === "POST" && request.url().endsWith("/v1/memes")) {
      keys.push(request.headers()["idempotency-key"]);
    }
  });
  return keys;
}

/** What the ledger charged `user`: charges, and captures (a generated image's price, held
 * before the render), newest first. */
function charges(user) {
  return daemon
    .memes("history", "--user", user)
    .filter((entry) => entry.kind === "charge" || entry.kind === "capture");
}

/**
 * The double click that paid twice: a press, then a second one the moment the button takes
 * presses again (a fast memesd answers, and the page shows it, within a person's
 * double-click interval). Raw mouse clicks, so nothing waits for the page.
 */
async function doubleClick(page, selector) {
  const box = await page.locator(selector).boundingBox();
  const [x, y] = [box.x + box.width / 2, box.y + box.height / 2];
  await page.mouse.click(x, y);
  const deadline = Date.now() + 15_000;
  while (await page.locator(selector).isDisabled()) {
    assert.ok(Date.now() < deadline, `${selector} stayed disabled`);
    await sleep(5);
  }
  await page.mouse.click(x, y, { clickCount: 2 });
}

test("a double click on Get a meme charges once and shows the meme it paid for", async () => {
  daemon.memes("topup", "--user", "dc1", "--amount", "10", "--reason", "test setup");
  const page = await open();
  await signIn(page, "dc1");
  await waitText(page, "#balance", /^12 tokens$/);
  const keys = memeKeys(page);
  await page.fill("#query", "cats");
  // Fast: the second click while the first request is on its way.
  await page.dblclick("#get-button");
  await waitText(page, "#meme-charge", /Charged 1 token\. New balance: 11 tokens/);
  // Another intent, later: a double click whose first request is answered and shown before
  // the second click.
  await sleep(1000);
  await doubleClick(page, "#get-button");
  await waitText(page, "#meme-charge", /Charged 1 token\. New balance: 10 tokens/);
  await sleep(500);
  await waitText(page, "#balance", /^10 tokens$/);
  assert.equal(keys.length, 2, `one request per double click: ${keys}`);
  assert.equal(new Set(keys).size, 2, "two intents, two keys");
  assert.equal(charges("dc1").length, 2, "two double clicks, two charges");
  assert.equal(daemon.memes("balance", "--user", "dc1").balance, 10);
  // A press once the answer has been up a while is a new intent: another meme, another charge.
  await sleep(1000);
  await page.click("#get-button");
  await waitText(page, "#meme-charge", /New balance: 9 tokens/);
  assert.equal(keys.length, 3);
  assert.equal(new Set(keys).size, 3);
  await close(page);
});

test("a double click on Generate charges once", async () => {
  daemon.memes("entitle", "--user", "p2", "--tier", "premium");
  daemon.memes("topup", "--user", "p2", "--amount", "20", "--reason", "test setup");
  const page = await open();
  await signIn(page, "p2");
  await waitText(page, "#tier-badge", /^premium$/);
  const before = daemon.memes("balance", "--user", "p2").balance;
  const keys = memeKeys(page);
  await page.fill("#caption", "double click");
  await doubleClick(page, "#generate-button");
  await waitText(page, "#generated-charge", new RegExp(`Charged 5 tokens\\. New balance: ${before - 5} tokens`));
  await sleep(800);
  assert.equal(keys.length, 1, `one request: ${keys}`);
  assert.equal(daemon.memes("balance", "--user", "p2").balance, before - 5, "one image, one charge");
  assert.equal(charges("p2").length, 1);
  await close(page);
});

test("a retry after a network error sends the same key and charges once", async () => {
  daemon.memes("topup", "--user", "nr1", "--amount", "10", "--reason", "test setup");
  const page = await open();
  await signIn(page, "nr1");
  await waitText(page, "#balance", /^12 tokens$/);
  const keys = memeKeys(page);
  // The first request reaches memesd (which charges), but its answer is lost on the way back.
  let lost = 0;
  await page.route(`${daemon.base}/v1/memes`, async (route) => {
    if (lost === 0 && route.request().method() === "POST") {
      lost += 1;
      await route.fetch();
      await route.abort("connectionreset");
      return;
    }
    await route.continue();
  });
  await page.fill("#query", "dogs");
  await page.click("#get-button");
  await waitText(page, "#get-message", /unreachable.*Pressing the button again retries the same request/s);
  assert.equal(daemon.memes("balance", "--user", "nr1").balance, 11, "the lost request was charged");
  await page.click("#get-button");
  await waitText(page, "#meme-charge", /Replayed: nothing charged this time\. Balance 11 tokens/);
  assert.equal(keys.length, 2);
  assert.equal(keys[0], keys[1], "the retry is the same intent, with the same key");
  assert.equal(daemon.memes("balance", "--user", "nr1").balance, 11, "charged once");
  assert.equal(charges("nr1").length, 1);
  // The intent is over: the next press is a new one.
  await sleep(1000);
  await page.click("#get-button");
  await waitText(page, "#meme-charge", /Charged 1 token\. New balance: 10 tokens/);
  assert.equal(new Set(keys).size, 2);
  await close(page);
});

test("the history pages back and forth, and the chart follows the balance", async () => {
  for (let i = 1; i <= 12; i += 1) {
    daemon.memes("topup", "--user", "u1", "--amount", "1", "--reason", `batch ${i}`);
  }
  const all = daemon.memes("history", "--user", "u1");
  const page = await open();
  await signIn(page, daemon.adminKey);
  await page.fill("#lookup-user", "u1");
  await page.press("#lookup-user", "Enter");
  await waitText(page, "#balance", new RegExp(`^${all[all.length - 1].balance} tokens$`));
  const seqs = () => page.$$eval("#history-rows tr", (rows) => rows.map((r) => Number(r.cells[0].textContent)));
  const newest = all.map((e) => e.seq).reverse();
  assert.deepEqual(await seqs(), newest.slice(0, 10), "page 1: the newest ten, newest first");
  assert.equal(await page.isDisabled("#newer"), true);
  await page.click("#older");
  await waitText(page, "#page-label", /Page 2/);
  assert.deepEqual(await seqs(), newest.slice(10, 20), "page 2: the ten before");
  if (all.length <= 20) assert.equal(await page.isDisabled("#older"), true, "no page 3");
  await page.click("#newer");
  await waitText(page, "#page-label", /Page 1/);
  assert.deepEqual(await seqs(), newest.slice(0, 10));
  // Five a page.
  await page.selectOption("#page-size", "5");
  await waitText(page, "#page-label", /Page 1/);
  await page.waitForFunction(() => document.querySelectorAll("#history-rows tr").length === 5);
  await page.click("#older");
  await waitText(page, "#page-label", /Page 2/);
  assert.deepEqual(await seqs(), newest.slice(5, 10));
  // The chart: every entry's balance, ending at the current one.
  const chart = await page.evaluate(() => {
    const svg = document.querySelector("#chart svg");
    return { label: svg.getAttribute("aria-label"), line: Boolean(svg.querySelector("path.line")) };
  });
  assert.ok(chart.line);
  assert.match(chart.label, new RegExp(`last ${all.length} ledger entries: from ${all[0].balance} to ${all[all.length - 1].balance} tokens`));
  await page.selectOption("#page-size", "10");
  await page.waitForFunction(() => document.querySelectorAll("#history-rows tr").length === 10);
  // The audit.
  await page.click("#audit-button");
  await waitText(page, "#audit-message", /The ledger is consistent/);
  await waitText(page, "[data-fact=result] dd", /passed/);
  // The service panel, from this memesd's own /metrics.
  const metrics = await page.request.get(`${daemon.base}/metrics`);
  assert.equal(metrics.status(), 200);
  await waitText(page, "[data-fact=rps] dd", /\d/, 20_000);
  await waitText(page, "[data-fact=writable] dd", /yes/);
  await shot(page, "admin");
  await close(page);
});

/**
 * Scrape `n` of /metrics as memesd would give it: between any two scrapes, 200 requests (188
 * ok, 10 refused, 2 failed) whose latencies put p50 at 2.5 ms and p99 at 42 ms, so every
 * pair of scrapes the panel compares reads the same.
 */
function scrape(n) {
  const grow = (start, step) => start + n * step;
  return `# HELP memes_requests_total Requests answered.
# TYPE memes_requests_total counter
memes_requests_total{front="unix",op="get",code="ok"} ${grow(900, 100)}
memes_requests_total{front="http",op="get",code="ok"} ${grow(100, 88)}
memes_requests_total{front="unix",op="get",code="insufficient_tokens"} ${grow(50, 10)}
memes_requests_total{front="http",op="topup",code="internal"} ${grow(5, 2)}
# TYPE memes_request_duration_seconds histogram
memes_request_duration_seconds_bucket{front="unix",op="get",le="0.001"} ${grow(400, 30)}
memes_request_duration_seconds_bucket{front="http",op="get",le="0.001"} ${grow(40, 20)}
memes_request_duration_seconds_bucket{front="unix",op="get",le="0.0025"} ${grow(800, 60)}
memes_request_duration_seconds_bucket{front="http",op="get",le="0.0025"} ${grow(80, 40)}
memes_request_duration_seconds_bucket{front="unix",op="get",le="0.005"} ${grow(950, 110)}
memes_request_duration_seconds_bucket{front="http",op="get",le="0.005"} ${grow(95, 70)}
memes_request_duration_seconds_bucket{front="unix",op="get",le="0.01"} ${grow(1000, 115)}
memes_request_duration_seconds_bucket{front="http",op="get",le="0.01"} ${grow(100, 75)}
memes_request_duration_seconds_bucket{front="unix",op="get",le="0.05"} ${grow(1050, 120)}
memes_request_duration_seconds_bucket{front="http",op="get",le="0.05"} ${grow(105, 80)}
memes_request_duration_seconds_bucket{front="unix",op="get",le="+Inf"} ${grow(1055, 120)}
memes_request_duration_seconds_bucket{front="http",op="get",le="+Inf"} ${grow(105, 80)}
memes_request_duration_seconds_sum{front="unix",op="get"} ${grow(3, 0.5)}
memes_request_duration_seconds_count{front="unix",op="get"} ${grow(1055, 120)}
# TYPE memes_store_writable gauge
memes_store_writable{store="file"} 1
`;
}

test("the service panel reads rates and quantiles off two scrapes", async () => {
  const page = await open();
  let scrapes = 0;
  await page.route(`${daemon.base}/metrics`, (route) => {
    const body = scrape(scrapes);
    scrapes += 1;
    route.fulfill({ status: 200, contentType: "text/plain; version=0.0.4", body });
  });
  await signIn(page, daemon.adminKey);
  await waitText(page, "[data-fact=metrics] dd", /measuring/);
  await waitText(page, "[data-fact=p50] dd", /^2\.50 ms$/, 20_000);
  await waitText(page, "[data-fact=p99] dd", /^42\.0 ms$/);
  await waitText(page, "[data-fact=errors] dd", /^1\.0 %$/);
  await waitText(page, "[data-fact=refused] dd", /^5\.0 %$/);
  await waitText(page, "[data-fact=store-file] dd", /^yes$/);
  const window = Number((await page.innerText("[data-fact=window] dd")).replace(" s", ""));
  const rate = Number(await page.innerText("[data-fact=rps] dd"));
  assert.ok(Math.abs(rate - 200 / window) <= 0.1 + (200 / window) * 0.05, `${rate}/s over ${window} s`);
  await page.locator("#service").scrollIntoViewIfNeeded();
  await shot(page, "service");
  await close(page);
});

test("a premium user generates a meme on a phone", async () => {
  const page = await open({ viewport: PHONE, isMobile: true, hasTouch: true, deviceScaleFactor: 2 });
  await signIn(page, "p1");
  await waitText(page, "#tier-badge", /^premium$/);
  const before = daemon.memes("balance", "--user", "p1").balance;
  await page.fill("#caption", "monday meeting");
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/v1/memes") && r.request().method() === "POST"),
    page.tap("#generate-button"),
  ]);
  assert.equal(response.status(), 200);
  const reply = await response.json();
  const made = reply.generated;
  assert.ok(made && made.width > 0 && made.height > 0, JSON.stringify(reply));
  await page.locator("#generated").waitFor({ state: "visible" });
  await page.waitForFunction(() => {
    const image = document.querySelector("#generated-image");
    return image.complete && image.naturalWidth > 0;
  });
  const image = await page.evaluate(() => {
    const el = document.querySelector("#generated-image");
    return { src: el.currentSrc, width: el.naturalWidth, height: el.naturalHeight, alt: el.alt };
  });
  assert.equal(image.src, `${daemon.base}/v1/images/${made.sha256}.png`);
  assert.deepEqual([image.width, image.height], [made.width, made.height], "the PNG memesd rendered, at its size");
  assert.match(image.alt, /monday meeting/i);
  const png = await page.request.get(image.src);
  assert.equal(png.headers()["content-type"], "image/png");
  const after = daemon.memes("balance", "--user", "p1").balance;
  assert.equal(after, before - reply.charged);
  assert.equal(after, reply.balance);
  await waitText(page, "#generated-charge", new RegExp(`New balance: ${after} tokens`));
  await waitText(page, "#balance", new RegExp(`^${after} tokens$`));
  // Nothing wider than the phone.
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= PHONE.width, `the page is ${width} px wide on a ${PHONE.width} px screen`);
  await shot(page, "premium-phone");
  await close(page);
});

test("every refusal reads as a sentence", async () => {
  const page = await open();
  // A credential memesd refuses.
  await page.fill("#bearer", "x".repeat(200));
  await page.click("#sign-in-form button[type=submit]");
  await waitText(page, "#sign-in-message", /Not signed in, or the credential was refused: .*128 characters/);
  // An admin key memesd does not know: refused by memesd (never taken for a user id).
  await page.fill("#bearer", "memes_admin_0123");
  await page.click("#sign-in-form button[type=submit]");
  await waitText(page, "#sign-in-message", /refused: this admin key is not in memesd's --admin-keys file/);
  await page.fill("#bearer", "has space");
  await page.click("#sign-in-form button[type=submit]");
  await waitText(page, "#sign-in-message", /printable ASCII without spaces/);

  await signIn(page, "u2");
  const problem = (status, code, detail, retryAfter) => (route) =>
    route.fulfill({
      status,
      contentType: "application/problem+json",
      headers: retryAfter ? { "Retry-After": String(retryAfter) } : {},
      body: JSON.stringify({ type: "about:blank", title: "x", status, detail, code, ...(retryAfter ? { retry_after: retryAfter } : {}) }),
    });
  await page.route(`${daemon.base}/v1/memes`, problem(429, "rate_limited", "u2 is over 5 requests/s", 7));
  await page.click("#get-button");
  await waitText(page, "#get-message", /Too many requests: try again in 7 s \(at \d\d:\d\d:\d\d\)\. Nothing was charged/);
  await shot(page, "errors");
  await page.unroute(`${daemon.base}/v1/memes`);
  await page.route(`${daemon.base}/v1/memes`, problem(503, "unavailable", "the ledger cannot be written (disk full)", 2));
  await page.click("#get-button");
  await waitText(page, "#get-message", /memesd cannot take changes now: the ledger cannot be written \(disk full\)\. Nothing was changed; try again in 2 s/);
  await page.unroute(`${daemon.base}/v1/memes`);
  await page.route(`${daemon.base}/v1/memes`, (route) => route.fulfill({ status: 502, contentType: "text/html", body: "<h1>Bad gateway</h1>" }));
  await page.click("#get-button");
  await waitText(page, "#get-message", /memesd answered HTTP 502/);
  await page.unroute(`${daemon.base}/v1/memes`);
  // The policy holds: an image from elsewhere, an inline script.
  page.expected = [/elsewhere\.example/, /inline script/i];
  await page.evaluate(() => {
    const image = new Image();
    image.src = "https://elsewhere.example/x.png";
    document.body.append(image);
    const script = document.createElement("script");
    script.textContent = "window.__ran = true";
    document.body.append(script);
  });
  await page.waitForFunction(() => window.__violations.length >= 2);
  const refused = await page.evaluate(() => window.__violations.splice(0));
  assert.ok(refused.some((v) => v.startsWith("img-src https://elsewhere.example")), refused.join("; "));
  assert.ok(refused.some((v) => v.startsWith("script-src")), refused.join("; "));
  assert.equal(await page.evaluate(() => window.__ran), undefined, "the inline script did not run");

  // memesd stops: the console says it cannot reach it.
  await daemon.stop();
  await page.click("#get-button");
  await waitText(page, "#get-message", /memesd is unreachable/);
  await close(page);
});
