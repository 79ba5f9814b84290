// MPR / 3D layout of the viewer, drawn by the server (issue 5): axial, coronal and sagittal planes
// with one shared cross-hair, oblique rotation, slabs (MIP / MinIP / average), W/L, length and CT
// value on the planes, and a volume rendering (presets, rotate, six orientations, virtual scalpel);
// any view can be saved as a new series.  A transfer-function editor (mpr_tf.ts) edits the VR's
// opacity and colour over the volume's histogram, live; a CPR path clicked on the planes shows as a
// curved planar reformat (straightened or stretched) in the 4th viewport.  Every picture is a GET .../view; the latest request of a
// viewport wins (older fetches are aborted, the server drops superseded ones), and drags send at
// most one request per viewport and animation frame.

import { ApiError, getJSON, h, signIn } from "./api";
import { t, onLangChange, translate } from "./i18n";
import { TfEditor, type TfPoint, type TfPreset, presetPoints, tfQuery } from "./mpr_tf";
import { type PlaneInfo, type Vec3, add, clipLine, dist, dot, lineIn, normalOf, scale, sub, toPatient, toPixel } from "./mpr_math";

type PlaneName = "axial" | "coronal" | "sagittal";
type PaneName = PlaneName | "vr";
type Mode = "cross" | "scroll" | "wl" | "rotate" | "length" | "probe" | "cut" | "cpr";

const PLANES: PlaneName[] = ["axial", "coronal", "sagittal"];
const PANES: PaneName[] = [...PLANES, "vr"];
const COLORS: Record<PaneName, string> = { axial: "#4493f8", coronal: "#3fb950", sagittal: "#f0883e", vr: "#a371f7" };
/** Width and height (pixels) of saved images. */
const SAVED_SIZE = 512;
const MODES: Mode[] = ["cross", "scroll", "wl", "rotate", "length", "probe", "cut", "cpr"];
/** Columns of a CPR picture (its width across the path, in pixels of the volume's finest spacing). */
const CPR_WIDTH = 160;
const CPR_COLOR = "#ff6ad5";
/** W/L presets [label key, width, centre] (the 2D viewer's labels). */
const WINDOWS: Array<[string, number, number]> = [
  ["preset.lung", 1500, -600], ["preset.mediastinum", 350, 50], ["preset.bone", 2000, 400], ["preset.brain", 80, 40], ["preset.abdomen", 400, 50],
];
/** VR presets of radcloud.volume.vr.PRESETS, with their labels. */
const VR_PRESETS: Array<[string, string]> = [["bone", "mpr.vrBone"], ["lung", "mpr.vrLung"], ["vessels", "mpr.vrCta"], ["skin", "mpr.vrSkin"], ["mra", "mpr.vrMra"]];
/** The six standard orientations: [server name, label key]. */
const ORIENTATIONS: Array<[string, string]> = [
  ["anterior", "mpr.oA"], ["posterior", "mpr.oP"], ["left", "mpr.oL"], ["right", "mpr.oR"], ["superior", "mpr.oH"], ["inferior", "mpr.oF"],
];

interface Facts {
  modality: string; center: Vec3; window: [number, number]; value_range: [number, number];
  geometry: { shape: number[]; spacing_mm: number[]; slice_gap_mm: number };
  histogram?: { range: [number, number]; counts: number[] };
}
interface CprInfo { kind: string; cpr: string; rows: number; width: number; pixel_mm: number; length_mm: number; center_column: number }
interface ViewInfo { kind: string; plane?: PlaneInfo; camera?: PlaneInfo; slab_mm?: number; mode?: string; window?: number[]; render_ms?: number; seq?: number }
interface Measure { a: Vec3; b: Vec3; normal: Vec3; offset: number }
interface Probe { p: Vec3; value: number | null; normal: Vec3; offset: number }
interface Cut { kind: "polygon"; points: Array<[number, number]>; camera: PlaneInfo; remove: "inside" | "outside" }

interface Pane {
  name: PaneName;
  cell: HTMLDivElement; img: HTMLImageElement; canvas: HTMLCanvasElement; label: HTMLDivElement;
  info?: ViewInfo; url?: string;
  seq: number; ctrl?: AbortController; dirty: boolean; loads: number; pending?: Promise<void>;
  asked?: string; shown?: string; // the view query in flight, and the one shown
  shownAngles?: Vec3; // the rotation of the plane shown
  angles: Vec3; measures: Measure[]; probes: Probe[];
  fast: boolean; // VR while dragging: a half-size picture
  zoom: number; pan?: Vec3; // 1 = fit; the patient point at the picture's centre (default: the volume's)
  fov?: number; // mm across the width when fitted (from the last fitted picture)
}

interface CrosshairReply { cursor: Vec3; voxel: Vec3; inside: boolean; value: number | null }

declare global {
  interface Window { __mpr?: Record<string, unknown>; }
}

let openCount = 0;
let closeOpen: (() => void) | undefined; // one MPR layout at a time

/**
 * Show the MPR / 3D layout of ``series`` in place of ``area`` (which is hidden meanwhile);
 * ``onClose`` runs after the layout is gone and ``area`` is back.  Returns a function that closes it.
 */
