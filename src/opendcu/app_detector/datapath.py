"""The data path of one detector, in the order a frame travels it:

    modules --UDP--> DAQ (daq/) --raw slot--> pipeline workers (pipeline/) --compressed slot-->
    ImageMux (imagemux/) --> interfaces (interfaces/filewriter, interfaces/stream, interfaces/monitor)

Frames stay in two shared-memory rings (raw frames, compressed images); only slot numbers move between stages.
"""

from __future__ import annotations

import logging
import queue
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import numpy as np

from opendcu.app_detector.daq import Daq, DaqCounters, FrameAssembler
from opendcu.app_detector.daq.assembler import RAW_DTYPE
from opendcu.app_detector.imagemux import CompressedImage, ImageMux
from opendcu.app_detector.interfaces.analysis import AnalysisInterface
from opendcu.app_detector.interfaces.filewriter.writer import FileWriter
from opendcu.app_detector.interfaces.monitor.monitor import Monitor
from opendcu.app_detector.interfaces.stream.stream import Stream, send_queue_depth
from opendcu.app_detector.pipeline.arrays import PipelineArrays
from opendcu.app_detector.pipeline.pool import PipelinePool
from opendcu.app_detector.pipeline.worker import ProcessedImage
from opendcu.app_detector.series import Series, SeriesSettings
from opendcu.app_detector.shared_memory import FreeSlots, SlotRing, slots_in
from opendcu.geometry import DetectorLayout, DetectorModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataPathConfig:
    data_dir: Path
    host: str = "127.0.0.1"
    pipeline_workers: int = 2
    #: memory for raw frames (`dcu serve --raw-buffer-mib`), partitioned per series into slots of one image's
    #: sub-frames [nframes_sum, n_modules, h, w]; POSIX shared memory takes pages only once they are touched
    raw_buffer_bytes: int = 1 << 30
    #: memory for compressed images (`dcu serve --image-buffer-mib`), partitioned per series into slots of its
    #: images' compressed bound
    image_buffer_bytes: int = 512 << 20
    #: the compressed-image ring has at least this many slots (beyond its budget if need be)
    min_slots: int = 8
    #: at most this many raw slots: the frames in flight (the assembler's window, at most 1024) and behind them a
    #: backlog for the pipeline, which the fast module's small frames need to ride out a stall of the workers or
    #: the interfaces (8192 frames: about 0.4 s at 20 kHz; with 1024 a receiver waited for a free slot at 15 kHz)
    max_slots: int = 8192
    #: at most this many compressed-image slots: small images get a deep ring, so that the interfaces' buffers
    #: (the Stream's is a quarter of it) absorb a stall of a few hundred ms at the fast module's rates
    max_image_slots: int = 8192
    #: ZeroMQ endpoints of stream V1 (legacy) and V2 (cbor)
    stream_v1: str = "tcp://127.0.0.1:9999"
    stream_v2: str = "tcp://127.0.0.1:31001"


#: images the Stream buffers at most while its consumers (or its thread) fall behind
STREAM_BUFFER_MAX = 2048
#: a series needs at least this many raw slots (one being filled while the pipeline works on another)
MIN_RAW_SLOTS = 2
#: how long arm waits for the pipeline and the interfaces to give back every slot before re-cutting a ring (raw
#: frames, compressed images)
RECALL_TIMEOUT = 5.0


class RingBusy(RuntimeError):
    """Slots (raw frames, or compressed images) did not come back in time: their ring cannot be re-partitioned
    for the next series."""


def raw_slot_bytes(model: DetectorModel, nsubframes: int) -> int:
    """Bytes of one raw frame slot: [nsubframes, n_modules, raw_h, raw_w] uint16."""
    return nsubframes * model.n_modules * model.module.raw_pixels * np.dtype(RAW_DTYPE).itemsize


def raw_slots(model: DetectorModel, nsubframes: int, config: DataPathConfig) -> int:
    """Raw slots of images of `nsubframes` sub-frames in the raw buffer (what `SlotRing.partition` makes)."""
    return slots_in(config.raw_buffer_bytes, raw_slot_bytes(model, nsubframes), config.max_slots)


