// The start page: the study list on /api/worklist (filters kept in the URL, sort, pages, status),
// series thumbnails of a row on demand, and a patient's exam history as a time line.

import { getJSON, h, fmtDate, NOT_IMAGES, tagNum, tagStr, type DicomJson } from "./api";
import { t, onLangChange, translate } from "./i18n";

const PAGE = 25;
const SIZES = [10, 25, 50, 100];
/** Rows per page: the URL's ``size`` (1–500), else 25. */
const pageSize = (u: URLSearchParams) => Math.min(500, Math.max(1, Math.floor(Number(u.get("size"))) || PAGE));
const MODALITIES = ["CT", "MR", "CR", "DX", "MG", "US", "NM", "PT", "XA", "RF", "OT"];
const BODY_PARTS = ["CHEST", "HEAD", "ABDOMEN", "PELVIS", "SPINE", "NECK", "BREAST", "HEART", "EXTREMITY"];
const STATUSES = ["unread", "ai_done", "in_progress", "signed"];
/** Form fields kept in the URL: [URL key, input name]. */
const FIELDS = ["pid", "name", "sex", "age_min", "age_max", "modality", "body_part", "source", "from", "to", "accession", "status"];

/** One row of GET /api/worklist. */
export interface Item {
  study_uid: string; study_date: string; study_time: string; accession_number: string; description: string;
  patient_id: string; patient_name: string; sex: string; age: number | null; modalities: string[]; body_parts: string[];
  series: number; institution: { id: number | null; name: string }; status: string; critical: boolean;
}
interface Page { total: number; items: Item[] }

/** "Wang^Xiaoming=王^小明" → "王小明 (Wang Xiaoming)". */
export function personName(pn: string): string {
  const [alpha = "", ideo = ""] = pn.split("=");
  const a = alpha.replace(/\^+/g, " ").trim(), i = ideo.replace(/\^/g, "").trim();
  return i && a ? `${i} (${a})` : i || a;
}

const iso = (d: Date) => `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, "0")}-${String(d.getDate()).padStart(2, "0")}`;
const daysAgo = (n: number) => { const d = new Date(); d.setDate(d.getDate() - n); return iso(d); };
const openStudy = (uid: string) => location.assign("/viewer?study=" + encodeURIComponent(uid));

function field(id: string, label: string, input: HTMLElement, cls = ""): HTMLElement {
  input.id = id;
  return h("label", { class: "field " + cls, for: id }, h("span", { "data-i18n": label }, t(label)), input);
}

function select(name: string, values: Array<[string, string]>): HTMLSelectElement {
  const s = h("select", { name }, h("option", { value: "", "data-i18n": "list.any" }, t("list.any")));
  for (const [v, key] of values) s.append(h("option", { value: v, ...(key ? { "data-i18n": key } : {}) }, key ? t(key) : v));
  return s;
}

export function badge(status: string, critical = false): HTMLElement {
  const b = h("span", { class: "badge st-" + status, "data-status": status, "data-i18n": "wl.st." + status }, t("wl.st." + status));
  return critical ? h("span", { class: "badges" }, b, h("span", { class: "badge st-critical", "data-i18n": "wl.critical" }, t("wl.critical"))) : b;
}

/** The query to /api/worklist for the page's URL parameters. */
export function apiQuery(u: URLSearchParams): URLSearchParams {
  const q = new URLSearchParams();
  const v = (k: string) => (u.get(k) || "").trim();
  if (v("pid")) q.set("patient_id", v("pid").endsWith("*") ? v("pid") : v("pid") + "*");
  if (v("name")) q.set("patient", v("name"));
  const same: Array<[string, string]> = [["sex", "sex"], ["age_min", "age_min"], ["age_max", "age_max"], ["modality", "modality"],
    ["body_part", "body_part"], ["source", "institution"], ["accession", "accession"], ["status", "status"]];
  for (const [k, api] of same) if (v(k)) q.set(api, v(k));
  if (v("from")) q.set("date_from", v("from").replace(/-/g, ""));
  if (v("to")) q.set("date_to", v("to").replace(/-/g, ""));
  q.set("sort", v("sort") || "-date");
  const page = Math.max(1, Number(v("page")) || 1), size = pageSize(u);
  q.set("limit", String(size));
  q.set("offset", String((page - 1) * size));
  return q;
}

