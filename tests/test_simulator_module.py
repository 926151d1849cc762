"""Simulated modules: the config-packet protocol, the four trigger modes, and the packets on the wire."""

from __future__ import annotations

import json
import queue
import socket
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from simulated_detector import SimulatedDetector

from opendcu.geometry import get_model
from opendcu.hardware.config_packet import ConfigPacket, Kind, Status, TriggerMode
from opendcu.hardware.counters import encode_counts
from opendcu.hardware.module_driver import ModuleError
from opendcu.hardware.udp_io import SO_RCVBUFFORCE
from opendcu.hardware.udp_packet import HEADER_SIZE, PacketLayout, unpack_headers
from opendcu.simulator.module import SimulatedModule
from opendcu.simulator.physics import ModuleRenderer
from opendcu.simulator.scenes import make_scene


class Wire:
    """One simulated module talked to by hand: config packets out, data packets caught on a plain socket."""

    def __init__(self, detector: str, index: int = 0):
        self.model = get_model(detector)
        self.module = SimulatedModule(self.model, index)
        self.stop = threading.Event()
        threading.Thread(target=self.module.serve, args=(self.stop,), daemon=True).start()
        self.control = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.control.settimeout(10)
        self.data = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:  # beyond net.core.rmem_max where the tests may (CAP_NET_ADMIN), as the DAQ's receivers do
            self.data.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 16 << 20)
        except PermissionError:
            self.data.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 << 20)
        self.data.bind(("127.0.0.1", 0))
        self.data.settimeout(0.2)
        self.seq = 0
        # a thread drains the socket from the start: on a loaded machine the test's own thread may wait for a core
        # while a module sends a frame (a CI run lost packets that way)
        self.received: queue.Queue[bytes] = queue.Queue()
        self._drain = threading.Thread(target=self._drain_socket, daemon=True)
        self._drain.start()

    def request(self, kind: Kind, seq: int | None = None, **fields) -> ConfigPacket:
        if seq is None:
            self.seq += 1
            seq = self.seq
        self.control.sendto(ConfigPacket(kind, seq, fields=fields).encode(), ("127.0.0.1", self.module.config_port))
        return ConfigPacket.decode(self.control.recvfrom(65536)[0])

    def configure(self, **fields) -> ConfigPacket:
        base = dict(
            count_time=0.004,
            frame_time=0.005,
            nimages=1,
            ntrigger=1,
            trigger_mode=TriggerMode.INTS,
            dest_host="127.0.0.1",
            dest_port=self.data.getsockname()[1],
            series_id=3,
            seed=11,
        )
        return self.request(Kind.CONFIGURE, **{**base, **fields})

    def _drain_socket(self) -> None:
        while not self.stop.is_set():
            try:
                self.received.put(self.data.recv(65536))
            except TimeoutError:
                continue
            except OSError:  # closed
                return

    def packets(self, n: int, timeout: float = 10) -> list[bytes]:
        """The next `n` data packets; TimeoutError if one has not come within `timeout` s."""
        try:
            return [self.received.get(timeout=timeout) for _ in range(n)]
        except queue.Empty:
            raise TimeoutError(f"fewer than {n} data packets came") from None

    def close(self) -> None:
        self.stop.set()
        self._drain.join(5)
        self.module.close()
        self.control.close()
        self.data.close()


@pytest.fixture
def wire():
    made: list[Wire] = []

    def make(*args) -> Wire:
        made.append(Wire(*args))
        return made[-1]

    yield make
    for w in made:
        w.close()


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"count_time": 0.01, "frame_time": 0.005}, "count_time <= frame_time"),
        ({"nimages": 0}, "nimages and ntrigger"),
        ({"trigger_mode": 9}, "unknown trigger mode"),
        ({"payload_size": 1001}, "multiple of 8"),
        ({"payload_size": 9600}, "multiple of 8 in"),
        ({"nsubframes": 0}, "nsubframes"),
        ({"content": '{"kind": "hologram"}'}, "unknown scene kind"),
        ({"content": '{"kind": "flood", "flux": -1}'}, "flux"),
        ({"content": '{"kind": "flood", "colour": 3}'}, "bad parameters"),
        ({"drop_packets": "[[1]]"}, "drop_packets"),
        ({"roi_mode": "4M"}, "no roi_mode"),
    ],
)
def test_bad_configurations_are_refused_with_a_reason(wire, fields, message):
    w = wire("eiger2-500k")
    ack = w.configure(**fields)
    assert ack.status == Status.ERROR and message in ack.fields["message"]
    assert w.configure().status == Status.OK  # and the module still works


