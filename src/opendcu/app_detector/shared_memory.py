"""Fixed-size slots in one shared-memory block: how frames move between processes without being pickled.

The owner creates the ring; other processes attach by name. Only slot *indices* travel through queues;
whoever holds an index owns that slot until it hands the index on (to the next stage or back to the free list).

A ring may be re-partitioned (`partition`): the same segment viewed as other slots, e.g. the raw ring per series
(one memory budget: many small slots for single frames, few large ones for summed sub-frames). Every process
using the ring must partition it identically, and only while no slot index is out.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import logging
import os
import queue
import secrets
import sys
import threading
import time
from collections.abc import Iterable
from multiprocessing import shared_memory

import numpy as np

log = logging.getLogger(__name__)

#: madvise(2) advice that maps every page of a range writable at once (Linux >= 5.14)
_MADV_POPULATE_WRITE = 23


class SlotRing:
    """`n_slots` slots of `slot_bytes` bytes each, in one POSIX shared-memory segment (of `size` bytes if given:
    room to `partition` it later; pages are only allocated once touched)."""

    def __init__(self, n_slots: int, slot_bytes: int, name: str | None = None, create: bool = True, size: int = 0):
        self.n_slots = n_slots
        self.slot_bytes = slot_bytes
        self.stride = slot_stride(slot_bytes)
        if create:
            name = name or f"opendcu-{secrets.token_hex(6)}"
            size = max(1, size, n_slots * self.stride)
            self._shm = shared_memory.SharedMemory(name=name, create=True, size=size)
        else:
            # attachers are multiprocessing children of the creator and share its resource tracker, so the
            # segment stays registered once and is unlinked once, by the creator
            self._shm = shared_memory.SharedMemory(name=name, create=False)
        self.owner = create
        self.buffer = np.ndarray((n_slots, self.stride), dtype=np.uint8, buffer=self._shm.buf)

    @property
    def name(self) -> str:
        return self._shm.name

    @property
    def size(self) -> int:
        """Bytes of the whole segment."""
        return self._shm.size

    def partition(self, slot_bytes: int, max_slots: int) -> int:
        """View the segment as min(`max_slots`, what fits) slots of `slot_bytes`; returns that number.

        Slot i then starts at byte i * stride (slot_bytes rounded up to 4 KiB). Only valid while no slot is in
        use; every process attached to the ring must partition it the same way."""
        stride = slot_stride(slot_bytes)
        n_slots = slots_in(self.size, slot_bytes, max_slots)
        if n_slots < 1:
            raise ValueError(f"a slot of {slot_bytes} bytes does not fit the {self.size} bytes of ring {self.name}")
        self.n_slots, self.slot_bytes, self.stride = n_slots, slot_bytes, stride
        self.buffer = np.ndarray((n_slots, stride), dtype=np.uint8, buffer=self._shm.buf)
        return n_slots

    def populate(self) -> None:
        """Map every page of the segment into this process now (allocating it if this is the first process).

        A ring is cycled through slot by slot: without this, every first pass over it takes a page fault per 4 KiB
        in the hot path (a DAQ receiver writing 1 MiB frames spent over half its time in them). A segment that
        shared memory cannot hold fails here, loudly, instead of with SIGBUS in the middle of a series."""
        if not sys.platform.startswith("linux") or self.size == 0:
            return
        libc = ctypes.CDLL(None, use_errno=True)
        libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        buf = self._shm.buf
        assert buf is not None  # an open segment
        address = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        if libc.madvise(address, self.size, _MADV_POPULATE_WRITE) == 0:
            return
        code = ctypes.get_errno()
        if code == errno.EINVAL:  # a kernel before 5.14: pages are taken on first touch, as before
            log.debug("shared memory %s: MADV_POPULATE_WRITE not supported", self.name)
            return
        raise MemoryError(
            f"shared memory {self.name}: cannot map its {self.size >> 20} MiB ({os.strerror(code)}); "
            "is /dev/shm smaller than the raw and image buffers (dcu serve --raw-buffer-mib)?"
        )

    def spec(self) -> tuple[str, int, int]:
        """What another process needs to attach: (name, n_slots, slot_bytes)."""
        return (self.name, self.n_slots, self.slot_bytes)

    @classmethod
    def attach(cls, spec: tuple[str, int, int]) -> SlotRing:
        name, n_slots, slot_bytes = spec
        return cls(n_slots, slot_bytes, name=name, create=False)

    def bytes(self, slot: int, nbytes: int | None = None) -> np.ndarray:
        """The slot as a uint8 array (optionally only its first `nbytes`)."""
        return self.buffer[slot, : self.slot_bytes if nbytes is None else nbytes]

    def array(self, slot: int, dtype: np.dtype | str, shape: tuple[int, ...]) -> np.ndarray:
        """A typed view of the slot's start."""
        dtype = np.dtype(dtype)
        n = int(np.prod(shape)) * dtype.itemsize
        if n > self.slot_bytes:
            raise ValueError(f"{shape} {dtype} needs {n} bytes, slot has {self.slot_bytes}")
        return self.buffer[slot, :n].view(dtype).reshape(shape)

    def close(self) -> None:
        """Detach (and, for the owner, destroy) the segment."""
        del self.buffer
        self._shm.close()
        if self.owner:
            self._shm.unlink()


def slot_stride(slot_bytes: int) -> int:
    """Bytes from one slot to the next: 4 KiB aligned, so that views of slots are page aligned."""
    return -(-slot_bytes // 4096) * 4096


def slots_in(size: int, slot_bytes: int, max_slots: int) -> int:
    """How many slots of `slot_bytes` a segment of `size` bytes is partitioned into (at most `max_slots`)."""
    return min(max_slots, size // slot_stride(slot_bytes))


class FreeSlots:
    """The free slot numbers of a ring, shared by the threads of one process: a `queue.Queue` in what it offers
    (`put`, `get`, `get_nowait`, `qsize`; `queue.Empty`), at a fraction of its cost. A slot number goes in and out
    once per frame and stage, so this is on the hot path: taking and giving back are single atomic deque
    operations, and the condition is touched only while a taker waits."""

    def __init__(self, slots: Iterable[int] = ()):
        self._slots: collections.deque[int] = collections.deque(slots)
        self._waiters = 0
        self._cond = threading.Condition(threading.Lock())

    def qsize(self) -> int:
        return len(self._slots)

    def empty(self) -> bool:
        return not self._slots

    def put(self, slot: int) -> None:
        self._slots.append(slot)
        # a taker counts itself (under the lock) before it looks again and sleeps: it sees this slot, or this
        # sees it waiting
        if self._waiters:
            with self._cond:
                self._cond.notify()

    def get_nowait(self) -> int:
        try:
            return self._slots.popleft()
        except IndexError:
            raise queue.Empty from None

    def get(self, block: bool = True, timeout: float | None = None) -> int:
        try:
            return self._slots.popleft()
        except IndexError:
            if not block:
                raise queue.Empty from None
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            self._waiters += 1
            try:
                while True:
                    try:
                        return self._slots.popleft()
                    except IndexError:
                        pass
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        raise queue.Empty
                    self._cond.wait(remaining)
            finally:
                self._waiters -= 1