export function openMpr(area: HTMLElement, study: string, series: string, onClose?: () => void): () => void {
  closeOpen?.();
  const base = `/api/volume/studies/${encodeURIComponent(study)}/series/${encodeURIComponent(series)}`;
  const client = `mpr-${Date.now().toString(36)}-${++openCount}-${Math.random().toString(36).slice(2, 8)}`;
  const hook: Record<string, unknown> = { status: "starting", series };
  window.__mpr = hook;

  // ---- the page -------------------------------------------------------------
  const btn = (id: string, key: string, cls = "") =>
    h("button", { class: `btn tool mpr-btn ${cls}`.trim(), type: "button", id, "data-i18n": key }, t(key)) as HTMLButtonElement;
  const sel = (id: string, key: string) => h("select", { id, class: "mpr-sel", "data-i18n-title": key, title: t(key), "aria-label": t(key) });
  const group = (...children: Array<Node | string>) => h("div", { class: "mpr-group" }, ...children);

  const closeBtn = btn("mpr-close", "mpr.close");
  const modeBtns = new Map<Mode, HTMLButtonElement>();
  for (const m of MODES) modeBtns.set(m, btn("mpr-mode-" + m, "mpr.mode." + m));
  const wlSel = sel("mpr-wl", "mpr.window");
  const slab = h("input", { id: "mpr-slab", type: "range", min: "0", max: "60", step: "1", value: "0", "aria-label": "slab" }) as HTMLInputElement;
  const slabOut = h("output", { id: "mpr-slab-mm", class: "mpr-num" }, "0 mm");
  const slabMode = sel("mpr-slab-mode", "mpr.slabMode");
  const resetBtn = btn("mpr-reset", "mpr.reset");
  const clearBtn = btn("mpr-clear", "mpr.clear");
  const vrSel = sel("mpr-vr-preset", "mpr.vrPreset");
  const orientBtns = ORIENTATIONS.map(([o, key]) => {
    const b = btn("mpr-o-" + o, key, "mpr-orient");
    b.dataset.i18nTitle = key + "Title";
    b.title = t(key + "Title");
    return b;
  });
  const removeSel = sel("mpr-cut-remove", "mpr.cutRemove");
  const undoBtn = btn("mpr-undo", "mpr.undo");
  const countIn = h("input", { id: "mpr-count", type: "number", min: "1", max: "200", value: "1", class: "mpr-count", "aria-label": "images" }) as HTMLInputElement;
  const saveBtn = btn("mpr-save", "mpr.save", "primary");
  const tfBtn = btn("mpr-tf-toggle", "mpr.tf");
  const cprSel = sel("mpr-cpr-kind", "mpr.cprKind");
  const cprClearBtn = btn("mpr-cpr-clear", "mpr.cprClear");
  const bar = h("div", { class: "mpr-bar", id: "mpr-bar", role: "toolbar" },
    group(closeBtn), group(...modeBtns.values()), group(wlSel),
    group(h("span", { class: "mpr-lbl", "data-i18n": "mpr.slab" }, t("mpr.slab")), slab, slabOut, slabMode),
    group(resetBtn, clearBtn), group(vrSel, tfBtn, ...orientBtns), group(removeSel, undoBtn), group(cprSel, cprClearBtn),
    group(h("span", { class: "mpr-lbl", "data-i18n": "mpr.images" }, t("mpr.images")), countIn, saveBtn));
  const tabs = h("div", { class: "mpr-tabs", role: "tablist" });
  const gridEl = h("div", { class: "mpr-grid", id: "mpr-grid" });
  const statusEl = h("div", { class: "mpr-status", id: "mpr-status", role: "status" }, t("mpr.building"));
  const toastEl = h("div", { class: "mpr-toast", id: "mpr-toast", role: "status" });
  toastEl.hidden = true;
  const root = h("section", { class: "mpr", id: "mpr" }, bar, tabs, gridEl, statusEl, toastEl);

  function fillSelects(): void {
    wlSel.replaceChildren(h("option", { value: "" }, t("mpr.window")), h("option", { value: "default" }, t("mpr.windowDefault")),
      ...WINDOWS.map(([key, w, c]) => h("option", { value: `${c},${w}` }, `${t(key)} ${w}/${c}`)));
    const mode = slabMode.value || "mip";
    slabMode.replaceChildren(...["mip", "minip", "avg"].map((m) => h("option", { value: m }, t("mpr.slab." + m))));
    slabMode.value = mode;
    const vr = vrSel.value || "";
    vrSel.replaceChildren(...VR_PRESETS.map(([p, key]) => h("option", { value: p }, t(key))));
    if (vr) vrSel.value = vr;
    const rm = removeSel.value || "inside";
    removeSel.replaceChildren(h("option", { value: "inside" }, t("mpr.cutInside")), h("option", { value: "outside" }, t("mpr.cutOutside")));
    removeSel.value = rm;
    const ck = cprSel.value || "straightened";
    cprSel.replaceChildren(h("option", { value: "straightened" }, t("mpr.cprStraightened")), h("option", { value: "stretched" }, t("mpr.cprStretched")));
    cprSel.value = ck;
  }
  fillSelects();

  const panes = {} as Record<PaneName, Pane>;
  const tabBtns = new Map<PaneName, HTMLButtonElement>();
  for (const name of PANES) {
    const img = h("img", { class: "mpr-img", alt: "", draggable: "false" }) as HTMLImageElement;
    const canvas = h("canvas", { class: "mpr-ov" }) as HTMLCanvasElement;
    const label = h("div", { class: "mpr-label" }) as HTMLDivElement;
    const cell = h("div", { class: "mpr-vp", "data-view": name, tabindex: "0" }, img, canvas, label) as HTMLDivElement;
    cell.style.setProperty("--mpr-color", COLORS[name]);
    cell.addEventListener("contextmenu", (e) => e.preventDefault());
    gridEl.append(cell);
    panes[name] = { name, cell, img, canvas, label, seq: 0, dirty: false, loads: 0, angles: [0, 0, 0], measures: [], probes: [], fast: false, zoom: 1 };
    const tab = h("button", { class: "mpr-tab", type: "button", role: "tab", "data-view": name, "data-i18n": "mpr.view." + name }, t("mpr.view." + name)) as HTMLButtonElement;
    tab.style.setProperty("--mpr-color", COLORS[name]);
    tab.addEventListener("pointerdown", () => setCurrent(name)); // at the touch (a tap that stops a swipe makes no click)
    tab.addEventListener("click", () => setCurrent(name)); // keyboard
    tabs.append(tab);
    tabBtns.set(name, tab);
  }

  // the transfer-function editor and the CPR picture lie over the 4th viewport
  const tf = new TfEditor((points, live) => {
    tfPoints = points ? points.map((q) => ({ ...q })) : undefined;
    if (!points) resetTf();
    hook.tf = tfPoints;
    dragging = live;
    panes.vr.fast = live;
    invalidate("vr");
  });
  panes.vr.cell.append(tf.el);
  const cprImg = h("img", { class: "mpr-cpr-img", alt: "", draggable: "false" }) as HTMLImageElement;
  const cprLabel = h("div", { class: "mpr-label" }) as HTMLDivElement;
  const cprEl = h("div", { class: "mpr-cpr", id: "mpr-cpr" }, cprImg, cprLabel) as HTMLDivElement;
  cprEl.style.setProperty("--mpr-color", CPR_COLOR);
  cprEl.hidden = true;
  for (const type of ["pointerdown", "pointermove", "pointerup", "wheel"]) cprEl.addEventListener(type, (e) => e.stopPropagation());
  panes.vr.cell.append(cprEl);

  area.hidden = true;
  area.after(root);

  // ---- state ----------------------------------------------------------------
  let facts: Facts | undefined;
  let cursor: Vec3 = [0, 0, 0];
  let windowCW: [number, number] = [40, 400];
  let mode: Mode = phone() ? "scroll" : "cross";
  let current: PaneName = "axial"; // the active viewport (phone: the one shown)
  let vrPreset = "bone";
  let orientation = "anterior";
  let azimuth = 0, elevation = 0;
  let tfPoints: TfPoint[] | undefined; // undefined: the preset's own curve
  let presets: Record<string, TfPreset> | undefined;
  const cprPath: Vec3[] = [];
  let cprSeq = 0;
  let cprCtrl: AbortController | undefined;
  let cprInfo: CprInfo | undefined;
  let cprView: Vec3 | undefined;
  let cprUrl: string | undefined;
  const cuts: Cut[] = [];
  let last: CrosshairReply | undefined;
  let closed = false;
  let frame = 0;
  let dragging = false; // a pointer is down on a viewport
  const stats = { sent: 0, aborted: 0, superseded: 0, shown: 0 };
  hook.stats = stats;

  function phone(): boolean { return window.matchMedia("(max-width: 700px)").matches; }
  function status(text: string, error = false): void {
    statusEl.textContent = text;
    statusEl.classList.toggle("error", error);
  }
  let toastTimer = 0;
  function toast(text: string, error = false): void {
    toastEl.textContent = text;
    toastEl.classList.toggle("error", error);
    toastEl.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = window.setTimeout(() => { toastEl.hidden = true; }, 5000);
  }

  function setMode(m: Mode): void {
    mode = m;
    modeBtns.forEach((b, k) => b.classList.toggle("on", k === m));
    gridEl.dataset.mode = m;
    hook.mode = m;
  }
  function setCurrent(name: PaneName): void {
    current = name;
    for (const p of PANES) {
      panes[p].cell.classList.toggle("mpr-current", p === name);
      tabBtns.get(p)!.classList.toggle("on", p === name);
      tabBtns.get(p)!.setAttribute("aria-selected", String(p === name));
    }
    hook.current = name;
    if (phone()) invalidate(name); // its size changed from nothing
  }

  // ---- requests: the latest one of each viewport wins ---------------------------
  function size(p: Pane): [number, number, number] {
    const r = p.cell.getBoundingClientRect();
    const k = Math.min(window.devicePixelRatio || 1, 2) * (p.fast ? 0.5 : 1);
    const w = Math.max(1, Math.min(2048, Math.round(r.width * k)));
    const hh = Math.max(1, Math.min(2048, Math.round(r.height * k)));
    return [w, hh, r.width];
  }
  const fmt = (v: number[]) => v.map((x) => Number(x.toFixed(4))).join(",");

  /** The parameters of ``p``'s view (the JSON twin goes to /crosshair and /derived). */
  function viewBody(p: Pane): Record<string, unknown> {
    const [w, hh] = size(p);
    const view: Record<string, unknown> = {};
    if (p.zoom !== 1 && p.fov) view.pixel_mm = Number((p.fov / w / p.zoom).toPrecision(6));
    if (p.pan) view.center = p.pan;
    if (p.name === "vr") {
      const edited = tfPoints && tfPoints.length >= 2
        ? { opacity: tfPoints.map((q) => [q.v, q.a]), colors: tfPoints.map((q) => [q.v, ...q.c]) } : {};
      return { kind: "vr", preset: vrPreset, orientation, azimuth, elevation, cuts, width: w, height: hh, ...edited, ...view };
    }
    // the shown plane moves only along its normal: the cursor's motion within it changes nothing
    let at = cursor;
    const shown = p.info?.plane;
    if (shown && p.shownAngles?.every((a, i) => a === p.angles[i])) {
      const n = normalOf(shown);
      at = add(shown.center, scale(n, dot(sub(cursor, shown.center), n)));
    }
    return { kind: "mpr", plane: p.name, angles: p.angles, cursor: at, width: w, height: hh,
      slab_mm: Number(slab.value), mode: slabMode.value || "mip", window: windowCW, ...view };
  }
  function query(body: Record<string, unknown>): URLSearchParams {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(body)) {
      if (k === "cuts") { if ((v as Cut[]).length) q.set(k, JSON.stringify(v)); }
      else if (k === "opacity" || k === "colors") { if (tfPoints) q.set(k, tfQuery(tfPoints)[k]); }
      else if (Array.isArray(v)) q.set(k, fmt(v as number[]));
      else q.set(k, String(v));
    }
    q.set("format", "jpeg");
    q.set("quality", "90");
    return q;
  }

  function invalidate(...names: PaneName[]): void {
    for (const n of names.length ? names : PANES) panes[n].dirty = true;
    if (!frame) frame = requestAnimationFrame(flush);
  }
  /**
   * Send what changed, once per animation frame.  A viewport has one request in flight: a newer
   * view aborts it, except while a drag goes on, when the next one waits for it (so a slow VR
   * frame still shows up while the user turns the volume) and then asks for the latest state.
   */
  function flush(): void {
    frame = 0;
    if (closed || !facts) return;
    for (const n of PANES) {
      const p = panes[n];
      if (!p.dirty || p.cell.getBoundingClientRect().width < 2) continue; // hidden (phone tabs): when shown
      if (n === "vr" && !cprEl.hidden) continue; // the CPR covers it: when it is cleared
      const key = query(viewBody(p)).toString();
      if (key === (p.ctrl ? p.asked : p.shown)) { p.dirty = false; continue; } // asked for already
      if (p.ctrl && dragging) continue; // sent when the one in flight is back
      p.dirty = false;
      p.pending = request(p, key);
    }
  }

  async function request(p: Pane, key: string): Promise<void> {
    const seq = ++p.seq;
    const angles: Vec3 = [...p.angles];
    if (p.ctrl) { p.ctrl.abort(); stats.aborted++; } // a stale picture is of no use: stop downloading it
    const ctrl = (p.ctrl = new AbortController());
    p.asked = key;
    p.cell.classList.add("mpr-busy");
    const q = new URLSearchParams(key);
    q.set("client", client);
    q.set("viewport", p.name);
    q.set("seq", String(seq));
    stats.sent++;
    try {
      const r = await fetch(`${base}/view?${q}`, { credentials: "same-origin", signal: ctrl.signal });
      if (r.status === 401) signIn();
      if (r.status === 204) { stats.superseded++; return; } // the server saw a newer one
      if (seq !== p.seq) return;
      if (!r.ok) throw new ApiError(r.status, `${r.status} ${await detail(r)}`);
      const info = JSON.parse(r.headers.get("X-Radcloud-View") || "{}") as ViewInfo;
      const blob = await r.blob();
      if (seq !== p.seq) return;
      const url = URL.createObjectURL(blob);
      const img = new Image();
      img.src = url;
      await img.decode();
      if (seq !== p.seq || closed) { URL.revokeObjectURL(url); return; }
      p.img.src = url; // already decoded: swaps without a flash
      if (p.url) URL.revokeObjectURL(p.url);
      p.url = url;
      p.info = info;
      p.shown = key;
      p.shownAngles = angles;
      const geo = info.plane ?? info.camera;
      if (geo && !q.has("pixel_mm")) p.fov = geo.pixel_mm * geo.width;
      p.loads++;
      stats.shown++;
      p.cell.dataset.loads = String(p.loads);
      draw(p);
      if (p.name !== "vr") for (const o of PLANES) if (o !== p.name) draw(panes[o]); // the lines of this plane
      label();
    } catch (e) {
      if ((e as Error).name === "AbortError") return;
      status(t("mpr.failed", { e: (e as Error).message }), true);
    } finally {
      if (p.ctrl === ctrl) {
        p.ctrl = undefined;
        p.cell.classList.remove("mpr-busy");
        if (p.dirty && !frame) frame = requestAnimationFrame(flush); // what waited for this one
      }
    }
  }

  async function detail(r: Response): Promise<string> {
    try { return (await r.json()).detail || r.statusText; } catch { return r.statusText; }
  }

  async function post<T>(path: string, body: unknown): Promise<T> {
    const r = await fetch(base + path, { method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" }, body: JSON.stringify(body) });
    if (r.status === 401) signIn();
    if (!r.ok) throw new ApiError(r.status, `${r.status} ${await detail(r)}`);
    return (await r.json()) as T;
  }

  // ---- the cursor -------------------------------------------------------------
  /** Move the shared cursor; re-render only the planes it moved (the others redraw their lines). */
  function moveCursor(p: Vec3): void {
    cursor = p;
    hook.cursor = cursor;
    for (const n of PLANES) {
      const plane = panes[n].info?.plane;
      if (!plane || Math.abs(dot(sub(p, plane.center), normalOf(plane))) > 1e-3) invalidate(n);
      else draw(panes[n]);
    }
    label();
  }

  /** The server's word on the cursor: snapped to what it picked, voxel, inside, CT value. */
  async function confirmPick(name: PlaneName, x: number, y: number, probe = false): Promise<CrosshairReply | undefined> {
    const p = panes[name];
    const plane = p.info?.plane;
    if (!plane) return undefined;
    const views: Record<string, unknown> = {};
    for (const n of PLANES) {
      const g = panes[n].info?.plane;
      // each view exactly as it is shown: the pick is on that picture
      if (g) views[n] = { plane: n, u: g.u, v: g.v, center: g.center, cursor: g.center, pixel_mm: g.pixel_mm, width: g.width, height: g.height };
    }
    try {
      const out = await post<CrosshairReply>("/crosshair", { views, pick_view: name, pick: [x, y] });
      if (probe) {
        p.probes.push({ p: out.cursor, value: out.value, normal: normalOf(plane), offset: dot(out.cursor, normalOf(plane)) });
        hook.probes = PLANES.flatMap((n) => panes[n].probes.map((q) => ({ view: n, point: q.p, value: q.value })));
        draw(p);
      } else {
        last = out;
        hook.crosshair = out;
        moveCursor(out.cursor);
      }
      return out;
    } catch (e) {
      status(t("mpr.failed", { e: (e as Error).message }), true);
      return undefined;
    }
  }

  // ---- drawing the overlays --------------------------------------------------------
  function onPlane(plane: PlaneInfo, normal: Vec3, offset: number): boolean {
    const n = normalOf(plane);
    return Math.abs(dot(n, normal)) > 0.9999 && Math.abs(dot(plane.center, n) - offset * Math.sign(dot(n, normal))) < Math.max(0.5, plane.pixel_mm / 2);
  }

  function draw(p: Pane, extra?: (ctx: CanvasRenderingContext2D, k: number) => void): void {
    const c = p.canvas;
    const r = p.cell.getBoundingClientRect();
    const dpr = window.devicePixelRatio || 1;
    const cw = Math.round(r.width * dpr), ch = Math.round(r.height * dpr);
    if (c.width !== cw || c.height !== ch) { c.width = cw; c.height = ch; }
    const ctx = c.getContext("2d")!;
    ctx.clearRect(0, 0, cw, ch);
    const geo = p.info?.plane ?? p.info?.camera;
    if (!geo) return;
    const k = cw / geo.width; // canvas px per image px
    const px = (x: number) => (x + 0.5) * k;
    ctx.lineWidth = Math.max(1, dpr);
    ctx.font = `${Math.round(12 * dpr)}px system-ui, "Noto Sans CJK SC", sans-serif`;
    if (p.info?.plane) {
      const plane = p.info.plane;
      const [x, y] = toPixel(plane, cursor);
      const gap = 12 * dpr;
      for (const o of PLANES) {
        if (o === p.name) continue;
        const other = panes[o].info?.plane;
        const dir = lineIn(plane, other ? normalOf(other) : standardNormal(o));
        if (!dir) continue;
        const [x0, y0, x1, y1] = clipLine(px(x), px(y), dir[0], dir[1], cw, ch);
        ctx.strokeStyle = COLORS[o];
        ctx.beginPath();
        ctx.moveTo(x0, y0);
        ctx.lineTo(px(x) - dir[0] * gap, px(y) - dir[1] * gap);
        ctx.moveTo(px(x) + dir[0] * gap, px(y) + dir[1] * gap);
        ctx.lineTo(x1, y1);
        ctx.stroke();
      }
      for (const m of p.measures) {
        if (!onPlane(plane, m.normal, m.offset)) continue;
        const [ax, ay] = toPixel(plane, m.a), [bx, by] = toPixel(plane, m.b);
        ctx.strokeStyle = "#ffd33d";
        ctx.fillStyle = "#ffd33d";
        ctx.beginPath();
        ctx.moveTo(px(ax), px(ay));
        ctx.lineTo(px(bx), px(by));
        ctx.stroke();
        for (const [qx, qy] of [[ax, ay], [bx, by]]) ctx.fillRect(px(qx) - 2 * dpr, px(qy) - 2 * dpr, 4 * dpr, 4 * dpr);
        text(ctx, `${dist(m.a, m.b).toFixed(1)} mm`, px(bx) + 6 * dpr, px(by) - 6 * dpr);
      }
      for (const q of p.probes) {
        if (!onPlane(plane, q.normal, q.offset)) continue;
        const [qx, qy] = toPixel(plane, q.p);
        ctx.strokeStyle = "#ffd33d";
        ctx.strokeRect(px(qx) - 3 * dpr, px(qy) - 3 * dpr, 6 * dpr, 6 * dpr);
        text(ctx, q.value === null ? t("mpr.outside") : `${q.value.toFixed(0)} ${unit()}`, px(qx) + 6 * dpr, px(qy) - 6 * dpr);
      }
      if (cprPath.length) { // the CPR path, projected (solid where it lies in this plane)
        const n = normalOf(plane);
        ctx.strokeStyle = ctx.fillStyle = CPR_COLOR;
        ctx.beginPath();
        cprPath.forEach((q, i) => { const [qx, qy] = toPixel(plane, q); if (i) ctx.lineTo(px(qx), px(qy)); else ctx.moveTo(px(qx), px(qy)); });
        ctx.stroke();
        for (const q of cprPath) {
          const [qx, qy] = toPixel(plane, q);
          const near = Math.abs(dot(sub(q, plane.center), n)) < Math.max(1, plane.pixel_mm);
          ctx.beginPath();
          ctx.arc(px(qx), px(qy), (near ? 3.5 : 2) * dpr, 0, 2 * Math.PI);
          ctx.fill();
        }
      }
    }
    extra?.(ctx, k);
  }

  function text(ctx: CanvasRenderingContext2D, s: string, x: number, y: number): void {
    ctx.save();
    const dpr = window.devicePixelRatio || 1;
    const w = ctx.measureText(s).width;
    if (x + w > ctx.canvas.width - 4 * dpr) x -= w + 12 * dpr; // keep it on the picture, clear of the label
    if (y < 34 * dpr) y += 24 * dpr;
    ctx.fillStyle = "#ffd33d";
    ctx.shadowColor = "#000";
    ctx.shadowBlur = 3;
    ctx.fillText(s, x, y);
    ctx.restore();
  }
  const unit = () => (facts?.modality === "CT" ? "HU" : "");
  function standardNormal(o: PlaneName): Vec3 {
    return o === "axial" ? [0, 0, 1] : o === "coronal" ? [0, -1, 0] : [1, 0, 0];
  }

  function label(): void {
    for (const n of PANES) {
      const p = panes[n];
      const parts = [t("mpr.view." + n)];
      const plane = p.info?.plane;
      if (plane) {
        parts.push(`${dot(cursor, normalOf(plane)).toFixed(1)} mm`);
        if (p.angles.some((a) => Math.abs(a) > 1e-6)) parts.push(t("mpr.oblique"));
        const s = Number(slab.value);
        if (s > 0) parts.push(`${s} mm ${t("mpr.slab." + (slabMode.value || "mip"))}`);
        parts.push(`W ${windowCW[1].toFixed(0)} L ${windowCW[0].toFixed(0)}`);
      } else if (n === "vr") {
        parts.push(t(VR_PRESETS.find(([k]) => k === vrPreset)?.[1] || "mpr.vrBone"));
        if (cuts.length) parts.push(t("mpr.cuts", { n: cuts.length }));
      }
      p.label.textContent = parts.join(" · ");
    }
    if (cprInfo) cprLabel.textContent = `${t("mpr.cpr")} · ${t(cprInfo.cpr === "stretched" ? "mpr.cprStretched" : "mpr.cprStraightened")} · ${cprInfo.length_mm.toFixed(1)} mm`;
    const at = cursor.map((v) => v.toFixed(1)).join(", ");
    const value = last && last.value !== null && dist(last.cursor, cursor) < 1e-3 ? ` · ${last.value.toFixed(0)} ${unit()}` : "";
    status(`${t("mpr.cursor")} (${at}) mm${value}`);
  }

  // ---- pointer and wheel -------------------------------------------------------
  /** Image pixel (x, y) under a pointer event (continuous; 0 = the first pixel's centre). */
  function imagePoint(p: Pane, e: { clientX: number; clientY: number }): [number, number] | undefined {
    const geo = p.info?.plane ?? p.info?.camera;
    if (!geo) return undefined;
    const r = p.cell.getBoundingClientRect();
    return [(e.clientX - r.left) * (geo.width / r.width) - 0.5, (e.clientY - r.top) * (geo.height / r.height) - 0.5];
  }
  function step(): number {
    return facts ? Math.max(0.1, Math.min(...facts.geometry.spacing_mm)) : 1;
  }
  function scrollPlane(name: PlaneName, slices: number): void {
    const plane = panes[name].info?.plane;
    if (!plane) return;
    moveCursor(add(cursor, scale(normalOf(plane), slices * step())));
  }

  for (const name of PANES) {
    const p = panes[name];
    let drag: { button: number; zoom: number; pan?: Vec3; x: number; y: number; sx: number; sy: number; a0: Vec3; w0: [number, number]; az: number; el: number; start?: Vec3; pts: Array<[number, number]>; moved: boolean } | undefined;
    p.cell.addEventListener("pointerdown", (e) => {
      if (e.pointerType === "mouse" && e.button > 2) return;
      setCurrent(name);
      p.cell.setPointerCapture(e.pointerId);
      e.preventDefault();
      const ip = imagePoint(p, e);
      dragging = true;
      drag = { button: e.pointerType === "mouse" ? e.button : 0, zoom: p.zoom, pan: p.pan, x: e.clientX, y: e.clientY, sx: e.clientX, sy: e.clientY, a0: [...p.angles] as Vec3, w0: [...windowCW] as [number, number],
        az: azimuth, el: elevation, pts: ip ? [ip] : [], moved: false };
      if (name !== "vr" && ip && p.info?.plane && drag.button === 0) {
        if (mode === "cross") moveCursor(toPatient(p.info.plane, ip[0], ip[1]));
        if (mode === "length") drag.start = toPatient(p.info.plane, ip[0], ip[1]);
      }
    });
    p.cell.addEventListener("pointermove", (e) => {
      if (!drag) return;
      const dx = e.clientX - drag.sx, dy = e.clientY - drag.sy;
      if (Math.abs(e.clientX - drag.x) + Math.abs(e.clientY - drag.y) < 1) return;
      drag.x = e.clientX;
      drag.y = e.clientY;
      drag.moved = true;
      const ip = imagePoint(p, e);
      if (drag.button === 2) { // zoom: drag up to enlarge
        p.zoom = Math.max(0.25, Math.min(16, drag.zoom * Math.exp(-dy / 150)));
        p.fast = name === "vr";
        invalidate(name);
        return;
      }
      if (drag.button === 1) { // pan: the picture follows the pointer
        const geo = p.info?.plane ?? p.info?.camera;
        if (!geo) return;
        const r = p.cell.getBoundingClientRect();
        const mm = (geo.pixel_mm * geo.width) / r.width;
        const from = drag.pan ?? geo.center;
        p.pan = sub(from, add(scale(geo.u, dx * mm), scale(geo.v, dy * mm)));
        drag.pan = drag.pan ?? from;
        p.fast = name === "vr";
        invalidate(name);
        return;
      }
      if (name === "vr") {
        if (mode === "cut") {
          if (ip) drag.pts.push(ip);
          const pts = drag.pts;
          draw(p, (ctx, k) => polygon(ctx, k, pts, false));
        } else {
          azimuth = drag.az + dx * 0.5;
          elevation = Math.max(-89, Math.min(89, drag.el - dy * 0.5));
          p.fast = true;
          invalidate("vr");
        }
        return;
      }
      const plane = p.info?.plane;
      if (!plane || !ip) return;
      if (mode === "cross") moveCursor(toPatient(plane, ip[0], ip[1]));
      else if (mode === "scroll") {
        const n = Math.trunc(-dy / 6);
        if (n) { drag.sy = e.clientY; scrollPlane(name, n); }
      } else if (mode === "wl") {
        const k = facts ? Math.max(1, (facts.value_range[1] - facts.value_range[0]) / 1000) : 2;
        windowCW = [drag.w0[0] + dy * k, Math.max(1, drag.w0[1] + dx * k)];
        hook.window = windowCW;
        wlSel.value = "";
        invalidate(...PLANES);
        if (!cprEl.hidden) void requestCpr(); // the CPR in the same window
      } else if (mode === "rotate") {
        p.angles = [drag.a0[0] + dy * 0.4, drag.a0[1] + dx * 0.4, drag.a0[2]];
        hook.angles = anglesOf();
        invalidate(name);
      } else if (mode === "length" && drag.start) {
        const a = drag.start, b = toPatient(plane, ip[0], ip[1]);
        draw(p, (ctx, k) => {
          const [ax, ay] = toPixel(plane, a), [bx, by] = toPixel(plane, b);
          ctx.strokeStyle = "#ffd33d";
          ctx.beginPath();
          ctx.moveTo((ax + 0.5) * k, (ay + 0.5) * k);
          ctx.lineTo((bx + 0.5) * k, (by + 0.5) * k);
          ctx.stroke();
          text(ctx, `${dist(a, b).toFixed(1)} mm`, (bx + 0.5) * k + 6, (by + 0.5) * k - 6);
        });
      }
    });
    const end = (e: PointerEvent) => {
      const d = drag;
      drag = undefined;
      if (!d) return;
      dragging = false;
      invalidate(); // the latest state now (whatever waited for a request in flight)
      if (d.button !== 0) {
        if (p.fast) { p.fast = false; invalidate(name); }
        return;
      }
      const ip = imagePoint(p, e);
      if (name === "vr") {
        if (mode === "cut" && d.pts.length >= 3 && p.info?.camera) {
          const cam = p.info.camera;
          cuts.push({ kind: "polygon", points: d.pts.map(([x, y]) => [Number(x.toFixed(1)), Number(y.toFixed(1))]), camera: cam,
            remove: removeSel.value === "outside" ? "outside" : "inside" });
          hook.cuts = cuts.length;
          undoBtn.disabled = false;
          draw(p);
          invalidate("vr");
          label();
        } else if (p.fast) {
          p.fast = false;
          invalidate("vr"); // the full-size picture once the drag ends
        }
        return;
      }
      const plane = p.info?.plane;
      if (!plane || !ip) return;
      if (mode === "cross") void confirmPick(name, ip[0], ip[1]);
      else if (mode === "cpr" && !d.moved) addCprPoint(toPatient(plane, ip[0], ip[1]), normalOf(plane));
      else if (mode === "probe") void confirmPick(name, ip[0], ip[1], true);
      else if (mode === "length" && d.start) {
        const b = toPatient(plane, ip[0], ip[1]);
        if (dist(d.start, b) > plane.pixel_mm) {
          const n = normalOf(plane);
          p.measures.push({ a: d.start, b, normal: n, offset: dot(d.start, n) });
          hook.measures = PLANES.flatMap((v) => panes[v].measures.map((m) => ({ view: v, mm: dist(m.a, m.b), a: m.a, b: m.b })));
        }
        draw(p);
      }
    };
    p.cell.addEventListener("pointerup", end);
    p.cell.addEventListener("pointercancel", end);
    p.cell.addEventListener("wheel", (e) => {
      e.preventDefault();
      setCurrent(name);
      if (e.ctrlKey || name === "vr") { // zoom
        p.zoom = Math.max(0.25, Math.min(16, p.zoom * (e.deltaY > 0 ? 1 / 1.15 : 1.15)));
        invalidate(name);
        return;
      }
      scrollPlane(name, e.deltaY > 0 ? -1 : 1);
    }, { passive: false });
  }

  function polygon(ctx: CanvasRenderingContext2D, k: number, pts: Array<[number, number]>, close: boolean): void {
    if (pts.length < 2) return;
    ctx.strokeStyle = "#ff7b72";
    ctx.setLineDash([6, 4]);
    ctx.beginPath();
    pts.forEach(([x, y], i) => (i ? ctx.lineTo((x + 0.5) * k, (y + 0.5) * k) : ctx.moveTo((x + 0.5) * k, (y + 0.5) * k)));
    if (close) ctx.closePath();
    ctx.stroke();
    ctx.setLineDash([]);
  }

  const anglesOf = () => Object.fromEntries(PLANES.map((n) => [n, panes[n].angles]));

  // ---- the bar ------------------------------------------------------------------
  modeBtns.forEach((b, m) => b.addEventListener("click", () => setMode(m)));
  wlSel.addEventListener("change", () => {
    if (!wlSel.value) return;
    windowCW = wlSel.value === "default" && facts ? [...facts.window] : (wlSel.value.split(",").map(Number) as [number, number]);
    hook.window = windowCW;
    invalidate(...PLANES);
    if (!cprEl.hidden) void requestCpr();
  });
  const onSlab = () => {
    slabOut.textContent = `${slab.value} mm`;
    hook.slab = { mm: Number(slab.value), mode: slabMode.value };
    invalidate(...PLANES);
  };
  slab.addEventListener("input", onSlab);
  slabMode.addEventListener("change", onSlab);
  resetBtn.addEventListener("click", () => {
    for (const n of PLANES) panes[n].angles = [0, 0, 0];
    for (const n of PANES) { panes[n].zoom = 1; panes[n].pan = undefined; }
    hook.angles = anglesOf();
    azimuth = elevation = 0;
    orientation = "anterior";
    invalidate();
  });
  clearBtn.addEventListener("click", () => {
    for (const n of PLANES) { panes[n].measures = []; panes[n].probes = []; draw(panes[n]); }
    hook.measures = [];
    hook.probes = [];
  });
  vrSel.addEventListener("change", () => { vrPreset = vrSel.value; hook.vrPreset = vrPreset; resetTf(); invalidate("vr"); label(); });
  tfBtn.addEventListener("click", () => {
    tf.el.hidden = !tf.el.hidden;
    tfBtn.classList.toggle("on", !tf.el.hidden);
    hook.tfOpen = !tf.el.hidden;
    if (!tf.el.hidden) { setCurrent("vr"); void loadPresets(); }
  });
  cprSel.addEventListener("change", () => void requestCpr());
  cprClearBtn.addEventListener("click", () => {
    cprPath.length = 0;
    cprCtrl?.abort();
    cprSeq++;
    cprInfo = undefined;
    hook.cpr = undefined;
    cprEl.hidden = true;
    for (const n of PLANES) draw(panes[n]);
    invalidate("vr");
  });

  /** Back to the preset's own curve (the editor shows its points). */
  function resetTf(): void {
    tfPoints = undefined;
    hook.tf = undefined;
    const preset = presets?.[vrPreset];
    if (preset && facts) tf.setPoints(presetPoints(preset, facts.value_range));
  }
  async function loadPresets(): Promise<void> {
    if (presets) return;
    try {
      presets = (await getJSON<{ presets: Record<string, TfPreset> }>("/api/volume/presets")).presets;
      if (!tfPoints) resetTf();
    } catch (e) {
      status(t("mpr.failed", { e: (e as Error).message }), true);
    }
  }

  // ---- curved planar reformation ------------------------------------------------------
  function addCprPoint(q: Vec3, normal: Vec3): void {
    cprPath.push(q);
    cprView = normal; // stretched: seen as on the plane the path was drawn on
    hook.cprPath = cprPath.map((x) => [...x]);
    for (const n of PLANES) draw(panes[n]);
    void requestCpr();
  }
  /** The CPR along the path so far, in the 4th viewport; the latest request wins. */
  async function requestCpr(): Promise<void> {
    if (cprPath.length < 2) return;
    const seq = ++cprSeq;
    cprCtrl?.abort();
    const ctrl = (cprCtrl = new AbortController());
    const kind = cprSel.value || "straightened";
    const body = { path: cprPath, kind, width: CPR_WIDTH, window: windowCW, format: "png", client, viewport: "cpr", seq,
      ...(kind === "stretched" && cprView ? { direction: cprView } : {}) };
    try {
      const r = await fetch(base + "/cpr", { method: "POST", credentials: "same-origin", signal: ctrl.signal,
        headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
      if (r.status === 401) signIn();
      if (r.status === 204 || seq !== cprSeq) return;
      if (!r.ok) throw new ApiError(r.status, `${r.status} ${await detail(r)}`);
      const info = JSON.parse(r.headers.get("X-Radcloud-View") || "{}") as CprInfo;
      const url = URL.createObjectURL(await r.blob());
      const img = new Image();
      img.src = url;
      await img.decode();
      if (seq !== cprSeq || closed) { URL.revokeObjectURL(url); return; }
      cprImg.src = url;
      if (cprUrl) URL.revokeObjectURL(cprUrl);
      cprUrl = url;
      cprInfo = info;
      cprEl.hidden = false;
      cprEl.dataset.loads = String(Number(cprEl.dataset.loads || 0) + 1);
      hook.cpr = { ...info, points: cprPath.map((x) => [...x]) };
      label();
    } catch (e) {
      if ((e as Error).name === "AbortError") return;
      status(t("mpr.failed", { e: (e as Error).message }), true);
    } finally {
      if (cprCtrl === ctrl) cprCtrl = undefined;
    }
  }
  ORIENTATIONS.forEach(([o], i) => orientBtns[i].addEventListener("click", () => {
    orientation = o;
    azimuth = elevation = 0;
    hook.orientation = o;
    setCurrent("vr");
    invalidate("vr");
  }));
  undoBtn.disabled = true;
  undoBtn.addEventListener("click", () => {
    cuts.pop();
    hook.cuts = cuts.length;
    undoBtn.disabled = !cuts.length;
    invalidate("vr");
    label();
  });
  saveBtn.addEventListener("click", () => void saveSeries());
  closeBtn.addEventListener("click", () => close());

  async function saveSeries(): Promise<void> {
    const p = panes[current];
    const count = Math.max(1, Math.min(200, Math.round(Number(countIn.value) || 1)));
    const view = viewBody(p);
    // square, the same field across: a plain series for any PACS
    if (typeof view.pixel_mm === "number") view.pixel_mm = (view.pixel_mm * Number(view.width)) / SAVED_SIZE;
    view.width = view.height = SAVED_SIZE;
    saveBtn.disabled = true;
    toast(t("mpr.saving"));
    try {
      const out = await post<{ series_uid: string; series_number: number; instances: number }>("/derived", { view, count });
      hook.saved = out;
      toast(t("mpr.saved", { n: out.series_number, k: out.instances }));
      addToPanel(out.series_uid, out.series_number, out.instances, p.name);
    } catch (e) {
      toast(t("mpr.saveFailed", { e: (e as Error).message }), true);
    } finally {
      saveBtn.disabled = false;
    }
  }

  /** The new series in the viewer's series panel (opens in the 2D viewer). */
  function addToPanel(uid: string, number: number, count: number, from: PaneName): void {
    const panel = document.getElementById("series-panel");
    if (!panel) return;
    const href = `/viewer?study=${encodeURIComponent(study)}&series=${encodeURIComponent(uid)}`;
    const item = h("a", { class: "series mpr-new", href, "data-series": uid, title: t("mpr.view." + from) },
      h("img", { src: `/dicom-web/studies/${study}/series/${uid}/thumbnail`, alt: "", width: "96", height: "96" }),
      h("span", {}, `${from === "vr" ? "OT" : facts?.modality || ""} ${number} · ${count}`), h("small", { "data-i18n": "mpr.derived" }, t("mpr.derived")));
    panel.append(item);
  }

  // ---- keyboard (ahead of the 2D viewer's keys, which would act on the hidden grid) --------
  function onKey(e: KeyboardEvent): void {
    const target = e.target as HTMLElement;
    if (target.matches?.("input, select, textarea") || e.ctrlKey || e.metaKey || e.altKey) return;
    const plane: PlaneName = current === "vr" ? "axial" : current;
    if (e.key === "ArrowUp" || e.key === "PageUp") scrollPlane(plane, e.key === "PageUp" ? 10 : 1);
    else if (e.key === "ArrowDown" || e.key === "PageDown") scrollPlane(plane, e.key === "PageDown" ? -10 : -1);
    else if (e.key === "Escape") close();
    e.stopPropagation(); // no other key reaches the hidden 2D viewer
  }
  window.addEventListener("keydown", onKey, true);

  const resize = new ResizeObserver(() => { for (const n of PANES) draw(panes[n]); invalidate(); });
  const relabel = () => { if (closed) return; translate(root); fillSelects(); label(); };
  onLangChange(relabel);

  function close(): void {
    if (closed) return;
    closed = true;
    window.removeEventListener("keydown", onKey, true);
    resize.disconnect();
    cancelAnimationFrame(frame);
    for (const n of PANES) { panes[n].ctrl?.abort(); if (panes[n].url) URL.revokeObjectURL(panes[n].url!); }
    cprCtrl?.abort();
    if (cprUrl) URL.revokeObjectURL(cprUrl);
    root.remove();
    area.hidden = false;
    hook.status = "closed";
    if (closeOpen === close) closeOpen = undefined;
    onClose?.();
  }

  // ---- go -------------------------------------------------------------------------
  hook.close = close;
  /** Client point of transfer-function point ``i`` on the editor's canvas. */
  hook.tfScreenOf = (i: number) => {
    const at = tf.pixelOf(i);
    if (!at) return undefined;
    const r = tf.canvas.getBoundingClientRect();
    return [r.left + (at[0] * r.width) / tf.canvas.width, r.top + (at[1] * r.height) / tf.canvas.height];
  };
  hook.panes = () => Object.fromEntries(PANES.map((n) => [n, { info: panes[n].info, loads: panes[n].loads, angles: panes[n].angles }]));
  hook.toPatient = (n: PaneName, x: number, y: number) => { const g = panes[n].info?.plane; return g ? toPatient(g, x, y) : undefined; };
  hook.toPixel = (n: PaneName, pt: Vec3) => { const g = panes[n].info?.plane; return g ? toPixel(g, pt) : undefined; };
  /** Screen (client) point of image pixel (x, y) of a viewport. */
  hook.screenOf = (n: PaneName, x: number, y: number) => {
    const g = panes[n].info?.plane ?? panes[n].info?.camera;
    if (!g) return undefined;
    const r = panes[n].cell.getBoundingClientRect();
    return [r.left + ((x + 0.5) * r.width) / g.width, r.top + ((y + 0.5) * r.height) / g.height];
  };
  /** Resolves when every shown viewport has its latest picture. */
  hook.settled = async () => {
    for (let i = 0; i < 200; i++) {
      await new Promise((ok) => setTimeout(ok, 30));
      // a viewport waits for a picture unless hidden (phone tabs) or covered by the CPR
      const waits = (n: PaneName) => panes[n].dirty && panes[n].cell.getBoundingClientRect().width >= 2 && !(n === "vr" && !cprEl.hidden);
      const busy = frame !== 0 || cprCtrl !== undefined || PANES.some(waits);
      if (!busy) {
        await Promise.all(PANES.map((n) => panes[n].pending));
        if (frame === 0 && cprCtrl === undefined && !PANES.some(waits)) return true;
      }
    }
    return false;
  };

  closeOpen = close;
  setMode(mode);
  setCurrent("axial");
  void (async () => {
    try {
      facts = await getJSON<Facts>(base);
    } catch (e) {
      status(t("mpr.failed", { e: (e as Error).message }), true);
      hook.status = "error";
      return;
    }
    if (closed) return;
    hook.facts = facts;
    cursor = [...facts.center] as Vec3;
    windowCW = [...facts.window] as [number, number];
    vrPreset = facts.modality === "MR" ? "mra" : "bone";
    vrSel.value = vrPreset;
    hook.cursor = cursor;
    hook.window = windowCW;
    tf.setVolume(facts.histogram?.range ?? facts.value_range, facts.histogram?.counts);
    label();
    resize.observe(gridEl);
    invalidate();
    hook.status = "ready";
  })();
  return close;
}
