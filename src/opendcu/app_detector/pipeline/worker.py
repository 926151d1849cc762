"""A pipeline worker process: raw frame slot -> processed, compressed image in an output slot.

The image is compressed once, here; the chunk bytes in the output slot are what the FileWriter writes and the
streams send.
"""

from __future__ import annotations

import logging
import queue
from dataclasses import dataclass
from typing import Any

import numpy as np

from opendcu.app_detector.daq.assembler import NO_SLOT, RAW_DTYPE, RAW_ERROR, AssembledFrame
from opendcu.app_detector.os_threads import name_this_thread
from opendcu.app_detector.pipeline.arrays import PipelineArrays, layout_of
from opendcu.app_detector.pipeline.processor import ImageProcessor, warm_up
from opendcu.app_detector.series import SeriesSettings
from opendcu.app_detector.shared_memory import SlotRing
from opendcu.codecs import ImageCodec, get_codec
from opendcu.codecs.compiled import CHUNK_KINDS
from opendcu.geometry import get_model
from opendcu.lifecycle import child_process_setup

log = logging.getLogger(__name__)

#: how long a worker waits for the settings of a frame's series (they are sent before its first frame)
SETTINGS_WAIT = 2.0


@dataclass(slots=True)  # not frozen: made per image, and a frozen dataclass costs 4x as much to make
class ProcessedImage:
    """A compressed image waiting in an output slot (the collector makes it from a worker's answer)."""

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
    #: receives batches (`task_rows`); an empty message stops the worker
    tasks: Any
    settings: Any
    #: sends one answer (rows of ANSWER_FIELDS) per batch
    results: Any
    #: the worker puts its index here once its kernels are compiled
    ready: Any = None


#: what became of one frame of a batch (`OUTCOME` column of an answer)
IMAGE, FAILED, STALE = 0, 1, 2

# Batches travel as int64 arrays in one pipe message each (no pickled objects: the pool hands on tens of
# thousands of frames per second). A task row: the frame and the output slot it goes to.
T_SERIES, T_FRAME, T_SLOT, T_EXPECTED, T_RECEIVED, T_NSUB, T_OUT_SLOT = range(7)
TASK_FIELDS = 7
#: an answer row: every frame's raw slot is free again; with IMAGE its chunk of `nbytes` is in its output slot
A_SERIES, A_FRAME, A_OUTCOME, A_NBYTES = range(4)
ANSWER_FIELDS = 4


def task_rows(batch: list[tuple[AssembledFrame, int]]) -> bytes:
    """One task message: a batch of (frame, output slot)."""
    rows = [
        (f.series_id, f.frame_number, f.slot, f.packets_expected, f.packets_received, f.nsubframes, out_slot)
        for f, out_slot in batch
    ]
    return np.array(rows, dtype=np.int64).tobytes()


def read_rows(message: bytes, fields: int) -> np.ndarray:
    """The rows of a task or answer message."""
    return np.frombuffer(message, dtype=np.int64).reshape(-1, fields)


class SeriesWorker:
    """What one worker holds for the running series: the processor and the codec."""

    def __init__(self, settings: SeriesSettings, out_ring: SlotRing):
        self.settings = settings
        arrays = PipelineArrays.attach(settings.calibration_shm, layout_of(settings).shape)
        self.processor = ImageProcessor(settings, arrays)
        self.codec: ImageCodec = get_codec(settings.compression)
        #: whole batches in one compiled call (codecs with a compiled encoder, chunks that fit the output slots);
        #: else frame by frame
        self.batched = settings.compression in CHUNK_KINDS and self.processor.chunk_bound() <= out_ring.slot_bytes
        self._invalid: dict[int, np.ndarray] = {}

    def invalid_chunk(self, nsubframes: int, model) -> np.ndarray:
        """The chunk of an image of which no pixel arrived (a frame handed on with NO_SLOT): every pixel
        invalid, gaps and mask as always. Made once per series through the same corrections, then only copied."""
        chunk = self._invalid.get(nsubframes)
        if chunk is None:
            raw = np.full((nsubframes, model.n_modules, *model.module.raw_shape), RAW_ERROR, dtype=RAW_DTYPE)
            chunk = self._invalid[nsubframes] = np.array(self.codec.encode(self.processor.process(raw)), np.uint8)
        return chunk


def series_for(
    series_id: int,
    frame_number: int,
    current: SeriesWorker | None,
    spec: WorkerSpec,
    raw_ring: SlotRing,
    out_ring: SlotRing,
) -> SeriesWorker | None:
    """The series the task belongs to: the current one, or the next settings from the pool, which sends them at
    arm, before any frame of their series (series ids restart after initialize, so only equality counts).
    Switching to a series views the raw and the image ring as that series' slots (the DataPath re-partitioned
    them at arm, with every slot home). None for a frame whose settings never come (a series that is already over)."""
    while current is None or current.settings.series_id != series_id:
        try:
            settings: SeriesSettings = spec.settings.get(timeout=SETTINGS_WAIT)
        except queue.Empty:
            log.warning("dropping frame %d of series %d: no settings for it", frame_number, series_id)
            return None
        if settings.series_id == series_id:
            for ring, (slot_bytes, n_slots) in ((raw_ring, settings.raw_slots), (out_ring, settings.out_slots)):
                if slot_bytes and (slot_bytes, n_slots) != (ring.slot_bytes, ring.n_slots):
                    ring.partition(slot_bytes, n_slots)
            current = SeriesWorker(settings, out_ring)
    return current


