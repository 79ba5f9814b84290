// The viewer's loading path, kept out of the Cornerstone chunk so that it runs at once:
// the requests the first image needs start together (settings, study, series, metadata,
// the viewer's code) instead of one after another, and a server-rendered JPEG of the first
// image shows, marked "PREVIEW / 预览", until Cornerstone draws the lossless pixels.

import { NOT_IMAGES, getJSON, tagNum, tagStr, type DicomJson } from "./api";
import { t } from "./i18n";

const DICOM_JSON = "application/dicom+json";
const started = new Map<string, Promise<unknown>>();

/** getJSON, shared: the first caller starts the request, later callers get the same answer. */
export function early<T>(url: string, accept = "application/json"): Promise<T> {
  const key = accept + " " + url;
  let p = started.get(key) as Promise<T> | undefined;
  if (!p) {
    p = getJSON<T>(url, accept);
    p.catch(() => undefined); // a caller sees the error; no unhandled rejection if none asks
    started.set(key, p);
  }
  return p;
}

export const urls = {
  settings: "/api/me/settings",
  study: (study: string) => `/dicom-web/studies?StudyInstanceUID=${study}&includefield=00081030`,
  series: (study: string) => `/dicom-web/studies/${study}/series?includefield=00180015`,
  metadata: (study: string, series: string) => `/dicom-web/studies/${study}/series/${series}/metadata`,
};

/** Instances in the order the viewer stacks them (instance number). */
export function sortInstances(meta: DicomJson[]): DicomJson[] {
  const key = (m: DicomJson) => tagNum(m, "00200013") ?? 0;
  return meta.sort((a, b) => key(a) - key(b));
}

/** The series the viewer opens first when the link names none: the lowest-numbered image series. */
export function firstSeries(series: DicomJson[]): string {
  const images = series.filter((s) => !NOT_IMAGES.has(tagStr(s, "00080060")));
  images.sort((a, b) => (tagNum(a, "00200011") ?? 0) - (tagNum(b, "00200011") ?? 0));
  return images.length ? tagStr(images[0], "0020000E") : "";
}

// ---- frames: transfer syntax ------------------------------------------------------
/** How frames travel: "stored" asks for transfer-syntax=* (the form at rest: compressed when
 *  the archive compresses at rest, no server work); "htj2k"/"jpeg-ls" ask the server to
 *  transcode losslessly (fewer bytes on a thin link, ~30 ms of server CPU per 512² frame). */
export type FrameTransfer = "stored" | "htj2k" | "jpeg-ls";
export const FRAME_TRANSFERS: FrameTransfer[] = ["stored", "htj2k", "jpeg-ls"];
const OCTET_ANY = "multipart/related; type=application/octet-stream; transfer-syntax=*";

/** The Accept header for frame requests (undefined: Cornerstone's own, transfer-syntax=*). */
export function framesAccept(mode: FrameTransfer | undefined): string | undefined {
  if (mode === "htj2k") return `multipart/related; type="image/jphc"; transfer-syntax=1.2.840.10008.1.2.4.201, ${OCTET_ANY}; q=0.5`;
  if (mode === "jpeg-ls") return `multipart/related; type="image/jls"; transfer-syntax=1.2.840.10008.1.2.4.80, ${OCTET_ANY}; q=0.5`;
  return undefined;
}

// ---- the preview ------------------------------------------------------------------
export interface LoadTimes { steps?: Record<string, number>; previewMs?: number; previewSeries?: string; previewSop?: string; losslessMs?: number; previewShown?: boolean }
declare global {
  interface Window { __viewerLoad?: LoadTimes }
}
export const times: LoadTimes = { steps: {} };
/** When a step of the way to the first image finished (ms since navigation; the bench prints them). */
export function mark(name: string): void { times.steps![name] = Math.round(performance.now()); }

let box: HTMLElement | null = null;
let done = false;

/** Starts everything the first image needs; call as early as possible on /viewer. */
export function startViewerLoad(main: HTMLElement): void {
  window.__viewerLoad = times;
  mark("start");
  const params = new URLSearchParams(location.search);
  const study = params.get("study") || "";
  if (!/^[0-9.]{1,64}$/.test(study)) return;
  void early(urls.settings);
  void early(urls.study(study), DICOM_JSON);
  const wanted = params.get("series");
  const seriesUid = wanted && /^[0-9.]{1,64}$/.test(wanted) ? Promise.resolve(wanted)
    : early<DicomJson[]>(urls.series(study), DICOM_JSON).then((s) => { mark("series"); return firstSeries(s); });
  void seriesUid.then((series) => (series ? preview(main, study, series) : undefined)).catch(() => undefined);
}

async function preview(main: HTMLElement, study: string, series: string): Promise<void> {
  const meta = sortInstances([...(await early<DicomJson[]>(urls.metadata(study, series), DICOM_JSON))]);
  mark("metadata");
  const sop = tagStr(meta[0], "00080018");
  if (!sop || done) return;
  const img = new Image();
  img.alt = "";
  img.src = `/dicom-web/studies/${study}/series/${series}/instances/${sop}/frames/1/rendered`;
  await img.decode();
  mark("jpeg");
  if (done) return;
  Object.assign(img.style, { width: "100%", height: "100%", objectFit: "contain", display: "block" });
  const badge = document.createElement("span");
  badge.className = "preview-mark";
  badge.textContent = t("load.preview");
  badge.title = t("load.previewTitle");
  Object.assign(badge.style, { position: "absolute", top: "8px", left: "50%", transform: "translateX(-50%)", padding: "2px 10px",
    background: "#b45309", color: "#fff", font: "bold 14px/1.4 system-ui, sans-serif", borderRadius: "3px", letterSpacing: "0.05em",
    pointerEvents: "none" });
  box = document.createElement("div");
  box.className = "viewer-preview";
  box.dataset.series = series;
  box.dataset.sop = sop;
  Object.assign(box.style, { position: "absolute", inset: "0", background: "#000", zIndex: "5", pointerEvents: "none" });
  box.append(img, badge);
  const cell = document.querySelector<HTMLElement>("[data-preview-host]");
  if (cell) cell.append(box);
  else { // the viewer's page is not built yet: over the page's main area
    if (getComputedStyle(main).position === "static") main.style.position = "relative";
    Object.assign(box.style, { minHeight: "calc(100vh - 60px)" });
    main.append(box);
  }
  times.previewMs = Math.round(performance.now());
  times.previewSeries = series;
  times.previewSop = sop;
  times.previewShown = true;
}

/** The viewer's first cell is ready: the preview moves into it (if it shows the same series). */
export function adoptPreview(cell: HTMLElement, series: string | undefined): void {
  cell.dataset.previewHost = "1";
  if (!box) return;
  if (series && box.dataset.series !== series) { losslessShown(); return; }
  box.style.minHeight = "";
  cell.append(box);
}

/** Cornerstone drew the lossless image: the preview goes. */
export function losslessShown(): void {
  if (done) return;
  done = true;
  times.losslessMs = Math.round(performance.now());
  box?.remove();
  box = null;
}
