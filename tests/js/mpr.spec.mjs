// The viewer's MPR / 3D layout (web/src/mpr.ts) against a real radcloud server holding the sphere
// phantom of tests/test_mpr_ui.py (PHANTOM: sphere centre and radius, bead centres, patient mm).
//
//   node tests/js/mpr.spec.mjs <base-url> <screenshot-dir>

import assert from "node:assert/strict";
import { base, STUDY_UID, P, DESKTOP, step, watch, shot, signIn, ready, drag, run } from "./viewer_harness.mjs";

const near = (a, b, tol) => a.every((x, i) => Math.abs(x - b[i]) <= tol);
const settled = async (page) => assert.ok(await page.evaluate(() => window.__mpr.settled()), "the viewports did not settle");
const mpr = (page, expr, arg) => page.evaluate(expr, arg);
const pane = (page, view) => page.evaluate((v) => window.__mpr.panes()[v], view);

/**
 * What a viewport shows: its picture's size, a fingerprint of its pixels, how many are bright
 * (grey > thr) and the bright connected blobs, biggest first ({n, x, y}: size and centroid in
 * image pixels), read back from the <img> the layout shows.
 */
function look(page, view, thr = 200) {
  return page.evaluate(([v, thr]) => {
    const img = document.querySelector(`.mpr-vp[data-view=${v}] img`);
    const w = img.naturalWidth, h = img.naturalHeight;
    const c = document.createElement("canvas");
    c.width = w; c.height = h;
    const ctx = c.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, w, h).data;
    const grey = new Float32Array(w * h);
    let hash = 2166136261, bright = 0, sum = 0;
    for (let i = 0; i < w * h; i++) {
      grey[i] = (d[4 * i] + d[4 * i + 1] + d[4 * i + 2]) / 3;
      sum += grey[i];
      if (grey[i] > thr) bright++;
      hash = Math.imul(hash ^ d[4 * i], 16777619) >>> 0;
    }
    const seen = new Uint8Array(w * h);
    const blobs = [];
    for (let s = 0; s < w * h; s++) {
      if (seen[s] || grey[s] <= thr) continue;
      const stack = [s];
      seen[s] = 1;
      let n = 0, sx = 0, sy = 0;
      while (stack.length) {
        const i = stack.pop();
        const x = i % w, y = (i - x) / w;
        n++; sx += x; sy += y;
        for (const j of [x > 0 ? i - 1 : -1, x < w - 1 ? i + 1 : -1, y > 0 ? i - w : -1, y < h - 1 ? i + w : -1]) {
          if (j >= 0 && !seen[j] && grey[j] > thr) { seen[j] = 1; stack.push(j); }
        }
      }
      blobs.push({ n, x: sx / n, y: sy / n });
    }
    blobs.sort((a, b) => b.n - a.n);
    return { w, h, hash, bright, mean: sum / (w * h), blobs: blobs.slice(0, 6) };
  }, [view, thr]);
}
const screenOf = (page, view, x, y) => page.evaluate(([v, x, y]) => window.__mpr.screenOf(v, x, y), [view, x, y]);

