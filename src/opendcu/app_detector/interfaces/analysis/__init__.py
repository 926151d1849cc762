"""The live analysis interface: ImageMux images -> worker processes -> results (REST/SSE, streams, NXmx)."""

from opendcu.app_detector.interfaces.analysis.interface import ANNOTATION_KEY, SUMMARY_KEY, AnalysisInterface

__all__ = ["ANNOTATION_KEY", "SUMMARY_KEY", "AnalysisInterface"]