export function studyList(main: HTMLElement): void {
  const form = filterForm();
  const table = h("table", { class: "studies", id: "studies" });
  const pager = h("div", { class: "pager", id: "pager" });
  const status = h("p", { class: "status", id: "list-status", role: "status" });
  const timeline = h("aside", { class: "timeline", id: "timeline", "aria-live": "polite" });
  timeline.hidden = true;
  main.replaceChildren(h("div", { class: "list-page" },
    h("section", { class: "list" }, h("h1", { "data-i18n": "list.title" }, t("list.title")), form, status,
      h("div", { class: "table-wrap" }, table), pager),
    timeline));
  void fillSources(form.elements.namedItem("source") as HTMLSelectElement);

  let page: Page = { total: 0, items: [] };
  let error = "";
  const expanded = new Set<string>();
  const url = () => new URLSearchParams(location.search);

  const more = form.querySelector<HTMLButtonElement>("#more-filters")!;
  /** Put the URL's filters into the form (first load, back / forward). */
  function toForm(u: URLSearchParams): void {
    for (const k of FIELDS) {
      const el = form.elements.namedItem(k) as HTMLInputElement | HTMLSelectElement | null;
      if (el) el.value = u.get(k) || "";
    }
    moreLabel();
    const from = u.get("from") || "", to = u.get("to") || "";
    form.querySelectorAll<HTMLButtonElement>("[data-days]").forEach((b) =>
      b.classList.toggle("on", to === iso(new Date()) && from === daysAgo(Number(b.dataset.days))));
  }
  /** The phone's "more filters" button, with how many of the folded filters are set. */
  function moreLabel(): void {
    const set = [...form.querySelectorAll<HTMLInputElement>(".extra input, .extra select")].filter((el) => el.value).length;
    more.textContent = t("wl.moreFilters") + (set ? ` (${set})` : "");
  }
  more.addEventListener("click", () => {
    const open = form.classList.toggle("open");
    more.setAttribute("aria-expanded", String(open));
  });
  /** A new URL from the form (page 1) or with ``change`` applied; a new history entry. */
  function navigate(change: Record<string, string> | null): void {
    const u = change ? url() : new URLSearchParams();
    if (!change) {
      const f = new FormData(form);
      for (const k of FIELDS) { const v = String(f.get(k) || "").trim(); if (v) u.set(k, v); }
      const keep = url();
      for (const k of ["sort", "tl", "size"]) if (keep.get(k)) u.set(k, keep.get(k)!);
    }
    for (const [k, v] of Object.entries(change || {})) { if (v) u.set(k, v); else u.delete(k); }
    const next = u.toString() ? "?" + u.toString() : location.pathname;
    if (next !== location.search && !(next === location.pathname && !location.search)) history.pushState(null, "", next);
    void load();
  }

  let seq = 0; // only the latest answer is shown
  async function load(): Promise<void> {
    const mine = ++seq;
    const u = url();
    toForm(u);
    try {
      sessionStorage.setItem("radcloud.list", location.search); // the viewer's way back to this list
    } catch {
      /* storage blocked: the viewer goes back to the plain list */
    }
    try {
      const got = await getJSON<Page>("/api/worklist?" + apiQuery(u).toString());
      if (mine !== seq) return;
      page = got;
      error = "";
    } catch (e) {
      if (mine !== seq) return;
      page = { total: 0, items: [] };
      error = t("list.error", { e: (e as Error).message });
    }
    render();
    void showTimeline(u.get("tl") || "");
    document.body.dataset.listReady = String(Date.now());
  }

  const cols: Array<[string, string, string]> = [ // [class, label key, sort key]
    ["st", "wl.status", ""], ["name", "list.patientName", "name"], ["pid", "list.patientId", "patient_id"],
    ["sexage", "wl.sexAge", ""], ["date", "list.date", "date"], ["mod", "list.modality", ""], ["body", "wl.bodyPart", ""],
    ["desc", "list.description", "description"], ["acc", "list.accession", "accession"], ["src", "wl.source", ""],
    ["num", "list.series", ""], ["act", "report.title", ""],
  ];

  function header(): HTMLElement {
    const sort = url().get("sort") || "-date";
    const tr = h("tr", {});
    for (const [cls, label, key] of cols) {
      if (!key) { tr.append(h("th", { scope: "col", class: cls }, t(label))); continue; }
      const on = sort.replace("-", "") === key, desc = sort.startsWith("-");
      const th = h("th", { scope: "col", class: cls + " sortable", "data-sort": key, tabindex: "0",
        "aria-sort": on ? (desc ? "descending" : "ascending") : "none" }, t(label) + (on ? (desc ? " ▼" : " ▲") : ""));
      const go = () => navigate({ sort: on ? (desc ? key : "-" + key) : (key === "date" ? "-date" : key), page: "" });
      th.addEventListener("click", go);
      th.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); go(); } });
      tr.append(th);
    }
    return h("thead", {}, tr);
  }

  function row(r: Item): HTMLElement[] {
    const open = expanded.has(r.study_uid);
    const toggle = h("button", { class: "expand", type: "button", "aria-expanded": String(open), "data-i18n-title": "wl.thumbs",
      title: t("wl.thumbs") }, open ? "▾" : "▸");
    const who = h("button", { class: "who-link", type: "button", "data-pid": r.patient_id, "data-i18n-title": "wl.history",
      title: t("wl.history") }, personName(r.patient_name) || "—");
    const reportLink = h("a", { class: "btn small report-link", href: "/report?study=" + encodeURIComponent(r.study_uid),
      "data-i18n": "report.open" }, t("report.open"));
    reportLink.addEventListener("click", (e) => e.stopPropagation()); // not the row's "open in viewer"
    const sexAge = [r.sex ? t("wl.sex." + r.sex) : "", r.age != null ? t("wl.age", { n: r.age }) : ""].filter(Boolean).join(" / ");
    const tr = h("tr", { class: "study", "data-uid": r.study_uid, "data-status": r.status, tabindex: "0" },
      h("td", { class: "st" }, toggle, badge(r.status, r.critical)), h("td", { class: "name" }, who), h("td", { class: "pid" }, r.patient_id),
      h("td", { class: "sexage" }, sexAge), h("td", { class: "date" }, fmtDate(r.study_date)),
      h("td", { class: "mod" }, r.modalities.join("/")), h("td", { class: "body" }, r.body_parts.join(", ")),
      h("td", { class: "desc" }, r.description), h("td", { class: "acc" }, r.accession_number),
      h("td", { class: "src" }, r.institution.name), h("td", { class: "num" }, String(r.series)),
      h("td", { class: "act" }, reportLink));
    const cell = h("td", { colspan: String(cols.length), class: "thumbs" });
    const thumbRow = h("tr", { class: "thumb-row", "data-uid": r.study_uid });
    thumbRow.hidden = !open;
    thumbRow.append(cell);
    const expand = (on: boolean) => {
      thumbRow.hidden = !on;
      toggle.textContent = on ? "▾" : "▸";
      toggle.setAttribute("aria-expanded", String(on));
      if (on) { expanded.add(r.study_uid); if (!cell.childElementCount) void loadThumbs(r.study_uid, cell); } else expanded.delete(r.study_uid);
    };
    if (open) void loadThumbs(r.study_uid, cell);
    toggle.addEventListener("click", (e) => { e.stopPropagation(); expand(thumbRow.hidden); });
    who.addEventListener("click", (e) => { e.stopPropagation(); navigate({ tl: r.patient_id }); });
    tr.addEventListener("dblclick", () => openStudy(r.study_uid));
    tr.addEventListener("keydown", (e) => {
      if (e.target !== tr) return;
      if (e.key === "Enter") openStudy(r.study_uid);
      else if (e.key === "ArrowRight" || e.key === "ArrowLeft") expand(e.key === "ArrowRight");
      else if (e.key === "ArrowDown" || e.key === "ArrowUp") {
        e.preventDefault();
        const rows = [...table.querySelectorAll<HTMLElement>("tr.study")];
        rows[rows.indexOf(tr) + (e.key === "ArrowDown" ? 1 : -1)]?.focus();
      }
    });
    return [tr, thumbRow];
  }

  function render(): void {
    const body = h("tbody", {});
    for (const r of page.items) body.append(...row(r));
    table.replaceChildren(header(), body);
    status.textContent = error || (page.items.length ? "" : t("list.none"));
    const n = Math.max(1, Number(url().get("page")) || 1);
    const size = pageSize(url());
    const pages = Math.max(1, Math.ceil(page.total / size));
    const prev = h("button", { class: "btn", type: "button", id: "prev" }, t("list.prev"));
    const next = h("button", { class: "btn", type: "button", id: "next" }, t("list.next"));
    prev.disabled = n <= 1;
    next.disabled = n >= pages;
    prev.addEventListener("click", () => navigate({ page: n - 1 > 1 ? String(n - 1) : "" }));
    next.addEventListener("click", () => navigate({ page: String(n + 1) }));
    const sizes = h("select", { id: "page-size", "aria-label": t("wl.perPage") },
      ...[...new Set([...SIZES, size])].sort((a, b) => a - b).map((k) => h("option", { value: String(k) }, t("wl.perPageN", { n: k }))));
    sizes.value = String(size);
    sizes.addEventListener("change", () => navigate({ size: sizes.value === String(PAGE) ? "" : sizes.value, page: "" }));
    pager.replaceChildren(prev, h("span", { id: "page-info" }, t("wl.pageOf", { n, m: pages })), next, sizes,
      h("span", { class: "total", id: "total", "data-total": String(page.total) }, t("wl.total", { n: page.total })));
  }

  // ---- the patient's exam history ---------------------------------------------
  let shownFor = "";
  async function showTimeline(pid: string): Promise<void> {
    if (!pid) { timeline.hidden = true; shownFor = ""; return; }
    if (pid === shownFor && !timeline.hidden) return;
    shownFor = pid;
    const q = new URLSearchParams({ patient_id: pid, sort: "-date", limit: "200" });
    let got: Page;
    try {
      got = await getJSON<Page>("/api/worklist?" + q.toString());
    } catch (e) {
      timeline.replaceChildren(h("p", { class: "status" }, t("list.error", { e: (e as Error).message })));
      timeline.hidden = false;
      return;
    }
    if (shownFor !== pid) return;
    const p = got.items[0];
    const close = h("button", { class: "btn small close", type: "button", id: "timeline-close", "data-i18n-title": "wl.close", title: t("wl.close") }, "×");
    close.addEventListener("click", () => navigate({ tl: "" }));
    const sexAge = p ? [p.sex ? t("wl.sex." + p.sex) : "", p.age != null ? t("wl.age", { n: p.age }) : ""].filter(Boolean).join(" / ") : "";
    const list = h("ol", { class: "tl-list" });
    for (const s of got.items) {
      const item = h("li", { class: "tl-item", "data-uid": s.study_uid, tabindex: "0", role: "link" },
        h("span", { class: "tl-dot" }),
        h("div", { class: "tl-date" }, fmtDate(s.study_date)),
        h("div", { class: "tl-what" }, h("b", {}, s.modalities.join("/") || "—"), " ", s.description),
        h("div", { class: "tl-meta" }, badge(s.status, s.critical), s.institution.name ? " " + s.institution.name : ""));
      item.addEventListener("click", () => openStudy(s.study_uid));
      item.addEventListener("keydown", (e) => { if (e.key === "Enter") openStudy(s.study_uid); });
      list.append(item);
    }
    timeline.replaceChildren(
      h("header", { class: "tl-head" }, h("div", {}, h("h2", { "data-i18n": "wl.history" }, t("wl.history")),
        h("div", { class: "tl-who" }, p ? personName(p.patient_name) : pid),
        h("div", { class: "tl-sub" }, [pid, sexAge, t("wl.nStudies", { n: got.total })].filter(Boolean).join(" · "))), close),
      list);
    timeline.hidden = false;
    document.body.dataset.timelineReady = pid;
  }

  form.addEventListener("submit", (e) => { e.preventDefault(); navigate(null); });
  form.addEventListener("reset", () => setTimeout(() => navigate(null)));
  form.querySelectorAll<HTMLButtonElement>("[data-days]").forEach((b) => b.addEventListener("click", () => {
    (form.elements.namedItem("from") as HTMLInputElement).value = daysAgo(Number(b.dataset.days));
    (form.elements.namedItem("to") as HTMLInputElement).value = iso(new Date());
    navigate(null);
  }));
  form.querySelectorAll("select").forEach((s) => s.addEventListener("change", () => navigate(null)));
  window.addEventListener("popstate", () => void load());
  onLangChange(() => {
    translate(main);
    (form.elements.namedItem("name") as HTMLInputElement).placeholder = t("wl.namePh");
    moreLabel();
    render(); shownFor = "";
    void showTimeline(url().get("tl") || "");
  });
  void load();
}