def compressed_bound(nbytes: int) -> int:
    """Upper bound of a compressed chunk (LZ4 worst case per 8 KiB block, plus headers)."""
    return nbytes + nbytes // 64 + 4096


def image_slot_bytes(settings: SeriesSettings, model: DetectorModel) -> int:
    """Bytes of one compressed-image slot for the images of a series (its bit depth and shape, binned or not)."""
    h, w = settings.image_shape or model.shape
    return compressed_bound(h * w * settings.dtype.itemsize)


def stream_buffer_images(image_slots: int) -> int:
    """Images the Stream may hold while its consumers or its thread fall behind: half the image slots (the
    FileWriter and the pipeline keep the other half), and never fewer than 16."""
    return max(16, min(STREAM_BUFFER_MAX, image_slots // 2))


class DataPath:
    """Owns the shared-memory rings and every stage between the UDP sockets and the interfaces."""

    def __init__(self, model: DetectorModel, config: DataPathConfig):
        self.model = model
        self.layout = DetectorLayout(model)
        h, w = model.shape
        self.config = config
        # the image ring is sized for 32-bit images and re-partitioned per series by its images' bound
        out_bytes = compressed_bound(h * w * 4)
        # one raw budget, partitioned per series (start_series); until then into single-sub-frame slots
        self.raw_ring = SlotRing(0, raw_slot_bytes(model, 1), size=config.raw_buffer_bytes)
        if self.raw_ring.partition(raw_slot_bytes(model, 1), config.max_slots) < MIN_RAW_SLOTS:
            self.raw_ring.close()
            raise ValueError(
                f"a raw buffer of {config.raw_buffer_bytes} bytes holds fewer than {MIN_RAW_SLOTS} {model.name} frames"
            )
        self.out_ring = SlotRing(
            max(config.min_slots, min(config.max_image_slots, config.image_buffer_bytes // out_bytes)), out_bytes
        )
        # free slot numbers: only app-detector's threads take and give them (workers get slots with their frames)
        self.raw_free = FreeSlots(range(self.raw_ring.n_slots))
        self.out_free = FreeSlots(range(self.out_ring.n_slots))
        self.pipeline = PipelinePool(
            model.name,
            self.raw_ring,
            self.out_ring,
            self.raw_free,
            self.out_free,
            self._on_processed,
            n_workers=config.pipeline_workers,
        )
        # the workers start first: their start (imports, kernels) runs while this process maps the rings
        self.pipeline.launch()
        try:
            self._build_stages(model, config, out_bytes)
        except BaseException:
            self.pipeline.close()
            self.raw_ring.close()
            self.out_ring.close()
            raise

    def _build_stages(self, model: DetectorModel, config: DataPathConfig, out_bytes: int) -> None:
        h, w = model.shape
        for ring in (self.raw_ring, self.out_ring):  # no page faults in the receivers' and writers' hot paths
            ring.populate()
        self.mux = ImageMux()
        self.filewriter = FileWriter(config.data_dir, model, max_chunk_bytes=out_bytes)
        self.analysis = AnalysisInterface(model)  # issue #7
        image_bytes = h * w * 2  # about the size of a compressed image (sizes the stream's send queue)
        self.stream = Stream(
            config.stream_v1,
            config.stream_v2,
            sndhwm=send_queue_depth(image_bytes),
            buffer_images=stream_buffer_images(self.out_ring.n_slots),
        )
        self.monitor = Monitor()
        # analysis before the stream: results finished by then ride along in the image's annotations, and
        # analysis ends a series first, so that the stream's end message carries its summary (end_annotations)
        for interface in (self.filewriter, self.analysis, self.stream, self.monitor):
            self.mux.attach(interface)
        self.filewriter.add_master_contributor(self.analysis.master_datasets)  # per-image arrays in NXmx
        self.assembler = FrameAssembler(
            model, self.raw_ring, self.raw_free, emit=self.pipeline.submit, emit_many=self.pipeline.submit_many
        )
        self.assembler.lost_in_pipeline = lambda: self.pipeline.images_lost_in_pipeline
        self.daq = Daq(self.assembler, config.host)
        self._series: Series | None = None
        #: (dtype, shape, compression) of the running series' images
        self._image_format: tuple[np.dtype, tuple[int, ...], str] = (np.dtype(np.uint16), model.shape, "none")
        self._calibration: SlotRing | None = None

    def start(self) -> None:
        self.pipeline.start()
        self.daq.start()

    # -- series ------------------------------------------------------------------------------------------------------
    def start_series(self, series: Series, payload_size: int) -> None:
        """Prepare every stage for `series` (called at arm, once the modules are configured: they send nothing
        before a trigger)."""
        if dropped := self.pipeline.discard_pending():
            log.info("arm: %d frames of the last series were still waiting for a worker; dropped", dropped)
        self._partition_raw_ring(series.settings.nframes_sum)
        self._partition_out_ring(image_slot_bytes(series.settings, self.model))
        self._release_calibration()
        mask = series.detector_pixel_mask if series.detector_pixel_mask is not None else series.pixel_mask
        arrays = PipelineArrays.for_detector(series.settings, mask, series.detector_flatfield)
        self._calibration = arrays.publish()
        series.settings = replace(
            series.settings,
            calibration_shm=self._calibration.name,
            raw_slots=(self.raw_ring.slot_bytes, self.raw_ring.n_slots),
            out_slots=(self.out_ring.slot_bytes, self.out_ring.n_slots),
        )
        try:
            self.mux.start_series(series)  # may refuse (the master file): before the workers hear of the series
        except Exception:
            self._release_calibration()
            raise
        self._series = series
        # one dtype and shape object for every image of the series (interfaces may compare them by identity)
        settings = series.settings
        self._image_format = (settings.dtype, tuple(settings.image_shape or self.model.shape), settings.compression)
        self.pipeline.start_series(series.settings)
        self.assembler.start_series(
            series.series_id,
            series.nimages_total,
            payload_size,
            series.frame_time,
            nsubframes=series.settings.nframes_sum,
            modules=series.modules,
        )

    def expect_sources(self, sources: dict[int, tuple[str, int]]) -> None:
        """Accept data packets of each module (by the id its packets carry) only from the source address its
        driver learnt at CONFIGURE; the others count as foreign."""
        by_id = {r.module_id: r.index for r in self.daq.receivers}
        self.assembler.expect_sources({by_id[m]: source for m, source in sources.items() if m in by_id})

    def trigger_settled(self, target: int, since_trigger: float, expected_duration: float) -> bool:
        """Whether the frames of a trigger are settled as far as they will be: all `target` frames handed on, or
        its images are due (`since_trigger` >= `expected_duration`) and nothing settled for a few frame periods
        (what is missing will not come: the series' end flags it)."""
        asm = self.assembler
        if asm.frames_emitted >= target:
            return True
        return since_trigger >= expected_duration and asm.settled_since() > asm.settle_idle

    def raw_slots_for(self, nsubframes: int) -> int:
        """How many raw slots of images of `nsubframes` sub-frames the raw buffer holds."""
        return raw_slots(self.model, nsubframes, self.config)

    def _partition_raw_ring(self, nsubframes: int) -> None:
        """Re-cut the raw ring into slots of `nsubframes` sub-frames (the assembler's pre-stocked slots come home
        too); the workers view it anew when the series' settings reach them."""
        slot_bytes = raw_slot_bytes(self.model, nsubframes)
        if slot_bytes == self.raw_ring.slot_bytes:
            return
        self.assembler.release_slots()
        self._recut(self.raw_ring, self.raw_free, slot_bytes, self.config.max_slots, "raw frame")
        log.info("raw ring: %d slots of %d sub-frame(s)", self.raw_ring.n_slots, nsubframes)

    def _partition_out_ring(self, slot_bytes: int) -> None:
        """Re-cut the compressed-image ring into slots of `slot_bytes` (16-bit images get twice as many slots as
        32-bit ones: a deeper Stream buffer, more images in flight). The pipeline first gives back what it held
        of an aborted series; the interfaces gave theirs back at the series' end. Smaller slots than now may
        wait: if slots are still out, the series keeps the present ones."""
        ring = self.out_ring
        if slot_bytes != ring.slot_bytes:
            self.pipeline.give_back_held()
            try:
                # the ring was made for min_slots 32-bit images at least: as many or more of any other size fit
                self._recut(ring, self.out_free, slot_bytes, self.config.max_image_slots, "compressed image")
                log.info("image ring: %d slots of %d bytes", ring.n_slots, slot_bytes)
            except RingBusy:
                if slot_bytes > ring.slot_bytes:
                    raise
                log.warning("image ring: slots still out; the series keeps %d slots", ring.n_slots)
        self.stream.buffer.resize(stream_buffer_images(ring.n_slots))

    @staticmethod
    def _recut(ring: SlotRing, free: FreeSlots, slot_bytes: int, max_slots: int, what: str) -> None:
        """Take every slot number of `ring` from `free` (waiting for those still in use), partition the ring into
        slots of `slot_bytes` and put the new numbers in `free`. Every process using the ring views it anew
        from the series' settings. RingBusy (and `free` as it was) if slots are not back in RECALL_TIMEOUT."""
        home: set[int] = set()
        deadline = time.monotonic() + RECALL_TIMEOUT
        while len(home) < ring.n_slots:
            try:
                home.add(free.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                if time.monotonic() >= deadline:
                    for slot in home:
                        free.put(slot)
                    raise RingBusy(
                        f"only {len(home)} of {ring.n_slots} {what} slots came back from the pipeline and the "
                        f"interfaces within {RECALL_TIMEOUT:g} s; the buffer cannot be re-partitioned "
                        "(try again, or initialize)"
                    ) from None
        for slot in range(ring.partition(slot_bytes, max_slots)):
            free.put(slot)

    @property
    def images_lost_in_pipeline(self) -> int:
        """Images of the running (or last) series that the DAQ assembled and the pipeline could not produce
        (a frame that failed, or on which workers kept dying); each one is missing in every interface."""
        return self.pipeline.images_lost_in_pipeline

    @property
    def pipeline_workers_replaced(self) -> int:
        """Pipeline workers that died and were replaced since app-detector started."""
        return self.pipeline.workers_replaced

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
        # an abort waits only `timeout` (the workers may be gone: SIGTERM to the whole process group)
        published = self.pipeline.wait_published(emitted, timeout=timeout if aborted else timeout + 30)
        lost = self.pipeline.images_lost_in_pipeline
        if lost:
            log.error("series %d: %d images lost in the pipeline", series.series_id, lost)
        if published + lost < emitted:
            log.error("series %d: only %d of %d images left the pipeline", series.series_id, published, emitted)
            self.pipeline.flush_held()
        self.mux.end_series(series, aborted)
        self._series = None
        return counters

    # -- pipeline -> mux ----------------------------------------------------------------------------------------
    def _on_processed(self, batch: list[ProcessedImage]) -> None:
        """Images in frame order from the pipeline, a batch at a time, to the ImageMux."""
        series = self._series
        current = [p for p in batch if series is not None and p.series_id == series.series_id]
        if len(current) < len(batch):  # a series that is over
            for processed in batch:
                if series is None or processed.series_id != series.series_id:
                    self.out_free.put(processed.out_slot)
        if not current or series is None:
            return
        out_ring, free = self.out_ring, self.out_free
        dtype, shape, compression = self._image_format
        images = [
            CompressedImage(
                series_id=p.series_id,
                image_id=p.frame_number - 1,
                data=out_ring.bytes(p.out_slot, p.nbytes),
                dtype=dtype,
                shape=shape,
                compression=compression,
                packets_expected=p.packets_expected,
                packets_received=p.packets_received,
                shm_name=out_ring.name,
                shm_offset=p.out_slot * out_ring.stride,
                _on_free=partial(free.put, p.out_slot),
            )
            for p in current
        ]
        self.mux.publish_many(images)

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
