// The viewer: series panel, 1×1 / 1×2 / 2×2 StackViewports over WADO-RS, 2D tools, overlay, cine, PNG export.

import { init as csInit, RenderingEngine, Enums, eventTarget, imageLoadPoolManager, imageRetrievalPoolManager, utilities as csUtils, type Types } from "@cornerstonejs/core";
import * as cst from "@cornerstonejs/tools";
import { init as loaderInit, wadors } from "@cornerstonejs/dicom-image-loader";
import { NOT_IMAGES, getJSON, h, signIn, tagStr, tagNum, fmtDate, type DicomJson } from "./api";
import { t, onLangChange, translate } from "./i18n";
import { EXPORT_FORMATS, EXTENSION, download, encode, zip, zipEntry, type ExportFormat, type ZipEntry } from "./export";
import { FILTERS, cssFilter, enhanceXray, filterLabel, installFilters, type FilterName } from "./filters";
import { SAVED_TOOLS, fingerprint, fromSaved, keyOf, loadState, refOf, saveState, toSaved, type ImageRef, type SavedAnnotation } from "./annotations";
import { early, urls, adoptPreview, losslessShown, times as loadTimes, framesAccept, sortInstances, FRAME_TRANSFERS, type FrameTransfer } from "./loader";

const ENGINE = "rc-engine";
const GROUP = "rc-tools";
const { ToolGroupManager, Enums: TE } = cst;
const PRIMARY = [{ mouseButton: TE.MouseBindings.Primary }];

/**
 * ProbeTool, with the CT value also on a stack's later images: Cornerstone 5.14 looks the
 * value up at slice index = the stack position in a one-image voxel manager, which gives
 * nothing beyond the first image; read it again at depth 0.
 */
class HUProbeTool extends cst.ProbeTool {
  static toolName = cst.ProbeTool.toolName;
  _calculateCachedStats(annotation: unknown, renderingEngine: unknown, enabledElement: unknown, changeType?: never): unknown {
    const stats = super._calculateCachedStats(annotation, renderingEngine, enabledElement, changeType) as
      Record<string, { value?: unknown; index?: number[] }>;
    for (const [targetId, st] of Object.entries(stats || {})) {
      if (st.value !== undefined || !st.index) continue;
      const image = this.getTargetImageData(targetId) as { voxelManager?: { getAtIJK(i: number, j: number, k: number): unknown } };
      const value = image?.voxelManager?.getAtIJK(st.index[0], st.index[1], 0);
      if (value !== undefined) {
        st.value = value;
        (st as Record<string, unknown>).modalityUnit ??= "HU";
      }
    }
    return stats;
  }
}

/** An open freehand line (the polyline): its length. */
class PolylineTool extends cst.PlanarFreehandROITool {
  static toolName = "Polyline";
}

/**
 * Cardiothoracic ratio: two horizontal lengths (thorax, heart) on one image; the later one of
 * each pair shows the ratio (shorter / longer).  The end point is pulled onto the horizontal.
 */
class CTRTool extends cst.LengthTool {
  static toolName = "CardiothoracicRatio";
}

/** MagnifyTool that magnifies again on its second use (5.14 keeps a "removed" flag set for good). */
class MagnifierTool extends cst.MagnifyTool {
  static toolName = cst.MagnifyTool.toolName;
  constructor(props: Record<string, unknown> = {}) {
    super(props);
    const self = this as unknown as { _hasBeenRemoved: boolean; preMouseDownCallback: (e: unknown) => boolean };
    const down = self.preMouseDownCallback;
    self.preMouseDownCallback = (e: unknown) => { self._hasBeenRemoved = false; return down(e); };
    const touch = this as unknown as { preTouchStartCallback: (e: unknown) => void };
    touch.preTouchStartCallback = (e: unknown) => { self.preMouseDownCallback(e); };
  }
}

/** Pseudo-colour maps (Cornerstone / vtk.js presets): [name, label key]; the first is grey. */
export const COLORMAPS: Array<[string, string]> = [
  ["Grayscale", "cmap.grey"], ["Black-Body Radiation", "cmap.hotIron"], ["jet", "cmap.jet"], ["hsv", "cmap.hsv"], ["rainbow", "cmap.rainbow"],
];

/** Overlay fields a user can hide per modality: [key, label key]. */
const OVERLAY_FIELDS: Array<[string, string]> = [
  ["name", "ovf.name"], ["pid", "ovf.pid"], ["sexAge", "ovf.sexAge"], ["institution", "ovf.institution"], ["date", "ovf.date"],
  ["study", "ovf.study"], ["series", "ovf.series"], ["image", "ovf.image"], ["position", "ovf.position"], ["wl", "ovf.wl"], ["zoom", "ovf.zoom"],
];

/** What the viewer keeps in the user's server settings (``/api/me/settings`` → ``viewer``). */
interface ViewerSettings {
  presets?: Array<{ name: string; w: number; l: number }>;
  layout?: string;
  tool?: string;
  magnify?: number;
  overlay?: Record<string, string[]>; // modality → hidden fields
  /** Hanging protocols "as you see it": modality:body part → layout and which series goes where. */
  hanging?: Record<string, { layout: string; series: Array<{ modality: string; description: string; number: number } | null> }>;
  /** How frames travel (loader.ts): as stored (default) or transcoded losslessly by the server. */
  transfer?: FrameTransfer;
}

/** Window presets on the number keys 1–5: [key, width, level]. */
export const PRESETS: Array<[string, number, number]> = [
  ["lung", 1500, -600], ["mediastinum", 350, 50], ["bone", 2000, 400], ["brain", 80, 40], ["abdomen", 400, 50],
];
const TOOLS: Array<[string, string, string]> = [ // [id, tool name, label key]
  ["wl", cst.WindowLevelTool.toolName, "viewer.wl"], ["pan", cst.PanTool.toolName, "viewer.pan"],
  ["zoom", cst.ZoomTool.toolName, "viewer.zoom"], ["scroll", cst.StackScrollTool.toolName, "viewer.scroll"],
  ["length", cst.LengthTool.toolName, "viewer.length"], ["angle", cst.AngleTool.toolName, "viewer.angle"],
  ["ellipse", cst.EllipticalROITool.toolName, "viewer.ellipse"], ["rect", cst.RectangleROITool.toolName, "viewer.rect"],
  ["probe", cst.ProbeTool.toolName, "viewer.probe"], ["cobb", cst.CobbAngleTool.toolName, "viewer.cobb"],
  ["polyline", PolylineTool.toolName, "viewer.polyline"], ["freehand", cst.PlanarFreehandROITool.toolName, "viewer.freehand"],
  ["ctr", CTRTool.toolName, "viewer.ctr"], ["arrow", cst.ArrowAnnotateTool.toolName, "viewer.arrow"],
  ["magnify", cst.MagnifyTool.toolName, "viewer.magnify"],
];
/** The study list's filters as the user left them (list.ts keeps them for this tab), for the way back. */
function listSearch(): string {
  try {
    const q = sessionStorage.getItem("radcloud.list") || "";
    return q.startsWith("?") ? q : "";
  } catch {
    return "";
  }
}

/** Tools one click away on the toolbar, and the measurement tools of the Measure group. */
const PRIMARY_TOOLS = ["wl", "pan", "zoom", "scroll"];
const MEASURE_TOOLS = ["length", "angle", "cobb", "ellipse", "rect", "polyline", "freehand", "ctr", "probe", "arrow"];

interface MenuGroup { id: string; key: string; root: HTMLElement; opener: HTMLButtonElement; panel: HTMLElement }
let openMenu: MenuGroup | undefined;

/** Close the open drop-down of the toolbar (a choice made, Escape, a click elsewhere). */
function closeMenu(): void {
  if (!openMenu) return;
  openMenu.panel.hidden = true;
  openMenu.opener.setAttribute("aria-expanded", "false");
  openMenu = undefined;
}

/**
 * A drop-down group of the toolbar: a button opening a panel of tools.  The panel is fixed to the
 * window (the toolbar scrolls sideways on a phone and would clip it); one is open at a time.
 */
function menuGroup(id: string, key: string, items: HTMLElement[], main?: HTMLElement): MenuGroup {
  const opener = h("button", { class: "btn tool menu-open", type: "button", id: "menu-" + id, "data-menu-open": id,
    "aria-haspopup": "menu", "aria-expanded": "false", "data-i18n-title": key, title: t(key) },
  h("span", { class: "menu-label" }, t(key)), h("span", { class: "caret" }, "▾"));
  const panel = h("div", { class: "menu-panel", "data-menu": id, role: "menu" }, ...items);
  panel.hidden = true;
  const root = h("div", { class: "menu" + (main ? " split" : ""), "data-group": id }, ...(main ? [main] : []), opener, panel);
  const g: MenuGroup = { id, key, root, opener, panel };
  opener.addEventListener("click", () => {
    const again = openMenu === g;
    closeMenu();
    if (again) return;
    panel.hidden = false;
    opener.setAttribute("aria-expanded", "true");
    const r = (main || opener).getBoundingClientRect();
    panel.style.top = `${Math.round(r.bottom + 2)}px`;
    panel.style.left = `${Math.round(Math.max(4, Math.min(r.left, window.innerWidth - panel.offsetWidth - 4)))}px`;
    openMenu = g;
  });
  panel.addEventListener("click", (e) => { if ((e.target as HTMLElement).closest("button")) closeMenu(); });
  panel.addEventListener("change", (e) => { if ((e.target as HTMLElement).matches("select")) closeMenu(); });
  return g;
}
document.addEventListener("pointerdown", (e) => { if (openMenu && !openMenu.root.contains(e.target as Node)) closeMenu(); }, true);
document.addEventListener("keydown", (e) => { if (e.key === "Escape" && openMenu) { openMenu.opener.focus(); closeMenu(); } });
window.addEventListener("resize", closeMenu);

/** Layouts offered in the list (rows x columns); any other up to 4×4 comes from the picker. */
const LAYOUTS = ["1x1", "1x2", "2x1", "2x2", "2x3", "3x2", "3x3"];
const MAX_GRID = 4;
function parseLayout(name: string | undefined): [number, number] | undefined {
  const m = /^([1-9])x([1-9])$/.exec(name || "");
  if (!m) return undefined;
  const rc: [number, number] = [Number(m[1]), Number(m[2])];
  return rc[0] <= MAX_GRID && rc[1] <= MAX_GRID ? rc : undefined;
}
/** Zoom modes: fit the whole image, one image pixel per screen pixel, fill, fit the width or the height. */
const ZOOM_MODES = ["fit", "one", "fill", "width", "height"] as const;
type ZoomMode = (typeof ZOOM_MODES)[number];

interface Series {
  uid: string; number: number; modality: string; description: string; count: number; bodyPart?: string;
  study?: string; date?: string; // a prior study's series: its study and date
}

