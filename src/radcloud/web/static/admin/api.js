// The JSON API, called with the session cookie (same origin).  Failures become
// ApiError carrying the problem+json `detail`, so pages can show it to the user.

import { t, has } from "./i18n.js";

export class ApiError extends Error {
  constructor(status, title, detail) {
    super(detail || title || "HTTP " + status);
    this.status = status;
    this.title = title || "";
    this.detail = detail || "";
  }

  /** A one-line message for people: localized kind of failure + the server's detail. */
  describe() {
    if (this.status === 0) return t("err.network");
    const key = "err." + this.status;
    const lead = has(key) ? t(key) : t("err.generic") + " " + this.status;
    return this.detail ? lead + ": " + this.detail : lead;
  }
}

let onUnauthenticated = null;

/** Called (once per failure) when a signed-in call answers 401: the session ended. */
export function whenSignedOut(fn) {
  onUnauthenticated = fn;
}

/**
 * Call the API: `api("GET", "/api/users")`, `api("POST", path, body)`.
 * Returns parsed JSON, text for non-JSON answers, or null for 204.
 */
export async function api(method, path, body, { quiet401 = false } = {}) {
  const init = {
    method,
    credentials: "same-origin",
    headers: { Accept: "application/json" },
    cache: "no-store",
  };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "", "");
  }
  if (response.status === 204) return null;
  const type = response.headers.get("content-type") || "";
  const isJson = type.includes("json");
  let data = null;
  try {
    data = isJson ? await response.json() : await response.text();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const problem = isJson && data && typeof data === "object" ? data : {};
    const detail = typeof problem.detail === "string" ? problem.detail : (typeof data === "string" ? data.slice(0, 300) : "");
    const error = new ApiError(response.status, problem.title, detail);
    if (response.status === 401 && !quiet401 && onUnauthenticated) onUnauthenticated(error);
    throw error;
  }
  return data;
}

/** A path with a query string from the non-empty entries of `params`. */
export function withQuery(path, params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") q.set(key, String(value));
  }
  const text = q.toString();
  return text ? path + "?" + text : path;
}

/** A same-site path to go to after signing in (never another origin). */
export function safeNext(value, fallback = "/admin") {
  if (typeof value !== "string" || !value.startsWith("/") || value.startsWith("//") || value.includes("\\")) {
    return fallback;
  }
  try {
    const url = new URL(value, location.origin);
    return url.origin === location.origin ? url.pathname + url.search + url.hash : fallback;
  } catch {
    return fallback;
  }
}
