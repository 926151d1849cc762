"""Frame assembly: packets of all modules -> one raw frame in a shared-memory slot, with honest loss accounting.

A raw frame slot holds every module's physical pixels, module after module (uint16, row-major). The assembler
hands a frame to the pipeline once every packet of every module has arrived, or once it has waited long enough;
then the pixels of each missing packet are set to the error value 0xFFFF (never the whole module), and the
frame's packet counts say how much was lost.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from opendcu.app_detector.shared_memory import SlotRing
from opendcu.geometry.models import DetectorModel
from opendcu.hardware.udp_packet import packets_per_frame

log = logging.getLogger(__name__)

RAW_DTYPE = np.uint16
RAW_ERROR = 0xFFFF


@dataclass
class AssembledFrame:
    """A raw frame ready for the pipeline (the slot now belongs to the pipeline)."""

    series_id: int
    frame_number: int  # 1-based, as in the packet header
    slot: int
    packets_expected: int
    packets_received: int
    nsubframes: int = 1  # the slot holds [nsubframes, n_modules, raw rows, raw cols]


@dataclass
class DaqCounters:
    """Per-series packet accounting (what status and image metadata report)."""

    packets_expected: int = 0
    packets_received: int = 0
    late: int = 0
    duplicate: int = 0
    foreign: int = 0
    malformed: int = 0
    frames_complete: int = 0
    frames_incomplete: int = 0
    #: packets dropped because no raw slot was free (pipeline fell behind)
    overflow: int = 0

    @property
    def packets_lost(self) -> int:
        return max(0, self.packets_expected - self.packets_received)

    @property
    def efficiency(self) -> float:
        return self.packets_received / self.packets_expected if self.packets_expected else 1.0


@dataclass
class _PendingFrame:
    frame_number: int
    slot: int
    received: np.ndarray  # bool [n_modules, npackets]
    modules_done: int = 0
    closed: bool = False
    first_seen: float = field(default_factory=time.monotonic)


class FrameAssembler:
    """Tracks the frames of the running series; receivers write packets straight into the frame slots."""

    def __init__(
        self,
        model: DetectorModel,
        ring: SlotRing,
        free_slots: "queue.Queue[int] | object",
        emit: Callable[[AssembledFrame], None],
    ):
        self.model = model
        self.ring = ring
        self.free_slots = free_slots
        self.emit = emit
        self.module_bytes = model.module.raw_pixels * np.dtype(RAW_DTYPE).itemsize
        self._lock = threading.Lock()
        self._all_emitted = threading.Condition(self._lock)
        self.series_id = -1
        self.nframes = 0
        self.payload_size = 8192
        self.npackets = 0
        self.frame_timeout = 1.0
        self.counters = DaqCounters()
        self._pending: dict[int, _PendingFrame] = {}
        self._emitted: set[int] = set()
        self._active = False

    # -- series lifecycle --------------------------------------------------------------------------------------
    def start_series(self, series_id: int, nframes: int, payload_size: int, frame_time: float) -> None:
        with self._lock:
            self.series_id = series_id
            self.nframes = nframes
            self.payload_size = payload_size
            self.npackets = packets_per_frame(self.module_bytes, payload_size)
            self.frame_timeout = max(1.0, 4 * frame_time)
            self.counters = DaqCounters(packets_expected=nframes * self.npackets * self.model.n_modules)
            self._pending.clear()
            self._emitted = set()
            self._active = True

    def finish(self, timeout: float, expected: int | None = None) -> DaqCounters:
        """End the series. Wait up to `timeout` s for frames 1..`expected` (default: all of the series), then
        hand on what is incomplete, and emit frames 1..`expected` that never arrived fully flagged, so that every
        image the detector took is accounted for. `expected=0` flushes without waiting (abort)."""
        expected = self.nframes if expected is None else min(expected, self.nframes)
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._emitted) < expected and self._active:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._all_emitted.wait(min(remaining, 0.1))
            for fn in sorted(self._pending):
                self._complete(self._pending[fn])
            for fn in range(1, expected + 1):
                if fn not in self._emitted:
                    frame = self._open_frame(fn)
                    if frame is not None:
                        self._complete(frame)
            self._active = False
            # every frame handed on was expected in full; frames never handed on were not taken
            self.counters.packets_expected = len(self._emitted) * self.npackets * self.model.n_modules
            return self.counters

    @property
    def frames_emitted(self) -> int:
        with self._lock:
            return len(self._emitted)

    def wait_frames(self, count: int, timeout: float) -> bool:
        """Block until `count` frames of the series have been handed to the pipeline."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._emitted) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._active:
                    return len(self._emitted) >= count
                self._all_emitted.wait(min(remaining, 0.1))
            return True

    # -- called by receivers ----------------------------------------------------------------------------------
    def frame_for(self, series_id: int, frame_number: int) -> _PendingFrame | None:
        """The pending frame a packet belongs to (opened on its first packet), or None if the packet is
        foreign/late; the caller has already validated the header."""
        with self._lock:
            if not self._active or series_id != self.series_id:
                self.counters.foreign += 1
                return None
            frame = self._pending.get(frame_number)
            if frame is not None:
                return frame
            if frame_number in self._emitted:
                self.counters.late += 1
                return None
            if not 1 <= frame_number <= self.nframes:
                self.counters.foreign += 1
                return None
            return self._open_frame(frame_number)

    def module_complete(self, frame: _PendingFrame) -> None:
        """A receiver got every packet of its module for `frame`."""
        with self._lock:
            frame.modules_done += 1
            if frame.modules_done == self.model.n_modules and frame.frame_number in self._pending:
                self._complete(frame)

    def count(self, what: str, n: int = 1) -> None:
        with self._lock:
            setattr(self.counters, what, getattr(self.counters, what) + n)

    def expire(self) -> None:
        """Hand on frames that have waited longer than the frame timeout (called periodically)."""
        now = time.monotonic()
        with self._lock:
            for frame in [f for f in self._pending.values() if now - f.first_seen > self.frame_timeout]:
                self._complete(frame)

    # -- internals (lock held) ----------------------------------------------------------------------------------
    def _open_frame(self, frame_number: int) -> _PendingFrame | None:
        try:
            slot = self.free_slots.get(timeout=0.5)
        except queue.Empty:
            self.counters.overflow += 1
            log.error("DAQ: no free raw frame slot for frame %d (pipeline behind)", frame_number)
            return None
        frame = _PendingFrame(frame_number, slot, np.zeros((self.model.n_modules, self.npackets), dtype=bool))
        self._pending[frame_number] = frame
        return frame

    def _complete(self, frame: _PendingFrame) -> None:
        del self._pending[frame.frame_number]
        frame.closed = True
        received = int(frame.received.sum())
        expected = frame.received.size
        self.counters.packets_received += received
        if received < expected:
            self._flag_missing(frame)
            self.counters.frames_incomplete += 1
        else:
            self.counters.frames_complete += 1
        self._emitted.add(frame.frame_number)
        self.emit(AssembledFrame(self.series_id, frame.frame_number, frame.slot, expected, received))
        self._all_emitted.notify_all()

    def _flag_missing(self, frame: _PendingFrame) -> None:
        raw = self.ring.bytes(frame.slot, self.module_bytes * self.model.n_modules)
        for module_id, packet in zip(*np.nonzero(~frame.received)):
            start = module_id * self.module_bytes + packet * self.payload_size
            end = min(start + self.payload_size, (module_id + 1) * self.module_bytes)
            raw[start:end] = 0xFF  # every byte 0xFF == every uint16 pixel RAW_ERROR
