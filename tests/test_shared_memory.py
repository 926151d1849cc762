"""SlotRing (app_detector/shared_memory.py): one segment, re-partitioned into slots of another size (the raw ring
per series), seen the same way by a second process that attached it."""

from __future__ import annotations

import multiprocessing as mp
import queue
import threading
import time

import numpy as np
import pytest

from opendcu.app_detector.shared_memory import FreeSlots, SlotRing

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


def test_free_slots_hand_out_in_order_and_say_empty_as_a_queue_does():
    free = FreeSlots(range(3))
    assert [free.get(), free.get_nowait(), free.get(timeout=0.01)] == [0, 1, 2]
    assert free.empty() and free.qsize() == 0
    with pytest.raises(queue.Empty):
        free.get_nowait()
    with pytest.raises(queue.Empty):
        free.get(block=False)
    started = time.monotonic()
    with pytest.raises(queue.Empty):
        free.get(timeout=0.05)
    assert time.monotonic() - started >= 0.05
    free.put(7)
    assert free.qsize() == 1 and free.get() == 7


def test_a_taker_waiting_for_a_slot_gets_the_one_given_back():
    free = FreeSlots()
    got: list[int] = []
    taker = threading.Thread(target=lambda: got.append(free.get(timeout=30)))
    taker.start()
    time.sleep(0.05)  # the taker is (most likely) asleep in the condition by now; either way it must get the slot
    free.put(5)
    taker.join(timeout=30)
    assert got == [5]


def test_free_slots_lose_and_duplicate_no_slot_between_busy_threads():
    """Threads take slots (waiting when none is free) and give them back, as the DAQ, the pipeline and the
    interfaces do; afterwards every slot is home exactly once. A lost wake-up would hang a taker: each take waits
    at most 30 s, and the test fails on its Empty."""
    n_slots, rounds = 4, 5_000
    free = FreeSlots(range(n_slots))
    errors: list[BaseException] = []

    def cycle() -> None:
        try:
            for _ in range(rounds):
                slot = free.get(timeout=30)
                free.put(slot)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=cycle) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors and not any(t.is_alive() for t in threads)
    assert sorted(free.get_nowait() for _ in range(free.qsize())) == list(range(n_slots))
