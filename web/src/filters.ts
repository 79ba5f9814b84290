// Display filters: smoothing and sharpening (3 levels each) and a one-click X-ray enhancement,
// done by the browser on the displayed picture, so the pixel values that measurements and ROI
// statistics use are never changed.  Smoothing and sharpening are small SVG convolutions on the
// viewport's canvas; the X-ray enhancement (unsharp mask with a wide kernel, then a contrast
// stretch) is computed here over the image's own area, edges clamped, so the black around the
// image cannot put a bright rim on it.

export type FilterName = "" | "smooth1" | "smooth2" | "smooth3" | "sharpen1" | "sharpen2" | "sharpen3" | "xray";
export const FILTERS: FilterName[] = ["", "smooth1", "smooth2", "smooth3", "sharpen1", "sharpen2", "sharpen3", "xray"];

const SVG = "http://www.w3.org/2000/svg";
const SMOOTH = [[1, 2, 1], [1, 4, 6, 4, 1], [1, 6, 15, 20, 15, 6, 1]]; // binomial (≈ Gaussian) kernels, 3, 5 and 7 pixels
const SHARPEN = [0.35, 0.75, 1.5]; // Laplacian weight of a 3×3 sharpening kernel

function el(tag: string, attrs: Record<string, string | number>, ...children: Element[]): Element {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  e.append(...children);
  return e;
}

function filter(id: string, ...steps: Element[]): Element {
  // sRGB: grey levels are filtered as shown, not as "linear light"
  return el("filter", { id, "color-interpolation-filters": "sRGB", x: 0, y: 0, width: 1, height: 1 }, ...steps);
}

/** The SVG filter definitions, added to the page once. */
export function installFilters(): void {
  if (document.getElementById("rc-filters")) return;
  const defs: Element[] = [];
  // convolution rather than feGaussianBlur: Chromium skips a blur of σ < 1 altogether
  SMOOTH.forEach((row, i) => defs.push(filter(`rc-smooth${i + 1}`, el("feConvolveMatrix", {
    order: row.length, kernelMatrix: row.flatMap((a) => row.map((b) => a * b)).join(" "),
    divisor: row.reduce((x, y) => x + y) ** 2, edgeMode: "duplicate", preserveAlpha: "true",
  }))));
  SHARPEN.forEach((a, i) => defs.push(filter(`rc-sharpen${i + 1}`,
    el("feConvolveMatrix", { order: 3, kernelMatrix: `0 ${-a} 0 ${-a} ${1 + 4 * a} ${-a} 0 ${-a} 0`, divisor: 1, edgeMode: "duplicate", preserveAlpha: "true" }))));
  const svg = el("svg", { id: "rc-filters", width: 0, height: 0, "aria-hidden": "true" }, el("defs", {}, ...defs));
  (svg as SVGElement).style.position = "absolute";
  document.body.append(svg);
}

/** The CSS / canvas ``filter`` value for ``name`` ("none" for no filter). */
export const cssFilter = (name: FilterName): string => (name && name !== "xray" ? `url(#rc-${name})` : "none");

/** In-place box blur of ``v`` (``w`` × ``h``), radius ``r``, edges clamped; three passes ≈ a Gaussian. */
function blur(v: Float32Array, w: number, h: number, r: number): Float32Array {
  const a = v.slice(), b = new Float32Array(v.length);
  const n = 2 * r + 1;
  for (let pass = 0; pass < 3; pass++) {
    for (let y = 0; y < h; y++) { // rows
      const o = y * w;
      let sum = 0;
      for (let k = -r; k <= r; k++) sum += a[o + Math.min(w - 1, Math.max(0, k))];
      for (let x = 0; x < w; x++) {
        b[o + x] = sum / n;
        sum += a[o + Math.min(w - 1, x + r + 1)] - a[o + Math.max(0, x - r)];
      }
    }
    for (let x = 0; x < w; x++) { // columns
      let sum = 0;
      for (let k = -r; k <= r; k++) sum += b[Math.min(h - 1, Math.max(0, k)) * w + x];
      for (let y = 0; y < h; y++) {
        a[y * w + x] = sum / n;
        sum += b[Math.min(h - 1, y + r + 1) * w + x] - b[Math.max(0, y - r) * w + x];
      }
    }
  }
  return a;
}

/**
 * X-ray enhancement of the picture in ``src`` into ``out`` (same size): inside ``area`` (canvas
 * pixels: x0, y0, x1, y1 — the image itself), an unsharp mask (amount 1.2, blur σ ≈ 8 px) brings out
 * bone and lung detail, then the 0.5th–99.5th percentiles of grey are stretched to 10–245.
 */
export function enhanceXray(src: HTMLCanvasElement, out: HTMLCanvasElement, area: number[]): void {
  const { width: W, height: H } = src;
  if (out.width !== W || out.height !== H) { out.width = W; out.height = H; }
  const ctx = out.getContext("2d", { willReadFrequently: true })!;
  ctx.clearRect(0, 0, W, H);
  ctx.drawImage(src, 0, 0);
  // one pixel in from the image's edge: the edge pixels themselves are blended with the black around
  const x0 = Math.max(0, Math.ceil(area[0]) + 1), y0 = Math.max(0, Math.ceil(area[1]) + 1);
  const x1 = Math.min(W, Math.floor(area[2]) - 1), y1 = Math.min(H, Math.floor(area[3]) - 1);
  const w = x1 - x0, h = y1 - y0;
  if (w < 8 || h < 8) return;
  const img = ctx.getImageData(x0, y0, w, h);
  const px = img.data;
  const grey = new Float32Array(w * h);
  for (let i = 0; i < grey.length; i++) grey[i] = 0.299 * px[4 * i] + 0.587 * px[4 * i + 1] + 0.114 * px[4 * i + 2];
  const smooth = blur(grey, w, h, 5);
  const usm = new Float32Array(grey.length);
  const hist = new Uint32Array(256);
  for (let i = 0; i < grey.length; i++) {
    usm[i] = grey[i] + 1.2 * (grey[i] - smooth[i]);
    hist[Math.min(255, Math.max(0, Math.round(usm[i])))]++;
  }
  const at = (q: number) => { let c = 0; for (let k = 0; k < 256; k++) { c += hist[k]; if (c >= q * grey.length) return k; } return 255; };
  const lo = at(0.005), hi = Math.max(lo + 1, at(0.995));
  for (let i = 0; i < grey.length; i++) { // stretched to 10–245: no detail clipped to pure black or white
    const d = 10 + ((usm[i] - lo) * 235) / (hi - lo) - grey[i]; // the change, added to each channel (keeps a colour map)
    for (let c = 0; c < 3; c++) px[4 * i + c] = px[4 * i + c] + d;
  }
  ctx.putImageData(img, x0, y0);
}

/** The overlay's words for ``name`` (label key and level). */
export function filterLabel(name: FilterName): [string, string] {
  if (name === "xray") return ["filter.xray", ""];
  if (name.startsWith("smooth")) return ["filter.smooth", name.slice(-1)];
  if (name.startsWith("sharpen")) return ["filter.sharpen", name.slice(-1)];
  return ["", ""];
}
