// The report editor, /report?study=UID: header, structured template fields + free text, AI marks,
// phrases, key images (drag in), save (autosave), submit, sign, return, amend, versions, preview.

import { getJSON, h, tagStr, fmtDate, NOT_IMAGES, type DicomJson } from "./api";
import { lang, t, onLangChange } from "./i18n";
import {
  call, reportUrl, thumbUrl, renderedUrl,
  type Field, type KeyRef, type Me, type Phrase, type Report, type Template, type Version,
} from "./report_api";

const AUTOSAVE_MS = 8000;
const LOCK_RENEW_MS = 4 * 60 * 1000;
const LOCK_POLL_MS = 20000;
const DRAG_TYPE = "application/x-radcloud-image";
const SIGNED = new Set(["final", "amended"]);

/** A link to a study's report page (for the study list row and the viewer's toolbar). */
export function reportButton(studyUid: string): HTMLElement {
  const a = h("a", { class: "btn small rp-open", href: `/report?study=${encodeURIComponent(studyUid)}` }, t("report.open"));
  onLangChange(() => { a.textContent = t("report.open"); });
  return a;
}

interface StudyFacts { name: string; id: string; sex: string; birth: string; accession: string; date: string; description: string; modalities: string; referring: string }
interface Source { series_uid: string; sop_uid: string; frame: number; label: string }

const txt = (v: Record<string, string> | undefined, fallback = ""): string => (v ? v[lang()] || v.en || fallback : fallback);

function age(birth: string, on: string): string {
  if (!/^\d{8}$/.test(birth) || !/^\d{8}$/.test(on)) return "";
  let y = Number(on.slice(0, 4)) - Number(birth.slice(0, 4));
  if (on.slice(4) < birth.slice(4)) y -= 1;
  return y >= 0 ? t("report.years", { n: y }) : "";
}

const when = (iso: string | null | undefined): string => (iso ? new Date(iso).toLocaleString(lang() === "zh" ? "zh-CN" : "en-GB", { dateStyle: "short", timeStyle: "short" }) : "");

export async function reportPage(root: HTMLElement): Promise<void> {
  const study = new URLSearchParams(location.search).get("study") || "";
  root.replaceChildren();
  if (!study) {
    root.append(h("p", { class: "rp-empty" }, t("report.noStudy")));
    return;
  }
  const [me, templates, facts] = await Promise.all([
    call<Me>("GET", "/api/auth/me"),
    call<Template[]>("GET", "/api/report-templates"),
    studyFacts(study),
  ]);
  new Editor(root, study, me, templates, facts).start();
}

async function studyFacts(study: string): Promise<StudyFacts> {
  const found = await getJSON<DicomJson[]>(`/dicom-web/studies?StudyInstanceUID=${encodeURIComponent(study)}&includefield=00100030,00100040,00080090`, "application/dicom+json");
  const ds = found[0];
  const mods = (ds?.["00080061"]?.Value || []).filter((m) => !NOT_IMAGES.has(String(m))).join("/");
  return {
    name: tagStr(ds, "00100010"), id: tagStr(ds, "00100020"), sex: tagStr(ds, "00100040"), birth: tagStr(ds, "00100030"),
    accession: tagStr(ds, "00080050"), date: tagStr(ds, "00080020"), description: tagStr(ds, "00081030"),
    modalities: mods, referring: tagStr(ds, "00080090"),
  };
}

class Editor {
  report: Report | null = null;
  suggested = "generic";
  values: Record<string, unknown> = {};
  dirty = new Set<string>();
  /** Edit counter: what changed after a save was sent stays local (and dirty) when it returns. */
  seq = 0;
  changedAt = new Map<string, number>();
  keys: KeyRef[] = [];
  keysDirty = false;
  critical = { flag: false, note: "" };
  criticalDirty = false;
  accept = new Set<string>();
  amending = false;
  holdsLock = false;
  lastText: string | null = null;
  textareas = new Map<string, HTMLTextAreaElement>();
  phrases: Phrase[] = [];
  versions: Version[] = [];
  sources: Source[] | null = null;
  keySources: Source[] = [];
  queue: Promise<unknown> = Promise.resolve();
  saveTimer = 0;
  busy = false;
  msgEl = h("div", { id: "rp-msg", class: "rp-msg", role: "status", "aria-live": "polite" });
  lastMsg: { key: string; args: Record<string, string | number>; error: boolean; raw?: string } | null = null;

  constructor(
    readonly root: HTMLElement, readonly study: string, readonly me: Me,
    readonly templates: Template[], readonly facts: StudyFacts,
  ) {}

