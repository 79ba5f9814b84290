// Measurements and key images ⇄ the server's JSON (kept there as DICOM GSPS + KOS).
//
// Points travel in image pixel coordinates (DICOM PIXEL units: (0, 0) is the top left corner of the
// top left pixel, which is also Cornerstone 5's image coordinate system), so any DICOM viewer can
// draw them and a restore gives back exactly what was drawn.

import { metaData, type Types } from "@cornerstonejs/core";
import * as cst from "@cornerstonejs/tools";

/** The tools whose annotations are saved (tool names as registered with Cornerstone). */
export const SAVED_TOOLS = new Set([
  "Length", "Angle", "CobbAngle", "EllipticalROI", "RectangleROI", "Probe", "Polyline",
  "PlanarFreehandROI", "CardiothoracicRatio", "ArrowAnnotate",
]);
const CONTOUR = new Set(["Polyline", "PlanarFreehandROI"]);
const MEASURES = ["length", "angle", "area", "mean", "stdDev", "min", "max", "perimeter", "value"];
const UNITS = ["unit", "areaUnit", "modalityUnit"];

export interface ImageRef { series: string; sop: string; frame: number; }
export interface SavedAnnotation {
  uid: string; tool: string; image: ImageRef; points: Array<[number, number]>;
  closed?: boolean; text?: string; measure?: Record<string, number | string>;
}
export interface SavedState {
  annotations: SavedAnnotation[]; keyImages: ImageRef[];
  saved?: { sop: string; instanceNumber: number; history: number } | null;
}

type Ann = cst.Types.Annotation;
type AnyData = {
  handles?: { points?: Types.Point3[] }; contour?: { polyline?: Types.Point3[]; closed?: boolean };
  cachedStats?: Record<string, Record<string, unknown>>; label?: string; text?: string;
};

/** The image's plane in double precision (Cornerstone's own converters go through float32 vectors). */
function planeOf(imageId: string) {
  const p = (metaData.get("imagePlaneModule", imageId) || {}) as {
    imagePositionPatient?: number[]; rowCosines?: number[]; columnCosines?: number[];
    columnPixelSpacing?: number; rowPixelSpacing?: number; frameOfReferenceUID?: string;
  };
  return { origin: p.imagePositionPatient || [0, 0, 0], r: p.rowCosines || [1, 0, 0], c: p.columnCosines || [0, 1, 0],
    sx: p.rowPixelSpacing || 1, sy: p.columnPixelSpacing || 1, frame: p.frameOfReferenceUID };
}
/** Image pixel (x, y) → patient mm, as ``utilities.imageToWorldCoords`` but without rounding. */
export function imageToWorld(imageId: string, [x, y]: [number, number]): Types.Point3 {
  const { origin: o, r, c, sx, sy } = planeOf(imageId);
  return [0, 1, 2].map((i) => o[i] + r[i] * sx * (x - 0.5) + c[i] * sy * (y - 0.5)) as Types.Point3;
}
/** Patient mm → image pixel (x, y): the exact inverse of ``imageToWorld``. */
export function worldToImage(imageId: string, w: Types.Point3): [number, number] {
  const { origin: o, r, c, sx, sy } = planeOf(imageId);
  const d = [w[0] - o[0], w[1] - o[1], w[2] - o[2]];
  return [(d[0] * r[0] + d[1] * r[1] + d[2] * r[2]) / sx + 0.5, (d[0] * c[0] + d[1] * c[1] + d[2] * c[2]) / sy + 0.5];
}

const ID_RE = /\/series\/([\d.]+)\/instances\/([\d.]+)\/frames\/(\d+)$/;

/** The series, instance and frame a WADO-RS frame imageId names. */
export function refOf(imageId: string): ImageRef | undefined {
  const m = ID_RE.exec(imageId);
  return m ? { series: m[1], sop: m[2], frame: Number(m[3]) } : undefined;
}
export const keyOf = (r: ImageRef): string => `${r.sop}/${r.frame}`;

