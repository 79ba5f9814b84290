// Transfer-function editor of the MPR / 3D layout's volume rendering (issue 5): opacity points
// over the volume's value range, each with a colour, drawn on a small canvas over the volume's
// histogram.  Drag a point to move it, press on empty space to add one, right-click (or the
// remove button) to delete the chosen one; a preset is the starting point, reset goes back to it.
// The layout sends the points with every VR request (latest request wins), so edits show live.

import { h } from "./api";
import { t } from "./i18n";

export type RGB = [number, number, number];
/** A point of the curve: value (HU, or the volume's units), opacity per mm (0…1), colour (0…1). */
export interface TfPoint { v: number; a: number; c: RGB }
/** A preset as radcloud.volume.vr.PRESETS holds it. */
export interface TfPreset { relative?: boolean; opacity: Array<[number, number]>; color: Array<[number, RGB]> }

const W = 320, H = 120, PAD = 8, STRIP = 10;

function lerpColor(xs: number[], cs: RGB[], v: number): RGB {
  if (!xs.length) return [1, 1, 1];
  if (v <= xs[0]) return [...cs[0]] as RGB;
  for (let i = 1; i < xs.length; i++) {
    if (v <= xs[i]) {
      const f = xs[i] > xs[i - 1] ? (v - xs[i - 1]) / (xs[i] - xs[i - 1]) : 1;
      return [0, 1, 2].map((k) => cs[i - 1][k] * (1 - f) + cs[i][k] * f) as RGB;
    }
  }
  return [...cs[cs.length - 1]] as RGB;
}

/** The editable points of a preset: its opacity points, coloured by its colour curve. */
export function presetPoints(p: TfPreset, range: [number, number]): TfPoint[] {
  const val = (x: number) => (p.relative ? range[0] + x * (range[1] - range[0]) : x);
  const cx = p.color.map((c) => val(c[0]));
  const cs = p.color.map((c) => c[1]);
  return p.opacity.map(([x, a]) => ({ v: val(x), a, c: lerpColor(cx, cs, val(x)) }));
}

export const hex = (c: RGB) => "#" + c.map((x) => Math.round(Math.min(1, Math.max(0, x)) * 255).toString(16).padStart(2, "0")).join("");
const unhex = (s: string): RGB => [1, 3, 5].map((i) => parseInt(s.slice(i, i + 2), 16) / 255) as RGB;

/** ``opacity`` and ``colors`` query values of the points (``v:a,…`` and ``v:#rrggbb,…``). */
export function tfQuery(points: TfPoint[]): { opacity: string; colors: string } {
  const n = (x: number) => Number(x.toFixed(3));
  return {
    opacity: points.map((p) => `${n(p.v)}:${n(p.a)}`).join(","),
    colors: points.map((p) => `${n(p.v)}:${hex(p.c)}`).join(","),
  };
}

export class TfEditor {
  readonly el: HTMLDivElement;
  readonly canvas: HTMLCanvasElement;
  private readonly colorIn: HTMLInputElement;
  private readonly removeBtn: HTMLButtonElement;
  readonly resetBtn: HTMLButtonElement;
  points: TfPoint[] = [];
  edited = false;
  private range: [number, number] = [0, 1]; // the volume's values
  private span: [number, number] = [0, 1]; // values across the canvas: the range and the points
  private hist: number[] = [];
  private chosen?: TfPoint;

