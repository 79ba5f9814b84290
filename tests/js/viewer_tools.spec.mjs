// Real-browser scenario for the viewer's saved measurements and key images, image filters, layouts,
// zoom modes, multi-frame playback, export formats and hanging protocols (Debian Chromium via playwright-core).
//
//   node tests/js/viewer_tools.spec.mjs <base-url> <screenshot-dir>
//
// Environment: ADMIN_PASSWORD, STUDY_UID, PHANTOM (JSON: geometry, see tests/test_annotations_ui.py).
// Prints "SAVED {json}" (what was saved, for the Python side to compare with the stored GSPS) and
// "ok: viewer tools passed" when every step passed.

import { join } from "node:path";
import assert from "node:assert/strict";
import { press, choose } from "./toolbar.mjs";
import { writeFileSync } from "node:fs";
import {
  base, P, STUDY_UID, DESKTOP, step, watch, shot, signIn, ready, corner, screenPoint, drag, run,
} from "./viewer_harness.mjs";

const TARGET = "/viewer?study=" + STUDY_UID;
const imageIs = (page, n, slot = 0) => page.waitForFunction(([k, s]) =>
  new RegExp(`Im: ${k}/`).test(document.querySelector(`#vp${s} + .overlay .corner.bl`)?.innerText || ""), [n, slot]);

/** The saved-state form of the current annotations (image pixel points, values), by tool. */
const state = (page) => page.evaluate(() => window.__viewer.state());
const byTool = (st, tool) => st.annotations.filter((a) => a.tool === tool);

/** The length (mm) Cornerstone computed for the annotation `uid`, once it has one. */
async function statOf(page, uid, key) {
  const handle = await page.waitForFunction(([u, k]) => {
    const a = window.__viewer.state().annotations.find((x) => x.uid === u);
    return a && typeof a.measure[k] === "number" ? a.measure[k] : false;
  }, [uid, key], { timeout: 10000 });
  return handle.jsonValue();
}

