// A reviewer's session in a real browser (Debian's Chromium, headless, driven by playwright-core)
// against `lake review serve`. Prints one JSON line of what happened; the Rust test that starts the
// server checks the lake and the audit trail afterwards.
//   REVIEW_LOGIN   the login link the server printed
//   CHROMIUM       the browser binary (/usr/bin/chromium)
//   SHOTS          folder for the queue and proposal screenshots (optional)
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const login = process.env.REVIEW_LOGIN;
const exe = process.env.CHROMIUM || "/usr/bin/chromium";
const shots = process.env.SHOTS;
const flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const profiles = [];

async function browser() {
  const dir = mkdtempSync(join(tmpdir(), "review-chromium-"));
  profiles.push(dir);
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: exe, headless: true, args: flags, viewport: { width: 1280, height: 900 },
  });
  const page = ctx.pages()[0] || (await ctx.newPage());
  await page.goto(login);
  await page.waitForURL((u) => u.pathname === "/");
  return { ctx, page };
}

const idOf = (url) => Number(new URL(url).pathname.split("/").pop());

function check(cond, what) {
  if (!cond) throw new Error("browser check failed: " + what);
}

async function review() {
  const { ctx, page } = await browser();
  check((await page.textContent("#counts")).includes("pending"), "queue counts");
  if (shots) await page.screenshot({ path: join(shots, "review-queue.png") });
  await page.click("a.open >> nth=0");
  await page.waitForURL(/\/proposal\/\d+$/);
  const opened = idOf(page.url());
  check((await page.textContent("#f-phone td.v")).includes("\u2022"), "phone masked before reveal");
  await page.click("#reveal-phone");
  await page.waitForURL(new RegExp(`/proposal/${opened}`));
  check(!(await page.textContent("#f-phone td.v")).includes("\u2022"), "phone shown after reveal");
  if (shots) await page.screenshot({ path: join(shots, "review-proposal.png"), fullPage: true });
  await page.keyboard.press("1");
  await page.waitForURL((u) => u.pathname.startsWith("/proposal/") && idOf(u.href) !== opened);
  const next = idOf(page.url());
  await ctx.close();
  return { opened, next };
}

async function race() {
  const [a, b] = await Promise.all([browser(), browser()]);
  await a.page.click("a.open >> nth=0");
  await a.page.waitForURL(/\/proposal\/\d+$/);
  const id = idOf(a.page.url());
  await b.page.goto(a.page.url());
  const post = (p) => p.waitForResponse((r) => r.request().method() === "POST");
  const [ra, rb] = await Promise.all([post(a.page), post(b.page), a.page.keyboard.press("1"), b.page.keyboard.press("1")]);
  const statuses = [ra.status(), rb.status()];
  await Promise.all([a.page.waitForLoadState("load"), b.page.waitForLoadState("load")]);
  const bodies = [await a.page.textContent("body"), await b.page.textContent("body")];
  await a.ctx.close(); await b.ctx.close();
  return { race: id, statuses: statuses.sort(), refused: bodies.filter((t) => t.includes("Already decided")).length };
}

try {
  const r = await review();
  const x = await race();
  process.stdout.write(JSON.stringify({ ...r, ...x }) + "\n");
} finally {
  for (const d of profiles) rmSync(d, { recursive: true, force: true });
}
