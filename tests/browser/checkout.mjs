// The cashier UI in a real headless Chromium against a running lanehub (LANEHUB_URL): sign in to
// lane 1, then a member checkout that is paid and a checkout whose payment the customer declines,
// each clicked through as a cashier would. Screenshots of a failure go to ARTIFACTS_DIR.
//
// Environment: LANEHUB_URL (required), CHROMIUM (default /usr/bin/chromium), ARTIFACTS_DIR
// (default ./artifacts), STEP_TIMEOUT_MS (default 30000).

import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";

const BASE = process.env.LANEHUB_URL;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ARTIFACTS = process.env.ARTIFACTS_DIR || join(process.cwd(), "artifacts");
const TIMEOUT = Number(process.env.STEP_TIMEOUT_MS || 30000);
const LANE_TOKEN = "demo-lane-1-token";
const MEMBER_QR = "https://qr.vipps.no/28/2/01/031/4791234567?v=1";
const DECLINER_QR = "https://qr.vipps.no/28/2/01/031/4790000001?v=1";

if (!BASE) {
  console.error("LANEHUB_URL is not set (e.g. http://127.0.0.1:8080)");
  process.exit(2);
}

const problems = [];
let passed = 0;
let failed = 0;

/** Waits until the cashier message carries `code`; fails with what the message says instead. */
async function expectMessage(page, code) {
  const message = page.locator("#message");
  try {
    await page.waitForSelector(`#message[data-code="${code}"]`, { timeout: TIMEOUT });
  } catch (e) {
    const shown = await message.getAttribute("data-code").catch(() => "?");
    const text = await message.textContent().catch(() => "?");
    throw new Error(`expected message ${code}, the screen shows ${shown}: "${text}"`);
  }
  return (await message.textContent()).trim();
}

async function expectEnabled(page, selector, enabled) {
  const handle = page.locator(selector);
  if (enabled) await handle.waitFor({ state: "visible", timeout: TIMEOUT });
  await page.waitForFunction(
    ([sel, want]) => document.querySelector(sel)?.disabled === !want,
    [selector, enabled],
    { timeout: TIMEOUT },
  );
}

async function scan(page, text) {
  await page.fill("#scan-input", text);
  await page.press("#scan-input", "Enter");
}

async function pay(page, amount) {
  await expectEnabled(page, "#pay-button", true);
  await page.fill("#amount-input", amount);
  await page.click("#pay-button");
}

async function signIn(page) {
  await page.goto(BASE, { waitUntil: "load" });
  await page.fill("#token-input", LANE_TOKEN);
  await page.click("#load-lanes");
  await expectEnabled(page, "#sign-in-button", true);
  const lanes = await page.$$eval("#lane-picker option", (os) => os.map((o) => o.value));
  if (JSON.stringify(lanes) !== JSON.stringify(["1"])) {
    throw new Error(`a lane-1 token should list lane 1 only, got ${JSON.stringify(lanes)}`);
  }
  await page.selectOption("#lane-picker", "1");
  await page.click("#sign-in-button");
  await page.waitForSelector("#lane:not([hidden])", { timeout: TIMEOUT });
  await page.waitForSelector("#connection.online", { timeout: TIMEOUT });
  const title = (await page.textContent("#lane-title")).trim();
  if (title !== "Lane 1") throw new Error(`the lane title reads "${title}"`);
}

async function memberCheckout(page) {
  // An idle lane offers nothing but scanning.
  await expectEnabled(page, "#pay-button", false);
  await expectEnabled(page, "#cancel-button", false);
  await expectEnabled(page, "#enroll-button", false);
  await scan(page, MEMBER_QR);
  await expectMessage(page, "member_welcomed");
  const customer = (await page.textContent("#customer")).trim();
  if (!customer.includes("47******67") || !customer.includes("member")) {
    throw new Error(`the customer reads "${customer}"`);
  }
  if ((await page.content()).includes("4791234567")) {
    throw new Error("the full phone number is on the page");
  }
  // A member is not offered enrollment; the checkout may be cancelled.
  await expectEnabled(page, "#enroll-button", false);
  await expectEnabled(page, "#cancel-button", true);
  await pay(page, "239,90");
  const text = await expectMessage(page, "payment_approved");
  if (!text.includes("239.90")) throw new Error(`the approval does not show the amount: "${text}"`);
  await page.waitForSelector('#state[data-state="idle"]', { timeout: TIMEOUT });
  await expectEnabled(page, "#pay-button", false);
  await expectEnabled(page, "#cancel-button", false);
}

async function declinedPayment(page) {
  await scan(page, DECLINER_QR);
  await expectMessage(page, "non_member");
  // A non-member may be offered enrollment before paying.
  await expectEnabled(page, "#enroll-button", true);
  await pay(page, "100");
  await expectMessage(page, "payment_declined");
  await page.waitForSelector('#state[data-state="idle"]', { timeout: TIMEOUT });
  const cls = await page.getAttribute("#message", "class");
  if (!cls.includes("error")) throw new Error(`a declined payment is shown as "${cls}"`);
}

async function step(page, name, fn) {
  const started = Date.now();
  try {
    await fn(page);
    passed += 1;
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (e) {
    failed += 1;
    mkdirSync(ARTIFACTS, { recursive: true });
    const shot = join(ARTIFACTS, `${name.replace(/\W+/g, "-")}.png`);
    await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
    console.log(`FAIL ${name}: ${e.message}\n     screenshot: ${shot}`);
    throw e;
  }
}

const profile = mkdtempSync(join(tmpdir(), "lanehub-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: CHROMIUM,
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  viewport: { width: 1280, height: 900 },
});
try {
  const page = context.pages()[0] || (await context.newPage());
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") problems.push(`console error: ${m.text()}`);
  });
  const steps = [
    ["sign in to lane 1", signIn],
    ["member checkout is paid", memberCheckout],
    ["declined payment", declinedPayment],
  ];
  for (const [name, fn] of steps) {
    await step(page, name, fn).catch(() => {});
    if (failed) break;
  }
  if (!failed) {
    mkdirSync(ARTIFACTS, { recursive: true });
    await page.screenshot({ path: join(ARTIFACTS, "final.png"), fullPage: true });
  }
  if (problems.length) {
    failed += 1;
    console.log(`FAIL the page logged errors:\n  ${problems.join("\n  ")}`);
  }
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