  /** ``onChange(points, live)``: undefined points = the preset's own; live while a drag goes on. */
  constructor(private readonly onChange: (points: TfPoint[] | undefined, live: boolean) => void) {
    this.canvas = h("canvas", { class: "mpr-tf-canvas", id: "mpr-tf-canvas", width: String(W), height: String(H) }) as HTMLCanvasElement;
    this.colorIn = h("input", { type: "color", id: "mpr-tf-color", class: "mpr-tf-color", "data-i18n-title": "mpr.tfColor", title: t("mpr.tfColor") }) as HTMLInputElement;
    this.removeBtn = h("button", { type: "button", class: "btn tool mpr-btn", id: "mpr-tf-remove", "data-i18n": "mpr.tfRemove" }, t("mpr.tfRemove")) as HTMLButtonElement;
    this.resetBtn = h("button", { type: "button", class: "btn tool mpr-btn", id: "mpr-tf-reset", "data-i18n": "mpr.tfReset" }, t("mpr.tfReset")) as HTMLButtonElement;
    this.el = h("div", { class: "mpr-tf", id: "mpr-tf" }, this.canvas,
      h("div", { class: "mpr-tf-row" }, this.colorIn, this.removeBtn, this.resetBtn,
        h("span", { class: "mpr-tf-hint", "data-i18n": "mpr.tfHint" }, t("mpr.tfHint")))) as HTMLDivElement;
    this.el.hidden = true;
    // the panel lies over the VR picture: its pointer work is not a rotation of the volume
    for (const type of ["pointerdown", "pointermove", "pointerup", "wheel", "contextmenu", "click"]) {
      this.el.addEventListener(type, (e) => e.stopPropagation());
    }
    this.canvas.addEventListener("contextmenu", (e) => e.preventDefault());
    this.canvas.addEventListener("pointerdown", (e) => this.down(e));
    this.colorIn.addEventListener("input", () => {
      if (!this.chosen) return;
      this.chosen.c = unhex(this.colorIn.value);
      this.changed(false);
    });
    this.removeBtn.addEventListener("click", () => this.remove());
    this.resetBtn.addEventListener("click", () => { this.edited = false; this.onChange(undefined, false); });
  }

  /** The volume's value range and histogram counts (drawn on a log scale). */
  setVolume(range: [number, number], counts: number[] | undefined): void {
    this.range = range[1] > range[0] ? range : [range[0], range[0] + 1];
    this.hist = counts ?? [];
    this.fit();
    this.draw();
  }
  /** Start again from ``points`` (a preset's); nothing is sent. */
  setPoints(points: TfPoint[]): void {
    this.points = points.map((p) => ({ ...p, c: [...p.c] as RGB })).sort((a, b) => a.v - b.v);
    this.chosen = undefined;
    this.edited = false;
    this.fit();
    this.draw();
  }
  /** Canvas span: the volume's range, widened to show points beyond it (fixed while editing). */
  private fit(): void {
    const vs = this.points.map((p) => p.v);
    this.span = [Math.min(this.range[0], ...vs), Math.max(this.range[1], ...vs)];
  }

  private x(v: number): number { return PAD + ((v - this.span[0]) / (this.span[1] - this.span[0])) * (W - 2 * PAD); }
  private y(a: number): number { return PAD + (1 - a) * (H - 2 * PAD - STRIP); }
  private at(px: number, py: number): [number, number] {
    const v = this.span[0] + ((px - PAD) / (W - 2 * PAD)) * (this.span[1] - this.span[0]);
    const a = 1 - (py - PAD) / (H - 2 * PAD - STRIP);
    return [Math.min(this.span[1], Math.max(this.span[0], v)), Math.min(1, Math.max(0, a))];
  }
  /** Canvas pixel of a pointer event. */
  private local(e: { clientX: number; clientY: number }): [number, number] {
    const r = this.canvas.getBoundingClientRect();
    return [((e.clientX - r.left) * W) / r.width, ((e.clientY - r.top) * H) / r.height];
  }
  /** Canvas pixel of point ``i`` (for tests and the keyboard-less). */
  pixelOf(i: number): [number, number] | undefined {
    const p = this.points[i];
    return p ? [this.x(p.v), this.y(p.a)] : undefined;
  }

