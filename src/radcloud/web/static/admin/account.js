// My account: profile, password, two-factor sign-in (TOTP), API tokens and sessions.

import { api } from "./api.js";
import { badge, busy, button, cellOf, field, fill, h, table } from "./dom.js";
import { formatTime, t } from "./i18n.js";

export const id = "account";

export function allowed(ctx) {
  return Boolean(ctx.me) && ctx.me.kind === "user";
}

// secrets shown once: kept only while this tab stays open
let totpSetup = null;
let newToken = null;

export function leave() {
  totpSetup = null;
  newToken = null;
}

export async function render(ctx, panel) {
  const [me, tokens] = await Promise.all([api("GET", "/api/auth/me"), api("GET", "/api/tokens")]);
  ctx.me = me;
  fill(panel,
    h("div", { class: "panel-head" }, h("h2", {}, t("tab.account"))),
    h("div", { class: "account-grid" },
      profileCard(ctx, me),
      passwordCard(ctx),
      totpCard(ctx, panel, me),
    ),
    tokensCard(ctx, panel, tokens),
  );
}

function profileCard(ctx, me) {
  const row = (label, value) => [h("dt", {}, label), h("dd", {}, value || "—")];
  return h("section", { class: "card" },
    h("h3", {}, t("acct.profile")),
    h("dl", { class: "facts" },
      row(t("acct.username"), h("code", {}, me.username)),
      row(t("acct.name"), me.display_name),
      row(t("acct.institution"), ctx.institutionName(me.institution_id)),
      row(t("acct.roles"), me.roles.map((r) => ctx.roleLabel(r)).join(", ")),
      row(t("acct.totp"), me.totp_enabled ? badge(t("acct.totpOn"), "ok") : badge(t("acct.totpOff"), "")),
    ));
}

function passwordCard(ctx) {
  const current = h("input", { type: "password", name: "current", autocomplete: "current-password", maxlength: "256", required: true });
  const next = h("input", { type: "password", name: "new", autocomplete: "new-password", maxlength: "256", required: true });
  const repeat = h("input", { type: "password", name: "repeat", autocomplete: "new-password", maxlength: "256", required: true });
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, t("acct.password"));
  const form = h("form", { class: "card form", id: "password-form", novalidate: true },
    h("h3", {}, t("acct.password")),
    field(t("acct.current"), current),
    field(t("acct.new"), next, t("user.passwordRule")),
    field(t("acct.repeat"), repeat),
    h("div", { class: "form-actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!current.value) return current.focus();
    if (!next.value) return next.focus();
    if (next.value !== repeat.value) {
      ctx.fail(t("acct.mismatch"));
      return repeat.focus();
    }
    await busy(submit, async () => {
      const done = await ctx.attempt(async () => (await api("POST", "/api/auth/password", { current: current.value, new: next.value })) ?? true);
      if (done) {
        // every session of the account ends with a new password: sign in again
        ctx.ok(t("acct.changed"));
        setTimeout(() => location.replace("/login?next=/admin%23account"), 2500);
      }
    });
  });
  return form;
}

function totpCard(ctx, panel, me) {
  const card = h("section", { class: "card", id: "totp-card" }, h("h3", {}, t("acct.totp")));
  const code = h("input", { name: "code", inputmode: "numeric", autocomplete: "one-time-code", maxlength: "10", pattern: "[0-9]*" });
  if (me.totp_enabled) {
    const off = h("button", { type: "submit", class: "btn btn-danger" }, t("acct.totpDisable"));
    const form = h("form", { class: "form", novalidate: true }, field(t("acct.totpCode"), code), h("div", { class: "form-actions" }, off));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!code.value.trim()) return code.focus();
      await busy(off, async () => {
        const done = await ctx.attempt(async () => (await api("POST", "/api/auth/totp/disable", { code: code.value.trim() })) ?? true);
        if (done) {
          ctx.ok(t("acct.totpDisabled"));
          await render(ctx, panel);
        }
      });
    });
    card.append(h("p", {}, badge(t("acct.totpOn"), "ok")), form);
    return card;
  }
  if (!totpSetup) {
    card.append(h("p", {}, badge(t("acct.totpOff"), "")),
      button(t("acct.totpSetup"), async (event) => {
        await busy(event.currentTarget, async () => {
          const answer = await ctx.attempt(() => api("POST", "/api/auth/totp/setup"));
          if (answer) {
            totpSetup = answer;
            await render(ctx, panel);
          }
        });
      }, { tone: "primary" }));
    return card;
  }
  const on = h("button", { type: "submit", class: "btn btn-primary" }, t("acct.totpEnable"));
  const form = h("form", { class: "form", novalidate: true }, field(t("acct.totpCode"), code), h("div", { class: "form-actions" }, on));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!code.value.trim()) return code.focus();
    await busy(on, async () => {
      const done = await ctx.attempt(async () => (await api("POST", "/api/auth/totp/enable", { code: code.value.trim() })) ?? true);
      if (done) {
        totpSetup = null;
        ctx.ok(t("acct.totpEnabled"));
        await render(ctx, panel);
      }
    });
  });
  card.append(
    h("p", { class: "small" }, t("acct.totpHelp")),
    h("dl", { class: "facts secret" },
      h("dt", {}, t("acct.totpSecret")), h("dd", {}, h("code", { id: "totp-secret", class: "copyable" }, totpSetup.secret)),
      h("dt", {}, t("acct.totpUri")), h("dd", {}, h("code", { id: "totp-uri", class: "copyable wrap" }, totpSetup.otpauth_uri))),
    form);
  return card;
}

