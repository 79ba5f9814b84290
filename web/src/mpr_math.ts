// Plane and camera arithmetic of the MPR / 3D layout: the server describes each rendered image
// (patient mm of its centre, screen-right u, screen-down v, mm per pixel); the client maps its
// pixels to patient mm and back with the same formulas as radcloud.volume.mpr.Plane.

export type Vec3 = [number, number, number];

/** What ``X-Radcloud-View`` says about an MPR image (``plane``) or a VR image (``camera``). */
export interface PlaneInfo {
  center: Vec3; u: Vec3; v: Vec3; normal?: Vec3; forward?: Vec3; pixel_mm: number; width: number; height: number;
}

export const add = (a: Vec3, b: Vec3): Vec3 => [a[0] + b[0], a[1] + b[1], a[2] + b[2]];
export const sub = (a: Vec3, b: Vec3): Vec3 => [a[0] - b[0], a[1] - b[1], a[2] - b[2]];
export const scale = (a: Vec3, k: number): Vec3 => [a[0] * k, a[1] * k, a[2] * k];
export const dot = (a: Vec3, b: Vec3): number => a[0] * b[0] + a[1] * b[1] + a[2] * b[2];
export const cross = (a: Vec3, b: Vec3): Vec3 => [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]];
export const norm = (a: Vec3): number => Math.hypot(a[0], a[1], a[2]);
export const dist = (a: Vec3, b: Vec3): number => norm(sub(a, b));

export function normalOf(p: PlaneInfo): Vec3 {
  return p.normal ?? cross(p.u, p.v);
}

/** Patient mm of image pixel (x, y) (0 = the first pixel's centre). */
export function toPatient(p: PlaneInfo, x: number, y: number): Vec3 {
  const dx = (x - (p.width - 1) / 2) * p.pixel_mm;
  const dy = (y - (p.height - 1) / 2) * p.pixel_mm;
  return add(p.center, add(scale(p.u, dx), scale(p.v, dy)));
}

/** Image pixel (x, y) of a patient point and its distance (mm) from the plane. */
export function toPixel(p: PlaneInfo, point: Vec3): [number, number, number] {
  const d = sub(point, p.center);
  return [dot(d, p.u) / p.pixel_mm + (p.width - 1) / 2, dot(d, p.v) / p.pixel_mm + (p.height - 1) / 2, dot(d, normalOf(p))];
}

/** Unit (dx, dy) in this image of the line where another plane (normal ``other``) cuts it; null if parallel. */
export function lineIn(p: PlaneInfo, other: Vec3): [number, number] | null {
  const d = cross(normalOf(p), other);
  if (norm(d) < 1e-6) return null;
  const x = dot(d, p.u), y = dot(d, p.v);
  const n = Math.hypot(x, y);
  return n < 1e-9 ? null : [x / n, y / n];
}

/** The two ends of the line through (x, y) along (dx, dy), clipped to a w × h image. */
export function clipLine(x: number, y: number, dx: number, dy: number, w: number, h: number): [number, number, number, number] {
  const big = 4 * (w + h);
  return [x - dx * big, y - dy * big, x + dx * big, y + dy * big];
}
