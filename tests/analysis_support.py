"""Shared helpers of the analysis tests: simulated MX/powder experiments with their truth."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from opendcu.analysis.geometry import Geometry
from opendcu.geometry import DetectorLayout, get_model
from opendcu.simulator.scenes import make_scene

LYSOZYME = (79.1, 79.1, 37.9, 90.0, 90.0, 90.0)
ERROR32 = 0xFFFFFFFF


@dataclass
class SimulatedExperiment:
    scene: object
    geometry: Geometry
    layout: DetectorLayout

    @property
    def model(self):
        return self.layout.model

    @property
    def mask(self) -> np.ndarray:
        return self.layout.gap_mask


def mx_experiment(
    detector: str = "eiger2-1m",
    seed: int = 1,
    distance: float = 0.1,
    wavelength: float = 1.0,
    omega_increment: float = 0.1,
    count_time: float = 0.1,
    beam: tuple[float, float] | None = None,
    **scene,
) -> SimulatedExperiment:
    """An MX rotation scene on a detector with the beam near its centre, and the matching analysis geometry."""
    model = get_model(detector)
    h, w = model.shape
    bx, by = beam or (w / 2 + 0.37, h / 2 - 0.21)
    spec = {
        "kind": "mx",
        **scene,
        "experiment": {
            "wavelength_a": wavelength,
            "distance_m": distance,
            "beam_center_x_px": bx,
            "beam_center_y_px": by,
            "count_time_s": count_time,
            "omega_increment_deg": omega_increment,
        },
    }
    geometry = Geometry.from_beam_center(model.shape, bx, by, distance, wavelength)
    return SimulatedExperiment(make_scene(model, seed, spec), geometry, DetectorLayout(model))


def match(
    ax: np.ndarray, ay: np.ndarray, bx: np.ndarray, by: np.ndarray, radius: float
) -> tuple[np.ndarray, np.ndarray]:
    """For each point a: whether a point b lies within `radius`, and the distance to the nearest."""
    if len(bx) == 0:
        return np.zeros(len(ax), bool), np.full(len(ax), np.inf)
    distance, _ = cKDTree(np.c_[bx, by]).query(np.c_[ax, ay])
    return distance <= radius, distance
