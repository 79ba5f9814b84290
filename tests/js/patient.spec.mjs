// The patient's page of a share link on a phone (Debian Chromium via playwright-core, touch
// through CDP Input.dispatchTouchEvent, so the page's own gesture code is what is tested).
//
//   node tests/js/patient.spec.mjs <base-url> <screenshot-dir>
//
// Environment: PATIENT (JSON, see tests/test_patient_ui.py: the links, the answer, what the
// phantom and report hold, the words no refusal page may show).  With PATIENT_BENCH set
// (JSON: {runs, throttle}), measures instead the first image and the report on a throttled
// link and prints one JSON line per run (bench/patient_page.py).

import { mkdirSync } from "node:fs";
import { join } from "node:path";
import assert from "node:assert/strict";
import { base, shots, step, watch, shot, run } from "./browser_harness.mjs";

const P = JSON.parse(process.env.PATIENT || "{}");
assert.ok(P.main, "usage: see the header");
if (P.downloads) mkdirSync(P.downloads, { recursive: true });

const PHONE = {
  viewport: { width: 390, height: 844 }, deviceScaleFactor: 3, isMobile: true, hasTouch: true,
  locale: "zh-CN", acceptDownloads: true,
  userAgent: "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0 Mobile Safari/537.36",
};

// ------------------------------------------------------------------ touch through CDP

const touchPoints = (pts) => pts.map(([x, y], id) => ({ x, y, id, radiusX: 4, radiusY: 4, force: 1 }));
async function touch(cdp, type, pts) { await cdp.send("Input.dispatchTouchEvent", { type, touchPoints: touchPoints(pts) }); }

/** One finger from `a` to `b` in `steps` moves. */
async function swipe(cdp, a, b, steps = 12) {
  await touch(cdp, "touchStart", [a]);
  for (let i = 1; i <= steps; i++) await touch(cdp, "touchMove", [[a[0] + ((b[0] - a[0]) * i) / steps, a[1] + ((b[1] - a[1]) * i) / steps]]);
  await touch(cdp, "touchEnd", []);
}

/** Two fingers about `c`, horizontally apart from `d0` to `d1` pixels. */
async function pinch(cdp, c, d0, d1, steps = 10) {
  const at = (d) => [[c[0] - d / 2, c[1]], [c[0] + d / 2, c[1]]];
  await touch(cdp, "touchStart", at(d0));
  for (let i = 1; i <= steps; i++) await touch(cdp, "touchMove", at(d0 + ((d1 - d0) * i) / steps));
  await touch(cdp, "touchEnd", []);
}

const state = (page) => page.evaluate(() => ({ ...window.__patient }));
const waitState = (page, fn, arg) => page.waitForFunction(fn, arg, { timeout: 30000 });
/** A cheap fingerprint of what the canvas shows. */
const canvasHash = (page) => page.evaluate(() => {
  const c = document.getElementById("slice");
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let h = 0;
  for (let i = 0; i < d.length; i += 12) h = (Math.imul(h, 31) + d[i]) | 0;
  return h;
});
const center = async (page, sel) => {
  const r = await page.locator(sel).boundingBox();
  return [r.x + r.width / 2, r.y + r.height / 2];
};

/** The page's visible text holds none of the patient's identifiers. */
async function clean(page, what) {
  const text = await page.evaluate(() => document.body.innerText + " " + document.title);
  const found = P.forbidden.filter((w) => text.toLowerCase().includes(w.toLowerCase()));
  assert.deepEqual(found, [], `${what}: patient data on the page: ${found}`);
  return text;
}

// ------------------------------------------------------------------ the patient's visit

