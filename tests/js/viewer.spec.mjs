// Real-browser scenario for the study list and the viewer (Debian Chromium via playwright-core).
//
//   node tests/js/viewer.spec.mjs <base-url> <screenshot-dir>
//
// Environment: ADMIN_PASSWORD, STUDY_UID (the phantom study), PHANTOM (JSON: its geometry, see
// tests/test_viewer_ui.py, and where to save downloads).  Prints "BUNDLE [names]" (assets the viewer
// loaded at start) and "LOAD …" (times), and "ok: study list and viewer passed" when every step passed.

import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import assert from "node:assert/strict";

const [base, shots] = process.argv.slice(2);
const ADMIN_PASSWORD = process.env.ADMIN_PASSWORD;
const STUDY_UID = process.env.STUDY_UID;
const P = JSON.parse(process.env.PHANTOM || "{}");
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
const DESKTOP = { viewport: { width: 1400, height: 900 }, locale: "en-US", acceptDownloads: true };
const PHONE = {
  viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, locale: "zh-CN",
  userAgent: "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Mobile Safari/537.36",
};

let current = "start";
const problems = [];
const pages = [];
const step = (name) => { current = name; console.log("- " + name); };

function watch(page, label) {
  pages.push(page);
  page.on("pageerror", (error) => problems.push(`${label}: page error: ${error.message}`));
  page.on("console", (msg) => {
    const text = msg.text();
    if (msg.type() === "error" && !text.startsWith("Failed to load resource")) problems.push(`${label}: console error: ${text}`);
  });
  return page;
}

async function shot(page, name) {
  const path = join(shots, name + ".png");
  await page.screenshot({ path });
  console.log("  screenshot " + path);
}

async function signIn(page, next) {
  await page.waitForURL((url) => url.pathname === "/login" && url.searchParams.get("next") === next);
  await page.fill("#username", "admin");
  await page.fill("#password", ADMIN_PASSWORD);
  await page.click("#submit");
  await page.waitForURL((url) => url.pathname + url.search === next);
}

const ready = (page) => page.waitForFunction(() => window.__viewer && window.__viewer.status === "ready", null, { timeout: 60000 });
const corner = (page, c, slot = 0) => page.locator(`#vp${slot} + .overlay .corner.${c}`).innerText();

/** Screen point of image pixel (col, row) in viewport `slot`. */
function screenPoint(page, col, row, slot = 0) {
  return page.evaluate(([c, r, s]) => {
    const vp = window.__viewer.viewport(s);
    const world = window.__viewer.imageToWorld(vp.getCurrentImageId(), [c, r]);
    const [x, y] = vp.worldToCanvas(world);
    const rect = vp.element.getBoundingClientRect();
    return [rect.left + x, rect.top + y];
  }, [col, row, slot]);
}

async function drag(page, from, to) {
  await page.mouse.move(from[0], from[1]);
  await page.mouse.down();
  for (let i = 1; i <= 8; i++) await page.mouse.move(from[0] + ((to[0] - from[0]) * i) / 8, from[1] + ((to[1] - from[1]) * i) / 8);
  await page.mouse.up();
}

