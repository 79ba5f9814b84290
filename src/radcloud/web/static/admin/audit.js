// The audit trail: search, flagged (break-the-glass) events highlighted, chain check, export.

import { api, withQuery } from "./api.js";
import { badge, busy, button, cellOf, check, field, fill, h, table } from "./dom.js";
import { formatTime, t } from "./i18n.js";

export const id = "audit";

export function allowed(ctx) {
  return ctx.can("audit.read");
}

const PAGE = 100;
const ACTIONS = [
  "login", "logout", "login.sso", "institution.register", "institution.create", "institution.change",
  "user.create", "user.change", "user.password", "user.unlock", "user.grant", "user.totp",
  "group.create", "group.member", "group.grant", "role.grant", "ae.change", "ae.remove",
  "token.create", "token.revoke", "study.search", "study.metadata", "study.view", "study.download",
  "study.store", "study.access", "study.grant", "study.revoke", "study.restrict", "study.break_glass",
  "audit.search", "audit.verify", "audit.export",
];
const RESULT_TONE = { success: "ok", denied: "bad", failed: "warn" };

// kept across re-renders (language switch) and tab changes
const filters = { actor: "", study: "", action: "", result: "", since: "", until: "", flagged: false };
let events = [];
let more = false;
let chain = null; // last verify answer

function dayStart(date, plusDays = 0) {
  if (!date) return "";
  const d = new Date(date + "T00:00:00");
  if (Number.isNaN(d.getTime())) return "";
  d.setDate(d.getDate() + plusDays);
  return d.toISOString();
}

function query(offset) {
  return withQuery("/api/audit", {
    actor: filters.actor.trim(), study: filters.study.trim(), action: filters.action.trim(),
    result: filters.result, since: dayStart(filters.since), until: dayStart(filters.until, 1),
    flagged: filters.flagged ? "true" : "", limit: PAGE, offset,
  });
}

async function load(offset) {
  const page = await api("GET", query(offset));
  events = offset ? events.concat(page) : page;
  more = page.length === PAGE;
}

export async function render(ctx, panel, reason) {
  if (reason !== "lang" || !events.length) await load(0);
  const resultsBox = h("div", { id: "audit-results" });
  const chainBox = h("div", { id: "audit-chain", "aria-live": "polite" });
  const drawResults = () => fill(resultsBox, resultsTable(), footer());
  const footer = () => h("div", { class: "table-foot" },
    h("span", { class: "muted small" }, t("audit.shown", { n: events.length })),
    more ? button(t("audit.more"), async (event) => {
      await busy(event.currentTarget, async () => {
        await ctx.attempt(() => load(events.length));
        drawResults();
      });
    }, { small: true }) : null);
  const drawChain = () => {
    if (!chain) return fill(chainBox);
    if (chain.ok) {
      return fill(chainBox, h("div", { class: "alert alert-ok", role: "status", dataset: { chain: "intact" } }, t("audit.intact", { n: chain.checked })));
    }
    return fill(chainBox, h("div", { class: "alert alert-error", role: "alert", dataset: { chain: "tampered" } },
      h("strong", {}, t("audit.tampered")),
      h("ul", {}, chain.problems.slice(0, 20).map((p) => h("li", {}, p)))));
  };
  drawResults();
  drawChain();

  const verify = h("button", { type: "button", class: "btn", id: "audit-verify" }, t("audit.verify"));
  verify.addEventListener("click", async () => {
    verify.textContent = t("audit.verifying");
    await busy(verify, async () => {
      const answer = await ctx.attempt(() => api("GET", "/api/audit/verify"));
      if (answer) chain = answer;
      drawChain();
    });
    verify.textContent = t("audit.verify");
  });
  const since = dayStart(filters.since);
  const exportLink = (format, label, ext) => h("a", {
    class: "btn btn-small", href: withQuery("/api/audit/export", { format, since }),
    download: "radcloud-audit." + ext, dataset: { format },
  }, label);

  fill(panel,
    h("div", { class: "panel-head" },
      h("h2", {}, t("audit.title")),
      h("div", { class: "panel-tools" },
        verify,
        h("span", { class: "muted small" }, t("audit.export")),
        exportLink("jsonl", t("audit.jsonl"), "jsonl"),
        exportLink("atna", t("audit.atna"), "log"))),
    chainBox,
    searchForm(ctx, async () => {
      await load(0);
      drawResults();
    }),
    resultsBox,
  );
}