async function annotations(browser) {
  const context = await browser.newContext(DESKTOP);
  let page = watch(await context.newPage(), "annotations");
  step("open the study: nothing saved yet");
  await page.goto(base + TARGET);
  await signIn(page, TARGET);
  await ready(page);
  assert.equal(await page.evaluate(() => window.__viewer.restored), 0);
  assert.equal(await page.locator(".series-panel > .series").count(), P.imageSeries, "PR/KO series must not be offered as image series");

  step("draw a length (160 px), an ellipse in the disc and an arrow with text on image 1");
  await press(page, "#tool-length");
  await drag(page, await screenPoint(page, 40, 200), await screenPoint(page, 200, 200));
  const [cx, cy] = P.disc;
  await press(page, "#tool-ellipse");
  await drag(page, await screenPoint(page, cx, cy), await screenPoint(page, cx + 14, cy + 14));
  await press(page, "#tool-arrow");
  await drag(page, await screenPoint(page, 60, 70), await screenPoint(page, 100, 110));
  await page.locator("#ask[open]").waitFor();
  await page.fill("#ask-input", "病灶 lesion");
  await page.click("#ask-ok");
  let st = await state(page);
  const length = byTool(st, "Length")[0], ellipse = byTool(st, "EllipticalROI")[0];
  assert.ok(length && ellipse && byTool(st, "ArrowAnnotate")[0]?.text === "病灶 lesion", JSON.stringify(st));
  const mm = await statOf(page, length.uid, "length");
  const mean = await statOf(page, ellipse.uid, "mean");
  console.log(`  length ${mm} mm, ellipse mean ${mean} HU`);
  assert.ok(Math.abs(mm - 160 * P.spacing) <= P.spacing, `length ${mm}`);
  assert.ok(Math.abs(mean - P.discHU) <= 3, `mean ${mean}`);

  step("K marks key images (image 1 and image 3); the Save button shows unsaved changes");
  await press(page, "#tool-wl");
  await page.keyboard.press("k");
  await page.locator("#vp0 ~ .keymark:not([hidden])").waitFor();
  await page.keyboard.press("ArrowDown");
  await page.keyboard.press("ArrowDown");
  await imageIs(page, 3);
  assert.ok(await page.locator("#vp0 ~ .keymark[hidden]").count(), "image 3 is not a key image yet");
  await page.keyboard.press("k");
  await page.locator("#vp0 ~ .keymark:not([hidden])").waitFor();
  await page.waitForFunction(() => window.__viewer.dirty === true);
  assert.match(await page.getAttribute("#act-save", "class"), /dirty/);
  await shot(page, "key-image");

  step("save: a GSPS and a KOS in the study");
  await press(page, "#act-save");
  await page.waitForFunction(() => window.__viewer.savedState && window.__viewer.dirty === false);
  const saved = await page.evaluate(() => window.__viewer.savedState);
  assert.equal(saved.annotations.length, 3);
  assert.equal(saved.keyImages.length, 2);
  assert.ok(saved.pr_sop_uid && saved.ko_sop_uid);
  assert.match(await page.locator("#save-status").innerText(), /Saved: 3 measurements, 2 key images/);
  console.log("SAVED " + JSON.stringify({ pr: saved.pr_sop_uid, ko: saved.ko_sop_uid, length: { ...length, mm }, keyImages: saved.keyImages }));

  step("reopen: the same measurements (same values) and key images come back");
  await page.reload();
  await ready(page);
  assert.equal(await page.evaluate(() => window.__viewer.restored), 3);
  await imageIs(page, 1);
  await page.locator("#vp0 ~ .keymark:not([hidden])").waitFor();
  st = await state(page);
  const back = st.annotations.find((a) => a.uid === length.uid);
  assert.ok(back, "the length did not come back");
  back.points.forEach((p, i) => p.forEach((v, k) => assert.ok(Math.abs(v - length.points[i][k]) < 1e-9, `point ${i}: ${v} vs ${length.points[i][k]}`)));
  const mmBack = await statOf(page, length.uid, "length");
  const meanBack = await statOf(page, ellipse.uid, "mean");
  console.log(`  restored length ${mmBack} mm (drawn ${mm}), ellipse mean ${meanBack} (drawn ${mean})`);
  assert.ok(Math.abs(mmBack - mm) < 1e-9, "the restored length differs");
  assert.ok(Math.abs(meanBack - mean) < 1e-9, "the restored ROI mean differs");
  const text = await page.evaluate(() => [...document.querySelectorAll("#vp0 svg text")].map((t) => t.textContent).join(" | "));
  assert.match(text, /病灶 lesion/);
  assert.match(text, new RegExp(`\\b${Math.floor(mm)}(\\.\\d+)?\\s*mm`)); // shown rounded
  assert.equal(await page.evaluate(() => window.__viewer.dirty), false, "a fresh restore counts as unsaved");
  await shot(page, "restored");
  await page.keyboard.press("ArrowDown");
  await imageIs(page, 2);
  assert.ok(await page.locator("#vp0 ~ .keymark[hidden]").count(), "image 2 shows as a key image");
  await page.keyboard.press("ArrowDown");
  await imageIs(page, 3);
  await page.locator("#vp0 ~ .keymark:not([hidden])").waitFor();

  step("leaving with unsaved changes asks; Save there keeps them");
  await page.keyboard.press("ArrowUp");
  await page.keyboard.press("ArrowUp");
  await imageIs(page, 1);
  await press(page, "#tool-length");
  await drag(page, await screenPoint(page, 40, 40), await screenPoint(page, 40, 120));
  await page.waitForFunction(() => window.__viewer.dirty === true);
  await page.click(".toolbar a[href='/']");
  await page.locator("#leave[open]").waitFor();
  await shot(page, "leave-dialog");
  await page.click("#leave-save");
  await page.waitForURL((url) => url.pathname === "/");
  await page.goto(base + TARGET);
  await ready(page);
  assert.equal(await page.evaluate(() => window.__viewer.restored), 4);
  await context.close();
}

/** Mean |Laplacian| (edge energy) and standard deviation of the grey levels the viewport shows. */
function sharpness(page, slot = 0, inner = false) {
  return page.evaluate(([s, inside]) => {
    const c = window.__viewer.shownImage(s);
    const { width: w, height: h } = c;
    const d = c.getContext("2d").getImageData(0, 0, w, h).data;
    const v = (x, y) => d[4 * (y * w + x)];
    let [x0, y0, x1, y1] = [1, 1, w - 1, h - 1];
    if (inside) { // the middle 80 % of the image itself, not the black around it
      const vp = window.__viewer.viewport(s);
      const img = vp.getCornerstoneImage();
      const id = vp.getCurrentImageId();
      const scale = w / vp.element.clientWidth;
      const [ax, ay] = vp.worldToCanvas(window.__viewer.imageToWorld(id, [img.columns * 0.1, img.rows * 0.1]));
      const [bx, by] = vp.worldToCanvas(window.__viewer.imageToWorld(id, [img.columns * 0.9, img.rows * 0.9]));
      [x0, y0, x1, y1] = [ax, ay, bx, by].map((q) => Math.round(q * scale));
    }
    let g = 0, n = 0, sum = 0, sq = 0;
    for (let y = y0; y < y1; y += 2) for (let x = x0; x < x1; x += 2) {
      const p = v(x, y);
      g += Math.abs(4 * p - v(x - 1, y) - v(x + 1, y) - v(x, y - 1) - v(x, y + 1));
      sum += p; sq += p * p; n++;
    }
    return { edge: g / n, sd: Math.sqrt(sq / n - (sum / n) ** 2) };
  }, [slot, inner]);
}
const pixelSum = (page, slot = 0) => page.evaluate((s) => window.__viewer.viewport(s).getCornerstoneImage().getPixelData().reduce((a, b) => a + b, 0), slot);

