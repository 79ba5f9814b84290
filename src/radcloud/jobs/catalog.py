"""Import every module that registers tasks, so any runner knows them all."""

from __future__ import annotations

from radcloud.config import Settings


def load(settings: Settings | None = None) -> None:
    """Register the tasks; with ``settings``, also the site's ONNX analysis models."""
    import radcloud.analysis.service  # noqa: F401  (registers "analysis.run")
    import radcloud.report.dicom_out  # noqa: F401  (registers "report.publish")

    if settings is not None:
        from radcloud.analysis import onnx_module

        onnx_module.load_dir(settings.analysis_models_dir)