def test_missing_fields_and_triggers_out_of_turn_are_refused(wire):
    w = wire("eiger2-500k")
    ack = w.request(Kind.CONFIGURE, count_time=0.1)
    assert ack.status == Status.ERROR and "missing config fields" in ack.fields["message"]
    assert w.request(Kind.TRIGGER).fields["message"] == "trigger while idle"
    w.configure(trigger_mode=TriggerMode.EXTS)
    assert "not accepted in trigger mode exts" in w.request(Kind.TRIGGER).fields["message"]
    w.configure(trigger_mode=TriggerMode.INTS)
    assert "not accepted in trigger mode ints" in w.request(Kind.EXT_TRIGGER).fields["message"]


def test_a_retried_request_is_answered_again_but_not_redone(wire):
    w = wire("eiger2-500k")
    w.configure(ntrigger=2)
    first = w.request(Kind.TRIGGER, seq=50)
    again = w.request(Kind.TRIGGER, seq=50)  # e.g. the acknowledgement got lost and the DCU asked again
    assert first == again and first.status == Status.OK
    w.packets(128)
    with pytest.raises(TimeoutError):
        w.packets(1, timeout=0.5)  # only one image: the repeated trigger was not taken twice
    assert w.request(Kind.STATUS).fields["frames_sent"] == 1


def test_packets_carry_the_sls_style_header_and_the_frame(wire):
    w = wire("eiger2-1m", 1)  # module 1 of a 1M: row 1, column 0
    # frames 0.1 s apart: one 4 MiB frame at a time in the socket buffer, not both at once
    w.configure(nimages=2, trigger_mode=TriggerMode.EXTS, nsubframes=2, count_time=0.003, frame_time=0.1)
    assert w.request(Kind.EXT_TRIGGER).status == Status.OK
    datagrams = w.packets(2 * 2 * 128)
    headers = np.concatenate([unpack_headers(d[:HEADER_SIZE]) for d in datagrams])
    assert set(headers["version"]) == {2} and set(headers["det_type"]) == {0x20}
    assert set(headers["module_id"]) == {1} and set(headers["row"]) == {1} and set(headers["column"]) == {0}
    assert set(headers["series_id"]) == {3} and set(headers["nsubframes"]) == {2}
    assert set(headers["exp_length"]) == {30000}  # 3 ms in 0.1 us
    assert set(headers["flags"]) == {1 << 31}  # external trigger input
    order = list(zip(headers["frame_number"], headers["subframe"], headers["packet_number"], strict=True))
    assert order == [(f, s, p) for f in (1, 2) for s in (0, 1) for p in range(128)]
    assert np.all(np.diff(headers["timestamp"].astype(np.int64)) >= 0)
    scene = make_scene(w.model, 11, None)
    renderer = ModuleRenderer(scene, w.model, 1, 11, 0.003, 2)
    for i, (f, s) in enumerate([(1, 0), (1, 1), (2, 0), (2, 1)]):
        payload = b"".join(d[HEADER_SIZE:] for d in datagrams[i * 128 : (i + 1) * 128])
        assert payload == encode_counts(renderer.render(f, s), "uint16").tobytes()


def test_fast_module_packs_two_12_bit_pixels_in_three_bytes(wire):
    w = wire("fastasic")
    w.configure(content=json.dumps({"kind": "pattern"}))
    w.request(Kind.TRIGGER)
    layout = PacketLayout.for_module(w.model.module, 8192)
    datagrams = w.packets(layout.npackets)
    assert [len(d) - HEADER_SIZE for d in datagrams] == [layout.packet_bytes(p) for p in range(layout.npackets)]
    assert layout.pixels_per_packet == 5460 and layout.npackets == 7  # 8192 // 3 * 2 pixels per packet
    first = np.frombuffer(datagrams[0][HEADER_SIZE : HEADER_SIZE + 3], dtype=np.uint8)
    a, b = 13, 14  # pattern: (r + c + 13 f) for frame 1 at pixels (0, 0) and (0, 1)
    assert list(first) == [a & 0xFF, (a >> 8) | ((b & 0xF) << 4), b >> 4]


def test_stop_aborts_and_reports_the_images_sent(wire):
    w = wire("eiger2-500k")
    w.configure(nimages=100000, frame_time=0.002, count_time=0.001)
    w.request(Kind.TRIGGER)
    w.packets(5 * 128)
    ack = w.request(Kind.STOP)
    assert ack.fields["state"] == "idle" and 5 <= ack.fields["frames_sent"] < 100000
    assert w.request(Kind.STATUS).fields["state"] == "idle"


