"""Series orchestration: the detector commands and the state machine that drives modules and data path.

    na --initialize--> idle --arm--> ready --trigger--> acquire --(last trigger done: auto-disarm)--> idle
                                       ^                   |
                                       +---(more triggers)-+
    disarm / abort / cancel from ready or acquire --> idle
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
import time
from typing import Any, Callable

import numpy as np

from opendcu.app_detector.control.errors import InvalidValue, WrongState
from opendcu.app_detector.control.parameters import Command, Subsystem
from opendcu.app_detector.control.state import DetectorState
from opendcu.app_detector.datapath import DataPath
from opendcu.app_detector.pipeline.params import apply_calibration, series_arrays, series_settings
from opendcu.app_detector.series import Series
from opendcu.geometry import DetectorModel
from opendcu.hardware.config_packet import Kind, TriggerMode
from opendcu.hardware.module_driver import ModuleDriver, ModuleError
from opendcu.hardware.udp_packet import DEFAULT_PAYLOAD
from opendcu.simulator.scenes.base import DEFAULT_SCENE, parse_spec

log = logging.getLogger(__name__)

#: a fetcher of the detector's calibration: (photon_energy, threshold_energy) -> CalibrationArrays (mask, flatfield)
CalibrationSource = Callable[[float, float], np.ndarray]

_ULID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid() -> str:
    """A 26-character ULID (48-bit ms timestamp + 80 random bits), as DECTRIS series_unique_id."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_ULID_ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(26)))