function searchForm(ctx, run) {
  const input = (name, attrs = {}) => {
    const el = h("input", { name, value: filters[name], autocomplete: "off", ...attrs });
    el.addEventListener("input", () => { filters[name] = el.value; });
    return el;
  };
  const actor = input("actor", { spellcheck: "false" });
  const study = input("study", { spellcheck: "false" });
  const action = input("action", { list: "audit-actions", spellcheck: "false" });
  const since = input("since", { type: "date" });
  const until = input("until", { type: "date" });
  const result = h("select", { name: "result" },
    ["", "success", "denied", "failed"].map((r) => h("option", { value: r }, t(r ? "result." + r : "result.any"))));
  result.value = filters.result;
  result.addEventListener("change", () => { filters.result = result.value; });
  const flagged = h("input", { type: "checkbox", name: "flagged", checked: filters.flagged });
  flagged.addEventListener("change", () => { filters.flagged = flagged.checked; });
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, t("audit.search"));
  const clear = button(t("audit.reset"), () => {
    Object.assign(filters, { actor: "", study: "", action: "", result: "", since: "", until: "", flagged: false });
    for (const el of [actor, study, action, since, until]) el.value = "";
    result.value = "";
    flagged.checked = false;
    form.requestSubmit();
  });
  const form = h("form", { class: "card form", id: "audit-form", role: "search" },
    h("div", { class: "form-grid dense" },
      field(t("audit.actor"), actor),
      field(t("audit.study"), study),
      field(t("audit.action"), action),
      field(t("audit.result"), result),
      field(t("audit.since"), since),
      field(t("audit.until"), until)),
    h("datalist", { id: "audit-actions" }, ACTIONS.map((a) => h("option", { value: a }))),
    check(t("audit.flagged"), flagged),
    h("div", { class: "form-actions" }, clear, submit),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    await busy(submit, () => ctx.attempt(run));
  });
  return form;
}

function detailText(detail) {
  if (!detail || typeof detail !== "object") return "";
  const parts = Object.entries(detail).map(([k, v]) => k + "=" + (typeof v === "object" ? JSON.stringify(v) : String(v)));
  const text = parts.join(" ");
  return text.length > 160 ? text.slice(0, 157) + "…" : text;
}

function resultsTable() {
  const headers = [t("audit.time"), t("audit.actor"), t("audit.action"), t("audit.result"), t("audit.study"), t("audit.target"), t("audit.source"), t("audit.count")];
  const rows = events.map((e) => {
    const detail = detailText(e.detail);
    return h("tr", { class: e.flagged ? "row-flag" : "", dataset: { action: e.action, flagged: e.flagged ? "1" : "0" } },
      [h("time", { datetime: e.ts }, formatTime(e.ts)),
        h("div", {}, e.actor, h("div", { class: "muted small" }, e.actor_kind)),
        h("div", {}, e.flagged ? badge(t("audit.flag"), "flag") : null, " ", h("code", {}, e.action),
          detail ? h("div", { class: "muted small detail" }, detail) : null),
        badge(t("result." + e.result), RESULT_TONE[e.result] || ""),
        e.study_uid ? h("code", { class: "uid", title: e.study_uid }, e.study_uid) : "—",
        h("span", { class: "target" }, e.target || "—"),
        e.source || "—",
        String(e.count),
      ].map(cellOf(headers)));
  });
  return table(headers, rows, { empty: t("audit.none") });
}
