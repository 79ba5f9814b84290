// The viewer: series panel, 1×1 / 1×2 / 2×2 StackViewports over WADO-RS, 2D tools, overlay, cine, PNG export.

import { init as csInit, RenderingEngine, Enums, eventTarget, utilities as csUtils, type Types } from "@cornerstonejs/core";
import * as cst from "@cornerstonejs/tools";
import { init as loaderInit, wadors } from "@cornerstonejs/dicom-image-loader";
import { getJSON, h, signIn, tagStr, tagNum, fmtDate, type DicomJson } from "./api";
import { t, onLangChange, translate } from "./i18n";

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
const LAYOUTS: Record<string, [number, number]> = { "1x1": [1, 1], "1x2": [1, 2], "2x2": [2, 2] };

interface Series { uid: string; number: number; modality: string; description: string; count: number; }
interface Slot { el: HTMLDivElement; overlay: HTMLDivElement; id: string; series?: string; enabled: boolean; }

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
    const all = await getJSON<{ viewer?: ViewerSettings }>("/api/me/settings");
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
  const back = h("a", { class: "btn tool", href: "/", "data-i18n": "viewer.back" }, t("viewer.back"));
  const togglePanel = btn("toggle-series", "viewer.series");
  const layoutSel = h("select", { id: "layout", "aria-label": "layout" });
  for (const k of Object.keys(LAYOUTS)) layoutSel.append(h("option", { value: k }, k.replace("x", "×")));
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
  toolbar.append(back, togglePanel, layoutSel);
  const toolButtons = new Map<string, HTMLButtonElement>();
  for (const [id, , key] of TOOLS) {
    const b = btn("tool-" + id, key) as HTMLButtonElement;
    b.addEventListener("click", () => selectTool(id, true));
    toolButtons.set(id, b);
    toolbar.append(b);
  }
  const actions: Array<[string, string, () => void]> = [
    ["fit", "viewer.fit", () => act((vp) => vp.setViewPresentation({ zoom: 1, pan: [0, 0] }))],
    ["one", "viewer.one", () => act((vp) => vp.setZoom(oneToOne(vp)))],
    ["rotate", "viewer.rotate", () => act((vp) => vp.setViewPresentation({ rotation: (vp.getViewPresentation().rotation ?? 0) + 90 }))],
    ["flipH", "viewer.flipH", () => act((vp) => vp.setViewPresentation({ flipHorizontal: !vp.getViewPresentation().flipHorizontal }))],
    ["flipV", "viewer.flipV", () => act((vp) => vp.setViewPresentation({ flipVertical: !vp.getViewPresentation().flipVertical }))],
    ["invert", "viewer.invert", () => act((vp) => vp.setProperties({ invert: !vp.getProperties().invert }))],
    ["reset", "viewer.reset", () => { act((vp) => { vp.resetCamera(); vp.resetProperties(); }); cmapSel.value = COLORMAPS[0][0]; hook.colormap = undefined; }],
    ["clear", "viewer.clearMeasure", () => { cst.annotation.state.removeAllAnnotations(); engine.render(); }],
    ["cine", "viewer.cine", () => toggleCine()],
    ["savepreset", "viewer.savePreset", () => void saveCustomPreset()],
    ["link", "viewer.link", () => setLinked(!linked)],
    ["reflines", "viewer.refLines", () => setRefLines(!refLines)],
    ["overlay", "viewer.overlaySettings", () => overlayDialog()],
  ];
  toolbar.append(presetSel, cmapSel, powerSel);
  for (const [id, key, f] of actions) {
    const b = btn("act-" + id, key);
    b.addEventListener("click", f);
    toolbar.append(b);
  }
  toolbar.append(h("label", { class: "fps" }, fps, h("span", { "data-i18n": "viewer.fps" }, t("viewer.fps"))));
  const exportBtn = btn("act-export", "viewer.export");
  exportBtn.addEventListener("click", () => void exportPng());
  toolbar.append(exportBtn);

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
  main.replaceChildren(h("section", { class: "viewer" }, toolbar, h("div", { class: "viewer-body" }, panel, grid), info), askDlg, ovDlg);
  if (phone()) panel.classList.add("strip");
  togglePanel.addEventListener("click", () => { panel.hidden = !panel.hidden; requestAnimationFrame(() => engine.resize(true, true)); });
  onLangChange(() => { translate(main); fillPresets(); slots.forEach(updateOverlay); });

  const slots: Slot[] = [0, 1, 2, 3].map((i) => {
    const el = h("div", { class: "vp", id: "vp" + i, "data-slot": String(i), tabindex: "0" }) as HTMLDivElement;
    el.addEventListener("contextmenu", (e) => e.preventDefault());
    const overlay = h("div", { class: "overlay" }) as HTMLDivElement;
    const cell = h("div", { class: "cell", "data-slot": String(i) }, el, overlay, h("div", { class: "empty", "data-i18n": "viewer.empty" }, t("viewer.empty")));
    cell.addEventListener("pointerdown", () => setActive(i));
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
    return { el, overlay, id: "vp" + i, enabled: false };
  });
  let active = 0;
  let refLines = false;

  // ---- Cornerstone ---------------------------------------------------------
  await csInit();
  loaderInit({
    maxWebWorkers: Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 4)),
    errorInterceptor: (error) => { if (error.status === 401) signIn(); }, // the session ran out
  });
  cst.init();
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
      getJSON<DicomJson[]>(`/dicom-web/studies?StudyInstanceUID=${study}&includefield=00081030`, "application/dicom+json"),
      getJSON<DicomJson[]>(`/dicom-web/studies/${study}/series`, "application/dicom+json"),
    ]);
    studyInfo = studies[0] || {};
    for (const s of series) {
      seriesList.push({ uid: tagStr(s, "0020000E"), number: tagNum(s, "00200011") ?? 0, modality: tagStr(s, "00080060"),
        description: tagStr(s, "0008103E"), count: tagNum(s, "00201209") ?? 0 });
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

  function stackOf(series: string): Promise<string[]> {
    let p = stacks.get(series);
    if (!p) {
      p = (async () => {
        const meta = await getJSON<DicomJson[]>(`/dicom-web/studies/${study}/series/${series}/metadata`, "application/dicom+json");
        const key = (m: DicomJson) => tagNum(m, "00200013") ?? 0;
        meta.sort((a, b) => key(a) - key(b));
        const ids: string[] = [];
        for (const m of meta) {
          const sop = tagStr(m, "00080018");
          const frames = tagNum(m, "00280008") ?? 1;
          for (let f = 1; f <= frames; f++) {
            const id = `wadors:${location.origin}/dicom-web/studies/${study}/series/${series}/instances/${sop}/frames/${f}`;
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

  async function show(i: number, series: string): Promise<void> {
    const slot = slots[i];
    if (!slot.enabled) return;
    cst.utilities.cine.stopClip(slot.el);
    slot.series = series;
    slot.el.parentElement!.classList.add("filled");
    panel.querySelectorAll(".series").forEach((b) => b.classList.toggle("shown", slots.some((s) => s.enabled && s.series === (b as HTMLElement).dataset.series)));
    const ids = await stackOf(series);
    const vp = vpOf(slot);
    if (!vp || slot.series !== series) return;
    await vp.setStack(ids, 0);
    vp.render();
    cst.utilities.stackPrefetch.enable(slot.el); // the rest, nearest to the shown image first
    updateOverlay(slot);
  }

  function enable(slot: Slot): void {
    if (slot.enabled) return;
    engine.enableElement({ viewportId: slot.id, type: Enums.ViewportType.STACK, element: slot.el,
      defaultOptions: { background: [0, 0, 0] as Types.Point3 } });
    group.addViewport(slot.id, ENGINE);
    slot.enabled = true;
    slot.el.addEventListener(Enums.Events.IMAGE_RENDERED, () => scheduleOverlay(slot));
    slot.el.addEventListener(Enums.Events.STACK_NEW_IMAGE, () => { if (slots[active] === slot) syncFrom(slot); });
  }

  function setLayout(name: string, save = false): void {
    if (!LAYOUTS[name]) name = "1x1";
    const [rows, cols] = LAYOUTS[name];
    if (save && settings.layout !== name) void saveSettings({ layout: name });
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
  layoutSel.addEventListener("change", () => setLayout(layoutSel.value, true));

  function setActive(i: number): void {
    const changed = active !== i;
    active = i;
    if (changed && refLines) group.setToolConfiguration(cst.ReferenceLinesTool.toolName, { sourceViewportId: slots[i].id });
    slots.forEach((s, k) => s.el.parentElement!.classList.toggle("active", k === i));
  }

  // ---- overlay -------------------------------------------------------------
  const pending = new Set<Slot>();
  function scheduleOverlay(slot: Slot): void {
    if (!pending.size) requestAnimationFrame(() => { pending.forEach(updateOverlay); pending.clear(); });
    pending.add(slot);
  }
  function overlayText(slot: Slot): string[][] {
    const vp = vpOf(slot);
    const s = seriesList.find((x) => x.uid === slot.series);
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
      [f("institution", tagStr(meta, "00080080")), f("date", fmtDate(tagStr(meta, "00080020"))),
        f("study", tagStr(studyInfo, "00081030") || tagStr(meta, "00081030"))],
      [f("series", `${t("ov.se")}: ${s.number} ${s.description}`), f("image", `${t("ov.im")}: ${idx + 1}/${vp.getImageIds().length}`),
        f("position", [pos != null ? `Z: ${Number(pos).toFixed(1)}` : "", thick ? `T: ${thick} mm` : ""].filter(Boolean).join("  "))],
      [f("wl", `W: ${w} L: ${l}${invert ? " INV" : ""}`), f("zoom", `${t("ov.zoom")}: ${vp.getZoom().toFixed(2)}`)],
    ];
  }
  function updateOverlay(slot: Slot): void {
    const corners = ["tl", "tr", "bl", "br"];
    const text = overlayText(slot);
    slot.overlay.replaceChildren(...corners.map((c, k) => h("div", { class: "corner " + c, "data-corner": c },
      ...text[k].filter(Boolean).map((line) => h("div", {}, line)))));
  }

  /** Which overlay fields show for the active viewport's modality; kept in the user's settings. */
  function overlayDialog(): void {
    const modality = seriesList.find((x) => x.uid === slots[active].series)?.modality || "CT";
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
  function oneToOne(vp: Types.IStackViewport): number {
    const img = vp.getCornerstoneImage();
    const rect = vp.element.getBoundingClientRect();
    if (!img) return 1;
    const cs = img.columnPixelSpacing || 1, rs = img.rowPixelSpacing || 1;
    const fit = Math.min(rect.width / (img.columns * cs), rect.height / (img.rows * rs)) * Math.min(cs, rs);
    return 1 / fit;
  }
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

  // ---- linked scrolling: the other viewports go to the image nearest in patient position ----
  let linked = false;
  function setLinked(on: boolean): void {
    linked = on;
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
      if (!other || !ids.length || tagStr(metaOf(ids[0]), "00200052") !== frame) continue;
      const n = normalOf(ids[0]);
      if (normal && n && Math.abs(normal[0] * n[0] + normal[1] * n[1] + normal[2] * n[2]) < 0.99) continue; // another orientation
      let best = -1, gap = Infinity;
      ids.forEach((x, k) => {
        const d = depthOf(x);
        if (d !== undefined && Math.abs(d - z) < gap) { gap = Math.abs(d - z); best = k; }
      });
      if (best >= 0 && best !== other.getCurrentImageIdIndex()) void other.setImageIdIndex(best);
    }
  }

  let cine = false;
  function toggleCine(): void {
    const slot = slots[active];
    cine = !cine;
    if (cine) cst.utilities.cine.playClip(slot.el, { framesPerSecond: Number(fps.value) || 15, loop: true });
    else cst.utilities.cine.stopClip(slot.el);
    const b = document.getElementById("act-cine")!;
    b.dataset.i18n = cine ? "viewer.stop" : "viewer.cine";
    b.textContent = t(b.dataset.i18n);
    b.classList.toggle("on", cine);
  }
  fps.addEventListener("change", () => { if (cine) { toggleCine(); toggleCine(); } });

  function scroll(delta: number): void {
    const vp = vpOf(slots[active]);
    if (vp) csUtils.scroll(vp, { delta });
  }

  async function exportPng(): Promise<void> {
    const slot = slots[active];
    const vp = vpOf(slot);
    if (!vp) return;
    const src = vp.getCanvas();
    const out = document.createElement("canvas");
    out.width = src.width;
    out.height = src.height;
    const ctx = out.getContext("2d")!;
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, out.width, out.height);
    ctx.drawImage(src, 0, 0);
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
    const blob = await new Promise<Blob | null>((ok) => out.toBlob(ok, "image/png"));
    if (!blob) return;
    const a = h("a", { href: URL.createObjectURL(blob), download: `radcloud-${slot.series?.slice(-8) || "image"}-${vp.getCurrentImageIdIndex() + 1}.png` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(a.href), 10000);
  }

  // ---- keyboard ------------------------------------------------------------
  const keyTools: Record<string, string> = { w: "wl", p: "pan", z: "zoom", s: "scroll", l: "length", a: "angle", e: "ellipse", o: "rect", c: "probe",
    b: "cobb", y: "polyline", d: "freehand", k: "ctr", t: "arrow", m: "magnify" };
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
    else if (k === "f") actions[0][2]();
    else if (k === " ") toggleCine();
    else if (k === "n") setLinked(!linked);
    else if (k === "x") setRefLines(!refLines);
    else if (k === "g") setColormap(COLORMAPS[0][0]);
    else if (keyTools[k]) selectTool(keyTools[k], true);
    else return;
    e.preventDefault();
  });
  window.addEventListener("resize", () => engine.resize(true, true));

  // ---- go ------------------------------------------------------------------
  const wanted = params.get("series");
  const first = seriesList.find((s) => s.uid === wanted) || seriesList[0];
  const firstImage = new Promise<void>((ok) => {
    slots[0].el.addEventListener(Enums.Events.IMAGE_RENDERED, () => ok(), { once: true });
  });
  setLayout(phone() ? "1x1" : (params.get("layout") || settings.layout || "1x1"));
  setActive(0);
  if (first) await show(0, first.uid);
  await firstImage;
  hook.firstImageMs = Math.round(performance.now() - started);
  hook.sinceNavigationMs = Math.round(performance.now());
  hook.engine = engine;
  hook.slots = slots;
  hook.annotations = () => cst.annotation.state.getAllAnnotations().map((a) => ({
    tool: a.metadata?.toolName, stats: (a.data as { cachedStats?: unknown }).cachedStats }));
  hook.viewport = (i = 0) => vpOf(slots[i]);
  hook.imageToWorld = csUtils.imageToWorldCoords;
  hook.annotationsRaw = () => cst.annotation.state.getAllAnnotations().map((a) => a.data.handles?.points);
  hook.settings = () => settings;
  hook.ctr = () => ctrAnnotations().map(ctrOf).filter((x) => x !== undefined);
  hook.linked = linked;
  hook.status = "ready";
  document.body.dataset.viewerReady = "1";
}
