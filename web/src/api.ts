// Same-origin calls with the session cookie; a 401 sends the browser to the sign-in page.

export class ApiError extends Error {
  constructor(public status: number, message: string) {
    super(message);
  }
}

export function signIn(): never {
  const next = location.pathname + location.search;
  location.assign("/login?next=" + encodeURIComponent(next));
  throw new ApiError(401, "not signed in");
}

export async function getJSON<T>(url: string, accept = "application/json"): Promise<T> {
  const r = await fetch(url, { credentials: "same-origin", headers: { Accept: accept } });
  if (r.status === 401) signIn();
  if (!r.ok) {
    let detail = r.statusText;
    try {
      detail = (await r.json()).detail || detail;
    } catch {
      /* not JSON */
    }
    throw new ApiError(r.status, `${r.status} ${detail}`);
  }
  if (r.status === 204) return [] as T;
  return (await r.json()) as T;
}

export type DicomJson = Record<string, { vr: string; Value?: unknown[] }>;

/** First value of a tag as a string ('' when absent); person names as "Ideographic (Alphabetic)". */
export function tagStr(ds: DicomJson | undefined, tag: string): string {
  const v = ds?.[tag]?.Value?.[0];
  if (v == null) return "";
  if (typeof v === "object") {
    const pn = v as { Alphabetic?: string; Ideographic?: string };
    const a = (pn.Alphabetic || "").replace(/\^/g, " ").trim();
    const i = (pn.Ideographic || "").replace(/\^/g, "").trim();
    return i && a ? `${i} (${a})` : i || a;
  }
  return String(v);
}

export function tagNum(ds: DicomJson | undefined, tag: string): number | undefined {
  const v = ds?.[tag]?.Value?.[0];
  return v == null ? undefined : Number(v);
}

export function fmtDate(da: string): string {
  return /^\d{8}$/.test(da) ? `${da.slice(0, 4)}-${da.slice(4, 6)}-${da.slice(6)}` : da;
}

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K, attrs: Record<string, string> = {}, ...children: Array<Node | string | null>
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  for (const c of children) if (c != null) el.append(c);
  return el;
}

/** Modalities of series that hold no images to show (presentation states, key objects, reports…). */
export const NOT_IMAGES = new Set(["PR", "KO", "SR", "SEG", "RTSTRUCT", "RTPLAN", "RTDOSE", "DOC", "REG", "FID", "PLAN"]);