  private down(e: PointerEvent): void {
    e.preventDefault();
    const [px, py] = this.local(e);
    let best: TfPoint | undefined, bestD = 10;
    for (const p of this.points) {
      const d = Math.hypot(this.x(p.v) - px, this.y(p.a) - py);
      if (d < bestD) { best = p; bestD = d; }
    }
    if (e.button === 2) { if (best) { this.chosen = best; this.remove(); } return; }
    if (!best) { // a new point, coloured as the curve is there
      const [v, a] = this.at(px, py);
      best = { v, a, c: lerpColor(this.points.map((p) => p.v), this.points.map((p) => p.c), v) };
      this.points.push(best);
      this.points.sort((p, q) => p.v - q.v);
    }
    this.chosen = best;
    this.colorIn.value = hex(best.c);
    const target = best;
    this.canvas.setPointerCapture(e.pointerId);
    const move = (ev: PointerEvent) => {
      const [v, a] = this.at(...this.local(ev));
      target.v = v;
      target.a = a;
      this.points.sort((p, q) => p.v - q.v);
      this.changed(true);
    };
    const up = () => {
      this.canvas.removeEventListener("pointermove", move);
      this.canvas.removeEventListener("pointerup", up);
      this.canvas.removeEventListener("pointercancel", up);
      this.changed(false);
    };
    this.canvas.addEventListener("pointermove", move);
    this.canvas.addEventListener("pointerup", up);
    this.canvas.addEventListener("pointercancel", up);
    this.draw();
  }

  private remove(): void {
    if (!this.chosen || this.points.length <= 2) return;
    this.points = this.points.filter((p) => p !== this.chosen);
    this.chosen = undefined;
    this.changed(false);
  }

  private changed(live: boolean): void {
    this.edited = true;
    this.draw();
    this.onChange(this.points, live);
  }

  draw(): void {
    const ctx = this.canvas.getContext("2d");
    if (!ctx) return;
    ctx.clearRect(0, 0, W, H);
    ctx.fillStyle = "rgba(13, 17, 23, 0.85)";
    ctx.fillRect(0, 0, W, H);
    const base = H - PAD - STRIP;
    if (this.hist.length) { // the histogram, log counts
      const top = Math.log1p(Math.max(...this.hist)) || 1;
      const step = (this.range[1] - this.range[0]) / this.hist.length;
      const bw = this.x(this.range[0] + step) - this.x(this.range[0]);
      ctx.fillStyle = "#484f58";
      this.hist.forEach((n, i) => {
        const hh = (Math.log1p(n) / top) * (base - PAD);
        ctx.fillRect(this.x(this.range[0] + i * step), base - hh, Math.max(1, bw - 0.5), hh);
      });
    }
    const xs = this.points.map((p) => p.v), cs = this.points.map((p) => p.c);
    for (let px = PAD; px < W - PAD; px++) { // the colour over the value range
      const v = this.span[0] + ((px - PAD) / (W - 2 * PAD)) * (this.span[1] - this.span[0]);
      ctx.fillStyle = hex(lerpColor(xs, cs, v));
      ctx.fillRect(px, base + 2, 1, STRIP - 2);
    }
    if (!this.points.length) return;
    ctx.strokeStyle = "#ffd33d";
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    ctx.moveTo(PAD, this.y(this.points[0].a));
    for (const p of this.points) ctx.lineTo(this.x(p.v), this.y(p.a));
    ctx.lineTo(W - PAD, this.y(this.points[this.points.length - 1].a));
    ctx.stroke();
    for (const p of this.points) {
      ctx.beginPath();
      ctx.arc(this.x(p.v), this.y(p.a), p === this.chosen ? 6 : 4.5, 0, 2 * Math.PI);
      ctx.fillStyle = hex(p.c);
      ctx.fill();
      ctx.strokeStyle = p === this.chosen ? "#ffffff" : "#0d1117";
      ctx.lineWidth = 1.5;
      ctx.stroke();
    }
    this.removeBtn.disabled = !this.chosen || this.points.length <= 2;
    this.colorIn.disabled = !this.chosen;
  }
}
