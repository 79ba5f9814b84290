// zh/en text. The language is the one picked on the admin pages (same localStorage key), else the browser's.

const STORE_KEY = "radcloud.lang";
export type Lang = "en" | "zh";

const EN: Record<string, string> = {
  "app.loading": "Loading…",
  // report editor (report.ts)
  "report.open": "Report", "report.title": "Report", "report.noStudy": "No study given.", "report.none": "No report has been started for this study.",
  "report.template": "Template", "report.suggested": "suggested for this exam", "report.start": "Start report", "report.form": "Report",
  "report.pid": "ID", "report.sex": "Sex / age", "report.years": "{n} y", "report.accession": "Accession", "report.date": "Date",
  "report.modality": "Modality", "report.exam": "Exam", "report.referring": "Referred by",
  "report.st.draft": "Draft", "report.st.preliminary": "Preliminary · awaiting review", "report.st.final": "Final · signed", "report.st.amended": "Amended · signed",
  "report.criticalBadge": "CRITICAL FINDING", "report.lockedBy": "Being edited by {who} (until {until})", "report.signedBy": "Signed by {who}, {when}",
  "report.author": "Written by {who}", "report.signedReadOnly": "This report is signed and cannot be changed. An attending can amend it with a reason.",
  "report.withAttending": "Submitted for review: the attending radiologist checks and signs it.",
  "report.amendReason": "Reason for the amendment", "report.amendReasonHint": "Why the signed report is changed (kept in the history)",
  "report.critical": "Critical finding (notify the referring physician)", "report.criticalNote": "What is critical, who was told",
  "report.keyImages": "Key images in the report", "report.keyImage": "Key image", "report.dropHere": "Drag key images here (or press + on an image)",
  "report.noKeys": "No key images.", "report.caption": "Caption", "report.remove": "Remove",
  "report.asOriginal": "original image", "report.asScreenshot": "screenshot", "report.attachAs": "Attach as",
  "report.studyImages": "Images of the study", "report.flagged": "Key images flagged in the viewer", "report.series": "Series (middle image)",
  "report.flagHint": "Flag key images in the viewer (K) to see them here.", "report.dragHint": "Drag an image into the report, or press +.",
  "report.addImage": "Add to the report", "report.phrases": "Phrases", "report.dept": "department", "report.mine": "mine",
  "report.noPhrases": "No phrases yet.", "report.addPhrase": "Add phrase", "report.phraseTitle": "Title", "report.phraseText": "Text",
  "report.phraseShared": "Department phrase (for everyone)", "report.phraseAdded": "Phrase “{title}” added",
  "report.phraseHint": "Click to insert at the cursor.", "report.reason": "Reason", "report.versions": "Versions",
  "report.act.create": "created", "report.act.save": "saved", "report.act.submit": "submitted", "report.act.return": "returned",
  "report.act.sign": "signed", "report.act.amend": "amended",
  "report.save": "Save draft", "report.submit": "Submit for review", "report.return": "Return to author", "report.returnTitle": "Return the report to its author",
  "report.sign": "Sign", "report.signNeedsAttending": "Only an attending radiologist can sign", "report.amend": "Amend…", "report.amendSign": "Sign amendment",
  "report.previewHtml": "Preview", "report.previewPdf": "PDF", "report.images": "Images",
  "report.ai": "AI", "report.aiAccepted": "AI · accepted", "report.aiEdited": "AI · edited", "report.aiFrom": "Filled by {src}: accept or edit before signing",
  "report.accept": "Accept",
  "report.unsaved": "Unsaved changes…", "report.readOnly": "Read only", "report.saved": "Saved (version {v}, {time})",
  "report.autosaved": "Saved automatically (version {v}, {time})", "report.created": "Report started (version {v})",
  "report.submitted": "Submitted for review (version {v})", "report.returned": "Returned to the author (version {v})",
  "report.signed": "Signed by {who} (version {v})", "report.amended": "Amendment signed (version {v})",
  "report.amending": "Amending: change what is needed, give the reason, then sign the amendment.",
  "report.needReason": "Give the reason for the amendment.", "report.refused": "Refused ({status}): {e}",
  "report.reviewAi": "Accept or edit the AI values first: {fields}", "report.lockedHint": "Someone else is editing this report; wait until they finish.",
  "nav.studies": "Studies", "nav.admin": "Admin", "nav.api": "API", "nav.logout": "Sign out",
  "nav.switch": "Sign in as another user", "nav.health": "Health",
  "list.title": "Studies", "list.patientId": "Patient ID", "list.patientName": "Patient name",
  "list.modality": "Modality", "list.any": "Any", "list.from": "From", "list.to": "To",
  "list.accession": "Accession", "list.search": "Search", "list.clear": "Clear",
  "list.date": "Date", "list.description": "Description", "list.series": "Series",
  "list.images": "Images", "list.none": "No studies match.", "list.prev": "Previous", "list.next": "Next",
  "list.page": "Page {n}", "list.open": "Open", "list.error": "Search failed: {e}",
  // ---- study list on /api/worklist, patient time line, grouped viewer toolbar (task D) ----
  "wl.sex": "Sex", "wl.sex.M": "M", "wl.sex.F": "F", "wl.sex.O": "Other", "wl.age": "{n} y", "wl.sexAge": "Sex / age",
  "wl.ageRange": "Age", "wl.ageFrom": "from", "wl.ageTo": "to", "wl.bodyPart": "Body part", "wl.source": "Source",
  "wl.status": "Status", "wl.st.unread": "Unread", "wl.st.ai_done": "AI done", "wl.st.in_progress": "In progress",
  "wl.st.signed": "Signed", "wl.critical": "Critical", "wl.today": "Today", "wl.3days": "3 days", "wl.7days": "7 days",
  "wl.namePh": "Name or pinyin", "wl.thumbs": "Series thumbnails", "wl.history": "Exam history", "wl.close": "Close",
  "wl.pageOf": "Page {n} of {m}", "wl.total": "{n} studies", "wl.nStudies": "{n} studies",
  "wl.moreFilters": "More filters", "wl.perPage": "Studies per page", "wl.perPageN": "{n} / page",
  "tb.window": "Window", "tb.transform": "Zoom / transform", "tb.measure": "Measure", "tb.layout": "Layout",
  "tb.tools": "Tools", "tb.export": "Export", "tb.more": "More",
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
  // ---- MPR / 3D layout (mpr.ts) ----
  "mpr.open": "MPR / 3D", "mpr.close": "← 2D", "mpr.building": "Building the volume on the server…",
  "mpr.mode.cross": "Cross-hair", "mpr.mode.scroll": "Scroll", "mpr.mode.wl": "W/L", "mpr.mode.rotate": "Rotate",
  "mpr.mode.length": "Length", "mpr.mode.probe": "CT value", "mpr.mode.cut": "Scalpel",
  "mpr.window": "Window", "mpr.windowDefault": "Default window", "mpr.slab": "Slab", "mpr.slabMode": "Slab mode",
  "mpr.slab.mip": "MIP", "mpr.slab.minip": "MinIP", "mpr.slab.avg": "Average", "mpr.reset": "Reset planes", "mpr.clear": "Clear measures",
  "mpr.vrPreset": "Volume rendering preset", "mpr.vrBone": "VR bone", "mpr.vrLung": "VR lung", "mpr.vrCta": "VR CTA vessels",
  "mpr.vrSkin": "VR skin", "mpr.vrMra": "VR MRA",
  "mpr.oA": "A", "mpr.oP": "P", "mpr.oL": "L", "mpr.oR": "R", "mpr.oH": "H", "mpr.oF": "F",
  "mpr.oATitle": "Anterior view", "mpr.oPTitle": "Posterior view", "mpr.oLTitle": "Left view", "mpr.oRTitle": "Right view",
  "mpr.oHTitle": "From the head", "mpr.oFTitle": "From the feet",
  // MPR: transfer-function editor and CPR (task H)
  "mpr.tf": "Opacity / colour", "mpr.tfColor": "Colour of the chosen point", "mpr.tfRemove": "Remove point",
  "mpr.tfReset": "Reset to preset", "mpr.tfHint": "Drag points · press empty space to add · right-click removes",
  "mpr.mode.cpr": "CPR path", "mpr.cpr": "CPR", "mpr.cprKind": "CPR kind", "mpr.cprStraightened": "Straightened",
  "mpr.cprStretched": "Stretched", "mpr.cprClear": "Clear path",
  "mpr.cutRemove": "Scalpel removes", "mpr.cutInside": "Remove inside", "mpr.cutOutside": "Remove outside", "mpr.undo": "Undo cut",
  "mpr.images": "Images", "mpr.save": "Save as series", "mpr.saving": "Saving as a new series…",
  "mpr.saved": "Saved as series {n} ({k} images)", "mpr.saveFailed": "Not saved: {e}", "mpr.derived": "MPR / 3D result",
  "mpr.view.axial": "Axial", "mpr.view.coronal": "Coronal", "mpr.view.sagittal": "Sagittal", "mpr.view.vr": "3D",
  "mpr.oblique": "oblique", "mpr.cuts": "cuts: {n}", "mpr.cursor": "Cross-hair", "mpr.outside": "outside",
  "mpr.failed": "3D failed: {e}", "mpr.noSeries": "Show a series first.",

  // viewer loading (loader.ts)
  "load.preview": "PREVIEW / 预览", "load.previewTitle": "Preview (server-rendered JPEG); the lossless image replaces it",
  "load.transfer": "Transfer", "load.transfer.stored": "As stored", "load.transfer.htj2k": "HTJ2K lossless", "load.transfer.jpeg-ls": "JPEG-LS lossless",
  "load.transferNote": "How images travel (always lossless); compressed costs server CPU; applies to the next study opened",
};
const ZH: Record<string, string> = {
  "app.loading": "加载中…",
  // report editor (report.ts)
  "report.open": "报告", "report.title": "报告", "report.noStudy": "未指定检查。", "report.none": "该检查尚未开始书写报告。",
  "report.template": "模板", "report.suggested": "按检查类型推荐", "report.start": "开始写报告", "report.form": "报告",
  "report.pid": "ID", "report.sex": "性别 / 年龄", "report.years": "{n} 岁", "report.accession": "检查号", "report.date": "日期",
  "report.modality": "设备", "report.exam": "检查项目", "report.referring": "申请医生",
  "report.st.draft": "草稿", "report.st.preliminary": "初步报告 · 待审核", "report.st.final": "终审 · 已签发", "report.st.amended": "已修订 · 已签发",
  "report.criticalBadge": "危急值", "report.lockedBy": "{who} 正在编辑（至 {until}）", "report.signedBy": "{who} 签发于 {when}",
  "report.author": "报告医生：{who}", "report.signedReadOnly": "报告已签发，不能修改；上级医师可填写原因后修订。",
  "report.withAttending": "已提交审核：由上级医师审核并签发。",
  "report.amendReason": "修订原因", "report.amendReasonHint": "为何修改已签发的报告（记入历史）",
  "report.critical": "危急值（通知临床医生）", "report.criticalNote": "危急内容、已通知何人",
  "report.keyImages": "报告关键图像", "report.keyImage": "关键图像", "report.dropHere": "将关键图像拖到此处（或点图像上的 +）",
  "report.noKeys": "无关键图像。", "report.caption": "图注", "report.remove": "移除",
  "report.asOriginal": "原始图像", "report.asScreenshot": "截图", "report.attachAs": "插入方式",
  "report.studyImages": "本检查图像", "report.flagged": "阅片时标记的关键图像", "report.series": "序列（中间层）",
  "report.flagHint": "在阅片器中按 K 标记关键图像后会显示在这里。", "report.dragHint": "把图像拖入报告，或点 +。",
  "report.addImage": "加入报告", "report.phrases": "常用语", "report.dept": "科室", "report.mine": "个人",
  "report.noPhrases": "暂无常用语。", "report.addPhrase": "添加常用语", "report.phraseTitle": "标题", "report.phraseText": "内容",
  "report.phraseShared": "科室常用语（所有人可用）", "report.phraseAdded": "已添加常用语“{title}”",
  "report.phraseHint": "点击插入到光标处。", "report.reason": "原因", "report.versions": "版本历史",
  "report.act.create": "创建", "report.act.save": "保存", "report.act.submit": "提交审核", "report.act.return": "退回",
  "report.act.sign": "签发", "report.act.amend": "修订",
  "report.save": "保存草稿", "report.submit": "提交审核", "report.return": "退回修改", "report.returnTitle": "退回给报告医生",
  "report.sign": "签发", "report.signNeedsAttending": "只有上级医师可以签发", "report.amend": "修订…", "report.amendSign": "签发修订",
  "report.previewHtml": "预览", "report.previewPdf": "PDF", "report.images": "图像",
  "report.ai": "AI", "report.aiAccepted": "AI · 已确认", "report.aiEdited": "AI · 已修改", "report.aiFrom": "由 {src} 填写：签发前请确认或修改",
  "report.accept": "确认",
  "report.unsaved": "有未保存的修改…", "report.readOnly": "只读", "report.saved": "已保存（第 {v} 版，{time}）",
  "report.autosaved": "已自动保存（第 {v} 版，{time}）", "report.created": "报告已创建（第 {v} 版）",
  "report.submitted": "已提交审核（第 {v} 版）", "report.returned": "已退回报告医生（第 {v} 版）",
  "report.signed": "{who} 已签发（第 {v} 版）", "report.amended": "修订已签发（第 {v} 版）",
  "report.amending": "修订中：修改内容、填写原因，然后签发修订。",
  "report.needReason": "请填写修订原因。", "report.refused": "操作被拒绝（{status}）：{e}",
  "report.reviewAi": "请先确认或修改 AI 填写的内容：{fields}", "report.lockedHint": "其他人正在编辑此报告，请稍后再试。",
  "nav.studies": "检查列表", "nav.admin": "管理", "nav.api": "接口", "nav.logout": "退出",
  "nav.switch": "以其他用户登录", "nav.health": "健康状态",
  "list.title": "检查列表", "list.patientId": "患者 ID", "list.patientName": "患者姓名",
  "list.modality": "设备类型", "list.any": "全部", "list.from": "起", "list.to": "止",
  "list.accession": "检查号", "list.search": "查询", "list.clear": "清空",
  "list.date": "日期", "list.description": "检查描述", "list.series": "序列",
  "list.images": "图像", "list.none": "没有符合条件的检查。", "list.prev": "上一页", "list.next": "下一页",
  "list.page": "第 {n} 页", "list.open": "打开", "list.error": "查询失败：{e}",
  // ---- study list on /api/worklist, patient time line, grouped viewer toolbar (task D) ----
  "wl.sex": "性别", "wl.sex.M": "男", "wl.sex.F": "女", "wl.sex.O": "其他", "wl.age": "{n} 岁", "wl.sexAge": "性别 / 年龄",
  "wl.ageRange": "年龄", "wl.ageFrom": "从", "wl.ageTo": "到", "wl.bodyPart": "检查部位", "wl.source": "来源",
  "wl.status": "状态", "wl.st.unread": "未读", "wl.st.ai_done": "AI 已分析", "wl.st.in_progress": "书写中",
  "wl.st.signed": "已签发", "wl.critical": "危急值", "wl.today": "今天", "wl.3days": "3 天", "wl.7days": "7 天",
  "wl.namePh": "姓名或拼音", "wl.thumbs": "序列缩略图", "wl.history": "检查历史", "wl.close": "关闭",
  "wl.pageOf": "第 {n} / {m} 页", "wl.total": "共 {n} 个检查", "wl.nStudies": "{n} 个检查",
  "wl.moreFilters": "更多筛选", "wl.perPage": "每页检查数", "wl.perPageN": "{n} 条/页",
  "tb.window": "显示", "tb.transform": "缩放 / 变换", "tb.measure": "测量", "tb.layout": "布局",
  "tb.tools": "工具", "tb.export": "导出", "tb.more": "更多",
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
  // ---- MPR / 3D layout (mpr.ts) ----
  "mpr.open": "MPR / 三维", "mpr.close": "← 二维", "mpr.building": "服务器正在重建容积…",
  "mpr.mode.cross": "十字定位", "mpr.mode.scroll": "翻层", "mpr.mode.wl": "窗宽窗位", "mpr.mode.rotate": "旋转",
  "mpr.mode.length": "测距", "mpr.mode.probe": "CT 值", "mpr.mode.cut": "手术刀",
  "mpr.window": "窗位", "mpr.windowDefault": "默认窗", "mpr.slab": "层厚", "mpr.slabMode": "层块模式",
  "mpr.slab.mip": "MIP", "mpr.slab.minip": "MinIP", "mpr.slab.avg": "平均", "mpr.reset": "复位平面", "mpr.clear": "清除测量",
  "mpr.vrPreset": "容积再现预设", "mpr.vrBone": "VR 骨骼", "mpr.vrLung": "VR 肺", "mpr.vrCta": "VR CTA 血管",
  "mpr.vrSkin": "VR 皮肤", "mpr.vrMra": "VR MRA",
  "mpr.oA": "前", "mpr.oP": "后", "mpr.oL": "左", "mpr.oR": "右", "mpr.oH": "头", "mpr.oF": "足",
  "mpr.oATitle": "前面观", "mpr.oPTitle": "后面观", "mpr.oLTitle": "左侧观", "mpr.oRTitle": "右侧观",
  "mpr.oHTitle": "头侧观", "mpr.oFTitle": "足侧观",
  // MPR：传递函数编辑与曲面重建（任务 H）
  "mpr.tf": "不透明度 / 颜色", "mpr.tfColor": "所选控制点的颜色", "mpr.tfRemove": "删除控制点",
  "mpr.tfReset": "恢复预设", "mpr.tfHint": "拖动控制点 · 点击空白处添加 · 右键删除",
  "mpr.mode.cpr": "CPR 路径", "mpr.cpr": "CPR", "mpr.cprKind": "CPR 方式", "mpr.cprStraightened": "拉直",
  "mpr.cprStretched": "拉伸", "mpr.cprClear": "清除路径",
  "mpr.cutRemove": "手术刀切除", "mpr.cutInside": "切除圈内", "mpr.cutOutside": "切除圈外", "mpr.undo": "撤销切割",
  "mpr.images": "图像数", "mpr.save": "另存为序列", "mpr.saving": "正在另存为新序列…",
  "mpr.saved": "已另存为序列 {n}（{k} 张图像）", "mpr.saveFailed": "保存失败：{e}", "mpr.derived": "MPR / 三维结果",
  "mpr.view.axial": "轴位", "mpr.view.coronal": "冠状位", "mpr.view.sagittal": "矢状位", "mpr.view.vr": "三维",
  "mpr.oblique": "斜位", "mpr.cuts": "切割 {n} 处", "mpr.cursor": "十字定位", "mpr.outside": "容积外",
  "mpr.failed": "三维处理失败：{e}", "mpr.noSeries": "请先显示一个序列。",

  // viewer loading (loader.ts)
  "load.preview": "预览 / PREVIEW", "load.previewTitle": "预览（服务器渲染的 JPEG），无损图像加载后自动替换",
  "load.transfer": "传输", "load.transfer.stored": "按存储格式", "load.transfer.htj2k": "HTJ2K 无损", "load.transfer.jpeg-ls": "JPEG-LS 无损",
  "load.transferNote": "图像传输格式（始终无损）；压缩传输占用服务器 CPU；下次打开检查时生效",
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
