"""The modules this process knows, and which of them run by themselves on a series.

Built-in modules are registered on first use; a site adds its own with
:func:`register` (at start-up) or drops ONNX models in ``analysis_models_dir``
(:mod:`radcloud.analysis.onnx_module`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from radcloud.analysis.base import AnalysisModule, SeriesInfo
from radcloud.errors import NotFound

_modules: dict[str, AnalysisModule] = {}
_lock = threading.Lock()
_builtins_loaded = False


def _load_builtins() -> None:
    global _builtins_loaded
    with _lock:
        if _builtins_loaded:
            return
        _builtins_loaded = True
    from radcloud.analysis.lung import LungModule

    register(LungModule())


def register(module: AnalysisModule) -> Callable[[], None]:
    """Add (or replace, by name) a module; returns a function that removes it again."""
    with _lock:
        previous = _modules.get(module.name)
        _modules[module.name] = module

    def remove() -> None:
        with _lock:
            if _modules.get(module.name) is module:
                if previous is not None:
                    _modules[module.name] = previous
                else:
                    del _modules[module.name]

    return remove


def get(name: str) -> AnalysisModule:
    _load_builtins()
    found = _modules.get(name)
    if found is None:
        raise NotFound(f"no analysis module named {name!r}")
    return found


def modules() -> list[AnalysisModule]:
    _load_builtins()
    return sorted(_modules.values(), key=lambda m: m.name)


def automatic(info: SeriesInfo) -> list[AnalysisModule]:
    """The modules that run by themselves on ``info`` once it is complete."""
    return [m for m in modules() if m.auto and m.accepts.reason(info) is None]


def describe(module: AnalysisModule) -> dict[str, Any]:
    a = module.accepts
    return {
        "name": module.name,
        "version": module.version,
        "title": module.title,
        "auto": module.auto,
        "accepts": {
            "modalities": list(a.modalities),
            "body_parts": list(a.body_parts),
            "contrast": a.contrast,
            "max_slice_thickness_mm": a.max_slice_thickness_mm,
            "min_instances": a.min_instances,
        },
    }
