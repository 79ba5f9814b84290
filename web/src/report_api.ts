// The report editor's server calls and the shapes it reads (see radcloud.web.routes.reports).

import { ApiError, signIn } from "./api";

export type Text2 = Record<string, string>;

export interface Field {
  key: string;
  type: "text" | "number" | "choice" | "category" | "bool";
  label: Text2;
  unit?: string;
  min?: number;
  max?: number;
  decimals?: number;
  required?: boolean;
  options?: Record<string, Text2>;
  system?: string;
  system_label?: string;
}

export interface Template {
  name: string;
  title: Text2;
  fields: Field[];
  builtin?: boolean;
}

export interface KeyRef {
  sop_uid: string;
  series_uid: string;
  frame: number;
  mode?: "original" | "screenshot";
  caption?: string;
  window?: [number, number] | null;
  source?: string;
  sop_class_uid?: string;
}

export interface Mark {
  by: string;
  source: string;
  value: unknown;
  state: "pending" | "accepted" | "edited";
}

export interface Content {
  template: string;
  fields: Record<string, unknown>;
  marks: Record<string, Mark>;
  key_images: KeyRef[];
  critical: { flag: boolean; note: string };
}

export interface Report {
  study_uid: string;
  accession_number: string;
  patient_id: string;
  patient_name: string;
  status: "draft" | "preliminary" | "final" | "amended";
  version: number;
  latest_version: number;
  template: string;
  author: string;
  signer: string;
  signed_at: string | null;
  critical: boolean;
  lock: { holder: string; user_id: number | null; expires_at: string } | null;
  content: Content;
  ai_pending: string[];
  sr_sop_uid: string;
  pdf_sop_uid: string;
  updated_at: string;
}

export interface Version {
  version: number;
  action: string;
  status: string;
  user: string;
  reason: string;
  created_at: string;
}

export interface Phrase {
  id: number;
  title: string;
  text: string;
  field: string;
  shared: boolean;
}

export interface Me {
  username: string;
  display_name: string;
  permissions: string[];
}

/** A JSON call with the session cookie; a refusal throws ApiError carrying the server's own words. */
export async function call<T>(method: string, url: string, body?: unknown, type = "application/json"): Promise<T> {
  const init: RequestInit = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
  if (body !== undefined) {
    init.headers = { ...init.headers, "Content-Type": type };
    init.body = body instanceof Blob ? body : JSON.stringify(body);
  }
  const r = await fetch(url, init);
  if (r.status === 401) signIn();
  if (!r.ok) {
    let detail = r.statusText;
    try {
      const p = await r.json();
      detail = typeof p.detail === "string" ? p.detail : p.title || JSON.stringify(p.detail) || detail;
    } catch {
      /* not JSON */
    }
    throw new ApiError(r.status, detail);
  }
  if (r.status === 204) return undefined as T;
  return (await r.json()) as T;
}

export const reportUrl = (study: string, tail = ""): string => `/api/studies/${encodeURIComponent(study)}/report${tail}`;

export const thumbUrl = (study: string, ref: { series_uid: string; sop_uid: string; frame?: number }): string =>
  `/dicom-web/studies/${study}/series/${ref.series_uid}/instances/${ref.sop_uid}/frames/${ref.frame || 1}/thumbnail`;

export const renderedUrl = (study: string, ref: { series_uid: string; sop_uid: string; frame?: number }): string =>
  `/dicom-web/studies/${study}/series/${ref.series_uid}/instances/${ref.sop_uid}/frames/${ref.frame || 1}/rendered`;
