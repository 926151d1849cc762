"""Basic scenes: uniform flood illumination, a dark, and an exact test pattern."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from opendcu.simulator.scenes.base import Experiment, register_scene


def _region_shape(rows: slice, cols: slice) -> tuple[int, int]:
    return (rows.stop - rows.start, cols.stop - cols.start)


@register_scene("flood")
@dataclass
class FloodScene:
    """Uniform illumination: `flux` photons per virtual pixel per second of count time."""

    experiment: Experiment
    flux: float = 2.0
    exact = False
    static = True

    def __post_init__(self) -> None:
        if not np.isfinite(self.flux) or self.flux < 0:
            raise ValueError(f"flood flux must be a finite number >= 0, got {self.flux!r}")

    def expected(self, frame_number: int, rows: slice, cols: slice) -> np.ndarray:
        return np.full(_region_shape(rows, cols), self.flux * self.experiment.count_time_s, dtype=np.float32)


@register_scene("dark")
@dataclass
class DarkScene:
    """No beam: the detector sees nothing but its own hot pixels."""

    experiment: Experiment
    exact = False
    static = True

    def expected(self, frame_number: int, rows: slice, cols: slice) -> np.ndarray:
        return np.zeros(_region_shape(rows, cols), dtype=np.float32)


@register_scene("pattern")
@dataclass
class PatternScene:
    """A test pattern: pixel (r, c) of frame f counts exactly (r + c + 13 f) mod `period`; no noise."""

    experiment: Experiment
    period: int = 4093
    exact = True

    def __post_init__(self) -> None:
        if not isinstance(self.period, int) or not 1 <= self.period <= 0xFFFF:
            raise ValueError(f"pattern period must be an integer in [1, 65535], got {self.period!r}")

    def expected(self, frame_number: int, rows: slice, cols: slice) -> np.ndarray:
        grid = np.add.outer(np.arange(rows.start, rows.stop), np.arange(cols.start, cols.stop)) + 13 * frame_number
        return (grid % self.period).astype(np.float32)