async function desktop(browser) {
  const context = await browser.newContext(DESKTOP);
  const page = watch(await context.newPage(), "desktop");
  const next = `/viewer?study=${STUDY_UID}`;
  await page.goto(base + next);
  await signIn(page, next);
  await ready(page);

  step("enter MPR / 3D from the viewer's toolbar");
  const t0 = Date.now();
  await page.click("#act-mpr");
  await page.waitForFunction(() => window.__mpr && window.__mpr.status === "ready", null, { timeout: 120000 });
  await page.waitForFunction(() => ["axial", "coronal", "sagittal", "vr"].every((v) => window.__mpr.panes()[v].loads > 0), null, { timeout: 180000 });
  await settled(page);
  console.log(`FIGURE first MPR + VR pictures after the click: ${Date.now() - t0} ms (volume build and first compile included)`);
  assert.equal(await page.locator("#grid").isHidden(), true, "the 2D grid is hidden meanwhile");
  assert.equal(await page.locator("#toolbar").isHidden(), true, "and so are the 2D tools");
  for (const v of ["axial", "coronal", "sagittal"]) {
    const info = (await pane(page, v)).info;
    assert.equal(info.kind, "mpr");
    const box = await page.locator(`.mpr-vp[data-view=${v}]`).boundingBox();
    assert.ok(Math.abs(info.plane.width - box.width) <= 2 && Math.abs(info.plane.height - box.height) <= 2, `${v}: the picture is drawn for its viewport`);
  }
  await shot(page, "desktop");

  step("click the sphere's centre in the axial plane: the cross-hair lands on it everywhere");
  const ax = await look(page, "axial");
  const sphereBlob = ax.blobs[0];
  assert.ok(sphereBlob && ax.blobs.length >= 3, `the sphere and both beads show in the axial plane: ${JSON.stringify(ax.blobs)}`);
  const axPlane = (await pane(page, "axial")).info.plane;
  const [sx, sy] = await screenOf(page, "axial", sphereBlob.x, sphereBlob.y);
  await page.mouse.click(sx, sy);
  await page.waitForFunction(() => window.__mpr.crosshair);
  await settled(page);
  const ch = await mpr(page, () => window.__mpr.crosshair);
  console.log(`cursor at ${ch.cursor} (true centre ${P.sphere}), voxel ${ch.voxel}, value ${ch.value}`);
  assert.ok(near(ch.cursor, P.sphere, 1.0), `the picked point is within a voxel of the sphere's centre: ${ch.cursor}`);
  assert.equal(ch.inside, true);
  assert.equal(ch.value, 1000, "the CT value at the sphere's centre");
  for (const v of ["coronal", "sagittal"]) {
    const info = (await pane(page, v)).info;
    const [px, py, off] = await mpr(page, ([v, c]) => window.__mpr.toPixel(v, c), [v, ch.cursor]);
    assert.ok(Math.abs(off) < 1e-3, `${v} passes through the cursor`);
    const seen = await look(page, v);
    const blob = seen.blobs[0];
    const tol = 1.0 / info.plane.pixel_mm; // a voxel, in this picture's pixels
    console.log(`${v}: cross-hair at (${px.toFixed(1)}, ${py.toFixed(1)}), sphere seen at (${blob.x.toFixed(1)}, ${blob.y.toFixed(1)}), voxel = ${tol.toFixed(1)} px`);
    assert.ok(Math.hypot(px - blob.x, py - blob.y) <= tol, `${v}: the cross-hair lands on the sphere`);
    const r = Math.sqrt(blob.n / Math.PI) * info.plane.pixel_mm;
    assert.ok(Math.abs(r - P.sphereRadius) < 1.0, `${v}: the sphere is cut through its centre (radius ${r.toFixed(2)} mm)`);
  }
  await shot(page, "crosshair");

  step("W/L: a preset, then a drag; every plane shows the latest window");
  await page.selectOption("#mpr-wl", "-600,1500");
  await settled(page);
  for (const v of ["axial", "coronal", "sagittal"]) assert.deepEqual((await pane(page, v)).info.window, [-600, 1500], `${v}: lung window`);
  await page.click("#mpr-mode-wl");
  const box0 = await page.locator(".mpr-vp[data-view=coronal]").boundingBox();
  const from = [box0.x + 40, box0.y + 40];
  await page.mouse.move(from[0], from[1]);
  await page.mouse.down();
  for (let i = 1; i <= 30; i++) await page.mouse.move(from[0] + 4 * i, from[1] + 2 * i);
  await page.mouse.up();
  await settled(page);
  const wl = await mpr(page, () => window.__mpr.window);
  assert.ok(wl[1] > 1500 && wl[0] > -600, `the drag widened and raised the window: ${wl}`);
  for (const v of ["axial", "coronal", "sagittal"]) {
    const shown = (await pane(page, v)).info.window;
    assert.ok(Math.abs(shown[0] - wl[0]) < 1e-3 && Math.abs(shown[1] - wl[1]) < 1e-3, `${v} shows the last window of the drag: ${shown} vs ${wl}`);
  }
  console.log(`FIGURE view requests so far: ${JSON.stringify(await mpr(page, () => window.__mpr.stats))}`);
  await page.selectOption("#mpr-wl", "default");
  await settled(page);
  assert.equal((await look(page, "axial")).hash, ax.hash, "the default window again: the same picture");

  step("measure the beads 40 mm apart on the axial plane and probe the sphere");
  const beads = ax.blobs.slice(1, 3).sort((a, b) => a.x - b.x);
  await page.click("#mpr-mode-length");
  const a = await screenOf(page, "axial", beads[0].x, beads[0].y);
  const b = await screenOf(page, "axial", beads[1].x, beads[1].y);
  await drag(page, a, b);
  const measures = await mpr(page, () => window.__mpr.measures);
  const truth = Math.hypot(...P.beads[0].map((x, i) => x - P.beads[1][i]));
  console.log(`FIGURE length ${measures[0].mm.toFixed(2)} mm, true ${truth} mm, pixel ${axPlane.pixel_mm.toFixed(3)} mm`);
  assert.equal(measures.length, 1);
  assert.ok(Math.abs(measures[0].mm - truth) <= axPlane.pixel_mm, "the length is right within a pixel");
  await page.click("#mpr-mode-probe");
  await page.mouse.click(sx, sy);
  await page.waitForFunction(() => (window.__mpr.probes || []).length === 1);
  assert.equal((await mpr(page, () => window.__mpr.probes))[0].value, 1000);
  const airPx = await mpr(page, (z) => window.__mpr.toPixel("axial", [-45, -45, z]), P.sphere[2]); // air: a corner of the volume
  const outside = await screenOf(page, "axial", airPx[0], airPx[1]);
  await page.mouse.click(outside[0], outside[1]);
  await page.waitForFunction(() => (window.__mpr.probes || []).length === 2);
  assert.equal((await mpr(page, () => window.__mpr.probes))[1].value, -1000);
  await shot(page, "measure");

  step("scroll 6 mm off the centre; a 20 mm MIP slab shows the sphere larger, MinIP smaller");
  await page.click("#mpr-mode-cross");
  const axBox = await page.locator(".mpr-vp[data-view=axial]").boundingBox();
  await page.mouse.move(axBox.x + 30, axBox.y + axBox.height - 30);
  for (let i = 0; i < 6; i++) { await page.mouse.wheel(0, -100); await page.waitForTimeout(20); }
  await settled(page);
  const z = (await mpr(page, () => window.__mpr.cursor))[2];
  assert.ok(Math.abs(Math.abs(z - P.sphere[2]) - 6) < 1e-6, `the wheel moved the axial plane by 6 slices of 1 mm (z = ${z})`);
  await page.keyboard.press("ArrowUp");
  await settled(page);
  assert.ok(Math.abs((await mpr(page, () => window.__mpr.cursor))[2] - (z + 1)) < 1e-6, "↑: one slice up");
  await page.keyboard.press("ArrowDown");
  await settled(page);
  const thin = await look(page, "axial");
  const setSlab = (mm, mode) => page.evaluate(([mm, mode]) => {
    const m = document.getElementById("mpr-slab-mode");
    m.value = mode;
    m.dispatchEvent(new Event("change"));
    const s = document.getElementById("mpr-slab");
    s.value = String(mm);
    s.dispatchEvent(new Event("input"));
  }, [mm, mode]);
  await setSlab(20, "mip");
  await settled(page);
  const mip = await look(page, "axial");
  assert.equal((await pane(page, "axial")).info.mode, "mip");
  await shot(page, "slab-mip");
  await setSlab(20, "minip");
  await settled(page);
  const minip = await look(page, "axial");
  console.log(`FIGURE bright pixels: thin ${thin.bright}, MIP 20 mm ${mip.bright}, MinIP 20 mm ${minip.bright}`);
  assert.ok(mip.bright > thin.bright * 1.5, "MIP: the sphere is larger (and the beads show)");
  assert.ok(mip.blobs.length >= 3 && thin.blobs.length === 1, "MIP brings the beads 6 mm away into the slab");
  assert.ok(minip.bright < thin.bright * 0.1, "MinIP: the water around the sphere wins, no sphere left");
  await setSlab(0, "mip");
  await settled(page);
  assert.equal((await look(page, "axial")).hash, thin.hash, "back to the thin slice");

  step("rotate the sagittal plane (oblique); it still passes through the cursor");
  const before = await look(page, "sagittal");
  await page.click("#mpr-mode-rotate");
  const sg = await page.locator(".mpr-vp[data-view=sagittal]").boundingBox();
  await drag(page, [sg.x + sg.width / 2, sg.y + sg.height / 2], [sg.x + sg.width / 2 + 75, sg.y + sg.height / 2 + 40]);
  await settled(page);
  const angles = await mpr(page, () => window.__mpr.angles);
  assert.ok(Math.abs(angles.sagittal[1]) > 20 && Math.abs(angles.sagittal[0]) > 10, `rotated: ${JSON.stringify(angles.sagittal)}`);
  const rotated = await look(page, "sagittal");
  assert.notEqual(rotated.hash, before.hash, "the oblique plane shows something else");
  const cur = await mpr(page, () => window.__mpr.cursor);
  const off = (await mpr(page, ([c]) => window.__mpr.toPixel("sagittal", c), [cur]))[2];
  assert.ok(Math.abs(off) < 1e-3, "the oblique plane passes through the cursor");
  const n = (await pane(page, "sagittal")).info.plane.normal;
  assert.ok(Math.abs(n[0]) < 0.99, `the normal is no longer the x axis: ${n}`);
  await shot(page, "rotated");
  await page.click("#mpr-reset");
  await settled(page);
  assert.equal((await pane(page, "sagittal")).info.plane.normal[0] ** 2 > 0.9999, true, "reset: sagittal again");

  step("VR: preset, rotate, orientations");
  const vr0 = await look(page, "vr");
  assert.equal((await pane(page, "vr")).info.kind, "vr");
  await page.selectOption("#mpr-vr-preset", "skin");
  await settled(page);
  const skin = await look(page, "vr");
  assert.notEqual(skin.hash, vr0.hash, "the skin preset shows another picture");
  assert.ok(skin.mean > vr0.mean, "skin shows the water cylinder, bone only the sphere and beads");
  await shot(page, "vr-skin");
  await page.selectOption("#mpr-vr-preset", "bone");
  await page.click("#mpr-mode-rotate");
  const vb = await page.locator(".mpr-vp[data-view=vr]").boundingBox();
  await drag(page, [vb.x + vb.width / 2, vb.y + vb.height / 2], [vb.x + vb.width / 2 + 90, vb.y + vb.height / 2]);
  await settled(page);
  const turned = (await pane(page, "vr")).info;
  assert.ok(Math.abs(turned.settings.azimuth) > 30, `turned by dragging: ${JSON.stringify(turned.settings)}`);
  assert.equal(turned.camera.width, Math.round(vb.width), "the full-size picture once the drag ended");
  for (const o of ["superior", "left", "anterior"]) {
    const was = await look(page, "vr");
    await page.click(`#mpr-o-${o}`);
    await settled(page);
    const info = (await pane(page, "vr")).info;
    assert.equal(info.settings.orientation, o);
    assert.notEqual((await look(page, "vr")).hash, was.hash, `${o}: another view`);
  }
  const front = await look(page, "vr");
  assert.equal(front.hash, vr0.hash, "anterior again: the first picture");

  step("transfer-function editor: drag the opacity of bone down, the VR fades; reset");
  await page.click("#mpr-tf-toggle");
  await page.waitForFunction(() => window.__mpr.tfScreenOf(3) !== undefined, null, { timeout: 30000 });
  const canvasBox = await page.locator("#mpr-tf-canvas").boundingBox();
  assert.ok(canvasBox && canvasBox.width > 150, "the editor shows");
  const histInk = await page.evaluate(() => {
    const c = document.getElementById("mpr-tf-canvas");
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] === 0x48 && d[i + 1] === 0x4f && d[i + 2] === 0x58) n++;
    return n;
  });
  assert.ok(histInk > 50, `the volume's histogram is drawn under the curve (${histInk} px)`);
  // bone: points at 100, 250, 500 and 1500 HU; the sphere and beads are 1000 HU
  for (const i of [3, 2]) {
    const [x, y] = await mpr(page, (i) => window.__mpr.tfScreenOf(i), i);
    await drag(page, [x, y], [x, canvasBox.y + canvasBox.height - 2]);
  }
  await settled(page);
  const tf = await mpr(page, () => window.__mpr.tf);
  assert.ok(tf && tf.length === 4 && tf[2].a < 0.05 && tf[3].a < 0.05, `edited points: ${JSON.stringify(tf)}`);
  const faded = await look(page, "vr");
  console.log(`VR mean grey ${front.mean.toFixed(1)} → ${faded.mean.toFixed(1)} after lowering the bone opacity`);
  assert.notEqual(faded.hash, front.hash, "editing the opacity changed the VR picture");
  assert.ok(faded.mean < front.mean * 0.8, "less opacity: a fainter rendering");
  assert.equal((await pane(page, "vr")).info.camera.width, Math.round(vb.width), "the full-size picture once the edit ended");
  await shot(page, "vr-tf");
  await page.click("#mpr-tf-reset");
  await settled(page);
  assert.equal(await mpr(page, () => window.__mpr.tf), undefined);
  assert.equal((await look(page, "vr")).hash, front.hash, "reset: the preset's picture again");
  await page.click("#mpr-tf-toggle");

  step("zoom (right drag) and pan (middle drag) a plane: the cross-hair still lands on the sphere");
  const cb = await page.locator(".mpr-vp[data-view=coronal]").boundingBox();
  const fitMm = (await pane(page, "coronal")).info.plane.pixel_mm;
  await page.mouse.move(cb.x + cb.width / 2, cb.y + cb.height / 2);
  await page.mouse.down({ button: "right" });
  for (let i = 1; i <= 8; i++) await page.mouse.move(cb.x + cb.width / 2, cb.y + cb.height / 2 - 10 * i);
  await page.mouse.up({ button: "right" });
  await page.mouse.move(cb.x + cb.width / 2, cb.y + cb.height / 2);
  await page.mouse.down({ button: "middle" });
  for (let i = 1; i <= 8; i++) await page.mouse.move(cb.x + cb.width / 2 - 5 * i, cb.y + cb.height / 2 + 3 * i);
  await page.mouse.up({ button: "middle" });
  await settled(page);
  const zoomed = (await pane(page, "coronal")).info.plane;
  console.log(`coronal zoomed from ${fitMm.toFixed(3)} to ${zoomed.pixel_mm.toFixed(3)} mm per pixel`);
  assert.ok(zoomed.pixel_mm < fitMm / 1.5, "right drag up enlarged the picture");
  {
    // the cursor is 6 mm above the sphere's centre now (scrolled); the sphere is where its centre maps
    const [px, py] = await mpr(page, (c) => window.__mpr.toPixel("coronal", c), P.sphere);
    const blob = (await look(page, "coronal")).blobs[0];
    assert.ok(Math.hypot(px - blob.x, py - blob.y) <= 1.0 / zoomed.pixel_mm, `zoomed and panned, the sphere is where the plane says (${px}, ${py} vs ${blob.x}, ${blob.y})`);
    const c = await mpr(page, () => window.__mpr.cursor);
    const [, cy] = await mpr(page, (c) => window.__mpr.toPixel("coronal", c), c);
    assert.ok(Math.abs((py - cy) * zoomed.pixel_mm - Math.abs(c[2] - P.sphere[2])) < 1e-3, "the cross-hair sits 6 mm above it");
  }
  await shot(page, "zoomed");
  await page.click("#mpr-reset");
  await settled(page);
  assert.ok(Math.abs((await pane(page, "coronal")).info.plane.pixel_mm - fitMm) < 1e-6, "reset: fitted again");

  step("virtual scalpel: cut the sphere away, undo");
  // anterior view: the sphere hides the bead behind it (x 15 vs 12 mm); the other bead stands apart
  const front40 = await look(page, "vr", 40);
  const sphereVr = front40.blobs[0];
  const r = Math.sqrt(sphereVr.n / Math.PI) * 1.6;
  await page.click("#mpr-mode-cut");
  const ring = [];
  for (let i = 0; i <= 16; i++) ring.push([sphereVr.x + r * Math.cos((i * Math.PI) / 8), sphereVr.y + r * Math.sin((i * Math.PI) / 8)]);
  const pts = [];
  for (const [x, y] of ring) pts.push(await screenOf(page, "vr", x, y));
  await page.mouse.move(pts[0][0], pts[0][1]);
  await page.mouse.down();
  for (const p of pts.slice(1)) await page.mouse.move(p[0], p[1]);
  await page.mouse.up();
  await settled(page);
  assert.equal(await mpr(page, () => window.__mpr.cuts), 1);
  const cut = await look(page, "vr", 40);
  console.log(`FIGURE VR lit pixels: ${front40.bright} before the cut, ${cut.bright} after (sphere ${sphereVr.n})`);
  assert.notEqual(cut.hash, front.hash, "the cut changed the picture");
  assert.ok(cut.bright < front40.bright - sphereVr.n * 0.8, "the sphere is gone");
  assert.ok(cut.blobs.length >= 1 && cut.blobs[0].n < sphereVr.n / 3, "the bead outside the cut stays, nothing as big as the sphere");
  await shot(page, "vr-cut");
  await page.click("#mpr-undo");
  await settled(page);
  assert.equal(await mpr(page, () => window.__mpr.cuts), 0);
  assert.equal((await look(page, "vr")).hash, front.hash, "undo restores the picture");

  step("save the axial plane as a 3-image series; it shows in the panel and through QIDO");
  await page.click("#mpr-mode-wl");
  await page.mouse.click(axBox.x + 20, axBox.y + 40); // makes the axial viewport current (W/L without a drag)
  await page.fill("#mpr-count", "3");
  await page.click("#mpr-save");
  await page.waitForFunction(() => window.__mpr.saved, null, { timeout: 60000 });
  const saved = await mpr(page, () => window.__mpr.saved);
  assert.equal(saved.instances, 3);
  assert.match(await page.locator("#mpr-toast").innerText(), new RegExp(`${saved.series_number}`));
  assert.equal(await page.locator(`#series-panel .mpr-new[data-series="${saved.series_uid}"]`).count(), 1);
  await shot(page, "saved");
  const found = await page.evaluate(async ([study, uid]) => {
    const r = await fetch(`/dicom-web/studies/${study}/series?SeriesInstanceUID=${uid}`, { headers: { Accept: "application/dicom+json" } });
    return r.ok ? await r.json() : [];
  }, [STUDY_UID, saved.series_uid]);
  assert.equal(found.length, 1, "QIDO finds the new series");
  assert.equal(found[0]["00201209"].Value[0], 3);
  assert.equal(found[0]["00080060"].Value[0], "CT");

  step("switch to Chinese while the layout is open");
  await page.click("#lang");
  assert.equal(await page.locator("#mpr-save").innerText(), "另存为序列");
  assert.match(await page.locator(".mpr-vp[data-view=coronal] .mpr-label").innerText(), /^冠状位/);
  await shot(page, "desktop-zh");
  await page.click("#lang");
  assert.equal(await page.locator("#mpr-save").innerText(), "Save as series");

  step("back to 2D");
  await page.click("#mpr-close");
  assert.equal(await page.locator("#mpr").count(), 0);
  assert.equal(await page.locator("#grid").isVisible(), true);
  assert.equal(await page.locator("#toolbar").isVisible(), true, "the 2D tools are back");
  await context.close();
}