async function visit(browser) {
  const context = await browser.newContext(PHONE);
  const page = watch(await context.newPage(), "patient");
  const cdp = await context.newCDPSession(page);

  step("open the SMS link: the question, nothing else");
  const r = await page.goto(P.main);
  assert.equal(r.status(), 200);
  await page.waitForSelector("#answer");
  assert.match(await page.locator(".question").innerText(), /病历号/);
  await clean(page, "gate");
  await shot(page, "gate");

  step("answer the question");
  await page.fill("#answer", P.answer);
  await page.click("#open");
  await page.waitForSelector(".tiles");
  await waitState(page, () => window.__patient.seriesShown);
  const home = await page.locator("main").innerText();
  assert.match(home, new RegExp(`1 个序列 · ${P.slices} 幅图像`)); // the picture series only
  assert.match(home, /报告/);
  assert.match(home, /电子胶片/);
  assert.match(home, /影像/);
  assert.match(home, /CT CHEST/);
  await shot(page, "home");

  step("images: the middle slice is drawn");
  await page.click("#go-images");
  await waitState(page, () => window.__patient.view !== "home" && window.__patient.ready && window.__patient.index >= 0);
  const s0 = await state(page);
  assert.equal(s0.count, P.slices);
  const h0 = await canvasHash(page);
  const c = await center(page, "#slice");

  step("one finger up: onward through the slices");
  await swipe(cdp, [c[0], c[1] + 120], [c[0], c[1] - 120]);
  await waitState(page, (i) => window.__patient.index > i && window.__patient.ready, s0.index);
  const s1 = await state(page);
  assert.ok(s1.drawn !== s0.drawn, "another image is drawn");
  assert.notEqual(await canvasHash(page), h0, "the picture changed");
  assert.match(await page.locator("#slice-info").innerText(), new RegExp(`${s1.index + 1}/${P.slices}`));
  step("one finger down: back");
  await swipe(cdp, [c[0], c[1] - 60], [c[0], c[1] + 60]);
  await waitState(page, (i) => window.__patient.index < i && window.__patient.ready, s1.index);
  await shot(page, "images");

  step("the lung window: the server renders other bytes");
  const before = await state(page);
  const hBefore = await canvasHash(page);
  await page.click('[data-preset="lung"]');
  await waitState(page, () => window.__patient.wl === "lung" && window.__patient.ready && window.__patient.drawn.includes("window="));
  const lung = await state(page);
  assert.equal(lung.index, before.index);
  assert.match(decodeURIComponent(lung.drawn), /window=-600,1500/);
  assert.notEqual(await canvasHash(page), hBefore, "the lung window looks different");
  const sizes = await page.evaluate(async ([a, b]) => {
    const [x, y] = await Promise.all([a, b].map((u) => fetch(u).then((r) => r.arrayBuffer())));
    const same = x.byteLength === y.byteLength && new Uint8Array(x).every((v, i) => v === new Uint8Array(y)[i]);
    return { same, a: x.byteLength, b: y.byteLength };
  }, [before.drawn, lung.drawn]);
  assert.equal(sizes.same, false, "default and lung images are different bytes");
  await shot(page, "images-lung");
  await page.click('[data-preset="bone"]');
  await waitState(page, () => window.__patient.wl === "bone" && window.__patient.ready);

  step("two fingers: pinch zoom");
  await pinch(cdp, c, 80, 200);
  await waitState(page, () => window.__patient.zoom > 1.5);
  await page.click("#reset");
  await waitState(page, () => window.__patient.zoom === 1);

  step("measure a length: 100 image pixels of 0.7 mm = 70 mm");
  await page.click("#measure");
  const geo = await page.evaluate(() => {
    const r = document.getElementById("slice").getBoundingClientRect();
    return { w: r.width, h: r.height, left: r.left, top: r.top };
  });
  const scale = Math.min(geo.w / 256, geo.h / 256); // the 256-pixel image fitted, rendered 1:1
  const y = geo.top + geo.h / 2;
  await swipe(cdp, [geo.left + geo.w / 2 - 50 * scale, y], [geo.left + geo.w / 2 + 50 * scale, y], 8);
  await waitState(page, () => window.__patient.lengthMm > 0);
  const mm = (await state(page)).lengthMm;
  assert.ok(Math.abs(mm - 100 * P.spacing) < 1.5, `length ${mm} mm, expected ${100 * P.spacing}`);
  assert.match(await page.locator("#length").innerText(), /(69|70|71)\.\d mm/);
  await shot(page, "images-measure");
  await page.click("#measure");

  step("cine plays and stops");
  const at = (await state(page)).index;
  await page.click("#cine");
  await waitState(page, (i) => window.__patient.cine && window.__patient.index !== i && window.__patient.index !== (i + 1) % 24, at);
  await page.click("#cine");
  await waitState(page, () => window.__patient.cine === false);

  step("the report, in Chinese, then English");
  await page.click("#back");
  await page.waitForSelector("#go-report");
  await page.click("#go-report");
  await page.waitForSelector("#report");
  const report = await page.locator("#report").innerText();
  assert.ok(report.includes(P.findings) && report.includes(P.impression), report);
  assert.match(report, /正式报告/);
  await page.click('.doc-tools button[aria-label="放大"]');
  await waitState(page, () => window.__patient.textZoom > 1.1);
  const z0 = (await state(page)).textZoom;
  await pinch(cdp, await center(page, "#report"), 80, 140);
  await waitState(page, (z) => window.__patient.textZoom > z * 1.3, z0); // fingers apart: bigger text
  await shot(page, "report");
  await page.click("#lang");
  await page.waitForFunction(() => /Signed by/.test(document.getElementById("report")?.innerText || ""));
  assert.equal(await page.locator("#title").innerText(), "Report");
  await shot(page, "report-en");
  await page.click("#lang");
  await page.waitForFunction(() => /审核医生/.test(document.getElementById("report")?.innerText || ""));

  step("the e-film: stepless pinch zoom");
  await page.click("#back");
  await page.click("#go-film");
  await page.waitForFunction(() => document.getElementById("film-img")?.naturalWidth > 0);
  await shot(page, "film-fit");
  const f = await center(page, "#film");
  await pinch(cdp, f, 60, 150);
  await waitState(page, () => window.__patient.filmZoom > 1.8 && window.__patient.filmZoom < 3);
  await shot(page, "film");

  step("share onward: a link, its code and QR code");
  await page.click("#back");
  await page.click("#go-share");
  await page.selectOption("#expiry", "24");
  await page.click("#create-share");
  await page.waitForFunction(() => document.getElementById("made-qr")?.naturalWidth > 0);
  const url = await page.inputValue("#made-url");
  assert.match(url, /\/s\?t=[\w-]{40,}/);
  const onwardCode = await page.locator("#made-code").innerText();
  assert.match(onwardCode, /^\d{6}$/);
  await page.waitForSelector('.share-row[data-id] >> text=撤回');
  await shot(page, "share");

  step("downloads: the film PDF");
  await page.click("#back");
  await page.click("#go-download");
  assert.equal(await page.locator("#dl-dicom").count(), 1);
  const [dl] = await Promise.all([page.waitForEvent("download"), page.click("#dl-film")]);
  await dl.saveAs(join(P.downloads, "film.pdf"));
  const [zip] = await Promise.all([page.waitForEvent("download"), page.click("#dl-dicom")]);
  await zip.saveAs(join(P.downloads, "study.zip"));
  await shot(page, "download");

  step("the onward link opens with its code, de-identified: images, no report");
  const other = await browser.newContext(PHONE);
  const doctor = watch(await other.newPage(), "onward");
  await doctor.goto(url);
  await doctor.fill("#answer", onwardCode);
  await doctor.click("#open");
  await doctor.waitForSelector(".tiles");
  assert.equal(await doctor.locator("#go-film").count(), 0); // the e-film names the patient
  await clean(doctor, "onward link");
  await doctor.click("#go-report"); // the report's text, de-identified
  await doctor.waitForSelector("#report");
  const shared = await clean(doctor, "onward report");
  assert.ok(shared.includes(P.findings) && shared.includes(P.impression), shared);
  assert.equal(await doctor.locator("#report-deid").count(), 1);
  await shot(doctor, "onward-report");
  await doctor.click("#back");
  await doctor.waitForSelector(".tiles");
  await doctor.click("#go-images");
  await waitState(doctor, () => window.__patient.ready && window.__patient.index >= 0);

  step("the patient withdraws it: the doctor's next open gets the withdrawn page");
  await page.click("#back");
  await page.click("#go-share");
  await page.click('.share-row[data-id] button.danger');
  await page.waitForSelector('.share-row[data-id] >> text=已撤回');
  const gone = await doctor.goto(url);
  assert.equal(gone.status(), 410);
  assert.match(await doctor.locator("body").innerText(), /链接已撤回/);
  await other.close();
  await context.close();
}

