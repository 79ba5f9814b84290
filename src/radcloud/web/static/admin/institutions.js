// Institutions: list, create, approve the pending ones, suspend and reactivate.

import { api } from "./api.js";
import { badge, busy, button, cellOf, check, field, fill, h, table } from "./dom.js";
import { t } from "./i18n.js";

export const id = "institutions";

export function allowed(ctx) {
  return ctx.can("institutions.manage");
}

const STATUS_TONE = { active: "ok", pending: "warn", suspended: "bad" };
const KINDS = ["hospital", "department", "clinic"];

export async function render(ctx, panel) {
  const list = await ctx.loadInstitutions();
  const pending = list.filter((i) => i.status === "pending");
  fill(panel,
    h("div", { class: "panel-head" },
      h("h2", {}, t("inst.title")),
      button(t("refresh"), () => render(ctx, panel), { tone: "ghost", small: true })),
    pending.length ? h("div", { class: "alert alert-warn", role: "status" }, t("inst.pendingNote", { n: pending.length })) : null,
    listTable(ctx, panel, list),
    createForm(ctx, panel),
  );
}

function listTable(ctx, panel, list) {
  const headers = ["ID", t("inst.code"), t("inst.name"), t("inst.kind"), t("inst.parent"), t("inst.status"), t("inst.unknownAes"), t("actions")];
  const rows = list.map((inst) => {
    const actions = h("div", { class: "row-actions" });
    const change = (status, message) => async (event) => {
      const btn = event.currentTarget;
      if (status === "suspended" && !(await ctx.confirm(t("inst.confirmSuspend", { name: inst.name }), { danger: true, action: t("inst.suspend") }))) return;
      await busy(btn, async () => {
        const done = await ctx.attempt(() => api("PATCH", "/api/institutions/" + inst.id, { status }));
        if (done) {
          ctx.ok(t(message, { name: inst.name }));
          await render(ctx, panel);
        }
      });
    };
    if (inst.status === "pending") actions.appendChild(button(t("inst.approve"), change("active", "inst.approvedMsg"), { tone: "primary", small: true }));
    if (inst.status === "active" && inst.id !== 1) actions.appendChild(button(t("inst.suspend"), change("suspended", "inst.suspendedMsg"), { tone: "danger", small: true }));
    if (inst.status === "suspended") actions.appendChild(button(t("inst.reactivate"), change("active", "inst.reactivatedMsg"), { small: true }));
    const tr = h("tr", { dataset: { code: inst.code }, class: inst.status === "pending" ? "row-warn" : "" },
      [String(inst.id), h("code", {}, inst.code), inst.name, t("kind." + inst.kind),
        inst.parent_id ? ctx.institutionName(inst.parent_id) : "—",
        badge(t("status." + inst.status), STATUS_TONE[inst.status] || ""),
        inst.accept_unknown_aes ? t("yes") : t("no"), actions,
      ].map(cellOf(headers)));
    return tr;
  });
  return table(headers, rows, { empty: t("empty") });
}

function createForm(ctx, panel) {
  const code = h("input", { name: "code", required: true, maxlength: "32", autocomplete: "off", spellcheck: "false", pattern: "[a-z0-9][a-z0-9\\-]{1,31}" });
  const name = h("input", { name: "name", required: true, maxlength: "128", autocomplete: "off" });
  const kind = h("select", { name: "kind" }, KINDS.map((k) => h("option", { value: k }, t("kind." + k))));
  const parent = ctx.institutionSelect(null, { allowNone: true, name: "parent_id" });
  const unknown = h("input", { type: "checkbox", name: "accept_unknown_aes" });
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, t("create"));
  const form = h("form", { class: "card form", id: "institution-form", novalidate: true },
    h("h3", {}, t("inst.new")),
    h("div", { class: "form-grid" },
      field(t("inst.code"), code, t("inst.codeHint")),
      field(t("inst.name"), name),
      field(t("inst.kind"), kind),
      field(t("inst.parent"), parent),
    ),
    check(t("inst.unknownAes"), unknown),
    h("div", { class: "form-actions" }, submit),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!code.value.trim()) return code.focus();
    if (!name.value.trim()) return name.focus();
    await busy(submit, async () => {
      const body = {
        code: code.value.trim(), name: name.value.trim(), kind: kind.value,
        parent_id: parent.value ? Number(parent.value) : null, accept_unknown_aes: unknown.checked,
      };
      const made = await ctx.attempt(() => api("POST", "/api/institutions", body));
      if (made) {
        ctx.ok(t("inst.created", { name: made.name }));
        await render(ctx, panel);
      }
    });
  });
  return form;
}
