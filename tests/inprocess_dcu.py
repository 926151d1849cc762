"""Test harness: app-detector's acquisition in the test's own process, on an in-process module backend.

`InProcessModules` is a `ModuleBackend` (hardware/backend.py) whose modules are `SimulatedModule` objects of
this process, called directly instead of over their UDP config port: no module processes, no config packets
on the wire, no base system, no gRPC, no app-calibration. What stays real is everything a frame meets: the
modules still send their UDP data packets to the DAQ's sockets, and the DAQ, the pipeline's worker processes,
the ImageMux, the FileWriter, the Stream and the Monitor are those of `dcu serve`. A test that needs the REST
API or the process tree keeps `dcu serve` (conftest.start_dcu); one that needs a series takes this, and starts
in about a second instead of ten.
"""

from __future__ import annotations

import socket
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opendcu.app_calibration.client import CalibrationArrays
from opendcu.app_calibration.store import CalibrationStore
from opendcu.app_detector.control.acquisition import AcquisitionController, CalibrationSource
from opendcu.app_detector.control.detector_params import build_detector_subsystem
from opendcu.app_detector.control.simulator_params import build_simulator_subsystem
from opendcu.app_detector.datapath import DataPath, DataPathConfig
from opendcu.geometry import DetectorModel, get_model
from opendcu.hardware.config_packet import ConfigPacket, Kind
from opendcu.hardware.module_driver import ModuleError
from opendcu.simplon.parameters import Subsystem
from opendcu.simulator.module import SimulatedModule


class InProcessModules:
    """Simulated modules in this process behind the `ModuleBackend` calls. Each request goes through the
    config packet's encoding and decoding, so that a module sees exactly the fields and types it gets over UDP;
    a module's refusal is the `ModuleError` the UDP driver raises."""

    def __init__(self, model: DetectorModel, scene: dict[str, Any] | None = None):
        modules = [SimulatedModule(model, i, scene=scene) for i in range(model.n_modules)]
        self.modules = {m.module_id: m for m in sorted(modules, key=lambda m: m.module_id)}
        self._seq = 0

    def _ask(
        self, kind: Kind, modules: Collection[int], per_module: Mapping[int, dict[str, Any]] | None = None, **fields
    ) -> list[dict[str, Any]]:
        answers = []
        for module_id in sorted(modules):
            self._seq += 1
            packet = ConfigPacket(
                kind, self._seq, module_id, fields={**fields, **(per_module or {}).get(module_id, {})}
            )
            try:
                answers.append(self.modules[module_id].handle(ConfigPacket.decode(packet.encode())))
            except ValueError as exc:
                raise ModuleError(f"module {module_id} rejected {kind.name}: {exc}") from None
        return answers

    @property
    def module_ids(self) -> list[int]:
        return list(self.modules)

    def configure(self, modules: Collection[int], destinations: Mapping[int, tuple[str, int]], **settings: Any) -> None:
        per_module = {m: {"dest_host": host, "dest_port": port} for m, (host, port) in destinations.items()}
        self._ask(Kind.CONFIGURE, modules, per_module, **settings)

    def trigger(self, modules: Collection[int], external: bool = False, **fields: Any) -> None:
        self._ask(Kind.EXT_TRIGGER if external else Kind.TRIGGER, modules, **fields)

    def stop(self, modules: Collection[int]) -> int:
        return max((int(a["frames_sent"]) for a in self._ask(Kind.STOP, modules)), default=0)

    def frames_sent(self, modules: Collection[int]) -> int:
        return min((int(a["frames_sent"]) for a in self._ask(Kind.STATUS, modules)), default=0)

    def status(self) -> dict[int, str | None]:
        return dict.fromkeys(self.modules)

    def data_sources(self) -> dict[int, tuple[str, int]]:
        """Where each module's data packets come from (the DAQ takes packets from these only)."""
        return {module_id: m.sender.sock.getsockname() for module_id, m in self.modules.items()}

    def close(self) -> None:
        for m in self.modules.values():
            m.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class InProcessDcu:
    """app-detector without its gRPC face: the subsystems a SIMPLON client reaches, and the parts behind them."""

    model: DetectorModel
    modules: InProcessModules
    datapath: DataPath
    controller: AcquisitionController
    detector: Subsystem
    simulator: Subsystem  # the simulated modules' inputs: external trigger, loss injection, scene
    stream_v2: str  # the Stream's ZeroMQ endpoint (CBOR)

    @property
    def filewriter(self) -> Subsystem:
        return self.datapath.filewriter.subsystem

    @property
    def stream(self) -> Subsystem:
        return self.datapath.stream.subsystem

    def series(self, nimages: int, frame_time: float, **keys: Any) -> int:
        """Set the detector keys, arm and trigger one `ints` series (trigger returns once it is settled);
        returns its sequence id. Disarm is the test's."""
        for key, value in {"nimages": nimages, "frame_time": frame_time, "count_time": frame_time, **keys}.items():
            self.detector.set(key, value)
        series_id = self.detector.command("arm", None)
        self.detector.command("trigger", None)
        return series_id

    def status(self, key: str) -> Any:
        """A detector status key's value, as GET /detector/api/1.8.0/status/<key> reads it."""
        return self.detector.describe("status", key).value


def stored_calibration(root: Path, detector: str) -> CalibrationSource:
    """The active set of app-calibration's store in `root`, as app-calibration answers app-detector (a fresh
    store: the nominal set, as `dcu serve` with a fresh calibration dir)."""
    store = CalibrationStore(root, detector)

    def source(photon_energy: float, threshold_energy: float) -> CalibrationArrays:
        mask, flatfield, calibration_id = store.calibration(photon_energy, threshold_energy)
        return CalibrationArrays(mask.astype("uint32"), flatfield.astype("float32"), calibration_id)

    return source


@contextmanager
def inprocess_dcu(
    data_dir: Path,
    detector: str = "eiger2-500k",
    scene: dict[str, Any] | None = None,
    calibration: CalibrationSource | None = None,
) -> Iterator[InProcessDcu]:
    """An initialized in-process DCU of `detector` writing into `data_dir` (its calibration: `calibration`, or a
    fresh store next to `data_dir`); everything is stopped after."""
    model = get_model(detector)
    if calibration is None:
        calibration = stored_calibration(data_dir.with_name(f"{data_dir.name}-calibration"), detector)
    stream_v2 = f"tcp://127.0.0.1:{_free_port()}"
    datapath = DataPath(
        model,
        DataPathConfig(
            data_dir=data_dir,
            raw_buffer_bytes=256 << 20,
            image_buffer_bytes=128 << 20,
            stream_v1=f"tcp://127.0.0.1:{_free_port()}",
            stream_v2=stream_v2,
        ),
    )
    modules = InProcessModules(model, scene)
    controller = AcquisitionController(model, datapath, modules, calibration=calibration)
    detector_subsystem = build_detector_subsystem(model, controller)
    controller.bind(detector_subsystem)
    datapath.start()
    try:
        dcu = InProcessDcu(
            model, modules, datapath, controller, detector_subsystem, build_simulator_subsystem(controller), stream_v2
        )
        dcu.detector.command("initialize", None)
        yield dcu
    finally:
        try:
            controller.shut_down()  # a series still running ends as app-detector's stop ends it
        finally:
            datapath.close()
            modules.close()
