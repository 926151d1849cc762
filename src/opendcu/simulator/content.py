"""What the simulated modules see: deterministic scenes, one raw module frame at a time.

A scene is chosen per series by a JSON spec (carried in the CONFIGURE packet's `content` field) and is fully
determined by (spec, seed, module id, frame number). Tests regenerate the same frames to check what arrives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from opendcu.geometry.models import DetectorModel


class Scene(Protocol):
    """Produces the raw counts one module records for one frame."""

    def frame(self, module_id: int, frame_number: int) -> np.ndarray:
        """uint16 array of the module's raw (physical-pixel) shape."""
        ...


def _rng(seed: int, module_id: int, frame_number: int) -> np.random.Generator:
    return np.random.default_rng([seed, module_id, frame_number])


@dataclass
class FloodScene:
    """Uniform illumination: Poisson counts with the given mean per pixel per frame."""

    model: DetectorModel
    seed: int
    mean: float = 2.0

    def frame(self, module_id: int, frame_number: int) -> np.ndarray:
        counts = _rng(self.seed, module_id, frame_number).poisson(self.mean, self.model.module.raw_shape)
        return np.minimum(counts, 0xFFFE).astype(np.uint16)


@dataclass
class PatternScene:
    """A test pattern: every pixel carries (row + col + module + frame) mod `period`; no randomness."""

    model: DetectorModel
    seed: int
    period: int = 4093

    def frame(self, module_id: int, frame_number: int) -> np.ndarray:
        rows, cols = self.model.module.raw_shape
        grid = np.add.outer(np.arange(rows), np.arange(cols)) + module_id * 7 + frame_number * 13
        return (grid % self.period).astype(np.uint16)


SCENES: dict[str, type] = {"flood": FloodScene, "pattern": PatternScene}


def make_scene(model: DetectorModel, seed: int, spec: str | dict[str, Any] | None) -> Scene:
    """Build a scene from its JSON spec, e.g. `{"kind": "flood", "mean": 3}`; default is a flood."""
    if isinstance(spec, str):
        spec = json.loads(spec) if spec.strip() else {}
    spec = dict(spec or {})
    kind = spec.pop("kind", "flood")
    try:
        scene_cls = SCENES[kind]
    except KeyError:
        raise ValueError(f"unknown scene kind {kind!r}; known: {', '.join(SCENES)}") from None
    return scene_cls(model=model, seed=seed, **spec)