function filterForm(): HTMLFormElement {
  const num = (name: string) => h("input", { name, type: "number", min: "0", max: "150", inputmode: "numeric" });
  const bodyList = h("datalist", { id: "body-parts" }, ...BODY_PARTS.map((b) => h("option", { value: b })));
  const quick = (days: number, key: string) =>
    h("button", { class: "btn small", type: "button", "data-days": String(days), id: "q-days-" + (days + 1), "data-i18n": key }, t(key));
  return h("form", { class: "search", id: "search" },
    field("q-pid", "list.patientId", h("input", { name: "pid", autocomplete: "off" })),
    field("q-name", "list.patientName", h("input", { name: "name", autocomplete: "off", placeholder: t("wl.namePh") })),
    field("q-sex", "wl.sex", select("sex", [["M", "wl.sex.M"], ["F", "wl.sex.F"], ["O", "wl.sex.O"]]), "narrow extra"),
    h("div", { class: "field range extra" }, h("span", { "data-i18n": "wl.ageRange" }, t("wl.ageRange")),
      h("div", { class: "pair" }, field("q-age-min", "wl.ageFrom", num("age_min"), "bare"), "–", field("q-age-max", "wl.ageTo", num("age_max"), "bare"))),
    field("q-modality", "list.modality", select("modality", MODALITIES.map((m) => [m, ""])), "narrow extra"),
    field("q-body", "wl.bodyPart", h("input", { name: "body_part", list: "body-parts", autocomplete: "off" }), "extra"),
    field("q-source", "wl.source", select("source", []), "extra"),
    field("q-status", "wl.status", select("status", STATUSES.map((s) => [s, "wl.st." + s])), "extra"),
    h("div", { class: "field range dates" }, h("span", { "data-i18n": "list.date" }, t("list.date")),
      h("div", { class: "pair" }, field("q-from", "list.from", h("input", { name: "from", type: "date" }), "bare"), "–",
        field("q-to", "list.to", h("input", { name: "to", type: "date" }), "bare"),
        h("span", { class: "quick" }, quick(0, "wl.today"), quick(2, "wl.3days"), quick(6, "wl.7days")))),
    field("q-accession", "list.accession", h("input", { name: "accession", autocomplete: "off" }), "extra"),
    bodyList,
    h("div", { class: "actions" },
      h("button", { class: "btn primary", type: "submit", id: "search-go", "data-i18n": "list.search" }, t("list.search")),
      h("button", { class: "btn", type: "reset", id: "search-clear", "data-i18n": "list.clear" }, t("list.clear")),
      h("button", { class: "btn more-filters", type: "button", id: "more-filters", "aria-expanded": "false" }, t("wl.moreFilters"))));
}

