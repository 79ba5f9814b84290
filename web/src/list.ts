// The start page: search studies (QIDO-RS), sort, page, series thumbnails, open in the viewer.

import { NOT_IMAGES, getJSON, h, tagStr, tagNum, fmtDate, type DicomJson } from "./api";
import { t, onLangChange, translate } from "./i18n";

const PAGE = 25;
const MODALITIES = ["CT", "MR", "CR", "DX", "MG", "US", "NM", "PT", "XA", "RF", "OT"];

interface Row {
  uid: string; pid: string; name: string; date: string; time: string; modality: string;
  description: string; accession: string; series: number; images: number;
}
type SortKey = keyof Row;

const state = {
  offset: 0, more: false, rows: [] as Row[], sort: "date" as SortKey, desc: true, error: "",
};

function toRow(ds: DicomJson): Row {
  const mods = ds["00080061"]?.Value as string[] | undefined;
  return {
    uid: tagStr(ds, "0020000D"), pid: tagStr(ds, "00100020"), name: tagStr(ds, "00100010"),
    date: tagStr(ds, "00080020"), time: tagStr(ds, "00080030"), modality: (mods || []).join("/"),
    description: tagStr(ds, "00081030"), accession: tagStr(ds, "00080050"),
    series: tagNum(ds, "00201206") ?? 0, images: tagNum(ds, "00201208") ?? 0,
  };
}

function field(id: string, label: string, input: HTMLElement): HTMLElement {
  input.id = id;
  return h("label", { class: "field", for: id }, h("span", { "data-i18n": label }, t(label)), input);
}

function query(form: HTMLFormElement): URLSearchParams {
  const f = new FormData(form);
  const q = new URLSearchParams();
  const val = (k: string) => String(f.get(k) || "").trim();
  const pid = val("pid");
  if (pid) q.set("PatientID", /[*?]/.test(pid) ? pid : pid + "*");
  const name = val("name");
  if (name) {
    q.set("PatientName", name);
    q.set("fuzzymatching", "true");
  }
  if (val("modality")) q.set("ModalitiesInStudy", val("modality"));
  const from = val("from").replace(/-/g, "");
  const to = val("to").replace(/-/g, "");
  if (from || to) q.set("StudyDate", from === to ? from : `${from}-${to}`);
  if (val("accession")) q.set("AccessionNumber", val("accession"));
  for (const tag of ["00081030", "00201206", "00201208", "00080061", "00080050"]) q.append("includefield", tag);
  return q;
}

