"""opendcu: an open-source Detector Control Unit for hybrid-pixel X-ray detectors."""

__version__ = "0.1.0"
