// A reviewer's session in a real browser (Debian's Chromium, headless, driven by playwright-core)
// against `lake review serve`. Prints one JSON line of what happened; the Rust test that starts the
// server checks the lake and the audit trail afterwards.
//   REVIEW_LOGIN   the login link the server printed
//   REVIEW_MULTI   the id of a proposal with three candidates
//   CHROMIUM       the browser binary (/usr/bin/chromium)
//   SHOTS          folder for the queue and proposal screenshots (optional)
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const login = process.env.REVIEW_LOGIN;
const multi = Number(process.env.REVIEW_MULTI); // a proposal with three candidates
const exe = process.env.CHROMIUM || "/usr/bin/chromium";
const shots = process.env.SHOTS;
const flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const profiles = [];

let session; // the cookies of the one sign-in: the printed link works once

async function browser() {
  const dir = mkdtempSync(join(tmpdir(), "review-chromium-"));
  profiles.push(dir);
  const ctx = await chromium.launchPersistentContext(dir, {
    executablePath: exe, headless: true, args: flags, viewport: { width: 1280, height: 900 },
  });
  const page = ctx.pages()[0] || (await ctx.newPage());
  if (!session) {
    await page.goto(login);
    await page.waitForURL((u) => u.pathname === "/");
    session = await ctx.cookies();
  } else {
    // another tab of the same reviewer: the link is spent, the session is shared
    const again = await page.goto(login);
    check(again.status() === 401, "a spent login link is refused");
    await ctx.addCookies(session);
    await page.goto(new URL("/", login).href);
  }
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

// The other shortcuts: j/k next and previous, s skip, 2 accepts the second of several
// candidates, r rejects.
async function keys() {
  const { ctx, page } = await browser();
  const go = async (key, cond) => {
    await Promise.all([page.waitForURL(cond), page.keyboard.press(key)]);
    return idOf(page.url());
  };
  await page.click("a.open >> nth=0");
  await page.waitForURL(/\/proposal\/\d+$/);
  const skipped = idOf(page.url());
  const forward = await go("j", (u) => u.pathname.startsWith("/proposal/") && idOf(u.href) !== skipped);
  const back = await go("k", (u) => idOf(u.href) === skipped);
  check(back === skipped, "k returns to the previous proposal");
  await go("s", (u) => !u.pathname.startsWith("/proposal/") || idOf(u.href) !== skipped);
  await page.goto(new URL(`/proposal/${multi}`, login).href);
  check((await page.textContent("table.evidence thead")).includes("Candidate 3"), "three candidates side by side");
  await go("2", (u) => !u.pathname.startsWith("/proposal/") || idOf(u.href) !== multi);
  check(page.url().includes("/proposal/"), "the next proposal opens after an accept");
  const rejected = idOf(page.url());
  await go("r", (u) => !u.pathname.startsWith("/proposal/") || idOf(u.href) !== rejected);
  await ctx.close();
  return { skipped, forward, multi, rejected };
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
  const k = await keys();
  const x = await race();
  process.stdout.write(JSON.stringify({ ...r, keys: k, ...x }) + "\n");
} finally {
  for (const d of profiles) rmSync(d, { recursive: true, force: true });
}
