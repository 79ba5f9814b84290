"""Person Name search keys, for fuzzy matching incl. Chinese names.

A PN value has up to three component groups (alphabetic = ideographic =
phonetic, PS3.5 §6.2.1), each ``Family^Given^Middle^Prefix^Suffix``.  The
search key holds, lower-cased and space separated: every component, each
group's family+given run together, and the pinyin of ideographic
components, so "wang xiaodong", "王小东", "王" and "xiaod" all find
``Wang^Xiaodong=王^小东``.
"""

from __future__ import annotations

import re
import unicodedata

_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
_SPLIT = re.compile(r"[\s^=,.\-]+")


def _pinyin(text: str) -> list[str]:
    try:
        from pypinyin import lazy_pinyin
    except ImportError:  # pragma: no cover - pypinyin is a dependency
        return []
    syllables = [s for s in lazy_pinyin(text) if s.strip()]
    return syllables


def _norm(text: str) -> str:
    return unicodedata.normalize("NFKC", text).lower().strip()


def name_key(pn: str) -> str:
    """The search key of a Person Name value ('' for an empty name)."""
    words: list[str] = []
    for group in _norm(pn).split("="):
        comps = [c.strip() for c in group.split("^") if c.strip()]
        for comp in comps:
            words.extend(w for w in _SPLIT.split(comp) if w)
        if len(comps) >= 2:
            words.append("".join(comps[:2]).replace(" ", ""))
        joined = "".join(comps)
        if _CJK.search(joined):
            syl = _pinyin(joined)
            if syl:
                words.extend(syl)
                words.append("".join(syl))
                for comp in comps:
                    words.append("".join(_pinyin(comp)))
    seen: dict[str, None] = {}
    for w in words:
        seen.setdefault(w, None)
    return " " + " ".join(seen) + " " if seen else ""


def query_tokens(query: str) -> list[str]:
    """Tokens of a fuzzy name query; wildcards are dropped (fuzzy is prefix matching)."""
    q = _norm(query).replace("*", " ").replace("?", " ")
    tokens = [t for t in _SPLIT.split(q) if t]
    out: list[str] = []
    for t in tokens:
        out.append(t)
    return out
