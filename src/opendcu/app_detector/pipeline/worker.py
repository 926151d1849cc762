"""A pipeline worker process: raw frame slot -> processed, compressed image in an output slot."""

from __future__ import annotations

import logging
import queue
from dataclasses import dataclass
from typing import Any

import numpy as np

from opendcu.app_detector.daq.assembler import RAW_DTYPE, AssembledFrame
from opendcu.app_detector.pipeline.processor import ImageProcessor
from opendcu.app_detector.series import SeriesSettings
from opendcu.app_detector.shared_memory import SlotRing
from opendcu.codecs import get_codec
from opendcu.geometry import DetectorLayout, get_model
from opendcu.lifecycle import child_process_setup

log = logging.getLogger(__name__)


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
    """Everything a worker process needs: shared-memory rings to attach and the queues it serves."""

    index: int
    detector: str
    raw_ring: tuple[str, int, int]
    out_ring: tuple[str, int, int]
    tasks: Any
    settings: Any
    results: Any
    raw_free: Any
    out_free: Any


def load_calibration(settings: SeriesSettings, shape: tuple[int, int]) -> np.ndarray:
    """Copy the series' pixel mask out of its shared-memory block."""
    ring = SlotRing.attach((settings.calibration_shm, 1, shape[0] * shape[1] * 4))
    try:
        return ring.array(0, np.uint32, shape).copy()
    finally:
        ring.close()


def worker_main(spec: WorkerSpec) -> None:
    """Process entry point (spawned by PipelinePool)."""
    child_process_setup(f"pipeline-worker{spec.index}")
    model = get_model(spec.detector)
    layout = DetectorLayout(model)
    raw_ring = SlotRing.attach(spec.raw_ring)
    out_ring = SlotRing.attach(spec.out_ring)
    raw_shape = (model.n_modules, *model.module.raw_shape)
    processor: ImageProcessor | None = None
    try:
        while True:
            task: AssembledFrame | None = spec.tasks.get()
            if task is None:
                break
            while processor is None or processor.settings.series_id != task.series_id:
                settings: SeriesSettings = spec.settings.get()
                if settings.series_id == task.series_id:
                    processor = ImageProcessor(settings, layout, load_calibration(settings, layout.shape))
            image = processor.process(raw_ring.array(task.slot, RAW_DTYPE, raw_shape))
            spec.raw_free.put(task.slot)
            payload = np.frombuffer(get_codec(processor.settings.compression).encode(image), dtype=np.uint8)
            out_slot = spec.out_free.get()
            out_ring.bytes(out_slot, payload.size)[:] = payload
            spec.results.put(
                ProcessedImage(
                    task.series_id, task.frame_number, out_slot, payload.size, task.packets_expected, task.packets_received
                )
            )
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        pass
    finally:
        raw_ring.close()
        out_ring.close()


def drain(q: Any) -> None:
    """Empty a multiprocessing queue without blocking."""
    try:
        while True:
            q.get_nowait()
    except (queue.Empty, OSError, ValueError):
        return
