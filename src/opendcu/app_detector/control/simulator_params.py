"""The `simulator` module (not part of SIMPLON): inputs of the simulated detector that a real one gets from
the beamline hardware.

    PUT /simulator/api/1.8.0/command/external_trigger            an edge on the trigger input (exts)
    PUT /simulator/api/1.8.0/command/external_trigger {"value": t}   a gate of t seconds (exte; default count_time)
    PUT /simulator/api/1.8.0/config/drop_packets {"value": "[[frame, packet], ...]"}   loss injection: from the
        next arm on, every module read out leaves out these packets (frame 1-based, packet 0-based; or
        [frame, subframe, packet]); "" sends all
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


#: at most this many injected losses per module
MAX_DROPS = 100_000


def parse_drop_packets(text: str) -> list[list[int]]:
    """The `drop_packets` value -> [[frame, (subframe,) packet], ...]; InvalidValue if malformed."""
    if not text:
        return []
    try:
        drops: Any = json.loads(text)
        if not isinstance(drops, list) or len(drops) > MAX_DROPS:
            raise ValueError(f"a list of at most {MAX_DROPS} drops")
        items = [[int(v) for v in d] for d in drops]
        if any(len(d) not in (2, 3) or min(d) < 0 for d in items):
            raise ValueError("each drop is [frame, packet] or [frame, subframe, packet], non-negative")
        return items
    except (ValueError, TypeError) as exc:
        raise InvalidValue(f"Parameter drop_packets: expected JSON [[frame, packet], ...]: {exc}") from None


def _check_drops(text: str) -> None:
    parse_drop_packets(text)


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


def build_simulator_subsystem(controller: AcquisitionController) -> Subsystem:
    sim = Subsystem("simulator")
    sim.add(Parameter("drop_packets", "string", "", check=_check_drops))
    sim.add_command(Command("external_trigger", controller.external_trigger))
    controller.injected_drops = lambda: parse_drop_packets(sim["drop_packets"])

    sim.add(
        Parameter("scene", "string", "", check=_json_object("scene")),
        Parameter("physics", "string", "", check=_json_object("physics")),
    )
    controller.simulator_inputs = sim  # read at each arm (_scene_spec)
    return sim
