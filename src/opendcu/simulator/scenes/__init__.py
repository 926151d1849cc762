"""Scenes the simulated detector can see (see `scenes/base.py` for the protocol)."""

from opendcu.simulator.scenes import basic  # noqa: F401  (registers flood, pattern)
from opendcu.simulator.scenes import mx, powder  # noqa: F401  (registers mx, powder; issue #7)
from opendcu.simulator.scenes.base import SCENES, Experiment, Scene, make_scene, register_scene

__all__ = ["SCENES", "Experiment", "Scene", "make_scene", "register_scene"]
