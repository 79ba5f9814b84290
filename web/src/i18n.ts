// zh/en text. The language is the one picked on the admin pages (same localStorage key), else the browser's.

const STORE_KEY = "radcloud.lang";
export type Lang = "en" | "zh";

const EN: Record<string, string> = {
  "app.loading": "Loading…",
  "nav.studies": "Studies", "nav.admin": "Admin", "nav.api": "API", "nav.logout": "Sign out",
  "nav.switch": "Sign in as another user", "nav.health": "Health",
  "list.title": "Studies", "list.patientId": "Patient ID", "list.patientName": "Patient name",
  "list.modality": "Modality", "list.any": "Any", "list.from": "From", "list.to": "To",
  "list.accession": "Accession", "list.search": "Search", "list.clear": "Clear",
  "list.date": "Date", "list.description": "Description", "list.series": "Series",
  "list.images": "Images", "list.none": "No studies match.", "list.prev": "Previous", "list.next": "Next",
  "list.page": "Page {n}", "list.open": "Open", "list.error": "Search failed: {e}",
  "viewer.series": "Series", "viewer.toggleSeries": "Series panel", "viewer.layout": "Layout",
  "viewer.wl": "W/L", "viewer.pan": "Pan", "viewer.zoom": "Zoom", "viewer.scroll": "Scroll",
  "viewer.length": "Length", "viewer.angle": "Angle", "viewer.ellipse": "Ellipse ROI",
  "viewer.rect": "Rectangle ROI", "viewer.probe": "Probe", "viewer.fit": "Fit", "viewer.one": "1:1",
  "viewer.rotate": "Rotate", "viewer.flipH": "Flip H", "viewer.flipV": "Flip V", "viewer.invert": "Invert",
  "viewer.reset": "Reset", "viewer.cine": "Cine", "viewer.stop": "Stop", "viewer.fps": "fps",
  "viewer.export": "Export image", "viewer.exportSeries": "Export series", "viewer.exportFormat": "Export format",
  "viewer.exporting": "Exporting {k}/{n}…", "viewer.exported": "Exported {n} images", "viewer.presets": "Presets", "viewer.back": "Studies",
  "viewer.clearMeasure": "Clear", "viewer.empty": "Drop or click a series",
  "viewer.noStudy": "No study given.", "viewer.error": "Could not load: {e}",
  "viewer.cobb": "Cobb", "viewer.polyline": "Polyline", "viewer.freehand": "Freehand ROI", "viewer.ctr": "CTR",
  "viewer.arrow": "Arrow + text", "viewer.magnify": "Magnify", "viewer.power": "Magnifier power",
  "viewer.colormap": "Colour map", "viewer.savePreset": "Save W/L", "viewer.presetName": "Name of this window preset",
  "viewer.custom": "Custom", "viewer.link": "Link scroll", "viewer.refLines": "Ref lines", "viewer.overlaySettings": "Overlay…",
  "viewer.overlayFor": "Overlay text shown for {m}", "viewer.arrowText": "Annotation text",
  "viewer.keyImage": "Key image", "viewer.save": "Save", "viewer.unsaved": "Save your measurements and key images before leaving?",
  "viewer.discard": "Discard", "viewer.saving": "Saving…", "viewer.savedN": "Saved: {n} measurements, {k} key images",
  "viewer.saveFailed": "Not saved: {e}", "viewer.loadFailed": "Saved measurements could not be loaded: {e}",
  "viewer.restored": "Restored: {n} measurements, {k} key images",
  "viewer.prior": "Prior", "viewer.otherStudy": "Other study", "viewer.cursor3d": "3D cursor", "viewer.hanging": "Save hanging", "viewer.hangingSaved": "Hanging protocol saved for {k}",
  "viewer.customLayout": "Custom…", "viewer.zoomMode": "Zoom", "zoom.fit": "Fit", "zoom.one": "1:1", "zoom.fill": "Fill",
  "zoom.width": "Fit width", "zoom.height": "Fit height",
  "viewer.filter": "Smoothing / sharpening", "viewer.xray": "X-ray enhance", "filter.none": "No filter",
  "filter.smooth": "Smooth", "filter.sharpen": "Sharpen", "filter.xray": "X-ray enhanced",
  "cmap.grey": "Grey", "cmap.hotIron": "Hot iron", "cmap.jet": "Jet", "cmap.hsv": "HSV", "cmap.rainbow": "Rainbow",
  "ovf.name": "Patient name", "ovf.pid": "Patient ID", "ovf.sexAge": "Sex / age", "ovf.institution": "Institution",
  "ovf.date": "Study date", "ovf.study": "Study description", "ovf.series": "Series", "ovf.image": "Image number",
  "ovf.position": "Slice position / thickness", "ovf.wl": "Window / level", "ovf.zoom": "Zoom",
  "dlg.ok": "OK", "dlg.cancel": "Cancel", "dlg.save": "Save",
  "viewer.keys": "Keys: 1–5 presets · ↑↓ scroll · R reset · I invert · H/V flip · [ ] rotate · F fit · Space cine · N link scroll · X reference lines · G grey · K key image · Q 3D cursor · Tools: W W/L · P pan · Z zoom · S scroll · L length · A angle · B Cobb · Y polyline · D freehand · J CTR · T arrow · E ellipse · O rectangle · C probe · M magnify",
  "preset.lung": "Lung", "preset.mediastinum": "Mediastinum", "preset.bone": "Bone",
  "preset.brain": "Brain", "preset.abdomen": "Abdomen",
  "ov.im": "Im", "ov.se": "Se", "ov.zoom": "Zoom",
};
const ZH: Record<string, string> = {
  "app.loading": "加载中…",
  "nav.studies": "检查列表", "nav.admin": "管理", "nav.api": "接口", "nav.logout": "退出",
  "nav.switch": "以其他用户登录", "nav.health": "健康状态",
  "list.title": "检查列表", "list.patientId": "患者 ID", "list.patientName": "患者姓名",
  "list.modality": "设备类型", "list.any": "全部", "list.from": "起", "list.to": "止",
  "list.accession": "检查号", "list.search": "查询", "list.clear": "清空",
  "list.date": "日期", "list.description": "检查描述", "list.series": "序列",
  "list.images": "图像", "list.none": "没有符合条件的检查。", "list.prev": "上一页", "list.next": "下一页",
  "list.page": "第 {n} 页", "list.open": "打开", "list.error": "查询失败：{e}",
  "viewer.series": "序列", "viewer.toggleSeries": "序列面板", "viewer.layout": "布局",
  "viewer.wl": "窗宽窗位", "viewer.pan": "平移", "viewer.zoom": "缩放", "viewer.scroll": "翻页",
  "viewer.length": "测距", "viewer.angle": "角度", "viewer.ellipse": "椭圆 ROI",
  "viewer.rect": "矩形 ROI", "viewer.probe": "CT 值", "viewer.fit": "适应", "viewer.one": "1:1",
  "viewer.rotate": "旋转", "viewer.flipH": "水平翻转", "viewer.flipV": "垂直翻转", "viewer.invert": "反色",
  "viewer.reset": "复位", "viewer.cine": "电影", "viewer.stop": "停止", "viewer.fps": "帧/秒",
  "viewer.export": "导出图像", "viewer.exportSeries": "导出序列", "viewer.exportFormat": "导出格式",
  "viewer.exporting": "正在导出 {k}/{n}…", "viewer.exported": "已导出 {n} 张图像", "viewer.presets": "窗位预设", "viewer.back": "检查列表",
  "viewer.clearMeasure": "清除", "viewer.empty": "拖入或点击序列",
  "viewer.noStudy": "未指定检查。", "viewer.error": "加载失败：{e}",
  "viewer.cobb": "Cobb 角", "viewer.polyline": "折线", "viewer.freehand": "自由 ROI", "viewer.ctr": "心胸比",
  "viewer.arrow": "箭头标注", "viewer.magnify": "放大镜", "viewer.power": "放大倍数",
  "viewer.colormap": "伪彩", "viewer.savePreset": "保存窗位", "viewer.presetName": "窗位预设名称",
  "viewer.custom": "自定义", "viewer.link": "联动翻页", "viewer.refLines": "定位线", "viewer.overlaySettings": "叠加信息…",
  "viewer.overlayFor": "{m} 显示的叠加信息", "viewer.arrowText": "标注文字",
  "viewer.keyImage": "关键图像", "viewer.save": "保存", "viewer.unsaved": "离开前保存测量和关键图像吗？",
  "viewer.discard": "不保存", "viewer.saving": "保存中…", "viewer.savedN": "已保存：{n} 个测量，{k} 张关键图像",
  "viewer.saveFailed": "保存失败：{e}", "viewer.loadFailed": "无法加载已保存的测量：{e}",
  "viewer.restored": "已恢复：{n} 个测量，{k} 张关键图像",
  "viewer.prior": "既往", "viewer.otherStudy": "其他检查", "viewer.cursor3d": "三维定位", "viewer.hanging": "保存挂片", "viewer.hangingSaved": "已保存 {k} 的挂片协议",
  "viewer.customLayout": "自定义…", "viewer.zoomMode": "缩放", "zoom.fit": "适应窗口", "zoom.one": "1:1", "zoom.fill": "填充",
  "zoom.width": "适应宽度", "zoom.height": "适应高度",
  "viewer.filter": "平滑 / 锐化", "viewer.xray": "X 线增强", "filter.none": "无滤波",
  "filter.smooth": "平滑", "filter.sharpen": "锐化", "filter.xray": "X 线增强",
  "cmap.grey": "灰阶", "cmap.hotIron": "热铁", "cmap.jet": "Jet 彩虹", "cmap.hsv": "HSV", "cmap.rainbow": "彩虹",
  "ovf.name": "患者姓名", "ovf.pid": "患者 ID", "ovf.sexAge": "性别 / 年龄", "ovf.institution": "医院",
  "ovf.date": "检查日期", "ovf.study": "检查描述", "ovf.series": "序列", "ovf.image": "图像号",
  "ovf.position": "层面位置 / 层厚", "ovf.wl": "窗宽 / 窗位", "ovf.zoom": "缩放",
  "dlg.ok": "确定", "dlg.cancel": "取消", "dlg.save": "保存",
  "viewer.keys": "快捷键：1–5 窗位预设 · ↑↓ 翻页 · R 复位 · I 反色 · H/V 翻转 · [ ] 旋转 · F 适应 · 空格 电影 · N 联动翻页 · X 定位线 · G 灰阶 · K 关键图像 · Q 三维定位 · 工具：W 窗位 · P 平移 · Z 缩放 · S 翻页 · L 测距 · A 角度 · B Cobb 角 · Y 折线 · D 自由 ROI · J 心胸比 · T 箭头 · E 椭圆 · O 矩形 · C CT 值 · M 放大镜",
  "preset.lung": "肺窗", "preset.mediastinum": "纵隔窗", "preset.bone": "骨窗",
  "preset.brain": "脑窗", "preset.abdomen": "腹部窗",
  "ov.im": "图像", "ov.se": "序列", "ov.zoom": "缩放",
};

