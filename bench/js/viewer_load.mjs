// Viewer load benchmark, browser side: Debian Chromium driven by playwright-core.
//
//   node bench/js/viewer_load.mjs <config.json>
//
// Started by bench/viewer_load.py, which starts the servers, stores the study and writes the
// config: {runs, throttle: {downloadThroughput, uploadThroughput, latency}, targets: [...]}.
// Every target is {name, kind: "radcloud" | "orthanc", base, url, login?, series?, slices}.
// Each run is a fresh browser context (cold HTTP cache, no service worker), so every run is a
// cold page load. Prints one JSON document on stdout ({results: [...], problems: [...]});
// progress goes to stderr.
//
// playwright-core is reused from tests/js/node_modules (no package.json here).

import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, "..", "..");
const PW = process.env.PLAYWRIGHT_CORE || join(REPO, "tests/js/node_modules/playwright-core/index.mjs");
const { chromium } = await import(pathToFileURL(PW).href);

const cfg = JSON.parse(readFileSync(process.argv[2], "utf8"));
const LAUNCH = {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--enable-unsafe-swiftshader",
  ],
};
const CONTEXT = { viewport: { width: 1400, height: 900 }, locale: "en-US" };
const TIMEOUT = cfg.timeoutMs || 120000;
const log = (...a) => console.error(...a);
const problems = [];

/** Pixel statistics of a canvas (is the image there, or black?). */
const canvasStatsFn = (canvas) => {
  const c = document.createElement("canvas");
  c.width = canvas.width; c.height = canvas.height;
  const ctx = c.getContext("2d");
  ctx.drawImage(canvas, 0, 0);
  const d = ctx.getImageData(0, 0, c.width, c.height).data;
  let lit = 0;
  const levels = new Set();
  for (let i = 0; i < d.length; i += 4 * 7) { if (d[i] > 20) lit++; levels.add(d[i]); }
  return { lit, levels: levels.size, w: c.width, h: c.height };
};

// Installed in every page before its scripts: long tasks (main thread busy > 50 ms), and for
// Orthanc's viewer (legacy Cornerstone, no signal of its own) the first displayed image.
const INIT = `(() => {
  window.__bench = { longTasks: [], firstImage: null };
  try {
    new PerformanceObserver((l) => { for (const e of l.getEntries()) window.__bench.longTasks.push([e.startTime, e.duration]); })
      .observe({ type: "longtask", buffered: true });
  } catch (e) {}
  if (location.pathname.startsWith("/web-viewer/")) {
    const tick = () => {
      try {
        const el = document.getElementById("dicomImage");
        if (el && window.cornerstone && window.cornerstone.getEnabledElement(el).image) {
          window.__bench.firstImage = performance.now();
          return;
        }
      } catch (e) {}
      requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  }
})();`;

const isImage = (kind, url) => kind === "radcloud" ? /\/frames\/\d+/.test(url) : /\/web-viewer\/instances\//.test(url);