  can(perm: string): boolean { return this.me.permissions.includes(perm); }
  get canWrite(): boolean { return this.can("report.write"); }
  get canSign(): boolean { return this.can("report.sign"); }
  get template(): Template | undefined {
    const name = this.report?.template || this.suggested;
    return this.templates.find((x) => x.name === name);
  }
  get lockedByOther(): boolean {
    const l = this.report?.lock;
    return !!l && l.holder !== this.me.username;
  }
  get editable(): boolean {
    const r = this.report;
    if (!r || this.lockedByOther) return false;
    if (SIGNED.has(r.status)) return this.amending && this.canSign;
    if (r.status === "draft") return this.canWrite;
    return r.status === "preliminary" && this.canSign;
  }
  get isDirty(): boolean { return this.dirty.size > 0 || this.keysDirty || this.criticalDirty || this.accept.size > 0; }

  async start(): Promise<void> {
    document.body.classList.add("report-mode");
    onLangChange(() => this.render());
    window.addEventListener("beforeunload", (e) => { if (this.isDirty && this.editable) e.preventDefault(); });
    window.addEventListener("pagehide", () => {
      if (this.holdsLock) void fetch(reportUrl(this.study, "/lock"), { method: "DELETE", credentials: "same-origin", keepalive: true });
    });
    window.setInterval(() => { if (this.holdsLock && this.editable) void this.takeLock(); }, LOCK_RENEW_MS);
    // someone else editing: look again now and then, and take over once they are done
    window.setInterval(() => { if (this.lockedByOther && !this.busy) void this.run(() => this.load()); }, LOCK_POLL_MS);
    await this.load();
    void this.loadSources();
    if (this.canWrite) void this.loadPhrases();
  }

  /** (Re)read the report from the server; local edits are dropped. */
  async load(): Promise<void> {
    const got = await call<{ report: Report | null; suggested_template: string | null }>("GET", reportUrl(this.study));
    this.adopt(got.report);
    if (got.suggested_template) this.suggested = got.suggested_template;
    if (this.report && this.editable && !this.holdsLock) await this.takeLock();
    this.render();
    await this.loadVersions();
  }

  /** Take the server's report; edits made after ``sentSeq`` (typed while saving) are kept. */
  adopt(r: Report | null, sentSeq = Infinity): void {
    const later = (k: string) => (this.changedAt.get(k) ?? 0) > sentSeq;
    const kept = new Map([...this.dirty].filter(later).map((k) => [k, this.values[k]] as const));
    const keepKeys = later("#keys"), keepCritical = later("#critical");
    this.report = r;
    this.dirty.clear();
    this.accept.clear();
    this.keysDirty = this.criticalDirty = false;
    if (!r) return;
    this.values = { ...r.content.fields };
    for (const [k, v] of kept) { this.values[k] = v; this.dirty.add(k); }
    if (keepKeys) this.keysDirty = true;
    else this.keys = r.content.key_images.map((k) => ({ ...k }));
    if (keepCritical) this.criticalDirty = true;
    else this.critical = { ...r.content.critical };
    this.holdsLock = !!r.lock && r.lock.holder === this.me.username;
    document.title = `${t("report.title")} · ${this.facts.name || r.patient_name}`;
  }

  async takeLock(): Promise<void> {
    try {
      await call("POST", reportUrl(this.study, "/lock"));
      this.holdsLock = true;
    } catch (e) {
      this.holdsLock = false;
      if ((e as { status?: number }).status === 423) {
        const got = await call<{ report: Report | null }>("GET", reportUrl(this.study));
        this.adopt(got.report);
        this.render();
      }
    }
  }

  async loadVersions(): Promise<void> {
    if (!this.report) return;
    this.versions = await call<Version[]>("GET", reportUrl(this.study, "/versions"));
    this.renderVersions();
  }

  async loadPhrases(): Promise<void> {
    try {
      this.phrases = await call<Phrase[]>("GET", "/api/report-phrases");
    } catch {
      this.phrases = [];
    }
    this.renderPhrases();
  }

  /** Flagged key images (KOS) first, then one middle image of each image series. */
  async loadSources(): Promise<void> {
    const out: Source[] = [];
    try {
      const flagged = await call<Array<{ series: string; sop: string; frame: number }>>("GET", `/api/studies/${encodeURIComponent(this.study)}/key-images`);
      this.keySources = flagged.map((k, i) => ({ series_uid: k.series, sop_uid: k.sop, frame: k.frame, label: `${t("report.keyImage")} ${i + 1}` }));
    } catch {
      this.keySources = [];
    }
    try {
      const series = await getJSON<DicomJson[]>(`/dicom-web/studies/${this.study}/series`, "application/dicom+json");
      for (const s of series.slice(0, 12)) {
        const modality = tagStr(s, "00080060");
        if (NOT_IMAGES.has(modality)) continue;
        const uid = tagStr(s, "0020000E");
        const inst = await getJSON<DicomJson[]>(`/dicom-web/studies/${this.study}/series/${uid}/instances`, "application/dicom+json");
        if (!inst.length) continue;
        inst.sort((a, b) => Number(tagStr(a, "00200013") || 0) - Number(tagStr(b, "00200013") || 0));
        const mid = inst[Math.floor(inst.length / 2)];
        const label = `${modality} ${tagStr(s, "00200011")} ${tagStr(s, "0008103E")}`.trim();
        out.push({ series_uid: uid, sop_uid: tagStr(mid, "00080018"), frame: 1, label: `${label} · ${tagStr(mid, "00200013")}` });
      }
    } catch {
      /* the flagged key images are enough to work with */
    }
    this.sources = out;
    this.renderSources();
  }

