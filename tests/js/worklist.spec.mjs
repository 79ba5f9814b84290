// The study list on /api/worklist in Chromium: filters (pinyin, modality, quick dates) kept in
// the URL and restored by the back button, sort both ways, pages, series thumbnails, status
// badges, a patient's time line opening a study, Enter / double-click opening the viewer,
// Chinese, and the phone layout.   node worklist.spec.mjs <base-url> <screenshot-dir>
//
// PHANTOM (JSON): uids (study UID by key, see tests/test_worklist_ui.py), today (YYYY-MM-DD).

import assert from "node:assert/strict";
import { base, P, DESKTOP, step, watch, shot, signIn, run } from "./viewer_harness.mjs";

const U = P.uids;
const KEY = Object.fromEntries(Object.entries(U).map(([k, v]) => [v, k]));

/** Wait for the list to answer after `action` (the page stamps body[data-list-ready]). */
async function listed(page, action) {
  const before = await page.evaluate(() => document.body.dataset.listReady || "");
  await action();
  await page.waitForFunction((b) => (document.body.dataset.listReady || "") !== b, before);
}
/** The keys ("a1", …) of the rows shown, top to bottom. */
const rows = (page) => page.$$eval("tr.study", (trs) => trs.map((tr) => tr.dataset.uid)).then((u) => u.map((x) => KEY[x]));
const sorted = (a) => [...a].sort();
const param = (page, k) => new URL(page.url()).searchParams.get(k);

