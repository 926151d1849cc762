"""The DAQ on real UDP traffic from simulated modules: pixel-exact assembly of every geometry, sub-frames, loss
injection with exact flags and counts, and late/duplicate/foreign/malformed packets counted and dropped."""

from __future__ import annotations

import queue
import socket
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from simulated_detector import SimulatedDetector

from opendcu.app_detector.daq.assembler import NO_SLOT
from opendcu.geometry import MODELS
from opendcu.hardware.config_packet import Kind
from opendcu.hardware.module_driver import ModuleError
from opendcu.hardware.udp_packet import HEADER_DTYPE, PacketLayout

PATTERN = {"kind": "pattern", "period": 4093}


@pytest.fixture
def detector(request):
    made: list[SimulatedDetector] = []

    def make(*args, **kw) -> SimulatedDetector:
        made.append(SimulatedDetector(*args, **kw))
        return made[-1]

    yield make
    for d in made:
        d.close()


def assert_frames_exact(det: SimulatedDetector, series, nframes: int, nsubframes: int = 1) -> None:
    assert sorted(det.frames) == list(range(1, nframes + 1))
    for f in range(1, nframes + 1):
        got = det.frames[f]
        assert got.info.packets_received == got.info.packets_expected
        for s in range(nsubframes):
            np.testing.assert_array_equal(got.raw[s], series.expected(f, s), err_msg=f"frame {f} subframe {s}")


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_geometry_assembles_pixel_exactly(detector, name):
    det = detector(name)
    model = det.model
    content = PATTERN if model.n_modules > 2 else {"kind": "flood", "flux": 300.0}  # flood: noise bank + physics
    series, counters = det.run(3, frame_time=0.01, content=content)
    assert_frames_exact(det, series, 3)
    layout = PacketLayout.for_module(model.module, 8192)
    assert counters.packets_expected == counters.packets_received == 3 * model.n_modules * layout.npackets
    assert (counters.late, counters.duplicate, counters.foreign, counters.malformed, counters.overflow) == (0,) * 5
    assert counters.frames_complete == 3 and counters.efficiency == 1.0
    if content is PATTERN and model.module.counter == "uint16":  # the pattern reaches the DAQ unchanged
        assert det.frames[2].raw[0, 0, 1, 2] == (1 + 2 + 13 * 2) % 4093


def test_roi_4m_of_a_9m_reads_only_the_central_modules(detector):
    det = detector("eiger2-9m", daq_detector="eiger2-9m-roi4m")
    series, counters = det.run(2, frame_time=0.01, content=PATTERN, roi_mode="4M")
    assert_frames_exact(det, series, 2)
    assert counters.frames_complete == 2
    assert sorted(det.daq.data_addresses()) == [3, 4, 6, 7, 9, 10, 12, 13]  # module rows 1-4, columns 0-1
    outside = det.links([0])
    with pytest.raises(ModuleError, match="not read out in roi_mode 4M"):
        outside.broadcast(
            Kind.CONFIGURE,
            count_time=0.009,
            frame_time=0.01,
            nimages=1,
            ntrigger=1,
            trigger_mode=0,
            dest_host="127.0.0.1",
            dest_port=9,
            series_id=99,
            roi_mode="4M",
        )
    outside.close()


def test_subframes_fill_the_slot_subframe_by_subframe(detector):
    det = detector("eiger2-1m", slot_subframes=3)
    series, counters = det.run(2, frame_time=0.02, nsubframes=3, content={"kind": "flood", "flux": 1000.0})
    assert_frames_exact(det, series, 2, nsubframes=3)
    assert det.frames[1].info.nsubframes == 3
    assert not np.array_equal(det.frames[1].raw[0], det.frames[1].raw[1])  # fresh noise per sub-frame
    assert counters.packets_received == 2 * 3 * 2 * 128


