// The viewer's loading path (issue 4 "Loading"): a marked preview first, then the lossless
// image replaces it; frames requested outward from the shown slice with a bounded number in
// flight; frames asked for as HTJ2K / JPEG-LS lossless decode to the same pixels as native ones.
//
//   node tests/js/viewer_loading.spec.mjs <base-url> <screenshot-dir>
// Environment: see viewer_harness.mjs; PHANTOM.hashes: {stored: [...], hu: [...]} per slice.

import assert from "node:assert/strict";
import { base, STUDY_UID, P, DESKTOP, step, watch, shot, signIn, ready, run } from "./viewer_harness.mjs";

const IN_FLIGHT = 6 + 1; // the prefetch pool's bound, plus the first image's own request

async function open(browser, query, hold = false) {
  const context = await browser.newContext(DESKTOP);
  const page = watch(await context.newPage(), "loading " + query);
  const log = []; // [url, event] in order
  let inFlight = 0, maxInFlight = 0;
  const types = new Set();
  const isFrame = (u) => /\/frames\/\d+$/.test(new URL(u).pathname);
  page.on("request", (r) => { if (isFrame(r.url())) { log.push(r.url()); inFlight++; maxInFlight = Math.max(maxInFlight, inFlight); } });
  const done = (r) => { if (isFrame(r.url())) inFlight--; };
  page.on("requestfinished", done);
  page.on("requestfailed", done);
  page.on("response", (r) => { if (isFrame(r.url())) types.add((r.headers()["content-type"] || "").replace(/;\s*boundary=[^;]+/, "")); });
  let release = () => {};
  if (hold) { // hold the lossless frames back until the preview has been seen
    const gate = new Promise((ok) => { release = ok; });
    await page.route(/\/frames\/\d+$/, async (route) => { await gate; await route.continue(); });
  }
  const next = `/viewer?study=${STUDY_UID}${query}`;
  await page.goto(base + next);
  await signIn(page, next);
  return { context, page, log, types, release, maxInFlight: () => maxInFlight };
}

/** Sum and weighted sum of every slice's pixels, as Cornerstone holds them, in stack order. */
async function hashes(page) {
  return page.evaluate(async () => {
    const vp = window.__viewer.viewport(0);
    const out = [];
    for (let i = 0; i < vp.getImageIds().length; i++) {
      await vp.setImageIdIndex(i);
      const px = vp.getCornerstoneImage().getPixelData();
      let s = 0, w = 0;
      for (let k = 0; k < px.length; k++) { s += px[k]; w += px[k] * ((k % 251) + 1); }
      out.push([s, w]);
    }
    await vp.setImageIdIndex(0);
    return out;
  });
}

async function allCached(page) {
  // every slice loaded: scroll through them all once (each waits for its image)
  await page.waitForFunction(() => window.__viewer.viewport(0).getImageIds().length > 0);
}

async function preview(browser) {
  step("preview: shown and marked while the lossless frames are held back");
  const v = await open(browser, "", true);
  const { page } = v;
  const box = page.locator(".viewer-preview");
  await box.waitFor({ state: "visible", timeout: 30000 });
  const mark = await page.locator(".viewer-preview .preview-mark").innerText();
  assert.match(mark, /PREVIEW/);
  assert.match(mark, /预览/);
  // the JPEG really is the first slice, drawn (not a blank box)
  const img = await page.evaluate(() => {
    const im = document.querySelector(".viewer-preview img");
    return { w: im.naturalWidth, h: im.naturalHeight, src: im.getAttribute("src"), inCell: !!im.closest(".cell") };
  });
  assert.equal(img.w, P.size);
  assert.match(img.src, /\/frames\/1\/rendered$/);
  // it waits in the first cell once the viewer's page is built
  await page.waitForFunction(() => !!document.querySelector(".cell .viewer-preview"), null, { timeout: 60000 });
  await shot(page, "preview");
  assert.equal(await page.evaluate(() => window.__viewer.status), "starting", "the viewer is not ready before the lossless image");
  step("preview: replaced by the lossless image");
  v.release();
  await ready(page);
  assert.equal(await box.count(), 0, "the preview is gone once the lossless image shows");
  const load = await page.evaluate(() => window.__viewerLoad);
  assert.ok(load.previewShown && load.previewMs > 0 && load.losslessMs >= load.previewMs, JSON.stringify(load));
  await shot(page, "lossless");
  await v.context.close();
}