async function desktop(browser) {
  const context = await browser.newContext({ ...DESKTOP, viewport: { width: 1920, height: 1080 } });
  const page = watch(await context.newPage(), "desktop");

  step("sign in; all seven studies, newest first, with status badges");
  await page.goto(base + "/");
  await signIn(page, "/");
  await page.locator("tr.study").first().waitFor({ timeout: 20000 });
  assert.equal(await page.getAttribute("#total", "data-total"), "7");
  const all = await rows(page);
  assert.deepEqual(sorted(all), ["a1", "a2", "a3", "a4", "b1", "b2", "b3"]);
  assert.equal(all.at(-1), "a4", "the oldest study last");
  const badges = Object.fromEntries(await page.$$eval("tr.study", (trs) => trs.map((tr) => [tr.dataset.uid, tr.querySelector(".badge").dataset.status])));
  assert.equal(badges[U.a2], "ai_done");
  assert.equal(badges[U.a3], "in_progress");
  assert.equal(badges[U.a4], "signed");
  assert.equal(badges[U.a1], "unread");
  assert.match(await page.locator(`tr.study[data-uid="${U.b2}"] .st`).innerText(), /Critical/);

  step("filter by pinyin: zhang → the four studies of 张伟; the URL keeps it");
  await page.fill("#q-name", "zhang");
  await listed(page, () => page.click("#search-go"));
  assert.deepEqual(sorted(await rows(page)), ["a1", "a2", "a3", "a4"]);
  assert.equal(param(page, "name"), "zhang");
  assert.match(await page.locator("tr.study").first().innerText(), /张伟/);

  step("filter by modality: CT (with the name cleared)");
  await page.fill("#q-name", "");
  await listed(page, () => page.selectOption("#q-modality", "CT")); // a choice searches at once
  assert.deepEqual(sorted(await rows(page)), ["a1", "a4", "b3"]);
  assert.equal(param(page, "modality"), "CT");

  step("quick dates: today, 3 days, 7 days");
  await listed(page, () => page.click("#search-clear"));
  await listed(page, () => page.click("#q-days-1"));
  assert.deepEqual(sorted(await rows(page)), ["a1", "b3"]);
  assert.equal(param(page, "from"), P.today);
  assert.equal(await page.inputValue("#q-to"), P.today);
  await listed(page, () => page.click("#q-days-3"));
  assert.deepEqual(sorted(await rows(page)), ["a1", "a2", "b2", "b3"]);
  assert.match(await page.getAttribute("#q-days-3", "class"), /\bon\b/, "the quick range in use is marked");
  await listed(page, () => page.click("#q-days-7"));
  assert.deepEqual(sorted(await rows(page)), ["a1", "a2", "b1", "b2", "b3"]);

  step("the back button restores the earlier filters (3 days), and forward again");
  await listed(page, () => page.goBack());
  assert.deepEqual(sorted(await rows(page)), ["a1", "a2", "b2", "b3"]);
  const threeDays = await page.inputValue("#q-from");
  assert.notEqual(threeDays, P.today);
  await listed(page, () => page.goBack());
  assert.deepEqual(sorted(await rows(page)), ["a1", "b3"]);
  assert.equal(await page.inputValue("#q-from"), P.today);
  await listed(page, () => page.goForward());
  assert.equal(await page.inputValue("#q-from"), threeDays);

  step("sort by date: ascending, then descending");
  await listed(page, () => page.click("#search-clear"));
  const dates = () => page.$$eval("tr.study td.date", (tds) => tds.map((td) => td.textContent));
  await listed(page, () => page.click('th[data-sort="date"]'));
  assert.equal(await page.getAttribute('th[data-sort="date"]', "aria-sort"), "ascending");
  const up = await dates();
  assert.deepEqual(up, [...up].sort());
  assert.equal((await rows(page))[0], "a4");
  await listed(page, () => page.click('th[data-sort="date"]'));
  assert.equal(await page.getAttribute('th[data-sort="date"]', "aria-sort"), "descending");
  const down = await dates();
  assert.deepEqual(down, [...up].reverse());
  assert.equal(param(page, "sort"), "-date");
  await listed(page, () => page.click('th[data-sort="name"]'));
  assert.equal(await page.getAttribute('th[data-sort="name"]', "aria-sort"), "ascending");
  await listed(page, () => page.click('th[data-sort="date"]')); // back to newest first

  step("pages: 3 per page → 3 pages, every study once");
  await listed(page, () => page.goto(base + "/?size=3"));
  assert.match(await page.locator("#page-info").innerText(), /Page 1 of 3/);
  const seen = await rows(page);
  assert.equal(seen.length, 3);
  assert.ok(await page.locator("#prev").isDisabled());
  await listed(page, () => page.click("#next"));
  assert.equal(param(page, "page"), "2");
  seen.push(...(await rows(page)));
  await listed(page, () => page.click("#next"));
  seen.push(...(await rows(page)));
  assert.ok(await page.locator("#next").isDisabled());
  assert.deepEqual(sorted(seen), ["a1", "a2", "a3", "a4", "b1", "b2", "b3"]);
  await listed(page, () => page.selectOption("#page-size", "25"));
  assert.equal(await page.locator("tr.study").count(), 7);

  step("series thumbnails of a row, loaded when it is expanded");
  const thumbs = `tr.thumb-row[data-uid="${U.a1}"] .thumb img`;
  assert.equal(await page.locator(thumbs).count(), 0, "no thumbnails before expanding");
  await page.click(`tr.study[data-uid="${U.a1}"] .expand`);
  await page.waitForFunction((sel) => {
    const imgs = [...document.querySelectorAll(sel)];
    return imgs.length === 2 && imgs.every((i) => i.complete && i.naturalWidth > 0);
  }, thumbs);
  assert.match(await page.getAttribute(thumbs, "src"), /\/dicom-web\/studies\/[\d.]+\/series\/[\d.]+\/thumbnail$/);
  await page.click(`tr.study[data-uid="${U.b2}"] .expand`);
  await page.locator(`tr.thumb-row[data-uid="${U.b2}"] .thumb img`).waitFor();
  await shot(page, "desktop");

  step("a patient's time line: 张伟's four studies, newest first; one opens the viewer");
  await listed(page, () => page.click(`tr.study[data-uid="${U.a1}"] .who-link`));
  await page.waitForFunction(() => document.body.dataset.timelineReady === "WL-1001");
  assert.equal(param(page, "tl"), "WL-1001");
  const line = await page.$$eval("#timeline .tl-item", (li) => li.map((x) => x.dataset.uid));
  assert.deepEqual(line.map((u) => KEY[u]), ["a1", "a2", "a3", "a4"]);
  assert.match(await page.locator("#timeline").innerText(), /张伟[\s\S]*WL-1001[\s\S]*MR brain[\s\S]*In progress/);
  await shot(page, "timeline");
  await page.click(`#timeline .tl-item[data-uid="${U.a3}"]`);
  await page.waitForURL((url) => url.pathname === "/viewer" && url.searchParams.get("study") === U.a3);
  await page.waitForFunction(() => window.__viewer && window.__viewer.status === "ready", null, { timeout: 60000 });

  step("back from the viewer: the list with its time line and sort as they were");
  await page.goBack();
  await page.waitForFunction(() => document.body.dataset.timelineReady === "WL-1001");
  assert.equal(await page.locator("tr.study").count(), 7);
  await page.click("#timeline-close");
  await page.waitForFunction(() => document.getElementById("timeline").hidden);

  step("Enter on a row and a double-click open the viewer");
  await listed(page, () => page.selectOption("#q-status", "unread")); // a filter to come back to
  const listUrl = page.url();
  await page.focus(`tr.study[data-uid="${U.b1}"]`);
  await page.keyboard.press("Enter");
  await page.waitForURL((url) => url.pathname === "/viewer" && url.searchParams.get("study") === U.b1);
  step("the viewer's Studies button goes back to the list as it was left");
  await page.waitForFunction(() => window.__viewer && window.__viewer.status === "ready", null, { timeout: 60000 });
  assert.equal(new URL(await page.getAttribute("#act-report", "href"), page.url()).searchParams.get("study"), U.b1);
  await page.click("#back");
  await page.waitForURL((url) => url.pathname === "/");
  await page.waitForFunction(() => document.body.dataset.listReady);
  assert.equal(page.url(), listUrl);
  assert.equal(await page.inputValue("#q-status"), "unread");
  assert.deepEqual(sorted(await rows(page)), ["a1", "b1", "b3"]);
  step("a row's Report link opens that study's report page, not the viewer");
  await page.click(`tr.study[data-uid="${U.a1}"] .report-link`);
  await page.waitForURL((url) => url.pathname === "/report" && url.searchParams.get("study") === U.a1);
  await page.goBack();
  await page.waitForFunction(() => document.body.dataset.listReady);
  await page.locator(`tr.study[data-uid="${U.b3}"]`).dblclick();
  await page.waitForURL((url) => url.pathname === "/viewer" && url.searchParams.get("study") === U.b3);
  await page.goBack();

  step("Chinese: headings, badges, filters");
  await page.locator("tr.study").first().waitFor();
  await listed(page, () => page.click("#search-clear"));
  await page.click("#lang");
  assert.match(await page.locator(".list h1").innerText(), /检查列表/);
  assert.match(await page.locator(`tr.study[data-uid="${U.a4}"] .badge`).innerText(), /已签发/);
  assert.match(await page.locator("#search").innerText(), /今天[\s\S]*3 天[\s\S]*7 天/);
  await page.fill("#q-name", "李");
  await listed(page, () => page.click("#search-go"));
  assert.deepEqual(sorted(await rows(page)), ["b1", "b2", "b3"]);
  await page.click(`tr.study[data-uid="${U.b2}"] .expand`);
  await page.locator(`tr.thumb-row[data-uid="${U.b2}"] .thumb img`).waitFor();
  await shot(page, "desktop-zh");
  await page.click("#lang"); // back to English for the next scenario
  await context.close();
}