def test_series_after_series_on_a_repartitioned_ring(detector):
    """The raw ring re-cut between series (receivers running): 12 single frames, 4 slots of 3 sub-frames (fewer
    slots than images: slots are reused), single frames again; every pixel lands where it belongs."""
    det = detector("eiger2-1m", n_slots=12)
    flood = {"kind": "flood", "flux": 1000.0}
    for nsub, nimages, slots in ((1, 6, 12), (3, 7, 4), (1, 20, 12)):
        assert det.partition(nsub) == slots
        series, counters = det.run(nimages, frame_time=0.01, nsubframes=nsub, content=flood)
        assert_frames_exact(det, series, nimages, nsubframes=nsub)
        assert det.assembler.window == (16 if slots == 12 else 4)
        assert counters.frames_complete == nimages and counters.packets_lost == 0 and counters.overflow == 0


def test_more_subframes_than_the_slots_hold_is_refused(detector):
    det = detector("eiger2-500k")
    with pytest.raises(ValueError, match="nsubframes 2 does not fit"):
        det.assembler.start_series(1, 1, 8192, 0.01, nsubframes=2)


def packet_pixels(layout: PacketLayout, packet: int) -> slice:
    start, stop = layout.packet_pixels(packet)
    return slice(start, stop)


def test_loss_injection_flags_exactly_the_lost_packets(detector):
    det = detector("eiger2-1m", slot_subframes=2)
    drops = {
        0: [[1, 0, 0], [1, 1, 127], [2, 0, 64], [3, 1, 5]],  # (frame, subframe, packet)
        1: [[2, 0, 64], [2, 0, 65]] + [[4, 0, p] for p in range(128)],  # frame 4: module 1 sends nothing of sub 0
    }
    series, counters = det.run(5, frame_time=0.01, nsubframes=2, drops=drops)
    layout = PacketLayout.for_module(det.model.module, 8192)
    lost = {(m, f, s, p) for m, items in drops.items() for f, s, p in items}
    assert sorted(det.frames) == [1, 2, 3, 4, 5]
    for f in range(1, 6):
        got = det.frames[f]
        want_flags = np.zeros((2, 2, layout.npixels), dtype=bool)
        for m, ff, s, p in lost:
            if ff == f:
                want_flags[s, m, packet_pixels(layout, p)] = True
        for s in range(2):
            want = series.expected(f, s).reshape(2, -1)
            raw = got.raw[s].reshape(2, -1)
            np.testing.assert_array_equal(raw != want, want_flags[s], err_msg=f"frame {f} sub {s}")
            assert np.all(raw[want_flags[s]] == 0xFFFF)
        assert got.info.packets_expected - got.info.packets_received == sum(1 for x in lost if x[1] == f)
    assert counters.packets_lost == len(lost) == 4 + 2 + 128
    assert counters.packets_expected == 5 * 2 * 2 * 128
    assert counters.frames_incomplete == 4 and counters.frames_complete == 1
    assert counters.efficiency == pytest.approx(1 - 134 / 2560)
    assert (counters.late, counters.duplicate, counters.foreign, counters.malformed) == (0, 0, 0, 0)


def test_frames_without_a_single_packet_are_handed_on_fully_flagged(detector):
    det = detector("eiger2-500k")
    drops = {0: [[f, p] for f in (2, 4) for p in range(128)]}  # frame 4 is the last one
    series = det.arm(4, frame_time=0.01, drops=drops)
    det.trigger()
    assert det.assembler.wait_frames(3, timeout=5.0)  # frame 2 times out 1 s after frame 3 arrived
    counters = det.finish(4, timeout=0.5)  # the modules took 4 images: the 4th is handed on although nothing came
    assert sorted(det.frames) == [1, 2, 3, 4]
    for f in (2, 4):
        assert det.frames[f].info.packets_received == 0
        assert np.all(det.frames[f].raw == 0xFFFF)
    np.testing.assert_array_equal(det.frames[3].raw[0], series.expected(3))
    assert counters.packets_lost == 256 and counters.frames_incomplete == 2 and counters.frames_lost == 2


class NoFreeSlots(queue.Queue):
    """The free raw slots of a pipeline that is behind: none comes back (slots given back are kept here)."""

    def get(self, block: bool = True, timeout: float | None = None) -> int:
        if block and timeout:
            time.sleep(timeout)
        raise queue.Empty


