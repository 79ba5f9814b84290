// Real-browser scenario for the study list and the viewer (Debian Chromium via playwright-core).
//
//   node tests/js/viewer.spec.mjs <base-url> <screenshot-dir>
//
// Environment: ADMIN_PASSWORD, STUDY_UID (the phantom study), PHANTOM (JSON: its geometry, see
// tests/test_viewer_ui.py, and where to save downloads).  Prints "BUNDLE [names]" (assets the viewer
// loaded at start) and "LOAD …" (times), and "ok: study list and viewer passed" when every step passed.

import { join } from "node:path";
import assert from "node:assert/strict";
import { press, choose } from "./toolbar.mjs";
import {
  base, P, STUDY_UID, DESKTOP, step, watch, shot, signIn, ready, corner, screenPoint, drag, run,
} from "./viewer_harness.mjs";

const PHONE = {
  viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, locale: "zh-CN",
  userAgent: "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Mobile Safari/537.36",
};

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

/** A mouse drag through image pixels `points` ([col, row] …), in small steps (freehand tools sample the path). */
async function dragPath(page, points, slot = 0) {
  const screen = [];
  for (const [c, r] of points) screen.push(await screenPoint(page, c, r, slot));
  await page.mouse.move(...screen[0]);
  await page.mouse.down();
  for (let k = 1; k < screen.length; k++) {
    const [x0, y0] = screen[k - 1], [x1, y1] = screen[k];
    const n = Math.max(2, Math.ceil(Math.hypot(x1 - x0, y1 - y0) / 4));
    for (let i = 1; i <= n; i++) await page.mouse.move(x0 + ((x1 - x0) * i) / n, y0 + ((y1 - y0) * i) / n);
  }
  await page.mouse.up();
}