async function filters(browser) {
  const context = await browser.newContext(DESKTOP);
  const page = watch(await context.newPage(), "filters");
  step("smoothing and sharpening, 3 levels each: edge energy falls and rises in order; pixel values untouched");
  await page.goto(base + TARGET);
  await signIn(page, TARGET);
  await ready(page);
  await choose(page, "#layout", "1x1");
  const raw = await pixelSum(page);
  const none = await sharpness(page);
  const edges = {};
  for (const f of ["smooth1", "smooth2", "smooth3", "sharpen1", "sharpen2", "sharpen3"]) {
    await choose(page, "#filter", f);
    await page.waitForFunction((x) => window.__viewer.filter === x, f);
    await page.waitForTimeout(100); // a filter's first use is resolved asynchronously by the browser
    edges[f] = (await sharpness(page)).edge;
    if (f === "sharpen2") {
      assert.match(await corner(page, "br"), /Sharpen 2/);
      await shot(page, "sharpen2");
    }
  }
  console.log(`  edge energy: none ${none.edge.toFixed(3)}, ${Object.entries(edges).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(", ")}`);
  assert.ok(edges.smooth1 < none.edge && edges.smooth2 < edges.smooth1 && edges.smooth3 < edges.smooth2, "smoothing is not monotonic");
  assert.ok(edges.sharpen1 > none.edge && edges.sharpen2 > edges.sharpen1 && edges.sharpen3 > edges.sharpen2, "sharpening is not monotonic");
  assert.equal(await pixelSum(page), raw, "a display filter changed the pixel data");
  await choose(page, "#filter", "");
  await page.waitForFunction(() => window.__viewer.filter === "");
  assert.ok(Math.abs((await sharpness(page)).edge - none.edge) < 1e-9, "no filter is not the original picture");
  assert.doesNotMatch(await corner(page, "br"), /Sharpen|Smooth/);

  step("one-click X-ray enhancement on the DX: more contrast and more detail, shown in the overlay");
  await page.click(".series-panel .series >> nth=3");
  await page.waitForFunction(() => /Chest PA/.test(document.querySelector("#vp0 + .overlay .corner.bl")?.innerText || ""));
  await page.waitForTimeout(300);
  const plain = await sharpness(page, 0, true);
  await shot(page, "dx-plain");
  await press(page, "#act-xray");
  await page.waitForFunction(() => window.__viewer.filter === "xray");
  await page.waitForTimeout(100);
  const enhanced = await sharpness(page, 0, true);
  console.log(`  DX: sd ${plain.sd.toFixed(2)} → ${enhanced.sd.toFixed(2)}, edge ${plain.edge.toFixed(3)} → ${enhanced.edge.toFixed(3)}`);
  assert.ok(enhanced.sd > plain.sd * 1.25, "the enhancement did not raise the contrast");
  assert.ok(enhanced.edge > plain.edge * 1.5, "the enhancement did not bring out detail");
  assert.match(await corner(page, "br"), /X-ray enhanced/);
  // no bright rim where the image meets the black around it: the band along the image's left edge
  // stays as bright as the tissue just inside it (as it is without the enhancement)
  const rim = (inner) => page.evaluate(([inside]) => {
    const vp = window.__viewer.viewport(0), c = window.__viewer.shownImage(0);
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    const id = vp.getCurrentImageId(), img = vp.getCornerstoneImage();
    let sum = 0, n = 0;
    for (let r = 20; r < img.rows - 20; r += 4) {
      const [x, y] = vp.worldToCanvas(window.__viewer.imageToWorld(id, [inside, r]));
      sum += d[4 * (Math.round(y) * c.width + Math.round(x))]; n++;
    }
    return sum / n;
  }, [inner]);
  const edgeBand = await rim(3), tissue = await rim(12);
  console.log(`  enhanced DX: left edge band ${edgeBand.toFixed(1)}, 12 px inside ${tissue.toFixed(1)}`);
  assert.ok(Math.abs(edgeBand - tissue) < 12, "a bright (or dark) rim along the image edge");
  assert.match(await page.getAttribute("#act-xray", "class"), /\bon\b/);
  await shot(page, "dx-xray");
  await press(page, "#act-xray");
  await page.waitForFunction(() => window.__viewer.filter === "");
  await context.close();
}

