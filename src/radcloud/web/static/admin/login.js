// The sign-in page: password (+ one-time code when the server asks for it), SSO when offered.

import { api, ApiError, safeNext } from "./api.js";
import { fill, h } from "./dom.js";
import { bindSwitch, t, translate, onLangChange } from "./i18n.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const next = safeNext(params.get("next"));

const form = $("login-form");
const errorBox = $("error");
const notice = $("notice");
const codeField = $("code-field");
const submit = $("submit");
let lastError = null; // re-rendered on a language switch

function showError(error) {
  lastError = error;
  if (!error) {
    errorBox.hidden = true;
    errorBox.replaceChildren();
    return;
  }
  let lead;
  let detail = "";
  if (error === "needCode") lead = t("login.needCode");
  else if (error instanceof ApiError && error.status === 0) lead = t("err.network");
  else if (error instanceof ApiError && error.status === 429) {
    lead = t("err.429");
    detail = error.detail;
  } else if (error instanceof ApiError) {
    lead = t("login.failed");
    detail = error.detail;
  } else {
    lead = t("login.failed");
    detail = String(error.message || error);
  }
  fill(errorBox, h("strong", {}, lead), detail ? h("span", { class: "alert-detail" }, detail) : null);
  errorBox.hidden = false;
}

function showCode() {
  codeField.hidden = false;
  $("code").required = true;
  $("code").focus();
}

async function signIn(event) {
  event.preventDefault();
  const username = $("username").value.trim();
  const password = $("password").value;
  const code = $("code").value.trim();
  if (!username) return $("username").focus();
  if (!password) return $("password").focus();
  if (!codeField.hidden && !code) {
    showError("needCode");
    return $("code").focus();
  }
  showError(null);
  notice.hidden = true;
  submit.disabled = true;
  submit.textContent = t("login.busy");
  try {
    const body = { username, password };
    if (!codeField.hidden) body.code = code;
    await api("POST", "/api/auth/login", body, { quiet401: true });
    location.assign(next);
    return;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401 && /second factor/i.test(error.detail)) {
      showCode();
      showError("needCode");
    } else {
      showError(error);
      if (error instanceof ApiError && /one-time code/i.test(error.detail)) {
        $("code").value = "";
        $("code").focus();
      } else {
        $("password").value = "";
        $("password").focus();
      }
    }
  } finally {
    submit.disabled = false;
    submit.textContent = t("login.submit");
  }
}

async function start() {
  translate();
  bindSwitch($("lang"));
  onLangChange(() => showError(lastError));
  form.addEventListener("submit", signIn);
  if (params.has("signed_out")) {
    notice.textContent = t("login.signedOut");
    notice.dataset.i18n = "login.signedOut";
    notice.hidden = false;
  }
  $("username").focus();
  // Offer SSO only when the server has it configured.
  try {
    const methods = await api("GET", "/api/auth/methods", undefined, { quiet401: true });
    if (methods && methods.sso) {
      $("sso-link").href = "/api/auth/oidc/login?next=" + encodeURIComponent(next);
      $("sso").hidden = false;
    }
  } catch {
    /* no SSO button */
  }
  // Already signed in (a live session cookie): straight on.
  try {
    await api("GET", "/api/auth/me", undefined, { quiet401: true });
    location.replace(next);
  } catch {
    /* sign in below */
  }
}

start();
