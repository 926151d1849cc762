"""Scenes the simulated detector can see (see `scenes/base.py` for the protocol)."""

from opendcu.simulator.scenes import (  # noqa: F401  (registers mx, powder; issue #7)
    basic,  # noqa: F401  (registers flood, pattern)
    mx,
    powder,
)
from opendcu.simulator.scenes.base import SCENES, Experiment, Scene, make_scene, register_scene

__all__ = ["SCENES", "Experiment", "Scene", "make_scene", "register_scene"]