// ------------------------------------------------------------------ a patient link over two exams

async function exams(browser) {
  step("a patient link over two signed exams: two cards on the timeline, newest first");
  const context = await browser.newContext(PHONE);
  const page = watch(await context.newPage(), "history");
  await page.goto(P.history);
  await page.fill("#answer", P.answer);
  await page.click("#open");
  await page.waitForSelector("#timeline");
  const cards = await page.locator("#timeline .exam").allInnerTexts();
  assert.equal(cards.length, 2);
  assert.match(cards[0], /2026-01-01/);
  assert.match(cards[1], /2024-01-05/);
  assert.ok(cards.every((c) => /CT/.test(c) && /报告已出/.test(c)), cards.join("|"));
  await shot(page, "timeline");

  step("the older exam: its card opens its entries, then its own report");
  await page.click("#exam-1");
  await page.waitForSelector(".tiles");
  assert.equal(await page.locator("#title").innerText(), "2024-01-05");
  await waitState(page, () => window.__patient.seriesShown);
  assert.match(await page.locator("main").innerText(), /4 幅图像/); // the older exam's 4 slices
  await shot(page, "exam-older");
  await page.click("#go-report");
  await page.waitForSelector("#report");
  const text = await page.locator("#report").innerText();
  assert.ok(text.includes(P.olderFindings) && !text.includes(P.findings), text);
  assert.match(text, /2024-01-05/);
  await shot(page, "report-older");

  step("share from the older exam: one exam, or all of them when asked");
  await page.click("#back");
  await page.waitForSelector(".tiles");
  await page.click("#go-share");
  await page.waitForSelector("#all-exams");
  await page.check("#all-exams");
  const [made] = await Promise.all([
    page.waitForResponse((r) => r.url().endsWith("/api/s/reshare")), page.click("#create-share")]);
  assert.equal((await made.json()).share.scope, "patient");
  await page.waitForFunction(() => document.getElementById("made-qr")?.naturalWidth > 0);
  await shot(page, "share-all");

  step("back: the exam, then the timeline");
  await page.click("#back");
  await page.waitForSelector(".tiles");
  await page.click("#back");
  await page.waitForSelector("#timeline");
  await context.close();
}