/** How many sampled canvas pixels are coloured (channels differ), i.e. a pseudo-colour map is on. */
function chroma(page, slot = 0) {
  return page.evaluate((s) => {
    const src = window.__viewer.viewport(s).getCanvas();
    const c = document.createElement("canvas");
    c.width = src.width; c.height = src.height;
    const ctx = c.getContext("2d");
    ctx.drawImage(src, 0, 0);
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4 * 7) if (Math.max(Math.abs(d[i] - d[i + 1]), Math.abs(d[i + 1] - d[i + 2])) > 30) n++;
    return n;
  }, slot);
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
  await page.click(`tr.study[data-uid="${STUDY_UID}"] .expand`); // series thumbnails on demand
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
  await listed(() => page.click('th[data-sort="patient_id"]'));
  assert.equal(await page.getAttribute('th[data-sort="patient_id"]', "aria-sort"), "ascending");
  assert.equal(await page.getAttribute(`tr.study[data-uid="${STUDY_UID}"] .expand`, "aria-expanded"), "true", "still expanded after sorting");
  await page.waitForFunction(() => [...document.querySelectorAll(".thumb img")].some((i) => i.complete && i.naturalWidth > 0));
  await shot(page, "desktop-list");

  step("open the study: first image, then the overlay");
  const clicked = Date.now();
  await page.dblclick(`tr.study[data-uid="${STUDY_UID}"]`);
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
  await press(page, "#tool-length");
  const [cx, cy, r] = P.disc;
  const a = await screenPoint(page, 40, 200), b = await screenPoint(page, 200, 200);
  await drag(page, a, b);
  const want = 160 * P.spacing;
  // the text box follows the last render after the drag: wait for it to settle
  const shown = await settled(page, /([\d.]+)\s*mm/, (v) => Math.abs(v - want) <= P.spacing);
  console.log(`  length shown: ${shown} mm (expected ${want} ± ${P.spacing})`);
  assert.ok(Math.abs(shown - want) <= P.spacing, `length shows ${shown} mm, expected ${want} ± ${P.spacing}`);

  step("ellipse ROI inside the 100 HU disc");
  await press(page, "#tool-ellipse");
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
  await press(page, "#tool-probe");
  const pt = await screenPoint(page, cx, cy);
  await page.mouse.click(pt[0], pt[1]);
  await page.waitForFunction(() => window.__viewer.annotations().some((x) => x.tool === "Probe"
    && Object.values(x.stats || {}).some((st) => st.value !== undefined)), null, { timeout: 5000 }).catch(() => {});
  const probe = await page.evaluate(() => window.__viewer.annotations().find((x) => x.tool === "Probe"));
  const probed = Object.values(probe.stats).find((st) => st.value !== undefined) || {};
  console.log("  probe", JSON.stringify(probed));
  assert.equal(probed.value, P.discHU, "the probe shows the disc's CT value");
  await press(page, "#tool-wl");
  await shot(page, "desktop-viewer");

  step("export the viewport as PNG");
  const [download] = await Promise.all([page.waitForEvent("download"), press(page, "#act-export")]);
  assert.match(download.suggestedFilename(), /\.png$/);
  await download.saveAs(join(P.downloads, download.suggestedFilename()));

  step("the toolbar: one row of groups; a drop-down closes on a choice; the tool in hand shows on its group");
  const bar = await page.locator("#toolbar").boundingBox();
  assert.ok(bar.height < 50, "the toolbar is more than one row: " + JSON.stringify(bar));
  assert.equal(await page.locator("#measure-main").innerText(), "Probe", "the last measurement tool used");
  assert.doesNotMatch(await page.getAttribute("#measure-main", "class"), /\bon\b/);
  await page.click("#measure-main"); // one click takes the last measurement tool again
  assert.equal(await page.evaluate(() => window.__viewer.tool), "probe");
  assert.match(await page.getAttribute("#measure-main", "class"), /\bon\b/);
  await page.click('[data-menu-open="window"]');
  await page.locator('[data-menu="window"] #preset').waitFor();
  await shot(page, "desktop-viewer-menu");
  await page.keyboard.press("Escape");
  assert.ok(await page.locator('[data-menu="window"]').isHidden(), "Escape closes the menu");
  await press(page, "#tool-wl");
  assert.doesNotMatch(await page.getAttribute("#measure-main", "class"), /\bon\b/);
  step("invert, rotate, zoom 1:1, reset; layouts; language");
  await press(page, "#act-invert");
  assert.ok(await page.locator('[data-menu="window"]').isHidden(), "a choice closes the menu");
  await page.waitForFunction(() => /INV/.test(document.querySelector("#vp0 + .overlay .corner.br").innerText));
  await choose(page, "#zoom-mode", "one");
  await page.waitForFunction(() => !/Zoom: 1\.00/.test(document.querySelector("#vp0 + .overlay .corner.br").innerText));
  await press(page, "#act-reset");
  await page.waitForFunction(() => /Zoom: 1\.00/.test(document.querySelector("#vp0 + .overlay .corner.br").innerText) && !/INV/.test(document.querySelector("#vp0 + .overlay .corner.br").innerText));
  await choose(page, "#layout", "2x2");
  await page.waitForFunction(() => document.querySelectorAll(".cell:not([hidden])").length === 4);
  await page.waitForFunction(() => /Im: 1\//.test(document.querySelector("#vp3 + .overlay .corner.bl")?.innerText || ""));
  assert.ok((await canvasStats(page, 3)).lit > 500, "viewport 4 is blank");
  await page.click("#lang");
  assert.equal(await page.locator("#tool-length").innerText(), "测距");
  await shot(page, "desktop-viewer-2x2-zh");
  await page.click("#lang");
  await context.close();
}