def test_frames_that_find_no_free_raw_slot_are_dropped_whole_without_stalling_the_receivers(detector):
    det = detector("eiger2-500k", n_slots=8)
    nimages = 40
    det.arm(nimages, frame_time=0.002)
    opened = det.assembler.prestock  # the frames opened ahead at arm hold the only slots the series gets
    det.assembler.free_slots = NoFreeSlots()
    det.trigger()
    # each starved frame once waited 0.5 s for a slot (36 of them: 18 s, while the sockets overflowed); now only
    # the first waits a few frame periods and the rest are dropped at once
    assert det.assembler.wait_frames(nimages, timeout=5.0)
    counters = det.finish(nimages, timeout=5.0)
    assert sorted(det.frames) == list(range(1, nimages + 1))
    dropped = range(opened + 1, nimages + 1)
    assert all(det.frames[f].info.slot == NO_SLOT and det.frames[f].info.packets_received == 0 for f in dropped)
    assert all(det.frames[f].info.packets_received == 128 for f in range(1, opened + 1))
    assert counters.frames_complete == opened and counters.frames_lost == counters.frames_incomplete == len(dropped)
    # every packet of a dropped frame was read from the socket and counted, none lost there
    assert counters.overflow == 128 * len(dropped) and counters.packets_received == 128 * opened


def raw_packet(
    series_id: int,
    frame: int,
    packet: int,
    payload: bytes,
    *,
    module_id: int = 0,
    det_type: int = 0x20,
    subframe: int = 0,
    nsubframes: int = 1,
    version: int = 2,
) -> bytes:
    h = np.zeros((), dtype=HEADER_DTYPE)
    h["frame_number"], h["packet_number"], h["series_id"], h["module_id"] = frame, packet, series_id, module_id
    h["subframe"], h["nsubframes"], h["det_type"], h["version"] = subframe, nsubframes, det_type, version
    return h.tobytes() + payload