function initial(): Lang {
  try {
    const saved = localStorage.getItem(STORE_KEY);
    if (saved === "zh" || saved === "en") return saved;
  } catch {
    /* storage blocked */
  }
  const wanted = navigator.languages?.length ? navigator.languages : [navigator.language || "en"];
  for (const l of wanted) {
    if (l.toLowerCase().startsWith("zh")) return "zh";
    if (l.toLowerCase().startsWith("en")) return "en";
  }
  return "en";
}

let current: Lang = initial();
const listeners: Array<() => void> = [];

export const lang = (): Lang => current;

export function t(key: string, args: Record<string, string | number> = {}): string {
  const text = (current === "zh" ? ZH : EN)[key] ?? EN[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (_, k: string) => String(args[k] ?? ""));
}

/** Fill every [data-i18n] element under ``root`` with its text. */
export function translate(root: ParentNode = document): void {
  document.documentElement.lang = current === "zh" ? "zh-CN" : "en";
  root.querySelectorAll<HTMLElement>("[data-i18n]").forEach((el) => {
    el.textContent = t(el.dataset.i18n || "");
  });
  root.querySelectorAll<HTMLElement>("[data-i18n-title]").forEach((el) => {
    el.title = t(el.dataset.i18nTitle || "");
  });
}

export function setLang(l: Lang): void {
  current = l;
  try {
    localStorage.setItem(STORE_KEY, l);
  } catch {
    /* ignore */
  }
  translate();
  listeners.forEach((f) => f());
}

export const onLangChange = (f: () => void): void => void listeners.push(f);
