"""Scenes: what the X-ray beam puts on the detector, independent of the detector's own physics.

A scene answers one question: the *expected* number of photons (a float mean, before any noise) in each
virtual pixel of the full image during one frame. The simulated modules (`simulator/physics.py`) turn that into
raw counts: conversion to physical pixels, Poisson noise, gain, dead/hot pixels, pile-up, saturation.

Scenes are chosen per series by a JSON spec carried in the CONFIGURE packet's `content` field:
`{"kind": "<name>", ...scene parameters..., "experiment": {...}}`. The `experiment` part is filled in by the DCU
from the detector config at arm (distance, beam centre, wavelength, goniometer, count time), so a scene sees the
same geometry that ends up in the NXmx file.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, Protocol

import numpy as np

from opendcu.geometry.models import DetectorModel, get_model


@dataclass(frozen=True)
class Experiment:
    """The experiment a scene is rendered for (all from the DCU's config at arm)."""

    detector: DetectorModel
    seed: int = 0
    wavelength_a: float = 1.0
    distance_m: float = 0.1
    beam_center_x_px: float = 0.0  # fast axis, virtual pixels
    beam_center_y_px: float = 0.0  # slow axis
    count_time_s: float = 1.0
    frame_time_s: float = 1.0
    omega_start_deg: float = 0.0
    omega_increment_deg: float = 0.0
    #: the rotation axis in the scene's lab frame (x along the fast pixel axis, y along the slow one, z along the
    #: beam): the DCU's omega axis, so that the crystal turns as the NXmx master says; None: the scene's default
    rotation_axis: tuple[float, float, float] | None = None

    @classmethod
    def from_json(cls, detector: DetectorModel, seed: int, spec: dict[str, Any]) -> Experiment:
        known = {f.name for f in fields(cls)} - {"detector", "seed"}
        values: dict[str, Any] = {k: float(v) for k, v in spec.items() if k in known and k != "rotation_axis"}
        if spec.get("rotation_axis") is not None:
            values["rotation_axis"] = tuple(float(v) for v in spec["rotation_axis"])
        return cls(detector=detector, seed=seed, **values)

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("detector", "seed")}


class Scene(Protocol):
    """Expected photons per virtual pixel for one frame, rendered region by region."""

    #: True for test patterns: the expected values are the exact counts (no photon noise, no detector physics)
    exact: bool
    # Optional: `static = True` says expected() is the same for every frame (flood, dark); the modules then
    # replay read-out frames from their noise bank instead of rendering each frame (simulator/physics.py).

    def expected(self, frame_number: int, rows: slice, cols: slice) -> np.ndarray:
        """float32 mean photons in the image region [rows, cols] during frame `frame_number` (1-based)."""
        ...


SceneFactory = Callable[..., Scene]
SCENES: dict[str, SceneFactory] = {}


def register_scene(name: str) -> Callable[[SceneFactory], SceneFactory]:
    """Class decorator: make a scene available under `{"kind": name}`; it is built as cls(experiment, **params)."""

    def wrap(factory: SceneFactory) -> SceneFactory:
        SCENES[name] = factory
        return factory

    return wrap


DEFAULT_SCENE = {"kind": "flood", "flux": 2.0}


def parse_spec(spec: str | dict[str, Any] | None) -> dict[str, Any]:
    if isinstance(spec, str):
        spec = json.loads(spec) if spec.strip() else {}
    return dict(spec or {})


def make_scene(detector: DetectorModel | str, seed: int, spec: str | dict[str, Any] | None) -> Scene:
    """Build a scene from its JSON spec (default: a flood); unknown kinds or parameters raise ValueError."""
    from opendcu.simulator import scenes as _  # noqa: F401  (registers the built-in scenes)

    if isinstance(detector, str):
        detector = get_model(detector)
    spec = parse_spec(spec) or dict(DEFAULT_SCENE)
    experiment = Experiment.from_json(detector, seed, spec.pop("experiment", {}))
    kind = spec.pop("kind", "flood")
    try:
        factory = SCENES[kind]
    except KeyError:
        raise ValueError(f"unknown scene kind {kind!r}; known: {', '.join(sorted(SCENES))}") from None
    try:
        return factory(experiment, **spec)
    except TypeError as exc:
        raise ValueError(f"bad parameters for scene {kind!r}: {exc}") from None
