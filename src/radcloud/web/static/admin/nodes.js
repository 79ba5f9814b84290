// DICOM nodes (AE titles): who may call the archive, and where C-MOVE results go.

import { api } from "./api.js";
import { badge, busy, button, cellOf, check, field, fill, h, table } from "./dom.js";
import { t } from "./i18n.js";

export const id = "nodes";

export function allowed(ctx) {
  return ctx.can("ae.manage");
}

let editing = null; // the node being edited, or null for a new one

export function leave() {
  editing = null;
}

export async function render(ctx, panel) {
  const list = await api("GET", "/api/aes");
  if (editing && !list.some((n) => n.ae_title === editing.ae_title)) editing = null;
  fill(panel,
    h("div", { class: "panel-head" },
      h("h2", {}, t("node.title")),
      button(t("refresh"), () => render(ctx, panel), { tone: "ghost", small: true })),
    listTable(ctx, panel, list),
    nodeForm(ctx, panel),
  );
}

function listTable(ctx, panel, list) {
  const headers = [t("node.ae"), t("node.host"), t("node.port"), t("node.institution"), t("node.flags"), t("node.description"), t("actions")];
  const rows = list.map((n) => {
    const edit = () => {
      editing = n;
      render(ctx, panel).then(() => {
        const form = panel.querySelector("#node-form");
        if (form) form.scrollIntoView({ behavior: "smooth", block: "start" });
      });
    };
    const remove = async (event) => {
      const btn = event.currentTarget;
      if (!(await ctx.confirm(t("node.confirmRemove", { title: n.ae_title }), { danger: true, action: t("remove") }))) return;
      await busy(btn, async () => {
        const done = await ctx.attempt(async () => (await api("DELETE", "/api/aes/" + encodeURIComponent(n.ae_title))) ?? true);
        if (done) {
          ctx.ok(t("node.removed", { title: n.ae_title }));
          if (editing && editing.ae_title === n.ae_title) editing = null;
          await render(ctx, panel);
        }
      });
    };
    return h("tr", { dataset: { ae: n.ae_title } },
      [h("code", {}, n.ae_title), n.host || "—", n.port === null || n.port === undefined ? "—" : String(n.port),
        ctx.institutionName(n.institution_id),
        h("div", { class: "badges" },
          n.allow_store ? badge(t("node.storeShort"), "ok") : null,
          n.allow_query ? badge(t("node.queryShort"), "info") : null),
        n.description || "—",
        h("div", { class: "row-actions" },
          button(t("edit"), edit, { small: true }),
          button(t("remove"), remove, { small: true, tone: "danger" })),
      ].map(cellOf(headers)));
  });
  return table(headers, rows, { empty: t("empty") });
}

function nodeForm(ctx, panel) {
  const n = editing;
  const title = h("input", { name: "ae_title", required: true, maxlength: "16", autocomplete: "off", spellcheck: "false", value: n ? n.ae_title : "", readonly: n ? true : null });
  const host = h("input", { name: "host", maxlength: "255", autocomplete: "off", spellcheck: "false", value: n && n.host ? n.host : "" });
  const port = h("input", { name: "port", type: "number", min: "1", max: "65535", inputmode: "numeric", value: n && n.port ? String(n.port) : "" });
  const description = h("input", { name: "description", maxlength: "255", autocomplete: "off", value: n ? n.description : "" });
  const institution = ctx.institutionSelect(n ? n.institution_id : ctx.me.institution_id);
  const store = h("input", { type: "checkbox", name: "allow_store", checked: n ? n.allow_store : true });
  const query = h("input", { type: "checkbox", name: "allow_query", checked: n ? n.allow_query : true });
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, n ? t("save") : t("add"));
  const cancel = n ? button(t("cancel"), () => { editing = null; render(ctx, panel); }) : null;
  const form = h("form", { class: "card form", id: "node-form", novalidate: true },
    h("h3", {}, n ? t("node.editing", { title: n.ae_title }) : t("node.new")),
    h("div", { class: "form-grid" },
      field(t("node.ae"), title, t("node.aeHint")),
      field(t("node.institution"), institution),
      field(t("node.host"), host, t("node.hostHint")),
      field(t("node.port"), port),
      field(t("node.description"), description)),
    h("div", { class: "checks-row" }, check(t("node.store"), store), check(t("node.query"), query)),
    h("div", { class: "form-actions" }, cancel, submit),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const ae = title.value.trim();
    if (!ae) return title.focus();
    await busy(submit, async () => {
      const body = {
        host: host.value.trim() || null, port: port.value ? Number(port.value) : null,
        description: description.value.trim(), institution_id: Number(institution.value) || null,
        allow_store: store.checked, allow_query: query.checked,
      };
      const saved = await ctx.attempt(() => api("PUT", "/api/aes/" + encodeURIComponent(ae), body));
      if (saved) {
        ctx.ok(t("node.saved", { title: saved.ae_title }));
        editing = null;
        await render(ctx, panel);
      }
    });
  });
  return form;
}
