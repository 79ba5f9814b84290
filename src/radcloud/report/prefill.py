"""AI prefill: the interface analysis results come through, and the marks they leave.

An analysis module (none exists yet) provides an :class:`AnalysisSource`
and registers it with :func:`register_source`.  When a report is created,
every source is asked for results of the study; each result names field
keys of a template and their values.  Empty fields are filled and marked::

    content["marks"][key] = {"by": "ai", "source": "lung-nodules 1.0",
                             "value": <what the AI said>, "state": "pending"}

A mark stays ``pending`` until a person accepts the value (``accepted``) or
changes it (``edited``); a report with pending AI values cannot be signed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from radcloud.archive.service import Archive
from radcloud.report import templates as tpl

PENDING, ACCEPTED, EDITED = "pending", "accepted", "edited"


@dataclass(frozen=True)
class AnalysisResult:
    """What one analysis found in a study, in a template's terms.

    ``values`` maps field keys to values (checked against the template; keys
    the template lacks are ignored).  ``key_images`` are
    ``{"series_uid", "sop_uid", "frame"}`` references to attach.
    """

    analysis: str  # e.g. "lung-nodules"
    version: str  # e.g. "1.0"
    values: dict[str, Any]
    template: str | None = None  # the template these values are for (None: any)
    key_images: list[dict[str, Any]] = field(default_factory=list)

    @property
    def source(self) -> str:
        return f"{self.analysis} {self.version}".strip()


class AnalysisSource(Protocol):
    """Where analysis results come from (the analysis module's store, or a fake in tests)."""

    def results_for(self, archive: Archive, study_uid: str) -> Iterable[AnalysisResult]: ...


_sources: list[AnalysisSource] = []


def register_source(source: AnalysisSource) -> Callable[[], None]:
    """Add a result source (at start-up); returns a function that removes it again."""
    _sources.append(source)
    return lambda: _sources.remove(source) if source in _sources else None


def results(archive: Archive, study_uid: str) -> list[AnalysisResult]:
    out: list[AnalysisResult] = []
    for source in list(_sources):
        out.extend(source.results_for(archive, study_uid))
    return out


def apply(
    content: dict[str, Any], template: dict[str, Any], found: Iterable[AnalysisResult]
) -> list[str]:
    """Fill empty fields of ``content`` from ``found`` and mark them; returns the keys filled.

    A value the template refuses (wrong option, out of range) is skipped: AI
    output never bypasses the checks a person's input gets.
    """
    fields = tpl.field_map(template)
    filled: list[str] = []
    for result in found:
        if result.template not in (None, template["name"]):
            continue
        for key, value in result.values.items():
            if key not in fields or content["fields"].get(key) not in (None, ""):
                continue
            try:
                value = tpl.check_value(fields[key], value)
            except Exception:
                continue
            if value is None:
                continue
            content["fields"][key] = value
            content["marks"][key] = {"by": "ai", "source": result.source, "value": value,
                                     "state": PENDING}  # fmt: skip
            filled.append(key)
        known = {(k.get("sop_uid"), k.get("frame", 1)) for k in content["key_images"]}
        for ref in result.key_images:
            if (ref.get("sop_uid"), ref.get("frame", 1)) not in known:
                content["key_images"].append({**ref, "source": result.source})
    return filled


def review(content: dict[str, Any], accept: Iterable[str]) -> None:
    """Update marks after a person's save: changed values are ``edited``, ``accept``-ed accepted."""
    wanted = set(accept)
    for key, mark in content["marks"].items():
        if mark.get("state") != PENDING:
            continue
        if content["fields"].get(key) != mark.get("value"):
            mark["state"] = EDITED
        elif key in wanted:
            mark["state"] = ACCEPTED


def pending(content: dict[str, Any]) -> list[str]:
    """Field keys whose AI value no person has looked at yet."""
    return sorted(k for k, m in content.get("marks", {}).items() if m.get("state") == PENDING)