async function order(browser) {
  step("order: the shown slice first, then outward; bounded requests in flight");
  const v = await open(browser, "");
  await ready(v.page);
  await v.page.waitForTimeout(200);
  const ids = await v.page.evaluate(() => window.__viewer.viewport(0).getImageIds().map((id) => id.slice(7)));
  // wait until every slice has been asked for
  for (let i = 0; i < 100 && new Set(v.log).size < ids.length; i++) await v.page.waitForTimeout(100);
  const index = v.log.map((u) => ids.indexOf(u));
  assert.ok(index.every((k) => k >= 0), "every frame request is one of the stack's");
  assert.equal(index[0], 0, "the first frame asked for is the shown one");
  assert.equal(new Set(index).size, ids.length, "every slice is fetched once");
  // from slice 0, outward is ascending
  for (let k = 1; k < index.length; k++) assert.ok(index[k] > index[k - 1], `request ${k} goes outward: ${index.slice(0, k + 1)}`);
  assert.ok(v.maxInFlight() <= IN_FLIGHT, `at most ${IN_FLIGHT} frame requests in flight, saw ${v.maxInFlight()}`);
  console.log(`ORDER ${JSON.stringify(index)} max in flight ${v.maxInFlight()}`);
  await v.context.close();
}

async function syntaxes(browser) {
  const want = { "": /application\/octet-stream/, "&transfer=htj2k": /image\/jphc/, "&transfer=jpeg-ls": /image\/jls/ };
  const seen = {};
  for (const [query, type] of Object.entries(want)) {
    step(`pixels: frames ${query || "as stored"} decode to the native pixels`);
    const v = await open(browser, query);
    await ready(v.page);
    await allCached(v.page);
    const got = await hashes(v.page);
    const types = [...v.types];
    assert.ok(types.length && types.every((t) => type.test(t)), `frame responses ${types}`);
    assert.equal(await v.page.evaluate(() => window.__viewer.transfer), query ? query.split("=")[1] : "stored");
    seen[query] = got;
    const ref = P.hashes;
    const match = JSON.stringify(got) === JSON.stringify(ref.hu) || JSON.stringify(got) === JSON.stringify(ref.stored);
    assert.ok(match, `slice hashes match the stored pixels (${query}): ${JSON.stringify(got.slice(0, 2))} vs ${JSON.stringify(ref.hu.slice(0, 2))}`);
    console.log(`PIXELS ${query || "stored"} ${types.join(",")} ok`);
    await v.context.close();
  }
  assert.deepEqual(seen["&transfer=htj2k"], seen[""]);
  assert.deepEqual(seen["&transfer=jpeg-ls"], seen[""]);
}

async function setting(browser) {
  step("setting: the user's transfer choice is kept on the server and used at the next opening");
  const v = await open(browser, "");
  await ready(v.page);
  assert.equal(await v.page.inputValue("#transfer"), "stored");
  const saved = await v.page.evaluate(() => window.__viewer.saved || 0);
  await v.page.evaluate(() => { const s = document.getElementById("transfer"); s.value = "htj2k"; s.dispatchEvent(new Event("change")); });
  await v.page.waitForFunction((n) => (window.__viewer.saved || 0) > n, saved);
  await v.context.close();
  const w = await open(browser, "");
  await ready(w.page);
  assert.equal(await w.page.evaluate(() => window.__viewer.transfer), "htj2k");
  assert.equal(await w.page.inputValue("#transfer"), "htj2k");
  await w.page.click("#menu-tools");
  assert.ok(await w.page.locator("#transfer").isVisible(), "the choice is in the Tools menu");
  await shot(w.page, "tools-transfer");
  assert.ok(w.types.size > 0 && [...w.types].every((t) => /image\/jphc/.test(t)), `frame responses ${[...w.types]}`);
  await w.page.evaluate(() => { const s = document.getElementById("transfer"); s.value = "stored"; s.dispatchEvent(new Event("change")); });
  await w.page.waitForFunction(() => window.__viewer.settings().transfer === "stored");
  await w.context.close();
}

await run([preview, order, syntaxes, setting], "ok: viewer loading passed");
