// Real-browser scenario for the sign-in and admin pages (Debian Chromium via playwright-core).
//
//   node tests/js/admin.spec.mjs <base-url> <screenshot-dir>
//
// Environment: ADMIN_PASSWORD (the platform admin's), STUDY_UID (a study in the
// archive, for a break-the-glass event).  Exit code 0 when every step passed;
// on failure the step, the error and a screenshot (failure-*.png) are left behind.

import { chromium } from "playwright-core";
import { createHmac } from "node:crypto";
import { mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import assert from "node:assert/strict";

const [base, shots] = process.argv.slice(2);
if (!base || !shots) {
  console.error("usage: node admin.spec.mjs <base-url> <screenshot-dir>");
  process.exit(2);
}
const ADMIN_PASSWORD = process.env.ADMIN_PASSWORD;
const STUDY_UID = process.env.STUDY_UID || "1.2.826.0.1.3680043.10.999.1";
assert.ok(ADMIN_PASSWORD, "ADMIN_PASSWORD is not set");
mkdirSync(shots, { recursive: true });

const LAUNCH = {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
};
const DESKTOP = { viewport: { width: 1280, height: 860 }, locale: "en-US", acceptDownloads: true };
const PHONE = {
  viewport: { width: 390, height: 844 }, deviceScaleFactor: 2, isMobile: true, hasTouch: true,
  locale: "zh-CN",
  userAgent: "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Mobile Safari/537.36",
};
const XSS_NAME = 'North Hospital <img src=x onerror="window.__xss=1"> 北院';
const DOCTOR = "dr.wang";
const DOCTOR_PASSWORD = "Radiology-2024";
const DOCTOR_PASSWORD2 = "Radiology-2025!";

let current = "start";
const problems = [];
const pages = [];

function step(name) {
  current = name;
  console.log("- " + name);
}

function watch(page, label) {
  pages.push(page);
  page.on("pageerror", (error) => problems.push(`${label}: page error: ${error.message}`));
  page.on("console", (msg) => {
    const text = msg.text();
    if (msg.type() === "error" && !text.startsWith("Failed to load resource")) problems.push(`${label}: console error: ${text}`);
  });
  page.on("dialog", (dialog) => {
    problems.push(`${label}: unexpected native dialog: ${dialog.message()}`);
    dialog.dismiss();
  });
  return page;
}

async function shot(page, name) {
  const path = join(shots, name + ".png");
  await page.evaluate(() => window.scrollTo(0, 0)); // the sticky tab bar stays at the top
  await page.screenshot({ path, fullPage: true });
  console.log("  screenshot " + path);
}

/** Wait for a message of `tone` (ok | error) containing `text`, then close it. */
async function toast(page, tone, text) {
  const item = page.locator(".toast-" + tone, { hasText: text }).last();
  await item.waitFor({ state: "visible", timeout: 10000 });
  const said = await item.textContent();
  await item.locator(".toast-close").click();
  return said;
}

async function confirmDialog(page) {
  const dlg = page.locator("dialog#dialog[open]");
  await dlg.waitFor();
  await dlg.locator(".dialog-actions .btn-primary, .dialog-actions .btn-danger").click();
  await dlg.waitFor({ state: "detached" }).catch(() => {});
  await page.waitForFunction(() => !document.querySelector("dialog#dialog").open);
}

async function tab(page, id) {
  await page.click("#tab-" + id);
  await page.locator("#panel-" + id).waitFor({ state: "visible" });
  await page.locator("#panel-" + id + " .panel-head").waitFor();
}

async function visibleTabs(page) {
  return page.$$eval("#tabs [role=tab]", (els) => els.filter((e) => !e.hidden).map((e) => e.dataset.tab));
}

async function noSideScroll(page, label) {
  const { scroll, width } = await page.evaluate(() => ({ scroll: document.documentElement.scrollWidth, width: window.innerWidth }));
  assert.ok(scroll <= width + 1, `${label}: page wider than the screen (${scroll} > ${width})`);
}

function totp(secret, at = Date.now() / 1000) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = "";
  for (const c of secret.replace(/=+$/, "").toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, "0");
  const bytes = [];
  for (let i = 0; i + 8 <= bits.length; i += 8) bytes.push(parseInt(bits.slice(i, i + 8), 2));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(at / 30)));
  const digest = createHmac("sha1", Buffer.from(bytes)).update(counter).digest();
  const offset = digest[digest.length - 1] & 15;
  return String((digest.readUInt32BE(offset) & 0x7fffffff) % 1000000).padStart(6, "0");
}

