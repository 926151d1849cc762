"""Frame assembly: packets of all modules -> one raw frame in a shared-memory slot, with honest loss accounting.

A raw frame slot holds every sub-frame of every module, widened to uint16 counts:
[nsubframes, n_modules, raw_h, raw_w] (the pipeline sums the sub-frames). The receivers (receiver.py, compiled
loop in kernels.py) write packets straight into the slots of the frames in flight; this assembler opens frames
(gives them a slot), and hands a frame to the pipeline once every module has closed its share of it. Then the
pixels of each missing packet, and only those, are set to the error value 0xFFFF, and the frame carries its
packet counts (efficiency per image). Late, duplicate, foreign and malformed packets are counted and dropped.

A series may read out only some of the modules (roi_mode 4M of a 9M/16M): only their packets are expected, the
packets of the others are foreign, and the others' part of a slot is left as it is (the pipeline places only the
ROI's modules).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Protocol

import numpy as np

from opendcu.app_detector.daq import kernels as k
from opendcu.app_detector.shared_memory import SlotRing
from opendcu.geometry.models import DetectorModel
from opendcu.hardware.counters import COUNTER_IDS
from opendcu.hardware.udp_packet import PacketLayout

log = logging.getLogger(__name__)

RAW_DTYPE = np.uint16
RAW_ERROR = 0xFFFF
FLUSH_WAIT = 2.0  # s: receivers notice a flush request within their socket timeout (50 ms)
#: a module's share of a frame closes this long after its last packet (while its socket is drained): a few frame
#: periods, within these bounds (frames followed by newer ones close at once by the frame-number rule)
SHARE_TIMEOUT_MIN, SHARE_TIMEOUT_MAX, SHARE_TIMEOUT_PERIODS = 0.5, 1.0, 4
#: the raw slot of a frame handed on without pixels (every packet lost, or no slot was free when it began):
#: the pipeline makes its image all invalid without reading a raw slot, so such frames cost the data path nothing
NO_SLOT = -1
#: how long the first frame that finds no free raw slot waits for one (the pipeline is behind): a few frame
#: periods, within these bounds (s). While slots stay short, later frames do not wait: the receivers keep
#: draining their sockets, frames are dropped whole (their images all invalid) and the rest arrive complete.
SLOT_WAIT_MIN, SLOT_WAIT_MAX, SLOT_WAIT_PERIODS = 0.002, 0.5, 8
#: while a series runs the assembler thread polls the receivers' event rings every half frame period, within
#: these bounds (s): often enough that frames settle promptly, rarely enough that slow series pay no polls for
#: nothing (each poll takes the GIL from the data path's other threads); frames opened ahead cover the wait.
#: Each poll's frames travel on as one batch, and every hop after it (pool, workers, ImageMux) has a cost per
#: batch: at 2 ms rather than 0.5 ms a fast ASIC at 6.5 kHz needs 13 % less CPU per frame (bench/e2e.py)
POLL_INTERVAL_MIN, POLL_INTERVAL_MAX = 0.002, 0.005
IDLE_POLL_INTERVAL = 0.02


def poll_interval(frame_time: float) -> float:
    """Seconds between the assembler thread's polls while a series of this frame time runs."""
    return min(POLL_INTERVAL_MAX, max(POLL_INTERVAL_MIN, frame_time / 2))


class SlotQueue(Protocol):
    """The free raw slot numbers (`shared_memory.FreeSlots`, or anything with its queue-like calls)."""

    def get(self, block: bool = True, timeout: float | None = None) -> int: ...

    def get_nowait(self) -> int: ...

    def put(self, item: int) -> None: ...


def share_timeout(frame_time: float) -> float:
    """Seconds after which a module's share of a frame whose packets stopped is closed."""
    return min(SHARE_TIMEOUT_MAX, max(SHARE_TIMEOUT_MIN, SHARE_TIMEOUT_PERIODS * frame_time))


@dataclass(slots=True)  # made per frame: slots make it cheaper to make and to read
class AssembledFrame:
    """A raw frame ready for the pipeline (the slot now belongs to the pipeline)."""

    series_id: int
    frame_number: int  # 1-based, as in the packet header
    slot: int
    packets_expected: int
    packets_received: int
    #: sub-frames in the slot, laid out [nsubframes, n_modules, raw_h, raw_w] uint16 (auto-summation)
    nsubframes: int = 1


