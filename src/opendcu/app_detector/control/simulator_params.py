"""The `simulator` module (not part of SIMPLON): inputs of the simulated detector that a real one gets from
the beamline hardware.

    PUT /simulator/api/1.8.0/command/external_trigger            an edge on the trigger input (exts)
    PUT /simulator/api/1.8.0/command/external_trigger {"value": t}   a gate of t seconds (exte; default count_time)
    PUT /simulator/api/1.8.0/config/scene {"value": "<JSON>"}    what the beam shows from the next arm on
                                                                 ("" = the server's --scene)
    PUT /simulator/api/1.8.0/config/physics {"value": "<JSON>"}  a change of the simulated sensor's hidden physics
                                                                 (simulator/physics.py PhysicsVariant; "" = none)
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from opendcu.app_detector.control.errors import InvalidValue
from opendcu.app_detector.control.parameters import Command, Parameter, Subsystem

if TYPE_CHECKING:
    from opendcu.app_detector.control.acquisition import AcquisitionController


def _json_object(key: str):
    def check(value: Any) -> None:
        if value == "":
            return
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            raise InvalidValue(f"Parameter {key}: not JSON: {exc}") from None
        if not isinstance(parsed, dict):
            raise InvalidValue(f"Parameter {key}: expected a JSON object, got {value!r:.80}")

    return check


def build_simulator_subsystem(controller: "AcquisitionController") -> Subsystem:
    sim = Subsystem("simulator")
    sim.add_command(Command("external_trigger", controller.external_trigger))

    sim.add(
        Parameter("scene", "string", "", check=_json_object("scene")),
        Parameter("physics", "string", "", check=_json_object("physics")),
    )
    controller.simulator_inputs = sim  # read at each arm (_scene_spec)
    return sim
