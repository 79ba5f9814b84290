"""AI analysis: plug-in modules behind one interface (:mod:`radcloud.analysis.base`),
a registry and auto-run rules, results stored as JSON and DICOM in the study."""
