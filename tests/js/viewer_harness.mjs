// What the viewer's browser scenarios share: arguments, the browser, sign-in, steps with their
// failure report, screenshots and pointer helpers (Debian Chromium via playwright-core).
//
//   node tests/js/<scenario>.spec.mjs <base-url> <screenshot-dir>
//
// Environment: ADMIN_PASSWORD, STUDY_UID (the phantom study), PHANTOM (JSON: its geometry and
// where to save downloads).

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import assert from "node:assert/strict";

export const [base, shots] = process.argv.slice(2);
export const ADMIN_PASSWORD = process.env.ADMIN_PASSWORD;
export const STUDY_UID = process.env.STUDY_UID;
export const P = JSON.parse(process.env.PHANTOM || "{}");
assert.ok(base && shots && ADMIN_PASSWORD && STUDY_UID && P.size, "usage: see the header");
mkdirSync(shots, { recursive: true });
mkdirSync(P.downloads, { recursive: true });

const LAUNCH = {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-unsafe-swiftshader",
  ],
};
export const DESKTOP = { viewport: { width: 1400, height: 900 }, locale: "en-US", acceptDownloads: true };

let current = "start";
const problems = [];
const pages = [];
export const step = (name) => { current = name; console.log("- " + name); };

/** Collect the page's errors (reported at the end) and keep it for a failure screenshot. */
export function watch(page, label) {
  pages.push(page);
  page.on("pageerror", (error) => problems.push(`${label}: page error: ${error.message}`));
  page.on("console", (msg) => {
    const text = msg.text();
    if (msg.type() === "error" && !text.startsWith("Failed to load resource")) problems.push(`${label}: console error: ${text}`);
  });
  return page;
}

export async function shot(page, name) {
  const path = join(shots, name + ".png");
  await page.screenshot({ path });
  console.log("  screenshot " + path);
}

export async function signIn(page, next) {
  await page.waitForURL((url) => url.pathname === "/login" && url.searchParams.get("next") === next);
  await page.fill("#username", "admin");
  await page.fill("#password", ADMIN_PASSWORD);
  await page.click("#submit");
  await page.waitForURL((url) => url.pathname + url.search === next);
}

export const ready = (page) => page.waitForFunction(() => window.__viewer && window.__viewer.status === "ready", null, { timeout: 60000 });
export const corner = (page, c, slot = 0) => page.locator(`#vp${slot} + .overlay .corner.${c}`).innerText();

/** Screen point of image pixel (col, row) in viewport `slot`. */
export function screenPoint(page, col, row, slot = 0) {
  return page.evaluate(([c, r, s]) => {
    const vp = window.__viewer.viewport(s);
    const world = window.__viewer.imageToWorld(vp.getCurrentImageId(), [c, r]);
    const [x, y] = vp.worldToCanvas(world);
    const rect = vp.element.getBoundingClientRect();
    return [rect.left + x, rect.top + y];
  }, [col, row, slot]);
}

export async function drag(page, from, to) {
  await page.mouse.move(from[0], from[1]);
  await page.mouse.down();
  for (let i = 1; i <= 8; i++) await page.mouse.move(from[0] + ((to[0] - from[0]) * i) / 8, from[1] + ((to[1] - from[1]) * i) / 8);
  await page.mouse.up();
}

/** Run the scenarios in one browser; print `ok` or the failing step (with screenshots); exit. */
export async function run(scenarios, ok) {
  const browser = await chromium.launch(LAUNCH);
  let failed = false;
  try {
    for (const scenario of scenarios) await scenario(browser);
    if (problems.length) throw new Error("problems in the pages:\n" + problems.join("\n"));
    console.log(ok);
  } catch (error) {
    failed = true;
    console.log(`FAILED at step "${current}": ${error.stack || error}`);
    for (const [i, page] of pages.entries()) {
      if (!page.isClosed()) await page.screenshot({ path: join(shots, `failure-${i}.png`) }).catch(() => {});
    }
    if (problems.length) console.log(problems.join("\n"));
  } finally {
    await browser.close();
  }
  process.exit(failed ? 1 : 0);
}
