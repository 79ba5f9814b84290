// Users: list, create with roles, change roles, deactivate/activate, unlock, reset password.

import { api } from "./api.js";
import { badge, busy, button, cellOf, check, field, fill, h, table } from "./dom.js";
import { t } from "./i18n.js";

export const id = "users";

export function allowed(ctx) {
  return ctx.can("users.manage");
}

let filterText = "";

function roleChoices(ctx, matrix) {
  return Object.keys(matrix)
    .filter((r) => r !== "platform_admin" || ctx.can("institutions.manage"))
    .map((r) => ({ value: r, label: ctx.roleLabel(r) }));
}

export async function render(ctx, panel) {
  const [list, matrix] = await Promise.all([api("GET", "/api/users"), ctx.loadRoles()]);
  const filter = h("input", { type: "search", value: filterText, placeholder: t("user.filter"), "aria-label": t("user.filter"), class: "filter" });
  const holder = h("div");
  const draw = () => {
    const q = filterText.trim().toLowerCase();
    const shown = q ? list.filter((u) => (u.username + " " + u.display_name + " " + u.email).toLowerCase().includes(q)) : list;
    fill(holder, listTable(ctx, panel, shown, matrix));
  };
  filter.addEventListener("input", () => {
    filterText = filter.value;
    draw();
  });
  draw();
  fill(panel,
    h("div", { class: "panel-head" },
      h("h2", {}, t("user.title")),
      h("div", { class: "panel-tools" }, filter, button(t("refresh"), () => render(ctx, panel), { tone: "ghost", small: true }))),
    holder,
    createForm(ctx, panel, matrix),
  );
}

function statusBadges(u) {
  return h("div", { class: "badges" },
    u.active ? badge(t("user.active"), "ok") : badge(t("user.inactive"), "bad"),
    u.locked ? badge(t("user.locked"), "warn") : null,
    u.totp_enabled ? badge(t("user.totp"), "info") : null,
    u.sso ? badge(t("user.sso"), "info") : null,
  );
}

function listTable(ctx, panel, list, matrix) {
  const headers = [t("user.username"), t("user.displayName"), t("user.institution"), t("user.roles"), t("user.status"), t("actions")];
  const rows = list.map((u) => {
    const self = ctx.me && u.username === ctx.me.username;
    const act = (work, message) => async (event) => {
      const btn = event.currentTarget;
      await busy(btn, async () => {
        const done = await ctx.attempt(async () => (await work()) ?? true);
        if (done) {
          ctx.ok(t(message, { name: u.username }));
          await render(ctx, panel);
        }
      });
    };
    const editRoles = async (event) => {
      const values = await ctx.ask(t("user.roles") + " — " + u.username,
        [{ name: "roles", type: "checks", label: t("user.roles"), options: roleChoices(ctx, matrix), value: [...u.roles] }],
        { validate: (v) => (v.roles.length ? null : t("user.needRole")) });
      if (values) await act(() => api("PATCH", "/api/users/" + u.id, { roles: values.roles }), "user.rolesSet")(event);
    };
    const resetPassword = async (event) => {
      const values = await ctx.ask(t("user.reset") + " — " + u.username,
        [{ name: "password", type: "password", label: t("user.newPassword"), hint: t("user.passwordRule"), autocomplete: "new-password", required: true }],
        { validate: (v) => (v.password ? null : t("user.newPassword")) });
      if (values) await act(() => api("POST", "/api/users/" + u.id + "/password", { password: values.password }), "user.passwordSet")(event);
    };
    const deactivate = async (event) => {
      if (!(await ctx.confirm(t("user.confirmDeactivate", { name: u.username }), { danger: true, action: t("user.deactivate") }))) return;
      await act(() => api("PATCH", "/api/users/" + u.id, { active: false }), "user.deactivated")(event);
    };
    const actions = h("div", { class: "row-actions" },
      button(t("user.editRoles"), editRoles, { small: true }),
      button(t("user.reset"), resetPassword, { small: true }),
      u.locked ? button(t("user.unlock"), act(() => api("POST", "/api/users/" + u.id + "/unlock"), "user.unlocked"), { small: true, tone: "primary" }) : null,
      self ? null : u.active
        ? button(t("user.deactivate"), deactivate, { small: true, tone: "danger" })
        : button(t("user.activate"), act(() => api("PATCH", "/api/users/" + u.id, { active: true }), "user.activated"), { small: true }),
    );
    const who = h("div", {}, h("code", {}, u.username), u.email ? h("div", { class: "muted small" }, u.email) : null);
    return h("tr", { dataset: { username: u.username }, class: u.active ? "" : "row-muted" },
      [who, u.display_name || "—", ctx.institutionName(u.institution_id),
        u.roles.map((r) => ctx.roleLabel(r)).join(", "), statusBadges(u), actions,
      ].map(cellOf(headers)));
  });
  return table(headers, rows, { empty: t("empty") });
}

function createForm(ctx, panel, matrix) {
  const username = h("input", { name: "username", required: true, maxlength: "64", autocomplete: "off", autocapitalize: "none", spellcheck: "false" });
  const display = h("input", { name: "display_name", maxlength: "128", autocomplete: "off" });
  const email = h("input", { name: "email", type: "email", maxlength: "254", autocomplete: "off" });
  const institution = ctx.institutionSelect(ctx.me.institution_id);
  const password = h("input", { name: "password", type: "password", maxlength: "256", autocomplete: "new-password" });
  const boxes = roleChoices(ctx, matrix).map((o) => {
    const input = h("input", { type: "checkbox", name: "roles", value: o.value });
    return { input, node: check(o.label, input) };
  });
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, t("create"));
  const form = h("form", { class: "card form", id: "user-form", novalidate: true },
    h("h3", {}, t("user.new")),
    h("div", { class: "form-grid" },
      field(t("user.username"), username),
      field(t("user.displayName"), display),
      field(t("user.email"), email),
      field(t("user.institution"), institution),
      field(t("user.password"), password, t("user.passwordHint")),
    ),
    h("fieldset", { class: "checks" }, h("legend", {}, t("user.roles")), boxes.map((b) => b.node)),
    h("div", { class: "form-actions" }, submit),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!username.value.trim()) return username.focus();
    const roles = boxes.filter((b) => b.input.checked).map((b) => b.input.value);
    if (!roles.length) return ctx.fail(t("user.needRole"));
    await busy(submit, async () => {
      const body = {
        username: username.value.trim(), display_name: display.value.trim(), email: email.value.trim(),
        institution_id: Number(institution.value) || null, roles,
        password: password.value ? password.value : null,
      };
      const made = await ctx.attempt(() => api("POST", "/api/users", body));
      if (made) {
        ctx.ok(t("user.created", { name: made.username }));
        await render(ctx, panel);
      }
    });
  });
  return form;
}
