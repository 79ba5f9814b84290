// Groups and care teams: create, add and remove members.

import { api } from "./api.js";
import { badge, busy, button, field, fill, h } from "./dom.js";
import { t } from "./i18n.js";

export const id = "groups";

export function allowed(ctx) {
  return ctx.can("users.manage");
}

export async function render(ctx, panel) {
  const [groups, users] = await Promise.all([api("GET", "/api/groups"), api("GET", "/api/users")]);
  const byName = new Map(users.map((u) => [u.username, u]));
  fill(panel,
    h("div", { class: "panel-head" },
      h("h2", {}, t("group.title")),
      button(t("refresh"), () => render(ctx, panel), { tone: "ghost", small: true })),
    groups.length
      ? h("div", { class: "cards" }, groups.map((g) => groupCard(ctx, panel, g, users, byName)))
      : h("p", { class: "muted" }, t("empty")),
    createForm(ctx, panel),
  );
}

function groupCard(ctx, panel, g, users, byName) {
  const members = h("ul", { class: "chips", "aria-label": t("group.members") });
  for (const name of g.members) {
    const user = byName.get(name);
    const label = user && user.display_name ? user.display_name + " (" + name + ")" : name;
    const remove = user
      ? h("button", {
        type: "button", class: "chip-remove", title: t("group.removeMember", { user: name, name: g.name }),
        "aria-label": t("group.removeMember", { user: name, name: g.name }),
        onclick: async (event) => {
          const btn = event.currentTarget;
          await busy(btn, async () => {
            const done = await ctx.attempt(async () => (await api("DELETE", "/api/groups/" + g.id + "/members/" + user.id)) ?? true);
            if (done) {
              ctx.ok(t("group.memberRemoved", { user: name, name: g.name }));
              await render(ctx, panel);
            }
          });
        },
      }, "×")
      : null;
    members.appendChild(h("li", { class: "chip", dataset: { username: name } }, h("span", {}, label), remove));
  }
  if (!g.members.length) members.appendChild(h("li", { class: "muted small" }, t("group.noMembers")));
  // plain groups take their institution's users; care teams may take partners' consultants too
  const candidates = users.filter((u) => u.active && !g.members.includes(u.username)
    && (g.kind === "care_team" || u.institution_id === g.institution_id));
  const pick = h("select", { "aria-label": t("group.addMember") },
    h("option", { value: "" }, t("group.pickUser")),
    candidates.map((u) => h("option", { value: String(u.id) }, u.display_name ? u.display_name + " (" + u.username + ")" : u.username)));
  const add = h("button", { type: "submit", class: "btn btn-small" }, t("group.addMember"));
  const addForm = h("form", { class: "inline-form" }, pick, add);
  addForm.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!pick.value) return pick.focus();
    const user = users.find((u) => String(u.id) === pick.value);
    await busy(add, async () => {
      const done = await ctx.attempt(async () => (await api("PUT", "/api/groups/" + g.id + "/members/" + pick.value)) ?? true);
      if (done) {
        ctx.ok(t("group.memberAdded", { user: user ? user.username : pick.value, name: g.name }));
        await render(ctx, panel);
      }
    });
  });
  return h("article", { class: "card group-card", dataset: { group: g.name } },
    h("div", { class: "card-head" },
      h("h3", {}, g.name),
      badge(t("gkind." + g.kind), g.kind === "care_team" ? "info" : "")),
    h("p", { class: "muted small" }, ctx.institutionName(g.institution_id)),
    members,
    addForm,
  );
}

function createForm(ctx, panel) {
  const name = h("input", { name: "name", required: true, maxlength: "128", autocomplete: "off" });
  const kind = h("select", { name: "kind" },
    h("option", { value: "group" }, t("gkind.group")),
    h("option", { value: "care_team" }, t("gkind.care_team")));
  const institution = ctx.institutionSelect(ctx.me.institution_id);
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, t("create"));
  const form = h("form", { class: "card form", id: "group-form", novalidate: true },
    h("h3", {}, t("group.new")),
    h("div", { class: "form-grid" },
      field(t("group.name"), name),
      field(t("group.kind"), kind),
      field(t("group.institution"), institution)),
    h("div", { class: "form-actions" }, submit),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!name.value.trim()) return name.focus();
    await busy(submit, async () => {
      const body = { name: name.value.trim(), kind: kind.value, institution_id: Number(institution.value) || null };
      const made = await ctx.attempt(() => api("POST", "/api/groups", body));
      if (made) {
        ctx.ok(t("group.created", { name: made.name }));
        await render(ctx, panel);
      }
    });
  });
  return form;
}
