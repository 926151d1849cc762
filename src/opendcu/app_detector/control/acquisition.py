"""Series orchestration: the detector commands and the state machine that drives modules and data path.

    na --initialize--> idle --arm--> ready --trigger / external edge--> acquire --(last trigger: auto-disarm)--> idle
                                       ^                                   |
                                       +-----------(more triggers)---------+
    disarm / cancel / abort from ready or acquire --> idle

Trigger modes (spec §9): `ints` - each `trigger` takes nimages and the PUT returns when they are done;
`inte` - each `trigger` takes one image of the count time in its body; `exts` / `exte` - no software trigger
(400, state unchanged): an edge on the (simulated) external input takes nimages, a gate takes one image of
the gate's length. After ntrigger triggers the detector disarms by itself.

At arm the modules that the series reads out (all, or those of the ROI with roi_mode 4M) are configured with the
series' sub-frames per image (auto-summation: nframes_sum, hardware/summation.py); only they are triggered and
stopped. A series of which fewer than two images (all their sub-frames) fit the raw buffer is refused (400).

Arm is all or nothing: every check that can refuse it (state, sizes, the FileWriter's names and existing files,
the modules' configuration) runs before the data path hears of the series; the data path refuses (master file,
raw ring) before its pipeline workers get the series' settings; a refusal stops the modules again. Sequence ids
never repeat (control/sequence.py: kept beside the data across initialize and restarts), and arm refuses a
series any of whose files exists. Each series ends with a summary (control/outcome.py): status key `series`,
the NXmx master, one log line (WARNING when anything was lost).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from opendcu.app_detector.control.capacity import CapacityEstimate
from opendcu.app_detector.control.detector_params import follow_energies
from opendcu.app_detector.control.errors import InvalidValue, WrongState
from opendcu.app_detector.control.outcome import InterfaceCounts, SeriesLedger, summarize, summary_line
from opendcu.app_detector.control.parameters import Command, Subsystem
from opendcu.app_detector.control.recovery import recover_interrupted, remove_partial_files
from opendcu.app_detector.control.sequence import SequenceStore
from opendcu.app_detector.control.state import DetectorState
from opendcu.app_detector.datapath import MIN_RAW_SLOTS, DataPath, RingBusy, raw_slot_bytes
from opendcu.app_detector.interfaces.filewriter import paths
from opendcu.app_detector.interfaces.filewriter.outcome import MAX_PER_IMAGE, outcome_datasets
from opendcu.app_detector.pipeline.params import apply_calibration, apply_flatfield, series_arrays, series_settings
from opendcu.app_detector.series import Series
from opendcu.geometry import DetectorModel
from opendcu.hardware.backend import ModuleBackend
from opendcu.hardware.config_packet import Kind, TriggerMode
from opendcu.hardware.module_driver import ModuleError
from opendcu.hardware.udp_packet import DEFAULT_PAYLOAD

log = logging.getLogger(__name__)

#: a fetcher of the detector's calibration: (photon_energy, threshold_energy) -> CalibrationArrays (mask, flatfield)
CalibrationSource = Callable[[float, float], Any]  # -> the calibration arrays (mask, flatfield, dead time)

_ULID_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: temperature (degC) and relative humidity (%) inside the simulated detector's regulated enclosure
SIMULATED_ENVIRONMENT = (26.0, 8.0)
#: extra time a trigger waits for its images beyond their nominal duration before it gives up
TRIGGER_GRACE = 10.0
ARMED = (DetectorState.READY, DetectorState.ACQUIRE)
#: how long an aborted series waits for the images already in the pipeline (abort drops what is left)
ABORT_WAIT = 3.0
#: the most images one series may take (nimages x ntrigger); beyond, arm refuses and names the numbers
MAX_SERIES_IMAGES = 1_000_000_000


def new_ulid() -> str:
    """A 26-character ULID (48-bit ms timestamp + 80 random bits), as DECTRIS series_unique_id."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    return "".join(_ULID_ALPHABET[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def _count_time_argument(argument: Any, default: float) -> float:
    """The count time of an inte trigger: `{"value": seconds}` or the configured count_time."""
    if argument is None:
        return default
    if isinstance(argument, bool) or not isinstance(argument, (int, float)) or not 0 < argument <= 3600:
        raise InvalidValue(f"an inte trigger takes a count time in seconds (0 < t <= 3600), got {argument!r}")
    return float(argument)