def take(conn: Any, stop) -> bytes | None:
    """The next message of a connection, waiting as long as needed; None once the worker is stopped."""
    while not stop.is_set():
        if conn.poll(0.5):
            return conn.recv_bytes()
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
    """Process batches of frames until told to stop (an empty message, SIGTERM, or the parent's death). The pool
    pairs every frame with an output slot before sending it, so a worker never waits for one; the answer to a
    batch tells the pool which raw slots are free again and which images are ready."""
    model = get_model(spec.detector)
    current: SeriesWorker | None = None
    while not stop.is_set():
        message = take(spec.tasks, stop)
        if not message:
            return
        tasks = read_rows(message, TASK_FIELDS)
        answer = np.zeros((len(tasks), ANSWER_FIELDS), dtype=np.int64)
        answer[:, A_SERIES] = tasks[:, T_SERIES]
        answer[:, A_FRAME] = tasks[:, T_FRAME]
        start = 0
        while start < len(tasks):  # runs of frames of one series (a batch spans a series' end only rarely)
            series_id = int(tasks[start, T_SERIES])
            other = np.flatnonzero(tasks[start:, T_SERIES] != series_id)
            end = start + int(other[0]) if other.size else len(tasks)
            worker = series_for(series_id, int(tasks[start, T_FRAME]), current, spec, raw_ring, out_ring)
            if worker is None:  # frames of a finished series
                answer[start:end, A_OUTCOME] = STALE
            else:
                current = worker
                answer[start:end, A_NBYTES] = process_run(current, tasks[start:end], model, raw_ring, out_ring)
                answer[start:end, A_OUTCOME] = np.where(answer[start:end, A_NBYTES] >= 0, IMAGE, FAILED)
            start = end
        spec.results.send_bytes(answer.tobytes())


def process_run(current: SeriesWorker, tasks: np.ndarray, model, raw_ring: SlotRing, out_ring: SlotRing) -> np.ndarray:
    """Correct and compress frames of one series into their output slots: the chunks' sizes (-1: failed).
    Frames without pixels (NO_SLOT) get the series' all-invalid chunk, copied; the others are processed."""
    no_pixels = tasks[:, T_SLOT] == NO_SLOT
    if not no_pixels.any():
        return process_frames(current, tasks, model, raw_ring, out_ring)
    sizes = np.empty(len(tasks), dtype=np.int64)
    for i in np.flatnonzero(no_pixels):
        frame_number, nsub, out_slot = (int(v) for v in tasks[i, [T_FRAME, T_NSUB, T_OUT_SLOT]])
        try:
            chunk = current.invalid_chunk(nsub, model)
        except Exception:
            log.exception("frame %d of series %d: no all-invalid image", frame_number, current.settings.series_id)
            sizes[i] = -1
            continue
        out_ring.bytes(out_slot, chunk.size)[:] = chunk
        sizes[i] = chunk.size
    if not no_pixels.all():
        sizes[~no_pixels] = process_frames(current, tasks[~no_pixels], model, raw_ring, out_ring)
    return sizes


def process_frames(
    current: SeriesWorker, tasks: np.ndarray, model, raw_ring: SlotRing, out_ring: SlotRing
) -> np.ndarray:
    """Frames with pixels: one compiled call for the whole run where the codec allows; frame by frame
    otherwise, or to find which frame of a run failed."""
    nsub = int(tasks[0, T_NSUB])
    if current.batched and bool(np.all(tasks[:, T_NSUB] == nsub)):
        try:
            sizes = current.processor.process_batch(
                raw_ring.buffer, tasks[:, T_SLOT], nsub, out_ring.buffer, tasks[:, T_OUT_SLOT]
            )
        except Exception:  # noqa: BLE001 - redone frame by frame below, which logs what failed
            sizes = np.full(len(tasks), -1, dtype=np.int64)
        if bool(np.all(sizes >= 0)):
            return sizes
    return np.array(
        [
            process_one(
                current,
                int(row[T_FRAME]),
                int(row[T_SLOT]),
                int(row[T_NSUB]),
                model,
                raw_ring,
                out_ring,
                int(row[T_OUT_SLOT]),
            )
            for row in tasks
        ],
        dtype=np.int64,
    )


def process_one(
    current: SeriesWorker,
    frame_number: int,
    slot: int,
    nsubframes: int,
    model,
    raw_ring: SlotRing,
    out_ring: SlotRing,
    out_slot: int,
) -> int:
    """Correct and compress the raw frame in `slot` into `out_slot`; the chunk's bytes, or -1 if it failed."""
    raw_shape = (nsubframes, model.n_modules, *model.module.raw_shape)
    try:
        image = current.processor.process(raw_ring.array(slot, RAW_DTYPE, raw_shape))
        payload = current.codec.encode(image)
    except Exception:
        log.exception("frame %d of series %d could not be processed", frame_number, current.settings.series_id)
        return -1
    out_ring.bytes(out_slot, payload.size)[:] = payload
    return int(payload.size)


def drain(q: Any) -> None:
    """Empty a multiprocessing queue without blocking."""
    try:
        while True:
            q.get_nowait()
    except (queue.Empty, OSError, ValueError):
        return