@dataclass
class DaqCounters:
    """Per-series packet accounting (what status and image metadata report)."""

    #: packets of the frames handed on (so far)
    packets_expected: int = 0
    packets_received: int = 0
    late: int = 0
    duplicate: int = 0
    foreign: int = 0
    malformed: int = 0
    #: packets dropped because their frame had no raw slot (pipeline behind)
    overflow: int = 0
    frames_complete: int = 0
    frames_incomplete: int = 0
    #: frames of which no pixel arrived (every packet lost, or no raw slot was free): handed on all invalid, and
    #: counted incomplete too
    frames_lost: int = 0

    @property
    def packets_lost(self) -> int:
        return max(0, self.packets_expected - self.packets_received)

    @property
    def efficiency(self) -> float:
        return self.packets_received / self.packets_expected if self.packets_expected else 1.0


class FrameTable:
    """The frames of one series in flight, shared with the compiled receivers (see kernels.py)."""

    def __init__(self, epoch: int, window: int, n_modules: int, nsub: int, layout: PacketLayout):
        self.epoch = epoch
        self.window = window
        self.layout = layout
        self.params = np.zeros(k.NPARAMS, dtype=np.int64)
        self.frame = np.zeros(window, dtype=np.int64)
        self.slot = np.full(window, -1, dtype=np.int64)
        self.state = np.zeros(window, dtype=np.int8)
        self.last_ns = np.zeros(window, dtype=np.int64)
        self.bitmap = np.zeros((window, n_modules, nsub * layout.npackets), dtype=np.uint8)
        self.count = np.zeros((window, n_modules), dtype=np.int32)
        self.share_done = np.zeros((window, n_modules), dtype=np.uint8)
        self.cursor = np.ones(n_modules, dtype=np.int64)  # per module: lowest frame whose share may be open
        self.flush_done = np.zeros(n_modules, dtype=np.int64)
        self.counters = np.zeros((n_modules, k.NCOUNTERS), dtype=np.int64)
        self.closed = np.zeros(window, dtype=np.int64)  # shares closed so far (assembler side)
        self.active = np.ones(n_modules, dtype=np.uint8)  # 1: the module is read out in this series
        # per module: a ring of closed shares (entries), then [head (receiver), tail (assembler thread)]
        self.events = np.zeros((n_modules, 4 * window + 64 + 2), dtype=np.int64)
        self.drained = np.zeros(n_modules * (4 * window + 64), dtype=np.int64)
        #: per module: the data source its packets must come from ([address, port] as kernels.SRC_*; 0: any)
        self.sources = np.zeros((n_modules, 2), dtype=np.int64)

    def kernel_args(self) -> tuple:
        """The table's arrays in the order `kernels.receive` takes them."""
        return (
            self.params,
            self.frame,
            self.slot,
            self.state,
            self.last_ns,
            self.bitmap,
            self.count,
            self.share_done,
            self.cursor,
            self.flush_done,
            self.counters,
            self.active,
            self.events,
        )


#: seconds of frames the assembler keeps opened ahead of the receivers
PRESTOCK_S = 0.02
MAX_WINDOW = 1024  # frames in flight at once (more raw slots than this serve the pipeline as buffer)


def _window_for(n_slots: int) -> int:
    return min(MAX_WINDOW, 1 << max(1, (n_slots - 1).bit_length()))


