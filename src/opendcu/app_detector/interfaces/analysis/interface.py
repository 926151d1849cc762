"""The analysis interface: an ImageMux customer that analyses what it can and never slows acquisition.

    ImageMux --offer()--> [stride? a worker slot free?] --copy chunk--> slot of our own shared-memory ring
        --(slot number)--> worker process (decode, analyse) --(result dict)--> collector thread
        --> ResultStore (REST, server-sent events, NXmx arrays) + annotations of the next stream image
            (the last images' results and the series summary: the stream v2 end message, `Series.end_annotations`)

offer() never waits: an image is analysed only if it passes the configured stride and a worker has a free slot;
otherwise it is released at once and counted as skipped, so under load the analysed stream is decimated (and
every result and the status say so). An image queued behind another one is not indexed (`indexing_skipped`).
The chunk is copied (compressed, ~1-4 MB) into a slot of the interface's own ring, so the pipeline's output
slots are never held by analysis. Workers run at low priority (nice 10).
"""

from __future__ import annotations

import hashlib
import logging
import multiprocessing as mp
import multiprocessing.connection
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from opendcu.analysis.geometry import Geometry
from opendcu.app_detector.imagemux.mux import CompressedImage
from opendcu.app_detector.interfaces.analysis.params import build_analysis_subsystem, setup_options
from opendcu.app_detector.interfaces.analysis.results import Record, ResultStore
from opendcu.app_detector.interfaces.analysis.worker import run_worker
from opendcu.app_detector.series import Series
from opendcu.app_detector.shared_memory import SlotRing
from opendcu.geometry import DetectorLayout, DetectorModel
from opendcu.lifecycle import join_or_terminate, write_kernel_cache_stamp

log = logging.getLogger(__name__)

#: the key under which results ride along in stream v2 image messages (clients ignore unknown keys)
ANNOTATION_KEY = "opendcu_analysis"
#: record keys copied into stream annotations (spots go as a flat [x, y, I, ...] list)
ANNOTATED = (
    "series_id",
    "image_id",
    "n_spots",
    "n_spots_no_ice",
    "n_spots_low_res",
    "total_intensity",
    "d_min",
    "is_hit",
    "background",
    "ice_score",
    "indexed",
    "n_indexed",
    "fraction_indexed",
    "unit_cell",
    "latency_ms",
    "images_received",
    "images_analysed",
    "decimated",
)
#: the key of the series summary (as GET .../summary serves it, plus `complete`) in the stream v2 end message
SUMMARY_KEY = "opendcu_analysis_summary"
#: how long the end of a series waits for images still being analysed (seconds)
END_WAIT_S = 10.0
#: how often the collector looks for workers that died (seconds)
WATCH_S = 0.5
SLOTS_PER_WORKER = 2  # one being analysed, one waiting
#: the series id of the workers' warm-up setup (no series has it), and the wavelength (Cu K-alpha1) it assumes
WARM_UP_SERIES = -1
WARM_UP_WAVELENGTH_A = 12398.42 / 8047.78
MAX_ERRORS = 50


@dataclass
class _Worker:
    id: int  # unique over restarts, so that a late message of a replaced worker is recognised
    process: Any
    inbox: Any
    free: list[int]
    #: this worker's own result pipe (read end): a worker killed in the middle of a message, or while it holds a
    #: lock, harms no other worker's results (one queue shared by all workers stalled every worker when one was
    #: SIGKILLed while its feeder thread held the queue's write lock)
    results: Any = None
    in_flight: dict[int, tuple[int, int, float]] = field(default_factory=dict)  # slot -> (series, image, t)
    ready_series: int = -1  # the last series this worker finished setting up for (maps built, kernels compiled)


@dataclass
class _LiveSeries:
    series_id: int
    stride: int
    invalid_value: int
    omega_start: float
    omega_increment: float
    max_spots: int


