"""The `simulator` module (not part of SIMPLON): inputs of the simulated detector that a real one gets from
the beamline hardware.

    PUT /simulator/api/1.8.0/command/external_trigger            an edge on the trigger input (exts)
    PUT /simulator/api/1.8.0/command/external_trigger {"value": t}   a gate of t seconds (exte; default count_time)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from opendcu.app_detector.control.parameters import Command, Subsystem

if TYPE_CHECKING:
    from opendcu.app_detector.control.acquisition import AcquisitionController


def build_simulator_subsystem(controller: "AcquisitionController") -> Subsystem:
    sim = Subsystem("simulator")
    sim.add_command(Command("external_trigger", controller.external_trigger))
    return sim
