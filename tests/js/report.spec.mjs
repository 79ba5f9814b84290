// The report editor in Chromium: a resident writes and submits a chest CT report (the sign refused),
// an attending signs it (read-only after), and an AI-prefilled draft is reviewed, signed and amended.
//
//   node tests/js/report.spec.mjs <base-url> <screenshot-dir>
//
// Environment (tests/test_report_ui.py): STUDY_UID, AI_STUDY_UID, KEY_SOP, PASSWORD, TEXTS (JSON).

import assert from "node:assert/strict";
import { base, run, step, watch, shot, DESKTOP } from "./viewer_harness.mjs";

const { STUDY_UID, AI_STUDY_UID, KEY_SOP, PASSWORD } = process.env;
const TEXTS = JSON.parse(process.env.TEXTS || "{}");
assert.ok(AI_STUDY_UID && KEY_SOP && PASSWORD && TEXTS.findings, "usage: see the header");
const ZH = { ...DESKTOP, locale: "zh-CN" };
const TABLET = { viewport: { width: 820, height: 1180 }, locale: "zh-CN", hasTouch: true };

const reportPath = (study) => `/report?study=${study}`;
const status = (page, s) => page.waitForSelector(`.rp[data-status="${s}"]`, { timeout: 30000 });
const msg = (page) => page.locator("#rp-msg").innerText();

async function signInAs(page, user, next) {
  await page.goto(base + next);
  await page.waitForURL((url) => url.pathname === "/login");
  await page.fill("#username", user);
  await page.fill("#password", PASSWORD);
  await page.click("#submit");
  await page.waitForURL((url) => url.pathname + url.search === next);
}

async function waitMsg(page, pattern) {
  await page.waitForFunction((re) => new RegExp(re).test(document.getElementById("rp-msg")?.textContent || ""), pattern.source, { timeout: 30000 });
}

let residentPage;