export function studyList(main: HTMLElement): void {
  const modality = h("select", { name: "modality" }, h("option", { value: "", "data-i18n": "list.any" }, t("list.any")));
  for (const m of MODALITIES) modality.append(h("option", { value: m }, m));
  const form = h("form", { class: "search", id: "search" },
    field("q-pid", "list.patientId", h("input", { name: "pid", autocomplete: "off" })),
    field("q-name", "list.patientName", h("input", { name: "name", autocomplete: "off" })),
    field("q-modality", "list.modality", modality),
    field("q-from", "list.from", h("input", { name: "from", type: "date" })),
    field("q-to", "list.to", h("input", { name: "to", type: "date" })),
    field("q-accession", "list.accession", h("input", { name: "accession", autocomplete: "off" })),
    h("div", { class: "actions" },
      h("button", { class: "btn primary", type: "submit", id: "search-go", "data-i18n": "list.search" }, t("list.search")),
      h("button", { class: "btn", type: "reset", "data-i18n": "list.clear" }, t("list.clear"))));
  const table = h("table", { class: "studies", id: "studies" });
  const pager = h("div", { class: "pager" });
  const status = h("p", { class: "status", id: "list-status", role: "status" });
  main.replaceChildren(h("section", { class: "list" }, h("h1", { "data-i18n": "list.title" }, t("list.title")), form, status,
    h("div", { class: "table-wrap" }, table), pager));

  const cols: Array<[SortKey, string]> = [
    ["name", "list.patientName"], ["pid", "list.patientId"], ["date", "list.date"], ["modality", "list.modality"],
    ["description", "list.description"], ["accession", "list.accession"], ["series", "list.series"], ["images", "list.images"],
  ];

  function render(): void {
    const head = h("tr", {});
    for (const [key, label] of cols) {
      const arrow = state.sort === key ? (state.desc ? " ▼" : " ▲") : "";
      const th = h("th", { scope: "col", "data-sort": key, tabindex: "0", "aria-sort": state.sort === key ? (state.desc ? "descending" : "ascending") : "none" }, t(label) + arrow);
      th.addEventListener("click", () => sortBy(key));
      th.addEventListener("keydown", (e) => { if (e.key === "Enter") sortBy(key); });
      head.append(th);
    }
    const body = h("tbody", {});
    const rows = [...state.rows].sort((a, b) => {
      const x = a[state.sort], y = b[state.sort];
      const c = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y), "zh");
      return state.desc ? -c : c;
    });
    for (const r of rows) {
      const tr = h("tr", { class: "study", "data-uid": r.uid, tabindex: "0" },
        h("td", { class: "name" }, r.name), h("td", {}, r.pid), h("td", {}, fmtDate(r.date)), h("td", {}, r.modality),
        h("td", {}, r.description), h("td", {}, r.accession), h("td", { class: "num" }, String(r.series)),
        h("td", { class: "num" }, String(r.images)));
      const thumbs = h("td", { colspan: String(cols.length), class: "thumbs" });
      const open = () => location.assign("/viewer?study=" + encodeURIComponent(r.uid));
      tr.addEventListener("click", open);
      tr.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
      body.append(tr, h("tr", { class: "thumb-row" }, thumbs));
      void loadThumbs(r.uid, thumbs);
    }
    table.replaceChildren(h("thead", {}, head), body);
    status.textContent = state.error || (rows.length ? "" : t("list.none"));
    const prev = h("button", { class: "btn", type: "button", id: "prev" }, t("list.prev"));
    const next = h("button", { class: "btn", type: "button", id: "next" }, t("list.next"));
    (prev as HTMLButtonElement).disabled = state.offset === 0;
    (next as HTMLButtonElement).disabled = !state.more;
    prev.addEventListener("click", () => void search(Math.max(0, state.offset - PAGE)));
    next.addEventListener("click", () => void search(state.offset + PAGE));
    pager.replaceChildren(prev, h("span", {}, t("list.page", { n: state.offset / PAGE + 1 })), next);
  }

  function sortBy(key: SortKey): void {
    state.desc = state.sort === key ? !state.desc : key === "date";
    state.sort = key;
    render();
  }

  let seq = 0; // only the latest search is shown
  async function search(offset: number): Promise<void> {
    const mine = ++seq;
    const q = query(form);
    q.set("limit", String(PAGE + 1));
    q.set("offset", String(offset));
    try {
      const found = await getJSON<DicomJson[]>("/dicom-web/studies?" + q.toString(), "application/dicom+json");
      if (mine !== seq) return;
      state.more = found.length > PAGE;
      state.rows = found.slice(0, PAGE).map(toRow);
      state.offset = offset;
      state.error = "";
    } catch (e) {
      if (mine !== seq) return;
      state.rows = [];
      state.error = t("list.error", { e: (e as Error).message });
    }
    render();
    document.body.dataset.listReady = String(Date.now());
  }

  form.addEventListener("submit", (e) => { e.preventDefault(); seriesCache.clear(); void search(0); });
  form.addEventListener("reset", () => setTimeout(() => void search(0)));
  onLangChange(() => { translate(main); render(); });
  void search(0);
}

const seriesCache = new Map<string, Promise<DicomJson[]>>(); // per study, across re-renders

async function loadThumbs(study: string, cell: HTMLElement): Promise<void> {
  try {
    let p = seriesCache.get(study);
    if (!p) {
      p = getJSON<DicomJson[]>(`/dicom-web/studies/${study}/series`, "application/dicom+json");
      seriesCache.set(study, p);
      p.catch(() => seriesCache.delete(study));
    }
    const series = [...(await p)];
    series.sort((a, b) => (tagNum(a, "00200011") ?? 0) - (tagNum(b, "00200011") ?? 0));
    for (const s of series) {
      if (NOT_IMAGES.has(tagStr(s, "00080060"))) continue; // measurements, key objects, reports: no picture
      const uid = tagStr(s, "0020000E");
      const label = `${tagStr(s, "00080060")} ${tagStr(s, "00200011")} ${tagStr(s, "0008103E")}`.trim();
      const a = h("a", { class: "thumb", href: `/viewer?study=${encodeURIComponent(study)}&series=${encodeURIComponent(uid)}`, title: label },
        h("img", { src: `/dicom-web/studies/${study}/series/${uid}/thumbnail`, alt: label, loading: "lazy", width: "64", height: "64" }),
        h("span", {}, `${label} (${tagStr(s, "00201209")})`));
      a.addEventListener("click", (e) => e.stopPropagation());
      cell.append(a);
    }
  } catch {
    /* thumbnails are a convenience; the row still opens */
  }
}