  // ------------------------------------------------------------------ actions

  /** Run server actions one after another (autosave never races a click). */
  run<T>(what: () => Promise<T>): Promise<T | undefined> {
    const next = this.queue.then(async () => {
      this.busy = true;
      this.renderButtons();
      try {
        return await what();
      } catch (e) {
        this.error(e);
        return undefined;
      } finally {
        this.busy = false;
        this.renderButtons();
      }
    });
    this.queue = next.catch(() => undefined);
    return next;
  }

  error(e: unknown): void {
    const status = (e as { status?: number }).status;
    const words = (e as Error).message || String(e);
    this.say("report.refused", { status: status || "", e: words }, true);
    // the server's words stay; say what to do in the user's language in front of them
    let hint = "";
    if (status === 403 && /report\.sign/.test(words)) hint = t("report.signNeedsAttending");
    else if (status === 409 && /AI-filled/.test(words) && this.report) {
      const waiting = new Set(this.report.ai_pending);
      const labels = (this.template?.fields || []).filter((f) => waiting.has(f.key)).map((f) => txt(f.label, f.key));
      hint = t("report.reviewAi", { fields: labels.join(lang() === "zh" ? "、" : ", ") });
    } else if (status === 423) hint = t("report.lockedHint");
    if (hint && this.lastMsg) {
      this.lastMsg.raw = `${hint} — ${t("report.refused", { status: status || "", e: words })}`;
      this.msgEl.textContent = this.lastMsg.raw;
    }
  }

  say(key: string, args: Record<string, string | number> = {}, error = false): void {
    this.lastMsg = { key, args, error };
    this.msgEl.textContent = t(key, args);
    this.msgEl.classList.toggle("error", error);
  }

  edit(): Record<string, unknown> {
    const fields: Record<string, unknown> = {};
    for (const k of this.dirty) fields[k] = this.values[k] ?? null;
    const body: Record<string, unknown> = { version: this.report?.latest_version, fields, accept: [...this.accept] };
    if (this.keysDirty) body.key_images = this.keys.map(({ sop_uid, frame, mode, caption, window }) => ({ sop_uid, frame, mode: mode || "original", caption: caption || "", window: window ?? null }));
    if (this.criticalDirty) body.critical = this.critical;
    return body;
  }

  changed(what?: string): void {
    if (what) this.changedAt.set(what, ++this.seq);
    this.say(this.editable ? "report.unsaved" : "report.readOnly");
    window.clearTimeout(this.saveTimer);
    if (this.editable && !this.amending) this.saveTimer = window.setTimeout(() => void this.save(true), AUTOSAVE_MS);
  }

  async save(auto = false): Promise<boolean> {
    window.clearTimeout(this.saveTimer);
    const done = await this.run(async () => {
      if (!this.report || !this.editable || this.amending) return true;
      if (!this.isDirty) {
        if (!auto) this.say("report.saved", { v: this.report.version, time: when(this.report.updated_at) });
        return true;
      }
      const sent = this.seq;
      const before = this.shape();
      const r = await call<Report>("PUT", reportUrl(this.study), this.edit());
      this.adopt(r, sent);
      this.holdsLock = true;
      // the form is rebuilt only when what it shows changed (status, AI marks): never under the typist
      if (this.shape() === before) this.refreshChrome();
      else this.render();
      this.say(auto ? "report.autosaved" : "report.saved", { v: r.version, time: when(r.updated_at) });
      void this.loadVersions();
      return true;
    });
    return done === true;
  }

  async create(template: string): Promise<void> {
    await this.run(async () => {
      const r = await call<Report>("POST", reportUrl(this.study), { template });
      this.adopt(r);
      this.render();
      this.say("report.created", { v: r.version });
      void this.loadVersions();
    });
  }

  async step(path: string, body: unknown, doneKey: string): Promise<void> {
    if (this.isDirty && this.editable && !this.amending && !(await this.save())) return;
    await this.run(async () => {
      const r = await call<Report>("POST", reportUrl(this.study, path), body);
      this.amending = false;
      this.adopt(r);
      this.render();
      this.say(doneKey, { v: r.version, who: r.signer || r.author });
      void this.loadVersions();
    });
  }

