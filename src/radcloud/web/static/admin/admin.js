// The admin one-page app: who is signed in, which tabs they may use, and the
// shared helpers (messages, dialogs, institution and role look-ups) the tabs use.

import { api, ApiError, whenSignedOut } from "./api.js";
import { button, field, fill, h, check } from "./dom.js";
import { bindSwitch, onLangChange, t, translate } from "./i18n.js";
import * as institutions from "./institutions.js";
import * as users from "./users.js";
import * as groups from "./groups.js";
import * as roles from "./roles.js";
import * as nodes from "./nodes.js";
import * as audit from "./audit.js";
import * as account from "./account.js";

const TABS = [institutions, users, groups, roles, nodes, audit, account];
const $ = (id) => document.getElementById(id);

const ctx = {
  me: null,
  institutions: [],
  roleMatrix: null,

  can(perm) {
    return Boolean(ctx.me && ctx.me.permissions.includes(perm));
  },

  /** Reload the institutions the caller can see (for names and pickers). */
  async loadInstitutions() {
    ctx.institutions = await api("GET", "/api/institutions");
    return ctx.institutions;
  },

  institutionName(id) {
    const inst = ctx.institutions.find((i) => i.id === id);
    return inst ? inst.name : id === null || id === undefined ? "" : "#" + id;
  },

  /** A <select> of institutions (active ones, plus the current value). */
  institutionSelect(selected, { allowNone = false, name = "institution_id" } = {}) {
    const sel = h("select", { name });
    if (allowNone) sel.appendChild(h("option", { value: "" }, t("none")));
    for (const inst of ctx.institutions) {
      if (inst.status !== "active" && inst.id !== selected) continue;
      sel.appendChild(h("option", { value: String(inst.id) }, inst.name + " (" + inst.code + ")"));
    }
    const fallback = ctx.me ? ctx.me.institution_id : "";
    sel.value = String(selected ?? (allowNone ? "" : fallback));
    return sel;
  },

  /** Role name → permissions, from the server (cached; `fresh` reloads). */
  async loadRoles(fresh = false) {
    if (!ctx.roleMatrix || fresh) ctx.roleMatrix = await api("GET", "/api/roles");
    return ctx.roleMatrix;
  },

  roleLabel(role) {
    const key = "role." + role;
    const text = t(key);
    return text === key ? role : text;
  },

  /** A short success message. */
  ok(text) {
    toast(text, "ok");
  },

  /** Show what went wrong (the API's problem detail included). */
  fail(error) {
    const text = error instanceof ApiError ? error.describe() : String((error && error.message) || error);
    toast(text, "error");
  },

  /** Run an API action, showing its failure; returns the result or undefined. */
  async attempt(work) {
    try {
      return await work();
    } catch (error) {
      if (!(error instanceof ApiError && error.status === 401)) ctx.fail(error);
      return undefined;
    }
  },

  confirm,
  ask,
  show,
};

// ------------------------------------------------------------------ messages

function toast(text, tone) {
  const box = $("toasts");
  const close = h("button", { type: "button", class: "toast-close", "aria-label": t("close"), title: t("close") }, "×");
  const item = h("div", { class: "toast toast-" + tone, role: tone === "error" ? "alert" : "status" },
    h("span", { class: "toast-text" }, text), close);
  close.addEventListener("click", () => item.remove());
  box.appendChild(item);
  while (box.children.length > 4) box.firstElementChild.remove();
  if (tone !== "error") setTimeout(() => item.remove(), 6000);
}

// ------------------------------------------------------------------ dialogs

/** Ask yes/no; resolves true when confirmed. */
function confirm(text, { danger = false, action = t("confirm") } = {}) {
  return new Promise((resolve) => {
    const dlg = $("dialog");
    const yes = button(action, () => finish(true), { tone: danger ? "danger" : "primary" });
    const no = button(t("cancel"), () => finish(false));
    fill(dlg, h("form", { method: "dialog", class: "dialog-body" },
      h("p", { class: "dialog-text" }, text),
      h("div", { class: "dialog-actions" }, no, yes)));
    function finish(value) {
      dlg.close();
      resolve(value);
    }
    dlg.onclose = () => resolve(false);
    dlg.oncancel = () => resolve(false);
    dlg.showModal();
    yes.focus();
  });
}

/**
 * A small form in a dialog.  `fields`: [{name, label, type, value, options, hint, required}]
 * (type "checks" with `options` [{value,label}] gives a list of checkboxes).
 * Resolves to {name: value} or null when cancelled; `validate(values)` may return an error text.
 */
