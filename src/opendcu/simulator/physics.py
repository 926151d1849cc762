"""Detector physics of a simulated module: expected photons (virtual pixels) -> raw counter values.

1. physical pixels: a double-width chip-border pixel collects the photons of both virtual pixels it becomes;
2. photon noise: Poisson, seeded by (series seed, module, frame) so that any frame can be re-rendered exactly;
3. the counter: values clip at the readout depth's top value minus one (the top value means "error").
"""

from __future__ import annotations

import numpy as np

from opendcu.geometry import DetectorLayout
from opendcu.simulator.scenes.base import Scene

COUNTER_TOP = 0xFFFF  # 16-bit readout; the top value is reserved for errors


def frame_rng(seed: int, module_id: int, frame_number: int) -> np.random.Generator:
    return np.random.default_rng([seed, module_id, frame_number])


def render_module_frame(scene: Scene, layout: DetectorLayout, module_id: int, frame_number: int, seed: int) -> np.ndarray:
    """The raw uint16 frame (physical pixels) that module `module_id` reads out for `frame_number`."""
    rows, cols = layout.module_slices(module_id)
    expected = layout.unplace_module(scene.expected(frame_number, rows, cols))
    if scene.exact:
        counts = np.rint(expected)
    else:
        counts = frame_rng(seed, module_id, frame_number).poisson(expected)
    return np.clip(counts, 0, COUNTER_TOP - 1).astype(np.uint16)