  async amend(reason: string): Promise<void> {
    await this.run(async () => {
      const r = await call<Report>("POST", reportUrl(this.study, "/amend"), { ...this.edit(), reason });
      this.amending = false;
      this.adopt(r);
      this.render();
      this.say("report.amended", { v: r.version });
      void this.loadVersions();
    });
  }

  async attach(src: Source): Promise<void> {
    if (!this.editable) return;
    if (this.keys.some((k) => k.sop_uid === src.sop_uid && k.frame === src.frame)) return;
    const mode = (document.getElementById("rp-mode") as HTMLSelectElement | null)?.value || "original";
    if (mode === "screenshot") {
      const ref = await this.run(async () => {
        const png = await fetch(renderedUrl(this.study, src), { credentials: "same-origin", headers: { Accept: "image/png" } });
        if (!png.ok) throw new Error(`${png.status} ${png.statusText}`);
        return call<KeyRef>("POST", reportUrl(this.study, "/screenshots"), await png.blob(), "image/png");
      });
      if (!ref) return;
      this.keys.push({ ...ref, caption: src.label });
    } else {
      this.keys.push({ series_uid: src.series_uid, sop_uid: src.sop_uid, frame: src.frame, mode: "original", caption: "" });
    }
    this.keysDirty = true;
    this.renderKeys();
    this.changed("#keys");
  }

  insertPhrase(p: Phrase): void {
    if (!this.editable) return;
    const key = this.lastText && this.textareas.has(this.lastText) ? this.lastText
      : p.field && this.textareas.has(p.field) ? p.field : this.textareas.has("findings") ? "findings" : [...this.textareas.keys()][0];
    const ta = key ? this.textareas.get(key) : undefined;
    if (!ta) return;
    const start = ta.selectionStart ?? ta.value.length;
    const end = ta.selectionEnd ?? start;
    const before = ta.value.slice(0, start);
    const sep = before && !/\s$/.test(before) ? " " : "";
    ta.setRangeText(sep + p.text, start, end, "end");
    ta.dispatchEvent(new Event("input", { bubbles: true }));
    ta.focus();
  }

  ask(titleKey: string, withShared = false, seed = ""): Promise<{ a: string; b: string; shared: boolean } | null> {
    // one dialog for "reason" (one box) and "new phrase" (title + text)
    const phrase = titleKey === "report.addPhrase";
    const a = h("input", { type: "text", id: "rp-ask-a", maxlength: phrase ? "128" : "2000", required: "" });
    const b = h("textarea", { id: "rp-ask-b", rows: "4", maxlength: "5000", required: "" });
    b.value = seed;
    const shared = h("input", { type: "checkbox", id: "rp-ask-shared" });
    const ok = h("button", { class: "btn primary", value: "ok", id: "rp-ask-ok" }, t("dlg.ok"));
    const cancel = h("button", { class: "btn", value: "cancel", formnovalidate: "" }, t("dlg.cancel"));
    const form = h("form", { method: "dialog" },
      h("div", { class: "dlg-title" }, t(titleKey)),
      h("label", { class: "rp-lbl" }, t(phrase ? "report.phraseTitle" : "report.reason"), a),
      phrase ? h("label", { class: "rp-lbl" }, t("report.phraseText"), b) : null,
      phrase && withShared ? h("label", { class: "rp-check" }, shared, t("report.phraseShared")) : null,
      h("div", { class: "dlg-actions" }, cancel, ok));
    const dlg = h("dialog", { class: "dlg rp-dlg" }, form);
    document.body.append(dlg);
    dlg.showModal();
    return new Promise((resolve) => {
      dlg.addEventListener("close", () => {
        dlg.remove();
        resolve(dlg.returnValue === "ok" && a.value.trim() ? { a: a.value.trim(), b: b.value, shared: shared.checked } : null);
      });
    });
  }

  // ------------------------------------------------------------------ rendering

  /** What decides the form's build: status, editability, lock, AI mark states. */
  shape(): string {
    const r = this.report;
    const marks = r ? Object.entries(r.content.marks).map(([k, m]) => k + m.state).join() : "";
    return [r?.status, this.editable, this.lockedByOther, this.amending, marks].join("|");
  }

  /** Header and buttons again (after a save that changed nothing the form shows). */
  refreshChrome(): void {
    const head = this.renderHeader();
    this.header.replaceWith(head);
    this.header = head;
    this.renderButtons();
  }

  header!: HTMLElement;
  bar!: HTMLElement;
  form!: HTMLElement;
  side!: HTMLElement;
  keysEl!: HTMLElement;
  phrasesEl!: HTMLElement;
  sourcesEl!: HTMLElement;
  versionsEl!: HTMLElement;