/** The image's bounding box on screen (CSS px, relative to the viewport) and one pixel's size. */
function imageBox(page, slot = 0) {
  return page.evaluate((s) => {
    const vp = window.__viewer.viewport(s);
    const img = vp.getCornerstoneImage();
    const id = vp.getCurrentImageId();
    const at = (x, y) => vp.worldToCanvas(window.__viewer.imageToWorld(id, [x, y]));
    const c = [at(0, 0), at(img.columns, 0), at(0, img.rows), at(img.columns, img.rows)];
    const xs = c.map((p) => p[0]), ys = c.map((p) => p[1]);
    const [p, q] = [at(0, 0), at(1, 0)];
    return { w: Math.max(...xs) - Math.min(...xs), h: Math.max(...ys) - Math.min(...ys), left: Math.min(...xs), top: Math.min(...ys),
      W: vp.element.clientWidth, H: vp.element.clientHeight, pixel: Math.hypot(q[0] - p[0], q[1] - p[1]), cols: img.columns, rows: img.rows };
  }, slot);
}

/** Mean column (image pixels) of the dark pixels of the image shown in `slot`. */
function darkColumn(page, slot) {
  return page.evaluate((s) => {
    const vp = window.__viewer.viewport(s);
    const c = window.__viewer.shownImage(s);
    const scale = c.width / vp.element.clientWidth;
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    const img = vp.getCornerstoneImage();
    const id = vp.getCurrentImageId();
    let sum = 0, n = 0;
    for (let r = 2; r < img.rows - 2; r += 2) for (let col = 2; col < img.columns - 2; col += 2) {
      const [x, y] = vp.worldToCanvas(window.__viewer.imageToWorld(id, [col + 0.5, r + 0.5]));
      const v = d[4 * (Math.round(y * scale) * c.width + Math.round(x * scale))];
      if (v < 80) { sum += col; n++; }
    }
    return n ? sum / n : NaN;
  }, slot);
}