async function json(method, path, body, token) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (token) headers.Authorization = "Bearer " + token;
  const response = await fetch(base + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

async function signIn(page, username, password, code) {
  await page.fill("#username", username);
  await page.fill("#password", password);
  if (code) await page.fill("#code", code);
  await page.click("#submit");
}

async function main() {
  const browser = await chromium.launch(LAUNCH);
  try {
    step("an institution registers itself (pending approval)");
    const reg = await json("POST", "/api/institutions/register", {
      code: "south-clinic", name: "South Clinic 南区诊所", kind: "clinic",
      admin_username: "south.admin", admin_password: "South-admin-2024",
    });
    assert.equal(reg.status, 202, JSON.stringify(reg.body));
    const adminApi = await json("POST", "/api/auth/login", { username: "admin", password: ADMIN_PASSWORD });
    assert.equal(adminApi.status, 200, JSON.stringify(adminApi.body));
    const adminToken = adminApi.body.token;

    // ------------------------------------------------------------------ admin, desktop
    const admin = await browser.newContext(DESKTOP);
    const page = watch(await admin.newPage(), "admin");

    step("/admin without a session goes to /login?next=/admin");
    await page.goto(base + "/admin");
    await page.waitForURL((url) => url.pathname === "/login" && url.searchParams.get("next") === "/admin");
    assert.equal(await page.textContent("h1"), "Sign in");
    assert.equal(await page.getAttribute("html", "lang"), "en");
    await page.waitForLoadState("networkidle");
    assert.ok(await page.locator("#sso").isHidden(), "the SSO button shows although SSO is not configured");
    assert.ok(await page.locator("#code-field").isHidden(), "the one-time code field shows before it is asked for");
    await shot(page, "desktop-login");

    step("a wrong password shows the server's error");
    await signIn(page, "admin", "not-the-password-1");
    await page.locator("#error").waitFor({ state: "visible" });
    const error = await page.textContent("#error");
    assert.match(error, /Sign-in failed/);
    assert.match(error, /wrong user name or password/);
    assert.equal(new URL(page.url()).pathname, "/login");
    await shot(page, "desktop-login-error");

    step("the right password opens the admin page");
    await signIn(page, "admin", ADMIN_PASSWORD);
    await page.waitForURL((url) => url.pathname === "/admin");
    await page.locator("body[data-ready='1']").waitFor();
    assert.deepEqual(await visibleTabs(page), ["institutions", "users", "groups", "roles", "nodes", "audit", "account"]);
    assert.match(await page.textContent("#who"), /admin/);

    step("institutions: approve the pending one");
    await tab(page, "institutions");
    const south = page.locator('tr[data-code="south-clinic"]');
    assert.match(await south.textContent(), /Pending approval/);
    assert.match(await page.textContent("#panel-institutions .alert-warn"), /1 institution/);
    await south.getByRole("button", { name: "Approve" }).click();
    await toast(page, "ok", "approved");
    await page.locator('tr[data-code="south-clinic"]', { hasText: "Active" }).waitFor();
    const southLogin = await json("POST", "/api/auth/login", { username: "south.admin", password: "South-admin-2024" });
    assert.equal(southLogin.status, 200, "the approved institution's admin cannot sign in");

    step("institutions: create one (its name is shown as text, never as markup)");
    await page.fill("#institution-form [name=code]", "north-hosp");
    await page.fill("#institution-form [name=name]", XSS_NAME);
    await page.selectOption("#institution-form [name=kind]", "hospital");
    await page.click("#institution-form button[type=submit]");
    await toast(page, "ok", "created");
    const north = page.locator('tr[data-code="north-hosp"]');
    await north.waitFor();
    const cells = await north.locator("td").allTextContents();
    assert.equal(cells[2], XSS_NAME);
    assert.equal(await page.locator("#panel-institutions img").count(), 0, "data became markup");
    assert.equal(await page.evaluate(() => window.__xss), undefined, "data ran as script");
    const northId = cells[0].trim();

    step("institutions: a taken code shows the API's problem detail");
    await page.fill("#institution-form [name=code]", "north-hosp");
    await page.fill("#institution-form [name=name]", "Another");
    await page.click("#institution-form button[type=submit]");
    const conflict = await toast(page, "error", "taken");
    assert.match(conflict, /Conflict: institution code 'north-hosp' is taken/);

    step("institutions: suspend one (after confirming)");
    await page.locator('tr[data-code="south-clinic"]').getByRole("button", { name: "Suspend" }).click();
    await confirmDialog(page);
    await toast(page, "ok", "suspended");
    await page.locator('tr[data-code="south-clinic"]', { hasText: "Suspended" }).waitFor();
    await page.locator('tr[data-code="south-clinic"]').getByRole("button", { name: "Reactivate" }).waitFor();
    await shot(page, "desktop-institutions");

    step("users: create a radiologist in the new institution");
    await tab(page, "users");
    await page.fill("#user-form [name=username]", DOCTOR);
    await page.fill("#user-form [name=display_name]", "王医生 Dr Wang");
    await page.fill("#user-form [name=email]", "wang@north.example");
    await page.selectOption("#user-form [name=institution_id]", northId);
    await page.fill("#user-form [name=password]", DOCTOR_PASSWORD);
    await page.check("#user-form input[value=radiologist]");
    await page.click("#user-form button[type=submit]");
    await toast(page, "ok", DOCTOR);
    const doctor = page.locator(`tr[data-username="${DOCTOR}"]`);
    await doctor.waitFor();
    const doctorText = await doctor.textContent();
    assert.match(doctorText, /Radiologist/);
    assert.match(doctorText, /North Hospital <img/);
    assert.match(doctorText, /Active/);

    step("users: the same name again is refused with the server's reason");
    await page.fill("#user-form [name=username]", DOCTOR);
    await page.check("#user-form input[value=radiologist]");
    await page.click("#user-form button[type=submit]");
    assert.match(await toast(page, "error", "taken"), /user name 'dr\.wang' is taken/);

    step("users: reset a password in the dialog (the password policy is enforced)");
    await doctor.getByRole("button", { name: "Reset password" }).click();
    await page.fill("dialog#dialog[open] input[name=password]", "short");
    await page.click("dialog#dialog[open] button[type=submit]");
    assert.match(await toast(page, "error", "at least"), /Invalid input: a password needs at least 10 characters/);
    await doctor.getByRole("button", { name: "Reset password" }).click();
    await page.fill("dialog#dialog[open] input[name=password]", DOCTOR_PASSWORD2);
    await page.click("dialog#dialog[open] button[type=submit]");
    await toast(page, "ok", "reset");
    await shot(page, "desktop-users");

    step("groups: a care team with the radiologist in it");
    await tab(page, "groups");
    await page.fill("#group-form [name=name]", "Chest team 胸部组");
    await page.selectOption("#group-form [name=kind]", "care_team");
    await page.selectOption("#group-form [name=institution_id]", northId);
    await page.click("#group-form button[type=submit]");
    await toast(page, "ok", "created");
    const team = page.locator('article[data-group="Chest team 胸部组"]');
    await team.waitFor();
    assert.match(await team.textContent(), /Care team/);
    const pick = team.locator("select");
    const doctorId = await pick.locator("option", { hasText: DOCTOR }).getAttribute("value");
    await pick.selectOption(doctorId);
    await team.getByRole("button", { name: "Add member" }).click();
    await toast(page, "ok", "added");
    await page.locator(`article[data-group="Chest team 胸部组"] li[data-username="${DOCTOR}"]`).waitFor();
    await shot(page, "desktop-groups");

    step("roles: the matrix shows the defaults and the platform admin can toggle");
    await tab(page, "roles");
    assert.ok(await page.isChecked('input[data-role=radiologist][data-perm="study.read"]'));
    assert.ok(!(await page.isChecked('input[data-role=auditor][data-perm="study.read"]')));
    await page.check('input[data-role=auditor][data-perm="study.read"]');
    await toast(page, "ok", "allowed");
    assert.ok((await json("GET", "/api/roles", undefined, adminToken)).body.auditor.includes("study.read"));
    await page.uncheck('input[data-role=auditor][data-perm="study.read"]');
    await toast(page, "ok", "removed");
    assert.ok(!(await json("GET", "/api/roles", undefined, adminToken)).body.auditor.includes("study.read"));
    await shot(page, "desktop-roles");

    step("DICOM nodes: add one, then edit it");
    await tab(page, "nodes");
    await page.fill("#node-form [name=ae_title]", "CT_NORTH");
    await page.selectOption("#node-form [name=institution_id]", northId);
    await page.fill("#node-form [name=host]", "127.0.0.1");
    await page.fill("#node-form [name=port]", "11112");
    await page.fill("#node-form [name=description]", "CT scanner 北楼");
    await page.click("#node-form button[type=submit]");
    await toast(page, "ok", "CT_NORTH");
    const node = page.locator('tr[data-ae="CT_NORTH"]');
    await node.waitFor();
    assert.match(await node.textContent(), /11112/);
    await node.getByRole("button", { name: "Edit" }).click();
    await page.locator("#node-form h3", { hasText: "Edit DICOM node CT_NORTH" }).waitFor();
    assert.equal(await page.inputValue("#node-form [name=ae_title]"), "CT_NORTH");
    await page.fill("#node-form [name=port]", "11113");
    await page.uncheck("#node-form [name=allow_query]");
    await page.click("#node-form button[type=submit]");
    await toast(page, "ok", "CT_NORTH");
    await page.locator('tr[data-ae="CT_NORTH"]', { hasText: "11113" }).waitFor();
    assert.doesNotMatch(await page.locator('tr[data-ae="CT_NORTH"]').textContent(), /Query/);
    await page.fill("#node-form [name=ae_title]", "BAD\\TITLE");
    await page.click("#node-form button[type=submit]");
    await page.locator(".toast-error").last().waitFor();
    await page.locator(".toast-error .toast-close").last().click();
    await shot(page, "desktop-nodes");

    step("my account: an API token shown once, then revoked; TOTP secret shown as text");
    await tab(page, "account");
    await page.fill("#token-form [name=name]", "PACS bridge");
    await page.fill("#token-form [name=days]", "30");
    await page.click("#token-form button[type=submit]");
    const secret = await page.locator("#new-token").textContent();
    assert.match(secret, /^rca_/);
    const bridge = page.locator("#tokens-card tr", { hasText: "PACS bridge" });
    await bridge.waitFor();
    assert.equal((await json("GET", "/api/auth/me", undefined, secret)).status, 200, "the new token does not work");
    await page.click("#totp-card button");
    assert.match(await page.locator("#totp-secret").textContent(), /^[A-Z2-7]{16,}$/);
    assert.match(await page.locator("#totp-uri").textContent(), /^otpauth:\/\/totp\/radcloud%3Aadmin\?secret=/);
    await shot(page, "desktop-account");
    await bridge.getByRole("button", { name: "Revoke" }).click();
    await confirmDialog(page);
    await toast(page, "ok", "revoked");
    await page.locator("#tokens-card tr", { hasText: "PACS bridge" }).waitFor({ state: "detached" });
    assert.equal((await json("GET", "/api/auth/me", undefined, secret)).status, 401, "a revoked token still works");

    // ------------------------------------------------------------------ the radiologist
    step("the radiologist signs in: only 'My account' is offered");
    const drContext = await browser.newContext(DESKTOP);
    const dr = watch(await drContext.newPage(), "radiologist");
    await dr.goto(base + "/login?next=/admin");
    await signIn(dr, DOCTOR, DOCTOR_PASSWORD);
    await dr.locator("#error").waitFor({ state: "visible" });
    assert.match(await dr.locator("#error").textContent(), /wrong user name or password/);
    await signIn(dr, DOCTOR, DOCTOR_PASSWORD2);
    await dr.waitForURL((url) => url.pathname === "/admin");
    await dr.locator("body[data-ready='1']").waitFor();
    assert.deepEqual(await visibleTabs(dr), ["account"]);

    step("the radiologist turns on two-factor sign-in");
    await dr.click("#totp-card button");
    const drSecret = (await dr.locator("#totp-secret").textContent()).trim();
    await dr.fill("#totp-card input[name=code]", "000000" === totp(drSecret) ? "111111" : "000000");
    await dr.click("#totp-card button[type=submit]");
    assert.match(await toast(dr, "error", "code"), /does not match/);
    await dr.fill("#totp-card input[name=code]", totp(drSecret));
    await dr.click("#totp-card button[type=submit]");
    await toast(dr, "ok", "on");
    await dr.locator("#totp-card .badge-ok").waitFor();

    step("signing in again asks for the one-time code");
    await dr.click("#signout");
    await dr.waitForURL((url) => url.pathname === "/login");
    assert.match(await dr.textContent("#notice"), /signed out/);
    await signIn(dr, DOCTOR, DOCTOR_PASSWORD2);
    await dr.locator("#code-field").waitFor({ state: "visible" });
    assert.match(await dr.textContent("#error"), /one-time code/);
    await shot(dr, "desktop-login-code");
    await dr.fill("#code", totp(drSecret));
    await dr.click("#submit");
    await dr.waitForURL((url) => url.pathname === "/admin");
    await dr.locator("body[data-ready='1']").waitFor();

    step("break the glass on another institution's study: refused, and flagged in the audit (API)");
    const drLogin = await json("POST", "/api/auth/login", { username: DOCTOR, password: DOCTOR_PASSWORD2, code: totp(drSecret) });
    assert.equal(drLogin.status, 200, JSON.stringify(drLogin.body));
    const glass = await json("POST", `/api/studies/${STUDY_UID}/break-glass`, { reason: "trauma patient in resus, prior CT needed" }, drLogin.body.token);
    // break the glass lifts a care-team restriction inside one's own institution only
    assert.equal(glass.status, 404, JSON.stringify(glass.body));
    await drContext.close();

    // ------------------------------------------------------------------ audit
    step("audit: the actions above are listed; break-the-glass is highlighted");
    await tab(page, "audit");
    await page.locator("#audit-results tbody tr").first().waitFor();
    const wanted = ["institution.create", "institution.change", "user.create", "user.password", "group.create",
      "group.member", "role.grant", "ae.change", "token.create", "token.revoke", "login", "study.break_glass"];
    let actions = [];
    for (;;) { // newest first, 100 a page: load more until every action above is listed
      actions = await page.$$eval("#audit-results tbody tr", (rows) => rows.map((r) => r.dataset.action));
      const more = page.locator("#audit-results .table-foot button");
      if (wanted.every((a) => actions.includes(a)) || !(await more.count())) break;
      const before = actions.length;
      await more.click();
      await page.waitForFunction((n) => document.querySelectorAll("#audit-results tbody tr").length > n, before);
    }
    for (const want of wanted) assert.ok(actions.includes(want), `audit lacks ${want}: ${actions.join(", ")}`);
    const deniedLogins = await page.$$eval('#audit-results tbody tr[data-action="login"]', (rows) => rows.filter((r) => /Denied/.test(r.textContent)).length);
    assert.ok(deniedLogins >= 2, "failed sign-ins are not listed as denied");
    const flagged = page.locator('#audit-results tr.row-flag[data-action="study.break_glass"]');
    await flagged.first().waitFor();
    assert.match(await flagged.first().textContent(), /Break-glass/);
    assert.match(await flagged.first().textContent(), /dr\.wang/);
    assert.match(await flagged.first().textContent(), /trauma patient/);
    await shot(page, "desktop-audit");

    step("audit: search by action and by the flagged switch");
    await page.fill("#audit-form [name=action]", "user.create");
    await page.click("#audit-form button[type=submit]");
    await page.waitForFunction(() => [...document.querySelectorAll("#audit-results tbody tr")].every((r) => r.dataset.action === "user.create"));
    assert.ok((await page.locator("#audit-results tbody tr").count()) >= 2); // one created, one refused
    await page.fill("#audit-form [name=action]", "");
    await page.fill("#audit-form [name=actor]", DOCTOR);
    await page.check("#audit-form [name=flagged]");
    await page.click("#audit-form button[type=submit]");
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll("#audit-results tbody tr")];
      return rows.length > 0 && rows.every((r) => r.dataset.flagged === "1");
    });
    await page.selectOption("#audit-form [name=result]", "denied");
    await page.click("#audit-form button[type=submit]");
    await page.locator("#audit-results tr.empty").waitFor();
    await page.click("#audit-form button:has-text('Clear')");
    await page.waitForFunction(() => document.querySelectorAll("#audit-results tbody tr[data-action]").length > 10);

    step("audit: verify the chain");
    await page.click("#audit-verify");
    const chain = page.locator('#audit-chain [data-chain="intact"]');
    await chain.waitFor();
    assert.match(await chain.textContent(), /Chain intact: \d+ events checked/);

    step("audit: export JSON lines (a download)");
    const [download] = await Promise.all([page.waitForEvent("download"), page.click('#panel-audit a[data-format="jsonl"]')]);
    const lines = readFileSync(await download.path(), "utf8").trim().split("\n").map((l) => JSON.parse(l));
    assert.ok(lines.some((e) => e.action === "ae.change"), "export lacks the DICOM node change");
    const atna = await page.getAttribute('#panel-audit a[data-format="atna"]', "href");
    assert.equal(atna, "/api/audit/export?format=atna");

    step("language: switch to 中文 and see Chinese labels (kept after a reload)");
    await page.selectOption("#lang", "zh");
    assert.equal(await page.getAttribute("html", "lang"), "zh-CN");
    assert.equal(await page.textContent("#tab-users"), "用户");
    assert.equal(await page.textContent("#tab-audit"), "审计日志");
    assert.equal(await page.textContent("#signout"), "退出登录");
    await page.locator("#panel-audit h2", { hasText: "审计日志" }).waitFor();
    await page.locator("#audit-results th", { hasText: "时间" }).waitFor();
    await shot(page, "desktop-audit-zh");
    await page.reload();
    await page.locator("body[data-ready='1']").waitFor();
    assert.equal(await page.textContent("#tab-institutions"), "机构");
    await tab(page, "institutions");
    await page.locator('tr[data-code="north-hosp"]', { hasText: "正常" }).waitFor();
    await shot(page, "desktop-institutions-zh");
    await page.selectOption("#lang", "en");
    assert.equal(await page.textContent("#tab-institutions"), "Institutions");

    step("sign out: /admin sends you to /login again");
    await page.click("#signout");
    await page.waitForURL((url) => url.pathname === "/login");
    await page.goto(base + "/admin");
    await page.waitForURL((url) => url.pathname === "/login" && url.searchParams.get("next") === "/admin");
    assert.equal((await page.evaluate(() => fetch("/api/auth/me").then((r) => r.status))), 401);
    await admin.close();

    // ------------------------------------------------------------------ phone
    step("phone (390×844, zh-CN browser): the sign-in page is in Chinese and fits");
    const phoneContext = await browser.newContext(PHONE);
    const phone = watch(await phoneContext.newPage(), "phone");
    await phone.goto(base + "/admin");
    await phone.waitForURL((url) => url.pathname === "/login");
    assert.equal(await phone.textContent("h1"), "登录");
    assert.equal(await phone.getAttribute("html", "lang"), "zh-CN");
    await phone.waitForLoadState("networkidle");
    await noSideScroll(phone, "phone login");
    await shot(phone, "phone-login");

    step("phone: the admin page fits the screen; tables stack into cards");
    await signIn(phone, "admin", ADMIN_PASSWORD);
    await phone.waitForURL((url) => url.pathname === "/admin");
    await phone.locator("body[data-ready='1']").waitFor();
    await phone.locator('tr[data-code="north-hosp"]').waitFor();
    await noSideScroll(phone, "phone institutions");
    const display = await phone.$eval('tr[data-code="north-hosp"]', (tr) => getComputedStyle(tr).display);
    assert.equal(display, "block", "table rows do not stack on a phone");
    await shot(phone, "phone-admin");
    await phone.click("#tab-users");
    await phone.locator(`tr[data-username="${DOCTOR}"]`).waitFor();
    await noSideScroll(phone, "phone users");
    await shot(phone, "phone-users");
    await phone.click("#tab-audit");
    await phone.locator("#audit-results tbody tr").first().waitFor();
    await noSideScroll(phone, "phone audit");
    await shot(phone, "phone-audit");
    await phone.click("#tab-roles");
    await phone.locator("table.matrix").waitFor();
    await noSideScroll(phone, "phone roles");
    await shot(phone, "phone-roles");
    await phoneContext.close();

    assert.deepEqual(problems, [], "the pages logged errors");
    console.log("ok: admin and sign-in pages passed");
  } catch (error) {
    for (const [i, open] of pages.entries()) {
      try {
        if (!open.isClosed()) await open.screenshot({ path: join(shots, `failure-${i}.png`), fullPage: true });
      } catch {
        /* page gone */
      }
    }
    throw error;
  } finally {
    await browser.close();
  }
}

main().catch((error) => {
  console.error(`FAILED at step: ${current}`);
  console.error(error && error.stack ? error.stack : error);
  if (problems.length) console.error("page problems:\n  " + problems.join("\n  "));
  process.exit(1);
});