async function oneRun(browser, target, throttled) {
  const context = await browser.newContext(CONTEXT);
  await context.addInitScript(INIT);
  const page = await context.newPage();
  page.on("pageerror", (e) => problems.push(`${target.name}: page error: ${e.message}`));
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  if (throttled) await cdp.send("Network.emulateNetworkConditions", { offline: false, ...cfg.throttle });
  if (target.login) { // session cookie from the sign-in API; the page itself is then loaded cold
    const r = await context.request.post(target.base + "/api/auth/login", { data: target.login });
    if (!r.ok()) throw new Error(`login: HTTP ${r.status()}`);
  }
  // every request the page's own target sees (worker targets have their own Network domain)
  const reqs = new Map();
  cdp.on("Network.requestWillBeSent", (e) => {
    reqs.set(e.requestId, { url: e.request.url, type: e.type, t0: e.timestamp, bytes: 0, done: null, status: 0 });
  });
  cdp.on("Network.responseReceived", (e) => { const r = reqs.get(e.requestId); if (r) r.status = e.response.status; });
  cdp.on("Network.loadingFinished", (e) => {
    const r = reqs.get(e.requestId);
    if (r) { r.bytes = e.encodedDataLength; r.done = e.timestamp; }
  });
  let pwImageRequests = 0; // what playwright sees, page and workers together
  page.on("request", (r) => { if (isImage(target.kind, r.url())) pwImageRequests++; });

  const res = { server: target.kind, throttled };
  await page.goto(target.url, { waitUntil: "commit", timeout: TIMEOUT });
  if (target.kind === "radcloud") {
    await page.waitForFunction(() => window.__viewer && (window.__viewer.status === "ready" || window.__viewer.status === "error"),
      null, { timeout: TIMEOUT, polling: 50 });
    const hook = await page.evaluate(() => ({ status: window.__viewer.status, nav: window.__viewer.sinceNavigationMs, mod: window.__viewer.firstImageMs,
      lossless: window.__viewer.firstImageAtMs, preview: window.__viewerLoad ? window.__viewerLoad.previewMs : undefined }));
    if (hook.status !== "ready") throw new Error("viewer status " + hook.status);
    // first image: the marked preview if one showed first, else the lossless image (older builds: "ready")
    res.losslessMs = hook.lossless ?? hook.nav;
    res.previewMs = hook.preview ?? null;
    res.readyMs = hook.nav;
    res.loadSteps = await page.evaluate(() => (window.__viewerLoad && window.__viewerLoad.steps) || null);
    res.firstImageMs = hook.preview != null && hook.preview < res.losslessMs ? hook.preview : res.losslessMs;
    res.viewerModuleToFirstImageMs = hook.mod;
    res.interactiveMs = hook.nav; // status "ready": image shown, tools and keys bound
    // Cornerstone's image cache is module-private: find its Map (imageId -> {loaded, ...}) once
    // through the heap (Runtime.queryObjects), then poll it from the page.
    const proto = await cdp.send("Runtime.evaluate", { expression: "Map.prototype" });
    const maps = await cdp.send("Runtime.queryObjects", { prototypeObjectId: proto.result.objectId });
    const found = await cdp.send("Runtime.callFunctionOn", {
      objectId: maps.objects.objectId, returnByValue: true,
      functionDeclaration: `function () {
        const first = window.__viewer.viewport(0).getImageIds()[0];
        window.__rcCache = this.find((m) => { const v = m.get(first); return v && typeof v === "object" && "loaded" in v && "imageLoadObject" in v; });
        return !!window.__rcCache;
      }`,
    });
    if (found.result.value) {
      res.cacheSignal = "Cornerstone image cache: every stack imageId loaded";
      await page.waitForFunction(() => {
        const ids = window.__viewer.viewport(0).getImageIds();
        let n = 0;
        for (const id of ids) { const e = window.__rcCache.get(id); if (e && e.loaded) n++; }
        window.__bench.cached = n;
        if (n === ids.length) { window.__bench.allCached = performance.now(); return true; }
        return false;
      }, null, { timeout: TIMEOUT, polling: 20 });
      res.allCachedMs = await page.evaluate(() => window.__bench.allCached);
      res.cachedImages = await page.evaluate(() => window.__bench.cached);
    } else {
      problems.push(`${target.name}: Cornerstone's cache map not found; all-cached from the last frame response`);
      res.cacheSignal = "last frame response (cache not found)";
    }
    res.canvas = await page.evaluate("(" + canvasStatsFn.toString() + ")(window.__viewer.viewport(0).getCanvas())");
  } else {
    await page.waitForFunction(() => window.__bench && window.__bench.firstImage, null, { timeout: TIMEOUT, polling: 50 });
    res.firstImageMs = await page.evaluate(() => window.__bench.firstImage);
    res.interactiveMs = res.firstImageMs; // the viewer binds its mouse handlers right after
    // No prefetch in Orthanc Web Viewer 2.8: an image loads when it is scrolled to (synchronous
    // XHR + decode on the main thread). Load the other slices one after another exactly as
    // scrolling does, through the viewer's own image loader.
    res.allCachedMs = await page.evaluate(async (series) => {
      const v = await (await fetch("../series/" + series)).json();
      for (const id of v.Slices) await window.cornerstone.loadAndCacheImage(id);
      window.__bench.cached = v.Slices.length;
      return performance.now();
    }, target.series);
    res.cachedImages = await page.evaluate(() => window.__bench.cached);
    res.cacheSignal = "viewer's loadAndCacheImage for every slice in turn (no prefetch)";
    res.canvas = await page.evaluate("(" + canvasStatsFn.toString() + ")(document.querySelector('#dicomImage canvas'))");
  }
  await page.waitForTimeout(300); // let the last loadingFinished events arrive
  const nav = await page.evaluate(() => {
    const n = performance.getEntriesByType("navigation")[0];
    return { timeOrigin: performance.timeOrigin, dcl: n ? n.domContentLoadedEventEnd : null, load: n ? n.loadEventEnd : null };
  });
  res.domContentLoadedMs = nav.dcl;
  const bench = await page.evaluate(() => window.__bench);
  const until = res.allCachedMs ?? Infinity;
  const lt = bench.longTasks.filter(([s]) => s <= until);
  res.longTasks = { count: lt.length, totalMs: lt.reduce((a, [, d]) => a + d, 0), maxMs: lt.reduce((a, [, d]) => Math.max(a, d), 0) };

  // network: images vs the rest (bundle, page, metadata); CDP timestamps are monotonic seconds
  const all = [...reqs.values()];
  const images = all.filter((r) => isImage(target.kind, r.url));
  const other = all.filter((r) => !isImage(target.kind, r.url));
  const t0 = Math.min(...all.map((r) => r.t0));
  res.imageRequests = images.length;
  res.imageRequestsPlaywright = pwImageRequests;
  res.imageRequestTypes = [...new Set(images.map((r) => r.type))];
  res.imageBytes = images.reduce((a, r) => a + r.bytes, 0);
  res.imageStatus = [...new Set(images.map((r) => r.status))];
  const firstImgStart = Math.min(...images.map((r) => r.t0));
  const lastImgDone = Math.max(...images.map((r) => r.done ?? 0));
  res.imagesWireS = lastImgDone - firstImgStart;
  res.imagesWireMBps = res.imageBytes / 1e6 / res.imagesWireS;
  if (res.allCachedMs == null) res.allCachedMs = (lastImgDone - t0) * 1000; // fallback
  const startup = other.filter((r) => r.done != null && (r.done - t0) * 1000 <= res.firstImageMs + 1);
  const isCode = (u) => /\.(js|mjs|css|wasm)$/.test(new URL(u).pathname); // scripts, styles, wasm
  res.startupBytes = startup.reduce((a, r) => a + r.bytes, 0);
  res.bundleBytes = startup.filter((r) => isCode(r.url)).reduce((a, r) => a + r.bytes, 0);
  res.bundleFiles = startup.filter((r) => isCode(r.url)).map((r) => [new URL(r.url).pathname, r.bytes]);
  if (res.losslessMs != null) {
    const beforeLossless = other.filter((r) => r.done != null && (r.done - t0) * 1000 <= res.losslessMs + 1 && isCode(r.url));
    res.bundleLosslessBytes = beforeLossless.reduce((a, r) => a + r.bytes, 0);
    res.bundleLosslessFiles = beforeLossless.map((r) => [new URL(r.url).pathname, r.bytes]);
  }
  res.laterCodeBytes = other.filter((r) => r.done != null && isCode(r.url) && !startup.includes(r)).reduce((a, r) => a + r.bytes, 0);
  res.workers = page.workers().map((w) => new URL(w.url()).pathname);
  await context.close();
  return res;
}

const browser = await chromium.launch(LAUNCH);
const version = browser.version();
const results = [];
try {
  for (const target of cfg.targets) {
    for (const throttled of [false, true]) {
      for (let i = 0; i < cfg.runs; i++) {
        const label = `${target.name} ${throttled ? "100 Mbit/s" : "unthrottled"} run ${i + 1}/${cfg.runs}`;
        try {
          const r = await oneRun(browser, target, throttled);
          r.run = i + 1;
          results.push(r);
          log(`${label}: first image ${r.firstImageMs?.toFixed(0)} ms, all ${r.cachedImages} cached ${r.allCachedMs?.toFixed(0)} ms, ` +
            `images ${(r.imageBytes / 1e6).toFixed(1)} MB at ${r.imagesWireMBps.toFixed(1)} MB/s, bundle ${(r.bundleBytes / 1e3).toFixed(0)} kB`);
        } catch (e) {
          problems.push(`${label}: ${e.message.split("\n")[0]}`);
          results.push({ server: target.kind, throttled, run: i + 1, error: e.message.split("\n")[0] });
          log(`${label}: FAILED ${e.message.split("\n")[0]}`);
        }
      }
    }
  }
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify({ chromium: version, results, problems }) + "\n");