def test_late_duplicate_foreign_and_malformed_packets_are_counted_and_dropped(detector):
    det = detector("eiger2-500k")
    # frame 3 waits for its packet 10: nothing newer closes it, only its timeout, here 120 s (the DCU's 1 s ran
    # out before the packets below arrived on a loaded machine); the packet completes it long before that
    series = det.arm(3, frame_time=0.01, drops={0: [[3, 10]]}, share_timeout=120.0)
    det.trigger()
    asm = det.assembler
    e3 = 3 % asm.window
    assert det.wait(lambda: asm.table.frame[e3] == 3 and asm.table.count[e3, 0] == 127)
    sid = det.series_id
    wire = series.expected(3)[0].reshape(-1).view(np.uint8)
    chunk = lambda p: wire[p * 8192 : (p + 1) * 8192].tobytes()  # noqa: E731
    injected = {
        "duplicate": [raw_packet(sid, 3, 0, chunk(0)), raw_packet(sid, 3, 1, chunk(1))],
        "foreign": [
            raw_packet(sid + 1, 3, 10, chunk(10)),  # another series
            raw_packet(sid, 3, 10, chunk(10), module_id=5),  # another module's packet on this port
            raw_packet(sid, 3, 10, chunk(10), det_type=0x21),  # another detector type
            raw_packet(sid, 0, 10, chunk(10)),  # frame 0 does not exist
            raw_packet(sid, 4, 10, chunk(10)),  # beyond the series' 3 images
        ],
        "malformed": [
            b"\x00" * 10,  # shorter than a header
            raw_packet(sid, 3, 10, chunk(10), version=3),
            raw_packet(sid, 3, 10, chunk(10)[:-2]),  # wrong length
            raw_packet(sid, 3, 128, chunk(10)),  # packet number beyond the frame
            raw_packet(sid, 3, 10, chunk(10), subframe=1),  # sub-frame beyond nsubframes
            raw_packet(sid, 3, 10, chunk(10), nsubframes=2),
            b"\x01" * 9100,  # longer than any packet
        ],
    }
    port = det.daq.data_addresses()[0][1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for kind in ("duplicate", "foreign", "malformed"):
            for datagram in injected[kind]:
                s.sendto(datagram, ("127.0.0.1", port))
        assert det.wait(lambda: asm.counters.malformed == 7)
        assert 3 not in det.frames
        s.sendto(raw_packet(sid, 3, 10, chunk(10)), ("127.0.0.1", port))  # the missing packet, out of order
        assert det.wait(lambda: 3 in det.frames)
        s.sendto(raw_packet(sid, 3, 10, chunk(10)), ("127.0.0.1", port))  # once more: now it is late
        s.sendto(raw_packet(sid, 1, 0, chunk(0)), ("127.0.0.1", port))
        assert det.wait(lambda: asm.counters.late == 2)
    counters = det.finish(3)
    assert_frames_exact(det, series, 3)  # frame 3 was completed by the packet that came last
    assert (counters.duplicate, counters.foreign, counters.malformed, counters.late) == (2, 5, 7, 2)
    assert counters.packets_lost == 0 and counters.frames_complete == 3


def test_a_frame_missing_its_last_packets_is_handed_on_after_the_timeout(detector):
    det = detector("eiger2-500k")
    det.arm(2, frame_time=0.01, drops={0: [[2, 127]]})
    det.trigger()
    assert det.assembler.wait_frames(2, timeout=5.0)  # frame 2: no newer frame, closed by the 1 s timeout
    assert det.frames[2].info.packets_received == 127
    counters = det.finish(2)
    assert counters.packets_lost == 1


def test_garbage_between_series_does_not_disturb_the_next_series(detector):
    det = detector("eiger2-500k")
    port = det.daq.data_addresses()[0][1]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for n in (0, 1, 47, 48, 49, 8240, 9000):
            s.sendto(bytes(range(256)) * (n // 256) + bytes(n % 256), ("127.0.0.1", port))
    assert det.wait(lambda: det.assembler.counters.malformed == 7)  # counted while no series runs
    series, counters = det.run(2, frame_time=0.01)
    assert_frames_exact(det, series, 2)
    assert counters.malformed == 0 and counters.foreign == 0  # not charged to the next series


# -- fuzzing ---------------------------------------------------------------------------------------------------------
def _header_like(
    data: bytes, frame: int, packet: int, module_id: int, det_type: int, subframe: int, version: int, length: int
) -> bytes:
    """A datagram shaped like a data packet but of another series (its payload can never be mistaken for data)."""
    return raw_packet(
        10_000 + frame % 7,
        frame,
        packet,
        (data * (length // max(1, len(data)) + 1))[:length],
        module_id=module_id,
        det_type=det_type,
        subframe=subframe,
        version=version,
    )


garbage = st.one_of(
    st.binary(max_size=200),
    st.binary(min_size=8000, max_size=9200),
    st.builds(
        _header_like,
        st.binary(min_size=1, max_size=64),
        st.integers(0, 2**63 - 1),
        st.integers(0, 2**32 - 1),
        st.integers(0, 65535),
        st.integers(0, 255),
        st.integers(0, 65535),
        st.integers(0, 255),
        st.integers(0, 9000),
    ),
)


def test_fuzzed_datagrams_never_stop_the_receiver(detector):
    det = detector("eiger2-500k")
    series = det.arm(4, frame_time=0.01)
    port = det.daq.data_addresses()[0][1]
    sent = 0
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(garbage, min_size=1, max_size=20))
    def throw(datagrams):
        nonlocal sent
        for d in datagrams:
            sock.sendto(d, ("127.0.0.1", port))
        sent += len(datagrams)
        assert det.wait(lambda: sum(getattr(det.assembler.counters, n) for n in ("malformed", "foreign")) == sent)

    throw()
    sock.close()
    det.trigger()  # the receiver still assembles every frame exactly
    counters = det.finish(4)
    assert_frames_exact(det, series, 4)
    assert counters.malformed + counters.foreign == sent
    assert counters.packets_lost == 0 and counters.late == counters.duplicate == 0
