"""The `simulator` module (not part of SIMPLON): inputs of the simulated detector that a real one gets from
the beamline hardware.

    PUT /simulator/api/1.8.0/command/external_trigger            an edge on the trigger input (exts)
    PUT /simulator/api/1.8.0/command/external_trigger {"value": t}   a gate of t seconds (exte; default count_time)
    PUT /simulator/api/1.8.0/config/drop_packets {"value": "[[frame, packet], ...]"}   loss injection: from the
        next arm on, every module read out leaves out these packets (frame 1-based, packet 0-based; or
        [frame, subframe, packet]); '{"<module index>": [[frame, packet], ...]}' picks modules; "" sends all
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


def parse_drop_packets(text: str, n_modules: int) -> dict[int, list[list[int]]]:
    """The `drop_packets` value -> {module index: [[frame, (subframe,) packet], ...]}; InvalidValue if malformed."""
    if not text:
        return {}
    try:
        value: Any = json.loads(text)
        spec = value if isinstance(value, dict) else {str(m): value for m in range(n_modules)}
        out = {}
        for module, drops in spec.items():
            index = int(module)
            if not 0 <= index < n_modules or not isinstance(drops, list) or len(drops) > MAX_DROPS:
                raise ValueError(f"module {module}")
            items = [[int(v) for v in d] for d in drops]
            if any(len(d) not in (2, 3) or min(d) < 0 for d in items):
                raise ValueError("each drop is [frame, packet] or [frame, subframe, packet], non-negative")
            out[index] = items
        return out
    except (ValueError, TypeError, AttributeError) as exc:
        raise InvalidValue(f"Parameter drop_packets: expected JSON [[frame, packet], ...] or "
                           f"{{\"<module index>\": [[frame, packet], ...]}}: {exc}") from None


def build_simulator_subsystem(controller: "AcquisitionController") -> Subsystem:
    sim = Subsystem("simulator")
    n_modules = controller.model.n_modules
    sim.add(Parameter("drop_packets", "string", "", check=lambda text: parse_drop_packets(text, n_modules)))
    sim.add_command(Command("external_trigger", controller.external_trigger))
    controller.injected_drops = lambda: parse_drop_packets(sim["drop_packets"], n_modules)
    return sim
