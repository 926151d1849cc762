"""ImageMux fan-out and the per-interface buffer policies."""

from __future__ import annotations

import threading

import pytest
from series_factory import ImageSource, make_series

from opendcu.app_detector.imagemux import BufferedInterface, ImageBuffer, ImageMux, Policy


class Released:
    def __init__(self, name: str):
        self.name = name
        self.released = 0

    def release(self) -> None:
        self.released += 1


def test_drop_new_counts_and_releases_refused_images():
    released: list[str] = []
    buf = ImageBuffer(2, Policy.DROP_NEW, on_drop=lambda item: released.append(item))
    assert [buf.put_image(x) for x in "abcd"] == [True, True, False, False]
    assert buf.dropped == 2 and released == ["c", "d"]
    assert [buf.get(0)[1] for _ in range(2)] == ["a", "b"]


def test_drop_oldest_evicts_and_keeps_newest():
    released: list[str] = []
    buf = ImageBuffer(2, Policy.DROP_OLDEST, on_drop=lambda item: released.append(item))
    for x in "abcd":
        assert buf.put_image(x)
    assert buf.dropped == 2 and released == ["a", "b"]
    assert [buf.get(0)[1] for _ in range(2)] == ["c", "d"]


def test_control_items_are_never_dropped_nor_counted():
    buf = ImageBuffer(1, Policy.DROP_NEW)
    buf.put_control("start")
    buf.put_image("img0")
    assert not buf.put_image("img1")
    buf.put_control("end")
    items = [buf.get(0) for _ in range(3)]
    assert items == [(False, "start"), (True, "img0"), (False, "end")]
    with pytest.raises(TimeoutError):
        buf.get(0.01)


def test_block_policy_waits_for_room_and_loses_nothing():
    buf = ImageBuffer(2, Policy.BLOCK)
    got: list[int] = []

    def consume() -> None:
        while len(got) < 50:
            got.append(buf.get(5)[1])

    consumer = threading.Thread(target=consume)
    consumer.start()
    for i in range(50):
        assert buf.put_image(i)
    consumer.join(10)
    assert got == list(range(50)) and buf.dropped == 0


class Recorder(BufferedInterface):
    name = "recorder"

    def __init__(self, capacity: int, policy: Policy, gate: threading.Event | None = None):
        self.events: list[tuple] = []
        self.gate = gate
        self.enabled = True
        super().__init__(capacity, policy)

    def handle_start(self, series):
        self.events.append(("start", series.series_id))

    def handle_image(self, image):
        if self.gate is not None:
            self.gate.wait(10)
        self.events.append(("image", image.image_id))

    def handle_end(self, series, aborted):
        self.events.append(("end", series.series_id))


def test_mux_shares_one_slot_and_frees_it_after_every_interface():
    series = make_series(nimages=8)
    source = ImageSource(series, n_slots=8)
    blocked = threading.Event()
    lossless = Recorder(64, Policy.BLOCK)
    stalled = Recorder(2, Policy.DROP_NEW, gate=blocked)  # a stream nobody pulls from
    mux = ImageMux()
    mux.attach(lossless)
    mux.attach(stalled)
    try:
        mux.start_series(series)
        for i in range(8):
            mux.publish(source.image(i))
        blocked.set()
        mux.end_series(series)
        assert lossless.events == [("start", 1)] + [("image", i) for i in range(8)] + [("end", 1)]
        kept = [e for e in stalled.events if e[0] == "image"]
        assert stalled.events[0] == ("start", 1) and stalled.events[-1] == ("end", 1)
        assert len(kept) + stalled.buffer.dropped == 8 and stalled.buffer.dropped > 0
        assert source.all_free()  # every slot went back exactly once
    finally:
        lossless.close_buffer()
        stalled.close_buffer()
        source.close()


def test_an_interface_that_cannot_start_fails_the_arm_and_the_others_end():
    class Broken(Recorder):
        def start_series(self, series):
            raise OSError("No space left on device")

    series = make_series()
    ok, broken = Recorder(4, Policy.BLOCK), Broken(4, Policy.BLOCK)
    mux = ImageMux()
    mux.attach(ok)
    mux.attach(broken)
    try:
        with pytest.raises(OSError, match="No space"):
            mux.start_series(series)
        assert ok.events == [("start", 1), ("end", 1)]
        mux.end_series(series, aborted=True)  # what the data path does after a failed arm: nothing more happens
        assert ok.events == [("start", 1), ("end", 1)]
    finally:
        ok.close_buffer()
        broken.close_buffer()