async function phone(browser) {
  const context = await browser.newContext({
    viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true, locale: "zh-CN",
  });
  const page = watch(await context.newPage(), "phone");
  step("phone: the list fits the screen; the time line covers it");
  await page.goto(base + "/?status=signed");
  await signIn(page, "/?status=signed");
  await page.locator("tr.study").first().waitFor();
  assert.deepEqual(sorted(await rows(page)), ["a4", "b2"]);
  await page.goto(base + "/");
  await page.locator("tr.study").first().waitFor();
  const wide = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(wide <= 390 + 1, `the page is ${wide} px wide on a 390 px phone`);
  await page.click(`tr.study[data-uid="${U.a1}"] .expand`);
  await page.waitForFunction((u) => [...document.querySelectorAll(`tr.thumb-row[data-uid="${u}"] .thumb img`)]
    .some((i) => i.complete && i.naturalWidth > 0), U.a1);
  await shot(page, "phone");
  await page.click(`tr.study[data-uid="${U.b1}"] .who-link`);
  await page.waitForFunction(() => document.body.dataset.timelineReady === "WL-2002");
  const box = await page.locator("#timeline").boundingBox();
  assert.ok(box.width >= 380, "the time line takes the phone's width");
  await shot(page, "phone-timeline");
  await page.locator(`#timeline .tl-item[data-uid="${U.b2}"]`).tap();
  await page.waitForURL((url) => url.pathname === "/viewer" && url.searchParams.get("study") === U.b2);
  await context.close();
}

await run([desktop, phone], "ok: worklist passed");
