// What every browser scenario shares: arguments, the browser, steps with their failure report
// and screenshots (Debian Chromium via playwright-core).
//
//   node tests/js/<scenario>.spec.mjs <base-url> <screenshot-dir>

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import assert from "node:assert/strict";

export const [base, shots] = process.argv.slice(2);
assert.ok(base && shots, "usage: node <scenario>.spec.mjs <base-url> <screenshot-dir>");
mkdirSync(shots, { recursive: true });

export const LAUNCH = {
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
