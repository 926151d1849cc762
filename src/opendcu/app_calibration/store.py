"""Calibration data of the attached detector's modules.

For the simulated detector the "factory calibration" is what a factory would measure on it: the simulated
modules' own sensor response (`simulator/physics.py::readout_response`) at the requested photon and threshold
energies, placed like the image:
- pixel mask: gap bit on inter-module gaps, dead (bit 1), under- (bit 2) and over-responding (bit 3) pixels,
  hot pixels as noisy (bit 4); both virtual pixels of a split chip-border pixel carry its bits. The bits come
  from the pixels' gain and do not depend on the energies;
- flatfield: 1 / relative efficiency of each pixel at the energies (gain, sensor thickness against the
  absorption length at the photon energy, trim residual against the threshold), 1 on gaps and dead pixels.
  So, as on a real detector (spec/simplon-api.md §14), the flatfield changes with the photon/threshold energy:
  app-detector asks for it again whenever they change.
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
    """The calibration of `detector` at the given energies (eV)."""
    model = get_model(detector)
    layout = DetectorLayout(model)
    mask = layout.default_pixel_mask()
    flatfield = np.ones(layout.shape, dtype=np.float32)
    rows, cols = layout.row_map.src, layout.col_map.src
    for module_id in range(model.n_modules):
        efficiency, bits = readout_response(model, module_id, photon_energy, threshold_energy)
        region = layout.module_slices(module_id)
        mask[region] |= bits[np.ix_(rows, cols)]
        placed = efficiency[np.ix_(rows, cols)]
        flatfield[region] = np.where(placed > 0, 1.0 / np.where(placed > 0, placed, 1.0), 1.0)
    calibration_id = f"{detector}/factory/E={photon_energy:.2f}eV/T={threshold_energy:.2f}eV"
    return Calibration(pixel_mask=mask, flatfield=flatfield, calibration_id=calibration_id)