interface Slot {
  el: HTMLDivElement; overlay: HTMLDivElement; keyMark: HTMLDivElement; id: string; series?: string; enabled: boolean;
  filter: FilterName; // display filter (smooth / sharpen / X-ray), on the client only
  cursorMark: HTMLDivElement; // the 3D cursor's position on this viewport's image
  enhanced?: HTMLCanvasElement; // the X-ray enhanced picture, over Cornerstone's canvas
  gen?: number; // bumped by each new content, so a slower earlier load cannot overwrite it
  view?: string; // mammography: laterality and view ("R CC")
}

/** Frame requests in flight while prefetching (the first image's request goes before them). */
const PREFETCH_IN_FLIGHT = 6;

const phone = () => window.matchMedia("(max-width: 700px)").matches;

declare global {
  interface Window { __viewer?: Record<string, unknown>; }
}

export async function viewer(main: HTMLElement): Promise<void> {
  const started = performance.now();
  const params = new URLSearchParams(location.search);
  const study = params.get("study") || "";
  const hook: Record<string, unknown> = { status: "starting" };
  window.__viewer = hook;
  if (!/^[0-9.]{1,64}$/.test(study)) {
    main.replaceChildren(h("p", { class: "status" }, t("viewer.noStudy")));
    hook.status = "error";
    return;
  }
  document.body.classList.add("viewer-mode");

  // ---- the user's settings (server side, so they follow the user to any PC) ----
  let settings: ViewerSettings = {};
  try {
    const all = await early<{ viewer?: ViewerSettings }>(urls.settings); // started by loader.ts
    if (all && typeof all.viewer === "object" && all.viewer) settings = all.viewer;
  } catch {
    /* a token without a user, or the server is older: defaults */
  }
  let saving: Promise<void> = Promise.resolve();
  let saves = 0;
  function saveSettings(change: Partial<ViewerSettings>): Promise<void> {
    Object.assign(settings, change);
    saving = saving.then(async () => { // one at a time, so the last change wins
      const r = await fetch("/api/me/settings", { method: "PATCH", credentials: "same-origin",
        headers: { "Content-Type": "application/json" }, body: JSON.stringify({ viewer: settings }) });
      if (r.ok) hook.saved = ++saves;
    }).catch(() => undefined);
    return saving;
  }

  // ---- the page ------------------------------------------------------------
  const btn = (id: string, key: string, title = "") =>
    h("button", { class: "btn tool", type: "button", id, "data-i18n": key, ...(title ? { title } : {}) }, t(key));
  const toolbar = h("div", { class: "toolbar", id: "toolbar", role: "toolbar" });
  const back = h("a", { class: "btn tool", id: "back", href: "/" + listSearch(), "data-i18n": "viewer.back" }, t("viewer.back"));
  const togglePanel = btn("toggle-series", "viewer.series");
  const layoutSel = h("select", { id: "layout", "aria-label": "layout" });
  function fillLayouts(current = ""): void {
    const names = LAYOUTS.includes(current) || !parseLayout(current) ? LAYOUTS : [...LAYOUTS, current];
    layoutSel.replaceChildren(...names.map((k) => h("option", { value: k }, k.replace("x", "×"))),
      h("option", { value: "custom", "data-i18n": "viewer.customLayout" }, t("viewer.customLayout")));
  }
  fillLayouts();
  const zoomSel = h("select", { id: "zoom-mode", "aria-label": "zoom mode" });
  function fillZoom(): void {
    zoomSel.replaceChildren(h("option", { value: "" }, t("viewer.zoomMode")),
      ...ZOOM_MODES.map((z) => h("option", { value: z }, t("zoom." + z))));
  }
  fillZoom();
  const presetSel = h("select", { id: "preset", "aria-label": "preset" }, h("option", { value: "", "data-i18n": "viewer.presets" }, t("viewer.presets")));
  function fillPresets(): void {
    presetSel.replaceChildren(h("option", { value: "", "data-i18n": "viewer.presets" }, t("viewer.presets")));
    PRESETS.forEach(([k]) => presetSel.append(h("option", { value: k, "data-i18n": "preset." + k }, t("preset." + k))));
    (settings.presets || []).forEach((p, i) => presetSel.append(h("option", { value: "custom:" + i }, `★ ${p.name} (${p.w}/${p.l})`)));
  }
  fillPresets();
  const cmapSel = h("select", { id: "colormap", "aria-label": "colormap", "data-i18n-title": "viewer.colormap", title: t("viewer.colormap") });
  for (const [name, key] of COLORMAPS) cmapSel.append(h("option", { value: name, "data-i18n": key }, t(key)));
  const powerSel = h("select", { id: "magnify-power", "aria-label": "magnifier power", "data-i18n-title": "viewer.power", title: t("viewer.power") });
  for (const p of [2, 3, 4, 6, 8]) powerSel.append(h("option", { value: String(p) }, `${p}×`));
  powerSel.value = String([2, 3, 4, 6, 8].includes(settings.magnify ?? 0) ? settings.magnify : 3);
  const fps = h("input", { id: "fps", type: "number", min: "1", max: "60", value: "15", "aria-label": "fps" });
  const toolButtons = new Map<string, HTMLButtonElement>();
  for (const [id, , key] of TOOLS) {
    const b = btn("tool-" + id, key) as HTMLButtonElement;
    b.addEventListener("click", () => selectTool(id, true));
    toolButtons.set(id, b);
  }
  const actions: Array<[string, string, () => void]> = [
    ["rotate", "viewer.rotate", () => act((vp) => vp.setViewPresentation({ rotation: (vp.getViewPresentation().rotation ?? 0) + 90 }))],
    ["flipH", "viewer.flipH", () => act((vp) => vp.setViewPresentation({ flipHorizontal: !vp.getViewPresentation().flipHorizontal }))],
    ["flipV", "viewer.flipV", () => act((vp) => vp.setViewPresentation({ flipVertical: !vp.getViewPresentation().flipVertical }))],
    ["invert", "viewer.invert", () => act((vp) => vp.setProperties({ invert: !vp.getProperties().invert }))],
    ["xray", "viewer.xray", () => setFilter(slots[active].filter === "xray" ? "" : "xray")],
    ["reset", "viewer.reset", () => { act((vp) => { vp.resetCamera(); vp.resetProperties(); }); zoomTo("fit"); cmapSel.value = COLORMAPS[0][0]; hook.colormap = undefined; setFilter(""); }],
    ["clear", "viewer.clearMeasure", () => { cst.annotation.state.removeAllAnnotations(); engine.render(); markChanged(); }],
    ["key", "viewer.keyImage", () => toggleKey()],
    ["save", "viewer.save", () => void saveAnnotations()],
    ["cine", "viewer.cine", () => toggleCine()],
    ["savepreset", "viewer.savePreset", () => void saveCustomPreset()],
    ["link", "viewer.link", () => setLinked(!linked)],
    ["cursor", "viewer.cursor3d", () => setCursor(!cursorOn)],
    ["hanging", "viewer.hanging", () => void saveHanging()],
    ["reflines", "viewer.refLines", () => setRefLines(!refLines)],
    ["overlay", "viewer.overlaySettings", () => overlayDialog()],
  ];
  const filterSel = h("select", { id: "filter", "aria-label": "filter", "data-i18n-title": "viewer.filter", title: t("viewer.filter") });
  function fillFilters(): void {
    filterSel.replaceChildren(...FILTERS.filter((f) => f !== "xray").map((f) => {
      const [key, level] = filterLabel(f);
      return h("option", { value: f }, f ? `${t(key)} ${level}` : t("filter.none"));
    }));
  }
  fillFilters();
  const actionButtons = new Map<string, HTMLElement>();
  for (const [id, key, f] of actions) {
    const b = btn("act-" + id, key);
    b.addEventListener("click", f);
    actionButtons.set(id, b);
  }
  const exportSel = h("select", { id: "export-format", "aria-label": "export format", "data-i18n-title": "viewer.exportFormat", title: t("viewer.exportFormat") });
  for (const f of EXPORT_FORMATS) exportSel.append(h("option", { value: f }, f.toUpperCase()));
  const exportBtn = btn("act-export", "viewer.export");
  exportBtn.addEventListener("click", () => void exportImage());
  const exportSeriesBtn = btn("act-export-series", "viewer.exportSeries");
  exportSeriesBtn.addEventListener("click", () => void exportSeries());

  // one row: primary tools one click away, the rest in drop-down groups (the active tool shows on its group)
  const tool = (id: string) => toolButtons.get(id)!;
  const action = (id: string) => actionButtons.get(id)!;
  const labelled = (key: string, el: HTMLElement) => h("label", { class: "menu-row" }, h("span", { "data-i18n": key }, t(key)), el);
  // how frames travel (loader.ts): lossless either way; applies from the next study opened
  const transferSel = h("select", { id: "transfer", "aria-label": "transfer", "data-i18n-title": "load.transferNote", title: t("load.transferNote") });
  for (const m of FRAME_TRANSFERS) transferSel.append(h("option", { value: m, "data-i18n": `load.transfer.${m}` }, t(`load.transfer.${m}`)));
  transferSel.value = settings.transfer && FRAME_TRANSFERS.includes(settings.transfer) ? settings.transfer : "stored";
  transferSel.addEventListener("change", () => void saveSettings({ transfer: transferSel.value as FrameTransfer }));
  const measureMain = h("button", { class: "btn tool split-main", type: "button", id: "measure-main", "data-i18n-title": "tb.measure", title: t("tb.measure") });
  const groups = [
    menuGroup("window", "tb.window", [labelled("viewer.presets", presetSel), action("savepreset"), action("invert"),
      labelled("viewer.colormap", cmapSel), labelled("viewer.filter", filterSel), action("xray")]),
    menuGroup("transform", "tb.transform", [labelled("viewer.zoomMode", zoomSel), action("rotate"), action("flipH"),
      action("flipV"), action("reset")]),
    menuGroup("measure", "tb.measure", [...MEASURE_TOOLS.map(tool), action("clear")], measureMain),
    menuGroup("layout", "tb.layout", [labelled("viewer.layout", layoutSel), action("hanging")]),
    menuGroup("tools", "tb.tools", [action("link"), action("reflines"), action("cursor"), tool("magnify"),
      labelled("viewer.power", powerSel), labelled("viewer.fps", fps), action("overlay"),
      labelled("load.transfer", transferSel)]),
    menuGroup("export", "tb.export", [labelled("viewer.exportFormat", exportSel), exportBtn, exportSeriesBtn]),
  ];
  let lastMeasure = MEASURE_TOOLS.includes(String(settings.tool)) ? String(settings.tool) : "length";
  measureMain.addEventListener("click", () => selectTool(lastMeasure, true));
  /** Group buttons: the tool in hand shows on its group; a dot marks a group with something switched on. */
  function refreshGroups(): void {
    for (const g of groups) {
      const inHand = [...toolButtons].find(([id, b]) => id === hook.tool && g.panel.contains(b))?.[0];
      const label = g.opener.querySelector(".menu-label")!;
      if (g.id === "measure") {
        if (inHand) lastMeasure = inHand;
        measureMain.textContent = t(TOOLS.find(([i]) => i === lastMeasure)![2]);
        measureMain.classList.toggle("on", !!inHand);
        label.textContent = "";
      } else {
        label.textContent = inHand ? t(TOOLS.find(([i]) => i === inHand)![2]) : t(g.key);
        g.opener.classList.toggle("on", !!inHand);
      }
      g.opener.classList.toggle("has-on", !!g.panel.querySelector(".btn.on:not([id^=tool-])")); // a switch, not the tool
    }
  }
  for (const g of groups) new MutationObserver(refreshGroups).observe(g.panel, { subtree: true, attributeFilter: ["class"] });
  toolbar.append(back, togglePanel, ...PRIMARY_TOOLS.map(tool), h("span", { class: "tb-sep" }), ...groups.map((g) => g.root),
    h("span", { class: "tb-sep" }), action("cine"), action("key"), action("save"));
  const mprBtn = btn("act-mpr", "mpr.open"); // MPR / 3D of the active viewport's series, drawn by the server (mpr.ts)
  mprBtn.addEventListener("click", () => { const s = slots[active].series; if (s) void import("./mpr").then(({ openMpr }) => {
    toolbar.hidden = true; // the 2D tools would act on the hidden grid; MPR has its own bar
    openMpr(grid, seriesOf(s)?.study || study, s, () => { toolbar.hidden = false; engine.resize(true, true); });
  }); }); // its code loads on first use
  toolbar.append(mprBtn);
  // the study's report (report.ts, its own lazy page)
  toolbar.append(h("a", { class: "btn tool", id: "act-report", href: "/report?study=" + encodeURIComponent(study),
    "data-i18n": "report.open" }, t("report.open")));

  const panel = h("aside", { class: "series-panel", id: "series-panel" });
  const grid = h("div", { class: "grid", id: "grid" });
  const info = h("div", { class: "viewer-info" }, h("span", { class: "keys", "data-i18n": "viewer.keys" }, t("viewer.keys")));
  // a small modal for a line of text (arrow labels, preset names): window.prompt is blocked in some kiosks
  const askInput = h("input", { id: "ask-input", type: "text", maxlength: "80" });
  const askTitle = h("div", { class: "dlg-title" });
  const askDlg = h("dialog", { id: "ask", class: "dlg" },
    h("form", { method: "dialog" }, askTitle, askInput, h("div", { class: "dlg-actions" },
      h("button", { class: "btn", value: "cancel", id: "ask-cancel", "data-i18n": "dlg.cancel" }, t("dlg.cancel")),
      h("button", { class: "btn primary", value: "ok", id: "ask-ok", "data-i18n": "dlg.ok" }, t("dlg.ok")))));
  function ask(key: string, value = ""): Promise<string | null> {
    askTitle.textContent = t(key);
    askInput.value = value;
    askDlg.returnValue = "";
    askDlg.showModal();
    askInput.focus();
    return new Promise((ok) => askDlg.addEventListener("close", () => {
      const v = askInput.value.trim();
      ok(askDlg.returnValue === "ok" && v ? v : null);
    }, { once: true }));
  }
  const ovDlg = h("dialog", { id: "overlay-dialog", class: "dlg" });
  const saveStatus = h("span", { class: "save-status", id: "save-status", role: "status" });
  info.prepend(saveStatus);
  const leaveDlg = h("dialog", { id: "leave", class: "dlg" },
    h("form", { method: "dialog" }, h("div", { class: "dlg-title", "data-i18n": "viewer.unsaved" }, t("viewer.unsaved")),
      h("div", { class: "dlg-actions" },
        h("button", { class: "btn", value: "cancel", id: "leave-cancel", "data-i18n": "dlg.cancel" }, t("dlg.cancel")),
        h("button", { class: "btn", value: "discard", id: "leave-discard", "data-i18n": "viewer.discard" }, t("viewer.discard")),
        h("button", { class: "btn primary", value: "save", id: "leave-save", "data-i18n": "dlg.save" }, t("dlg.save")))));
  const layoutDlg = h("dialog", { id: "layout-dialog", class: "dlg" });
  main.replaceChildren(h("section", { class: "viewer" }, toolbar, h("div", { class: "viewer-body" }, panel, grid), info), askDlg, ovDlg, leaveDlg, layoutDlg);
  if (phone()) panel.classList.add("strip");
  togglePanel.addEventListener("click", () => { panel.hidden = !panel.hidden; requestAnimationFrame(() => engine.resize(true, true)); });
  onLangChange(() => { translate(main); fillPresets(); fillFilters(); fillZoom(); filterSel.value = slots[active]?.filter === "xray" ? "" : slots[active]?.filter || ""; slots.forEach(updateOverlay); refreshGroups(); });

  const slots: Slot[] = Array.from({ length: MAX_GRID * MAX_GRID }, (_, i) => i).map((i) => {
    const el = h("div", { class: "vp", id: "vp" + i, "data-slot": String(i), tabindex: "0" }) as HTMLDivElement;
    el.addEventListener("contextmenu", (e) => e.preventDefault());
    const overlay = h("div", { class: "overlay" }) as HTMLDivElement;
    const cursorMark = h("div", { class: "cursor3d" }) as HTMLDivElement;
    cursorMark.hidden = true;
    const keyMark = h("div", { class: "keymark", "data-i18n-title": "viewer.keyImage", title: t("viewer.keyImage") }, "★ KEY");
    keyMark.hidden = true;
    const cell = h("div", { class: "cell", "data-slot": String(i) }, el, overlay, keyMark, cursorMark, h("div", { class: "empty", "data-i18n": "viewer.empty" }, t("viewer.empty")));
    cell.addEventListener("pointerdown", () => setActive(i));
    // the 3D cursor takes the primary button before any tool does (capture phase)
    cell.addEventListener("mousedown", (e) => {
      if (!cursorOn || e.button !== 0) return;
      e.stopPropagation();
      e.preventDefault();
      setActive(i);
      placeCursor(i, e.clientX, e.clientY);
    }, { capture: true });
    cell.addEventListener("wheel", () => setActive(i), { passive: true });
    cell.addEventListener("dragover", (e) => { e.preventDefault(); cell.classList.add("drop"); });
    cell.addEventListener("dragleave", () => cell.classList.remove("drop"));
    cell.addEventListener("drop", (e) => {
      e.preventDefault();
      cell.classList.remove("drop");
      const uid = e.dataTransfer?.getData("text/x-series");
      if (uid) void show(i, uid);
    });
    grid.append(cell);
    return { el, overlay, keyMark, cursorMark, id: "vp" + i, enabled: false, filter: "" as FilterName };
  });
  let active = 0;
  let refLines = false;
  // the first image's preview (loader.ts) sits in the first cell until Cornerstone draws the lossless pixels
  adoptPreview(slots[0].el.parentElement!, params.get("series") || undefined);
  slots[0].el.addEventListener(Enums.Events.IMAGE_RENDERED, () => { if (vpOf(slots[0])?.getCurrentImageId()) losslessShown(); });

  // ---- Cornerstone ---------------------------------------------------------
  await csInit();
  installFilters();
  const transfer = (params.get("transfer") || settings.transfer) as FrameTransfer | undefined;
  const accept = framesAccept(transfer);
  hook.transfer = accept ? transfer : "stored";
  loaderInit({
    maxWebWorkers: Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 4)),
    ...(accept ? { beforeSend: () => ({ Accept: accept }) } : {}), // lossless either way
    errorInterceptor: (error) => { if (error.status === 401) signIn(); }, // the session ran out
  });
  cst.init();
  // prefetch: a bounded number of frame requests in flight (stackPrefetch orders them outward from the shown slice)
  for (const pool of [imageRetrievalPoolManager, imageLoadPoolManager]) pool.setMaxSimultaneousRequests(Enums.RequestType.Prefetch, PREFETCH_IN_FLIGHT);
  for (const T of [cst.WindowLevelTool, cst.PanTool, cst.ZoomTool, cst.StackScrollTool, cst.LengthTool, cst.AngleTool,
    cst.EllipticalROITool, cst.RectangleROITool, HUProbeTool, cst.CobbAngleTool, PolylineTool, cst.PlanarFreehandROITool,
    CTRTool, cst.ArrowAnnotateTool, MagnifierTool, cst.ReferenceLinesTool]) cst.addTool(T);
  const group = ToolGroupManager.getToolGroup(GROUP) || ToolGroupManager.createToolGroup(GROUP)!;
  const toolConfig: Record<string, Record<string, unknown>> = {
    [cst.PlanarFreehandROITool.toolName]: { allowOpenContours: false }, // the area tool always closes
    [PolylineTool.toolName]: { allowOpenContours: true, calculateStats: true },
    [CTRTool.toolName]: { getTextLines: ctrText },
    [cst.ArrowAnnotateTool.toolName]: {
      getTextCallback: (done: (text: string | null) => void) => void ask("viewer.arrowText").then((v) => done(v)),
      changeTextCallback: (data: { text?: string }, _e: unknown, done: (text: string | null) => void) =>
        void ask("viewer.arrowText", data.text || "").then((v) => done(v ?? data.text ?? "")),
    },
    [cst.MagnifyTool.toolName]: { magnifySize: Number(powerSel.value) },
  };
  for (const [, name] of TOOLS) group.addTool(name, toolConfig[name] || {});
  // measurement tools draw (and let you edit) their annotations even when not the tool in hand:
  // measurements restored from the server show at once
  for (const [, name] of TOOLS) if (SAVED_TOOLS.has(name) || name === cst.ProbeTool.toolName) group.setToolPassive(name);
  group.addTool(cst.ReferenceLinesTool.toolName, { sourceViewportId: "vp0" });
  powerSel.addEventListener("change", () => {
    group.setToolConfiguration(cst.MagnifyTool.toolName, { magnifySize: Number(powerSel.value) });
    void saveSettings({ magnify: Number(powerSel.value) });
  });

  // cardiothoracic ratio: the end point stays on the horizontal through the start; pairs give the ratio
  type Ann = cst.Types.Annotation;
  const ctrAnnotations = (imageId?: string): Ann[] => cst.annotation.state.getAllAnnotations()
    .filter((a) => a.metadata?.toolName === CTRTool.toolName && (!imageId || a.metadata?.referencedImageId === imageId));
  const lengthOf = (a: Ann): number | undefined => {
    const st = Object.values((a.data as { cachedStats?: Record<string, { length?: number }> }).cachedStats || {});
    return st.map((x) => x.length).filter((x): x is number => typeof x === "number").at(-1);
  };
  function ctrOf(a: Ann): number | undefined {
    const same = ctrAnnotations(a.metadata?.referencedImageId);
    const k = same.indexOf(a);
    if (k < 1 || k % 2 !== 1) return undefined; // the 2nd of each pair shows the ratio
    const x = lengthOf(same[k - 1]), y = lengthOf(a);
    if (!x || !y) return undefined;
    return Math.min(x, y) / Math.max(x, y);
  }
  function ctrText(data: Ann["data"], targetId: string): string[] {
    const st = (data as { cachedStats?: Record<string, { length?: number; unit?: string }> }).cachedStats?.[targetId];
    if (!st || typeof st.length !== "number") return [];
    const lines = [`${st.length.toFixed(1)} ${st.unit || "mm"}`];
    const a = ctrAnnotations().find((x) => x.data === data);
    const r = a && ctrOf(a);
    if (r !== undefined) lines.push(`CTR ${r.toFixed(2)}`);
    return lines;
  }
  function horizontal(evt: Event): void {
    const a = (evt as CustomEvent<{ annotation?: Ann }>).detail?.annotation;
    if (!a || a.metadata?.toolName !== CTRTool.toolName) return;
    const pts = a.data.handles?.points as Types.Point3[] | undefined;
    const vp = vpOf(slots[active]);
    if (!pts || pts.length < 2 || !vp) return;
    const { viewUp, viewPlaneNormal } = vp.getCamera();
    if (!viewUp || !viewPlaneNormal) return;
    const r = [viewUp[1] * viewPlaneNormal[2] - viewUp[2] * viewPlaneNormal[1], viewUp[2] * viewPlaneNormal[0] - viewUp[0] * viewPlaneNormal[2],
      viewUp[0] * viewPlaneNormal[1] - viewUp[1] * viewPlaneNormal[0]];
    const d = [0, 1, 2].reduce((s, i) => s + (pts[1][i] - pts[0][i]) * r[i], 0);
    const end = [0, 1, 2].map((i) => pts[0][i] + d * r[i]) as Types.Point3;
    if ([0, 1, 2].every((i) => Math.abs(end[i] - pts[1][i]) < 1e-6)) return;
    pts[1] = end;
    a.invalidated = true;
    for (const o of ctrAnnotations(a.metadata?.referencedImageId)) o.invalidated = true; // the partner's ratio
    cst.utilities.triggerAnnotationRenderForViewportIds(slots.filter((s) => s.enabled).map((s) => s.id));
  }
  eventTarget.addEventListener(TE.Events.ANNOTATION_COMPLETED, horizontal);
  eventTarget.addEventListener(TE.Events.ANNOTATION_MODIFIED, horizontal);
  group.setToolActive(cst.StackScrollTool.toolName, { bindings: [{ mouseButton: TE.MouseBindings.Wheel }] });
  group.setToolActive(cst.PanTool.toolName, { bindings: [{ mouseButton: TE.MouseBindings.Auxiliary }] });
  group.setToolActive(cst.ZoomTool.toolName, { bindings: [{ mouseButton: TE.MouseBindings.Secondary }, { numTouchPoints: 2 }] });
  const engine = new RenderingEngine(ENGINE);
  let primary = "";
  function selectTool(id: string, save = false): void {
    const name = TOOLS.find(([i]) => i === id)?.[1];
    if (!name) return;
    if (primary) {
      const old = TOOLS.find(([i]) => i === primary)![1];
      // keep the secondary bindings of pan/zoom/scroll; measurement tools stay editable (passive)
      if (old === cst.ZoomTool.toolName) group.setToolActive(old, { bindings: [{ mouseButton: TE.MouseBindings.Secondary }, { numTouchPoints: 2 }] });
      else if (old === cst.PanTool.toolName) group.setToolActive(old, { bindings: [{ mouseButton: TE.MouseBindings.Auxiliary }] });
      else if (old === cst.StackScrollTool.toolName) group.setToolActive(old, { bindings: [{ mouseButton: TE.MouseBindings.Wheel }] });
      else group.setToolPassive(old);
    }
    const extra = name === cst.ZoomTool.toolName ? [{ mouseButton: TE.MouseBindings.Secondary }, { numTouchPoints: 2 }]
      : name === cst.PanTool.toolName ? [{ mouseButton: TE.MouseBindings.Auxiliary }]
      : name === cst.StackScrollTool.toolName ? [{ mouseButton: TE.MouseBindings.Wheel }] : [];
    group.setToolActive(name, { bindings: [...PRIMARY, ...extra] });
    primary = id;
    toolButtons.forEach((b, k) => b.classList.toggle("on", k === id));
    hook.tool = id;
    refreshGroups();
    if (save && settings.tool !== id) void saveSettings({ tool: id });
  }
  // a phone starts on scroll (one finger); a desktop where the user left it
  selectTool(phone() ? "scroll" : TOOLS.some(([i]) => i === settings.tool) ? settings.tool! : "wl");

  // ---- series --------------------------------------------------------------
  const seriesList: Series[] = [];
  const stacks = new Map<string, Promise<string[]>>();
  let studyInfo: DicomJson = {};
  try {
    const [studies, series] = await Promise.all([
      early<DicomJson[]>(urls.study(study), "application/dicom+json"), // started by loader.ts
      early<DicomJson[]>(urls.series(study), "application/dicom+json"),
    ]);
    studyInfo = studies[0] || {};
    for (const s of series) {
      if (NOT_IMAGES.has(tagStr(s, "00080060"))) continue;
      seriesList.push({ uid: tagStr(s, "0020000E"), number: tagNum(s, "00200011") ?? 0, modality: tagStr(s, "00080060"),
        description: tagStr(s, "0008103E"), count: tagNum(s, "00201209") ?? 0, bodyPart: tagStr(s, "00180015") });
    }
    seriesList.sort((a, b) => a.number - b.number);
  } catch (e) {
    main.append(h("p", { class: "status error" }, t("viewer.error", { e: (e as Error).message })));
    hook.status = "error";
    return;
  }
  for (const s of seriesList) {
    const item = h("button", { class: "series", type: "button", draggable: "true", "data-series": s.uid, title: s.description },
      h("img", { src: `/dicom-web/studies/${study}/series/${s.uid}/thumbnail`, alt: "", width: "96", height: "96" }),
      h("span", {}, `${s.modality} ${s.number} · ${s.count}`), h("small", {}, s.description));
    item.addEventListener("click", () => void show(active, s.uid));
    item.addEventListener("dragstart", (e) => e.dataTransfer?.setData("text/x-series", s.uid));
    panel.append(item);
  }
  // the same patient's earlier studies: their series can go into any viewport, next to today's
  const priorList: Series[] = [];
  async function loadPriors(): Promise<void> {
    const pid = tagStr(studyInfo, "00100020");
    if (!pid) return;
    const studies = await getJSON<DicomJson[]>(`/dicom-web/studies?PatientID=${encodeURIComponent(pid)}&includefield=00081030&limit=20`, "application/dicom+json");
    const priors = studies.filter((x) => tagStr(x, "0020000D") !== study && tagStr(x, "00080020") <= (tagStr(studyInfo, "00080020") || "99999999"))
      .sort((a, b) => tagStr(b, "00080020").localeCompare(tagStr(a, "00080020"))).slice(0, 5);
    for (const p of priors) {
      const uid = tagStr(p, "0020000D"), date = fmtDate(tagStr(p, "00080020"));
      const series = await getJSON<DicomJson[]>(`/dicom-web/studies/${uid}/series`, "application/dicom+json");
      const label = tagStr(p, "00080020") < tagStr(studyInfo, "00080020") ? "viewer.prior" : "viewer.otherStudy";
      const box = h("div", { class: "prior", "data-study": uid }, h("div", { class: "prior-title" }, `${t(label)} ${date} ${tagStr(p, "00081030")}`));
      for (const x of series.sort((a, b) => (tagNum(a, "00200011") ?? 0) - (tagNum(b, "00200011") ?? 0))) {
        if (NOT_IMAGES.has(tagStr(x, "00080060"))) continue;
        const s: Series = { uid: tagStr(x, "0020000E"), number: tagNum(x, "00200011") ?? 0, modality: tagStr(x, "00080060"),
          description: tagStr(x, "0008103E"), count: tagNum(x, "00201209") ?? 0, study: uid, date };
        priorList.push(s);
        const item = h("button", { class: "series", type: "button", draggable: "true", "data-series": s.uid, "data-study": uid, title: s.description },
          h("img", { src: `/dicom-web/studies/${uid}/series/${s.uid}/thumbnail`, alt: "", width: "96", height: "96" }),
          h("span", {}, `${s.modality} ${s.number} · ${s.count}`), h("small", {}, s.description));
        item.addEventListener("click", () => void show(active, s.uid));
        item.addEventListener("dragstart", (e) => e.dataTransfer?.setData("text/x-series", s.uid));
        box.append(item);
      }
      panel.append(box);
    }
    hook.priors = priorList.length;
  }

  function stackOf(series: string): Promise<string[]> {
    let p = stacks.get(series);
    const inStudy = seriesOf(series)?.study || study;
    if (!p) {
      p = (async () => {
        const meta = sortInstances(await early<DicomJson[]>(urls.metadata(inStudy, series), "application/dicom+json"));
        const ids: string[] = [];
        for (const m of meta) {
          const sop = tagStr(m, "00080018");
          const frames = tagNum(m, "00280008") ?? 1;
          for (let f = 1; f <= frames; f++) {
            const id = idOf({ series, sop, frame: f }, inStudy);
            wadors.metaDataManager.add(id, m as never);
            ids.push(id);
          }
        }
        return ids;
      })();
      stacks.set(series, p);
    }
    return p;
  }

  const vpOf = (slot: Slot) => engine.getViewport(slot.id) as Types.IStackViewport | undefined;
  const idOf = (r: ImageRef, inStudy = study) => `wadors:${location.origin}/dicom-web/studies/${inStudy}/series/${r.series}/instances/${r.sop}/frames/${r.frame}`;
  /** This study's series, or a prior study's shown from the panel. */
  const seriesOf = (uid?: string) => seriesList.find((x) => x.uid === uid) || priorList.find((x) => x.uid === uid);
  const inThisStudy = (imageId: string) => imageId.includes(`/studies/${study}/series/`);

  async function show(i: number, series: string): Promise<void> {
    const slot = slots[i];
    if (!slot.enabled) return;
    cst.utilities.cine.stopClip(slot.el);
    slot.series = series;
    slot.view = undefined;
    mammoPairs = mammoPairs.filter((pair) => !pair.includes(slot)); // another series: no longer mirrored
    const gen = (slot.gen = (slot.gen || 0) + 1);
    slot.el.parentElement!.classList.add("filled");
    panel.querySelectorAll(".series").forEach((b) => b.classList.toggle("shown", slots.some((s) => s.enabled && s.series === (b as HTMLElement).dataset.series)));
    const ids = await stackOf(series);
    const vp = vpOf(slot);
    if (!vp || slot.gen !== gen) return;
    await vp.setStack(ids, 0);
    zoomTo("fit", slot); // the whole image, whatever the shape of the viewport
    cst.utilities.stackPrefetch.enable(slot.el); // the rest, nearest to the shown image first
    updateOverlay(slot);
    const rate = frameRate(slot);
    if (rate && i === active && !fpsTouched) fps.value = String(rate); // a multi-frame run plays at its own rate
  }

  function enable(slot: Slot): void {
    if (slot.enabled) return;
    engine.enableElement({ viewportId: slot.id, type: Enums.ViewportType.STACK, element: slot.el,
      defaultOptions: { background: [0, 0, 0] as Types.Point3 } });
    group.addViewport(slot.id, ENGINE);
    slot.enabled = true;
    const canvas = vpOf(slot)?.getCanvas();
    if (canvas) canvas.style.filter = cssFilter(slot.filter);
    slot.el.addEventListener(Enums.Events.CAMERA_MODIFIED, () => { if (mammoPairs.length) mirrorCamera(slot); });
    slot.el.addEventListener(Enums.Events.IMAGE_RENDERED, () => {
      scheduleOverlay(slot);
      if (cursorAt) showCursor(slot);
      if (slot.filter === "xray") refreshEnhanced(slot);
    });
    slot.el.addEventListener(Enums.Events.STACK_NEW_IMAGE, () => {
      if (slots[active] !== slot) return;
      syncFrom(slot);
      const ref = refOf(vpOf(slot)?.getCurrentImageId() || "");
      document.getElementById("act-key")?.classList.toggle("on", !!ref && keyImages.has(keyOf(ref)));
    });
  }

  function setLayout(name: string, save = false): void {
    if (!parseLayout(name)) name = "1x1";
    const [rows, cols] = parseLayout(name)!;
    if (save && settings.layout !== name) void saveSettings({ layout: name });
    fillLayouts(name);
    layoutSel.value = name;
    grid.style.gridTemplateRows = `repeat(${rows}, minmax(0, 1fr))`;
    grid.style.gridTemplateColumns = `repeat(${cols}, minmax(0, 1fr))`;
    slots.forEach((slot, i) => {
      const on = i < rows * cols;
      slot.el.parentElement!.hidden = !on;
      if (!on && slot.enabled) {
        cst.utilities.cine.stopClip(slot.el);
        group.removeViewports(ENGINE, slot.id);
        engine.disableElement(slot.id);
        slot.enabled = false;
      }
    });
    engine.resize(true, true);
    slots.forEach((slot) => { if (slot.enabled) zoomTo("fit", slot); }); // another cell shape: fit again
    slots.forEach((slot, i) => {
      if (i < rows * cols && !slot.enabled) {
        enable(slot);
        const next = slot.series || seriesList[i % Math.max(1, seriesList.length)]?.uid;
        if (next) void show(i, next);
      }
    });
    if (active >= rows * cols) setActive(0);
    hook.layout = name;
  }
  layoutSel.addEventListener("change", () => {
    if (layoutSel.value === "custom") { layoutSel.value = String(hook.layout || "1x1"); pickLayout(); }
    else setLayout(layoutSel.value, true);
  });
  /** The rows × columns picker: a 4×4 grid of cells, hover to preview, click to choose. */
  function pickLayout(): void {
    const label = h("div", { class: "pick-label", id: "layout-pick-label" }, "1 × 1");
    const cells: HTMLButtonElement[] = [];
    const pick = h("div", { class: "layout-pick", role: "grid" });
    for (let r = 1; r <= MAX_GRID; r++) for (let c = 1; c <= MAX_GRID; c++) {
      const b = h("button", { type: "submit", value: `${r}x${c}`, class: "pick-cell", id: `pick-${r}x${c}`, "aria-label": `${r} × ${c}` }) as HTMLButtonElement;
      b.addEventListener("mouseenter", () => {
        cells.forEach((x) => { const [rr, cc] = parseLayout(x.value)!; x.classList.toggle("in", rr <= r && cc <= c); });
        label.textContent = `${r} × ${c}`;
      });
      cells.push(b);
      pick.append(b);
    }
    layoutDlg.replaceChildren(h("form", { method: "dialog" }, h("div", { class: "dlg-title" }, t("viewer.customLayout")), pick, label,
      h("div", { class: "dlg-actions" }, h("button", { class: "btn", value: "cancel", id: "layout-cancel" }, t("dlg.cancel")))));
    layoutDlg.returnValue = "";
    layoutDlg.addEventListener("close", () => { if (parseLayout(layoutDlg.returnValue)) setLayout(layoutDlg.returnValue, true); }, { once: true });
    layoutDlg.showModal();
  }

  function setActive(i: number): void {
    const changed = active !== i;
    active = i;
    if (changed && refLines) group.setToolConfiguration(cst.ReferenceLinesTool.toolName, { sourceViewportId: slots[i].id });
    slots.forEach((s, k) => s.el.parentElement!.classList.toggle("active", k === i));
    filterSel.value = slots[i].filter === "xray" ? "" : slots[i].filter;
    document.getElementById("act-xray")?.classList.toggle("on", slots[i].filter === "xray");
  }

  // ---- overlay -------------------------------------------------------------
  const pending = new Set<Slot>();
  function scheduleOverlay(slot: Slot): void {
    if (!pending.size) requestAnimationFrame(() => { pending.forEach(updateOverlay); pending.clear(); });
    pending.add(slot);
  }
  function overlayText(slot: Slot): string[][] {
    const vp = vpOf(slot);
    const s = seriesOf(slot.series);
    if (!vp || !s || !vp.getImageIds().length) return [[], [], [], []];
    const idx = vp.getCurrentImageIdIndex();
    const id = vp.getImageIds()[idx];
    const meta = wadors.metaDataManager.get(id) as unknown as DicomJson | undefined;
    const { voiRange, invert } = vp.getProperties();
    const wl = voiRange ? csUtils.windowLevel.toWindowLevel(voiRange.lower, voiRange.upper) : undefined;
    const w = Math.round(wl?.windowWidth ?? 0), l = Math.round(wl?.windowCenter ?? 0);
    const pos = meta?.["00201041"]?.Value?.[0];
    const thick = tagStr(meta, "00180050");
    const hidden = new Set(settings.overlay?.[s.modality] || []); // the user's choice for this modality
    const f = (key: string, text: string) => (hidden.has(key) ? "" : text);
    return [
      [f("name", tagStr(studyInfo, "00100010") || tagStr(meta, "00100010")), f("pid", tagStr(meta, "00100020")),
        f("sexAge", [tagStr(meta, "00100040"), tagStr(meta, "00101010")].filter(Boolean).join(" "))],
      [s.study ? t("viewer.prior") : "", f("institution", tagStr(meta, "00080080")), f("date", fmtDate(tagStr(meta, "00080020"))),
        f("study", (s.study ? "" : tagStr(studyInfo, "00081030")) || tagStr(meta, "00081030"))],
      [slot.view || "", f("series", `${t("ov.se")}: ${s.number} ${s.description}`), f("image", `${t("ov.im")}: ${idx + 1}/${vp.getImageIds().length}`),
        f("position", [pos != null ? `Z: ${Number(pos).toFixed(1)}` : "", thick ? `T: ${thick} mm` : ""].filter(Boolean).join("  "))],
      [slot.filter ? `${t(filterLabel(slot.filter)[0])} ${filterLabel(slot.filter)[1]}`.trim() : "",
        f("wl", `W: ${w} L: ${l}${invert ? " INV" : ""}`), f("zoom", `${t("ov.zoom")}: ${vp.getZoom().toFixed(2)}`)],
    ];
  }
  function updateOverlay(slot: Slot): void {
    const corners = ["tl", "tr", "bl", "br"];
    const text = overlayText(slot);
    slot.overlay.replaceChildren(...corners.map((c, k) => h("div", { class: "corner " + c, "data-corner": c },
      ...text[k].filter(Boolean).map((line) => h("div", {}, line)))));
    const id = vpOf(slot)?.getCurrentImageId();
    const ref = id ? refOf(id) : undefined;
    slot.keyMark.hidden = !(ref && keyImages.has(keyOf(ref)));
  }

  /** Which overlay fields show for the active viewport's modality; kept in the user's settings. */
  function overlayDialog(): void {
    const modality = seriesOf(slots[active].series)?.modality || "CT";
    const hidden = new Set(settings.overlay?.[modality] || []);
    const boxes = OVERLAY_FIELDS.map(([k, key]) => {
      const cb = h("input", { type: "checkbox", id: "ovf-" + k, "data-field": k });
      cb.checked = !hidden.has(k);
      return h("label", { class: "ovf" }, cb, h("span", {}, t(key)));
    });
    ovDlg.replaceChildren(h("form", { method: "dialog" },
      h("div", { class: "dlg-title" }, t("viewer.overlayFor", { m: modality })), h("div", { class: "ovf-grid" }, ...boxes),
      h("div", { class: "dlg-actions" },
        h("button", { class: "btn", value: "cancel", id: "ovf-cancel" }, t("dlg.cancel")),
        h("button", { class: "btn primary", value: "ok", id: "ovf-save" }, t("dlg.save")))));
    ovDlg.returnValue = "";
    ovDlg.addEventListener("close", () => {
      if (ovDlg.returnValue !== "ok") return;
      const off = OVERLAY_FIELDS.map(([k]) => k).filter((k) => !(ovDlg.querySelector("#ovf-" + k) as HTMLInputElement).checked);
      const overlay = { ...(settings.overlay || {}), [modality]: off };
      void saveSettings({ overlay });
      slots.forEach(updateOverlay);
    }, { once: true });
    ovDlg.showModal();
  }

  // ---- actions -------------------------------------------------------------
  function act(f: (vp: Types.IStackViewport) => void): void {
    const vp = vpOf(slots[active]);
    if (!vp || !vp.getImageIds().length) return;
    f(vp);
    vp.render();
  }
  /** Zoom so that the image fits / fills / fits the width or height, or shows one image pixel per screen pixel. */
  function zoomTo(mode: ZoomMode, slot = slots[active]): void {
    const vp = vpOf(slot);
    if (!vp || !vp.getImageIds().length) return;
    {
      const img = vp.getCornerstoneImage();
      const id = vp.getCurrentImageId();
      if (!img || !id) return;
      vp.setViewPresentation({ pan: [0, 0] });
      const at = (x: number, y: number) => vp.worldToCanvas(csUtils.imageToWorldCoords(id, [x, y]) as Types.Point3);
      const corners = [at(0, 0), at(img.columns, 0), at(0, img.rows), at(img.columns, img.rows)];
      const xs = corners.map((c) => c[0]), ys = corners.map((c) => c[1]);
      const bw = Math.max(...xs) - Math.min(...xs), bh = Math.max(...ys) - Math.min(...ys);
      const W = vp.element.clientWidth, H = vp.element.clientHeight;
      const [p, q] = [at(0, 0), at(1, 0)];
      const pixel = Math.hypot(q[0] - p[0], q[1] - p[1]); // one image pixel on screen now
      const factor = { fit: Math.min(W / bw, H / bh), fill: Math.max(W / bw, H / bh), width: W / bw, height: H / bh, one: 1 / pixel }[mode];
      if (Number.isFinite(factor) && factor > 0) vp.setZoom(vp.getZoom() * factor);
      vp.render();
    }
    if (slot === slots[active]) hook.zoomMode = mode;
  }
  zoomSel.addEventListener("change", () => { if (zoomSel.value) zoomTo(zoomSel.value as ZoomMode); zoomSel.value = ""; })
  function applyPreset(key: string): void {
    const custom = key.startsWith("custom:") ? settings.presets?.[Number(key.slice(7))] : undefined;
    const p = custom ? [custom.name, custom.w, custom.l] : PRESETS.find(([k]) => k === key);
    if (!p) return;
    const [, w, l] = p as [string, number, number];
    act((vp) => vp.setProperties({ voiRange: csUtils.windowLevel.toLowHighRange(w, l) }));
    hook.preset = key;
  }
  presetSel.addEventListener("change", () => { applyPreset(presetSel.value); presetSel.value = ""; });

  async function saveCustomPreset(): Promise<void> {
    const vp = vpOf(slots[active]);
    const range = vp?.getProperties().voiRange;
    if (!range) return;
    const wl = csUtils.windowLevel.toWindowLevel(range.lower, range.upper);
    const name = await ask("viewer.presetName", t("viewer.custom"));
    if (!name) return;
    const presets = (settings.presets || []).filter((p) => p.name !== name);
    presets.push({ name, w: Math.round(wl.windowWidth), l: Math.round(wl.windowCenter) });
    fillPresets();
    await saveSettings({ presets: presets.slice(-12) });
    fillPresets();
  }

  function setColormap(name: string): void {
    act((vp) => vp.setProperties({ colormap: { name } }));
    cmapSel.value = name;
    hook.colormap = name;
  }
  cmapSel.addEventListener("change", () => setColormap(cmapSel.value));

  /** A display filter on the active viewport (the picture only; measurements use the pixel values). */
  function setFilter(name: FilterName): void {
    const slot = slots[active];
    slot.filter = name;
    const canvas = vpOf(slot)?.getCanvas();
    if (canvas) canvas.style.filter = cssFilter(name);
    refreshEnhanced(slot);
    filterSel.value = name === "xray" ? "" : name;
    document.getElementById("act-xray")?.classList.toggle("on", name === "xray");
    hook.filter = name;
    updateOverlay(slot);
  }
  filterSel.addEventListener("change", () => setFilter(filterSel.value as FilterName));
  /** The X-ray enhancement, recomputed from Cornerstone's canvas whenever the image is drawn again. */
  function refreshEnhanced(slot: Slot): void {
    const vp = vpOf(slot);
    const canvas = vp?.getCanvas();
    const on = slot.filter === "xray" && !!canvas && slot.enabled;
    if (!on) { if (slot.enhanced) slot.enhanced.hidden = true; return; }
    if (!slot.enhanced || !slot.enhanced.isConnected) {
      slot.enhanced = h("canvas", { class: "enhanced" }) as HTMLCanvasElement;
      canvas!.after(slot.enhanced); // under the measurements' layer
    }
    const img = vp!.getCornerstoneImage(), id = vp!.getCurrentImageId();
    if (!img || !id) return;
    const scale = canvas!.width / Math.max(1, vp!.element.clientWidth);
    const pts = [[0, 0], [img.columns, 0], [0, img.rows], [img.columns, img.rows]]
      .map(([x, y]) => vp!.worldToCanvas(csUtils.imageToWorldCoords(id, [x, y]) as Types.Point3));
    const xs = pts.map((p) => p[0] * scale), ys = pts.map((p) => p[1] * scale);
    enhanceXray(canvas!, slot.enhanced, [Math.min(...xs), Math.min(...ys), Math.max(...xs), Math.max(...ys)]);
    slot.enhanced.hidden = false;
    hook.enhanced = (Number(hook.enhanced) || 0) + 1;
  }
  /** The viewport's image as shown (display filter included), without measurements or text. */
  function shownImage(slot: Slot): HTMLCanvasElement | undefined {
    const src = vpOf(slot)?.getCanvas();
    if (!src) return undefined;
    const out = document.createElement("canvas");
    out.width = src.width;
    out.height = src.height;
    const ctx = out.getContext("2d")!;
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, out.width, out.height);
    ctx.filter = cssFilter(slot.filter);
    ctx.drawImage(slot.filter === "xray" && slot.enhanced && !slot.enhanced.hidden ? slot.enhanced : src, 0, 0);
    ctx.filter = "none";
    return out;
  }

  // ---- linked scrolling: the other viewports go to the image nearest in patient position ----
  let linked = false;
  /** Where each viewport was when linking began: series of another frame of reference (a prior study)
   * then keep that offset, so the user lines up the same anatomy once and scrolls both. */
  const linkBase = new Map<Slot, number>();
  function setLinked(on: boolean): void {
    linked = on;
    linkBase.clear();
    if (on) for (const slot of slots) {
      const id = slot.enabled ? vpOf(slot)?.getCurrentImageId() : undefined;
      const z = id ? depthOf(id) : undefined;
      if (z !== undefined) linkBase.set(slot, z);
    }
    const b = document.getElementById("act-link")!;
    b.classList.toggle("on", on);
    b.setAttribute("aria-pressed", String(on));
    hook.linked = on;
    if (on) syncFrom(slots[active]);
  }
  /** Reference (scout) lines: the active viewport's plane drawn across the other, non-parallel viewports. */
  function setRefLines(on: boolean): void {
    refLines = on;
    const name = cst.ReferenceLinesTool.toolName;
    if (on) {
      group.setToolConfiguration(name, { sourceViewportId: slots[active].id });
      group.setToolEnabled(name);
    } else group.setToolDisabled(name);
    const b = document.getElementById("act-reflines")!;
    b.classList.toggle("on", on);
    b.setAttribute("aria-pressed", String(on));
    hook.refLines = on;
    engine.render();
  }
  const metaOf = (id: string) => wadors.metaDataManager.get(id) as unknown as DicomJson | undefined;
  function normalOf(id: string): number[] | undefined {
    const iop = metaOf(id)?.["00200037"]?.Value as number[] | undefined;
    if (iop?.length !== 6) return undefined;
    return [iop[1] * iop[5] - iop[2] * iop[4], iop[2] * iop[3] - iop[0] * iop[5], iop[0] * iop[4] - iop[1] * iop[3]];
  }
  /** Where an image lies along its normal (mm): ImagePositionPatient · (row × column), else SliceLocation. */
  function depthOf(id: string): number | undefined {
    const ipp = metaOf(id)?.["00200032"]?.Value as number[] | undefined;
    const n = normalOf(id);
    if (ipp?.length === 3 && n) return ipp[0] * n[0] + ipp[1] * n[1] + ipp[2] * n[2];
    return tagNum(metaOf(id), "00201041");
  }
  function syncFrom(src: Slot): void {
    const vp = vpOf(src);
    const id = vp?.getCurrentImageId();
    if (!linked || !id) return;
    const z = depthOf(id);
    const frame = tagStr(metaOf(id), "00200052");
    const normal = normalOf(id);
    if (z === undefined) return;
    for (const slot of slots) {
      const other = slot === src || !slot.enabled ? undefined : vpOf(slot);
      const ids = other?.getImageIds() || [];
      if (!other || !ids.length) continue;
      const same = tagStr(metaOf(ids[0]), "00200052") === frame;
      const b0 = linkBase.get(src), b1 = linkBase.get(slot);
      if (!same && (b0 === undefined || b1 === undefined)) continue;
      const target = same ? z : z - b0! + b1!;
      const n = normalOf(ids[0]);
      if (normal && n && Math.abs(normal[0] * n[0] + normal[1] * n[1] + normal[2] * n[2]) < 0.99) continue; // another orientation
      let best = -1, gap = Infinity;
      ids.forEach((x, k) => {
        const d = depthOf(x);
        if (d !== undefined && Math.abs(d - target) < gap) { gap = Math.abs(d - target); best = k; }
      });
      if (best >= 0 && best !== other.getCurrentImageIdIndex()) void other.setImageIdIndex(best);
    }
  }

  // ---- 3D cursor: a point clicked in one viewport; every series of the same frame of reference
  // goes to its image nearest that point and marks it ----
  let cursorOn = false;
  let cursorAt: number[] | undefined; // patient coordinates (mm)
  let cursorFrame = "";
  function setCursor(on: boolean): void {
    cursorOn = on;
    const b = document.getElementById("act-cursor")!;
    b.classList.toggle("on", on);
    b.setAttribute("aria-pressed", String(on));
    grid.classList.toggle("cursor-mode", on);
    if (!on) { cursorAt = undefined; slots.forEach((x) => { x.cursorMark.hidden = true; }); }
    hook.cursor = on;
  }
  const dot = (a: number[], b: number[]) => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
  function placeCursor(i: number, clientX: number, clientY: number): void {
    const vp = vpOf(slots[i]);
    const id = vp?.getCurrentImageId();
    if (!vp || !id) return;
    const r = vp.element.getBoundingClientRect();
    cursorAt = [...vp.canvasToWorld([clientX - r.left, clientY - r.top] as Types.Point2)];
    cursorFrame = tagStr(metaOf(id), "00200052");
    hook.cursorAt = cursorAt;
    for (const slot of slots) {
      const other = slot.enabled && slot !== slots[i] ? vpOf(slot) : undefined;
      const ids = other?.getImageIds() || [];
      if (!other || !ids.length || !cursorFrame || tagStr(metaOf(ids[0]), "00200052") !== cursorFrame) continue;
      let best = -1, gap = Infinity;
      ids.forEach((x, k) => { // the image whose plane passes nearest the point
        const ipp = metaOf(x)?.["00200032"]?.Value as number[] | undefined, n = normalOf(x);
        if (ipp?.length !== 3 || !n) return;
        const d = Math.abs(dot([cursorAt![0] - ipp[0], cursorAt![1] - ipp[1], cursorAt![2] - ipp[2]], n));
        if (d < gap) { gap = d; best = k; }
      });
      if (best >= 0 && best !== other.getCurrentImageIdIndex()) void other.setImageIdIndex(best);
    }
    slots.forEach(showCursor);
  }
  /** The cursor's mark on ``slot``'s image when the point lies on (within half a slice of) it. */
  function showCursor(slot: Slot): void {
    const vp = slot.enabled ? vpOf(slot) : undefined;
    const id = vp?.getCurrentImageId();
    slot.cursorMark.hidden = true;
    if (!cursorOn || !cursorAt || !vp || !id || tagStr(metaOf(id), "00200052") !== cursorFrame) return;
    const ipp = metaOf(id)?.["00200032"]?.Value as number[] | undefined, n = normalOf(id);
    if (ipp?.length !== 3 || !n) return;
    const d = dot([cursorAt[0] - ipp[0], cursorAt[1] - ipp[1], cursorAt[2] - ipp[2]], n);
    const half = Math.max(0.5, (tagNum(metaOf(id), "00180050") || 1) / 2 + 0.01);
    if (Math.abs(d) > half) return;
    const onPlane = [cursorAt[0] - d * n[0], cursorAt[1] - d * n[1], cursorAt[2] - d * n[2]] as Types.Point3;
    const [x, y] = vp.worldToCanvas(onPlane);
    slot.cursorMark.style.left = `${x}px`;
    slot.cursorMark.style.top = `${y}px`;
    slot.cursorMark.hidden = false;
  }

  // ---- mammography hanging: right breast on the left, left breast on the right, chest walls back
  // to back (flipped as the images' Patient Orientation needs), CC above MLO; zoom and pan mirrored ----
  interface MammoView { series: string; id: string; side: string; view: string; flip: boolean; }
  async function mammoViews(): Promise<MammoView[]> {
    const out: MammoView[] = [];
    for (const s of seriesList.filter((x) => x.modality === "MG")) {
      for (const id of await stackOf(s.uid)) {
        const m = metaOf(id);
        const side = (tagStr(m, "00200062") || tagStr(m, "00200060")).toUpperCase();
        if (side !== "R" && side !== "L") continue;
        const rows = String(m?.["00200020"]?.Value?.[0] || "").toUpperCase(); // where the rows run to
        // on screen the right breast's chest wall (posterior) is on its right, the left breast's on its left
        out.push({ series: s.uid, id, side, view: tagStr(m, "00185101").toUpperCase(), flip: side === "R" ? rows.startsWith("A") : rows.startsWith("P") });
      }
    }
    return out;
  }
  let mammoPairs: Array<[Slot, Slot]> = [];
  async function hangMammo(): Promise<boolean> {
    const views = await mammoViews();
    const order = ["CC", "MLO"].filter((v) => views.some((x) => x.view === v));
    if (!order.length) order.push(views[0]?.view ?? "");
    if (!views.some((x) => x.side === "R") || !views.some((x) => x.side === "L")) return false;
    setLayout(`${order.length}x2`);
    const shown: Array<Promise<void>> = [];
    order.forEach((view, r) => ["R", "L"].forEach((side, c) => {
      const v = views.find((x) => x.side === side && x.view === view);
      if (v) shown.push(showView(r * 2 + c, v));
    }));
    await Promise.all(shown);
    mammoPairs = order.map((_, r) => [slots[r * 2], slots[r * 2 + 1]] as [Slot, Slot]);
    hook.mammo = order.flatMap((view) => ["R", "L"].map((side) => `${side} ${view}`));
    return true;
  }
  async function showView(i: number, v: MammoView): Promise<void> {
    const slot = slots[i];
    const vp = vpOf(slot);
    if (!vp) return;
    const gen = (slot.gen = (slot.gen || 0) + 1);
    slot.series = v.series;
    slot.view = `${v.side} ${v.view}`.trim();
    slot.el.parentElement!.classList.add("filled");
    await vp.setStack([v.id], 0);
    if (slot.gen !== gen) return;
    vp.setViewPresentation({ flipHorizontal: v.flip });
    zoomTo("fit", slot);
    // against the chest wall: a right breast's image to its viewport's right edge, a left one's to the left
    const img = vp.getCornerstoneImage();
    const xs = [[0, 0], [img.columns, img.rows]].map(([x, y]) => vp.worldToCanvas(csUtils.imageToWorldCoords(v.id, [x, y]) as Types.Point3)[0]);
    const gap = v.side === "R" ? vp.element.clientWidth - Math.max(...xs) : -Math.min(...xs);
    if (Math.abs(gap) > 0.5) {
      const cy = vp.element.clientHeight / 2;
      const a = vp.canvasToWorld([0, cy] as Types.Point2), b = vp.canvasToWorld([gap, cy] as Types.Point2);
      const { focalPoint, position } = vp.getCamera();
      const d = [0, 1, 2].map((k) => b[k] - a[k]);
      vp.setCamera({ focalPoint: focalPoint!.map((p, k) => p - d[k]) as Types.Point3, position: position!.map((p, k) => p - d[k]) as Types.Point3 });
    }
    vp.render();
    updateOverlay(slot);
  }
  let mirroring = false;
  /** Zoom and pan of one breast's view copied, mirrored, to the other breast's. */
  function mirrorCamera(slot: Slot): void {
    const pair = mirroring ? undefined : mammoPairs.find((p) => p.includes(slot));
    if (!pair) return;
    const other = pair[0] === slot ? pair[1] : pair[0];
    const a = vpOf(slot), b = vpOf(other);
    if (!a || !b || !other.enabled) return;
    const { zoom, pan } = a.getViewPresentation();
    mirroring = true;
    try {
      b.setViewPresentation({ zoom, pan: pan ? [-pan[0], pan[1]] : undefined });
      b.render();
    } finally {
      mirroring = false;
    }
  }

  // ---- hanging protocols "as you see it" ----
  /** What a hanging protocol is for: the study's (first image series') modality and body part. */
  function hangingKey(): string {
    const s = seriesList[0];
    return s ? `${s.modality}:${(s.bodyPart || "").toUpperCase()}` : "";
  }
  async function saveHanging(): Promise<void> {
    const key = hangingKey();
    const [rows, cols] = parseLayout(String(hook.layout)) || [1, 1];
    const series = slots.slice(0, rows * cols).map((slot) => {
      const x = seriesList.find((s) => s.uid === slot.series);
      return x ? { modality: x.modality, description: x.description, number: x.number } : null;
    });
    await saveSettings({ hanging: { ...(settings.hanging || {}), [key]: { layout: String(hook.layout), series } } });
    status("viewer.hangingSaved", { k: key.replace(/:$/, "") });
  }

  let cine = false;
  /** A multi-frame run's own frame rate (Cine Rate, else 1000 / Frame Time), if it has one. */
  function frameRate(slot: Slot): number | undefined {
    const id = vpOf(slot)?.getImageIds()[0];
    const meta = id ? metaOf(id) : undefined;
    if ((tagNum(meta, "00280008") ?? 1) <= 1) return undefined;
    const rate = tagNum(meta, "00180040") || (tagNum(meta, "00181063") ? 1000 / tagNum(meta, "00181063")! : undefined);
    return rate && rate > 0 ? Math.min(60, Math.round(rate)) : undefined;
  }
  function toggleCine(): void {
    const slot = slots[active];
    cine = !cine;
    const rate = frameRate(slot);
    if (cine && rate && !fpsTouched) fps.value = String(rate);
    hook.cine = cine;
    if (cine) cst.utilities.cine.playClip(slot.el, { framesPerSecond: Number(fps.value) || 15, loop: true });
    else cst.utilities.cine.stopClip(slot.el);
    const b = document.getElementById("act-cine")!;
    b.dataset.i18n = cine ? "viewer.stop" : "viewer.cine";
    b.textContent = t(b.dataset.i18n);
    b.classList.toggle("on", cine);
  }
  let fpsTouched = false; // the user's own frame rate wins over a run's recorded one
  fps.addEventListener("change", () => { fpsTouched = true; if (cine) { toggleCine(); toggleCine(); } });

  function scroll(delta: number): void {
    const vp = vpOf(slots[active]);
    if (vp) csUtils.scroll(vp, { delta });
  }

  /** The viewport as seen: the image (with its display filter), the measurements and the overlay text. */
  async function renderSlot(slot: Slot): Promise<HTMLCanvasElement> {
    const out = shownImage(slot)!;
    const ctx = out.getContext("2d")!;
    const svg = slot.el.querySelector("svg");
    if (svg) { // burn in the measurements
      try {
        const clone = svg.cloneNode(true) as SVGSVGElement;
        const r = slot.el.getBoundingClientRect();
        clone.setAttribute("width", String(r.width));
        clone.setAttribute("height", String(r.height));
        clone.setAttribute("xmlns", "http://www.w3.org/2000/svg");
        const url = URL.createObjectURL(new Blob([new XMLSerializer().serializeToString(clone)], { type: "image/svg+xml" }));
        const img = new Image();
        await new Promise((ok, fail) => { img.onload = ok; img.onerror = fail; img.src = url; });
        ctx.drawImage(img, 0, 0, out.width, out.height);
        URL.revokeObjectURL(url);
      } catch {
        /* the image alone */
      }
    }
    const scale = out.width / Math.max(1, slot.el.clientWidth);
    ctx.font = `${Math.round(12 * scale)}px sans-serif`;
    ctx.fillStyle = "#e8e8e8";
    const text = overlayText(slot);
    const lh = 15 * scale, pad = 6 * scale;
    text.forEach((lines, k) => {
      const right = k % 2 === 1, bottom = k >= 2;
      ctx.textAlign = right ? "right" : "left";
      lines.filter(Boolean).forEach((line, n) => {
        const y = bottom ? out.height - pad - (lines.length - 1 - n) * lh : pad + (n + 1) * lh - 3 * scale;
        ctx.fillText(line, right ? out.width - pad : pad, y);
      });
    });
    return out;
  }
  const fileBase = (slot: Slot) => {
    const s = seriesOf(slot.series);
    return `radcloud-${(tagStr(studyInfo, "00100020") || "study").replace(/[^\w.-]+/g, "_")}-se${s?.number ?? ""}`;
  };
  async function exportImage(): Promise<void> {
    const slot = slots[active];
    const vp = vpOf(slot);
    if (!vp || !vp.getImageIds().length) return;
    const format = exportSel.value as ExportFormat;
    const blob = await encode(await renderSlot(slot), format);
    download(blob, `${fileBase(slot)}-${vp.getCurrentImageIdIndex() + 1}.${EXTENSION[format]}`);
  }
  /** Every image of the active viewport's series, as shown (measurements, overlay, filter), in one ZIP. */
  async function exportSeries(): Promise<void> {
    const slot = slots[active];
    const vp = vpOf(slot);
    if (!vp || !vp.getImageIds().length || hook.exporting) return;
    hook.exporting = true;
    if (cine) toggleCine();
    const format = exportSel.value as ExportFormat;
    const start = vp.getCurrentImageIdIndex();
    const n = vp.getImageIds().length;
    const files: ZipEntry[] = [];
    const width = String(n).length;
    try {
      for (let k = 0; k < n; k++) {
        status("viewer.exporting", { k: k + 1, n });
        const rendered = new Promise((ok) => slot.el.addEventListener(Enums.Events.IMAGE_RENDERED, ok, { once: true }));
        if (k === vp.getCurrentImageIdIndex()) vp.render();
        else await vp.setImageIdIndex(k);
        await rendered;
        await new Promise((ok) => requestAnimationFrame(() => requestAnimationFrame(ok))); // the measurements' layer
        updateOverlay(slot);
        const name = `${fileBase(slot)}-${String(k + 1).padStart(width, "0")}.${EXTENSION[format]}`;
        files.push(await zipEntry(name, await encode(await renderSlot(slot), format)));
      }
      download(zip(files), `${fileBase(slot)}-${EXTENSION[format]}.zip`);
      status("viewer.exported", { n });
    } finally {
      await vp.setImageIdIndex(start);
      hook.exporting = false;
    }
  }

  // ---- measurements and key images kept in the study (DICOM GSPS + KOS) ------
  const keyImages = new Set<string>(); // "sop/frame"
  const keyRefs = new Map<string, ImageRef>();
  let savedPrint = fingerprint([], []);
  let saveRunning = false;
  function currentState(): { annotations: SavedAnnotation[]; keyImages: ImageRef[] } {
    const annotations: SavedAnnotation[] = [];
    for (const a of cst.annotation.state.getAllAnnotations()) {
      if (!SAVED_TOOLS.has(a.metadata?.toolName || "") || !inThisStudy(a.metadata?.referencedImageId || "")) continue;
      const r = a.metadata?.toolName === CTRTool.toolName ? ctrOf(a) : undefined;
      const saved = toSaved(a, r !== undefined ? { ctr: r } : {});
      if (saved) annotations.push(saved);
    }
    return { annotations, keyImages: [...keyImages].map((k) => keyRefs.get(k)!).filter(Boolean) };
  }
  const dirty = () => fingerprint(currentState().annotations, keyImages) !== savedPrint;
  let changeQueued = false;
  function markChanged(): void { // the Save button shows whether there is something to save
    if (changeQueued) return;
    changeQueued = true;
    requestAnimationFrame(() => {
      changeQueued = false;
      const b = document.getElementById("act-save");
      const d = dirty();
      b?.classList.toggle("dirty", d);
      hook.dirty = d;
    });
  }
  for (const ev of [TE.Events.ANNOTATION_COMPLETED, TE.Events.ANNOTATION_REMOVED, TE.Events.ANNOTATION_MODIFIED]) {
    eventTarget.addEventListener(ev, (e: Event) => {
      const change = (e as CustomEvent<{ changeType?: string }>).detail?.changeType;
      if (change !== "StatsUpdated") markChanged();
    });
  }
  function toggleKey(): void {
    const slot = slots[active];
    const id = vpOf(slot)?.getCurrentImageId();
    const ref = id && inThisStudy(id) ? refOf(id) : undefined; // key images of this study only
    if (!ref) return;
    const k = keyOf(ref);
    if (keyImages.has(k)) keyImages.delete(k);
    else { keyImages.add(k); keyRefs.set(k, ref); }
    slots.forEach(updateOverlay);
    document.getElementById("act-key")?.classList.toggle("on", keyImages.has(k));
    hook.keyImages = [...keyImages];
    markChanged();
  }
  function status(key: string, args: Record<string, string | number> = {}, error = false): void {
    saveStatus.textContent = t(key, args);
    saveStatus.classList.toggle("error", error);
  }
  async function saveAnnotations(): Promise<boolean> {
    if (saveRunning) return false;
    saveRunning = true;
    const state = currentState();
    const print = fingerprint(state.annotations, keyImages);
    status("viewer.saving");
    try {
      const r = await saveState(study, state);
      savedPrint = print;
      hook.savedState = { ...r, annotations: state.annotations, keyImages: state.keyImages };
      status("viewer.savedN", { n: state.annotations.length, k: state.keyImages.length });
      return true;
    } catch (e) {
      status("viewer.saveFailed", { e: (e as Error).message }, true);
      return false;
    } finally {
      saveRunning = false;
      markChanged();
    }
  }
  /** The user's last saved state of this study: measurements back on their images, key images marked. */
  async function restoreSaved(): Promise<void> {
    let state;
    try {
      state = await loadState(study);
    } catch (e) {
      status("viewer.loadFailed", { e: (e as Error).message }, true);
      return;
    }
    const known = new Set(seriesList.map((x) => x.uid));
    for (const series of new Set(state.annotations.map((a) => a.image.series))) if (known.has(series)) await stackOf(series);
    for (const a of state.annotations) {
      if (!known.has(a.image.series)) continue;
      const imageId = idOf(a.image);
      const ann = fromSaved(a, imageId);
      cst.annotation.state.addAnnotation(ann, ann.metadata?.FrameOfReferenceUID ?? ""); // grouped by frame of reference
    }
    for (const r of state.keyImages) { keyImages.add(keyOf(r)); keyRefs.set(keyOf(r), r); }
    hook.keyImages = [...keyImages];
    hook.restored = state.annotations.length;
    if (state.saved) status("viewer.restored", { n: state.annotations.length, k: state.keyImages.length });
    engine.render();
    cst.utilities.triggerAnnotationRenderForViewportIds(slots.filter((x) => x.enabled).map((x) => x.id));
    slots.forEach(updateOverlay);
    savedPrint = fingerprint(currentState().annotations, keyImages);
    markChanged();
  }
  window.addEventListener("beforeunload", (e) => { if (dirty()) e.preventDefault(); });
  back.addEventListener("click", (e) => {
    if (!dirty()) return;
    e.preventDefault();
    leaveDlg.returnValue = "";
    leaveDlg.showModal();
    leaveDlg.addEventListener("close", async () => {
      const how = leaveDlg.returnValue;
      if (how === "save" && !(await saveAnnotations())) return;
      if (how === "save" || how === "discard") { savedPrint = fingerprint(currentState().annotations, keyImages); location.assign("/"); }
    }, { once: true });
  });

  // ---- keyboard ------------------------------------------------------------
  const keyTools: Record<string, string> = { w: "wl", p: "pan", z: "zoom", s: "scroll", l: "length", a: "angle", e: "ellipse", o: "rect", c: "probe",
    b: "cobb", y: "polyline", d: "freehand", j: "ctr", t: "arrow", m: "magnify" };
  // each button shows its hot key (in the menus) and names it to assistive technology
  const keyActions: Record<string, string> = { R: "reset", I: "invert", H: "flipH", V: "flipV", N: "link", X: "reflines", K: "key", Q: "cursor", Space: "cine" };
  for (const [k, id] of Object.entries(keyTools)) toolButtons.get(id)?.setAttribute("data-key", k.toUpperCase());
  for (const [k, id] of Object.entries(keyActions)) actionButtons.get(id)?.setAttribute("data-key", k);
  toolbar.querySelectorAll<HTMLElement>("[data-key]").forEach((b) => b.setAttribute("aria-keyshortcuts", b.dataset.key!));
  document.addEventListener("keydown", (e) => {
    const target = e.target as HTMLElement;
    if (e.ctrlKey || e.metaKey || e.altKey || target.matches("input, select, textarea") || target.closest("dialog")) return;
    const k = e.key;
    if (/^[1-5]$/.test(k)) applyPreset(PRESETS[Number(k) - 1][0]);
    else if (k === "ArrowDown" || k === "ArrowRight" || k === "PageDown") scroll(k === "PageDown" ? 10 : 1);
    else if (k === "ArrowUp" || k === "ArrowLeft" || k === "PageUp") scroll(k === "PageUp" ? -10 : -1);
    else if (k === "Home" || k === "End") act((vp) => void vp.setImageIdIndex(k === "Home" ? 0 : vp.getImageIds().length - 1));
    else if (k === "r") actions.find(([id]) => id === "reset")![2]();
    else if (k === "i") actions.find(([id]) => id === "invert")![2]();
    else if (k === "h") actions.find(([id]) => id === "flipH")![2]();
    else if (k === "v") actions.find(([id]) => id === "flipV")![2]();
    else if (k === "]" || k === "[") act((vp) => vp.setViewPresentation({ rotation: (vp.getViewPresentation().rotation ?? 0) + (k === "]" ? 90 : 270) }));
    else if (k === "f") zoomTo("fit");
    else if (k === " ") toggleCine();
    else if (k === "n") setLinked(!linked);
    else if (k === "x") setRefLines(!refLines);
    else if (k === "g") setColormap(COLORMAPS[0][0]);
    else if (k === "k") toggleKey();
    else if (k === "q") setCursor(!cursorOn);
    else if (keyTools[k]) selectTool(keyTools[k], true);
    else return;
    e.preventDefault();
  });
  window.addEventListener("resize", () => engine.resize(true, true));

  // ---- go ------------------------------------------------------------------
  const wanted = params.get("series");
  // the user's hanging protocol for this kind of study, unless the link names a series or layout
  const hang = !wanted && !params.get("layout") && !phone() ? settings.hanging?.[hangingKey()] : undefined;
  if (hang && parseLayout(hang.layout)) {
    const used = new Set<string>();
    hang.series.forEach((want, i) => {
      const m = want && (seriesList.find((x) => !used.has(x.uid) && x.modality === want.modality && x.description === want.description)
        || seriesList.find((x) => !used.has(x.uid) && x.number === want.number));
      if (m && slots[i]) { slots[i].series = m.uid; used.add(m.uid); }
    });
    hook.hanging = hangingKey();
  }
  const first = seriesList.find((s) => s.uid === (wanted || slots[0].series)) || seriesList[0];
  const mammo = !hang && !wanted && !params.get("layout") && !phone() && first?.modality === "MG";
  if (first && loadTimes.previewSeries && loadTimes.previewSeries !== first.uid) losslessShown(); // a hanging protocol chose another
  const firstImage = new Promise<void>((ok) => {
    slots[0].el.addEventListener(Enums.Events.IMAGE_RENDERED, () => ok(), { once: true });
  });
  setLayout(phone() ? "1x1" : (params.get("layout") || hang?.layout || settings.layout || "1x1"));
  setActive(0);
  if (!(mammo && (await hangMammo())) && first) await show(0, first.uid);
  await firstImage;
  hook.firstImageMs = Math.round(performance.now() - started);
  hook.firstImageAtMs = loadTimes.losslessMs ?? Math.round(performance.now()); // since navigation, like the preview's
  hook.load = loadTimes;
  await restoreSaved();
  await loadPriors().catch(() => undefined); // priors are a convenience
  hook.sinceNavigationMs = Math.round(performance.now());
  hook.engine = engine;
  hook.slots = slots;
  hook.annotations = () => cst.annotation.state.getAllAnnotations().map((a) => ({
    tool: a.metadata?.toolName, stats: (a.data as { cachedStats?: unknown }).cachedStats, ref: a.metadata?.referencedImageId || "" }));
  hook.viewport = (i = 0) => vpOf(slots[i]);
  hook.imageToWorld = csUtils.imageToWorldCoords;
  hook.annotationsRaw = () => cst.annotation.state.getAllAnnotations().map((a) => a.data.handles?.points);
  hook.settings = () => settings;
  hook.ctr = () => ctrAnnotations().map(ctrOf).filter((x) => x !== undefined);
  hook.state = currentState;
  hook.shownImage = (i = 0) => shownImage(slots[i]);

  hook.save = saveAnnotations;
  hook.isDirty = dirty;
  hook.linked = linked;
  hook.status = "ready";
  document.body.dataset.viewerReady = "1";
}