function ask(title, fields, { action = t("save"), validate = null } = {}) {
  return new Promise((resolve) => {
    const dlg = $("dialog");
    const controls = {};
    const problem = h("p", { class: "alert alert-error", role: "alert", hidden: true });
    const rows = fields.map((f) => {
      if (f.type === "checks") {
        const boxes = f.options.map((o) => {
          const input = h("input", { type: "checkbox", value: o.value, checked: (f.value || []).includes(o.value) });
          return { input, node: check(o.label, input) };
        });
        controls[f.name] = { read: () => boxes.filter((b) => b.input.checked).map((b) => b.input.value) };
        return h("fieldset", { class: "checks" }, h("legend", {}, f.label), boxes.map((b) => b.node));
      }
      const input = h("input", {
        type: f.type || "text", name: f.name, value: f.value ?? "", required: f.required || null,
        autocomplete: f.autocomplete || "off", maxlength: f.maxlength || null,
      });
      controls[f.name] = { read: () => input.value, input };
      return field(f.label, input, f.hint);
    });
    const yes = h("button", { type: "submit", class: "btn btn-primary" }, action);
    const no = button(t("cancel"), () => finish(null));
    const form = h("form", { class: "dialog-body", novalidate: true },
      h("h2", { class: "dialog-title" }, title), rows, problem,
      h("div", { class: "dialog-actions" }, no, yes));
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      const values = Object.fromEntries(Object.entries(controls).map(([k, c]) => [k, c.read()]));
      const error = validate ? validate(values) : null;
      if (error) {
        problem.textContent = error;
        problem.hidden = false;
        return;
      }
      finish(values);
    });
    let done = false;
    function finish(value) {
      if (done) return;
      done = true;
      dlg.close();
      resolve(value);
    }
    dlg.onclose = () => finish(null);
    dlg.oncancel = () => finish(null);
    fill(dlg, form);
    dlg.showModal();
    const first = Object.values(controls).find((c) => c.input);
    if (first) first.input.focus();
  });
}

// ------------------------------------------------------------------ tabs

let active = null;

function visibleTabs() {
  return TABS.filter((tab) => tab.allowed(ctx));
}

/** Show the tab `id` (re-rendering it); `reason` "lang" keeps the tab's state. */
async function show(id, reason = "show") {
  const tabs = visibleTabs();
  const tab = tabs.find((x) => x.id === id) || tabs[0];
  if (!tab) return;
  if (active && active !== tab && active.leave) active.leave();
  active = tab;
  for (const x of TABS) {
    const btn = $("tab-" + x.id);
    const selected = x === tab;
    btn.setAttribute("aria-selected", String(selected));
    btn.tabIndex = selected ? 0 : -1;
    $("panel-" + x.id).hidden = !selected;
  }
  if (location.hash !== "#" + tab.id) history.replaceState(null, "", "#" + tab.id);
  const panel = $("panel-" + tab.id);
  try {
    await tab.render(ctx, panel, reason);
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) {
      fill(panel, h("div", { class: "alert alert-error", role: "alert" },
        error instanceof ApiError ? error.describe() : String(error)));
    }
  }
}

function wireTabs() {
  const bar = $("tabs");
  bar.addEventListener("click", (event) => {
    const btn = event.target.closest("[data-tab]");
    if (btn && !btn.hidden) show(btn.dataset.tab);
  });
  bar.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowRight" && event.key !== "ArrowLeft") return;
    const buttons = [...bar.querySelectorAll("[data-tab]")].filter((b) => !b.hidden);
    const at = buttons.indexOf(document.activeElement);
    if (at < 0) return;
    const to = buttons[(at + (event.key === "ArrowRight" ? 1 : buttons.length - 1)) % buttons.length];
    to.focus();
    show(to.dataset.tab);
  });
}

function renderWho() {
  const who = $("who");
  const me = ctx.me;
  const name = me.display_name ? me.display_name + " (" + me.username + ")" : me.username;
  fill(who, h("span", { class: "who-name" }, name),
    h("span", { class: "who-roles" }, me.roles.map((r) => ctx.roleLabel(r)).join(" · ")));
  who.title = name;
  who.hidden = false;
}

function toLogin() {
  location.replace("/login?next=" + encodeURIComponent("/admin" + location.hash));
}

async function signOut() {
  try {
    await api("POST", "/api/auth/logout", undefined, { quiet401: true });
  } catch {
    /* already signed out */
  }
  location.replace("/login?signed_out=1&next=/admin");
}

async function start() {
  translate();
  bindSwitch($("lang"));
  let redirecting = false;
  whenSignedOut(() => {
    if (!redirecting) {
      redirecting = true;
      toLogin();
    }
  });
  $("signout").addEventListener("click", signOut);
  wireTabs();
  try {
    ctx.me = await api("GET", "/api/auth/me");
  } catch (error) {
    if (!(error instanceof ApiError && error.status === 401)) {
      fill($("loading"), h("span", { class: "alert alert-error", role: "alert" }, error.describe ? error.describe() : String(error)));
    }
    return;
  }
  try {
    await ctx.loadInstitutions();
  } catch {
    ctx.institutions = [];
  }
  renderWho();
  for (const tab of TABS) $("tab-" + tab.id).hidden = !tab.allowed(ctx);
  $("loading").hidden = true;
  onLangChange(() => {
    renderWho();
    if (active) show(active.id, "lang");
  });
  window.addEventListener("hashchange", () => {
    const id = location.hash.slice(1);
    if (!active || active.id !== id) show(id);
  });
  await show(location.hash.slice(1));
  document.body.dataset.ready = "1";
}

start();