/** Issue 4: more measurements, magnifier, colour maps, settings kept on the server, linked scrolling, overlay per modality. */
async function viewer2(browser) {
  const target = "/viewer?study=" + STUDY_UID;
  const context = await browser.newContext(DESKTOP);
  let page = watch(await context.newPage(), "desktop2");
  const saved = () => page.evaluate(() => window.__viewer.saved || 0);
  const whenSaved = async (action) => {
    const n = await saved();
    await action();
    await page.waitForFunction((k) => (window.__viewer.saved || 0) > k, n);
  };
  step("viewer 2: the layout chosen in the last session (2×2) comes back from the server settings");
  await page.goto(base + target);
  await signIn(page, target);
  await ready(page);
  assert.equal(await page.evaluate(() => window.__viewer.layout), "2x2");
  assert.equal(await page.inputValue("#layout"), "2x2");
  await whenSaved(() => choose(page, "#layout", "1x2"));
  await page.waitForFunction(() => /Im: 1\/12/.test(document.querySelector("#vp1 + .overlay .corner.bl")?.innerText || ""));
  await press(page, "#act-clear");

  step("Cobb angle between a horizontal line and one rising 40 in 160 pixels: 14.04°");
  await press(page, "#tool-cobb");
  await drag(page, await screenPoint(page, 40, 100), await screenPoint(page, 200, 100));
  await drag(page, await screenPoint(page, 40, 180), await screenPoint(page, 200, 140));
  const cobbWant = (Math.atan(40 / 160) * 180) / Math.PI;
  const cobb = await settled(page, /([\d.]+)\s*°/, (v) => Math.abs(v - cobbWant) <= 0.5);
  console.log(`  Cobb angle shown: ${cobb}° (expected ${cobbWant.toFixed(2)})`);
  assert.ok(Math.abs(cobb - cobbWant) <= 0.5, `Cobb shows ${cobb}°`);
  await press(page, "#act-clear");

  step("polyline: 80 + 80 pixels (an L) = 120 mm");
  await press(page, "#tool-polyline");
  await dragPath(page, [[40, 40], [120, 40], [120, 120]]);
  const polyWant = 160 * P.spacing;
  const poly = await settled(page, /([\d.]+)\s*mm/, (v) => Math.abs(v - polyWant) <= 2);
  console.log(`  polyline length shown: ${poly} mm (expected ${polyWant})`);
  assert.ok(Math.abs(poly - polyWant) <= 2, `polyline shows ${poly} mm`);
  await shot(page, "viewer2-desktop-polyline");
  await press(page, "#act-clear");

  step("freehand ROI: a closed 40×40-pixel square = 900 mm²");
  await press(page, "#tool-freehand");
  await dragPath(page, [[150, 150], [190, 150], [190, 190], [150, 190], [150, 152]]);
  const areaWant = (40 * P.spacing) ** 2;
  const area = await settled(page, /Area:\s*([\d.]+)\s*mm/, (v) => Math.abs(v - areaWant) <= areaWant * 0.05);
  console.log(`  freehand area shown: ${area} mm² (expected ${areaWant})`);
  assert.ok(Math.abs(area - areaWant) <= areaWant * 0.05, `freehand area shows ${area} mm²`);
  await press(page, "#act-clear");

  step("cardiothoracic ratio: thorax 200 pixels (150 mm), heart 80 pixels (60 mm), drawn a little askew → 0.40");
  await press(page, "#tool-ctr");
  await drag(page, await screenPoint(page, 28, 215), await screenPoint(page, 228, 222));
  await drag(page, await screenPoint(page, 60, 60), await screenPoint(page, 140, 54));
  const ctr = await settled(page, /CTR\s*([\d.]+)/, (v) => Math.abs(v - 0.4) <= 0.01);
  const lengths = (await svgText(page)).match(/[\d.]+ mm/g);
  const ratios = await page.evaluate(() => window.__viewer.ctr());
  console.log(`  CTR shown: ${ctr}; lengths ${JSON.stringify(lengths)}; computed ${JSON.stringify(ratios)}`);
  assert.ok(Math.abs(ctr - 0.4) <= 0.01, `CTR shows ${ctr}`);
  assert.ok(lengths.some((x) => Math.abs(parseFloat(x) - 150) <= 1) && lengths.some((x) => Math.abs(parseFloat(x) - 60) <= 1),
    "the CTR lengths are not horizontal: " + lengths);
  await shot(page, "viewer2-desktop-ctr");
  await press(page, "#act-clear");

  step("arrow annotation with text (typed into the viewer's own dialog)");
  await press(page, "#tool-arrow");
  await drag(page, await screenPoint(page, 60, 70), await screenPoint(page, 100, 110));
  await page.locator("#ask[open]").waitFor();
  await page.fill("#ask-input", "病灶 lesion");
  await page.click("#ask-ok");
  await page.waitForFunction(() => [...document.querySelectorAll("#vp0 svg text")].some((t) => t.textContent.includes("病灶 lesion")));
  assert.ok(await page.evaluate(() => window.__viewer.annotations().some((a) => a.tool === "ArrowAnnotate")));
  await shot(page, "viewer2-desktop-arrow");
  await press(page, "#act-clear");

  step("magnifier: the power setting is the zoom of the loupe (and it works a second time)");
  for (const power of [4, 2]) {
    await choose(page, "#magnify-power", String(power));
    await press(page, "#tool-magnify");
    const [x, y] = await screenPoint(page, P.disc[0], P.disc[1]);
    await page.mouse.move(x, y);
    await page.mouse.down();
    await page.locator("#vp0 .magnifyTool").waitFor();
    const ratio = await page.waitForFunction(([p]) => {
      const e = window.__viewer.engine;
      const m = e.getViewport("magnify-viewport");
      const r = m && window.__viewer.viewport(0).getCamera().parallelScale / m.getCamera().parallelScale;
      return r && Math.abs(r - p) < 0.01 ? r : false;
    }, [power], { timeout: 5000 }).then((h) => h.jsonValue());
    console.log(`  magnifier ${power}×: parallel scale ratio ${ratio}`);
    if (power === 4) await shot(page, "viewer2-desktop-magnify");
    await page.mouse.up();
    await page.waitForFunction(() => !document.querySelector("#vp0 .magnifyTool"));
  }

  step("pseudo-colour: hsv colours the picture, grey takes it back");
  assert.ok((await chroma(page)) < 50, "the picture is coloured before a colour map");
  await choose(page, "#colormap", "hsv");
  await page.waitForFunction(() => window.__viewer.colormap === "hsv");
  await page.waitForTimeout(200);
  const coloured = await chroma(page);
  await shot(page, "viewer2-desktop-hsv");
  await page.keyboard.press("ArrowDown"); // the map stays on the next image
  await page.waitForFunction(() => /Im: 2\//.test(document.querySelector("#vp0 + .overlay .corner.bl").innerText));
  await page.waitForTimeout(200);
  const next = await chroma(page);
  await press(page, "#act-reset"); // reset goes back to grey too
  await page.waitForTimeout(200);
  const afterReset = await chroma(page);
  console.log(`  coloured samples: hsv ${coloured}, next image ${next}, after reset ${afterReset}`);
  assert.ok(next > 1000 && afterReset < 50, "the colour map did not stay, or reset kept it");
  assert.equal(await page.inputValue("#colormap"), "Grayscale");
  await page.keyboard.press("ArrowUp");
  await choose(page, "#colormap", "Black-Body Radiation");
  await page.waitForTimeout(200);
  const hot = await chroma(page);
  await choose(page, "#colormap", "Grayscale");
  await page.waitForTimeout(200);
  const grey = await chroma(page);
  console.log(`  coloured samples: hsv ${coloured}, hot iron ${hot}, grey ${grey}`);
  assert.ok(coloured > 1000 && hot > 1000 && grey < 50, "colour maps did not apply");

  step("linked scrolling by slice position: 2.5 mm series left, 5 mm series (reverse order) right");
  await press(page, "#act-link");
  const box = await page.locator("#vp0").boundingBox();
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  for (let i = 0; i < 4; i++) await page.mouse.wheel(0, 120);
  await page.waitForFunction(() => /Im: 5\//.test(document.querySelector("#vp0 + .overlay .corner.bl").innerText));
  await page.waitForFunction(() => /Im: 10\/12/.test(document.querySelector("#vp1 + .overlay .corner.bl").innerText));
  const z0 = (await corner(page, "bl", 0)).match(/Z: (-?[\d.]+)/)[1], z1 = (await corner(page, "bl", 1)).match(/Z: (-?[\d.]+)/)[1];
  console.log(`  linked: left Im 5 at Z ${z0}, right Im 10/12 at Z ${z1}`);
  assert.equal(z0, "-20.0");
  assert.equal(z1, z0);
  await shot(page, "viewer2-desktop-linked");
  await press(page, "#act-link");
  await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
  await page.mouse.wheel(0, 120);
  await page.waitForFunction(() => /Im: 6\//.test(document.querySelector("#vp0 + .overlay .corner.bl").innerText));
  await page.waitForTimeout(300);
  assert.match(await corner(page, "bl", 1), /Im: 10\/12/, "unlinked, the right viewport still followed");

  step("reference lines: the left (axial) slice drawn across a coronal image on the right, at its height");
  await page.click("#vp1");
  await page.click(".series-panel .series >> nth=2");
  await page.waitForFunction(() => /Im: 1\/3/.test(document.querySelector("#vp1 + .overlay .corner.bl").innerText));
  await page.click("#vp0");
  await press(page, "#act-reflines");
  const refLine = async () => {
    await page.waitForFunction(() => document.querySelector("#vp1 svg line"));
    const z = Number((await corner(page, "bl", 0)).match(/Z: (-?[\d.]+)/)[1]);
    const [, want] = await screenPoint(page, 128, (P.coronalTop - z) / P.spacing, 1);
    for (let i = 0; i < 30; i++) {
      const ys = await page.evaluate(() => {
        const l = document.querySelector("#vp1 svg line");
        const top = document.querySelector("#vp1").getBoundingClientRect().top;
        return l ? [Number(l.getAttribute("y1")) + top, Number(l.getAttribute("y2")) + top] : [NaN, NaN];
      });
      if (ys.every((y) => Math.abs(y - want) <= 2)) return { z, want, ys };
      await page.waitForTimeout(100);
    }
    throw new Error(`the reference line is not at z ${z} (screen y ${want})`);
  };
  const line1 = await refLine();
  await page.keyboard.press("ArrowDown");
  await page.keyboard.press("ArrowDown");
  await page.waitForFunction((z) => !document.querySelector("#vp0 + .overlay .corner.bl").innerText.includes(`Z: ${z.toFixed(1)}`), line1.z);
  const line2 = await refLine();
  console.log(`  reference line at z ${line1.z} → y ${line1.ys[0].toFixed(1)}; after 2 slices z ${line2.z} → y ${line2.ys[0].toFixed(1)} (expected ${line2.want.toFixed(1)})`);
  assert.ok(line2.ys[0] < line1.ys[0], "the line did not move up the coronal image as z rose");
  await shot(page, "viewer2-desktop-reflines");
  await press(page, "#act-reflines");
  await page.waitForFunction(() => !document.querySelector("#vp1 svg line"));

  step("a custom W/L preset, saved to the server settings");
  await page.click("#vp0");
  await page.keyboard.press("3");
  await page.waitForFunction(() => /W: 2000 L: 400/.test(document.querySelector("#vp0 + .overlay .corner.br").innerText));
  await press(page, "#tool-wl");
  await drag(page, [box.x + box.width / 2, box.y + box.height / 2], [box.x + box.width / 2 - 60, box.y + box.height / 2 + 40]);
  const custom = (await corner(page, "br")).match(/W: (-?\d+) L: (-?\d+)/).slice(1).map(Number);
  assert.notDeepEqual(custom, [2000, 400]);
  await press(page, "#act-savepreset");
  await page.locator("#ask[open]").waitFor();
  await page.fill("#ask-input", "My window");
  await whenSaved(() => page.click("#ask-ok"));
  console.log(`  custom preset: W ${custom[0]} L ${custom[1]}`);

  step("overlay text per modality: hide patient ID and institution for CT");
  await press(page, "#act-overlay");
  await page.locator("#overlay-dialog[open]").waitFor();
  await shot(page, "viewer2-desktop-overlay-dialog");
  await page.uncheck("#ovf-pid");
  await page.uncheck("#ovf-institution");
  await whenSaved(() => page.click("#ovf-save"));
  assert.doesNotMatch(await corner(page, "tl"), /RCV-0042/);
  assert.doesNotMatch(await corner(page, "tr"), /Test Hospital/);
  assert.match(await corner(page, "tl"), /王小明/);
  await whenSaved(() => press(page, "#tool-ellipse")); // the last tool used

  const restored = async (p, label) => {
    assert.equal(await p.evaluate(() => window.__viewer.layout), "1x2", label + ": layout");
    assert.equal(await p.evaluate(() => window.__viewer.tool), "ellipse", label + ": tool");
    assert.ok(await p.locator("#tool-ellipse.on").count(), label + ": tool button");
    assert.doesNotMatch(await corner(p, "tl"), /RCV-0042/, label + ": overlay");
    assert.doesNotMatch(await corner(p, "tr"), /Test Hospital/, label + ": overlay");
    const value = await p.locator("#preset option", { hasText: "My window" }).getAttribute("value");
    await choose(p, "#preset", value);
    await p.waitForFunction(([w, l]) => new RegExp(`W: ${w} L: ${l}\\b`).test(document.querySelector("#vp0 + .overlay .corner.br").innerText), custom);
  };
  step("reload: layout, tool, custom preset and overlay choice are still there");
  await page.reload();
  await ready(page);
  await restored(page, "reload");

  step("a second browser (another PC) signed in as the same user sees them too");
  const other = await browser.newContext({ ...DESKTOP, locale: "zh-CN" });
  const page2 = watch(await other.newPage(), "desktop2-other");
  await page2.goto(base + target);
  await signIn(page2, target);
  await ready(page2);
  await restored(page2, "second browser");
  assert.equal(await page2.locator("#act-link").innerText(), "联动翻页");
  await shot(page2, "viewer2-desktop-zh");
  // put the overlay back for the rest of the run
  page = page2;
  await press(page2, "#act-overlay");
  await page2.check("#ovf-pid");
  await page2.check("#ovf-institution");
  await whenSaved(() => page2.click("#ovf-save"));
  assert.match(await corner(page2, "tl"), /RCV-0042/);
  await other.close();
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
  await shot(page, "viewer2-phone");
  assert.equal(await page.evaluate(() => window.__viewer.tool), "scroll", "a phone starts on scroll");
  await page.click('[data-menu-open="tools"]'); // a drop-down stays on a phone's screen
  const menu = await page.locator('[data-menu="tools"]').boundingBox();
  assert.ok(menu.x >= 0 && menu.x + menu.width <= 390, "the tools menu leaves the phone's screen: " + JSON.stringify(menu));
  await shot(page, "viewer2-phone-menu");
  await page.keyboard.press("Escape");
  await press(page, "#act-overlay"); // the settings dialog fits a phone
  await page.locator("#overlay-dialog[open]").waitFor();
  const dlg = await page.locator("#overlay-dialog").boundingBox();
  assert.ok(dlg.width <= 390 && dlg.x >= 0, "the overlay dialog does not fit the phone: " + JSON.stringify(dlg));
  await shot(page, "viewer2-phone-overlay-dialog");
  await page.click("#ovf-cancel");
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
  await page.locator("tr.study").first().waitFor();
  await page.click("tr.study .expand");
  await page.waitForFunction(() => [...document.querySelectorAll(".thumb img")].some((i) => i.complete && i.naturalWidth > 0));
  await shot(page, "phone-list");
  await context.close();
}

await run([desktop, viewer2, phone], "ok: study list and viewer passed");
