// The viewer: series panel, 1×1 / 1×2 / 2×2 StackViewports over WADO-RS, 2D tools, overlay, cine, PNG export.

import { init as csInit, RenderingEngine, Enums, utilities as csUtils, type Types } from "@cornerstonejs/core";
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

/** Window presets on the number keys 1–5: [key, width, level]. */
export const PRESETS: Array<[string, number, number]> = [
  ["lung", 1500, -600], ["mediastinum", 350, 50], ["bone", 2000, 400], ["brain", 80, 40], ["abdomen", 400, 50],
];
const TOOLS: Array<[string, string, string]> = [ // [id, tool name, label key]
  ["wl", cst.WindowLevelTool.toolName, "viewer.wl"], ["pan", cst.PanTool.toolName, "viewer.pan"],
  ["zoom", cst.ZoomTool.toolName, "viewer.zoom"], ["scroll", cst.StackScrollTool.toolName, "viewer.scroll"],
  ["length", cst.LengthTool.toolName, "viewer.length"], ["angle", cst.AngleTool.toolName, "viewer.angle"],
  ["ellipse", cst.EllipticalROITool.toolName, "viewer.ellipse"], ["rect", cst.RectangleROITool.toolName, "viewer.rect"],
  ["probe", cst.ProbeTool.toolName, "viewer.probe"],
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

  // ---- the page ------------------------------------------------------------
  const btn = (id: string, key: string, title = "") =>
    h("button", { class: "btn tool", type: "button", id, "data-i18n": key, ...(title ? { title } : {}) }, t(key));
  const toolbar = h("div", { class: "toolbar", id: "toolbar", role: "toolbar" });
  const back = h("a", { class: "btn tool", href: "/", "data-i18n": "viewer.back" }, t("viewer.back"));
  const togglePanel = btn("toggle-series", "viewer.series");
  const layoutSel = h("select", { id: "layout", "aria-label": "layout" });
  for (const k of Object.keys(LAYOUTS)) layoutSel.append(h("option", { value: k }, k.replace("x", "×")));
  const presetSel = h("select", { id: "preset", "aria-label": "preset" }, h("option", { value: "", "data-i18n": "viewer.presets" }, t("viewer.presets")));
  PRESETS.forEach(([k], i) => presetSel.append(h("option", { value: k, "data-i18n": "preset." + k }, t("preset." + k))));
  const fps = h("input", { id: "fps", type: "number", min: "1", max: "60", value: "15", "aria-label": "fps" });
  toolbar.append(back, togglePanel, layoutSel);
  const toolButtons = new Map<string, HTMLButtonElement>();
  for (const [id, , key] of TOOLS) {
    const b = btn("tool-" + id, key) as HTMLButtonElement;
    b.addEventListener("click", () => selectTool(id));
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
    ["reset", "viewer.reset", () => act((vp) => { vp.resetCamera(); vp.resetProperties(); })],
    ["clear", "viewer.clearMeasure", () => { cst.annotation.state.removeAllAnnotations(); engine.render(); }],
    ["cine", "viewer.cine", () => toggleCine()],
  ];
  toolbar.append(presetSel);
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
  main.replaceChildren(h("section", { class: "viewer" }, toolbar, h("div", { class: "viewer-body" }, panel, grid), info));
  if (phone()) panel.classList.add("strip");
  togglePanel.addEventListener("click", () => { panel.hidden = !panel.hidden; requestAnimationFrame(() => engine.resize(true, true)); });
  onLangChange(() => { translate(main); slots.forEach(updateOverlay); });

  const slots: Slot[] = [0, 1, 2, 3].map((i) => {
    const el = h("div", { class: "vp", id: "vp" + i, "data-slot": String(i), tabindex: "0" }) as HTMLDivElement;
    el.addEventListener("contextmenu", (e) => e.preventDefault());
    const overlay = h("div", { class: "overlay" }) as HTMLDivElement;
    const cell = h("div", { class: "cell", "data-slot": String(i) }, el, overlay, h("div", { class: "empty", "data-i18n": "viewer.empty" }, t("viewer.empty")));
    cell.addEventListener("pointerdown", () => setActive(i));
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

  // ---- Cornerstone ---------------------------------------------------------
  await csInit();
  loaderInit({
    maxWebWorkers: Math.max(1, Math.min(navigator.hardwareConcurrency || 1, 4)),
    errorInterceptor: (error) => { if (error.status === 401) signIn(); }, // the session ran out
  });
  cst.init();
  for (const T of [cst.WindowLevelTool, cst.PanTool, cst.ZoomTool, cst.StackScrollTool, cst.LengthTool, cst.AngleTool,
    cst.EllipticalROITool, cst.RectangleROITool, HUProbeTool]) cst.addTool(T);
  const group = ToolGroupManager.getToolGroup(GROUP) || ToolGroupManager.createToolGroup(GROUP)!;
  for (const [, name] of TOOLS) group.addTool(name);
  group.setToolActive(cst.StackScrollTool.toolName, { bindings: [{ mouseButton: TE.MouseBindings.Wheel }] });
  group.setToolActive(cst.PanTool.toolName, { bindings: [{ mouseButton: TE.MouseBindings.Auxiliary }] });
  group.setToolActive(cst.ZoomTool.toolName, { bindings: [{ mouseButton: TE.MouseBindings.Secondary }, { numTouchPoints: 2 }] });
  const engine = new RenderingEngine(ENGINE);
  let primary = "";
  function selectTool(id: string): void {
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
  }
  selectTool(phone() ? "scroll" : "wl");

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
  }

  function setLayout(name: string): void {
    const [rows, cols] = LAYOUTS[name] || LAYOUTS["1x1"];
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
  layoutSel.addEventListener("change", () => setLayout(layoutSel.value));

  function setActive(i: number): void {
    active = i;
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
    return [
      [tagStr(studyInfo, "00100010") || tagStr(meta, "00100010"), tagStr(meta, "00100020"), [tagStr(meta, "00100040"), tagStr(meta, "00101010")].filter(Boolean).join(" ")],
      [tagStr(meta, "00080080"), fmtDate(tagStr(meta, "00080020")), tagStr(studyInfo, "00081030") || tagStr(meta, "00081030")],
      [`${t("ov.se")}: ${s.number} ${s.description}`, `${t("ov.im")}: ${idx + 1}/${vp.getImageIds().length}`,
        [pos != null ? `Z: ${Number(pos).toFixed(1)}` : "", thick ? `T: ${thick} mm` : ""].filter(Boolean).join("  ")],
      [`W: ${w} L: ${l}${invert ? " INV" : ""}`, `${t("ov.zoom")}: ${vp.getZoom().toFixed(2)}`],
    ];
  }
  function updateOverlay(slot: Slot): void {
    const corners = ["tl", "tr", "bl", "br"];
    const text = overlayText(slot);
    slot.overlay.replaceChildren(...corners.map((c, k) => h("div", { class: "corner " + c, "data-corner": c },
      ...text[k].filter(Boolean).map((line) => h("div", {}, line)))));
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
    const p = PRESETS.find(([k]) => k === key);
    if (!p) return;
    const [, w, l] = p;
    act((vp) => vp.setProperties({ voiRange: csUtils.windowLevel.toLowHighRange(w, l) }));
    hook.preset = key;
  }
  presetSel.addEventListener("change", () => { applyPreset(presetSel.value); presetSel.value = ""; });

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
  const keyTools: Record<string, string> = { w: "wl", p: "pan", z: "zoom", s: "scroll", l: "length", a: "angle", e: "ellipse", o: "rect", c: "probe" };
  document.addEventListener("keydown", (e) => {
    const target = e.target as HTMLElement;
    if (e.ctrlKey || e.metaKey || e.altKey || target.matches("input, select, textarea")) return;
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
    else if (keyTools[k]) selectTool(keyTools[k]);
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
  setLayout(phone() ? "1x1" : (params.get("layout") || "1x1"));
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
  hook.status = "ready";
  document.body.dataset.viewerReady = "1";
}