  render(): void {
    const r = this.report;
    const active = document.activeElement as HTMLInputElement | null;
    const focusId = active?.id && this.root.contains(active) ? active.id : "";
    const caret = focusId && "selectionStart" in active! ? [active!.selectionStart, active!.selectionEnd] : null;
    const scroll = this.root.querySelector(".rp")?.scrollTop ?? 0;
    this.textareas.clear();
    this.header = this.renderHeader();
    this.bar = h("div", { class: "rp-bar" });
    this.form = h("section", { class: "rp-form", "aria-label": t("report.form") });
    this.keysEl = h("div", { id: "rp-keys", class: "rp-keys" });
    this.phrasesEl = h("div", { class: "rp-phrases" });
    this.sourcesEl = h("div", { class: "rp-sources" });
    this.versionsEl = h("ol", { class: "rp-versions" });
    this.side = h("aside", { class: "rp-side" },
      h("details", { class: "rp-panel", open: "" }, h("summary", {}, t("report.studyImages")), this.sourcesEl),
      this.canWrite && this.editable ? h("details", { class: "rp-panel", open: "" }, h("summary", {}, t("report.phrases")), this.phrasesEl) : null,
      h("details", { class: "rp-panel", open: "" }, h("summary", {}, t("report.versions")), this.versionsEl));
    const body = h("div", { class: "rp-body" }, this.form, this.side);
    const page = h("div", { class: "rp", "data-status": r?.status || "none", "data-editable": String(this.editable) }, this.header, this.bar, this.msgEl, body);
    if (this.lastMsg) this.msgEl.textContent = this.lastMsg.raw ?? t(this.lastMsg.key, this.lastMsg.args);
    this.root.replaceChildren(page);
    if (!r) this.renderStart();
    else this.renderForm();
    this.renderButtons();
    this.renderPhrases();
    this.renderSources();
    this.renderVersions();
    const again = focusId ? (document.getElementById(focusId) as HTMLInputElement | null) : null;
    if (again && !again.disabled) {
      again.focus({ preventScroll: true });
      if (caret && caret[0] != null) try { again.setSelectionRange(caret[0], caret[1]); } catch { /* not a text box */ }
    }
    page.scrollTop = scroll;
  }

  renderHeader(): HTMLElement {
    const f = this.facts, r = this.report;
    const fact = (k: string, v: string) => (v ? h("span", { class: "rp-fact" }, h("small", {}, t(k)), v) : null);
    const badges = h("div", { class: "rp-badges" });
    if (r) {
      badges.append(h("span", { class: `rp-status rp-s-${r.status}`, id: "rp-status" }, t(`report.st.${r.status}`)));
      if (r.critical || this.critical.flag) badges.append(h("span", { class: "rp-crit-badge" }, t("report.criticalBadge")));
      if (this.lockedByOther && r.lock) badges.append(h("span", { class: "rp-lock", id: "rp-lock" }, t("report.lockedBy", { who: r.lock.holder, until: new Date(r.lock.expires_at).toLocaleTimeString(lang() === "zh" ? "zh-CN" : "en-GB", { timeStyle: "short" }) })));
      if (r.signer && SIGNED.has(r.status)) badges.append(h("span", { class: "rp-signed" }, t("report.signedBy", { who: r.signer, when: when(r.signed_at) })));
      else if (r.author) badges.append(h("span", { class: "rp-author" }, t("report.author", { who: r.author })));
    }
    return h("header", { class: "rp-head" },
      h("div", { class: "rp-patient" }, h("strong", { class: "rp-name" }, f.name || r?.patient_name || "—"),
        fact("report.pid", f.id), fact("report.sex", [f.sex, age(f.birth, f.date)].filter(Boolean).join(" · ")),
        fact("report.accession", f.accession), fact("report.date", fmtDate(f.date)), fact("report.modality", f.modalities),
        fact("report.exam", f.description), fact("report.referring", f.referring)),
      badges);
  }

  renderStart(): void {
    if (!this.canWrite) {
      this.form.append(h("p", { class: "rp-empty" }, t("report.none")));
      return;
    }
    const sel = h("select", { id: "rp-template" });
    for (const tp of this.templates) {
      const o = h("option", { value: tp.name }, txt(tp.title, tp.name) + (tp.name === this.suggested ? ` (${t("report.suggested")})` : ""));
      if (tp.name === this.suggested) o.selected = true;
      sel.append(o);
    }
    const go = h("button", { class: "btn primary", id: "rp-start", type: "button" }, t("report.start"));
    go.addEventListener("click", () => void this.create(sel.value));
    this.form.append(h("div", { class: "rp-start" }, h("p", {}, t("report.none")),
      h("label", { class: "rp-lbl" }, t("report.template"), sel), go));
  }