class FrameAssembler:
    """Tracks the frames of the running series; receivers write packets straight into the frame slots."""

    def __init__(
        self,
        model: DetectorModel,
        ring: SlotRing,
        free_slots: SlotQueue,
        emit: Callable[[AssembledFrame], None],
        emit_many: Callable[[list[AssembledFrame]], None] | None = None,
    ):
        self.model = model
        self.ring = ring
        self.free_slots = free_slots
        self.emit = emit
        #: takes the frames settled in one poll at once (the pipeline: one hand-off per batch), else `emit` each
        self.emit_many = emit_many
        self._outbox: list[AssembledFrame] = []
        #: images of the series lost after the DAQ (the pipeline's count; DataPath wires it)
        self.lost_in_pipeline: Callable[[], int] = lambda: 0
        #: UDP ports the receivers are bound to, by module index (Daq fills it)
        self.data_ports: list[int] = []
        #: module index -> (address, port) its data packets must come from (expect_sources)
        self._sources: dict[int, tuple[int, int]] = {}
        self.frame_bytes = model.n_modules * model.module.raw_pixels * np.dtype(RAW_DTYPE).itemsize
        self._size_for_ring()
        #: [epoch, stop]; receivers compare the epoch with their table's to notice a new series
        self.control = np.zeros(2, dtype=np.int64)
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._open_lock = threading.Lock()
        self.series_id = -1
        self.nframes = 0
        self.nsubframes = 1
        self.table = FrameTable(0, self.window, model.n_modules, 1, PacketLayout.for_module(model.module, 8192))
        self._py = DaqCounters()
        self._base = 1  # lowest frame number not yet settled (handed on or released)
        self._next_open = 1
        self._per_frame = 0
        self._emitted = 0
        self._flush_expected: int | None = None
        self._last_progress = time.monotonic()
        self._frame_time = 0.0
        self._slot_wait = SLOT_WAIT_MAX
        #: the first frame of the current run of frames opened without a raw slot (None: slots are free)
        self._starved_from: int | None = None
        self._dropped_no_slot = 0
        self._dropped_reported = 0
        self._share_timeout = share_timeout(0.0)
        self._poller: threading.Thread | None = None
        self._stop_poller = threading.Event()
        # compile (or load from numba's cache) the bookkeeping now, not under the lock at the first frame
        t = self.table
        self._settle(t, np.zeros(0, dtype=np.int64))
        k.install(
            1,
            np.zeros(0, dtype=np.int64),
            t.frame,
            t.slot,
            t.state,
            t.last_ns,
            t.bitmap,
            t.count,
            t.share_done,
            t.closed,
            t.active,
        )
        k.drain_events(t.events, t.drained)

    # -- the assembler thread: polls the receivers' event rings in batches ------------------------------------
    def start(self) -> None:
        """Start the thread that settles the frames the receivers closed (Daq.start calls it)."""
        if self._poller is None:
            from opendcu.app_detector.os_threads import start_named

            self._stop_poller.clear()
            self._poller = threading.Thread(target=self._poll_loop, name="daq-assembler", daemon=True)
            start_named(self._poller)

    def stop(self) -> None:
        self._stop_poller.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
            self._poller = None

    def _poll_loop(self) -> None:
        while not self._stop_poller.is_set():
            try:
                busy = self.poll()
            except Exception:  # noqa: BLE001 - the assembler must outlive any one frame's trouble
                log.exception("DAQ assembler: error while settling frames; continuing")
                busy = False
            if not busy:
                active = bool(self.table.params[k.P_ACTIVE])
                self._stop_poller.wait(poll_interval(self._frame_time) if active else IDLE_POLL_INTERVAL)

    def poll(self) -> bool:
        """Settle what the receivers closed since the last poll, and open frames ahead; True if there was any."""
        with self._lock:
            n = self._poll_locked(self.table)
            if n:
                self._changed.notify_all()
            if self.table.params[k.P_ACTIVE]:  # also while busy: at high rates a poll always finds frames
                self._restock()
            self._flush_outbox()
        return n > 0

    def _poll_locked(self, table: FrameTable) -> int:
        n = k.drain_events(table.events, table.drained)
        if n:
            self._settle(table, table.drained[:n])
            self._last_progress = time.monotonic()
        return n

    def _flush_outbox(self) -> None:
        """Hand on the frames settled under the lock (lock held)."""
        if not self._outbox:
            return
        frames, self._outbox = self._outbox, []
        if self.emit_many is not None:
            self.emit_many(frames)
        else:
            for frame in frames:
                self.emit(frame)

    def expect_sources(self, sources: dict[int, tuple[str, int]]) -> None:
        """Accept each module's data packets only from the source address the module driver learnt at CONFIGURE
        (`sources`: module index -> (IPv4 address, port)); the others count as foreign."""
        import socket as _socket

        with self._lock:
            for index, (host, port) in sources.items():
                ip = int.from_bytes(_socket.inet_aton(_socket.gethostbyname(host)), "little")
                self._sources[index] = (ip, int(port))  # kept for the next series' tables (arm may configure first)
                self.table.sources[index, k.SRC_IP] = ip
                self.table.sources[index, k.SRC_PORT] = int(port)

    def _size_for_ring(self) -> None:
        """Frames in flight (window) and opened ahead (prestock), and sub-frames per slot, from the raw ring's
        current partition (DataPath re-partitions it per series)."""
        ring = self.ring
        self.slot_subframes = ring.slot_bytes // self.frame_bytes
        if self.slot_subframes < 1:
            raise ValueError(f"raw slots of {ring.slot_bytes} bytes cannot hold a {self.model.name} frame")
        self.window = _window_for(ring.n_slots)
        #: frames opened ahead of the oldest one in flight (more are opened on demand, up to the window)
        # (deep enough that a receiver rarely finds its next frame without a slot: the assembler thread polls)
        self.prestock = max(2, min(self.window // 2, ring.n_slots // 2))
        self._max_prestock = self.prestock

    # -- series lifecycle --------------------------------------------------------------------------------------
    def release_slots(self) -> None:
        """End the last series' bookkeeping and give back the slots opened ahead for it (every raw slot must be
        home before the DataPath re-partitions the ring)."""
        with self._lock:
            self.table.params[k.P_ACTIVE] = 0  # normally finish() did this already
            self._release_stocked(self.table)

    def start_series(
        self,
        series_id: int,
        nframes: int,
        payload_size: int,
        frame_time: float,
        nsubframes: int = 1,
        modules: tuple[int, ...] | None = None,
        timeout: float | None = None,
    ) -> None:
        """Prepare for a series of `nframes` images of `nsubframes` sub-frames each (called at arm), read out
        from `modules` (indices of the model's modules; default all). The raw ring's partition must be the
        series' already (`release_slots` first if it changes). `timeout`: the share timeout (s; default a few
        frame periods, `share_timeout`)."""
        with self._lock:
            self._size_for_ring()
        if not 1 <= nsubframes <= self.slot_subframes:
            raise ValueError(f"nsubframes {nsubframes} does not fit the raw slots of {self.ring.slot_bytes} bytes")
        n_modules = self.model.n_modules
        modules = tuple(range(n_modules)) if modules is None else tuple(modules)
        if not modules or len(set(modules)) != len(modules) or not all(0 <= m < n_modules for m in modules):
            raise ValueError(f"modules {modules} are not distinct modules of {self.model.name}")
        layout = PacketLayout.for_module(self.model.module, payload_size)
        with self._lock:
            self.table.params[k.P_ACTIVE] = 0  # normally finish() did this already
            self._release_stocked(self.table)
            table = FrameTable(self.table.epoch + 1, self.window, n_modules, nsubframes, layout)
            table.active[:] = 0
            table.active[list(modules)] = 1
            p = table.params
            p[k.P_SERIES], p[k.P_NFRAMES], p[k.P_NPACKETS], p[k.P_NSUB] = (
                series_id,
                nframes,
                layout.npackets,
                nsubframes,
            )
            p[k.P_PPP], p[k.P_PACKET_BYTES] = layout.pixels_per_packet, layout.packet_bytes(0)
            p[k.P_LAST_BYTES], p[k.P_NPIX] = layout.packet_bytes(layout.npackets - 1), layout.npixels
            self._share_timeout = share_timeout(frame_time) if timeout is None else timeout
            p[k.P_WINDOW_BASE], p[k.P_TIMEOUT_NS] = 1, int(self._share_timeout * 1e9)
            p[k.P_DET_TYPE], p[k.P_COUNTER] = self.model.module.udp_detector_type, COUNTER_IDS[layout.counter]
            p[k.P_NMODULES], p[k.P_NREAD], p[k.P_ACTIVE] = n_modules, len(modules), 1
            self.series_id, self.nframes, self.nsubframes = series_id, nframes, nsubframes
            self._per_frame = nsubframes * len(modules) * layout.npackets
            self._py = DaqCounters()
            self._base = self._next_open = 1
            self._emitted = 0
            self._flush_expected = None
            self._outbox = []
            for index, (ip, port) in self._sources.items():
                table.sources[index, k.SRC_IP], table.sources[index, k.SRC_PORT] = ip, port
            self._frame_time = frame_time
            self._slot_wait = min(SLOT_WAIT_MAX, max(SLOT_WAIT_MIN, SLOT_WAIT_PERIODS * frame_time))
            self._starved_from, self._dropped_no_slot, self._dropped_reported = None, 0, 0
            # opened ahead: the frames of a few polls, so that the rest of the raw ring buffers the pipeline's
            # backlog (frames opened ahead hold their slots; at high rates the assembler restocks every poll)
            self.prestock = max(2, min(self._max_prestock, int(PRESTOCK_S / frame_time) if frame_time > 0 else 2))
            self._last_progress = time.monotonic()
            self.table = table
            self.control[0] = table.epoch  # publishes the new table to the receivers
            self._restock()

    def finish(self, timeout: float, expected: int | None = None) -> DaqCounters:
        """End the series. Wait up to `timeout` s for frames 1..`expected` (default: all of the series), then
        hand on what is incomplete, and emit frames 1..`expected` that never arrived fully flagged, so that every
        image the detector took is accounted for. `expected=0` flushes without waiting (abort)."""
        expected = self.nframes if expected is None else min(expected, self.nframes)
        deadline = time.monotonic() + timeout
        idle = self.settle_idle
        with self._lock:
            table = self.table
            while self._base <= expected and time.monotonic() < deadline:
                self._poll_locked(table)
                if time.monotonic() - self._last_progress > idle:  # nothing settles any more: missing frames
                    break
                self._changed.wait(min(0.01, max(0.0, deadline - time.monotonic())))
            # from now on frames that got nothing and were not expected are dropped, not handed on
            self._flush_expected = expected
            request = int(table.params[k.P_FLUSH_REQ]) + 1
            table.params[k.P_FLUSH_REQ] = request
            flush_deadline = time.monotonic() + FLUSH_WAIT
            while (table.flush_done < request).any() and time.monotonic() < flush_deadline:
                self._changed.wait(0.05)
            if (table.flush_done < request).any():
                log.error("DAQ: receivers did not flush; closing their frames for them")
            self._poll_locked(table)  # what the receivers closed while flushing
            table.params[k.P_ACTIVE] = 0
            pending = np.flatnonzero((table.state == k.OPEN) | (table.state == k.DROPPED))
            if pending.size:  # receivers that did not flush: close their shares for them
                self._settle(table, np.repeat(pending, self.model.n_modules - table.closed[pending]))
            settled = {int(f) for f, st in zip(table.frame, table.state, strict=True) if st == k.DONE}
            missing = [f for f in range(self._base, expected + 1) if f not in settled]
            for f in missing:  # images the modules took of which not one packet arrived: all invalid
                self._hand_on(f, NO_SLOT, 0)
            if self._starved_from is not None:
                self._note_starvation(False)
            self._flush_outbox()
            self._changed.notify_all()
        return self.counters

    @property
    def settle_idle(self) -> float:
        """How long without any frame settling means that the frames still missing will not come (s)."""
        return self._share_timeout + 0.25

    def settled_since(self) -> float:
        """Seconds since a frame of the running series last settled."""
        return time.monotonic() - self._last_progress

    @property
    def frames_emitted(self) -> int:
        with self._lock:
            return self._emitted

    def wait_frames(self, count: int, timeout: float) -> bool:
        """Block until `count` frames of the series have been handed to the pipeline."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._emitted < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self.table.params[k.P_ACTIVE]:
                    return self._emitted >= count
                self._changed.wait(min(remaining, 0.1))
            return True

    @property
    def counters(self) -> DaqCounters:
        """The running series' accounting so far (a snapshot)."""
        with self._lock:
            snapshot = DaqCounters(**{f.name: getattr(self._py, f.name) for f in fields(DaqCounters)})
            per_module = self.table.counters.sum(axis=0)
        for index, name in enumerate(k.COUNTER_NAMES):
            setattr(snapshot, name, int(per_module[index]))
        return snapshot

    @property
    def packets_per_frame(self) -> int:
        return self._per_frame

    @property
    def modules_read_out(self) -> int:
        """How many modules the running (or last) series reads out."""
        return int(self.table.active.sum())

    # -- called by receivers ----------------------------------------------------------------------------------
    def open_frames_upto(self, table: FrameTable, frame_number: int) -> None:
        """Give frames up to `frame_number` a slot (a receiver has a packet of it). Free slots are taken at once.
        When none is free the pipeline is behind: the first such frame waits a few frame periods for one, later
        ones (while none has come free) not at all; a frame without a slot is dropped whole (its packets count
        as overflow, its image is handed on all invalid)."""
        with self._open_lock:
            while True:
                with self._lock:
                    if table is not self.table or not table.params[k.P_ACTIVE]:
                        return
                    wanted = min(frame_number + 1, self._base + self.window) - self._next_open
                    if wanted <= 0:
                        return
                    slots = self._take_free_slots(wanted)
                    if slots:
                        self._install(table, np.array(slots, dtype=np.int64))
                        continue
                    nxt = self._next_open
                    wait = 0.0 if self._starved_from is not None else self._slot_wait
                try:  # no free slot: wait for one outside the lock
                    slot = self.free_slots.get(timeout=wait) if wait > 0 else self.free_slots.get_nowait()
                except (queue.Empty, OSError, ValueError):
                    slot = NO_SLOT
                with self._lock:
                    if table is not self.table or nxt != self._next_open:
                        if slot >= 0:
                            self.free_slots.put(slot)
                        return
                    self._install(table, np.array([slot], dtype=np.int64))

    def wait_window(self, table: FrameTable, frame_number: int, timeout: float = 0.02) -> None:
        """Block a receiver that is a window ahead until `frame_number` fits the window (or `timeout`)."""
        with self._lock:
            if table is self.table and frame_number >= self._base + self.window:
                self._changed.wait(timeout)

    # -- internals (lock held) ----------------------------------------------------------------------------------
    def _settle(self, table: FrameTable, entries: np.ndarray) -> None:
        out = np.empty((entries.size, 4), dtype=np.int64)
        flush = -1 if self._flush_expected is None else self._flush_expected
        n = k.settle(
            entries,
            table.closed,
            table.frame,
            table.slot,
            table.state,
            table.count,
            table.bitmap,
            table.active,
            table.params,
            self.ring.buffer,
            flush,
            out,
        )
        for frame_number, slot, received, decision in out[:n].tolist():
            if decision == k.HAND_ON:
                self._hand_on(frame_number, slot, received)
            elif decision == k.RELEASE:  # opened ahead, never taken: not an image
                if slot >= 0:
                    self.free_slots.put(slot)
            else:  # opened without a slot: its packets were skipped
                self._hand_on(frame_number, NO_SLOT, 0)
        self._base = k.advance_base(table.frame, table.state, table.params)
        self._restock()

    def _install(self, table: FrameTable, slots: np.ndarray) -> None:
        self._note_starvation(int(slots[0]) < 0)
        k.install(
            self._next_open,
            slots,
            table.frame,
            table.slot,
            table.state,
            table.last_ns,
            table.bitmap,
            table.count,
            table.share_done,
            table.closed,
            table.active,
        )
        self._next_open += slots.size

    def _restock(self) -> None:
        """Open the next `prestock` frames ahead of their packets while slots are free (no waiting), so that
        receivers rarely have to ask for a frame; the other free slots stay free (status: dcu_buffer_free)."""
        table = self.table
        room = min(self.nframes + 1, self._base + min(self.window, self.prestock)) - self._next_open
        if room <= 0 or not table.params[k.P_ACTIVE]:
            return
        slots = self._take_free_slots(room)
        if slots:
            self._install(table, np.array(slots, dtype=np.int64))

    def _take_free_slots(self, count: int) -> list[int]:
        """Up to `count` free slots, without waiting."""
        slots = []
        for _ in range(count):
            try:
                slots.append(self.free_slots.get_nowait())
            except (queue.Empty, OSError, ValueError):
                break
        return slots

    def _release_stocked(self, table: FrameTable) -> None:
        """Give back slots of frames opened ahead that never were handed on."""
        for e in np.flatnonzero(table.state == k.OPEN):
            self.free_slots.put(int(table.slot[e]))
            table.state[e] = k.DONE

    def _note_starvation(self, no_slot: bool) -> None:
        """(lock held) Log once when frames begin to be dropped for want of raw slots, and once when they end."""
        if no_slot:
            self._dropped_no_slot += 1
            if self._starved_from is None:
                self._starved_from = self._next_open
                log.error(
                    "DAQ: series %d: no free raw frame slot for frame %d (the pipeline is behind): frames are "
                    "dropped whole until slots come free",
                    self.series_id,
                    self._next_open,
                )
        elif self._starved_from is not None:
            log.error(
                "DAQ: series %d: raw frame slots free again at frame %d; %d frames dropped since frame %d",
                self.series_id,
                self._next_open,
                self._dropped_no_slot - self._dropped_reported,
                self._starved_from,
            )
            self._dropped_reported = self._dropped_no_slot
            self._starved_from = None

    def _hand_on(self, frame_number: int, slot: int, received: int) -> None:
        expected = self._per_frame
        py = self._py
        py.packets_expected += expected
        py.packets_received += received
        if received == expected:
            py.frames_complete += 1
        else:
            py.frames_incomplete += 1
            py.frames_lost += received == 0
        self._emitted += 1
        self._outbox.append(AssembledFrame(self.series_id, frame_number, slot, expected, received, self.nsubframes))