async function phone(browser) {
  const context = await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true, locale: "zh-CN" });
  await context.addInitScript(() => localStorage.setItem("radcloud.lang", "zh"));
  const page = watch(await context.newPage(), "phone");
  const next = `/viewer?study=${STUDY_UID}`;
  await page.goto(base + next);
  await signIn(page, next);
  await ready(page);

  step("phone: one plane at a time, tabs, Chinese labels");
  await page.click("#act-mpr");
  await page.waitForFunction(() => window.__mpr && window.__mpr.status === "ready", null, { timeout: 120000 });
  await page.waitForFunction(() => window.__mpr.panes().axial.loads > 0, null, { timeout: 60000 });
  await settled(page);
  const visible = await page.locator(".mpr-vp:visible").count();
  assert.equal(visible, 1, "one viewport shows");
  assert.equal(await page.locator(".mpr-tab").first().innerText(), "轴位");
  assert.equal(await page.locator("#mpr-save").innerText(), "另存为序列");
  assert.equal(await mpr(page, () => window.__mpr.mode), "scroll", "a finger scrolls through the plane");
  const box = await page.locator(".mpr-vp[data-view=axial]").boundingBox();
  const z0 = (await mpr(page, () => window.__mpr.cursor))[2];
  // a real finger (touch events through the DevTools protocol): swipe up
  const cdp = await context.newCDPSession(page);
  const x = box.x + box.width / 2, y0 = box.y + box.height / 2 + 60;
  await cdp.send("Input.dispatchTouchEvent", { type: "touchStart", touchPoints: [{ x, y: y0 }] });
  for (let i = 1; i <= 10; i++) await cdp.send("Input.dispatchTouchEvent", { type: "touchMove", touchPoints: [{ x, y: y0 - 12 * i }] });
  await cdp.send("Input.dispatchTouchEvent", { type: "touchEnd", touchPoints: [] });
  await settled(page);
  const z1 = (await mpr(page, () => window.__mpr.cursor))[2];
  console.log(`a 120 px swipe scrolled the axial plane from z = ${z0} to ${z1} mm`);
  assert.ok(z1 > z0 + 5, `swiping up scrolled the plane up (${z0} → ${z1})`);
  await page.tap('.mpr-tab[data-view="coronal"]');
  await page.waitForFunction(() => window.__mpr.panes().coronal.loads > 0, null, { timeout: 60000 });
  await settled(page);
  assert.equal(await page.locator('.mpr-vp[data-view="coronal"]').isVisible(), true);
  assert.equal(await page.locator('.mpr-vp[data-view="axial"]').isVisible(), false);
  await shot(page, "phone");
  await page.tap('.mpr-tab[data-view="vr"]');
  await page.waitForFunction(() => window.__mpr.panes().vr.loads > 0, null, { timeout: 60000 });
  await settled(page);
  await shot(page, "phone-vr");
  await context.close();
}

