"""Calibration data of the attached detector's modules.

For the simulated detector the "factory calibration" is what a factory would measure on it: the simulated
modules' own sensor response (`simulator/physics.py::readout_response`), placed like the image:
- pixel mask: gap bit on inter-module gaps, dead (bit 1), under- (bit 2) and over-responding (bit 3) pixels,
  hot pixels as noisy (bit 4); both virtual pixels of a split chip-border pixel carry its bits;
- flatfield: 1 / relative efficiency of each pixel (the simulated gain map), 1 on gaps and dead pixels.
The simulated gain does not depend on energy, so neither does this calibration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opendcu.geometry import DetectorLayout, get_model
from opendcu.simulator.physics import readout_response


@dataclass(frozen=True)
class Calibration:
    pixel_mask: np.ndarray  # uint32 [h, w]
    flatfield: np.ndarray  # float32 [h, w]
    calibration_id: str


def calibration_for(detector: str, photon_energy: float, threshold_energy: float) -> Calibration:
    """The calibration of `detector` at the given energies."""
    model = get_model(detector)
    layout = DetectorLayout(model)
    mask = layout.default_pixel_mask()
    flatfield = np.ones(layout.shape, dtype=np.float32)
    rows, cols = layout.row_map.src, layout.col_map.src
    for module_id in range(model.n_modules):
        efficiency, bits = readout_response(model, module_id)
        region = layout.module_slices(module_id)
        mask[region] |= bits[np.ix_(rows, cols)]
        placed = efficiency[np.ix_(rows, cols)]
        flatfield[region] = np.where(placed > 0, 1.0 / np.where(placed > 0, placed, 1.0), 1.0)
    return Calibration(pixel_mask=mask, flatfield=flatfield, calibration_id=f"{detector}/factory")
