"""Calibration data of the attached detector's modules.

For the simulated detector the "factory calibration" is what the geometry defines: the gap bit on
inter-module gaps, and a flat (all ones) flatfield, since the skeleton simulator has a uniform gain.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opendcu.geometry import DetectorLayout, get_model


@dataclass(frozen=True)
class Calibration:
    pixel_mask: np.ndarray  # uint32 [h, w]
    flatfield: np.ndarray  # float32 [h, w]
    calibration_id: str


def calibration_for(detector: str, photon_energy: float, threshold_energy: float) -> Calibration:
    """The calibration of `detector` at the given energies."""
    layout = DetectorLayout(get_model(detector))
    return Calibration(
        pixel_mask=layout.default_pixel_mask(),
        flatfield=np.ones(layout.shape, dtype=np.float32),
        calibration_id=f"{detector}/factory",
    )
