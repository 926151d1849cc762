"""The data path of one detector, in the order a frame travels it:

    modules --UDP--> DAQ (daq/) --raw slot--> pipeline workers (pipeline/) --compressed slot-->
    ImageMux (imagemux/) --> interfaces (interfaces/filewriter, interfaces/stream, interfaces/monitor)

Frames stay in two shared-memory rings (raw frames, compressed images); only slot numbers move between stages.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from opendcu.app_detector.daq import Daq, DaqCounters, FrameAssembler
from opendcu.app_detector.daq.assembler import RAW_DTYPE
from opendcu.app_detector.imagemux import CompressedImage, ImageMux
from opendcu.app_detector.interfaces.analysis import AnalysisInterface
from opendcu.app_detector.interfaces.filewriter.writer import FileWriter
from opendcu.app_detector.interfaces.monitor.monitor import Monitor
from opendcu.app_detector.interfaces.stream.stream import Stream
from opendcu.app_detector.pipeline.arrays import PipelineArrays
from opendcu.app_detector.pipeline.pool import PipelinePool
from opendcu.app_detector.pipeline.worker import ProcessedImage
from opendcu.app_detector.series import Series
from opendcu.app_detector.shared_memory import SlotRing
from opendcu.geometry import DetectorLayout, DetectorModel
from opendcu.hardware import summation

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataPathConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    pipeline_workers: int = 2
    #: memory for raw frames and for compressed images, bytes (split into whole-frame slots)
    raw_buffer_bytes: int = 512 << 20
    image_buffer_bytes: int = 512 << 20
    min_slots: int = 8
    #: at most this many slots per ring (tiny frames of the fast module would make tens of thousands)
    max_slots: int = 1024
    #: sub-frames per image a raw slot can hold (auto-summation; `dcu serve --max-nframes-sum`); slots are
    #: [max_subframes, n_modules, h, w]. 0: `default_max_subframes`
    max_subframes: int = 0
    #: ZeroMQ endpoints of stream V1 (legacy) and V2 (cbor)
    stream_v1: str = "tcp://127.0.0.1:9999"
    stream_v2: str = "tcp://127.0.0.1:31001"


def default_max_subframes(model: DetectorModel, config: DataPathConfig) -> int:
    """Sub-frames per raw slot unless configured: what the default count time (1 s) needs, as far as `min_slots`
    such slots fit in the raw buffer (a 500K holds 1 s, a 4M 0.14 s, a 16M 35 ms: more needs more memory).

    Where no module can take a 1 s image (the fast ASIC's 12-bit counters) the ring keeps `max_slots` slots for
    its high frame rates, and the slots hold what then fits."""
    frame_bytes = model.n_modules * model.module.raw_pixels * np.dtype(RAW_DTYPE).itemsize
    needed = summation.nframes_sum(model.module, summation.DEFAULT_COUNT_TIME)
    slots = config.max_slots if needed > summation.MODULE_MAX_SUBFRAMES else config.min_slots
    fitting = config.raw_buffer_bytes // (slots * frame_bytes)
    return int(max(1, min(needed, fitting, summation.MODULE_MAX_SUBFRAMES)))


def compressed_bound(nbytes: int) -> int:
    """Upper bound of a compressed chunk (LZ4 worst case per 8 KiB block, plus headers)."""
    return nbytes + nbytes // 64 + 4096


class DataPath:
    """Owns the shared-memory rings and every stage between the UDP sockets and the interfaces."""

    def __init__(self, model: DetectorModel, config: DataPathConfig):
        self.model = model
        self.layout = DetectorLayout(model)
        h, w = model.shape
        #: the most sub-frames an image may have (auto-summation): arm refuses a series that needs more
        self.max_nframes_sum = config.max_subframes or default_max_subframes(model, config)
        raw_bytes = self.max_nframes_sum * model.n_modules * model.module.raw_pixels * np.dtype(RAW_DTYPE).itemsize
        out_bytes = compressed_bound(h * w * 4)
        slots = lambda budget, size: max(config.min_slots, min(config.max_slots, budget // size))  # noqa: E731
        self.raw_ring = SlotRing(slots(config.raw_buffer_bytes, raw_bytes), raw_bytes)
        self.out_ring = SlotRing(slots(config.image_buffer_bytes, out_bytes), out_bytes)
        ctx = mp.get_context("spawn")
        self.raw_free = ctx.Queue()
        self.out_free = ctx.Queue()
        for i in range(self.raw_ring.n_slots):
            self.raw_free.put(i)
        for i in range(self.out_ring.n_slots):
            self.out_free.put(i)
        self.mux = ImageMux()
        self.filewriter = FileWriter(config.data_dir, model, max_chunk_bytes=out_bytes)
        self.analysis = AnalysisInterface(model)  # issue #7
        self.stream = Stream(config.stream_v1, config.stream_v2)
        self.monitor = Monitor()
        # analysis before the stream: results finished by then ride along in the image's annotations, and
        # analysis ends a series first, so that the stream's end message carries its summary (end_annotations)
        for interface in (self.filewriter, self.analysis, self.stream, self.monitor):
            self.mux.attach(interface)
        self.filewriter.add_master_contributor(self.analysis.master_datasets)  # per-image arrays in NXmx
        self.pipeline = PipelinePool(
            model.name, self.raw_ring, self.out_ring, self.raw_free, self.out_free, self._on_processed,
            n_workers=config.pipeline_workers,
        )
        self.assembler = FrameAssembler(model, self.raw_ring, self.raw_free, emit=self.pipeline.submit)
        self.daq = Daq(self.assembler, config.host)
        self._series: Series | None = None
        self._calibration: SlotRing | None = None

    def start(self) -> None:
        self.pipeline.start()
        self.daq.start()

    # -- series ------------------------------------------------------------------------------------------------------
    def start_series(self, series: Series, payload_size: int) -> None:
        """Prepare every stage for `series` (called at arm, before the modules are configured)."""
        self._release_calibration()
        mask = series.detector_pixel_mask if series.detector_pixel_mask is not None else series.pixel_mask
        arrays = PipelineArrays.for_detector(series.settings, mask, series.detector_flatfield)
        self._calibration = arrays.publish()
        series.settings = replace(series.settings, calibration_shm=self._calibration.name)
        self._series = series
        self.pipeline.start_series(series.settings)
        self.mux.start_series(series)
        self.assembler.start_series(series.series_id, series.nimages_total, payload_size, series.frame_time,
                                    nsubframes=series.settings.nframes_sum, modules=series.modules)

    def wait_frames(self, count: int, timeout: float) -> bool:
        """Wait until the DAQ has assembled `count` frames of the running series."""
        return self.assembler.wait_frames(count, timeout)

    def finish_series(self, expected: int | None = None, aborted: bool = False, timeout: float = 10.0) -> DaqCounters:
        """End the running series: flush the DAQ (waiting for frames 1..`expected`, default all), drain the
        pipeline, and let every interface finish. `aborted` hands on only what has arrived."""
        series = self._series
        if series is None:
            return self.assembler.counters
        counters = self.assembler.finish(0 if aborted else timeout, expected=0 if aborted else expected)
        emitted = counters.frames_complete + counters.frames_incomplete
        published = self.pipeline.wait_published(emitted, timeout=timeout + 30)
        if published < emitted:
            log.error("series %d: only %d of %d images left the pipeline", series.series_id, published, emitted)
            self.pipeline.flush_held()
        self.mux.end_series(series, aborted)
        self._series = None
        return counters

    # -- pipeline -> mux ----------------------------------------------------------------------------------------
    def _on_processed(self, processed: ProcessedImage) -> None:
        series = self._series
        if series is None or series.series_id != processed.series_id:
            self.out_free.put(processed.out_slot)
            return
        image = CompressedImage(
            series_id=processed.series_id,
            image_id=processed.frame_number - 1,
            data=self.out_ring.bytes(processed.out_slot, processed.nbytes),
            dtype=series.settings.dtype,
            shape=series.settings.image_shape or self.model.shape,
            compression=series.settings.compression,
            packets_expected=processed.packets_expected,
            packets_received=processed.packets_received,
            shm_name=self.out_ring.name,
            shm_offset=processed.out_slot * self.out_ring.stride,
            _on_free=lambda slot=processed.out_slot: self.out_free.put(slot),
        )
        self.mux.publish(image)

    def _release_calibration(self) -> None:
        if self._calibration is not None:
            self._calibration.close()
            self._calibration = None

    def close(self) -> None:
        """Stop every stage; files being written are closed first."""
        if self._series is not None:
            self.finish_series(aborted=True, timeout=2)
        self.daq.stop()
        self.filewriter.close()
        self.analysis.close()
        self.stream.close()
        self.monitor.close()
        self.pipeline.close()
        self._release_calibration()
        self.raw_ring.close()
        self.out_ring.close()
