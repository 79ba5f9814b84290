// What the viewer's browser scenarios share beyond browser_harness.mjs: the phantom study,
// sign-in, the desktop context and pointer helpers.
//
//   node tests/js/<scenario>.spec.mjs <base-url> <screenshot-dir>
//
// Environment: ADMIN_PASSWORD, STUDY_UID (the phantom study), PHANTOM (JSON: its geometry and
// where to save downloads).

import { mkdirSync } from "node:fs";
import assert from "node:assert/strict";
import { base, shots } from "./browser_harness.mjs";

export { base, shots, step, watch, shot, run, DESKTOP } from "./browser_harness.mjs";
export const ADMIN_PASSWORD = process.env.ADMIN_PASSWORD;
export const STUDY_UID = process.env.STUDY_UID;
export const P = JSON.parse(process.env.PHANTOM || "{}");
assert.ok(base && shots && ADMIN_PASSWORD && STUDY_UID && P.size, "usage: see the header");
mkdirSync(P.downloads, { recursive: true });

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

