"""app-calibration: per-module calibration data (pixel mask, flatfield) served over gRPC."""