// ------------------------------------------------------------------ a PC: the same page, mouse and wheel

async function desktop(browser) {
  step("on a PC: the wheel scrolls the slices");
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, locale: "en-US" });
  const page = watch(await context.newPage(), "desktop");
  await page.goto(P.main);
  await page.fill("#answer", P.answer);
  await page.press("#answer", "Enter");
  await page.click("#go-images");
  await waitState(page, () => window.__patient.ready && window.__patient.index >= 0);
  const before = (await state(page)).index;
  const c = await center(page, "#slice");
  await page.mouse.move(c[0], c[1]);
  for (let i = 0; i < 3; i++) await page.mouse.wheel(0, 100);
  await waitState(page, (i) => window.__patient.index === i + 3 && window.__patient.ready, before);
  await shot(page, "desktop-images");
  await page.click("#back");
  await page.waitForSelector(".tiles");
  await shot(page, "desktop-home");
  await context.close();
}

// ------------------------------------------------------------------ links that do not open

async function refusals(browser) {
  const context = await browser.newContext(PHONE);
  const page = watch(await context.newPage(), "refusals");
  for (const [name, url, status, zh, en] of [
    ["expired", P.expired, 410, "链接已过期", "expired"],
    ["revoked", P.revoked, 410, "链接已撤回", "withdrawn"],
    ["unknown", P.unknown, 404, "链接无效", "Link not found"],
  ]) {
    step(`${name} link: a clear page and nothing else`);
    const r = await page.goto(url);
    assert.equal(r.status(), status);
    const text = await clean(page, name);
    assert.ok(text.includes(zh) && text.includes(en), text);
    assert.equal(await page.locator("input, a, img, canvas").count(), 0);
    await shot(page, name);
  }

  step("a wrong code: said so, and no data");
  await page.goto(P.coded);
  await page.waitForSelector("#answer");
  await page.fill("#answer", "000000");
  await page.click("#open");
  await page.waitForSelector("#gate-error:not([hidden])");
  assert.match(await page.locator("#gate-error").innerText(), new RegExp(`答案不正确，还可尝试 ${P.attempts - 1} 次`));
  assert.equal(await page.locator(".tiles, #report, #slice").count(), 0);
  await clean(page, "wrong code");
  await shot(page, "wrong-code");
  step("wrong until the link locks: the locked page");
  for (let n = 1; n < P.attempts; n++) {
    await page.fill("#answer", "000000");
    await page.click("#open");
    await page.waitForFunction((k) => window.__patient.view === "stop" || document.getElementById("gate-error").innerText.includes(`${k} 次`), P.attempts - 1 - n);
  }
  await page.waitForSelector('.stop[data-status="423"]');
  let text = await clean(page, "locked");
  assert.ok(text.includes("链接已锁定") && text.includes("Link locked"), text);
  const again = await page.goto(P.coded);
  assert.equal(again.status(), 423);
  text = await clean(page, "locked, reloaded");
  assert.ok(text.includes("链接已锁定"), text);
  await shot(page, "locked");
  await context.close();
}