# -- trigger modes through the DAQ ---------------------------------------------------------------------------------
@pytest.fixture
def detector():
    det = SimulatedDetector("eiger2-500k")
    yield det
    det.close()


def frames_exact(det, series, count_times=None):
    for f, got in det.frames.items():
        ct = None if count_times is None else count_times[f - 1]
        np.testing.assert_array_equal(got.raw[0], series.expected(f, 0, ct), err_msg=f"frame {f}")


def test_ints_takes_nimages_per_software_trigger(detector):
    series = detector.arm(2, ntrigger=2, frame_time=0.005)
    detector.trigger()
    assert detector.assembler.wait_frames(2, 10)
    detector.trigger()
    counters = detector.finish(4)
    assert sorted(detector.frames) == [1, 2, 3, 4] and counters.frames_complete == 4
    frames_exact(detector, series)
    with pytest.raises(ModuleError, match="trigger while idle"):  # the series is over
        detector.trigger()


def test_inte_takes_one_image_per_trigger_with_its_count_time(detector):
    series = detector.arm(
        1,
        trigger_mode="inte",
        ntrigger=3,
        frame_time=0.01,
        count_time=0.004,
        content={"kind": "flood", "flux": 20000.0},
    )
    times = [0.002, 0.004, 0.02]
    for t in times:
        detector.trigger(trigger_count_time=t)
    counters = detector.finish(3)
    assert counters.frames_complete == 3
    frames_exact(detector, series, times)
    means = [detector.frames[f].raw.mean() for f in (1, 2, 3)]
    assert means[0] == pytest.approx(40, rel=0.05) and means[2] == pytest.approx(400, rel=0.05)


def test_exts_takes_nimages_per_external_edge(detector):
    series = detector.arm(3, trigger_mode="exts", ntrigger=2, frame_time=0.005)
    with pytest.raises(ModuleError, match="TRIGGER not accepted in trigger mode exts"):
        detector.trigger()
    detector.trigger(external=True)
    detector.trigger(external=True)  # a second edge while the first is still exposing: queued, not lost
    with pytest.raises(ModuleError, match="all 2 triggers of the series were received"):
        detector.trigger(external=True)
    counters = detector.finish(6)
    assert sorted(detector.frames) == list(range(1, 7)) and counters.frames_complete == 6
    frames_exact(detector, series)


def test_exte_takes_one_image_per_gate_of_the_gate_length(detector):
    series = detector.arm(1, trigger_mode="exte", ntrigger=2, frame_time=0.01, count_time=0.004)
    gates = [0.003, 0.007]
    for g in gates:
        detector.trigger(external=True, trigger_count_time=g)
    counters = detector.finish(2)
    assert counters.frames_complete == 2
    frames_exact(detector, series, gates)


config_values = st.fixed_dictionaries(
    {},
    optional={
        "count_time": st.floats(allow_nan=True, allow_infinity=True),
        "frame_time": st.floats(allow_nan=True, allow_infinity=True),
        "nimages": st.integers(0, 2**32 - 1),
        "ntrigger": st.integers(0, 2**32 - 1),
        "trigger_mode": st.integers(0, 255),
        "dest_host": st.sampled_from(
            ["127.0.0.1", "", "localhost", "no-such-host.invalid", "999.1.1.1", "::1", "\x00"]
        ),
        "dest_port": st.sampled_from([0, 9]),  # port 0 is refused; 9 (discard) has no listener on loopback
        "payload_size": st.integers(0, 65535),
        "series_id": st.integers(0, 2**64 - 1),
        "nsubframes": st.integers(0, 65535),
        "content": st.text(max_size=60),
        "drop_packets": st.text(max_size=30),
        "roi_mode": st.text(max_size=8),
        "test_pattern": st.integers(0, 255),
    },
)


def test_fuzzed_configurations_always_get_an_answer(wire):
    w = wire("pilatus4-260k")

    @settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from([Kind.CONFIGURE, Kind.TRIGGER, Kind.EXT_TRIGGER, Kind.STATUS]), config_values)
    def throw(kind, fields):
        ack = w.request(kind, **fields)
        assert ack.is_ack and ack.status in (Status.OK, Status.ERROR)
        if ack.status == Status.ERROR:
            assert ack.fields["message"]
        w.request(Kind.STOP)

    throw()
    assert w.configure().status == Status.OK  # still serving