/** Pixel statistics of the viewport's on-screen canvas. */
function canvasStats(page, slot = 0) {
  return page.evaluate((s) => {
    const src = window.__viewer.viewport(s).getCanvas();
    const c = document.createElement("canvas");
    c.width = src.width; c.height = src.height;
    const ctx = c.getContext("2d");
    ctx.drawImage(src, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let lit = 0, sum = 0;
    const levels = new Set();
    for (let i = 0; i < d.length; i += 4 * 7) { if (d[i] > 20) lit++; sum += d[i]; levels.add(d[i]); }
    return { lit, mean: sum / (d.length / 28), levels: levels.size, w: c.width, h: c.height };
  }, slot);
}

/** The number the annotation text shows (first match of `re`), once `ok(number)` or after 5 s. */
async function settled(page, re, ok, slot = 0) {
  let value = NaN;
  for (let i = 0; i < 50; i++) {
    value = Number(((await svgText(page, slot)).match(re) || [])[1]);
    if (ok(value)) return value;
    await page.waitForTimeout(100);
  }
  return value;
}

const svgText = (page, slot = 0) => page.evaluate((s) => [...document.querySelectorAll(`#vp${s} svg text`)].map((t) => t.textContent).join(" | "), slot);

async function desktop(browser) {
  const context = await browser.newContext(DESKTOP);
  const page = watch(await context.newPage(), "desktop");

  step("/ without a session goes to /login?next=/, then back to the study list");
  await page.goto(base + "/");
  await signIn(page, "/");
  await page.locator(`tr.study[data-uid="${STUDY_UID}"]`).waitFor({ timeout: 20000 });
  assert.match(await page.locator(`tr.study[data-uid="${STUDY_UID}"]`).innerText(), /王小明/);
  await page.locator(`tr.study[data-uid="${STUDY_UID}"] + tr .thumb img`).first().waitFor();

  const listed = async (action) => {
    const before = await page.evaluate(() => document.body.dataset.listReady || "");
    await action();
    await page.waitForFunction((b) => (document.body.dataset.listReady || "") !== b, before);
  };
  async function searchFor(fields) {
    await listed(() => page.click("button[type=reset]")); // clearing lists everything again
    for (const [id, value] of Object.entries(fields)) await page.fill(id, value);
    await listed(() => page.click("#search-go"));
    return page.locator("tr.study").count();
  }
  step("filter by patient ID (prefix) and by name (Chinese, pinyin)");
  assert.equal(await searchFor({ "#q-pid": P.patientId.slice(0, 5) }), 1);
  assert.equal(await searchFor({ "#q-pid": "NO-SUCH" }), 0);
  assert.match(await page.locator("#list-status").innerText(), /No studies/);
  assert.equal(await searchFor({ "#q-name": "王小明" }), 1);
  assert.equal(await searchFor({ "#q-name": "wang" }), 1);
  assert.equal(await searchFor({ "#q-accession": "ACC-777", "#q-from": "2026-03-01", "#q-to": "2026-03-31" }), 1);
  assert.equal(await searchFor({ "#q-from": "2027-01-01" }), 0);
  await searchFor({});
  step("sort by a column");
  await page.click('th[data-sort="pid"]');
  assert.equal(await page.getAttribute('th[data-sort="pid"]', "aria-sort"), "ascending");
  await page.waitForFunction(() => [...document.querySelectorAll(".thumb img")].some((i) => i.complete && i.naturalWidth > 0));
  await shot(page, "desktop-list");

  step("open the study: first image, then the overlay");
  const clicked = Date.now();
  await page.click(`tr.study[data-uid="${STUDY_UID}"]`);
  await page.waitForURL((url) => url.pathname === "/viewer");
  await ready(page);
  const openMs = Date.now() - clicked;
  const hook = await page.evaluate(() => ({ first: window.__viewer.firstImageMs, nav: window.__viewer.sinceNavigationMs }));
  console.log(`LOAD click-to-first-image ${openMs} ms; viewer module to first image ${hook.first} ms; navigation to first image ${hook.nav} ms`);
  const bundle = await page.evaluate(() => [...new Set(performance.getEntriesByType("resource")
    .map((e) => new URL(e.name).pathname).filter((p) => p.startsWith("/app/assets/")).map((p) => p.slice(12)))]);
  console.log("BUNDLE " + JSON.stringify(bundle));
  const stats = await canvasStats(page);
  console.log("  canvas", JSON.stringify(stats));
  assert.ok(stats.lit > 1000 && stats.levels > 3, "the first image is blank: " + JSON.stringify(stats));
  assert.match(await corner(page, "bl"), new RegExp(`1/${P.slices}`));
  assert.match(await corner(page, "tl"), /RCV-0042/);
  assert.match(await corner(page, "br"), /W: 400 L: 40/);

  step("scroll: wheel and keyboard change the slice");
  const box = await page.locator("#vp0").boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.wheel(0, 120);
  await page.waitForFunction(() => /Im: 2\//.test(document.querySelector("#vp0 + .overlay .corner.bl").innerText));
  await page.keyboard.press("ArrowDown");
  await page.keyboard.press("ArrowDown");
  await page.waitForFunction(() => /Im: 4\//.test(document.querySelector("#vp0 + .overlay .corner.bl").innerText));
  const after = await canvasStats(page);
  assert.notEqual(after.mean, stats.mean, "scrolling did not change the picture");

  step("window presets on number keys");
  await page.keyboard.press("1");
  await page.waitForFunction(() => /W: 1500 L: -600/.test(document.querySelector("#vp0 + .overlay .corner.br").innerText));
  await page.keyboard.press("3");
  await page.waitForFunction(() => /W: 2000 L: 400/.test(document.querySelector("#vp0 + .overlay .corner.br").innerText));
  await page.keyboard.press("5");
  await page.waitForFunction(() => /W: 400 L: 50/.test(document.querySelector("#vp0 + .overlay .corner.br").innerText));

  step("length between two known points: 160 pixels");
  await page.click("#tool-length");
  const [cx, cy, r] = P.disc;
  const a = await screenPoint(page, 40, 200), b = await screenPoint(page, 200, 200);
  await drag(page, a, b);
  const want = 160 * P.spacing;
  // the text box follows the last render after the drag: wait for it to settle
  const shown = await settled(page, /([\d.]+)\s*mm/, (v) => Math.abs(v - want) <= P.spacing);
  console.log(`  length shown: ${shown} mm (expected ${want} ± ${P.spacing})`);
  assert.ok(Math.abs(shown - want) <= P.spacing, `length shows ${shown} mm, expected ${want} ± ${P.spacing}`);

  step("ellipse ROI inside the 100 HU disc");
  await page.click("#tool-ellipse");
  await drag(page, await screenPoint(page, cx, cy), await screenPoint(page, cx + 14, cy + 14)); // centre out
  const mean = await settled(page, /Mean:\s*(-?[\d.]+)\s*HU/, (v) => Math.abs(v - P.discHU) <= 3);
  console.log(`  ellipse mean shown: ${mean} HU`);
  assert.ok(Math.abs(mean - P.discHU) <= 3, `the ellipse text shows mean ${mean} HU`);

  const roi = await page.evaluate(() => window.__viewer.annotations().find((x) => x.tool === "EllipticalROI"));
  // cachedStats is keyed by render target; the current image's entry is the last one written
  const roiStats = Object.values(roi.stats).at(-1);
  console.log("  ellipse stats", Object.keys(roi.stats).length, "targets; last:", JSON.stringify({ mean: roiStats.mean, min: roiStats.min, max: roiStats.max, area: roiStats.area }));
  assert.ok(Math.abs(roiStats.mean - P.discHU) <= 3, `ROI mean ${roiStats.mean}, expected ${P.discHU}`);

  step("probe shows the CT value");
  await page.click("#tool-probe");
  const pt = await screenPoint(page, cx, cy);
  await page.mouse.click(pt[0], pt[1]);
  await page.waitForFunction(() => window.__viewer.annotations().some((x) => x.tool === "Probe"
    && Object.values(x.stats || {}).some((st) => st.value !== undefined)), null, { timeout: 5000 }).catch(() => {});
  const probe = await page.evaluate(() => window.__viewer.annotations().find((x) => x.tool === "Probe"));
  const probed = Object.values(probe.stats).find((st) => st.value !== undefined) || {};
  console.log("  probe", JSON.stringify(probed));
  assert.equal(probed.value, P.discHU, "the probe shows the disc's CT value");
  await page.click("#tool-wl");
  await shot(page, "desktop-viewer");

  step("export the viewport as PNG");
  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#act-export")]);
  assert.match(download.suggestedFilename(), /\.png$/);
  await download.saveAs(join(P.downloads, download.suggestedFilename()));

  step("invert, rotate, zoom 1:1, reset; layouts; language");
  await page.click("#act-invert");
  await page.waitForFunction(() => /INV/.test(document.querySelector("#vp0 + .overlay .corner.br").innerText));
  await page.click("#act-one");
  await page.waitForFunction(() => !/Zoom: 1\.00/.test(document.querySelector("#vp0 + .overlay .corner.br").innerText));
  await page.click("#act-reset");
  await page.waitForFunction(() => /Zoom: 1\.00/.test(document.querySelector("#vp0 + .overlay .corner.br").innerText) && !/INV/.test(document.querySelector("#vp0 + .overlay .corner.br").innerText));
  await page.selectOption("#layout", "2x2");
  await page.waitForFunction(() => document.querySelectorAll(".cell:not([hidden])").length === 4);
  await page.waitForFunction(() => /Im: 1\//.test(document.querySelector("#vp3 + .overlay .corner.bl")?.innerText || ""));
  assert.ok((await canvasStats(page, 3)).lit > 500, "viewport 4 is blank");
  await page.click("#lang");
  assert.equal(await page.locator("#tool-length").innerText(), "测距");
  await shot(page, "desktop-viewer-2x2-zh");
  await page.click("#lang");
  await context.close();
}

async function phone(browser) {
  const context = await browser.newContext(PHONE);
  const page = watch(await context.newPage(), "phone");
  const target = "/viewer?study=" + STUDY_UID;
  step("phone: sign in, list, open the viewer");
  await page.goto(base + target);
  await signIn(page, target);
  await ready(page);
  const box = await page.locator("#vp0").boundingBox();
  assert.ok(box.width >= 380 && box.height >= 380, "the phone viewport is too small: " + JSON.stringify(box));
  assert.ok((await canvasStats(page)).lit > 1000);
  step("phone: one-finger drag scrolls, two fingers pinch-zoom");
  await shot(page, "phone-viewer");
  const cdp = await context.newCDPSession(page);
  const x = box.x + box.width / 2, y0 = box.y + box.height * 0.3;
  const touch = (type, points) => cdp.send("Input.dispatchTouchEvent", { type, touchPoints: points });
  await touch("touchStart", [{ x, y: y0 }]);
  for (let i = 1; i <= 10; i++) await touch("touchMove", [{ x, y: y0 + i * 20 }]);
  await touch("touchEnd", []);
  await page.waitForFunction(() => !/图像: 1\//.test(document.querySelector("#vp0 + .overlay .corner.bl").innerText));
  const zoom0 = await corner(page, "br");
  const cy = box.y + box.height / 2;
  await touch("touchStart", [{ x: x - 30, y: cy, id: 0 }, { x: x + 30, y: cy, id: 1 }]);
  for (let i = 1; i <= 10; i++) await touch("touchMove", [{ x: x - 30 - i * 10, y: cy, id: 0 }, { x: x + 30 + i * 10, y: cy, id: 1 }]);
  await touch("touchEnd", []);
  await page.waitForTimeout(300);
  console.log(`  zoom before/after pinch: ${zoom0.split("\n").pop()} / ${(await corner(page, "br")).split("\n").pop()}`);
  assert.notEqual(await corner(page, "br"), zoom0, "pinch did not zoom");
  await shot(page, "phone-viewer-zoomed");
  await page.goto(base + "/");
  await page.waitForFunction(() => [...document.querySelectorAll(".thumb img")].some((i) => i.complete && i.naturalWidth > 0));
  await page.locator("tr.study").first().waitFor();
  await shot(page, "phone-list");
  await context.close();
}

const browser = await chromium.launch(LAUNCH);
let failed = false;
try {
  await desktop(browser);
  await phone(browser);
  if (problems.length) throw new Error("problems in the pages:\n" + problems.join("\n"));
  console.log("ok: study list and viewer passed");
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