class AcquisitionController:
    """Owns the detector state and runs series on the modules and the data path."""

    def __init__(
        self,
        model: DetectorModel,
        datapath: DataPath,
        driver: ModuleBackend,
        calibration: CalibrationSource,
        payload_size: int = DEFAULT_PAYLOAD,
    ):
        self.model = model
        self.datapath = datapath
        self.driver = driver
        self.calibration = calibration
        self.payload_size = payload_size
        self.simulator_inputs: Subsystem | None = None  # the `simulator` module: scene / physics overrides
        self.state = DetectorState.NA
        self.errors: list[str] = []
        self.sequences = SequenceStore(datapath.config.data_dir)
        self.sequence_id = self.sequences.last
        remove_partial_files(datapath.config.data_dir)  # after a crash: no hidden leftovers
        interrupted = recover_interrupted(datapath.config.data_dir, self.sequences.running)
        if interrupted is not None:
            self.sequences.record(self.sequence_id)
            self.sequences.record_summary(interrupted)  # what it lost is reported, as after any series
        self._files_plan: dict[str, Any] | None = None
        self.series: Series | None = None
        self.series_unique_id = ""
        self.links_up: list[bool] = [False] * model.n_modules
        self._triggers_done = 0
        self._lock = threading.RLock()
        self._interrupt = threading.Event()
        self._series_done = threading.Condition(self._lock)
        self._detector: Subsystem | None = None  # set by bind()
        # every image that leaves the pipeline is counted (last interface), and the master records the outcome
        #: packets each simulated module leaves out (simulator/config/drop_packets)
        self.injected_drops: Callable[[], list[list[int]]] = list
        self.ledger = SeriesLedger()
        #: the last series' summary, kept beside the data: still reported after a restart of app-detector
        self.last_summary: dict[str, Any] | None = self.sequences.last_summary
        #: why the running series lost images that no counter shows (modules that did not answer the stop)
        self._series_problems: list[str] = []
        #: what the running series was warned of at arm (it may still succeed)
        self._series_warnings: list[str] = []
        #: the frame rate this machine carried in earlier series (a warning at arm beyond it)
        self.capacity = CapacityEstimate()
        self._images_expected = 0
        datapath.mux.attach(self.ledger)
        datapath.filewriter.add_master_contributor(self._master_outcome)

    @property
    def detector(self) -> Subsystem:
        """The detector subsystem whose values configure each series (bind() attaches it)."""
        if self._detector is None:
            raise RuntimeError("the acquisition controller is not bound to its detector subsystem")
        return self._detector

    def bind(self, detector: Subsystem) -> None:
        """Attach the detector subsystem whose values configure each series, and register the commands."""
        self._detector = detector
        detector.add_command(
            Command("initialize", lambda _a: self.initialize()),
            Command("arm", lambda _a: self.arm()),
            Command("trigger", self.trigger),
            Command("disarm", lambda _a: self.disarm()),
            Command("cancel", lambda _a: self.cancel()),
            Command("abort", lambda _a: self.abort()),
            Command("wait", self.wait),
            Command("status_update", lambda _a: None, versions=("1.6.0",)),
            Command("check_connections", lambda _a: self.check_connections()),
        )
        follow_energies(detector, self.load_flatfield)

    # -- status readers ----------------------------------------------------------------------------------------------
    def high_voltage_state(self) -> str:
        return "NA" if self.state is DetectorState.NA else "READY"

    @staticmethod
    def environment() -> tuple[float, float]:
        return SIMULATED_ENVIRONMENT

    def buffer_free_percent(self) -> float:
        """Free raw-frame slots of the DAQ buffer, in percent."""
        ring = self.datapath.raw_ring
        try:
            return round(100.0 * self.datapath.raw_free.qsize() / ring.n_slots, 1)
        except NotImplementedError:  # qsize is unavailable on some platforms
            return 100.0

    def link_state(self, module: int) -> str:
        return "up" if self.links_up[module] else "down"

    # -- commands ----------------------------------------------------------------------------------------------------
    def initialize(self) -> None:
        """(Re)initialize: end any series, restore the default config, check the modules, load the calibration."""
        self._interrupt.set()
        with self._lock:
            if self.series is not None:
                self._stop_series(stop_modules=True, aborted=True)
            self.state = DetectorState.INITIALIZE
            try:
                self.detector.reset()
                self._check_links(raise_on_error=True)
                # a series the modules may still be taking (app-detector restarted mid-series) ends here
                self.driver.stop(self.driver.module_ids)
                det = self.detector
                apply_calibration(det, self.calibration(det["photon_energy"], det["threshold_energy"]))
            except Exception as exc:
                self.state = DetectorState.ERROR
                self.errors = [f"initialize failed: {exc}"]
                raise WrongState(f"initialize failed: {exc}") from exc
            self.errors = []
            self.state = DetectorState.IDLE  # sequence ids go on (never reset: files are never overwritten)

    def load_flatfield(self) -> None:
        """Load the factory flatfield for the present photon and threshold energies (after they changed)."""
        det = self.detector
        energy, threshold = det["photon_energy"], det["threshold_energy"]
        try:
            calibration = self.calibration(energy, threshold)
        except Exception as exc:
            raise WrongState(
                f"the flatfield for {energy:.2f} eV (threshold {threshold:.2f} eV) could not be "
                f"loaded, the energies are unchanged: {exc}"
            ) from exc
        apply_flatfield(det, calibration)

    def arm(self) -> int:
        with self._lock:
            if self.state is not DetectorState.IDLE:
                raise WrongState(self._refusal("arm"))
            self._check_size()
            series = self._new_series(self.sequence_id + 1)
            self._check_summation(series)
            self._check_files(series)
            self.state = DetectorState.CONFIGURE
            configured = False
            try:
                # the modules first: they send nothing before a trigger, and a refusal leaves the data path as it was
                self._configure_modules(series)
                configured = True
                self.datapath.start_series(series, self.payload_size)
            except Exception as exc:
                self.state = DetectorState.IDLE
                if configured:
                    self._stop_modules_quietly(series)
                if isinstance(exc, (ModuleError, OSError, RingBusy, ValueError)):
                    self.errors.append(f"arm failed: {exc}")
                    raise WrongState(f"arm failed: {exc}") from exc
                raise
            self.sequences.record(series.series_id, self._files_plan)
            self.sequence_id = series.series_id
            self._images_expected = series.nimages_total
            self.last_summary = None
            self._series_problems = []
            self._series_warnings = self._rate_warnings(series)
            if self.datapath.filewriter.enabled and self.datapath.filewriter.errors:
                # the master of this series was written: the disk has room again, the FileWriter recovers
                self.datapath.filewriter.errors.clear()
            self.series = series
            self.series_unique_id = series.unique_id
            self._triggers_done = 0
            self._interrupt.clear()
            self.state = DetectorState.READY
            return self.sequence_id

    def trigger(self, argument: Any) -> None:
        """Software trigger (ints / inte); blocks until this trigger's images are acquired.

        The wait happens outside the command lock, so that disarm/abort can interrupt it.
        """
        with self._lock:
            series, fields = self._start_trigger(software=True, argument=argument)
            delay = float(self.detector["trigger_start_delay"])
        if delay > 0 and self._interrupt.wait(delay):  # the series was ended during the start delay
            return
        with self._lock:
            if self.series is not series:
                return
            target, budget = self._fire(series, Kind.TRIGGER, fields)
        self._await_trigger(series, target, budget)

    def external_trigger(self, gate: Any) -> None:
        """The simulated external trigger input: an edge (exts) or a gate of `gate` seconds (exte).

        Returns at once, like a hardware pulse; the state shows the acquisition (ready -> acquire -> ready/idle).
        """
        with self._lock:
            series, fields = self._start_trigger(software=False, argument=gate)
            target, budget = self._fire(series, Kind.EXT_TRIGGER, fields)
        threading.Thread(
            target=self._await_trigger, args=(series, target, budget), name="ext-trigger", daemon=True
        ).start()

    def disarm(self) -> int:
        """End the series now; images taken so far are kept (files truncated to them). Harmless when idle."""
        return self._end(aborted=False)

    def cancel(self) -> int:
        """Stop after the current image (the modules finish the frame they are sending), then idle."""
        return self._end(aborted=False)

    def abort(self) -> int:
        """Stop at once; what has arrived is handed on, nothing is waited for."""
        return self._end(aborted=True)

    def shut_down(self) -> None:
        """app-detector stops (SIGTERM) during a series: it ends like an abort (files closed with the images they
        have), but nobody asked for it, so every image of the triggers fired counts as expected and what the series
        did not take is reported lost; it never reports success with fewer images."""
        self._interrupt.set()
        with self._lock:
            if self.series is not None:
                self._stop_series(
                    stop_modules=True, aborted=True, cut_short="app-detector was stopped during the series"
                )

    def wait(self, argument: Any) -> int:
        """Block until the running series has ended (at once when none runs); optional timeout in seconds."""
        timeout = None
        if argument is not None:
            if isinstance(argument, bool) or not isinstance(argument, (int, float)) or argument < 0:
                raise InvalidValue(f"wait takes an optional timeout in seconds, got {argument!r}")
            timeout = float(argument)
        with self._lock:
            if not self._series_done.wait_for(lambda: self.series is None, timeout):
                raise WrongState(f"wait: the series is still running after {timeout} s")
        return -1  # "always returns -1" (EIGER wait documentation)

    def check_connections(self) -> list[str]:
        """Ask every module for its status; the detector must be initialized again afterwards."""
        with self._lock:
            if self.state in (*ARMED, DetectorState.CONFIGURE):
                raise WrongState(self._refusal("check_connections"))
            self._check_links(raise_on_error=False)
            self.state = DetectorState.NA
            return [f"module {i}: {self.link_state(i)}" for i in range(self.model.n_modules)]

    # -- series outcome ----------------------------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """The series summary: live while a series runs, else that of the last series ({} before the first)."""
        with self._lock:
            series = self.series
            if series is None:
                return dict(self.last_summary or {})
            return self._summarize(series, "running")

    def _summarize(self, series: Series, state: str) -> dict[str, Any]:
        dp = self.datapath
        counts = InterfaceCounts()
        if dp.filewriter in dp.mux._active:
            files = dp.filewriter._series  # the FileWriter's own count (None once it finished the series)
            counts.filewriter_written = files.written if files is not None else self._written_at_end
            counts.filewriter_errors = list(dp.filewriter.errors)
        if dp.stream in dp.mux._active:
            counts.stream_dropped = dp.stream.dropped
        summary = summarize(series, self.ledger, dp.assembler.counters, self._images_expected, counts, state)
        summary["problems"].extend(self._series_problems)
        summary["warnings"] = list(self._series_warnings)
        return summary

    _written_at_end = 0

    def _master_outcome(self, series: Series) -> dict[str, np.ndarray]:
        """FileWriter master contributor (called at series end, before the master is final): the outcome."""
        files = self.datapath.filewriter._series
        self._written_at_end = files.written if files is not None else 0
        summary = self._summarize(series, self._ending_state)
        n = min(self._images_expected, max(self.ledger.highest + 1, min(self._images_expected, MAX_PER_IMAGE)))
        return outcome_datasets(summary, *self.ledger.per_image(n))

    _ending_state = "done"

    # -- internals -----------------------------------------------------------------------------------------------------
    def _check_size(self) -> None:
        """Refuse a series whose image count (or file count) no DCU could hold, before anything is built for it."""
        det = self.detector
        nimages = det["nimages"] if det["trigger_mode"] in ("ints", "exts") else 1
        total = nimages * det["ntrigger"]
        if total > MAX_SERIES_IMAGES:
            raise InvalidValue(
                f"arm: nimages {nimages} x ntrigger {det['ntrigger']} = {total} images; a series may "
                f"have at most {MAX_SERIES_IMAGES}"
            )

    def _check_files(self, series: Series) -> None:
        """The FileWriter's part of arm that can refuse it, checked before anything is sent anywhere."""
        fw = self.datapath.filewriter
        self._files_plan = None
        if not fw.enabled:
            return
        per_file = fw.subsystem["nimages_per_file"]
        n_files = -(-series.nimages_total // per_file) if per_file else 0
        prefix = paths.series_prefix(fw.subsystem["name_pattern"], series.series_id)
        self._files_plan = {
            "series_id": series.series_id,
            "unique_id": series.unique_id,
            "prefix": prefix,
            "data_files": n_files,
            "images": series.nimages_total,
        }
        try:
            paths.check_series_files(fw.data_dir, prefix, n_files)
        except (paths.UnsafePath, paths.SeriesFilesExist) as exc:
            raise InvalidValue(f"arm: {exc}") from None
        except OSError as exc:
            raise InvalidValue(
                f"arm: the data directory cannot be checked for series {series.series_id}: {exc}"
            ) from None

    def _stop_modules_quietly(self, series: Series) -> None:
        try:
            self.driver.stop(self._read_out(series))
        except ModuleError as exc:
            self.errors.append(f"stopping the modules after a refused arm failed: {exc}")

    def _refusal(self, command: str) -> str:
        if self.state is DetectorState.NA:
            return f"{command} is not possible: the detector is not initialized (state na)"
        return f"{command} is not possible in state {self.state.value}"

    def _armed_series(self, command: str) -> Series:
        if self.state is not DetectorState.READY or self.series is None:
            if self.state is DetectorState.IDLE:
                raise WrongState(f"{command} is not possible: the detector is not armed (state idle)")
            raise WrongState(self._refusal(command))
        return self.series

    def _start_trigger(self, software: bool, argument: Any) -> tuple[Series, dict[str, Any]]:
        """Check that the armed series takes this kind of trigger; the trigger's module fields; state acquire."""
        series = self._armed_series("trigger" if software else "external trigger")
        mode = series.trigger_mode
        if software and mode not in ("ints", "inte"):
            raise WrongState(
                f"trigger: no software trigger in trigger mode {mode} (the series waits for the external trigger input)"
            )
        if not software and mode not in ("exts", "exte"):
            raise WrongState(
                f"external trigger: trigger mode is {mode}, the detector does not listen to its trigger input"
            )
        fields: dict[str, Any] = {}
        if mode in ("inte", "exte"):  # one image of the count time given with the trigger (or the gate)
            fields["trigger_count_time"] = _count_time_argument(argument, series.count_time)
        self.state = DetectorState.ACQUIRE
        return series, fields

    def _check_summation(self, series: Series) -> None:
        """Refuse a series of which fewer than two images fit the raw buffer (their sub-frames, auto-summation)."""
        needed = series.settings.nframes_sum
        if self.datapath.raw_slots_for(needed) < MIN_RAW_SLOTS:
            image = raw_slot_bytes(self.model, needed)
            raise InvalidValue(
                f"arm: count_time {series.count_time:g} s needs {needed} sub-frames per image (auto_summation): "
                f"{MIN_RAW_SLOTS} such images need {MIN_RAW_SLOTS * image / 2**20:.0f} MiB of raw buffer, this DCU "
                f"has {self.datapath.raw_ring.size / 2**20:.0f} MiB. Shorten count_time, set auto_summation false, "
                "or restart the DCU with a larger --raw-buffer-mib"
            )

    def _frame_bytes(self, series: Series) -> int:
        """Raw bytes the modules send per image of the series (its modules, its sub-frames)."""
        return raw_slot_bytes(self.model, series.settings.nframes_sum) * len(series.modules) // self.model.n_modules

    def _rate_warnings(self, series: Series) -> list[str]:
        """A warning when the series asks for more frames per second than this machine carried (log, summary)."""
        if series.trigger_mode not in ("ints", "exts") or series.frame_time <= 0:
            return []  # gated modes: the rate is the trigger source's
        warning = self.capacity.warning(self._frame_bytes(series), 1.0 / series.frame_time)
        if warning is None:
            return []
        log.warning("series %d: %s", series.series_id, warning)
        return [warning]

    def _read_out(self, series: Series) -> set[int]:
        """Module ids (as the modules know themselves) of the modules the series reads out."""
        return {self.model.physical_module(m) for m in series.modules}

    def _check_links(self, raise_on_error: bool) -> None:
        errors = []
        for i, error in enumerate(self.driver.status().values()):
            self.links_up[i] = error is None
            if error is not None:
                errors.append(error)
        if errors and raise_on_error:
            raise ModuleError("; ".join(errors))

    def _fire(self, series: Series, kind: Kind, fields: dict[str, Any]) -> tuple[int, float]:
        """Send one trigger to the modules; return the frame count that completes it and how long to wait."""
        if self._triggers_done == 0:
            self.capacity.series_started()
        try:
            self.driver.trigger(self._read_out(series), external=kind is Kind.EXT_TRIGGER, **fields)
        except ModuleError as exc:
            self.errors.append(str(exc))
            self._stop_series(stop_modules=True, aborted=True)
            raise WrongState(f"trigger failed: {exc}") from exc
        per_trigger = self._per_trigger(series)
        target = (self._triggers_done + 1) * per_trigger
        budget = per_trigger * max(series.frame_time, fields.get("trigger_count_time", 0.0)) + TRIGGER_GRACE
        return target, budget

    def _await_trigger(self, series: Series, target: int, budget: float) -> None:
        """Wait for the images of one trigger; then ready again, or the automatic disarm after the last one."""
        start = time.monotonic()
        deadline = start + budget
        while not self._interrupt.is_set() and not self.datapath.wait_frames(target, 0.05):
            # frames that will not come cost no time: done once the DAQ settled what arrived
            if self.datapath.trigger_settled(target, time.monotonic() - start, budget - TRIGGER_GRACE):
                break
            if time.monotonic() > deadline:
                log.warning(
                    "series %d: trigger %d incomplete after %.1f s", series.series_id, self._triggers_done + 1, budget
                )
                break
        behind = "" if self._interrupt.is_set() else self._modules_behind(series, target, time.monotonic() - start)
        with self._lock:
            if self.series is not series:  # disarmed or aborted meanwhile
                return
            if behind:  # never leave a module acquiring into the next arm, and say why images are missing
                self._stop_series(stop_modules=True, cut_short=behind)
                return
            self._triggers_done += 1
            if self._triggers_done >= series.ntrigger:
                self._stop_series(expected=series.nimages_total)  # auto-disarm after the series
            else:
                self.state = DetectorState.READY

    def _modules_behind(self, series: Series, target: int, waited: float) -> str:
        """After a trigger whose images did not all arrive: the reason to cut the series short if the modules
        are still sending (they fell behind their frame clock: a simulated module starved of CPU, or a scene it
        cannot render at this rate), else "" (packets lost on the way; what is missing will not come)."""
        if self.datapath.wait_frames(target, 0):
            return ""
        log.info("series %d: the trigger's images are due, not all arrived: asking the modules", series.series_id)
        try:
            sent = self.driver.frames_sent(self._read_out(series))
        except ModuleError as exc:
            return f"the modules did not say how many images they sent after {waited:.1f} s: {exc}"
        if sent >= target:
            return ""
        return (
            f"the modules were still sending when the trigger's images were due: {sent} of {target} sent after "
            f"{waited:.1f} s; the modules were stopped"
        )

    def _end(self, aborted: bool) -> int:
        self._interrupt.set()
        with self._lock:
            if self.series is not None:
                self._stop_series(stop_modules=True, aborted=aborted)
            return self.sequence_id

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
        modules = self._read_out(series)
        destinations = {m: address for m, address in self.datapath.daq.data_addresses().items() if m in modules}
        drops = self.injected_drops()  # loss injection of the simulated modules (tests): the same for each
        self.driver.configure(
            modules,
            destinations,
            **({"drop_packets": json.dumps(drops)} if drops else {}),
            nsubframes=series.settings.nframes_sum,
            roi_mode=series.settings.roi_mode,
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
            experiment=json.dumps(self._experiment(series)),
            **self._simulator_content(),
        )
        # data packets only from the modules: a backend that learnt their data sources at configure tells them
        sources = getattr(self.driver, "data_sources", None)
        self.datapath.expect_sources(sources() if sources is not None else {})

    def _simulator_content(self) -> dict[str, str]:
        """The `simulator` module's overrides (scene, physics) for the simulated modules, as the CONFIGURE
        `content` they read a series' own scene from; nothing when none is set (the simulator's own scene)."""
        inputs = self.simulator_inputs
        if inputs is None or not (inputs["scene"] or inputs["physics"]):
            return {}
        content = json.loads(inputs["scene"]) if inputs["scene"] else {}
        if inputs["physics"]:
            content["physics"] = json.loads(inputs["physics"])
        return {"content": json.dumps(content)}

    @staticmethod
    def _experiment(series: Series) -> dict[str, Any]:
        """The experiment geometry at arm, for modules that simulate what they see (a real module ignores it;
        the scene itself is the simulator's own, `python -m opendcu.simulator --scene`)."""
        cfg = series.detector_config
        binning = series.settings.binning  # scenes work in detector pixels, the snapshot in image pixels
        experiment = {
            "wavelength_a": cfg["wavelength"],
            "distance_m": cfg["detector_distance"],
            "beam_center_x_px": cfg["beam_center_x"] * binning,
            "beam_center_y_px": cfg["beam_center_y"] * binning,
            "count_time_s": series.count_time,
            "frame_time_s": series.frame_time,
            "omega_start_deg": cfg["omega_start"],
            "omega_increment_deg": cfg["omega_increment"],
        }
        axis = cfg.get("omega_axis")
        if axis is not None:  # NXmx/mcstas -> the scene's frame (x along the fast pixels = -x mcstas, y = -y)
            experiment["rotation_axis"] = [-float(axis[0]), -float(axis[1]), float(axis[2])]
        return experiment

    @staticmethod
    def _per_trigger(series: Series) -> int:
        return series.nimages if series.trigger_mode in ("ints", "exts") else 1

    def _stop_series(
        self, expected: int | None = None, stop_modules: bool = False, aborted: bool = False, cut_short: str = ""
    ) -> None:
        """End the running series. `expected` images are waited for; with `stop_modules` the modules are
        stopped first and the images they report as sent are the ones expected. A series `cut_short` (the reason)
        expects every image of its triggers fired."""
        series = self.series
        if series is None:
            return
        # the triggers sent to the modules, the one being taken included
        fired = (self._triggers_done + (self.state is DetectorState.ACQUIRE)) * self._per_trigger(series)
        if stop_modules:
            try:
                expected = self.driver.stop(self._read_out(series))
            except ModuleError as exc:
                # how many images the modules took is unknown: every image of the triggers fired counts as
                # expected (a trigger in flight included), so those that did not arrive count as lost
                self.errors.append(str(exc))
                expected = fired
                self._series_problems.append(f"the modules did not answer the stop: {exc}")
        counted = expected  # the images the summary expects; `expected` those still worth waiting for
        if cut_short:
            counted = max(expected or 0, fired)
            self._series_problems.append(cut_short)
        state = "aborted" if aborted else "done"
        if counted is not None:
            self._images_expected = counted
        self._ending_state = state
        started = self.ledger.started
        self.datapath.finish_series(expected=expected, aborted=aborted, timeout=ABORT_WAIT if aborted else 10.0)
        summary = self._summarize(series, state)
        summary["elapsed_s"] = round(time.monotonic() - started, 3)
        if not aborted:
            self.capacity.series_ended(self._frame_bytes(series), summary["images_settled"])
        self.last_summary = summary
        if self.sequences.running is not None:
            self.sequences.record(series.series_id)  # the files are final: nothing to recover
        self.sequences.record_summary(summary)
        (log.info if summary["outcome"] == "success" else log.warning)("%s", summary_line(summary))
        self.series = None
        self.state = DetectorState.IDLE
        self._series_done.notify_all()