function tokensCard(ctx, panel, tokens) {
  const headers = [t("acct.tokenName"), t("acct.kind"), t("acct.created"), t("acct.expires"), t("acct.lastUsed"), t("actions")];
  const rows = tokens.map((tok) => {
    const label = tok.name || t("tkind." + tok.kind);
    const revoke = async (event) => {
      const btn = event.currentTarget;
      if (!(await ctx.confirm(t("acct.confirmRevoke", { name: label }), { danger: true, action: t("acct.revoke") }))) return;
      await busy(btn, async () => {
        const done = await ctx.attempt(async () => (await api("DELETE", "/api/tokens/" + tok.id)) ?? true);
        if (done) {
          ctx.ok(t("acct.revoked"));
          await render(ctx, panel);
        }
      });
    };
    return h("tr", { dataset: { token: String(tok.id), kind: tok.kind } },
      [tok.name || "—", t("tkind." + tok.kind), formatTime(tok.created_at),
        tok.expires_at ? formatTime(tok.expires_at) : "—",
        tok.last_used_at ? formatTime(tok.last_used_at) : t("acct.never"),
        button(t("acct.revoke"), revoke, { small: true, tone: "danger" }),
      ].map(cellOf(headers)));
  });

  const name = h("input", { name: "name", required: true, maxlength: "128", autocomplete: "off" });
  const days = h("input", { name: "days", type: "number", min: "1", max: "3650", inputmode: "numeric" });
  const submit = h("button", { type: "submit", class: "btn btn-primary" }, t("acct.tokenCreate"));
  const form = h("form", { class: "form", id: "token-form", novalidate: true },
    h("div", { class: "form-grid" },
      field(t("acct.tokenName"), name),
      field(t("acct.tokenDays"), days, t("acct.tokenDaysHint"))),
    h("div", { class: "form-actions" }, submit));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!name.value.trim()) return name.focus();
    await busy(submit, async () => {
      const body = { name: name.value.trim(), days: days.value ? Number(days.value) : null };
      const made = await ctx.attempt(() => api("POST", "/api/tokens", body));
      if (made) {
        newToken = made;
        await render(ctx, panel);
      }
    });
  });

  let shown = null;
  if (newToken) {
    const secret = h("code", { id: "new-token", class: "copyable wrap" }, newToken.token);
    const copy = button(t("acct.copy"), async () => {
      try {
        await navigator.clipboard.writeText(newToken ? newToken.token : secret.textContent);
        ctx.ok(t("acct.copied"));
      } catch {
        const range = document.createRange();
        range.selectNodeContents(secret);
        const sel = getSelection();
        sel.removeAllRanges();
        sel.addRange(range);
      }
    }, { small: true });
    shown = h("div", { class: "alert alert-warn token-once", role: "status" },
      h("strong", {}, t("acct.tokenShown")), h("div", { class: "token-line" }, secret, copy));
  }
  return h("section", { class: "card", id: "tokens-card" },
    h("h3", {}, t("acct.tokens")),
    h("p", { class: "muted small" }, t("acct.tokensHelp")),
    shown,
    table(headers, rows, { empty: t("empty") }),
    form);
}