  renderForm(): void {
    const r = this.report!, tp = this.template, ed = this.editable;
    this.form.append(h("h2", { class: "rp-title" }, tp ? txt(tp.title, tp.name) : r.template));
    if (SIGNED.has(r.status) && !this.amending) this.form.append(h("p", { class: "rp-note" }, t("report.signedReadOnly")));
    else if (r.status === "preliminary" && !this.canSign) this.form.append(h("p", { class: "rp-note" }, t("report.withAttending")));
    if (this.amending) {
      const reason = h("textarea", { id: "rp-amend-reason", rows: "2", maxlength: "2000", placeholder: t("report.amendReasonHint") });
      this.form.append(h("label", { class: "rp-lbl rp-amend" }, t("report.amendReason"), reason));
    }
    // critical finding
    const flag = h("input", { type: "checkbox", id: "rp-critical" });
    flag.checked = this.critical.flag;
    flag.disabled = !ed;
    const note = h("input", { type: "text", id: "rp-critical-note", maxlength: "2000", placeholder: t("report.criticalNote") });
    note.value = this.critical.note;
    note.disabled = !ed;
    note.hidden = !this.critical.flag;
    const critBox = h("div", { class: "rp-critical" + (this.critical.flag ? " on" : "") }, h("label", { class: "rp-check" }, flag, t("report.critical")), note);
    flag.addEventListener("change", () => {
      this.critical = { ...this.critical, flag: flag.checked };
      this.criticalDirty = true;
      note.hidden = !flag.checked;
      critBox.classList.toggle("on", flag.checked);
      this.changed("#critical");
    });
    note.addEventListener("input", () => { this.critical = { ...this.critical, note: note.value }; this.criticalDirty = true; this.changed("#critical"); });
    if (!(SIGNED.has(r.status) && !this.amending && !this.critical.flag)) this.form.append(critBox);
    const grid = h("div", { class: "rp-grid" });
    const signedView = SIGNED.has(r.status) && !this.amending;
    for (const f of tp?.fields || []) {
      const v = this.values[f.key];
      if (signedView && (v == null || v === "")) continue; // a signed report reads like the document
      grid.append(this.renderField(f, ed));
    }
    this.form.append(grid);
    // key images in the report
    const drop = this.keysEl;
    drop.addEventListener("dragover", (e) => { if (this.editable) { e.preventDefault(); drop.classList.add("over"); } });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      const data = e.dataTransfer?.getData(DRAG_TYPE);
      if (data) void this.attach(JSON.parse(data) as Source);
    });
    this.form.append(h("div", { class: "rp-keys-wrap" }, h("div", { class: "rp-sub" }, t("report.keyImages")), drop));
    this.renderKeys();
  }

  renderField(f: Field, ed: boolean): HTMLElement {
    const mark = this.report?.content.marks[f.key];
    const label = txt(f.label, f.key) + (f.required ? " *" : "");
    const wrap = h("div", { class: `rp-field rp-t-${f.type}`, "data-key": f.key });
    const head = h("div", { class: "rp-flabel" }, h("label", { for: `rp-f-${f.key}` }, label));
    wrap.append(head);
    const v = this.values[f.key];
    const set = (value: unknown) => {
      this.values[f.key] = value;
      this.dirty.add(f.key);
      if (mark?.state === "pending") {
        wrap.classList.toggle("rp-ai-pending", this.accept.has(f.key) || value === mark.value);
        const b = head.querySelector(".rp-ai");
        if (b && value !== mark.value) b.textContent = t("report.aiEdited");
      }
      this.changed(f.key);
    };
    let input: HTMLElement;
    if (f.type === "text") {
      const ta = h("textarea", { id: `rp-f-${f.key}`, "data-field": f.key, rows: ["findings", "impression"].includes(f.key) ? "6" : "2", maxlength: "20000" });
      ta.value = v == null ? "" : String(v);
      ta.readOnly = !ed;
      ta.addEventListener("input", () => set(ta.value === "" ? null : ta.value));
      ta.addEventListener("focus", () => { this.lastText = f.key; });
      this.textareas.set(f.key, ta);
      input = ta;
    } else if (f.type === "number") {
      const step = f.decimals != null ? String(10 ** -f.decimals) : "1";
      const n = h("input", { id: `rp-f-${f.key}`, "data-field": f.key, type: "number", step, inputmode: "decimal" });
      if (f.min != null) n.min = String(f.min);
      if (f.max != null) n.max = String(f.max);
      n.value = v == null ? "" : String(v);
      n.disabled = !ed;
      n.addEventListener("input", () => {
        if (n.value !== "" && !n.validity.valid) { n.classList.add("bad"); return; }
        n.classList.remove("bad");
        set(n.value === "" ? null : Number(n.value));
      });
      input = h("span", { class: "rp-num" }, n, f.unit ? h("span", { class: "rp-unit" }, f.unit) : null);
    } else if (f.type === "bool") {
      const c = h("input", { id: `rp-f-${f.key}`, "data-field": f.key, type: "checkbox" });
      c.checked = v === true;
      c.disabled = !ed;
      c.addEventListener("change", () => set(c.checked));
      input = c;
      wrap.classList.add("rp-inline");
    } else {
      const sel = h("select", { id: `rp-f-${f.key}`, "data-field": f.key }, h("option", { value: "" }, "—"));
      for (const [code, meaning] of Object.entries(f.options || {})) {
        const shown = f.type === "category" ? `${f.system_label || ""} ${code} — ${txt(meaning)}`.trim() : txt(meaning, code);
        sel.append(h("option", { value: code }, shown));
      }
      sel.value = v == null ? "" : String(v);
      sel.disabled = !ed;
      sel.addEventListener("change", () => set(sel.value === "" ? null : sel.value));
      input = sel;
    }
    wrap.append(input);
    if (mark) {
      const pending = mark.state === "pending";
      head.append(h("span", { class: `rp-ai rp-ai-${mark.state}`, title: t("report.aiFrom", { src: mark.source }) },
        t(pending ? "report.ai" : mark.state === "accepted" ? "report.aiAccepted" : "report.aiEdited")));
      if (pending) {
        wrap.classList.add("rp-ai-pending");
        if (ed) {
          const ok = h("button", { class: "btn small rp-accept", type: "button", "data-accept": f.key }, t("report.accept"));
          ok.addEventListener("click", () => {
            this.accept.add(f.key);
            ok.remove();
            void this.save();
          });
          head.append(ok);
        }
      }
    }
    return wrap;
  }

  renderKeys(): void {
    const el = this.keysEl, ed = this.editable;
    el.replaceChildren();
    el.classList.toggle("editable", ed);
    if (!this.keys.length) el.append(h("div", { class: "rp-drop-hint" }, t(ed ? "report.dropHere" : "report.noKeys")));
    this.keys.forEach((k, i) => {
      const cap = h("input", { type: "text", class: "rp-caption", maxlength: "255", placeholder: t("report.caption") });
      cap.value = k.caption || "";
      cap.disabled = !ed;
      cap.addEventListener("input", () => { k.caption = cap.value; this.keysDirty = true; this.changed("#keys"); });
      const item = h("figure", { class: "rp-key", "data-sop": k.sop_uid },
        h("img", { src: thumbUrl(this.study, k), alt: t("report.keyImage"), width: "128", height: "128" }),
        h("figcaption", {}, k.mode === "screenshot" ? h("small", { class: "rp-mode" }, t("report.asScreenshot")) : null, cap));
      if (ed) {
        const del = h("button", { class: "rp-del", type: "button", title: t("report.remove"), "aria-label": t("report.remove") }, "×");
        del.addEventListener("click", () => { this.keys.splice(i, 1); this.keysDirty = true; this.renderKeys(); this.changed("#keys"); });
        item.append(del);
      }
      el.append(item);
    });
  }

  renderSources(): void {
    const el = this.sourcesEl;
    if (!el) return;
    el.replaceChildren();
    const mode = h("select", { id: "rp-mode", title: t("report.attachAs") },
      h("option", { value: "original" }, t("report.asOriginal")), h("option", { value: "screenshot" }, t("report.asScreenshot")));
    if (this.editable) el.append(h("label", { class: "rp-lbl rp-inline" }, t("report.attachAs"), mode));
    const group = (title: string, list: Source[]) => {
      if (!list.length) return;
      const row = h("div", { class: "rp-src-row" });
      for (const s of list) {
        const img = h("img", { src: thumbUrl(this.study, s), alt: s.label, width: "96", height: "96", draggable: "false" });
        const fig = h("figure", { class: "rp-src", draggable: String(this.editable), title: s.label, "data-sop": s.sop_uid }, img, h("figcaption", {}, s.label));
        fig.addEventListener("dragstart", (e) => {
          e.dataTransfer?.setData(DRAG_TYPE, JSON.stringify(s));
          e.dataTransfer?.setData("text/plain", s.label);
          if (e.dataTransfer) e.dataTransfer.effectAllowed = "copy";
        });
        if (this.editable) {
          const add = h("button", { class: "btn small rp-add", type: "button", title: t("report.addImage") }, "+");
          add.addEventListener("click", () => void this.attach(s));
          fig.append(add);
        }
        row.append(fig);
      }
      el.append(h("div", { class: "rp-sub" }, title), row);
    };
    group(t("report.flagged"), this.keySources);
    group(t("report.series"), this.sources || []);
    if (this.sources === null) el.append(h("p", { class: "rp-muted" }, t("app.loading")));
    else if (!this.keySources.length) el.append(h("p", { class: "rp-muted" }, t("report.flagHint")));
    if (this.editable) el.append(h("p", { class: "rp-muted" }, t("report.dragHint")));
  }

  renderPhrases(): void {
    const el = this.phrasesEl;
    if (!el || !this.canWrite) return;
    el.replaceChildren();
    const list = h("div", { class: "rp-phrase-list" });
    for (const p of this.phrases) {
      const b = h("button", { class: "rp-phrase", type: "button", title: p.text },
        h("span", {}, p.title), h("small", {}, t(p.shared ? "report.dept" : "report.mine")));
      if (!this.editable) b.disabled = true;
      b.addEventListener("mousedown", (e) => e.preventDefault()); // keep the cursor in the text box
      b.addEventListener("click", () => this.insertPhrase(p));
      list.append(b);
    }
    if (!this.phrases.length) list.append(h("p", { class: "rp-muted" }, t("report.noPhrases")));
    const add = h("button", { class: "btn small", id: "rp-phrase-add", type: "button" }, t("report.addPhrase"));
    add.addEventListener("click", async () => {
      const ta = this.lastText ? this.textareas.get(this.lastText) : undefined;
      const seed = ta && ta.selectionEnd! > ta.selectionStart! ? ta.value.slice(ta.selectionStart!, ta.selectionEnd!) : "";
      const got = await this.ask("report.addPhrase", this.can("templates.manage"), seed);
      if (!got || !got.b.trim()) return;
      await this.run(async () => {
        await call("POST", "/api/report-phrases", { title: got.a, text: got.b, field: "", shared: got.shared });
        this.say("report.phraseAdded", { title: got.a });
        await this.loadPhrases();
      });
    });
    el.append(h("p", { class: "rp-muted" }, t("report.phraseHint")), list, add);
  }

  renderVersions(): void {
    const el = this.versionsEl;
    if (!el) return;
    el.replaceChildren();
    for (const v of [...this.versions].reverse()) {
      const link = h("a", { href: reportUrl(this.study, `/html?version=${v.version}&lang=${lang()}`), target: "_blank", rel: "noopener" }, `v${v.version}`);
      el.append(h("li", { class: `rp-v rp-v-${v.action}` }, link, " ", h("span", { class: "rp-v-act" }, t(`report.act.${v.action}`)),
        " · ", v.user, " · ", h("time", {}, when(v.created_at)), v.reason ? h("div", { class: "rp-v-reason" }, v.reason) : null));
    }
    if (!this.versions.length) el.append(h("li", { class: "rp-muted" }, "—"));
  }

  renderButtons(): void {
    const bar = this.bar, r = this.report;
    if (!bar) return;
    bar.replaceChildren();
    const btn = (id: string, key: string, on: () => void, cls = "btn") => {
      const b = h("button", { class: cls, id, type: "button" }, t(key));
      b.disabled = this.busy;
      b.addEventListener("click", on);
      bar.append(b);
      return b;
    };
    if (r) {
      const st = r.status;
      if (!SIGNED.has(st) && this.editable) btn("rp-save", "report.save", () => void this.save());
      if (st === "draft" && this.canWrite && this.editable) btn("rp-submit", "report.submit", () => void this.step("/submit", { version: r.latest_version }, "report.submitted"));
      if (st === "preliminary" && this.canSign && this.editable) {
        btn("rp-return", "report.return", async () => {
          const got = await this.ask("report.returnTitle");
          if (got) await this.step("/return", { reason: got.a }, "report.returned");
        });
      }
      if (!SIGNED.has(st) && (this.canWrite || this.canSign) && !this.lockedByOther) {
        const sign = btn("rp-sign", "report.sign", () => void this.step("/sign", { version: this.report?.latest_version }, "report.signed"), "btn primary");
        if (!this.canSign) {
          // shown, so the resident learns why: the server's refusal is what they read
          sign.classList.add("rp-muted-btn");
          sign.title = t("report.signNeedsAttending");
        }
      }
      if (SIGNED.has(st) && this.canSign && !this.amending) btn("rp-amend", "report.amend", () => { this.amending = true; this.render(); this.say("report.amending"); });
      if (this.amending) {
        btn("rp-amend-sign", "report.amendSign", () => {
          const reason = (document.getElementById("rp-amend-reason") as HTMLTextAreaElement).value.trim();
          if (!reason) { this.say("report.needReason", {}, true); return; }
          void this.amend(reason);
        }, "btn primary");
        btn("rp-amend-cancel", "dlg.cancel", () => { this.amending = false; this.adopt(this.report); this.render(); });
      }
      bar.append(h("span", { class: "spacer" }));
      const l = lang();
      bar.append(
        h("a", { class: "btn", id: "rp-html", href: reportUrl(this.study, `/html?lang=${l}`), target: "_blank", rel: "noopener" }, t("report.previewHtml")),
        h("a", { class: "btn", id: "rp-pdf", href: reportUrl(this.study, `/pdf?lang=${l}`), target: "_blank", rel: "noopener" }, t("report.previewPdf")));
    }
    bar.append(h("a", { class: "btn", href: `/viewer?study=${encodeURIComponent(this.study)}` }, t("report.images")));
  }
}