async function resident(browser) {
  const ctx = await browser.newContext(DESKTOP);
  const page = watch(await ctx.newPage(), "resident");
  residentPage = page;
  step("resident signs in and opens the report page");
  await signInAs(page, "res.li", reportPath(STUDY_UID));
  await status(page, "none");
  assert.equal(await page.inputValue("#rp-template"), "chest_ct", "the chest CT template is suggested");
  assert.match(await page.locator(".rp-head").innerText(), /Wang Fang|王芳/);

  step("picks the chest CT template and starts");
  await page.selectOption("#rp-template", "chest_ct");
  await page.click("#rp-start");
  await status(page, "draft");
  assert.equal(await page.locator(".rp").getAttribute("data-editable"), "true");
  assert.match(await page.locator(".rp-title").innerText(), /CT Chest/);
  // a category list offers the Lung-RADS scale
  const cats = await page.locator('[data-field="lung_rads"] option').allInnerTexts();
  assert.ok(cats.some((c) => c.includes("Lung-RADS 4A")), cats.join("|"));

  step("fills structured fields and free text");
  await page.fill('[data-field="findings"]', TEXTS.findings);
  await page.fill('[data-field="nodule_count"]', "1");
  await page.fill('[data-field="largest_nodule_mm"]', "9.5");
  assert.equal(await page.locator('.rp-field[data-key="largest_nodule_mm"] .rp-unit').innerText(), "mm");
  await page.selectOption('[data-field="nodule_type"]', "solid");
  await page.selectOption('[data-field="lung_rads"]', "4A");
  await page.fill('[data-field="impression"]', TEXTS.impression);

  step("inserts a department phrase at the cursor");
  await page.fill('[data-field="recommendation"]', "Follow-up: ");
  await page.click('[data-field="recommendation"]');
  await page.keyboard.press("End");
  await page.locator(".rp-phrase", { hasText: "LDCT 3 months" }).click();
  assert.equal(await page.inputValue('[data-field="recommendation"]'), "Follow-up: " + TEXTS.phrase);

  step("adds a phrase of their own");
  await page.click("#rp-phrase-add");
  await page.fill("#rp-ask-a", "My follow-up");
  await page.fill("#rp-ask-b", "Compare with the prior CT.");
  await page.click("#rp-ask-ok");
  await page.locator(".rp-phrase", { hasText: "My follow-up" }).waitFor();

  step("flags a critical finding");
  await page.check("#rp-critical");
  await page.fill("#rp-critical-note", "Suspicious nodule; referring physician informed by phone");

  step("drags the flagged key image into the report");
  const flagged = page.locator(`.rp-src[data-sop="${KEY_SOP}"]`).first();
  await flagged.waitFor();
  await page.locator("#rp-keys").scrollIntoViewIfNeeded();
  await flagged.dragTo(page.locator("#rp-keys"));
  const key = page.locator(`#rp-keys .rp-key[data-sop="${KEY_SOP}"]`);
  await key.waitFor();
  await key.locator(".rp-caption").fill("RUL nodule");
  await page.waitForFunction(() => [...document.querySelectorAll("#rp-keys img")].every((i) => i.complete && i.naturalWidth > 0));

  step("saves");
  await page.click("#rp-save");
  await waitMsg(page, /Saved \(version \d+/);
  assert.equal(await page.locator(`#rp-keys .rp-key[data-sop="${KEY_SOP}"]`).count(), 1, "the key image is kept after saving");
  await page.waitForFunction(() => document.querySelectorAll(".rp-versions li.rp-v").length >= 2); // create + save
  await page.waitForFunction(() => [...document.querySelectorAll(".rp img")].every((i) => i.complete));
  await shot(page, "resident-draft");
  await page.locator("#rp-keys").scrollIntoViewIfNeeded();
  await shot(page, "resident-keys");

  step("submits for review");
  await page.click("#rp-submit");
  await status(page, "preliminary");
  assert.equal(await page.locator('[data-field="findings"]').getAttribute("readonly"), "", "read-only for the resident now");
  assert.equal(await page.locator("#rp-save").count(), 0);

  step("the resident's sign is refused with the server's words");
  assert.match(await page.locator("#rp-sign").getAttribute("class"), /rp-muted-btn/, "shown muted to a resident");
  await page.click("#rp-sign");
  await waitMsg(page, /^Only an attending radiologist can sign — Refused \(403\).*report\.sign/);
  assert.ok(await page.locator("#rp-msg.error").count());
  await status(page, "preliminary");
  await shot(page, "resident-refused");
}

async function attending(browser) {
  const ctx = await browser.newContext(ZH);
  const page = watch(await ctx.newPage(), "attending");
  step("attending signs in (Chinese) and reviews");
  await signInAs(page, "att.zhang", reportPath(STUDY_UID));
  await status(page, "preliminary");
  assert.equal(await page.locator(".rp").getAttribute("data-editable"), "true");
  assert.equal(await page.inputValue('[data-field="findings"]'), TEXTS.findings);
  assert.equal(await page.inputValue('[data-field="lung_rads"]'), "4A");
  assert.equal(await page.locator(`#rp-keys .rp-key[data-sop="${KEY_SOP}"]`).count(), 1);
  assert.match(await page.locator(".rp-head").innerText(), /危急值/);

  step("signs; the page becomes read-only");
  await page.click("#rp-sign");
  await status(page, "final");
  assert.equal(await page.locator(".rp").getAttribute("data-editable"), "false");
  for (const el of await page.locator("[data-field]").all()) {
    const ro = (await el.getAttribute("readonly")) !== null || (await el.isDisabled());
    assert.ok(ro, "every field is read-only after signing: " + (await el.getAttribute("data-field")));
  }
  assert.equal(await page.locator("#rp-save").count(), 0);
  assert.equal(await page.locator("#rp-sign").count(), 0);
  assert.equal(await page.locator(".rp-key .rp-del").count(), 0);
  assert.match(await page.locator("#rp-status").innerText(), /已签发/);
  assert.ok(await page.locator("#rp-amend").isVisible(), "an attending may amend");

  step("the HTML and PDF previews answer");
  const pdf = await page.request.get(base + (await page.locator("#rp-pdf").getAttribute("href")));
  assert.equal(pdf.status(), 200);
  assert.equal(pdf.headers()["content-type"], "application/pdf");
  assert.equal((await pdf.body()).subarray(0, 4).toString(), "%PDF");
  const html = await page.request.get(base + (await page.locator("#rp-html").getAttribute("href")));
  assert.equal(html.status(), 200);
  assert.match(await html.text(), /9\.5 mm/);
  await page.waitForFunction(() => [...document.querySelectorAll(".rp img")].every((i) => i.complete));
  await shot(page, "signed");

  step("tablet view");
  const tctx = await browser.newContext(TABLET);
  const tab = watch(await tctx.newPage(), "tablet");
  await tab.goto(base + reportPath(STUDY_UID));
  await tab.waitForURL((url) => url.pathname === "/login");
  await tab.fill("#username", "att.zhang");
  await tab.fill("#password", PASSWORD);
  await tab.click("#submit");
  await status(tab, "final");
  const width = await tab.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 820, `no sideways scrolling on a tablet (${width}px)`);
  await tab.waitForFunction(() => [...document.querySelectorAll(".rp img")].every((i) => i.complete));
  await shot(tab, "tablet");
  await tctx.close();
  return page;
}

