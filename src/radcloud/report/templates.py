"""Report templates: structured fields per exam type, and the coded categories.

A template is plain JSON (so an admin can add one through the API)::

    {"name": "chest_ct", "title": {"en": "CT Chest", "zh": "胸部 CT"},
     "match": {"modalities": ["CT"], "keywords": ["chest", "胸"]},
     "fields": [{"key": "findings", "type": "text", "label": {"en": ..., "zh": ...}},
                {"key": "lung_rads", "type": "category", "system": "lung_rads"}, ...]}

Field types: ``text``, ``number`` (``unit``, ``min``, ``max``), ``choice``
(``options``), ``category`` (options of a coded system in :data:`CATEGORY_SYSTEMS`)
and ``bool``.  Built-in templates live here; an institution's own (new or
overriding a built-in by name) are rows of ``report_templates``.

Categories follow ../shared/reference: Lung-RADS v2022 (lung_nodules.md),
CAD-RADS 2.0 with its plaque burden modifier (coronary.md), and CAC-DRS with
Agatston-based A categories and the vessel count N (agatston.md; the visual
notation for non-gated CT is not verified there, so it is not offered).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from radcloud.errors import InvalidRequest

FIELD_TYPES = ("text", "number", "choice", "category", "bool")
TEXT_LIMIT = 20000
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class CategorySystem:
    """A coded category scale: its display name and values (with bilingual meanings)."""

    name: str
    label: str
    values: dict[str, dict[str, str]]

    def display(self, value: str) -> str:
        return f"{self.label} {value}"


def _v(en: str, zh: str) -> dict[str, str]:
    return {"en": en, "zh": zh}


CATEGORY_SYSTEMS: dict[str, CategorySystem] = {
    "lung_rads": CategorySystem(
        "lung_rads",
        "Lung-RADS",
        {
            "0": _v("Incomplete", "不完整"),
            "1": _v("Negative", "阴性"),
            "2": _v("Benign", "良性"),
            "3": _v("Probably benign", "可能良性"),
            "4A": _v("Suspicious", "可疑"),
            "4B": _v("Very suspicious", "高度可疑"),
            "4X": _v("Very suspicious, additional features", "高度可疑（附加特征）"),
        },
    ),
    "cad_rads": CategorySystem(
        "cad_rads",
        "CAD-RADS",
        {
            "0": _v("0 %: no plaque, no stenosis", "0%：无斑块、无狭窄"),
            "1": _v("1-24 %: minimal non-obstructive", "1-24%：极轻度非阻塞性"),
            "2": _v("25-49 %: mild non-obstructive", "25-49%：轻度非阻塞性"),
            "3": _v("50-69 %: moderate", "50-69%：中度狭窄"),
            "4A": _v("70-99 % in one or two vessels: severe", "一或两支血管 70-99%：重度狭窄"),
            "4B": _v(
                "left main >= 50 % or three-vessel obstructive: severe",
                "左主干 ≥50% 或三支血管阻塞性病变：重度",
            ),
            "5": _v("100 %: total occlusion", "100%：完全闭塞"),
            "N": _v("non-diagnostic study", "非诊断性检查"),
        },
    ),
    "cad_rads_p": CategorySystem(
        "cad_rads_p",
        "P",
        {
            "P1": _v("mild plaque burden", "轻度斑块负荷"),
            "P2": _v("moderate plaque burden", "中度斑块负荷"),
            "P3": _v("severe plaque burden", "重度斑块负荷"),
            "P4": _v("extensive plaque burden", "广泛斑块负荷"),
        },
    ),
    "cac_drs": CategorySystem(
        "cac_drs",
        "CAC-DRS",
        {
            "A0": _v("Agatston 0", "Agatston 0"),
            "A1": _v("Agatston 1-99", "Agatston 1-99"),
            "A2": _v("Agatston 100-299", "Agatston 100-299"),
            "A3": _v("Agatston >= 300", "Agatston ≥300"),
        },
    ),
    "cac_drs_n": CategorySystem(
        "cac_drs_n",
        "N",
        {f"N{n}": _v(f"{n} vessel(s) with calcium", f"{n} 支血管钙化") for n in range(1, 5)},
    ),
}


def cac_drs_category(agatston: float) -> str:
    """The Agatston-based CAC-DRS category (A0 = 0, A1 = 1-99, A2 = 100-299, A3 >= 300)."""
    if agatston < 0 or not math.isfinite(agatston):
        raise InvalidRequest("an Agatston score is a finite number >= 0")
    if agatston == 0:
        return "A0"
    return "A1" if agatston < 100 else "A2" if agatston < 300 else "A3"


def _f(key: str, ftype: str, en: str, zh: str, **extra: Any) -> dict[str, Any]:
    return {"key": key, "type": ftype, "label": {"en": en, "zh": zh}, **extra}


_TECHNIQUE = _f("technique", "text", "Technique", "检查技术")
_COMPARISON = _f("comparison", "text", "Comparison", "对比")
_FINDINGS = _f("findings", "text", "Findings", "影像所见")
_IMPRESSION = _f("impression", "text", "Impression", "诊断意见", required=True)
_RECOMMENDATION = _f("recommendation", "text", "Recommendation", "建议")

BUILTIN_TEMPLATES: dict[str, dict[str, Any]] = {
    "generic": {
        "name": "generic",
        "title": {"en": "Imaging report", "zh": "影像检查报告"},
        "match": {},
        "fields": [_TECHNIQUE, _COMPARISON, _FINDINGS, _IMPRESSION, _RECOMMENDATION],
    },
    "chest_ct": {
        "name": "chest_ct",
        "title": {"en": "CT Chest", "zh": "胸部 CT"},
        "match": {"modalities": ["CT"], "keywords": ["chest", "thorax", "lung", "胸", "肺"]},
        "fields": [
            _TECHNIQUE,
            _COMPARISON,
            _FINDINGS,
            _f("nodule_count", "number", "Nodules", "结节数目", min=0, max=1000),
            _f(
                "largest_nodule_mm",
                "number",
                "Largest nodule, mean diameter",
                "最大结节平均径",
                unit="mm",
                min=0,
                max=300,
                decimals=1,
            ),
            _f(
                "nodule_type",
                "choice",
                "Nodule type",
                "结节类型",
                options={
                    "solid": {"en": "solid", "zh": "实性"},
                    "part_solid": {"en": "part-solid", "zh": "部分实性"},
                    "ground_glass": {"en": "non-solid (ground glass)", "zh": "磨玻璃"},
                },
            ),
            _f("lung_rads", "category", "Lung-RADS category", "Lung-RADS 分类", system="lung_rads"),
            _f(
                "lung_rads_s",
                "bool",
                "S: significant non-lung-cancer finding",
                "S：有临床意义的非肺癌发现",
            ),
            _IMPRESSION,
            _RECOMMENDATION,
        ],
    },  # fmt: skip
    "chest_xray": {
        "name": "chest_xray",
        "title": {"en": "Chest radiograph", "zh": "胸部 X 线"},
        "match": {"modalities": ["CR", "DX"], "keywords": ["chest", "thorax", "胸"]},
        "fields": [
            _f(
                "projection",
                "choice",
                "Projection",
                "投照体位",
                options={
                    "pa": {"en": "PA", "zh": "后前位"},
                    "ap": {"en": "AP", "zh": "前后位"},
                    "pa_lat": {"en": "PA and lateral", "zh": "后前位及侧位"},
                },
            ),
            _COMPARISON,
            _FINDINGS,
            _IMPRESSION,
            _RECOMMENDATION,
        ],
    },  # fmt: skip
    "coronary_cta": {
        "name": "coronary_cta",
        "title": {"en": "Coronary CT angiography", "zh": "冠状动脉 CT 血管成像"},
        "match": {
            "modalities": ["CT"],
            "keywords": ["cta", "coronary", "ccta", "冠脉", "冠状动脉"],
        },
        "fields": [
            _TECHNIQUE,
            _f(
                "dominance",
                "choice",
                "Dominance",
                "优势型",
                options={
                    "right": {"en": "right", "zh": "右优势型"},
                    "left": {"en": "left", "zh": "左优势型"},
                    "codominant": {"en": "co-dominant", "zh": "均衡型"},
                },
            ),
            _f(
                "max_stenosis_pct",
                "number",
                "Maximal stenosis",
                "最大狭窄程度",
                unit="%",
                min=0,
                max=100,
            ),
            _FINDINGS,
            _f("cad_rads", "category", "CAD-RADS category", "CAD-RADS 分级", system="cad_rads"),
            _f("cad_rads_p", "category", "Plaque burden", "斑块负荷", system="cad_rads_p"),
            _f("cad_rads_hrp", "bool", "HRP: high-risk plaque", "HRP：高危斑块"),
            _IMPRESSION,
            _RECOMMENDATION,
        ],
    },  # fmt: skip
    "calcium_score": {
        "name": "calcium_score",
        "title": {"en": "Coronary calcium score", "zh": "冠状动脉钙化积分"},
        "match": {
            "modalities": ["CT"],
            "keywords": ["calcium", "calcium score", "agatston", "cac", "钙化", "钙化积分"],
        },
        "fields": [
            _TECHNIQUE,
            _f("agatston", "number", "Agatston score", "Agatston 积分", min=0, max=100000),
            _f(
                "vessels_with_calcium",
                "number",
                "Vessels with calcium (LM, LAD, LCX, RCA)",
                "钙化血管数（LM、LAD、LCX、RCA）",
                min=0,
                max=4,
            ),
            _f("cac_drs", "category", "CAC-DRS category", "CAC-DRS 分级", system="cac_drs"),
            _f("cac_drs_n", "category", "CAC-DRS vessels", "CAC-DRS 血管数", system="cac_drs_n"),
            _FINDINGS,
            _IMPRESSION,
            _RECOMMENDATION,
        ],
    },  # fmt: skip
}


# ------------------------------------------------------------------ checking


def check_template(definition: Any) -> dict[str, Any]:
    """A template definition as stored; :class:`InvalidRequest` says what is wrong."""
    if not isinstance(definition, dict):
        raise InvalidRequest("a template is a JSON object")
    name = definition.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise InvalidRequest("template name: lower-case letters, digits, '_' or '-', ≤ 64")
    title = definition.get("title")
    if not isinstance(title, dict) or not all(isinstance(v, str) for v in title.values()):
        raise InvalidRequest('template title: {"en": ..., "zh": ...}')
    fields = definition.get("fields")
    if not isinstance(fields, list) or not fields:
        raise InvalidRequest("a template needs a non-empty list of fields")
    seen: set[str] = set()
    for field in fields:
        _check_field(field, seen)
    match = definition.get("match", {})
    if not isinstance(match, dict):
        raise InvalidRequest('template match: {"modalities": [...], "keywords": [...]}')
    return {"name": name, "title": title, "match": match, "fields": fields}


def _check_field(field: Any, seen: set[str]) -> None:
    if not isinstance(field, dict) or not isinstance(field.get("key"), str):
        raise InvalidRequest("each field is an object with a 'key'")
    key = field["key"]
    if not NAME_RE.match(key) or key in seen:
        raise InvalidRequest(f"field key {key!r} is not a valid, unique name")
    seen.add(key)
    ftype = field.get("type")
    if ftype not in FIELD_TYPES:
        raise InvalidRequest(f"field {key}: type must be one of {', '.join(FIELD_TYPES)}")
    if ftype == "choice" and not (isinstance(field.get("options"), dict) and field["options"]):
        raise InvalidRequest(f"field {key}: a choice needs options")
    if ftype == "category" and field.get("system") not in CATEGORY_SYSTEMS:
        known = ", ".join(CATEGORY_SYSTEMS)
        raise InvalidRequest(f"field {key}: category system must be one of {known}")


def options(field: dict[str, Any]) -> dict[str, Any]:
    """The allowed values of a choice or category field, with their labels."""
    if field["type"] == "category":
        return CATEGORY_SYSTEMS[field["system"]].values
    return dict(field.get("options") or {})


def check_value(field: dict[str, Any], value: Any) -> Any:
    """``value`` for ``field``, normalised; None clears it.  InvalidRequest otherwise."""
    if value is None or value == "":
        return None
    key, ftype = field["key"], field["type"]
    if ftype == "text":
        if not isinstance(value, str) or len(value) > TEXT_LIMIT:
            raise InvalidRequest(f"{key}: text of at most {TEXT_LIMIT} characters")
        return value
    if ftype == "bool":
        if not isinstance(value, bool):
            raise InvalidRequest(f"{key}: true or false")
        return value
    if ftype == "number":
        return _number(field, value)
    allowed = options(field)
    if str(value) not in allowed:
        raise InvalidRequest(f"{key}: {value!r} is not one of {', '.join(allowed)}")
    return str(value)


def _number(field: dict[str, Any], value: Any) -> float | int:
    key = field["key"]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidRequest(f"{key}: a number")
    lo, hi = field.get("min"), field.get("max")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise InvalidRequest(f"{key}: {value} is outside {lo}..{hi}")
    return value


def field_map(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["key"]: f for f in template["fields"]}


def display_value(field: dict[str, Any], value: Any, lang: str = "zh") -> str:
    """How a value reads in the report (category codes with their scale's name)."""
    if value is None:
        return ""
    ftype = field["type"]
    if ftype == "bool":
        return {"zh": "是" if value else "否"}.get(lang, "yes" if value else "no")
    if ftype == "number":
        decimals = field.get("decimals")
        text = f"{value:.{decimals}f}" if decimals is not None else f"{value:g}"
        return f"{text} {field['unit']}" if field.get("unit") else text
    if ftype == "category":
        return CATEGORY_SYSTEMS[field["system"]].display(str(value))
    if ftype == "choice":
        label = options(field).get(str(value), {})
        return str(label.get(lang) or label.get("en") or value)
    return str(value)


def suggest(templates: dict[str, dict[str, Any]], modalities: set[str], text: str) -> str:
    """The template that suits a study (its modalities and description), else ``generic``.

    Matched keywords count by their length (the more specific wins: "冠状动脉钙化积分"
    is a calcium score, not a coronary CTA); a template restricted to other
    modalities is never suggested.
    """
    words = text.lower()
    best, score = "generic", 0
    for name, t in templates.items():
        match = t.get("match") or {}
        mods = set(match.get("modalities") or [])
        if mods and not mods & modalities:
            continue
        hits = sum(len(k) for k in match.get("keywords") or [] if k.lower() in words)
        s = hits * 2 + (1 if mods else 0) if hits else 0
        if s > score:
            best, score = name, s
    return best
