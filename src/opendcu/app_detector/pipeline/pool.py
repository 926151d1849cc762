"""The pipeline: N worker processes fed from the DAQ, with results put back in image order for the ImageMux."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import threading
import time
from typing import Callable

from opendcu.app_detector.daq.assembler import AssembledFrame
from opendcu.app_detector.pipeline.worker import ProcessedImage, WorkerSpec, worker_main
from opendcu.app_detector.series import SeriesSettings
from opendcu.app_detector.shared_memory import SlotRing
from opendcu.lifecycle import join_or_terminate

log = logging.getLogger(__name__)


class PipelinePool:
    """Distributes raw frames to worker processes and re-orders their compressed images by frame number."""

    def __init__(
        self,
        detector: str,
        raw_ring: SlotRing,
        out_ring: SlotRing,
        raw_free,
        out_free,
        on_image: Callable[[ProcessedImage], None],
        n_workers: int = 2,
    ):
        ctx = mp.get_context("spawn")
        self.tasks = ctx.Queue()
        self.results = ctx.Queue()
        self.on_image = on_image
        self._out_free = out_free
        self._settings_queues = [ctx.Queue() for _ in range(n_workers)]
        self._ready = ctx.Queue()
        self.workers = [
            ctx.Process(
                target=worker_main,
                args=(WorkerSpec(i, detector, raw_ring.spec(), out_ring.spec(), self.tasks, sq, self.results, raw_free,
                                 out_free, self._ready),),
                name=f"pipeline-worker{i}",
                daemon=True,
            )
            for i, sq in enumerate(self._settings_queues)
        ]
        self._lock = threading.Condition()
        self._series_id = -1
        self._next_frame = 1
        self._published = 0
        self._held: dict[int, ProcessedImage] = {}
        self._collector = threading.Thread(target=self._collect, name="pipeline-collector", daemon=True)
        self._running = True

    def start(self, timeout: float = 300.0) -> None:
        """Start the workers and wait until each has its compiled kernels ready (the first start of a fresh
        installation compiles them, later starts load numba's on-disk cache)."""
        # processes are the parallelism: each worker compresses with one thread (bitshuffle's OpenMP would
        # oversubscribe the cores; libgomp reads the variable when a worker imports bitshuffle)
        previous = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = "1"
        try:
            for w in self.workers:
                w.start()
        finally:
            if previous is None:
                del os.environ["OMP_NUM_THREADS"]
            else:
                os.environ["OMP_NUM_THREADS"] = previous
        self._collector.start()
        deadline = time.monotonic() + timeout
        for _ in self.workers:
            try:
                self._ready.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError("pipeline workers did not become ready") from None

    def start_series(self, settings: SeriesSettings) -> None:
        with self._lock:
            self._series_id = settings.series_id
            self._next_frame = 1
            self._published = 0
            self._held.clear()
        for q in self._settings_queues:
            q.put(settings)

    def submit(self, frame: AssembledFrame) -> None:
        """Called by the DAQ for every assembled raw frame."""
        self.tasks.put(frame)

    def wait_published(self, count: int, timeout: float) -> int:
        """Wait until `count` images of the current series went to the ImageMux; return how many did."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._published < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._lock.wait(min(remaining, 0.1))
            return self._published

    def flush_held(self) -> None:
        """Publish whatever is held back waiting for a frame that will never come (after an abort)."""
        with self._lock:
            for fn in sorted(self._held):
                self._publish(self._held.pop(fn))

    def _collect(self) -> None:
        while self._running:
            try:
                image: ProcessedImage | None = self.results.get(timeout=0.2)
            except queue.Empty:
                continue
            except (EOFError, OSError):
                return
            if image is None:
                return
            with self._lock:
                if image.series_id != self._series_id:
                    log.warning("dropping image %d of stale series %d", image.frame_number, image.series_id)
                    self._out_free.put(image.out_slot)
                    continue
                self._held[image.frame_number] = image
                while self._next_frame in self._held:
                    self._publish(self._held.pop(self._next_frame))

    def _publish(self, image: ProcessedImage) -> None:
        self._next_frame = image.frame_number + 1
        self.on_image(image)
        self._published += 1
        self._lock.notify_all()

    def close(self) -> None:
        self._running = False
        for _ in self.workers:
            self.tasks.put(None)
        join_or_terminate(self.workers, timeout=5)
        self.results.put(None)
        self._collector.join(timeout=2)
