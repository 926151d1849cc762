"""Basic scenes: uniform flood illumination and an exact test pattern."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opendcu.simulator.scenes.base import Experiment, register_scene


@register_scene("flood")
@dataclass
class FloodScene:
    """Uniform illumination: `flux` photons per virtual pixel per second of count time."""

    experiment: Experiment
    flux: float = 2.0
    exact = False

    def expected(self, frame_number: int, rows: slice, cols: slice) -> np.ndarray:
        shape = (rows.stop - rows.start, cols.stop - cols.start)
        return np.full(shape, self.flux * self.experiment.count_time_s, dtype=np.float32)


@register_scene("pattern")
@dataclass
class PatternScene:
    """A test pattern: pixel (r, c) of frame f counts exactly (r + c + 13 f) mod `period`; no noise."""

    experiment: Experiment
    period: int = 4093
    exact = True

    def expected(self, frame_number: int, rows: slice, cols: slice) -> np.ndarray:
        grid = np.add.outer(np.arange(rows.start, rows.stop), np.arange(cols.start, cols.stop)) + 13 * frame_number
        return (grid % self.period).astype(np.float32)