/** One Cornerstone annotation as the server keeps it (undefined for tools that are not saved). */
export function toSaved(a: Ann, extra: Record<string, number> = {}): SavedAnnotation | undefined {
  const tool = a.metadata?.toolName || "";
  const imageId = a.metadata?.referencedImageId;
  const image = imageId ? refOf(imageId) : undefined;
  if (!SAVED_TOOLS.has(tool) || !imageId || !image || !a.annotationUID) return undefined;
  const data = a.data as AnyData;
  const world = (CONTOUR.has(tool) ? data.contour?.polyline : data.handles?.points) || [];
  if (!world.length) return undefined;
  const points = world.map((p) => worldToImage(imageId, p));
  const all = data.cachedStats || {};
  const stats = all[`imageId:${imageId}`] || Object.values(all).at(-1) || {};
  const measure: Record<string, number | string> = {};
  for (const k of MEASURES) if (typeof stats[k] === "number" && Number.isFinite(stats[k])) measure[k] = stats[k] as number;
  for (const k of UNITS) if (typeof stats[k] === "string" && stats[k]) measure[k] = stats[k] as string;
  Object.assign(measure, extra);
  return {
    uid: a.annotationUID, tool, image, points, closed: CONTOUR.has(tool) ? !!data.contour?.closed : false,
    text: tool === "ArrowAnnotate" ? data.label || data.text || "" : "", measure,
  };
}

/** A Cornerstone annotation (on ``imageId``) from what the server kept. */
export function fromSaved(s: SavedAnnotation, imageId: string): Ann {
  const { r, c, frame } = planeOf(imageId);
  const normal = [c[1] * r[2] - c[2] * r[1], c[2] * r[0] - c[0] * r[2], c[0] * r[1] - c[1] * r[0]] as Types.Point3;
  const world = s.points.map((p) => imageToWorld(imageId, p));
  const contour = CONTOUR.has(s.tool);
  const zero = [0, 0, 0] as Types.Point3;
  const data: Record<string, unknown> = {
    handles: {
      points: contour ? (s.closed ? [] : [world[0], world[world.length - 1]]) : world,
      activeHandleIndex: null,
      textBox: { hasMoved: false, worldPosition: zero, worldBoundingBox: { topLeft: zero, topRight: zero, bottomLeft: zero, bottomRight: zero } },
    },
    cachedStats: {},
    label: s.text || "",
  };
  if (contour) data.contour = { polyline: world, closed: !!s.closed, windingDirection: s.closed ? 1 : undefined };
  return {
    annotationUID: s.uid, highlighted: false, invalidated: true, isLocked: false, isVisible: true,
    ...(contour ? { interpolationUID: "", autoGenerated: false } : {}),
    metadata: { toolName: s.tool, referencedImageId: imageId, FrameOfReferenceUID: frame as string,
      viewPlaneNormal: normal },
    data,
  } as unknown as Ann;
}

/** What decides "unsaved changes": the geometry, texts and key images (not the recomputed values). */
export function fingerprint(annotations: SavedAnnotation[], keys: Iterable<string>): string {
  const round = (v: number) => Math.round(v * 1e6) / 1e6;
  const shape = annotations.map((a) => [a.uid, a.tool, keyOf(a.image), a.closed, a.text, a.points.map(([x, y]) => [round(x), round(y)])]);
  shape.sort((p, q) => String(p[0]).localeCompare(String(q[0])));
  return JSON.stringify([shape, [...keys].sort()]);
}

export async function loadState(study: string): Promise<SavedState> {
  const r = await fetch(`/api/studies/${study}/annotations`, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (!r.ok) throw new Error(`${r.status} ${r.statusText}`);
  return (await r.json()) as SavedState;
}

export async function saveState(study: string, state: SavedState): Promise<{ pr_sop_uid: string; ko_sop_uid: string | null; instance_number: number }> {
  const r = await fetch(`/api/studies/${study}/annotations`, {
    method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify({ annotations: state.annotations, keyImages: state.keyImages }),
  });
  if (!r.ok) {
    let detail = r.statusText;
    try { detail = (await r.json()).detail || detail; } catch { /* not JSON */ }
    throw new Error(`${r.status} ${detail}`);
  }
  return await r.json();
}
