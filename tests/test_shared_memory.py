"""SlotRing (app_detector/shared_memory.py): one segment, re-partitioned into slots of another size (the raw ring
per series), seen the same way by a second process that attached it."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest

from opendcu.app_detector.shared_memory import SlotRing

SIZE = 1 << 20  # 1 MiB = 256 pages


def _write_through_attached(spec: tuple[str, int, int], slot_bytes: int, n_slots: int, slot: int, value: int) -> None:
    ring = SlotRing.attach(spec)
    try:
        assert ring.partition(slot_bytes, n_slots) == n_slots
        ring.array(slot, np.uint16, (slot_bytes // 2,))[:] = value
    finally:
        ring.close()


def test_partition_views_aligned_slots_of_the_same_segment():
    ring = SlotRing(0, 4096, size=SIZE)
    try:
        assert ring.size >= SIZE and ring.n_slots == 0
        # 10000-byte slots take 3 pages each: 85 fit in 256 pages, capped at 64
        assert ring.partition(10_000, max_slots=64) == 64
        assert (ring.n_slots, ring.slot_bytes, ring.stride) == (64, 10_000, 12_288)
        assert ring.buffer.shape == (64, 12_288)
        assert ring.partition(10_000, max_slots=1000) == 85
        for slot in range(85):
            assert ring.bytes(slot).ctypes.data % 4096 == 0
        ring.bytes(84)[:] = 7
        with pytest.raises(ValueError, match="needs 10002 bytes"):
            ring.array(0, np.uint16, (5001,))

        # a slot of one partition is at the bytes [slot * stride, slot * stride + slot_bytes) of the segment
        ring.buffer[:] = 0
        ring.array(3, np.uint16, (5000,))[:] = np.arange(5000, dtype=np.uint16)
        assert ring.partition(4096, max_slots=1024) == 256 and ring.stride == 4096
        flat = ring.buffer.reshape(-1)
        assert np.array_equal(flat[3 * 12_288 : 3 * 12_288 + 10_000].view(np.uint16), np.arange(5000))
        assert not flat[: 3 * 12_288].any() and not flat[3 * 12_288 + 10_000 :].any()
        assert np.array_equal(ring.array(9, np.uint16, (2048,)), np.arange(0, 2048))  # page 9 = slot 3's start
        assert np.array_equal(ring.array(10, np.uint16, (2048,)), np.arange(2048, 4096))

        with pytest.raises(ValueError, match="does not fit"):
            ring.partition(SIZE + 1, max_slots=2)
        assert (ring.n_slots, ring.slot_bytes) == (256, 4096)  # a refused partition leaves the ring as it was
    finally:
        ring.close()


def test_another_process_partitioned_identically_writes_where_the_owner_reads():
    ring = SlotRing(256, 4096, size=SIZE)  # attached as 256 single pages, re-cut in both processes
    try:
        ring.buffer[:] = 0
        spec = ring.spec()  # what the workers get at start: the partition before any series
        n = ring.partition(3 * 4096 + 100, max_slots=1024)  # 4 pages per slot
        assert n == 64
        child = mp.get_context("spawn").Process(
            target=_write_through_attached, args=(spec, ring.slot_bytes, n, 5, 0xABCD)
        )
        child.start()
        child.join(60)
        assert child.exitcode == 0
        got = ring.array(5, np.uint16, (ring.slot_bytes // 2,))
        assert (got == 0xABCD).all()
        ring.array(5, np.uint16, (ring.slot_bytes // 2,))[:] = 0
        assert not ring.buffer.any()  # nothing written outside slot 5
    finally:
        ring.close()