/** The hospitals of the group the user may see, for the source filter. */
async function fillSources(sel: HTMLSelectElement): Promise<void> {
  try {
    const all = await getJSON<Array<{ id: number; name: string }>>("/api/institutions");
    const want = new URLSearchParams(location.search).get("source") || "";
    for (const i of all) sel.append(h("option", { value: String(i.id) }, i.name));
    sel.value = want;
  } catch {
    sel.closest(".field")?.setAttribute("hidden", "");
  }
}

const seriesCache = new Map<string, Promise<DicomJson[]>>(); // per study, across re-renders

/** The series of a study as thumbnails (WADO-RS, loaded lazily), each opening the viewer on it. */
async function loadThumbs(study: string, cell: HTMLElement): Promise<void> {
  cell.replaceChildren(h("span", { class: "muted", "data-i18n": "app.loading" }, t("app.loading")));
  try {
    let p = seriesCache.get(study);
    if (!p) {
      p = getJSON<DicomJson[]>(`/dicom-web/studies/${study}/series`, "application/dicom+json");
      seriesCache.set(study, p);
      p.catch(() => seriesCache.delete(study));
    }
    const series = [...(await p)].sort((a, b) => (tagNum(a, "00200011") ?? 0) - (tagNum(b, "00200011") ?? 0));
    const strip = h("div", { class: "thumb-strip" });
    for (const s of series) {
      if (NOT_IMAGES.has(tagStr(s, "00080060"))) continue; // measurements, key objects, reports: no picture
      const uid = tagStr(s, "0020000E");
      const label = `${tagStr(s, "00080060")} ${tagStr(s, "00200011")} ${tagStr(s, "0008103E")}`.trim();
      const a = h("a", { class: "thumb", href: `/viewer?study=${encodeURIComponent(study)}&series=${encodeURIComponent(uid)}`, title: label },
        h("img", { src: `/dicom-web/studies/${study}/series/${uid}/thumbnail`, alt: label, loading: "lazy", width: "96", height: "96" }),
        h("span", {}, `${label} (${tagStr(s, "00201209")})`));
      a.addEventListener("click", (e) => e.stopPropagation());
      strip.append(a);
    }
    cell.replaceChildren(strip);
  } catch {
    cell.replaceChildren(); /* thumbnails are a convenience; the row still opens */
  }
}