async function aiReview(browser, page) {
  step("attending opens the AI-prefilled draft (takes the lock)");
  await page.goto(base + reportPath(AI_STUDY_UID));
  await status(page, "draft");
  const pending = await page.locator(".rp-field.rp-ai-pending").evaluateAll((els) => els.map((e) => e.dataset.key).sort());
  assert.deepEqual(pending, ["largest_nodule_mm", "lung_rads", "nodule_count"]);
  assert.equal(await page.locator('.rp-field[data-key="lung_rads"] .rp-ai').innerText(), "AI");

  step("the resident sees who holds the lock");
  await residentPage.goto(base + reportPath(AI_STUDY_UID));
  await status(residentPage, "draft");
  assert.match(await residentPage.locator("#rp-lock").innerText(), /att\.zhang/);
  assert.equal(await residentPage.locator(".rp").getAttribute("data-editable"), "false");
  await residentPage.waitForFunction(() => [...document.querySelectorAll(".rp img")].every((i) => i.complete));
  await shot(residentPage, "locked");

  step("signing is refused while AI values are unreviewed");
  await page.click("#rp-sign");
  await waitMsg(page, /^请先确认或修改 AI 填写的内容：结节数目、最大结节平均径、Lung-RADS 分类.*lung_rads/);
  await shot(page, "ai-pending");

  step("accepts two AI values, edits the third, signs");
  await page.click('[data-accept="nodule_count"]');
  await page.locator('.rp-field[data-key="nodule_count"] .rp-ai-accepted').waitFor();
  await page.click('[data-accept="largest_nodule_mm"]');
  await page.locator('.rp-field[data-key="largest_nodule_mm"] .rp-ai-accepted').waitFor();
  await page.selectOption('[data-field="lung_rads"]', "4A");
  await page.click("#rp-save");
  await page.locator('.rp-field[data-key="lung_rads"] .rp-ai-edited').waitFor();
  assert.equal(await page.locator(".rp-field.rp-ai-pending").count(), 0);

  step("attaches an image as a screenshot (filed in the study)");
  await page.selectOption("#rp-mode", "screenshot");
  await page.locator(".rp-src .rp-add").first().click();
  await page.locator("#rp-keys .rp-key .rp-mode").waitFor();
  await page.click("#rp-save");
  await waitMsg(page, /已保存/);
  await page.click("#rp-sign");
  await status(page, "final");

  step("amends with a reason");
  await page.click("#rp-amend");
  assert.equal(await page.locator(".rp").getAttribute("data-editable"), "true");
  const impression = page.locator('[data-field="impression"]');
  await impression.fill((await impression.inputValue()) + " (amended in the browser)");
  await page.click("#rp-amend-sign");
  await waitMsg(page, /修订原因/); // no reason given yet
  await page.fill("#rp-amend-reason", "Nodule size corrected after review");
  await page.click("#rp-amend-sign");
  await status(page, "amended");
  assert.equal(await page.locator(".rp").getAttribute("data-editable"), "false");
  await page.locator(".rp-versions .rp-v-amend .rp-v-reason", { hasText: "Nodule size corrected after review" }).waitFor();
  await shot(page, "amended");
}

await run([
  async (browser) => {
    await resident(browser);
    const page = await attending(browser);
    await aiReview(browser, page);
  },
], "ok: report editor passed");