class AnalysisInterface:
    """Live analysis of the images of a series (see the module docstring)."""

    name = "analysis"

    def __init__(self, model: DetectorModel, nice: int = 10):
        self.model = model
        self.layout = DetectorLayout(model)
        self.nice = nice
        self.subsystem = build_analysis_subsystem(self)
        self.store = ResultStore()
        self.errors: list[str] = []
        self._ctx = mp.get_context("spawn")
        self._workers: list[_Worker] = []
        self._ring: SlotRing | None = None
        self._threads = 0
        self._worker_ids = 0
        self._live: _LiveSeries | None = None
        self._warm: set[int] = set()  # ids of the workers that finished their warm-up
        self._dead: set[int] = set()  # ids of the workers found dead (each reported once)
        self._annotations: list[Record] = []
        self._lock = threading.Condition()
        self._running = True
        self._collector = threading.Thread(target=self._collect, name="analysis-collector", daemon=True)
        self._collector.start()

    # -- ImageInterface ------------------------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return self.subsystem["mode"] == "enabled"

    @property
    def state(self) -> str:
        if not self.enabled:
            return "disabled"
        if self.errors:
            return "error"
        return "acquire" if self._live is not None else "ready"

    def start_series(self, series: Series) -> None:
        values = dict(self.subsystem.values)
        try:
            setup = self._setup(series, values)
            self._ensure_workers(values["workers"], values["threads_per_worker"])
        except Exception as exc:  # a bad geometry must not stop the series: report it, analyse nothing
            log.exception("analysis setup failed")
            self._error(f"series {series.series_id}: analysis not started: {exc}")
            self._live = None
            return
        cfg = series.detector_config
        with self._lock:
            self._annotations.clear()
            self._live = _LiveSeries(
                series.series_id,
                values["stride"],
                setup["invalid_value"],
                float(cfg.get("omega_start", 0.0)),
                float(cfg.get("omega_increment", 0.0)),
                values["max_spots"],
            )
        self.store.start_series(series.series_id, series.nimages_total)
        for worker in self._workers:
            worker.inbox.put(("setup", series.series_id, setup))

    def offer(self, image: CompressedImage) -> None:
        try:
            self._annotate(image)
            self._dispatch(image)
        finally:
            image.release()

    def end_series(self, series: Series, aborted: bool) -> None:
        """Finish the series and leave its results for the stream v2 end message (`Series.end_annotations`;
        the ImageMux ends analysis before the Stream): the results no image message carried and the summary.

        Waits at most END_WAIT_S for images still being analysed; the Stream and FileWriter keep sending and
        writing meanwhile (their own threads), only the end message waits. If analysis is behind, the summary
        says `complete: false` and later results appear over REST only."""
        complete = self.wait_idle(series.series_id, timeout=END_WAIT_S / 5 if aborted else END_WAIT_S)
        with self._lock:
            if self._live is not None and self._live.series_id == series.series_id:
                self._live = None
            remaining, self._annotations = self._annotations, []
        summary = self.store.finish_series(series.series_id)
        remaining = [r for r in remaining if r["series_id"] == series.series_id]
        if remaining:
            series.end_annotations[ANNOTATION_KEY] = remaining
        if summary is not None:
            series.end_annotations[SUMMARY_KEY] = {**summary, "complete": complete}

    # -- contributions to files and streams ------------------------------------------------------------------------
    def master_datasets(self, series: Series) -> dict[str, np.ndarray]:
        """Per-image analysis arrays of a series for the NXmx master (FileWriter hook, issue #6 contract)."""
        self.wait_idle(series.series_id, timeout=30.0)
        return self.store.master_datasets(series.series_id, self.subsystem["max_spots"])

    def _annotate(self, image: CompressedImage) -> None:
        """Results finished since the previous image ride along with this one (issue #6 contract:
        `CompressedImage.annotations` entries become extra keys of the stream v2 image message)."""
        annotations = getattr(image, "annotations", None)
        if annotations is None:
            return
        with self._lock:
            ready, self._annotations = self._annotations, []
        ready = [r for r in ready if r["series_id"] == image.series_id]  # late results of an older series: dropped
        if ready:
            annotations[ANNOTATION_KEY] = ready

    # -- dispatch ------------------------------------------------------------------------------------------------
    def _dispatch(self, image: CompressedImage) -> None:
        with self._lock:
            live = self._live
            if live is None or live.series_id != image.series_id:
                return
            results = self.store.series(live.series_id)
            if results is None:
                return
            results.images_received += 1
            if image.image_id % live.stride:
                results.images_strided += 1
                return
            if self._ring is None or image.data.nbytes > self._ring.slot_bytes:
                results.images_skipped += 1
                return
            worker_index, slot = self._free_slot()
            if slot is None:
                results.images_skipped += 1
                return
            worker = self._workers[worker_index]
            # under load (the worker still busy with another image) indexing is skipped, as Jungfraujoch does
            index = not worker.in_flight
            worker.in_flight[slot] = (image.series_id, image.image_id, time.monotonic())
        nbytes = image.data.nbytes
        self._ring.bytes(slot, nbytes)[:] = image.data  # the compressed chunk only: ~1-4 MB for a 4M frame
        phi = live.omega_start + (image.image_id + 0.5) * live.omega_increment
        worker.inbox.put(
            (
                "image",
                image.series_id,
                image.image_id,
                slot,
                nbytes,
                np.dtype(image.dtype).str,
                tuple(image.shape),
                image.compression,
                phi,
                index,
            )
        )

    def _free_slot(self) -> tuple[int, int | None]:
        """The least busy worker with a free slot (call with the lock held)."""
        best = None
        for i, worker in enumerate(self._workers):
            if (
                worker.free
                and worker.process.is_alive()
                and (best is None or len(worker.in_flight) < len(self._workers[best].in_flight))
            ):
                best = i
        if best is None:
            return -1, None
        return best, self._workers[best].free.pop()

    def wait_idle(self, series_id: int, timeout: float) -> bool:
        """Wait until no image of `series_id` is being analysed."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while any(s == series_id for w in self._workers for s, _, _ in w.in_flight.values()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, 0.5))
        return True

    # -- collector ---------------------------------------------------------------------------------------------------
    def _collect(self) -> None:
        checked = time.monotonic()
        while self._running:
            if time.monotonic() - checked >= WATCH_S:  # also while the other workers keep answering
                checked = time.monotonic()
                self._check_workers()
            with self._lock:
                readers = {w.results: w for w in self._workers if w.results is not None}
            if not readers:
                time.sleep(0.1)
                continue
            try:
                ready = multiprocessing.connection.wait(list(readers), timeout=WATCH_S)
            except (OSError, ValueError):  # a pipe closed by _stop_workers meanwhile
                continue
            for conn in ready:
                worker = readers[conn]  # type: ignore[index]  # wait() gives back the connections it was given
                try:
                    message = worker.results.recv()
                except (EOFError, OSError):  # the worker is gone: its pipe is read no more
                    with self._lock:
                        worker.results = None
                    self._check_workers()
                    continue
                self._handle(message)

    def _handle(self, message: tuple) -> None:
        """One message of a worker."""
        kind = message[0]
        if kind == "ready":
            _, worker_id, series_id, setup_ms, error = message
            if error:
                self._error(f"series {series_id}: worker {worker_id} setup failed: {error}")
            elif series_id == WARM_UP_SERIES:
                log.info("analysis worker %d warmed up in %.0f ms", worker_id, setup_ms)
                with self._lock:
                    self._warm.add(worker_id)
                write_kernel_cache_stamp()  # its kernels, the last to compile at a first start, are cached now
            else:
                log.info("analysis worker %d ready for series %d in %.0f ms", worker_id, series_id, setup_ms)
                with self._lock:
                    for worker in self._workers:
                        if worker.id == worker_id:
                            worker.ready_series = series_id
        elif kind == "result":
            _, worker_id, slot, record = message
            self._finish(worker_id, slot, record)
        elif kind == "failed":
            _, worker_id, slot, series_id, image_id, error = message
            self._error(f"series {series_id} image {image_id + 1}: {error}")
            self._finish(worker_id, slot, None)
        elif kind == "cell":
            _, worker_id, series_id, cell, fraction, n_spots = message
            self._found_cell(series_id, cell, fraction, n_spots)

    def _found_cell(self, series_id: int, cell: list[float], fraction: float, n_spots: int) -> None:
        """A worker's cell search succeeded: every worker indexes the rest of the series with that cell."""
        results = self.store.series(series_id)
        if results is None or results.found_cell is not None:
            return
        results.found_cell = [round(v, 4) for v in cell]
        log.info(
            "series %d: cell %s found from %d spots (%.0f %% indexed)",
            series_id,
            " ".join(f"{v:.2f}" for v in cell),
            n_spots,
            100 * fraction,
        )
        with self._lock:
            workers = list(self._workers)
        for worker in workers:
            worker.inbox.put(("cell", series_id, cell))

    def _finish(self, worker_id: int, slot: int, record: Record | None) -> None:
        with self._lock:
            worker = next((w for w in self._workers if w.id == worker_id), None)
            if worker is None or worker_id in self._dead:  # replaced since (ring gone), or counted lost already
                return
            task = worker.in_flight.pop(slot, None)
            worker.free.append(slot)
            if record is not None and task is not None:
                results = self.store.series(record["series_id"])
                record["latency_ms"] = (time.monotonic() - task[2]) * 1e3
                if results is not None:
                    record["images_received"] = results.images_received
                    record["images_analysed"] = results.images_analysed + 1
                    record["images_skipped"] = results.images_skipped
                    record["decimated"] = results.images_skipped > 0
                self._annotations.append(self._compact(record))
                del self._annotations[:-1000]  # nobody streams: keep the newest only
            if record is not None:  # stored while wait_idle() cannot look: a series' summary counts every image
                self.store.add(record)
            self._lock.notify_all()

    @staticmethod
    def _compact(record: Record) -> Record:
        out = {k: record.get(k) for k in ANNOTATED}
        spots = record["spots"]
        out["spots"] = [v for triple in zip(spots["x"], spots["y"], spots["intensity"], strict=True) for v in triple]
        return out

    def _check_workers(self) -> None:
        """A worker that died loses the images it held: counted once as `images_lost` of their series and
        reported (error, log); no image is handed to it any more, and it is replaced at the next arm."""
        lost: list[tuple[_Worker, int]] = []
        with self._lock:
            for worker in self._workers:
                if worker.process.exitcode in (None, 0) or worker.id in self._dead:
                    continue
                self._dead.add(worker.id)
                held = list(worker.in_flight.values())
                worker.in_flight.clear()
                for series_id, _image_id, _t in held:
                    results = self.store.series(series_id)
                    if results is not None:
                        results.images_lost += 1
                lost.append((worker, len(held)))
            if lost:
                self._lock.notify_all()
        for worker, n in lost:
            if self._running:
                self._error(
                    f"analysis worker {worker.id} died (exit code {worker.process.exitcode}) holding {n} images, "
                    "which have no result; restarted at the next arm"
                )

    def _error(self, text: str) -> None:
        log.error("analysis: %s", text)
        with self._lock:
            if text not in self.errors:
                self.errors.append(text)
            del self.errors[:-MAX_ERRORS]

    # -- workers -----------------------------------------------------------------------------------------------------
    def _ensure_workers(self, count: int, threads: int) -> None:
        """Start (or restart, when their number/threads changed or one died) the worker processes."""
        alive = all(w.process.is_alive() for w in self._workers)
        if len(self._workers) == count and self._threads == threads and alive:
            return
        self._stop_workers()
        h, w = self.model.shape
        slot_bytes = h * w * 4 + (h * w * 4) // 64 + 4096  # the largest compressed 32-bit image
        self._ring = SlotRing(count * SLOTS_PER_WORKER, slot_bytes)
        workers = []
        for i in range(count):
            self._worker_ids += 1
            inbox = self._ctx.Queue()
            results, results_writer = self._ctx.Pipe(duplex=False)
            process = self._ctx.Process(
                target=run_worker,
                name=f"analysis-worker{i}",
                daemon=True,
                args=(self._worker_ids, inbox, results_writer, self._ring.spec(), threads, self.nice),
            )
            process.start()
            results_writer.close()  # the worker's end: EOF here once it is gone
            slots = list(range(i * SLOTS_PER_WORKER, (i + 1) * SLOTS_PER_WORKER))
            workers.append(_Worker(self._worker_ids, process, inbox, slots, results=results))
        with self._lock:
            self._workers = workers
            self._threads = threads
            self.errors = [e for e in self.errors if "died" not in e]

    def _stop_workers(self) -> None:
        with self._lock:
            workers, self._workers = self._workers, []
            warm = set(self._warm)
        for worker in workers:
            if worker.process.is_alive():
                if worker.id in warm:
                    worker.inbox.put(("stop",))
                else:  # still building its warm-up analyzer, deaf to its inbox for seconds: nothing to lose
                    worker.process.terminate()
        join_or_terminate((worker.process for worker in workers), timeout=5)
        for worker in workers:
            # a worker gone before it read its inbox leaves the queue's feeder thread blocked on a full pipe (a
            # setup is larger than the pipe's 64 KiB): without this, the exit of app-detector would wait for it
            worker.inbox.cancel_join_thread()
            if worker.results is not None:
                worker.results.close()
        if self._ring is not None:
            self._ring.close()
            self._ring = None

    # -- settings ------------------------------------------------------------------------------------------------------
    def _setup(self, series: Series, values: dict[str, Any]) -> dict[str, Any]:
        """Everything a worker needs to analyse this series' images (plain, picklable)."""
        shape = series.settings.image_shape or self.model.shape  # as the images arrive (ROI, binning)
        binning = series.settings.binning
        if values["poni"].strip():
            geometry = Geometry.from_poni(values["poni"], shape=shape)
            # a PONI describes the detector's pixels; binned images have pixels twice the size, while the
            # corner, PONI and distance (metres) stay where they are
            geometry = geometry.with_changes(pixel1=geometry.pixel1 * binning, pixel2=geometry.pixel2 * binning)
        else:  # the snapshot gives beam centre and pixel size in image pixels
            geometry = Geometry.from_detector_config(series.detector_config, shape)
        pixel_mask = series.pixel_mask if series.pixel_mask is not None else self.layout.default_pixel_mask()
        float8 = series.settings.float8_encoding_applied  # workers decode the E3M5 codes to counts (uint16)
        return self._setup_of(geometry, pixel_mask, float8, series.settings.error_value, series.settings.dtype, values)

    @staticmethod
    def _setup_of(
        geometry: Geometry,
        pixel_mask: np.ndarray,
        float8: bool,
        error_value: int,
        dtype: np.dtype,
        values: dict[str, Any],
    ) -> dict[str, Any]:
        geometry.check()
        mask = np.packbits(np.asarray(pixel_mask).reshape(-1) != 0).tobytes()
        options = setup_options(values)
        geometry_dict = {**geometry.as_dict(), "shape": list(geometry.shape)}
        key = hashlib.sha256(repr((geometry_dict, options)).encode() + mask).hexdigest()
        return {
            "geometry": geometry_dict,
            "mask": mask,
            "float8": float8,
            "invalid_value": 0xFFFF if float8 else error_value,
            "dtype": np.dtype(np.uint16 if float8 else dtype).str,
            "cache_key": key,
            **options,
        }

    def warm_up(self) -> None:
        """Start the workers of the current settings now, in the background, and let each build and run an
        analyzer once: the processes start, import and load (on a first start: compile) their numba kernels while
        the DCU starts, not at the first arm. The warm-up image is one module's size (kernels do not depend on
        the size; the maps of a 16M detector would cost a gigabyte for nothing): an arm still builds the maps of
        its own geometry and mask, with every kernel ready."""
        values = dict(self.subsystem.values)
        h, w = self.model.module.shape
        config = {
            "beam_center_x": w / 2,
            "beam_center_y": h / 2,
            "detector_distance": 0.1,
            "wavelength": WARM_UP_WAVELENGTH_A,
            "x_pixel_size": self.model.module.pixel_size_m,
        }
        setup = self._setup_of(
            Geometry.from_detector_config(config, (h, w)),
            np.zeros((h, w), np.uint32),
            False,
            0xFFFF,
            np.dtype(np.uint16),
            values,
        )
        self._ensure_workers(values["workers"], values["threads_per_worker"])
        for worker in self._workers:
            worker.inbox.put(("setup", WARM_UP_SERIES, setup))

    def workers_warm(self) -> int:
        """How many of the running workers finished their warm-up (see warm_up)."""
        with self._lock:
            return sum(w.id in self._warm for w in self._workers)

    def workers_ready(self) -> int:
        """How many workers have finished setting up for the running series (0 when none is running)."""
        with self._lock:
            live = self._live
            return 0 if live is None else sum(w.ready_series == live.series_id for w in self._workers)

    def status(self, key: str, default: Any = None) -> Any:
        """A number of the current (or last) series for the status keys."""
        results = self.store.series()
        if results is None:
            return default
        if key == "series_id":
            return results.series_id
        return results.summary().get(key, default)

    def clear(self) -> None:
        self.store.clear()
        with self._lock:
            self.errors.clear()

    def initialize(self) -> None:
        self.subsystem.reset()
        self.clear()

    def close(self) -> None:
        self._running = False
        self._stop_workers()
        self._collector.join(timeout=2)
