"""Detector geometry: module types, detector models, and where each pixel goes."""

from opendcu.geometry.layout import DetectorLayout
from opendcu.geometry.models import MODELS, DetectorModel, ModuleType, get_model

__all__ = ["MODELS", "DetectorLayout", "DetectorModel", "ModuleType", "get_model"]
