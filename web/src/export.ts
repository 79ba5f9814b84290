// Image export: PNG and JPEG through the browser's own encoders, BMP and TIFF written here
// (both are simple uncompressed formats), and a store-only ZIP of such files for a whole series.

export type ExportFormat = "png" | "jpeg" | "bmp" | "tiff";
export const EXPORT_FORMATS: ExportFormat[] = ["png", "jpeg", "bmp", "tiff"];
export const EXTENSION: Record<ExportFormat, string> = { png: "png", jpeg: "jpg", bmp: "bmp", tiff: "tif" };
const MIME: Record<ExportFormat, string> = { png: "image/png", jpeg: "image/jpeg", bmp: "image/bmp", tiff: "image/tiff" };

function rgba(canvas: HTMLCanvasElement): Uint8ClampedArray {
  return canvas.getContext("2d")!.getImageData(0, 0, canvas.width, canvas.height).data;
}

/** A 24-bit BMP (BITMAPINFOHEADER, bottom-up rows padded to 4 bytes). */
export function encodeBmp(canvas: HTMLCanvasElement): Uint8Array {
  const { width: w, height: h } = canvas;
  const px = rgba(canvas);
  const stride = (w * 3 + 3) & ~3;
  const out = new Uint8Array(54 + stride * h);
  const dv = new DataView(out.buffer);
  out[0] = 0x42; out[1] = 0x4d; // "BM"
  dv.setUint32(2, out.length, true);
  dv.setUint32(10, 54, true); // pixel data offset
  dv.setUint32(14, 40, true); // header size
  dv.setInt32(18, w, true);
  dv.setInt32(22, h, true); // positive: bottom-up
  dv.setUint16(26, 1, true); // planes
  dv.setUint16(28, 24, true); // bits per pixel
  dv.setUint32(34, stride * h, true);
  dv.setInt32(38, 2835, true); // 72 dpi
  dv.setInt32(42, 2835, true);
  for (let y = 0; y < h; y++) {
    let o = 54 + (h - 1 - y) * stride;
    for (let x = 0; x < w; x++) {
      const i = 4 * (y * w + x);
      out[o++] = px[i + 2]; out[o++] = px[i + 1]; out[o++] = px[i]; // BGR
    }
  }
  return out;
}

/** A baseline RGB TIFF, uncompressed, one page per canvas. */
export function encodeTiff(canvases: HTMLCanvasElement[]): Uint8Array {
  const TAGS = 13;
  const ifdSize = 2 + TAGS * 12 + 4;
  const extra = 6 + 16; // BitsPerSample (3 × SHORT) + X/Y resolution (2 RATIONAL)
  let size = 8;
  for (const c of canvases) size += ifdSize + extra + c.width * c.height * 3;
  const out = new Uint8Array(size);
  const dv = new DataView(out.buffer);
  out.set([0x49, 0x49, 42, 0], 0); // "II", 42: little-endian TIFF
  let pos = 8;
  dv.setUint32(4, pos, true);
  canvases.forEach((c, page) => {
    const { width: w, height: h } = c;
    const ifd = pos, more = ifd + ifdSize, pixels = more + extra;
    const entries: Array<[number, number, number, number]> = [ // tag, type (3 SHORT, 4 LONG, 5 RATIONAL), count, value
      [256, 4, 1, w], [257, 4, 1, h], [258, 3, 3, more], [259, 3, 1, 1], [262, 3, 1, 2], [273, 4, 1, pixels],
      [277, 3, 1, 3], [278, 4, 1, h], [279, 4, 1, w * h * 3], [282, 5, 1, more + 6], [283, 5, 1, more + 14],
      [284, 3, 1, 1], [296, 3, 1, 2],
    ];
    dv.setUint16(ifd, TAGS, true);
    entries.forEach(([tag, type, count, value], k) => {
      const e = ifd + 2 + k * 12;
      dv.setUint16(e, tag, true);
      dv.setUint16(e + 2, type, true);
      dv.setUint32(e + 4, count, true);
      if (type === 3 && count === 1) dv.setUint16(e + 8, value, true);
      else dv.setUint32(e + 8, value, true);
    });
    const next = pixels + w * h * 3;
    dv.setUint32(ifd + 2 + TAGS * 12, page < canvases.length - 1 ? next : 0, true);
    for (let k = 0; k < 3; k++) dv.setUint16(more + 2 * k, 8, true);
    dv.setUint32(more + 6, 72, true); dv.setUint32(more + 10, 1, true); // 72 dpi
    dv.setUint32(more + 14, 72, true); dv.setUint32(more + 18, 1, true);
    const px = rgba(c);
    let o = pixels;
    for (let i = 0; i < px.length; i += 4) { out[o++] = px[i]; out[o++] = px[i + 1]; out[o++] = px[i + 2]; }
    pos = next;
  });
  return out;
}

/** One image file in ``format``. */
export async function encode(canvas: HTMLCanvasElement, format: ExportFormat): Promise<Blob> {
  if (format === "bmp") return new Blob([encodeBmp(canvas) as BlobPart], { type: MIME.bmp });
  if (format === "tiff") return new Blob([encodeTiff([canvas]) as BlobPart], { type: MIME.tiff });
  const blob = await new Promise<Blob | null>((ok) => canvas.toBlob(ok, MIME[format], 0.92));
  if (!blob) throw new Error(`the browser could not encode ${format}`);
  return blob;
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();
function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export interface ZipEntry { name: string; blob: Blob; crc: number; size: number; }

/** A file for :func:`zip` (its CRC is taken now, so the bytes need not stay in memory). */
export async function zipEntry(name: string, blob: Blob): Promise<ZipEntry> {
  return { name, blob, crc: crc32(new Uint8Array(await blob.arrayBuffer())), size: blob.size };
}

/** A ZIP archive of ``files`` (stored, not deflated: the images are compressed or small already). */
export function zip(files: ZipEntry[]): Blob {
  const enc = new TextEncoder();
  const parts: BlobPart[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const f of files) {
    const name = enc.encode(f.name);
    const { crc, size } = f;
    const local = new Uint8Array(30 + name.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true);
    lv.setUint16(6, 0x0800, true); // UTF-8 names
    lv.setUint32(14, crc, true);
    lv.setUint32(18, size, true);
    lv.setUint32(22, size, true);
    lv.setUint16(26, name.length, true);
    local.set(name, 30);
    const dir = new Uint8Array(46 + name.length);
    const dv = new DataView(dir.buffer);
    dv.setUint32(0, 0x02014b50, true);
    dv.setUint16(4, 20, true);
    dv.setUint16(6, 20, true);
    dv.setUint16(8, 0x0800, true);
    dv.setUint32(16, crc, true);
    dv.setUint32(20, size, true);
    dv.setUint32(24, size, true);
    dv.setUint16(28, name.length, true);
    dv.setUint32(42, offset, true);
    dir.set(name, 46);
    parts.push(local as BlobPart, f.blob);
    central.push(dir);
    offset += local.length + size;
  }
  const size = central.reduce((n, d) => n + d.length, 0);
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, files.length, true);
  ev.setUint16(10, files.length, true);
  ev.setUint32(12, size, true);
  ev.setUint32(16, offset, true);
  return new Blob([...parts, ...(central as BlobPart[]), end as BlobPart], { type: "application/zip" });
}

/** Hand ``blob`` to the browser as a download called ``name``. */
export function download(blob: Blob, name: string): void {
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10000);
}
