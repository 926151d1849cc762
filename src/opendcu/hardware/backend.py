"""The seam between the acquisition and the detector modules: what app-detector needs of any module backend.

The acquisition (app_detector/control/acquisition.py) talks to its modules only through a `ModuleBackend`.
`ModuleDriver` (module_driver.py) is the one for modules on the network, simulated or real, speaking the UDP
config packets of config_packet.py. A backend for other hardware implements these five calls; the modules'
pixel data still reaches the DAQ as UDP data packets (udp_packet.py) at the destinations given at configure.

Module ids are the ids the modules know themselves by (`DetectorModel.physical_module`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class ModuleBackend(Protocol):
    @property
    def module_ids(self) -> list[int]:
        """Every module of the detector, in id order."""
        ...

    def configure(self, modules: Collection[int], destinations: Mapping[int, tuple[str, int]], **settings: Any) -> None:
        """Arm `modules` for a series: `destinations` maps each module id to the DAQ (host, port) its data
        packets go to (the data address); `settings` are the series' fields (config_packet.FIELDS names).
        Raises ModuleError (module_driver.py) if a module refuses or does not answer."""
        ...

    def trigger(self, modules: Collection[int], external: bool = False, **fields: Any) -> None:
        """One trigger: software (ints/inte), or an edge/gate on the simulated external input (exts/exte)."""
        ...

    def stop(self, modules: Collection[int]) -> int:
        """Abort the running series on `modules`; returns the number of images the furthest module sent."""
        ...

    def frames_sent(self, modules: Collection[int]) -> int:
        """Images of the series the slowest of `modules` has sent so far (raises ModuleError if one does not
        answer)."""
        ...

    def status(self) -> dict[int, str | None]:
        """Ask every module whether it answers: module id -> None when it does, else the reason it does not."""
        ...

    def close(self) -> None: ...
