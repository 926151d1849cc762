"""The Stream interface over real ZeroMQ sockets on loopback: V1 and V2 message sequences, header details,
appendices, the annotations hook, and `dropped` when nobody pulls."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import zmq
from series_factory import ImageSource, make_pixels, make_series

from opendcu.app_detector.imagemux import ImageMux
from opendcu.app_detector.interfaces.stream.decoder import decode_v1, decode_v2
from opendcu.app_detector.interfaces.stream.stream import Stream


@pytest.fixture
def stream():
    s = Stream("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", control_timeout_ms=300)
    s.subsystem.values["mode"] = "enabled"
    yield s
    s.close()


def pull(endpoint: str, rcvhwm: int = 1000, rcvbuf: int = -1) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.PULL)
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    sock.setsockopt(zmq.RCVHWM, rcvhwm)
    sock.setsockopt(zmq.RCVBUF, rcvbuf)  # a small kernel buffer makes a stalled consumer stall at once
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def run_series(stream: Stream, series, n: int, annotate: bool = False) -> None:
    mux = ImageMux()
    mux.attach(stream)
    source = ImageSource(series, n_slots=4)
    try:
        mux.start_series(series)
        for i in range(n):
            image = source.image(i)
            if annotate:
                image.annotations["spots"] = {"count": i, "xy": [[1.5, 2.5]]}
            mux.publish(image)
        mux.end_series(series)
        assert source.all_free()
    finally:
        source.close()


def test_v2_series_start_images_end(stream: Stream, tmp_path: Path):
    stream.subsystem.values.update(
        format="cbor", header_detail="all", header_appendix={"acq": "x1"}, image_appendix=[1, "💙"]
    )
    sock = pull(stream.endpoints["cbor"])
    series = make_series(series_id=7, nimages=3)
    run_series(stream, series, 3, annotate=True)
    raw = [sock.recv() for _ in range(5)]
    messages = [decode_v2(m) for m in raw]
    assert [m["type"] for m in messages] == ["start", "image", "image", "image", "end"]
    assert {m["series_id"] for m in messages} == {7}
    assert {m["series_unique_id"] for m in messages} == {series.unique_id}
    start = messages[0]
    assert list(start)[:3] == ["type", "series_id", "series_unique_id"]
    assert list(start)[3:] == sorted(list(start)[3:])
    assert start["number_of_images"] == 3 and start["image_size_x"] == 1028 and start["image_size_y"] == 512
    assert start["image_dtype"] == "uint16" and start["user_data"] == {"acq": "x1"}
    assert set(start["goniometer"]) == {"chi", "kappa", "omega", "phi", "two_theta"}
    assert start["goniometer"]["omega"] == {"increment": 0.5, "start": 10.0}
    assert np.array_equal(start["pixel_mask"]["threshold_1"], series.pixel_mask)
    assert start["flatfield"]["threshold_1"].dtype == np.float32
    for i, m in enumerate(messages[1:4]):
        keys = list(m)
        assert keys[:10] == [
            "type",
            "series_id",
            "series_unique_id",
            "image_id",
            "real_time",
            "series_date",
            "start_time",
            "stop_time",
            "user_data",
            "data",
        ]
        assert keys[10:] == ["spots"] and m["spots"] == {"count": i, "xy": [[1.5, 2.5]]}  # the annotations hook
        assert m["image_id"] == i and m["user_data"] == [1, "💙"]
        assert m["start_time"] == [round(i * 0.01 * 50e6), 50_000_000] and m["real_time"] == [450_000, 50_000_000]
        np.testing.assert_array_equal(m["data"]["threshold_1"], make_pixels(series, i))
    assert stream.dropped == 0 and stream.state == "ready"
    for i, m in enumerate(raw):
        (tmp_path / f"{i:06d}.cbor").write_bytes(m)
    sock.close()


def test_dectris_recipe_decoder_reads_our_messages(
    stream: Stream, tmp_path: Path, clients_python: Path, shared_dir: Path
):
    """clients/s2decode.py (cbor2 + dectris-compression, the DECTRIS recipe) on a whole series of ours."""
    stream.subsystem.values.update(format="cbor", header_detail="all")
    sock = pull(stream.endpoints["cbor"])
    series = make_series(series_id=2, nimages=2)
    run_series(stream, series, 2, annotate=True)
    files = []
    for i in range(4):
        files.append(tmp_path / f"{i:06d}.cbor")
        files[-1].write_bytes(sock.recv())
    out = subprocess.run(
        [str(clients_python), str(shared_dir / "clients" / "s2decode.py"), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    sums = [int(line.split("sum=")[1].split()[0]) for line in out.stdout.splitlines() if "sum=" in line]
    assert sums == [int(make_pixels(series, i).sum(dtype=np.uint64)) for i in range(2)]
    assert out.stdout.count("type=image") == 2 and "type=start" in out.stdout and "type=end" in out.stdout
    sock.close()


def test_v1_series_parts_hash_and_pixels(stream: Stream):
    stream.subsystem.values.update(format="legacy", header_detail="all", header_appendix="hdr", image_appendix="img")
    sock = pull(stream.endpoints["legacy"])
    series = make_series(series_id=4, nimages=2)
    run_series(stream, series, 2)
    header = sock.recv_multipart()
    assert len(header) == 9  # dheader, config, flatfield x2, pixel mask x2, countrate table x2, appendix
    h = decode_v1(header)
    assert h["htype"] == "dheader-1.0" and h["series"] == 4 and h["header_detail"] == "all"
    for key in (
        "ntrigger",
        "nimages",
        "trigger_mode",
        "x_pixels_in_detector",
        "y_pixels_in_detector",
        "bit_depth_image",
    ):
        assert key in h["config"]
    assert h["config"]["pixel_mask_applied"] is True
    assert np.array_equal(h["pixel_mask"], series.pixel_mask) and h["appendix"] == b"hdr"
    assert json.loads(header[4]) == {"htype": "dpixelmask-1.0", "shape": [1028, 512], "type": "uint32"}
    for i in range(2):
        parts = sock.recv_multipart()
        assert len(parts) == 5
        m = decode_v1(parts)
        assert m["frame"] == i and m["series"] == 4
        assert m["hash"] == hashlib.md5(parts[1]).hexdigest()
        assert m["image_desc"]["encoding"] == "bs16-lz4<" and m["image_desc"]["shape"] == [1028, 512]
        assert parts[2][:12] == (512 * 1028 * 2).to_bytes(8, "big") + (8192).to_bytes(4, "big")
        assert m["dconfig"] == {
            "htype": "dconfig-1.0",
            "start_time": i * 10_000_000,
            "stop_time": i * 10_000_000 + 9_000_000,
            "real_time": 9_000_000,
        }
        np.testing.assert_array_equal(m["data"], make_pixels(series, i))
        assert m["appendix"] == b"img"
    assert json.loads(sock.recv_multipart()[0]) == {"htype": "dseries_end-1.0", "series": 4}
    sock.close()


def test_images_nobody_pulls_are_dropped_and_counted(stream: Stream):
    stream.subsystem.values.update(format="cbor")
    series = make_series(series_id=1, nimages=5)
    run_series(stream, series, 5)  # no consumer connected at all
    assert stream.dropped == 5
    # a stalled consumer: what it does not take is dropped; what it took plus what was dropped is everything
    stalled = Stream("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", sndhwm=2, control_timeout_ms=300)
    stalled.subsystem.values.update(mode="enabled", format="cbor")
    sock = pull(stalled.endpoints["cbor"], rcvhwm=2, rcvbuf=4096)
    try:
        series = make_series(series_id=2, nimages=60)
        run_series(stalled, series, 60)  # returns once the images are handled; the end message waits for room
        received = []
        sock.setsockopt(zmq.RCVTIMEO, 3000)
        try:
            while not received or received[-1]["type"] != "end":
                received.append(decode_v2(sock.recv()))
        except zmq.Again:
            pass
        images = [m["image_id"] for m in received if m["type"] == "image"]
        assert images == sorted(images)
        assert stalled.dropped > 0 and len(images) + stalled.dropped == 60
        assert [m["type"] for m in received if m["type"] != "image"] == ["start", "end"]
        # dropped counts per series: reset at the next arm
        run_series(stalled, make_series(series_id=3, nimages=1), 0)
        assert stalled.dropped == 0
    finally:
        sock.close()
        stalled.close()


def test_a_slow_consumer_with_rcvhwm_1_gets_start_and_end(stream: Stream):
    """Only image messages may be dropped: a consumer with a receive high-water mark of 1, stalled, then slow, gets
    the start message, some images (the others counted as dropped) and the end message."""
    slow = Stream("tcp://127.0.0.1:*", "tcp://127.0.0.1:*", sndhwm=4, control_timeout_ms=300)
    slow.subsystem.values.update(mode="enabled", format="cbor")
    sock = pull(slow.endpoints["cbor"], rcvhwm=1, rcvbuf=4096)
    received: list[dict] = []
    try:
        time.sleep(0.3)  # connected before arm
        run_series(slow, make_series(series_id=7, nimages=100), 100)  # the consumer stalled meanwhile
        sock.setsockopt(zmq.RCVTIMEO, 10000)
        try:  # then slow
            while not received or received[-1]["type"] != "end":
                received.append(decode_v2(sock.recv()))
                time.sleep(0.05)
        except zmq.Again:
            pass
        kinds = [m["type"] for m in received]
        images = [m["image_id"] for m in received if m["type"] == "image"]
        assert kinds[0] == "start" and kinds[-1] == "end" and kinds.count("start") == kinds.count("end") == 1
        assert slow.dropped > 0 and len(images) + slow.dropped == 100
        assert images == sorted(images)
    finally:
        sock.close()
        slow.close()
