"""A pipeline worker process: raw frame slot -> processed, compressed image in an output slot.

The image is compressed once, here; the chunk bytes in the output slot are what the FileWriter writes and the
streams send.
"""

from __future__ import annotations

import logging
import queue
from dataclasses import dataclass
from typing import Any

from opendcu.app_detector.daq.assembler import RAW_DTYPE, AssembledFrame
from opendcu.app_detector.os_threads import name_this_thread
from opendcu.app_detector.pipeline.arrays import PipelineArrays, layout_of
from opendcu.app_detector.pipeline.processor import ImageProcessor, warm_up
from opendcu.app_detector.series import SeriesSettings
from opendcu.app_detector.shared_memory import SlotRing
from opendcu.codecs import ImageCodec, get_codec
from opendcu.geometry import get_model
from opendcu.lifecycle import child_process_setup

log = logging.getLogger(__name__)

#: how long a worker waits for the settings of a frame's series (they are sent before its first frame)
SETTINGS_WAIT = 2.0


@dataclass(frozen=True)
class ProcessedImage:
    """A compressed image waiting in an output slot (sent from a worker to the collector)."""

    series_id: int
    frame_number: int
    out_slot: int
    nbytes: int
    packets_expected: int
    packets_received: int


@dataclass
class WorkerSpec:
    """Everything a worker process needs: shared-memory rings to attach and its own connections to the pool.

    Each worker has its own task and result pipes (one writer, one reader each), so that a worker that dies,
    even in the middle of a message, harms no other worker's hand-offs; the pool replaces it."""

    index: int
    detector: str
    raw_ring: tuple[str, int, int]
    out_ring: tuple[str, int, int]
    #: receives batches [(AssembledFrame, output slot), ...]; None stops the worker
    tasks: Any
    settings: Any
    #: sends one `BatchDone` per batch
    results: Any
    #: the worker puts its index here once its kernels are compiled
    ready: Any = None


#: what became of one frame of a batch (`BatchDone.frames`)
IMAGE, FAILED, STALE = 0, 1, 2


@dataclass
class BatchDone:
    """A worker's answer to one batch: every frame's raw slot is free again; `images` are the compressed ones."""

    series_id: int
    #: (frame_number, outcome) of every frame of the batch
    frames: list[tuple[int, int]]
    images: list[ProcessedImage]


class SeriesWorker:
    """What one worker holds for the running series: the processor and the codec."""

    def __init__(self, settings: SeriesSettings):
        self.settings = settings
        arrays = PipelineArrays.attach(settings.calibration_shm, layout_of(settings).shape)
        self.processor = ImageProcessor(settings, arrays)
        self.codec: ImageCodec = get_codec(settings.compression)


def series_for(
    task: AssembledFrame, current: SeriesWorker | None, spec: WorkerSpec, raw_ring: SlotRing
) -> SeriesWorker | None:
    """The series the task belongs to: the current one, or the next settings from the pool, which sends them at
    arm, before any frame of their series (series ids restart after initialize, so only equality counts).
    Switching to a series views the raw ring as that series' slots (the DataPath re-partitioned it at arm,
    with every raw slot home). None for a frame whose settings never come (a series that is already over)."""
    while current is None or current.settings.series_id != task.series_id:
        try:
            settings: SeriesSettings = spec.settings.get(timeout=SETTINGS_WAIT)
        except queue.Empty:
            log.warning("dropping frame %d of series %d: no settings for it", task.frame_number, task.series_id)
            return None
        if settings.series_id == task.series_id:
            slot_bytes, n_slots = settings.raw_slots
            if slot_bytes and (slot_bytes, n_slots) != (raw_ring.slot_bytes, raw_ring.n_slots):
                raw_ring.partition(slot_bytes, n_slots)
            current = SeriesWorker(settings)
    return current


def take(conn: Any, stop) -> Any:
    """The next message of a connection, waiting as long as needed; None once the worker is stopped."""
    while not stop.is_set():
        if conn.poll(0.5):
            return conn.recv()
    return None


def worker_main(spec: WorkerSpec) -> None:
    """Process entry point (spawned by PipelinePool)."""
    stop = child_process_setup(f"pipeline-worker{spec.index}")
    name_this_thread(f"pipeline-w{spec.index}")
    warm_up()  # compile (or load from numba's cache) before the first series, not during it
    raw_ring = SlotRing.attach(spec.raw_ring)
    out_ring = SlotRing.attach(spec.out_ring)
    for ring in (raw_ring, out_ring):  # map the pages now, not one fault per 4 KiB while frames come in
        ring.populate()
    if spec.ready is not None:
        spec.ready.put(spec.index)
    try:
        serve(spec, raw_ring, out_ring, stop)
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        pass
    finally:
        raw_ring.close()
        out_ring.close()


def serve(spec: WorkerSpec, raw_ring: SlotRing, out_ring: SlotRing, stop) -> None:
    """Process batches of frames until told to stop (None task, SIGTERM, or the parent's death). The pool pairs
    every frame with an output slot before sending it, so a worker never waits for one; the answer to a batch
    tells the pool which raw slots are free again and which images are ready."""
    model = get_model(spec.detector)
    current: SeriesWorker | None = None
    while not stop.is_set():
        batch = take(spec.tasks, stop)
        if batch is None:
            return
        frames: list[tuple[int, int]] = []
        images: list[ProcessedImage] = []
        for frame, out_slot in batch:
            worker = series_for(frame, current, spec, raw_ring)
            if worker is None:  # a frame of a finished series
                frames.append((frame.frame_number, STALE))
                continue
            current = worker
            image = process_one(current, frame, model, raw_ring, out_ring, out_slot)
            frames.append((frame.frame_number, IMAGE if image is not None else FAILED))
            if image is not None:
                images.append(image)
        spec.results.send(BatchDone(batch[0][0].series_id, frames, images))


def process_one(
    current: SeriesWorker, task: AssembledFrame, model, raw_ring: SlotRing, out_ring: SlotRing, out_slot: int
) -> ProcessedImage | None:
    """Correct and compress one raw frame into `out_slot`. None if it failed."""
    raw_shape = (task.nsubframes, model.n_modules, *model.module.raw_shape)
    try:
        image = current.processor.process(raw_ring.array(task.slot, RAW_DTYPE, raw_shape))
        payload = current.codec.encode(image)
    except Exception:
        log.exception("frame %d of series %d could not be processed", task.frame_number, task.series_id)
        return None
    out_ring.bytes(out_slot, payload.size)[:] = payload
    return ProcessedImage(
        task.series_id, task.frame_number, out_slot, payload.size, task.packets_expected, task.packets_received
    )


def drain(q: Any) -> None:
    """Empty a multiprocessing queue without blocking."""
    try:
        while True:
            q.get_nowait()
    except (queue.Empty, OSError, ValueError):
        return
