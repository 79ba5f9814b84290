// Roles × permissions: what each role carries; the platform admin may toggle them.

import { api } from "./api.js";
import { button, fill, h } from "./dom.js";
import { t } from "./i18n.js";

export const id = "roles";

export function allowed(ctx) {
  return ctx.can("roles.manage") || ctx.can("users.manage");
}

const PERMS = [
  "study.read", "study.download", "study.write", "study.share", "study.restrict", "study.break_glass",
  "users.manage", "ae.manage", "institutions.manage", "roles.manage", "audit.read",
];

function permLabel(perm) {
  const key = "perm." + perm;
  const text = t(key);
  return text === key ? perm : text;
}

export async function render(ctx, panel) {
  const matrix = await ctx.loadRoles(true);
  const roles = Object.keys(matrix);
  const perms = [...PERMS, ...new Set(Object.values(matrix).flat().filter((p) => !PERMS.includes(p)))];
  const editable = ctx.can("roles.manage");

  const head = h("tr", {}, h("th", { scope: "col" }, t("roles.permission")),
    roles.map((r) => h("th", { scope: "col", class: "role-col" }, ctx.roleLabel(r))));
  const body = h("tbody");
  for (const perm of perms) {
    const cells = roles.map((role) => {
      const on = matrix[role].includes(perm);
      const label = ctx.roleLabel(role) + " — " + permLabel(perm);
      const box = h("input", {
        type: "checkbox", checked: on, disabled: !editable, "aria-label": label, title: label,
        dataset: { role, perm },
      });
      box.addEventListener("change", async () => {
        const allow = box.checked;
        if (!allow && ctx.me.roles.includes(role)
            && !(await ctx.confirm(t("roles.confirmSelf", { role: ctx.roleLabel(role), perm: permLabel(perm) }), { danger: true }))) {
          box.checked = true;
          return;
        }
        box.disabled = true;
        const done = await ctx.attempt(async () => (await api("PUT", "/api/roles/" + encodeURIComponent(role) + "/permissions/" + encodeURIComponent(perm), { allow })) ?? true);
        box.disabled = false;
        if (done) {
          ctx.ok(t("roles.changed", { role: ctx.roleLabel(role), perm: permLabel(perm), state: allow ? t("roles.on") : t("roles.off") }));
          ctx.roleMatrix = null;
        } else {
          box.checked = !allow;
        }
      });
      return h("td", { class: "cell-check" }, box);
    });
    body.appendChild(h("tr", {},
      h("th", { scope: "row", class: "perm-name" }, permLabel(perm), h("code", { class: "perm-code" }, perm)),
      cells));
  }
  fill(panel,
    h("div", { class: "panel-head" },
      h("h2", {}, t("roles.title")),
      button(t("refresh"), () => render(ctx, panel), { tone: "ghost", small: true })),
    h("p", { class: "muted" }, t("roles.help"), " ", editable ? null : h("strong", {}, t("roles.readonly"))),
    h("div", { class: "table-wrap" }, h("table", { class: "matrix" }, h("thead", {}, head), body)),
  );
}