// ------------------------------------------------------------------ the figure (bench/patient_page.py)

/** One cold visit on a throttled link: ms from opening the link to the question, to the first
 * slice drawn, or to the report's text; the answer and the taps come as soon as possible. */
async function timedVisit(browser, throttle, target) {
  const context = await browser.newContext(PHONE);
  const page = watch(await context.newPage(), `bench-${target}`);
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  await cdp.send("Network.setCacheDisabled", { cacheDisabled: true });
  await cdp.send("Network.emulateNetworkConditions", { offline: false, ...throttle });
  const types = new Map();
  const bytes = { page: 0, total: 0 };
  cdp.on("Network.responseReceived", (e) => types.set(e.requestId, { type: e.type, url: e.response.url }));
  cdp.on("Network.loadingFinished", (e) => {
    const r = types.get(e.requestId);
    bytes.total += e.encodedDataLength;
    if (r && (r.type === "Document" || r.type === "Script" || r.type === "Stylesheet" || /\/s\/assets\//.test(r.url))) bytes.page += e.encodedDataLength;
  });
  const t0 = Date.now();
  await page.goto(P.main, { waitUntil: "commit" });
  await page.waitForSelector("#answer");
  const question = Date.now() - t0;
  await page.fill("#answer", P.answer);
  await page.click("#open");
  await page.waitForSelector(`#go-${target}`);
  await page.click(`#go-${target}`);
  if (target === "images") await waitState(page, () => window.__patient.ready && window.__patient.index >= 0);
  else await page.waitForFunction((f) => (document.getElementById("report")?.innerText || "").includes(f), P.findings, { timeout: 60000 });
  const done = Date.now() - t0;
  const out = { target, question_ms: question, [`${target}_ms`]: done, page_bytes: bytes.page, bytes_until_done: bytes.total };
  await context.close();
  return out;
}

async function bench(browser) {
  const B = JSON.parse(process.env.PATIENT_BENCH);
  for (let run = 0; run < B.runs; run++) {
    for (const target of ["images", "report"]) console.log("BENCH " + JSON.stringify(await timedVisit(browser, B.throttle, target)));
  }
}

// ------------------------------------------------------------------ run

if (process.env.PATIENT_BENCH) await run([bench], "ok: bench done");
else await run([visit, exams, desktop, refusals], "ok: the patient's page passed");