def test_a_scene_that_fails_to_render_leaves_the_module_reachable(wire, monkeypatch):
    w = wire("eiger2-500k")
    w.configure(content=json.dumps({"kind": "pattern"}))

    def broken(*args, **kwargs):
        raise RuntimeError("scene exploded")

    monkeypatch.setattr(w.module.renderer, "render", broken)
    w.request(Kind.TRIGGER)
    assert w.module._acq is not None
    w.module._acq.join(5)
    status = w.request(Kind.STATUS).fields
    assert status["state"] == "error" and "scene exploded" in status["message"]
    assert w.configure().status == Status.OK  # a new arm recovers


def test_the_scene_is_the_simulators_own_and_the_dcu_sends_only_the_experiment():
    model = get_model("eiger2-500k")
    module = SimulatedModule(model, 0, scene={"kind": "flood", "flux": 5.0})
    try:
        experiment = {"wavelength_a": 1.2, "distance_m": 0.15, "count_time_s": 0.01}
        spec = module._scene_spec({"experiment": json.dumps(experiment)})
        assert spec == {"kind": "flood", "flux": 5.0, "experiment": experiment}
        # a test harness may still send a scene of its own; the experiment fields still apply
        spec = module._scene_spec(
            {
                "content": json.dumps({"kind": "flood", "flux": 1.0, "experiment": {"seed": 3}}),
                "experiment": json.dumps(experiment),
            }
        )
        assert spec == {"kind": "flood", "flux": 1.0, "experiment": {"seed": 3, **experiment}}
        assert module._scene_spec({"test_pattern": 1, "experiment": json.dumps(experiment)}) == {"kind": "pattern"}
        with pytest.raises(ValueError, match="experiment is not JSON"):
            module._scene_spec({"experiment": "{"})
    finally:
        module.close()
    default = SimulatedModule(model, 1)
    assert default.scene == {"kind": "flood", "flux": 2.0}  # without --scene: a flood
    default.close()


def _send_on_clock(behind_ns: int, period_ns: int, nframes: int = 6) -> tuple[np.ndarray, int]:
    """Send `nframes` frames with a DataSender whose frame clock started `behind_ns` ago; return the send times
    of the frames (ns, CLOCK_MONOTONIC, read back from their header timestamps) and when sending began."""
    from opendcu.simulator.sender import DataSender

    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # 6 frames of 7 packets of 8 KiB, unread
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(5)
    model = get_model("fastasic")
    layout = PacketLayout.for_module(model.module, 8192)
    sender = DataSender("127.0.0.1")
    try:
        sender.configure(rx.getsockname(), layout, series_id=1, module_id=0, position=(0, 0), det_type=1, nsubframes=1)
        t0 = time.monotonic_ns()
        sender.start_clock(t0)
        bank = np.zeros((1, layout.frame_bytes), dtype=np.uint8)
        sent = sender.send(
            bank,
            1,
            nframes,
            cyclic=True,
            first_due_ns=t0 - behind_ns,
            period_ns=period_ns,
            count_time=0.001,
            external=False,
        )
        assert sent == nframes
        headers = np.concatenate(
            [unpack_headers(rx.recv(65536)[:HEADER_SIZE]) for _ in range(nframes * layout.npackets)]
        )
    finally:
        sender.close()
        rx.close()
    first = headers[headers["packet_number"] == 0]
    assert list(first["frame_number"]) == list(range(1, nframes + 1))
    return t0 + first["timestamp"].astype(np.int64) * 100, t0


def test_a_module_behind_its_frame_clock_catches_up_within_the_lag_and_re_anchors_beyond_it():
    """The sender's frame clock is absolute: a sleep's overshoot is made up by the next images (the old rule,
    never two images closer than a period, made every overshoot permanent: 1.4 kHz for 2 kHz asked). A module
    more than the lag behind re-anchors its clock and does not burst."""
    from opendcu.simulator.sender import MAX_LAG_NS

    period = 20_000_000  # 20 ms: far above a sleep's overshoot, so what is asserted is order, not timing
    behind = 30_000_000  # frames 1 and 2 are overdue; the lag allowed (2 periods = 40 ms) is not exceeded
    assert MAX_LAG_NS <= 2 * period
    times, t0 = _send_on_clock(behind, period)
    due = t0 - behind + period * np.arange(len(times))
    assert np.all(times >= due - 100)  # never before its time on the clock (timestamps count 100 ns)
    assert times[1] - times[0] < period  # overdue: sent at once, back to back
    # far behind (5 periods, beyond the lag): the clock re-anchors at the first frame; none comes sooner after it
    # than its periods on the new clock (a late one is made up by the next, as above)
    times, _ = _send_on_clock(5 * period, period)
    assert np.all(times - times[0] >= period * np.arange(len(times)) - 100)