async function layouts(browser) {
  const context = await browser.newContext(DESKTOP);
  const page = watch(await context.newPage(), "layouts");
  await page.goto(base + TARGET);
  await signIn(page, TARGET);
  await ready(page);
  step("layouts up to 3×3: nine viewports, each showing a series");
  await choose(page, "#layout", "3x3");
  await page.waitForFunction(() => document.querySelectorAll(".cell:not([hidden])").length === 9);
  await imageIs(page, 1, 8);
  const cells = await page.evaluate(() => [...document.querySelectorAll(".cell:not([hidden]) .vp")].map((e) => e.getBoundingClientRect()).map((r) => [Math.round(r.width), Math.round(r.height)]));
  assert.equal(new Set(cells.map(String)).size <= 2, true, "the 3×3 cells differ in size: " + JSON.stringify(cells));
  await shot(page, "layout-3x3");

  step("custom layout from the rows × columns picker: 2 × 4");
  await choose(page, "#layout", "custom");
  await page.locator("#layout-dialog[open]").waitFor();
  await page.hover("#pick-2x4");
  assert.equal(await page.locator(".pick-cell.in").count(), 8);
  await shot(page, "layout-picker");
  await page.click("#pick-2x4");
  await page.waitForFunction(() => window.__viewer.layout === "2x4" && document.querySelectorAll(".cell:not([hidden])").length === 8);
  assert.equal(await page.inputValue("#layout"), "2x4");
  await imageIs(page, 1, 7);

  step("drag a series from the panel into a viewport");
  await choose(page, "#layout", "1x2");
  await page.waitForFunction(() => document.querySelectorAll(".cell:not([hidden])").length === 2);
  await page.dragAndDrop(".series-panel .series >> nth=4", "#vp1");
  await page.waitForFunction(() => /Coronary run/.test(document.querySelector("#vp1 + .overlay .corner.bl")?.innerText || ""));
  await imageIs(page, 1, 1);
  assert.match(await corner(page, "bl", 1), new RegExp(`Im: 1/${P.xaFrames}`));

  step("zoom modes on the DX (taller than wide): fit, fill, fit width, fit height, 1:1");
  await page.click("#vp0");
  await page.click(".series-panel .series >> nth=3");
  await page.waitForFunction(() => /Chest PA/.test(document.querySelector("#vp0 + .overlay .corner.bl")?.innerText || ""));
  const near = (a, b, what) => assert.ok(Math.abs(a - b) <= 1.5, `${what}: ${a} vs ${b}`);
  const modes = {};
  for (const mode of ["width", "height", "fill", "one", "fit"]) {
    await choose(page, "#zoom-mode", mode);
    await page.waitForFunction((m) => window.__viewer.zoomMode === m, mode);
    const b = await imageBox(page, 0);
    modes[mode] = b;
    if (mode === "width") near(b.w, b.W, "fit width");
    if (mode === "height") near(b.h, b.H, "fit height");
    if (mode === "fill") { assert.ok(b.w >= b.W - 1.5 && b.h >= b.H - 1.5, "fill leaves a gap"); assert.ok(Math.abs(b.w - b.W) <= 1.5 || Math.abs(b.h - b.H) <= 1.5); }
    if (mode === "fit") { assert.ok(b.w <= b.W + 1.5 && b.h <= b.H + 1.5, "fit cuts the image"); assert.ok(Math.abs(b.w - b.W) <= 1.5 || Math.abs(b.h - b.H) <= 1.5); }
    if (mode === "one") assert.ok(Math.abs(b.pixel - 1) < 0.01, `1:1 shows a pixel as ${b.pixel} px`);
    if (mode === "fill") await shot(page, "zoom-fill");
  }
  console.log("  zoom modes (image on screen, viewport):", Object.entries(modes).map(([m, b]) => `${m} ${b.w.toFixed(0)}×${b.h.toFixed(0)} in ${b.W}×${b.H}`).join("; "));
  assert.ok(Math.abs(modes.width.w / modes.width.h - P.dx[1] / P.dx[0]) < 0.01, "the aspect ratio changed");

  step("multi-frame XA run: frames are the run's frames; cine plays it at its own rate");
  await page.click("#vp1");
  const first = await darkColumn(page, 1);
  for (let i = 0; i < 5; i++) await page.keyboard.press("ArrowDown");
  await imageIs(page, 6, 1);
  await page.waitForTimeout(200);
  const sixth = await darkColumn(page, 1);
  console.log(`  contrast bolus column: frame 1 ${first.toFixed(1)}, frame 6 ${sixth.toFixed(1)} (expected 14 → 59)`);
  assert.ok(Math.abs(first - 14) <= 2 && Math.abs(sixth - 59) <= 2, "the frames are not the run's frames");
  assert.equal(await page.inputValue("#fps"), "15", "the run's cine rate");
  await page.keyboard.press(" ");
  await page.waitForFunction(() => window.__viewer.cine === true);
  await page.waitForFunction(() => !/Im: 6\//.test(document.querySelector("#vp1 + .overlay .corner.bl").innerText));
  await page.waitForFunction(() => /Im: (1|2|3)\//.test(document.querySelector("#vp1 + .overlay .corner.bl").innerText)); // it loops
  await shot(page, "cine-xa");
  await page.keyboard.press(" ");
  await page.waitForFunction(() => window.__viewer.cine === false);
  await context.close();
}

async function exports(browser) {
  const context = await browser.newContext(DESKTOP);
  const page = watch(await context.newPage(), "exports");
  await page.goto(base + TARGET);
  await signIn(page, TARGET);
  await ready(page);
  await choose(page, "#layout", "1x1");
  await page.waitForFunction(() => document.querySelectorAll(".cell:not([hidden])").length === 1);
  await page.click(".series-panel .series >> nth=0");
  await imageIs(page, 1);
  step("export the viewport as PNG, JPEG, BMP and TIFF (measurements and overlay burnt in)");
  const size = await page.evaluate(() => { const c = window.__viewer.viewport(0).getCanvas(); return [c.width, c.height]; });
  const files = {};
  for (const format of ["png", "jpeg", "bmp", "tiff"]) {
    await choose(page, "#export-format", format);
    const [download] = await Promise.all([page.waitForEvent("download"), press(page, "#act-export")]);
    const name = download.suggestedFilename();
    assert.match(name, new RegExp(`^radcloud-RCV-0042-se2-1\\.${{ png: "png", jpeg: "jpg", bmp: "bmp", tiff: "tif" }[format]}$`));
    await download.saveAs(join(P.downloads, name));
    files[format] = name;
  }
  step("export the whole series (24 images) as one ZIP of PNGs");
  await choose(page, "#export-format", "png");
  const [zipped] = await Promise.all([page.waitForEvent("download", { timeout: 120000 }), press(page, "#act-export-series")]);
  assert.equal(zipped.suggestedFilename(), "radcloud-RCV-0042-se2-png.zip");
  await zipped.saveAs(join(P.downloads, zipped.suggestedFilename()));
  files.series = zipped.suggestedFilename();
  await page.waitForFunction(() => window.__viewer.exporting === false);
  assert.match(await page.locator("#save-status").innerText(), /Exported 24 images/);
  await imageIs(page, 1); // back where it was
  console.log("EXPORTS " + JSON.stringify({ files, size }));
  await context.close();
}

async function cursorAndHanging(browser) {
  const context = await browser.newContext(DESKTOP);
  const page = watch(await context.newPage(), "cursor");
  await page.goto(base + TARGET);
  await signIn(page, TARGET);
  await ready(page);
  step("3D cursor: a point on the axial image takes the coronal viewport to the slice through it, marked");
  await choose(page, "#layout", "1x2");
  await page.waitForFunction(() => document.querySelectorAll(".cell:not([hidden])").length === 2);
  await page.click("#vp0");
  await page.click(".series-panel .series >> nth=0");
  await page.click("#vp1");
  await page.click(".series-panel .series >> nth=2");
  await page.waitForFunction(() => /Phantom coronal/.test(document.querySelector("#vp1 + .overlay .corner.bl")?.innerText || ""));
  await page.keyboard.press("End"); // coronal image 3 (y = +10 mm), away from the point
  await imageIs(page, 3, 1);
  await page.click("#vp0");
  await imageIs(page, 1, 0);
  await page.keyboard.press("q");
  await page.waitForFunction(() => window.__viewer.cursor === true);
  // axial image 1 is z = -30 mm; pixel row 128.5 is y = 0 (centre of the coronal image 2), column 100
  await page.mouse.click(...(await screenPoint(page, 100, 128.5, 0)));
  await imageIs(page, 2, 1);
  const at = await page.evaluate(() => window.__viewer.cursorAt);
  console.log(`  cursor at ${at.map((v) => v.toFixed(2)).join(", ")} mm`);
  assert.ok(Math.abs(at[1]) < 0.4 && Math.abs(at[2] + 30) < 0.01, "the point is not where it was clicked");
  await page.locator(".cell[data-slot='1'] .cursor3d:not([hidden])").waitFor();
  const box = await page.locator(".cell[data-slot='1'] .cursor3d").boundingBox();
  const mark = { x: box.x + box.width / 2, y: box.y + box.height / 2 };
  const want = await screenPoint(page, 100, (P.coronalTop + 30) / P.spacing, 1); // z = -30 on the coronal image
  console.log(`  mark on the coronal at ${mark.x.toFixed(1)}, ${mark.y.toFixed(1)}; expected ${want[0].toFixed(1)}, ${want[1].toFixed(1)}`);
  assert.ok(Math.abs(mark.x - want[0]) <= 2 && Math.abs(mark.y - want[1]) <= 2, "the mark is not on the point");
  await shot(page, "cursor3d");
  step("3D cursor the other way: a point on the coronal at z = -20 mm takes the axial to image 5");
  await page.mouse.click(...(await screenPoint(page, 60, (P.coronalTop + 20) / P.spacing, 1)));
  await imageIs(page, 5, 0);
  assert.match(await corner(page, "bl", 0), /Z: -20\.0/);
  await page.locator(".cell[data-slot='0'] .cursor3d:not([hidden])").waitFor();
  assert.equal(await page.evaluate(() => window.__viewer.tool), "length", "the cursor changed the tool in hand");
  await page.keyboard.press("q");
  await page.waitForFunction(() => window.__viewer.cursor === false && document.querySelectorAll(".cursor3d:not([hidden])").length === 0);

  step("hanging protocol as you see it: XA left, DX right in 1×2, saved for CT studies, applied on open");
  await page.click("#vp0");
  await page.click(".series-panel .series >> nth=4");
  await page.click("#vp1");
  await page.click(".series-panel .series >> nth=3");
  await page.waitForFunction(() => /Chest PA/.test(document.querySelector("#vp1 + .overlay .corner.bl")?.innerText || ""));
  const saves = await page.evaluate(() => window.__viewer.saved || 0);
  await press(page, "#act-hanging");
  await page.waitForFunction((n) => (window.__viewer.saved || 0) > n, saves);
  assert.match(await page.locator("#save-status").innerText(), /Hanging protocol saved for CT/);
  await choose(page, "#layout", "2x2"); // the last layout used no longer decides
  await page.waitForFunction((n) => (window.__viewer.saved || 0) > n + 1, saves);
  await page.reload();
  await ready(page);
  assert.equal(await page.evaluate(() => window.__viewer.layout), "1x2");
  assert.equal(await page.evaluate(() => window.__viewer.hanging), "CT:");
  await page.waitForFunction(() => /Coronary run/.test(document.querySelector("#vp0 + .overlay .corner.bl")?.innerText || ""));
  await page.waitForFunction(() => /Chest PA/.test(document.querySelector("#vp1 + .overlay .corner.bl")?.innerText || ""));
  await shot(page, "hanging");
  await context.close();
}

async function priors(browser) {
  const context = await browser.newContext(DESKTOP);
  const page = watch(await context.newPage(), "priors");
  await page.goto(base + TARGET);
  await signIn(page, TARGET);
  await ready(page);
  step("a prior study of the patient next to today's, scrolled together once lined up");
  await page.waitForFunction(() => window.__viewer.priors > 0);
  await choose(page, "#layout", "1x2");
  await page.waitForFunction(() => document.querySelectorAll(".cell:not([hidden])").length === 2);
  await page.click("#vp0");
  await page.click(".series-panel > .series >> nth=0");
  await page.waitForFunction(() => /Phantom 2\.5 mm/.test(document.querySelector("#vp0 + .overlay .corner.bl")?.innerText || ""));
  await page.click("#vp1");
  await page.click(`.series-panel .prior[data-study="${P.priorStudy}"] .series >> nth=0`);
  await page.waitForFunction(() => /Phantom 5 mm/.test(document.querySelector("#vp1 + .overlay .corner.bl")?.innerText || ""));
  await imageIs(page, 1, 1);
  assert.match(await corner(page, "tr", 1), /Prior[\s\S]*2025-03-10/);
  // today's image 1 is z -30 mm, the prior's image 1 is z +20 mm in its own coordinates: the same anatomy
  await page.click("#vp0");
  await page.keyboard.press("Home");
  await imageIs(page, 1, 0);
  await press(page, "#act-link");
  const box = await page.locator("#vp0").boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  for (let i = 0; i < 4; i++) await page.mouse.wheel(0, 120);
  await imageIs(page, 5, 0);
  await imageIs(page, 3, 1); // 10 mm further in the prior too: its image 3
  const z0 = Number((await corner(page, "bl", 0)).match(/Z: (-?[\d.]+)/)[1]), z1 = Number((await corner(page, "bl", 1)).match(/Z: (-?[\d.]+)/)[1]);
  console.log(`  linked with a prior: today z ${z0}, prior z ${z1} (offset ${z1 - z0} mm kept)`);
  assert.equal(z1 - z0, 50);
  await shot(page, "prior-linked");
  await press(page, "#act-link");
  // a measurement on the prior is not saved into today's study
  await page.click("#vp1");
  await press(page, "#tool-length");
  await drag(page, await screenPoint(page, 40, 40, 1), await screenPoint(page, 120, 40, 1));
  await page.waitForFunction((p) => window.__viewer.annotations().some((a) => a.tool === "Length" && a.ref.includes(p)), P.priorStudy);
  const priorSeries = (await page.evaluate(() => window.__viewer.viewport(1).getCurrentImageId())).match(/series\/([\d.]+)/)[1];
  const st = await state(page);
  assert.ok(st.annotations.length > 0 && st.annotations.every((a) => a.image.series !== priorSeries),
    "a measurement on the prior would be saved into today's study");
  await context.close();
}

async function mammography(browser) {
  const context = await browser.newContext(DESKTOP);
  const page = watch(await context.newPage(), "mammo");
  const target = "/viewer?study=" + P.mgStudy;
  step("mammography hanging: R CC | L CC over R MLO | L MLO, chest walls back to back");
  await page.goto(base + target);
  await signIn(page, target);
  await ready(page);
  assert.deepEqual(await page.evaluate(() => window.__viewer.mammo), ["R CC", "L CC", "R MLO", "L MLO"]);
  assert.equal(await page.evaluate(() => window.__viewer.layout), "2x2");
  for (const [i, label] of ["R CC", "L CC", "R MLO", "L MLO"].entries()) {
    await page.waitForFunction(([k, l]) => (document.querySelector(`#vp${k} + .overlay .corner.bl`)?.innerText || "").startsWith(l), [i, label]);
  }
  const flips = await page.evaluate(() => [0, 1, 2, 3].map((i) => !!window.__viewer.viewport(i).getViewPresentation().flipHorizontal));
  assert.deepEqual(flips, [true, false, false, true], "flips as the orientations need");
  // where the breast tissue lies on screen, as a fraction of the image's width (0 = left edge)
  const tissue = (slot) => page.evaluate((s) => {
    const vp = window.__viewer.viewport(s), c = window.__viewer.shownImage(s);
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    const id = vp.getCurrentImageId();
    const [a, b] = [window.__viewer.imageToWorld(id, [0, 80]), window.__viewer.imageToWorld(id, [128, 80])].map((w) => vp.worldToCanvas(w));
    let sum = 0, n = 0;
    for (let k = 0; k <= 100; k++) {
      const x = a[0] + ((b[0] - a[0]) * k) / 100, y = a[1] + ((b[1] - a[1]) * k) / 100;
      const v = d[4 * (Math.round(y) * c.width + Math.round(x))];
      if (v > 128) { sum += (x - Math.min(a[0], b[0])) / Math.abs(b[0] - a[0]); n++; }
    }
    return sum / n;
  }, slot);
  const sides = [];
  for (let i = 0; i < 4; i++) sides.push(await tissue(i));
  console.log("  tissue centre across each image (0 = left):", sides.map((v) => v.toFixed(2)).join(", "));
  assert.ok(sides[0] > 0.55 && sides[2] > 0.55, "a right breast's chest wall is not on its right (the middle)");
  assert.ok(sides[1] < 0.45 && sides[3] < 0.45, "a left breast's chest wall is not on its left (the middle)");
  // the images are panned to the middle after they are shown: wait for it (a busy CI machine)
  const against = (b, i) => (i % 2 === 0 ? Math.abs(b.left + b.w - b.W) : Math.abs(b.left)) <= 1.5;
  let boxes = [];
  for (let tries = 0; tries < 100; tries++) {
    boxes = [];
    for (let i = 0; i < 4; i++) boxes.push(await imageBox(page, i));
    if (boxes.every(against)) break;
    await page.waitForTimeout(100);
  }
  for (const i of [0, 2]) assert.ok(Math.abs(boxes[i].left + boxes[i].w - boxes[i].W) <= 1.5, `R image ${i} is not against the middle: ${JSON.stringify(boxes[i])}`);
  for (const i of [1, 3]) assert.ok(Math.abs(boxes[i].left) <= 1.5, `L image ${i} is not against the middle: ${JSON.stringify(boxes[i])}`);
  await shot(page, "mammo-hanging");

  step("mammography: zoom and pan of one breast mirrored on the other");
  await page.click("#vp0");
  await choose(page, "#zoom-mode", "one");
  await page.waitForFunction(() => Math.abs(window.__viewer.viewport(1).getZoom() - window.__viewer.viewport(0).getZoom()) < 1e-6
    && window.__viewer.viewport(0).getZoom() < 0.99);
  const before = [await imageBox(page, 0), await imageBox(page, 1)];
  const vp0 = await page.locator("#vp0").boundingBox();
  await press(page, "#tool-pan");
  await drag(page, [vp0.x + vp0.width / 2, vp0.y + vp0.height / 2], [vp0.x + vp0.width / 2 + 60, vp0.y + vp0.height / 2 + 30]);
  await page.waitForTimeout(200);
  const after = [await imageBox(page, 0), await imageBox(page, 1)];
  const moved = after.map((b, k) => [b.left - before[k].left, b.top - before[k].top]);
  console.log(`  pan: R CC moved ${moved[0].map((v) => v.toFixed(1))}, L CC moved ${moved[1].map((v) => v.toFixed(1))}`);
  assert.ok(moved[0][0] > 30 && Math.abs(moved[1][0] + moved[0][0]) <= 2 && Math.abs(moved[1][1] - moved[0][1]) <= 2, "the pan is not mirrored");
  await shot(page, "mammo-mirrored");
  await context.close();
}

await run([annotations, filters, layouts, exports, cursorAndHanging, priors, mammography], "ok: viewer tools passed");