class AcquisitionController:
    """Owns the detector state and runs series on the modules and the data path."""

    def __init__(
        self,
        model: DetectorModel,
        datapath: DataPath,
        driver: ModuleDriver,
        calibration: CalibrationSource,
        payload_size: int = DEFAULT_PAYLOAD,
        scene: str = "",
    ):
        self.model = model
        self.datapath = datapath
        self.driver = driver
        self.calibration = calibration
        self.payload_size = payload_size
        self.scene = scene
        self.state = DetectorState.NA
        self.errors: list[str] = []
        self.sequence_id = 0
        self.series: Series | None = None
        self.series_unique_id = ""
        self._triggers_done = 0
        self._lock = threading.RLock()
        self._interrupt = threading.Event()
        self.detector: Subsystem | None = None  # set by bind()

    def bind(self, detector: Subsystem) -> None:
        """Attach the detector subsystem whose values configure each series, and register the commands."""
        self.detector = detector
        detector.add_command(
            Command("initialize", lambda _a: self.initialize()),
            Command("arm", lambda _a: self.arm()),
            Command("trigger", self.trigger),
            Command("disarm", lambda _a: self.disarm()),
            Command("cancel", lambda _a: self.cancel()),
            Command("abort", lambda _a: self.abort()),
        )

    # -- commands ----------------------------------------------------------------------------------------------------
    def initialize(self) -> None:
        with self._lock:
            if self.series is not None:
                self._stop_series(stop_modules=True, aborted=True)
            self.state = DetectorState.INITIALIZE
            try:
                self.detector.reset()
                self.driver.broadcast(Kind.STATUS)  # every module must answer
                det = self.detector
                apply_calibration(det, self.model, self.calibration(det["photon_energy"], det["threshold_energy"]))
            except Exception as exc:
                self.state = DetectorState.ERROR
                self.errors = [f"initialize failed: {exc}"]
                raise WrongState(f"initialize failed: {exc}") from exc
            self.errors = []
            self.sequence_id = 0
            self.state = DetectorState.IDLE

    def arm(self) -> int:
        with self._lock:
            if self.state is not DetectorState.IDLE:
                raise WrongState(f"arm is not possible in state {self.state.value}")
            self.state = DetectorState.CONFIGURE
            try:
                series = self._new_series(self.sequence_id + 1)
                self.datapath.start_series(series, self.payload_size)
                self._configure_modules(series)
            except Exception as exc:
                self.state = DetectorState.IDLE
                self.datapath.finish_series(aborted=True, timeout=1)
                if isinstance(exc, (ModuleError, OSError)):
                    self.errors.append(f"arm failed: {exc}")
                    raise WrongState(f"arm failed: {exc}") from exc
                raise
            self.sequence_id = series.series_id
            self.series = series
            self.series_unique_id = series.unique_id
            self._triggers_done = 0
            self.state = DetectorState.READY
            return self.sequence_id

    def trigger(self, argument: Any) -> None:
        """Software trigger (ints / inte); blocks until this trigger's images are acquired.

        The wait happens outside the command lock, so that disarm/abort can interrupt it.
        """
        with self._lock:
            if self.state is not DetectorState.READY or self.series is None:
                raise WrongState(f"trigger is not possible in state {self.state.value}")
            series = self.series
            mode = series.trigger_mode
            if mode not in ("ints", "inte"):
                raise WrongState(f"software trigger is not accepted in trigger mode {mode}")
            fields: dict[str, Any] = {}
            if mode == "inte":
                count_time = series.count_time if argument is None else argument
                if isinstance(count_time, bool) or not isinstance(count_time, (int, float)) or count_time <= 0:
                    raise InvalidValue(f"inte trigger needs a positive count time in seconds, got {argument!r}")
                fields["trigger_count_time"] = float(count_time)
            per_trigger = self._per_trigger(series)
            self.state = DetectorState.ACQUIRE
            self._interrupt.clear()
            try:
                self.driver.broadcast(Kind.TRIGGER, **fields)
            except ModuleError as exc:
                self.errors.append(str(exc))
                self._stop_series(stop_modules=True, aborted=True)
                raise WrongState(f"trigger failed: {exc}") from exc
            target = (self._triggers_done + 1) * per_trigger
            budget = per_trigger * max(series.frame_time, fields.get("trigger_count_time", 0)) + 10.0

        deadline = time.monotonic() + budget
        while not self._interrupt.is_set() and not self.datapath.wait_frames(target, 0.1):
            if time.monotonic() > deadline:
                log.warning("series %d: trigger %d incomplete after %.1f s", series.series_id, self._triggers_done + 1, budget)
                break

        with self._lock:
            if self.series is not series:  # disarmed or aborted meanwhile
                return
            self._triggers_done += 1
            if self._triggers_done >= series.ntrigger:
                self._stop_series(expected=series.nimages_total)  # auto-disarm after the series
            else:
                self.state = DetectorState.READY

    def disarm(self) -> int:
        """End the series now; images taken so far are kept (files truncated to them)."""
        self._interrupt.set()
        with self._lock:
            if self.series is not None:
                self._stop_series(stop_modules=True)
            return self.sequence_id

    def cancel(self) -> int:
        return self.disarm()

    def abort(self) -> int:
        """Stop at once; what has arrived is handed on, nothing is waited for."""
        self._interrupt.set()
        with self._lock:
            if self.series is not None:
                self._stop_series(stop_modules=True, aborted=True)
            return self.sequence_id

    # -- internals -----------------------------------------------------------------------------------------------------
    def _new_series(self, series_id: int) -> Series:
        from opendcu.app_detector.control.detector_params import snapshot

        det = self.detector
        mode = det["trigger_mode"]
        nimages = det["nimages"] if mode in ("ints", "exts") else 1
        total = nimages * det["ntrigger"]
        settings = series_settings(det, self.model, series_id, total)
        return Series(
            settings=settings,
            nimages=nimages,
            ntrigger=det["ntrigger"],
            trigger_mode=mode,
            count_time=det["count_time"],
            frame_time=det["frame_time"],
            detector_config=snapshot(det),
            unique_id=new_ulid(),
            **series_arrays(det, settings),
        )

    def _configure_modules(self, series: Series) -> None:
        per_module = {
            module_id: {"dest_host": host, "dest_port": port}
            for module_id, (host, port) in self.datapath.daq.data_addresses().items()
        }
        self.driver.broadcast(
            Kind.CONFIGURE,
            per_module=per_module,
            count_time=series.count_time,
            frame_time=series.frame_time,
            nimages=series.nimages,
            ntrigger=series.ntrigger,
            trigger_mode=TriggerMode[series.trigger_mode.upper()],
            threshold_energy=float(series.detector_config["threshold_energy"]),
            photon_energy=float(series.detector_config["photon_energy"]),
            payload_size=self.payload_size,
            series_id=series.series_id,
            seed=series.series_id,
            content=json.dumps(self._scene_spec(series)),
        )

    def _scene_spec(self, series: Series) -> dict[str, Any]:
        """The simulated scene of this series: the server's scene plus the experiment geometry at arm."""
        cfg = series.detector_config
        spec = parse_spec(self.scene) or dict(DEFAULT_SCENE)
        spec["experiment"] = {
            "wavelength_a": cfg["wavelength"],
            "distance_m": cfg["detector_distance"],
            "beam_center_x_px": cfg["beam_center_x"],
            "beam_center_y_px": cfg["beam_center_y"],
            "count_time_s": series.count_time,
            "frame_time_s": series.frame_time,
            "omega_start_deg": cfg["omega_start"],
            "omega_increment_deg": cfg["omega_increment"],
        }
        return spec

    @staticmethod
    def _per_trigger(series: Series) -> int:
        return series.nimages if series.trigger_mode in ("ints", "exts") else 1

    def _stop_series(self, expected: int | None = None, stop_modules: bool = False, aborted: bool = False) -> None:
        """End the running series. `expected` images are waited for; with `stop_modules` the modules are
        stopped first and the images they report as sent are the ones expected."""
        series = self.series
        if stop_modules:
            try:
                acks = self.driver.broadcast(Kind.STOP)
                expected = max(int(a.fields.get("frames_sent", 0)) for a in acks)
            except ModuleError as exc:
                self.errors.append(str(exc))
                expected = self._triggers_done * self._per_trigger(series)
        counters = self.datapath.finish_series(expected=expected, aborted=aborted)
        log.info(
            "series %d ended (%s): %d/%d packets, %d complete + %d incomplete frames",
            series.series_id, "aborted" if aborted else "done", counters.packets_received,
            counters.packets_expected, counters.frames_complete, counters.frames_incomplete,
        )
        self.series = None
        self.state = DetectorState.IDLE
