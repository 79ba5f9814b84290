// The patient's page of a share link (/s?t=…): identity check, then report, e-film, images,
// downloads and sharing onward.  Plain JavaScript, no framework, one file: it must load fast
// on a thin link.  Every piece of data comes from /api/s/… (token in the query, share-session
// cookie set by the identity check) and is put into the page as text, never as markup.
"use strict";

(() => {
  const token = new URLSearchParams(location.search).get("t") || "";
  const $main = document.getElementById("main");
  const $title = document.getElementById("title");
  const $back = document.getElementById("back");
  const $lang = document.getElementById("lang");

  // ------------------------------------------------------------------ words

  const T = {
    zh: {
      results: "检查结果", yourResults: "您的检查结果", validUntil: "有效期至", viewsLeft: "剩余打开次数",
      deid: "此分享已去除姓名、病历号等个人信息。", loading: "加载中…",
      "q.phone4": "请输入您手机号码的后四位", "q.id4": "请输入您病历号（患者ID）的后四位",
      "q.code": "请输入分享人提供的验证码", "q.none": "点击下方按钮查看检查结果",
      open: "查看", wrong: "答案不正确，还可尝试 {n} 次。", wrongAny: "答案不正确。", needAnswer: "请输入答案。",
      report: "报告", film: "电子胶片", images: "影像", download: "下载", share: "分享",
      reportHint: "诊断报告", filmHint: "关键图像与结论", imagesHint: "逐层浏览 · 窗宽窗位",
      downloadHint: "原始 DICOM · PDF", shareHint: "限时链接 · 二维码",
      exams: "检查记录", filesN: "{n} 个文件", series: "序列", imagesN: "{n} 幅图像", seriesN: "{n} 个序列",
      notSigned: "报告尚未签发，请稍后再查看。", noReport: "此链接不提供报告。",
      pdf: "下载 PDF", zoomIn: "放大", zoomOut: "缩小", reset: "复位",
      measure: "测量", play: "播放", stop: "停止", slice: "层", wl: "窗", "wl.default": "默认",
      "wl.lung": "肺窗", "wl.mediastinum": "纵隔", "wl.bone": "骨窗", "wl.brain": "脑窗", "wl.abdomen": "腹部",
      noSpacing: "无像素间距，单位为像素", swipeHint: "单指上下滑动翻层，双指缩放移动",
      dicomZip: "原始影像（DICOM，含 DICOMDIR）", filmPdf: "电子胶片 PDF", reportPdf: "诊断报告 PDF",
      downloadNote: "DICOM 文件可用任何医学影像软件打开；文件较大，建议在 Wi-Fi 下下载。",
      shareTitle: "分享给医生或家人", expiry: "有效期", needCode: "需要验证码", maxViews: "打开次数上限",
      unlimited: "不限", create: "生成链接", copy: "复制链接", copied: "已复制",
      shareNote: "分享的影像和报告文字会去除姓名、病历号等个人信息；电子胶片不会被分享。有效期不超过本链接的有效期。",
      reportReady: "报告已出", reportPending: "报告待出", allExams: "分享全部 {n} 次检查", deidReport: "此报告已去除姓名、病历号等个人信息，日期已平移。",
      code: "验证码", link: "链接", yourShares: "已分享的链接", revoke: "撤回", revoked: "已撤回",
      expired: "已过期", active: "有效", used_up: "次数已用完", locked: "已锁定", views: "已打开",
      noShares: "还没有分享过。", hours: "{n} 小时", days: "{n} 天", months: "{n} 个月",
      sessionOver: "请重新验证身份。", failed: "出错了，请重试。", male: "男", female: "女",
      ageY: "岁", pinchHint: "双指缩放，拖动查看",
    },
    en: {
      results: "Results", yourResults: "Your results", validUntil: "Valid until", viewsLeft: "Opens left",
      deid: "Names, IDs and other personal details are removed from this share.", loading: "Loading…",
      "q.phone4": "Enter the last 4 digits of your phone number",
      "q.id4": "Enter the last 4 characters of your patient ID",
      "q.code": "Enter the code the sender gave you", "q.none": "Tap below to see the results",
      open: "Open", wrong: "Wrong answer. {n} attempt(s) left.", wrongAny: "Wrong answer.", needAnswer: "Please enter the answer.",
      report: "Report", film: "E-film", images: "Images", download: "Download", share: "Share",
      reportHint: "Radiology report", filmHint: "Key images and findings", imagesHint: "Scroll slices · window",
      downloadHint: "Original DICOM · PDF", shareHint: "Timed link · QR code",
      exams: "Exams", filesN: "{n} files", series: "Series", imagesN: "{n} images", seriesN: "{n} series",
      notSigned: "The report is not signed yet. Please check again later.", noReport: "This link carries no report.",
      pdf: "Download PDF", zoomIn: "Zoom in", zoomOut: "Zoom out", reset: "Reset",
      measure: "Measure", play: "Play", stop: "Stop", slice: "Slice", wl: "W/L", "wl.default": "Default",
      "wl.lung": "Lung", "wl.mediastinum": "Mediast.", "wl.bone": "Bone", "wl.brain": "Brain", "wl.abdomen": "Abdomen",
      noSpacing: "no pixel spacing: length in pixels", swipeHint: "Swipe up/down for slices, pinch to zoom",
      dicomZip: "Original images (DICOM with DICOMDIR)", filmPdf: "E-film PDF", reportPdf: "Report PDF",
      downloadNote: "DICOM files open in any medical imaging viewer. They are large: Wi-Fi recommended.",
      shareTitle: "Share with a doctor or family", expiry: "Valid for", needCode: "Require a code", maxViews: "Opens allowed",
      unlimited: "Unlimited", create: "Create link", copy: "Copy link", copied: "Copied",
      shareNote: "Shared images and report text have names and IDs removed; the e-film is not shared. A shared link never outlives this one.",
      reportReady: "Report ready", reportPending: "Report pending", allExams: "Share all {n} exams", deidReport: "Names and IDs are removed from this report; dates are shifted.",
      code: "Code", link: "Link", yourShares: "Links you shared", revoke: "Withdraw", revoked: "Withdrawn",
      expired: "Expired", active: "Active", used_up: "Used up", locked: "Locked", views: "Opened",
      noShares: "Nothing shared yet.", hours: "{n} hours", days: "{n} days", months: "{n} months",
      sessionOver: "Please confirm who you are again.", failed: "Something went wrong. Please retry.",
      male: "male", female: "female", ageY: "y", pinchHint: "Pinch to zoom, drag to move",
    },
  };
  //: Why a link does not open (the same words as the server's pages), by status.
  const STOP = {
    404: ["链接无效", "Link not found", "此链接不存在，请检查是否完整复制。"],
    410: ["链接已失效", "Link no longer valid", "此链接已过期、被撤回或次数已用完，请向医院或分享人索取新链接。"],
    423: ["链接已锁定", "Link locked", "验证错误次数过多，此链接已锁定，请向医院索取新链接。"],
    429: ["尝试次数过多", "Too many attempts", "此网络的失败尝试过多，请稍后再试。"],
  };
  //: CT window presets (center, width in HU).
  const PRESETS = [
    ["default", null], ["lung", [-600, 1500]], ["mediastinum", [40, 400]],
    ["bone", [400, 1800]], ["brain", [40, 80]], ["abdomen", [50, 350]],
  ];

  let lang = localStorage.getItem("radcloud.patient.lang") || (new URLSearchParams(location.search).get("lang") === "en" ? "en" : "zh");
  const t = (key, vars) => String(T[lang][key] ?? key).replace(/\{(\w+)\}/g, (_, k) => String(vars?.[k] ?? ""));

  // ------------------------------------------------------------------ DOM and API helpers

  /** An element with attributes/properties and children (strings become text nodes). */
  function h(tag, attrs, ...children) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v == null || v === false) continue;
      if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
      else if (k === "class") el.className = v;
      else if (k in el && typeof v !== "string") el[k] = v;
      else el.setAttribute(k, v === true ? "" : v);
    }
    for (const c of children.flat()) if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
    return el;
  }

  //: Line icons (24×24, stroked): drawn here so that no emoji font is needed.
  const ICONS = {
    report: "M6 2h8l5 5v15H6z M14 2v5h5 M9 12h7 M9 16h7",
    film: "M3 5h18v14H3z M7 5v14 M17 5v14 M3 9h4 M3 15h4 M17 9h4 M17 15h4",
    images: "M12 3a9 9 0 1 1 0 18a9 9 0 1 1 0-18z M12 8a4 4 0 1 1 0 8a4 4 0 1 1 0-8z",
    download: "M12 3v12 M7 10l5 5 5-5 M4 20h16",
    share: "M10 14a4 4 0 0 0 5.7 0l3-3a4 4 0 0 0-5.7-5.7l-1 1 M14 10a4 4 0 0 0-5.7 0l-3 3a4 4 0 0 0 5.7 5.7l1-1",
    measure: "M3 17L17 3l4 4L7 21z M7 13l2 2 M10 10l2 2 M13 7l2 2",
    play: "M7 4l13 8-13 8z", stop: "M6 6h12v12H6z", reset: "M4 12a8 8 0 1 0 2.3-5.7 M4 4v5h5",
    lock: "M6 11h12v10H6z M8 11V7a4 4 0 0 1 8 0v4",
  };
  function icon(name) {
    const NS = "http://www.w3.org/2000/svg";
    const svg = document.createElementNS(NS, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("class", `icon icon-${name}`);
    svg.setAttribute("aria-hidden", "true");
    const path = document.createElementNS(NS, "path");
    path.setAttribute("d", ICONS[name]);
    svg.append(path);
    return svg;
  }

  class ApiError extends Error {
    constructor(status, detail) { super(detail || String(status)); this.status = status; this.detail = detail || ""; }
  }

  //: Calls that read one exam: they name the exam chosen on the timeline (none: the link's own).
  const ONE_EXAM = /^\/api\/s\/(study|series|dicom|report|film)/;
  const q = (path, params = {}) => {
    const u = new URL(path, location.origin);
    u.searchParams.set("t", token);
    if (state.exam && ONE_EXAM.test(path)) u.searchParams.set("study", state.exam);
    for (const [k, v] of Object.entries(params)) if (v != null) u.searchParams.set(k, v);
    return u.pathname + u.search;
  };

  async function api(path, { params, body } = {}) {
    const r = await fetch(body ? path : q(path, params), body ? {
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token, ...body }), credentials: "same-origin",
    } : { credentials: "same-origin" });
    if (!r.ok) {
      let detail = "";
      try { detail = (await r.json()).detail || ""; } catch { /* not JSON */ }
      throw new ApiError(r.status, detail);
    }
    return r.headers.get("content-type")?.includes("json") ? r.json() : r;
  }

  /** A refusal that ends the visit replaces the page; a lapsed session goes back to the question. */
  function fail(error) {
    if (error instanceof ApiError && STOP[error.status]) return stopPage(error.status, error.detail);
    if (error instanceof ApiError && error.status === 401) { state.verified = false; return gate(t("sessionOver")); }
    console.warn(error);
    setMain(h("div", { class: "card error", role: "alert" }, t("failed")));
  }

  function stopPage(status, detail) {
    const [zh, en, text] = STOP[status];
    state.stopped = true;
    stopCine();
    document.body.classList.add("stopped");
    document.querySelector(".bar").hidden = true;
    document.title = `${zh} · ${en}`;
    $main.replaceChildren(h("div", { class: "stop", "data-status": String(status) },
      h("div", { class: "stop-icon" }, "!"), h("h1", {}, zh), h("p", { lang: "zh-CN" }, text),
      h("h2", { lang: "en" }, en), h("p", { lang: "en" }, detail ? detail[0].toUpperCase() + detail.slice(1) : en)));
    expose({ view: "stop", status });
  }

  function setMain(...nodes) {
    $main.className = "";
    $main.replaceChildren(...nodes.filter((n) => n != null && n !== false));
  }

  const fmtDate = (da) => (/^\d{8}$/.test(da || "") ? `${da.slice(0, 4)}-${da.slice(4, 6)}-${da.slice(6, 8)}` : da || "");
  const fmtWhen = (iso) => (iso ? new Date(iso).toLocaleString(lang === "zh" ? "zh-CN" : "en-GB", {
    year: "numeric", month: "2-digit", day: "2-digit", hour: "2-digit", minute: "2-digit" }) : "");
  /** DICOM person name for reading: the ideographic group in Chinese when there is one. */
  function person(pn) {
    const groups = String(pn || "").split("=");
    const pick = lang === "zh" && groups[1] ? groups[1] : groups[0];
    return pick.replace(/\^+/g, " ").trim();
  }

  // ------------------------------------------------------------------ state and routing

  // exams: the link's exams (newest first); exam: the one chosen ("" = the link's own); own: its summary
  const state = { info: null, study: null, series: null, verified: false, stopped: false, view: "",
    exams: null, exam: "", own: null, loading: null };
  window.__patient = { view: "loading" };
  function expose(extra) { Object.assign(window.__patient, extra); }

  function setTitle(text, back) {
    $title.textContent = text;
    document.title = `${text} · ${lang === "zh" ? "Results" : "检查结果"}`;
    $back.hidden = !back;
  }

  let moves = 0; // views opened inside the page: "back" returns through them, never off the page
  $back.addEventListener("click", () => { if (moves > 0) history.back(); else location.hash = ""; });
  $lang.addEventListener("click", () => {
    lang = lang === "zh" ? "en" : "zh";
    localStorage.setItem("radcloud.patient.lang", lang);
    applyLang();
    route();
  });
  function applyLang() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    $lang.textContent = lang === "zh" ? "EN" : "中文";
    $lang.lang = lang === "zh" ? "en" : "zh-CN";
  }
  window.addEventListener("hashchange", () => { moves = location.hash ? moves + 1 : Math.max(0, moves - 1); route(); });

  function route() {
    if (state.stopped) return;
    stopCine();
    if (viewer) window.removeEventListener("resize", viewer.resize);
    viewer = null;
    if (!state.verified) return gate();
    const [name, exam = ""] = location.hash.slice(1).split("/");
    const view = name || "home";
    state.view = view;
    if (exam !== state.exam) { // another exam of the link: its summary and series are fetched anew
      state.exam = exam;
      state.study = exam ? null : state.own;
      state.series = null;
    }
    if (!state.study) return loadStudy();
    const views = { home, exam: examView, report, film, images, download, share };
    (views[view] || home)();
  }

  /** The chosen exam's summary, then the view again. */
  function loadStudy() {
    setMain(h("p", { class: "loading" }, t("loading")));
    if (state.loading) return;
    const want = state.exam;
    state.loading = api("/api/s/study").then((s) => {
      state.loading = null;
      if (state.exam === want) state.study = s;
      route();
    }, (e) => { state.loading = null; fail(e); });
  }
  /** The hash of a view of the chosen exam. */
  const at = (view) => `#${view}${state.exam ? "/" + state.exam : ""}`;

  // ------------------------------------------------------------------ the identity check

  async function start() {
    applyLang();
    if (!token) return stopPage(404, "");
    // the question, and at once (one round trip, not two) whether a share session is still
    // open (a reload within it goes straight in; the cookie is HttpOnly, so ask)
    const [info, study] = await Promise.allSettled([api("/api/s/info"), api("/api/s/study")]);
    if (info.status === "rejected") return fail(info.reason);
    state.info = info.value;
    if (study.status === "fulfilled") {
      state.study = state.own = study.value;
      state.verified = true;
    }
    route();
  }

  function gate(message) {
    const info = state.info;
    setTitle(t("yourResults"), false);
    const method = info.verify;
    const input = h("input", {
      id: "answer", name: "answer", autocomplete: method === "code" ? "one-time-code" : "off",
      inputmode: method === "id4" ? "text" : "numeric", maxlength: method === "code" ? "10" : "4",
      autocapitalize: "characters", spellcheck: "false", "aria-label": t(`q.${method}`),
    });
    const error = h("p", { id: "gate-error", class: "alert", role: "alert", hidden: !message }, message || "");
    const button = h("button", { id: "open", class: "primary", type: "submit" }, t("open"));
    const form = h("form", { id: "gate", class: "card gate", novalidate: true },
      h("div", { class: "lock" }, icon("lock")),
      h("label", { for: "answer", class: "question", "data-verify": method }, t(`q.${method}`)),
      method === "none" ? null : input, error, button,
      h("p", { class: "facts" }, `${t("validUntil")} ${fmtWhen(info.expires_at)}`,
        info.remaining_views != null ? ` · ${t("viewsLeft")} ${info.remaining_views}` : ""),
      info.deidentified ? h("p", { class: "muted" }, t("deid")) : null);
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const answer = input.value.trim();
      if (method !== "none" && !answer) { error.textContent = t("needAnswer"); error.hidden = false; return; }
      button.disabled = true;
      try {
        await api("/api/s/verify", { body: { answer } });
        state.verified = true;
        state.study = state.own = await api("/api/s/study"); // the link's own exam (none chosen yet)
        route();
      } catch (e) {
        button.disabled = false;
        if (e instanceof ApiError && e.status === 401) {
          const n = /(\d+) attempt/.exec(e.detail);
          error.textContent = n ? t("wrong", { n: n[1] }) : t("wrongAny");
          error.hidden = false;
          input.value = "";
          input.focus();
          expose({ view: "gate", wrong: true });
        } else fail(e);
      }
    });
    setMain(form);
    expose({ view: "gate" });
    if (method !== "none") input.focus();
  }

  // ------------------------------------------------------------------ home: the exam and the entry points

  /** The series list, fetched once (the home page starts it; the viewer waits for the same). */
  function loadSeries() {
    if (!state.series) state.series = api("/api/s/series").catch((e) => { state.series = null; throw e; });
    return state.series;
  }

  const who = (s) => [person(s.PatientName), s.PatientSex === "M" ? t("male") : s.PatientSex === "F" ? t("female") : "",
    s.PatientAge ? s.PatientAge.replace(/^0+/, "").replace(/Y$/, t("ageY")) : ""].filter(Boolean).join(" · ");

  /** Home: the exam history as a timeline, one card per exam, newest first; a link with one
   * exam shows that exam and its entries at once. */
  function home() {
    if (!state.exams) {
      setMain(h("p", { class: "loading" }, t("loading")));
      api("/api/s/exams").then((exams) => { state.exams = exams; if (state.view === "home") route(); }, fail);
      return;
    }
    if (state.exams.length <= 1) return examView();
    setTitle(t("results"), false);
    const s = state.own;
    const cards = state.exams.map((e, i) => h("li", { class: "exam" },
      h("div", { class: "exam-date" }, fmtDate(e.StudyDate)),
      h("a", { class: "card exam-card", href: `#exam/${e.study}`, id: `exam-${i}`, "data-study": e.study },
        h("div", { class: "exam-head" }, h("span", { class: "badges" }, e.modalities.map((m) => h("span", { class: "badge" }, m))),
          h("strong", {}, e.StudyDescription || "")),
        h("div", { class: "exam-foot" }, h("span", { class: "muted" }, t("imagesN", { n: e.instances })),
          h("span", { class: `chip ${e.report}` }, t(e.report === "ready" ? "reportReady" : "reportPending")),
          h("span", { class: "chev", "aria-hidden": "true" }, "›")))));
    setMain(
      who(s) ? h("p", { class: "who center" }, who(s)) : null,
      h("section", { class: "timeline-wrap" }, h("h2", { class: "section" }, t("exams")), h("ol", { class: "timeline", id: "timeline" }, cards)),
      h("p", { class: "facts center" }, `${t("validUntil")} ${fmtWhen(state.info.expires_at)}`),
      s.deidentified ? h("p", { class: "muted center" }, t("deid")) : null);
    expose({ view: "home", exams: state.exams.length });
  }

  /** One exam: its card and the entry points (report, e-film, images, download, share). */
  function examView() {
    const single = !state.exams || state.exams.length <= 1;
    const s = state.study;
    setTitle(single ? t("results") : fmtDate(s.StudyDate) || t("results"), !single);
    const badges = h("span", { class: "badges" });
    const counts = h("div", { class: "muted" }, t("imagesN", { n: s.instances }));
    const exam = h("li", { class: "exam" },
      h("div", { class: "exam-date" }, fmtDate(s.StudyDate)),
      h("div", { class: "card exam-card" },
        h("div", { class: "exam-head" }, badges, h("strong", {}, s.StudyDescription || "")),
        who(s) ? h("div", { class: "who" }, who(s)) : null,
        s.InstitutionName ? h("div", { class: "muted" }, s.InstitutionName) : null,
        counts));
    const tile = (id, hint, show = true) => show ? h("a", { class: `tile tile-${id}`, href: at(id), id: `go-${id}` },
      h("span", { class: "tile-icon" }, icon(id)), h("span", { class: "tile-name" }, t(id)),
      h("span", { class: "tile-hint" }, t(hint))) : null;
    setMain(
      h("section", { class: "timeline-wrap" }, single ? h("h2", { class: "section" }, t("exams")) : null, h("ol", { class: "timeline" }, exam)),
      h("nav", { class: "tiles" },
        tile("report", "reportHint", s.report), tile("film", "filmHint", s.film),
        tile("images", "imagesHint"), tile("download", "downloadHint"), tile("share", "shareHint")),
      h("p", { class: "facts center" }, `${t("validUntil")} ${fmtWhen(state.info.expires_at)}`),
      s.deidentified ? h("p", { class: "muted center" }, t("deid")) : null);
    expose({ view: single ? "home" : "exam", exam: state.exam });
    // then what the series tell: the picture series, their modalities, and the first slice warmed
    loadSeries().then((series) => {
      const pictures = series.filter((x) => !NOT_IMAGES.includes(x.Modality));
      badges.replaceChildren(...[...new Set(pictures.map((x) => x.Modality).filter(Boolean))].map((m) => h("span", { class: "badge" }, m)));
      counts.replaceChildren(t("seriesN", { n: pictures.length }), " · ", t("imagesN", { n: pictures.reduce((n, x) => n + x.instances.length, 0) }));
      warmFirstImage(pictures);
      expose({ seriesShown: true });
    }, fail);
  }

  /** The first slice the viewer will show, fetched while the patient reads the home page. */
  const warm = new Map(); // url -> {img, ok}
  function warmFirstImage(pictures) {
    const s = pictures.find((x) => x.instances.length);
    if (!s) return;
    const url = sliceUrl(s, Math.floor((picturesOf(s).length - 1) / 2), viewSize(s), null);
    if (warm.has(url)) return;
    const w = { img: new Image(), ok: false };
    w.img.onload = () => { w.ok = true; };
    w.img.onerror = () => warm.delete(url);
    w.img.src = url;
    warm.set(url, w);
  }

  /** The pictures of a series in order: each frame of each instance (a multi-frame
   * ultrasound or angiography run scrolls and plays like a stack of slices). */
  function picturesOf(series) {
    series.images ??= series.instances.flatMap((inst) =>
      Array.from({ length: Math.max(1, inst.frames || 1) }, (_, f) => [inst.SOPInstanceUID, f + 1]));
    return series.images;
  }

  function sliceUrl(series, i, size, wl) {
    const [sop, frame] = picturesOf(series)[i];
    return q(`/api/s/series/${enc(series.SeriesInstanceUID)}/instances/${enc(sop)}/rendered`,
      { frame: frame > 1 ? String(frame) : null, size: String(size), window: wl ? wl.join(",") : null });
  }

  /** The rendered size to ask for: the screen's pixels (the viewer is about the screen's
   * size), never more than the image has, nor more than 1024. */
  function viewSize(series) {
    const native = Math.max(series.Rows || 512, series.Columns || 512);
    const want = Math.ceil((Math.max(window.innerWidth, window.innerHeight * 0.7) * (window.devicePixelRatio || 1)) / 128) * 128;
    return Math.max(128, Math.min(native, want, 1024));
  }

  // ------------------------------------------------------------------ report

  async function report() {
    setTitle(t("report"), true);
    setMain(h("p", { class: "loading" }, t("loading")));
    let r;
    try {
      r = await api("/api/s/report", { params: { format: "json", lang } });
    } catch (e) {
      if (e instanceof ApiError && e.status === 409) return setMain(h("div", { class: "card notice", id: "report-missing" }, t("notSigned")));
      return fail(e);
    }
    if (state.view !== "report") return;
    const L = r.labels, st = r.study;
    const row = (k, v) => (v ? [h("dt", {}, k), h("dd", {}, v)] : []);
    const doc = h("article", { class: "report", id: "report" },
      h("header", {}, h("div", { class: "inst" }, st.institution_name || L.department), h("h2", {}, r.title),
        h("span", { class: `status ${r.status}` }, L[`status_${r.status}`] || r.status)),
      h("dl", { class: "patient" }, row(L.patient_name, st.patient_name_display), row(L.patient_id, st.patient_id),
        row(L.sex, st.patient_sex), row(L.birth_date, st.birth_date_display), row(L.accession, st.accession_number),
        row(L.study_date, st.study_date_display),
        row(L.exam, [st.study_description, (st.modalities || []).join(", ")].filter(Boolean).join(" · "))),
      r.critical?.flag ? h("div", { class: "critical" }, L.critical, r.critical.note ? `: ${r.critical.note}` : "") : null,
      r.values.length ? h("table", { class: "values" }, r.values.map((v) => h("tr", {}, h("td", {}, v.label), h("td", {}, h("b", {}, v.text))))) : null,
      r.texts.map((x) => h("section", { class: "field" }, h("h3", {}, x.label), h("p", { class: "text" }, x.text))),
      h("footer", {}, r.author ? h("span", {}, `${L.author}: ${person(r.author)}`) : null,
        r.signer ? h("span", {}, `${L.signer}: ${person(r.signer)}`) : null,
        r.signed_at ? h("span", {}, `${L.signed_at}: ${r.signed_at}`) : null));
    const zoom = textZoom(doc);
    setMain(h("div", { class: "doc-tools" },
      h("button", { type: "button", onclick: () => zoom(1 / 1.2), "aria-label": t("zoomOut") }, "A−"),
      h("button", { type: "button", onclick: () => zoom(1.2), "aria-label": t("zoomIn") }, "A+"),
      state.study.report_pdf ? h("a", { class: "button", href: q("/api/s/report", { lang }), download: "report.pdf" }, t("pdf")) : null),
      r.deidentified ? h("p", { class: "muted", id: "report-deid" }, t("deidReport")) : null, doc);
    expose({ view: "report" });
  }

  /** Pinch (or the buttons) changes the text size of a reflowing document: readable at any zoom. */
  function textZoom(el) {
    let scale = 1;
    const set = (s) => { scale = Math.min(3, Math.max(0.8, s)); el.style.setProperty("--zoom", String(scale)); expose({ textZoom: scale }); };
    const pts = new Map();
    let start = null;
    el.addEventListener("touchstart", (e) => { if (e.touches.length === 2) { start = { d: dist2(e.touches), s: scale }; } }, { passive: true });
    el.addEventListener("touchmove", (e) => {
      if (e.touches.length === 2 && start) { e.preventDefault(); set(start.s * dist2(e.touches) / start.d); }
    }, { passive: false });
    el.addEventListener("touchend", () => { start = null; pts.clear(); });
    return (f) => set(scale * f);
  }
  const dist2 = (touches) => Math.hypot(touches[0].clientX - touches[1].clientX, touches[0].clientY - touches[1].clientY) || 1;

  // ------------------------------------------------------------------ e-film: stepless zoom

  function film() {
    setTitle(t("film"), true);
    const img = h("img", { id: "film-img", alt: t("film"), src: q("/api/s/film", { format: "png" }), draggable: "false" });
    const stage = h("div", { class: "zoom-stage", id: "film" }, img);
    img.addEventListener("error", () => api("/api/s/film", { params: { format: "png" } }).catch((e) => {
      if (e instanceof ApiError && e.status === 409) setMain(h("div", { class: "card notice" }, t("notSigned")));
      else fail(e);
    }));
    setMain(h("div", { class: "doc-tools" }, h("span", { class: "muted" }, t("pinchHint")),
      h("a", { class: "button", href: q("/api/s/film", { format: "pdf" }), download: "film.pdf" }, t("pdf"))), stage);
    $main.className = "full";
    panZoom(stage, img);
    expose({ view: "film" });
  }

  /** Two-finger pinch / wheel zoom (any factor, 1×–8×), drag to pan, double tap to reset. */
  function panZoom(stage, content) {
    let z = 1, x = 0, y = 0;
    const pointers = new Map();
    let last = null, lastTap = 0;
    const apply = () => {
      content.style.transform = `translate(${x}px, ${y}px) scale(${z})`;
      expose({ filmZoom: z });
    };
    const zoomAt = (f, cx, cy) => {
      const r = stage.getBoundingClientRect();
      const nz = Math.min(8, Math.max(1, z * f));
      const px = cx - r.left, py = cy - r.top;
      x = px - (px - x) * (nz / z); y = py - (py - y) * (nz / z); z = nz;
      if (z === 1) { x = 0; y = 0; }
      apply();
    };
    const summary = () => {
      const p = [...pointers.values()];
      const cx = p.reduce((a, b) => a + b.x, 0) / p.length, cy = p.reduce((a, b) => a + b.y, 0) / p.length;
      const d = p.length > 1 ? Math.hypot(p[0].x - p[1].x, p[0].y - p[1].y) : 0;
      return { cx, cy, d, n: p.length };
    };
    stage.addEventListener("pointerdown", (e) => {
      stage.setPointerCapture(e.pointerId);
      pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
      last = summary();
      const now = Date.now();
      if (pointers.size === 1 && now - lastTap < 300) { z = z > 1 ? 1 : 2.5; if (z === 1) { x = 0; y = 0; } else zoomAt(1, e.clientX, e.clientY); apply(); }
      lastTap = now;
    });
    stage.addEventListener("pointermove", (e) => {
      if (!pointers.has(e.pointerId)) return;
      pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
      const s = summary();
      if (last && s.n === last.n) {
        x += s.cx - last.cx; y += s.cy - last.cy;
        if (s.n > 1 && last.d > 0) zoomAt(s.d / last.d, s.cx, s.cy); else apply();
      }
      last = s;
    });
    const up = (e) => { pointers.delete(e.pointerId); last = pointers.size ? summary() : null; };
    stage.addEventListener("pointerup", up);
    stage.addEventListener("pointercancel", up);
    stage.addEventListener("wheel", (e) => { e.preventDefault(); zoomAt(Math.exp(-e.deltaY / 300), e.clientX, e.clientY); }, { passive: false });
    apply();
  }

  // ------------------------------------------------------------------ images

  let viewer = null;

  async function images() {
    setTitle(t("images"), true);
    let series;
    try { series = (await loadSeries()).filter((s) => s.instances.length && !NOT_IMAGES.includes(s.Modality)); } catch (e) { return fail(e); }
    if (state.view !== "images") return;
    const canvas = h("canvas", { id: "slice", "aria-label": t("images") });
    const info = h("div", { class: "ov ov-tl", id: "slice-info" });
    const wlInfo = h("div", { class: "ov ov-tr", id: "wl-info" });
    const lenInfo = h("div", { class: "ov ov-bl", id: "length" });
    const spinner = h("div", { class: "ov ov-c spinner", hidden: true }, t("loading"));
    const hint = h("div", { class: "ov ov-br hint" }, t("swipeHint"));
    const slider = h("input", { type: "range", id: "slider", min: "1", max: "1", value: "1", "aria-label": t("slice") });
    const strip = h("div", { class: "strip", id: "strip" });
    const presets = h("div", { class: "presets", id: "presets" });
    const measureBtn = h("button", { type: "button", id: "measure", class: "tool" }, icon("measure"), t("measure"));
    const cineBtn = h("button", { type: "button", id: "cine", class: "tool" }, icon("play"), t("play"));
    const resetBtn = h("button", { type: "button", id: "reset", class: "tool" }, icon("reset"), t("reset"));
    const stage = h("div", { class: "stage" }, canvas, info, wlInfo, lenInfo, spinner, hint);
    setMain(strip, stage, h("div", { class: "controls" }, slider, presets, h("div", { class: "tools" }, measureBtn, cineBtn, resetBtn)));
    $main.className = "full dark";
    expose({ view: "images", ready: false });
    viewer = new Viewer({ canvas, stage, info, wlInfo, lenInfo, spinner, slider, presets, measureBtn, cineBtn });
    cineBtn.addEventListener("click", () => viewer.toggleCine());
    measureBtn.addEventListener("click", () => viewer.toggleMeasure());
    resetBtn.addEventListener("click", () => viewer.resetView());
    series.forEach((s, i) => {
      const mid = Math.floor((picturesOf(s).length - 1) / 2);
      strip.append(h("button", { type: "button", class: "thumb", "data-series": String(i), onclick: () => viewer.open(s, i) },
        h("img", { alt: "", loading: "lazy", src: sliceUrl(s, mid, 96, null) }),
        h("span", {}, `${s.Modality} ${s.SeriesNumber ? "#" + s.SeriesNumber : ""}`), h("span", {}, String(picturesOf(s).length))));
    });
    viewer.open(series[0], 0);
  }
  const enc = encodeURIComponent;
  //: Series that hold no pictures to scroll (reports, documents, key-object notes, overlays).
  const NOT_IMAGES = ["SR", "DOC", "KO", "PR", "SEG", "RWV", "REG"];

  function stopCine() { if (viewer) viewer.stopCine(); }

  class Viewer {
    constructor(ui) {
      Object.assign(this, ui);
      this.ctx = this.canvas.getContext("2d");
      this.cache = new Map(); // url -> {img, ok}
      this.inflight = 0;
      this.queue = [];
      this.wl = null; this.wlName = "default";
      this.zoom = 1; this.px = 0; this.py = 0;
      this.measuring = false; this.line = null;
      this.cine = null; this.dir = 1;
      this.drawnUrl = "";
      this.pointers = new Map();
      this.resize = () => this.fit();
      window.addEventListener("resize", this.resize);
      this.slider.addEventListener("input", () => this.go(Number(this.slider.value) - 1));
      this.bindGestures();
      this.fit();
    }

    open(series, i) {
      this.series = series;
      this.count = picturesOf(series).length;
      this.index = Math.floor((this.count - 1) / 2);
      this.line = null; this.zoom = 1; this.px = 0; this.py = 0;
      this.slider.max = String(this.count);
      this.isCT = series.Modality === "CT";
      document.querySelectorAll(".thumb").forEach((b) => b.classList.toggle("on", b.dataset.series === String(i)));
      this.renderPresets();
      this.size = viewSize(series);
      this.cache.clear(); this.queue = [];
      this.go(this.index);
      expose({ series: i, count: this.count });
    }

    renderPresets() {
      this.presets.replaceChildren(...(this.isCT ? PRESETS : PRESETS.slice(0, 1)).map(([name, wl]) =>
        h("button", { type: "button", class: "preset" + (name === this.wlName ? " on" : ""), "data-preset": name,
          onclick: () => this.setPreset(name, wl) }, t(`wl.${name}`))));
    }

    setPreset(name, wl) {
      this.wlName = name; this.wl = wl;
      this.renderPresets();
      this.queue = [];
      this.go(this.index);
    }

    url(i) { return sliceUrl(this.series, i, this.size, this.wl); }

    /** Fetch an image (at most 4 at once); the queue is reordered on every slice change. */
    load(url, first = false) {
      let entry = this.cache.get(url);
      if (entry) return entry;
      const w = warm.get(url);
      if (w) { // asked for on the home page: the same request, not a second one
        entry = { img: w.img, ok: w.ok, started: true, url };
        this.cache.set(url, entry);
        if (!w.ok) w.img.addEventListener("load", () => { entry.ok = true; this.loaded(entry); });
        return entry;
      }
      entry = { img: null, ok: false, failed: false, started: false, url };
      this.cache.set(url, entry);
      if (first) this.queue.unshift(entry); else this.queue.push(entry);
      this.pump();
      return entry;
    }

    pump() {
      while (this.inflight < 4 && this.queue.length) {
        const entry = this.queue.shift();
        if (entry.started) continue;
        entry.started = true;
        this.inflight++;
        const img = new Image();
        img.decoding = "async";
        img.onload = () => { entry.img = img; entry.ok = true; this.inflight--; this.loaded(entry); this.pump(); };
        img.onerror = () => {
          entry.failed = true; this.inflight--; this.cache.delete(entry.url); this.pump();
          if (entry.url === this.url(this.index)) api("/api/s/study").catch(fail); // why: link gone, session over?
        };
        img.src = entry.url;
      }
    }

    loaded(entry) {
      if (entry.url === this.url(this.index)) this.draw();
      else if (this.cine && entry.url === this.url((this.index + 1) % this.count)) this.draw();
    }

    go(i) {
      if (!this.series) return;
      const before = this.index;
      this.index = Math.max(0, Math.min(this.count - 1, i));
      if (this.index !== before) this.dir = this.index > before ? 1 : -1;
      this.slider.value = String(this.index + 1);
      // the wanted image first, then the ones the finger is heading to, then a few behind
      const order = [this.index];
      for (let k = 1; k <= 16; k++) order.push(this.index + k * this.dir);
      for (let k = 1; k <= 6; k++) order.push(this.index - k * this.dir);
      const want = order.filter((n) => n >= 0 && n < this.count).map((n) => this.url(n));
      this.queue = this.queue.filter((e) => !e.started && want.includes(e.url));
      want.forEach((u, k) => this.load(u, k === 0));
      this.queue.sort((a, b) => want.indexOf(a.url) - want.indexOf(b.url));
      this.evict(want);
      this.draw();
    }

    evict(keep) {
      if (this.cache.size < 160) return;
      for (const [u, e] of this.cache) if (e.ok && !keep.includes(u)) { this.cache.delete(u); if (this.cache.size < 120) break; }
    }

    fit() {
      const r = this.stage.getBoundingClientRect();
      const dpr = window.devicePixelRatio || 1;
      this.canvas.width = Math.max(1, Math.round(r.width * dpr));
      this.canvas.height = Math.max(1, Math.round(r.height * dpr));
      this.canvas.style.width = r.width + "px";
      this.canvas.style.height = r.height + "px";
      this.dpr = dpr;
      this.draw();
    }

    /** Image pixel (of the rendered image) -> canvas CSS pixel, and back. */
    geometry(img) {
      const cw = this.canvas.width / this.dpr, ch = this.canvas.height / this.dpr;
      const base = Math.min(cw / img.naturalWidth, ch / img.naturalHeight);
      const s = base * this.zoom;
      const ox = (cw - img.naturalWidth * s) / 2 + this.px, oy = (ch - img.naturalHeight * s) / 2 + this.py;
      return { s, ox, oy };
    }

    draw() {
      if (!this.series) return;
      const url = this.url(this.index);
      const entry = this.cache.get(url);
      this.spinner.hidden = !!entry?.ok;
      const ctx = this.ctx;
      const img = entry?.ok ? entry.img : this.lastImg;
      ctx.setTransform(1, 0, 0, 1, 0, 0);
      ctx.fillStyle = "#000";
      ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
      this.info.textContent = `${t("slice")} ${this.index + 1}/${this.count}` + (this.series.SeriesDescription ? `\n${this.series.SeriesDescription}` : "");
      this.wlInfo.textContent = `${t("wl")}: ${t(`wl.${this.wlName}`)}` + (this.wl ? ` ${this.wl[0]}/${this.wl[1]}` : "") + (this.zoom !== 1 ? `\n×${this.zoom.toFixed(1)}` : "");
      if (!img) return;
      if (entry?.ok) { this.lastImg = img; this.drawnUrl = url; }
      const { s, ox, oy } = this.geometry(img);
      ctx.setTransform(this.dpr, 0, 0, this.dpr, 0, 0);
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(img, ox, oy, img.naturalWidth * s, img.naturalHeight * s);
      this.drawLine(img);
      expose({ index: this.index, drawn: this.drawnUrl, ready: !!entry?.ok, wl: this.wlName, zoom: this.zoom });
    }

    drawLine(img) {
      const L = this.line;
      if (!L || L.index !== this.index) { this.lenInfo.textContent = ""; return; }
      const { s, ox, oy } = this.geometry(img);
      const a = [ox + L.a[0] * s, oy + L.a[1] * s], b = [ox + L.b[0] * s, oy + L.b[1] * s];
      const ctx = this.ctx;
      ctx.strokeStyle = "#ffd400"; ctx.lineWidth = 2; ctx.fillStyle = "#ffd400";
      ctx.beginPath(); ctx.moveTo(...a); ctx.lineTo(...b); ctx.stroke();
      for (const p of [a, b]) { ctx.beginPath(); ctx.arc(p[0], p[1], 4, 0, 7); ctx.fill(); }
      const text = this.lengthText(img);
      ctx.font = "600 15px system-ui, sans-serif";
      ctx.lineWidth = 3; ctx.strokeStyle = "#000";
      ctx.strokeText(text, b[0] + 8, b[1] - 8); ctx.fillText(text, b[0] + 8, b[1] - 8);
      this.lenInfo.textContent = `${t("measure")}: ${text}`;
    }

    /** The line's length: rendered pixels -> stored pixels -> millimetres (PixelSpacing: row, column). */
    lengthText(img) {
      const L = this.line;
      const cols = this.series.Columns || img.naturalWidth, rows = this.series.Rows || img.naturalHeight;
      const dc = (L.b[0] - L.a[0]) * cols / img.naturalWidth, dr = (L.b[1] - L.a[1]) * rows / img.naturalHeight;
      const sp = this.series.PixelSpacing;
      if (!sp) { const px = Math.hypot(dc, dr); expose({ lengthPx: px }); return `${px.toFixed(0)} px (${t("noSpacing")})`; }
      const mm = Math.hypot(dc * sp[1], dr * sp[0]);
      expose({ lengthMm: mm });
      return mm >= 100 ? `${(mm / 10).toFixed(1)} cm` : `${mm.toFixed(1)} mm`;
    }

    toImage(cx, cy) {
      const img = this.lastImg;
      const r = this.canvas.getBoundingClientRect();
      const { s, ox, oy } = this.geometry(img);
      return [(cx - r.left - ox) / s, (cy - r.top - oy) / s];
    }

    bindGestures() {
      const c = this.canvas;
      let last = null, acc = 0, lastTap = 0;
      const summary = () => {
        const p = [...this.pointers.values()];
        return { n: p.length, cx: p.reduce((a, b) => a + b.x, 0) / p.length, cy: p.reduce((a, b) => a + b.y, 0) / p.length,
          d: p.length > 1 ? Math.hypot(p[0].x - p[1].x, p[0].y - p[1].y) : 0 };
      };
      c.addEventListener("pointerdown", (e) => {
        c.setPointerCapture(e.pointerId);
        this.stage.querySelector(".hint")?.remove(); // learnt: the hint gives the picture back
        this.pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
        last = summary(); acc = 0;
        if (this.pointers.size === 1 && this.measuring && this.lastImg) {
          const p = this.toImage(e.clientX, e.clientY);
          this.line = { index: this.index, a: p, b: p, drawing: true };
        } else if (this.line?.drawing) this.line = null;
        const now = Date.now();
        if (this.pointers.size === 1 && !this.measuring && now - lastTap < 300) this.resetView();
        lastTap = now;
      });
      c.addEventListener("pointermove", (e) => {
        if (!this.pointers.has(e.pointerId)) return;
        this.pointers.set(e.pointerId, { x: e.clientX, y: e.clientY });
        const s = summary();
        if (!last || s.n !== last.n) { last = s; return; }
        if (s.n === 1 && this.line?.drawing) {
          this.line.b = this.toImage(e.clientX, e.clientY);
          this.draw();
        } else if (s.n === 1) { // one finger up/down: slices
          acc += last.cy - s.cy; // finger up: onward (deeper), like turning a page
          const step = Math.max(6, Math.min(24, c.getBoundingClientRect().height / Math.min(this.count, 40)));
          const k = Math.trunc(acc / step);
          if (k) { acc -= k * step; this.go(this.index + k); }
        } else if (s.n >= 2 && last.d > 0) { // two fingers: pinch zoom about the middle, and pan
          const r = c.getBoundingClientRect();
          const f = s.d / last.d;
          const nz = Math.min(10, Math.max(0.5, this.zoom * f));
          const mx = s.cx - r.left - r.width / 2, my = s.cy - r.top - r.height / 2;
          this.px = mx - (mx - this.px) * (nz / this.zoom) + (s.cx - last.cx);
          this.py = my - (my - this.py) * (nz / this.zoom) + (s.cy - last.cy);
          this.zoom = nz;
          this.draw();
        }
        last = s;
      });
      const up = (e) => {
        this.pointers.delete(e.pointerId);
        if (this.line?.drawing) { this.line.drawing = false; if (Math.hypot(this.line.b[0] - this.line.a[0], this.line.b[1] - this.line.a[1]) < 2) this.line = null; this.draw(); }
        last = this.pointers.size ? summary() : null;
      };
      c.addEventListener("pointerup", up);
      c.addEventListener("pointercancel", up);
      c.addEventListener("wheel", (e) => {
        e.preventDefault();
        if (e.ctrlKey) { this.zoom = Math.min(10, Math.max(0.5, this.zoom * Math.exp(-e.deltaY / 200))); this.draw(); }
        else this.go(this.index + Math.sign(e.deltaY));
      }, { passive: false });
      c.addEventListener("keydown", (e) => {
        if (e.key === "ArrowDown" || e.key === "ArrowRight") this.go(this.index + 1);
        if (e.key === "ArrowUp" || e.key === "ArrowLeft") this.go(this.index - 1);
      });
      c.tabIndex = 0;
    }

    resetView() { this.zoom = 1; this.px = 0; this.py = 0; this.draw(); }

    toggleMeasure() {
      this.measuring = !this.measuring;
      this.measureBtn.classList.toggle("on", this.measuring);
      if (!this.measuring) { this.line = null; this.draw(); }
      expose({ measuring: this.measuring });
    }

    toggleCine() { if (this.cine) this.stopCine(); else this.startCine(); }

    startCine() {
      this.cineBtn.replaceChildren(icon("stop"), t("stop"));
      this.cineBtn.classList.add("on");
      this.dir = 1;
      this.cine = setInterval(() => { // the next slice when it is here: never a blank frame
        const next = (this.index + 1) % this.count;
        const e = this.load(this.url(next));
        if (e.ok) { if (next === 0) this.go(0); else this.go(next); }
      }, 110);
      expose({ cine: true });
    }

    stopCine() {
      if (!this.cine) return;
      clearInterval(this.cine);
      this.cine = null;
      this.cineBtn.replaceChildren(icon("play"), t("play"));
      this.cineBtn.classList.remove("on");
      expose({ cine: false });
    }
  }

  // ------------------------------------------------------------------ downloads

  function download() {
    setTitle(t("download"), true);
    const s = state.study;
    const item = (id, href, name, label, note) => h("a", { class: "card dl", id, href, download: name },
      h("span", { class: "dl-icon" }, icon("download")), h("span", {}, h("strong", {}, label), note ? h("small", {}, note) : null));
    setMain(
      item("dl-dicom", q("/api/s/dicom"), "study.zip", t("dicomZip"), t("filesN", { n: s.instances })),
      s.film ? item("dl-film", q("/api/s/film", { format: "pdf" }), "film.pdf", t("filmPdf")) : null,
      s.report_pdf ? item("dl-report", q("/api/s/report", { lang }), "report.pdf", t("reportPdf")) : null,
      h("p", { class: "muted" }, t("downloadNote")));
    expose({ view: "download" });
  }

  // ------------------------------------------------------------------ sharing onward

  const EXPIRY = [[1, "hours"], [24, "hours"], [72, "days"], [168, "days"], [720, "months"], [2160, "months"], [4320, "months"]];

  async function share() {
    setTitle(t("share"), true);
    const label = ([hours, unit]) => t(unit, { n: unit === "hours" ? hours : unit === "days" ? hours / 24 : hours / 720 });
    const expiry = h("select", { id: "expiry" }, EXPIRY.map((e, i) => h("option", { value: String(e[0]), selected: i === 3 }, label(e))));
    const views = h("select", { id: "max-views" }, h("option", { value: "" }, t("unlimited")),
      [1, 3, 10, 50].map((n) => h("option", { value: String(n) }, String(n))));
    const code = h("input", { type: "checkbox", id: "need-code", checked: true });
    const many = state.exams?.length > 1;
    const all = h("input", { type: "checkbox", id: "all-exams" });
    const result = h("div", { id: "share-result" });
    const list = h("div", { id: "share-list" });
    const button = h("button", { type: "submit", class: "primary", id: "create-share" }, t("create"));
    const form = h("form", { class: "card share-form", novalidate: true },
      h("h2", {}, t("shareTitle")),
      h("label", { class: "row" }, h("span", {}, t("expiry")), expiry),
      h("label", { class: "row" }, h("span", {}, t("maxViews")), views),
      h("label", { class: "row check" }, code, h("span", {}, t("needCode"))),
      many ? h("label", { class: "row check" }, all, h("span", {}, t("allExams", { n: state.exams.length }))) : null,
      button, h("p", { class: "muted" }, t("shareNote")));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      button.disabled = true;
      try {
        const made = await api("/api/s/reshare", { body: {
          hours: Number(expiry.value), max_views: views.value ? Number(views.value) : null, verify: code.checked ? "code" : "none",
          study: state.exam || null, all_exams: many && all.checked } });
        showMade(result, made);
        await listShares(list);
      } catch (e) {
        if (e instanceof ApiError && (e.status === 400 || e.status === 422)) result.replaceChildren(h("p", { class: "alert" }, e.detail));
        else fail(e);
      } finally { button.disabled = false; }
    });
    setMain(form, result, h("h2", { class: "section" }, t("yourShares")), list);
    expose({ view: "share" });
    listShares(list);
  }

  function showMade(box, made) {
    const copy = h("button", { type: "button", class: "tool-light" }, t("copy"));
    copy.addEventListener("click", async () => {
      try { await navigator.clipboard.writeText(made.url); copy.textContent = t("copied"); } catch { link.select(); }
    });
    const link = h("input", { readonly: true, value: made.url, id: "made-url", "aria-label": t("link") });
    const childQr = new URL("/api/s/qr", location.origin);
    childQr.searchParams.set("t", made.token);
    box.replaceChildren(h("div", { class: "card made" },
      h("img", { class: "qr", id: "made-qr", alt: "QR", src: childQr.pathname + childQr.search }),
      h("div", { class: "row" }, link, copy),
      made.code ? h("p", { class: "code" }, `${t("code")}: `, h("strong", { id: "made-code" }, made.code)) : null,
      h("p", { class: "muted" }, `${t("validUntil")} ${fmtWhen(made.share.expires_at)}`)));
  }

  async function listShares(box) {
    let rows;
    try { rows = await api("/api/s/shares"); } catch (e) { return fail(e); }
    box.replaceChildren(...(rows.length ? rows.map((r) => h("div", { class: "card share-row", "data-id": String(r.id) },
      h("div", {}, h("strong", {}, t(r.state) || r.state), ` · ${t("views")} ${r.views}${r.max_views ? "/" + r.max_views : ""}`,
        h("br"), h("small", { class: "muted" }, `${t("validUntil")} ${fmtWhen(r.expires_at)}`)),
      r.state === "active" ? h("button", { type: "button", class: "tool-light danger", onclick: async () => {
        try { await api("/api/s/revoke", { body: { id: r.id } }); await listShares(box); } catch (e) { fail(e); }
      } }, t("revoke")) : null)) : [h("p", { class: "muted" }, t("noShares"))]));
  }

  start();
})();