async function curved(browser) {
  const context = await browser.newContext(DESKTOP);
  const page = watch(await context.newPage(), "cpr");
  const tube = P.tube;
  const next = `/viewer?study=${STUDY_UID}&series=${tube.series}`;
  await page.goto(base + next);
  await signIn(page, next);
  await ready(page);

  step("CPR: click points along the curved tube on the axial plane");
  await page.click("#act-mpr");
  await page.waitForFunction((s) => window.__mpr && window.__mpr.status === "ready" && window.__mpr.series === s, tube.series, { timeout: 120000 });
  await page.waitForFunction(() => window.__mpr.panes().axial.loads > 0, null, { timeout: 120000 });
  await settled(page);
  const plane = (await pane(page, "axial")).info.plane;
  assert.ok(Math.abs(plane.center[2] - tube.arc[0][2]) < 1, `the axial plane holds the tube (z = ${plane.center[2]})`);
  await page.click("#mpr-mode-cpr");
  for (const pt of tube.arc) {
    const [x, y] = await mpr(page, (pt) => window.__mpr.toPixel("axial", pt), pt);
    const [sx, sy] = await screenOf(page, "axial", x, y);
    await page.mouse.click(sx, sy);
  }
  await page.waitForFunction((n) => window.__mpr.cpr && window.__mpr.cpr.points.length === n, tube.arc.length, { timeout: 60000 });
  await settled(page);
  const cpr = await mpr(page, () => window.__mpr.cpr);
  const clicked = cpr.points.slice(1).reduce((s, q, i) => s + Math.hypot(...q.map((v, k) => v - cpr.points[i][k])), 0);
  console.log(`FIGURE CPR length ${cpr.length_mm} mm; clicked path ${clicked.toFixed(2)} mm; true arc ${tube.arcLength.toFixed(2)} mm; pixel ${cpr.pixel_mm} mm`);
  assert.ok(Math.abs(cpr.length_mm - clicked) <= cpr.pixel_mm, "the CPR is as long as the clicked path, within a pixel");
  assert.ok(Math.abs(cpr.length_mm - tube.arcLength) <= cpr.pixel_mm + 0.5, "…and as the tube (chords of 15° arcs)");
  assert.equal(cpr.cpr, "straightened");
  const band = await page.evaluate(() => {
    const img = document.querySelector("#mpr-cpr img");
    const w = img.naturalWidth, h = img.naturalHeight;
    const c = document.createElement("canvas");
    c.width = w; c.height = h;
    const ctx = c.getContext("2d");
    ctx.drawImage(img, 0, 0);
    const d = ctx.getImageData(0, 0, w, h).data;
    const rows = [];
    for (let y = 0; y < h; y++) {
      let n = 0, sx = 0;
      for (let x = 0; x < w; x++) if (d[4 * (y * w + x)] > 200) { n++; sx += x; }
      rows.push({ n, x: n ? sx / n : -1 });
    }
    return { w, h, rows };
  });
  assert.equal(band.w, cpr.width);
  assert.equal(band.h, cpr.rows);
  const inner = band.rows.slice(3, -3); // the tube's rounded ends aside
  for (const [i, r] of inner.entries()) {
    assert.ok(Math.abs(r.x - cpr.center_column) <= 1, `row ${i + 3}: the tube lies on the centre column (${r.x})`);
    assert.ok(Math.abs(r.n * cpr.pixel_mm - 2 * tube.radius) <= 2 * cpr.pixel_mm, `row ${i + 3}: the tube is ${r.n} px across`);
  }
  const ink = await page.evaluate(() => { // the path is drawn on the plane (#ff6ad5)
    const c = document.querySelector(".mpr-vp[data-view=axial] canvas");
    const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
    let n = 0;
    for (let i = 0; i < d.length; i += 4) if (d[i] > 240 && Math.abs(d[i + 1] - 0x6a) < 12 && Math.abs(d[i + 2] - 0xd5) < 12) n++;
    return n;
  });
  assert.ok(ink > 50, `the clicked path is drawn on the axial plane (${ink} px)`);
  await shot(page, "cpr-straightened");
  await page.selectOption("#mpr-cpr-kind", "stretched");
  await page.waitForFunction(() => window.__mpr.cpr.cpr === "stretched", null, { timeout: 60000 });
  const stretched = await mpr(page, () => window.__mpr.cpr);
  assert.ok(Math.abs(stretched.length_mm - cpr.length_mm) < 1e-6, "the same path, stretched");
  await shot(page, "cpr-stretched");
  await page.click("#mpr-cpr-clear");
  assert.equal(await page.locator("#mpr-cpr").isHidden(), true, "clearing the path shows the VR again");
  await context.close();
}

await run([desktop, curved, phone], "ok: MPR / 3D layout passed");
