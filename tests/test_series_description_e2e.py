"""What describes a series follows the detector's settings, through the real server (`dcu serve`):
- the factory flatfield follows the photon energy (spec/simplon-api.md §14) and lands in the next master;
- with 2x2 binning the beam centre of files and streams is in image pixels (the same physical point);
- with the 8-bit float counter the master, the stream v2 start message and the stream v1 header carry the
  decode table, and the third-party stream clients still consume such a series."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
import zmq
from calibration_truth import install_truth_set
from calibration_truth import true_calibration as calibration_for
from conftest import DcuServer, start_dcu

from opendcu.app_detector.interfaces.stream.decoder import decode_v1, decode_v2
from opendcu.base.rest.responses import darray, darray_to_array
from opendcu.codecs.float8 import ENCODE_TABLE, FLOAT8_MAX, Float8E3M5

pytestmark = pytest.mark.integration
D = "/detector/api/1.8.0"
DETECTOR = "eiger2-500k"
SCENE = {"kind": "powder", "calibrant": "LaB6", "ring_flux": 400.0}
SPECIFIC = "/entry/instrument/detector/detectorSpecific"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> DcuServer:
    root = tmp_path_factory.mktemp("dcu")
    install_truth_set(root / "calibration", DETECTOR, (8000.0, 20000.0))  # a calibration set to follow the energies
    dcu = start_dcu(
        root, detector=DETECTOR, extra=["--scene", json.dumps(SCENE), "--calibration-dir", str(root / "calibration")]
    )
    with dcu.client() as http:
        assert http.put(f"{D}/command/initialize").status_code == 200
        configure(http, "filewriter", mode="enabled", name_pattern="series_$id")
        configure(http, "stream", mode="enabled", format="cbor", header_detail="basic")
    yield dcu
    dcu.stop()


def configure(http, module: str, **values) -> list[str]:
    changes: list[str] = []
    for key, value in values.items():
        r = http.put(f"/{module}/api/1.8.0/config/{key}", json={"value": value})
        assert r.status_code == 200, (key, r.text)
        changes += r.json()
    return changes


def stream_socket(port: int) -> zmq.Socket:
    socket = zmq.Context.instance().socket(zmq.PULL)
    socket.setsockopt(zmq.RCVTIMEO, 30_000)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(f"tcp://127.0.0.1:{port}")
    return socket


def acquire_v2(server: DcuServer, http, nimages: int) -> tuple[int, list[dict]]:
    """One series (ints); returns its id and its decoded stream v2 messages (start ... end)."""
    configure(http, "detector", nimages=nimages, ntrigger=1, trigger_mode="ints", frame_time=0.1, count_time=0.09)
    socket = stream_socket(server.stream_v2_port)
    try:
        series_id = http.put(f"{D}/command/arm").json()["sequence id"]
        assert http.put(f"{D}/command/trigger").status_code == 200
        messages = [decode_v2(socket.recv())]
        while messages[-1]["type"] != "end":
            messages.append(decode_v2(socket.recv()))
    finally:
        socket.close()
    assert [m["type"] for m in messages] == ["start", *["image"] * nimages, "end"]
    assert all(m["series_id"] == series_id for m in messages)
    return series_id, messages


def master(server: DcuServer, series_id: int) -> h5py.File:
    return h5py.File(server.data_dir / f"series_{series_id}_master.h5", "r")


def get_array(http, key: str) -> np.ndarray:
    r = http.get(f"{D}/config/{key}")
    assert r.status_code == 200, r.text
    return darray_to_array(r.json()["value"])


# -- B1: the flatfield follows the energies --------------------------------------------------------------------------
def test_an_energy_change_loads_the_factory_flatfield_of_the_new_energy(server: DcuServer) -> None:
    with server.client() as http:
        configure(http, "detector", photon_energy=8000.0)
        np.testing.assert_array_equal(get_array(http, "flatfield"), calibration_for(DETECTOR, 8000.0, 4000.0).flatfield)
        custom = np.full(get_array(http, "flatfield").shape, 1.25, dtype=np.float32)
        assert http.put(f"{D}/config/flatfield", json={"value": darray(custom)}).status_code == 200
        np.testing.assert_array_equal(get_array(http, "flatfield"), custom)

        changes = configure(http, "detector", photon_energy=20000.0)
        assert {"flatfield", "threshold/1/flatfield", "photon_energy", "threshold_energy"} <= set(changes)
        factory = calibration_for(DETECTOR, 20000.0, 10000.0).flatfield
        served = get_array(http, "flatfield")
        np.testing.assert_array_equal(served, factory)  # the custom flatfield is replaced
        assert not np.array_equal(served, calibration_for(DETECTOR, 8000.0, 4000.0).flatfield)

        series_id, _ = acquire_v2(server, http, 1)
        with master(server, series_id) as f:
            np.testing.assert_array_equal(f[f"{SPECIFIC}/flatfield"][()], factory)
            assert f["/entry/instrument/beam/incident_wavelength"][()] == pytest.approx(12398.42 / 20000.0, rel=1e-4)


# -- B2: 2x2 binning and the beam centre ------------------------------------------------------------------------------
def ring_centre(image: np.ndarray, valid_below: int, centre: tuple[float, float], radius: float) -> tuple[float, float]:
    """Centre of the brightest ring near `radius` around the guess `centre`: an intensity-weighted algebraic
    circle fit (x^2 + y^2 + a x + b y + c = 0) over the ring's pixels above the background."""
    y, x = np.indices(image.shape) + 0.5  # pixel centres; pixel i spans [i, i + 1)
    r = np.hypot(x - centre[0], y - centre[1])
    near = (np.abs(r - radius) < 0.04 * radius) & (image < valid_below)
    background = np.median(image[near])
    weight = np.clip(image - background, 0, None) * near
    weight = np.where(weight > 0.5 * weight.max(), weight, 0.0).ravel()
    xs, ys = x.ravel(), y.ravel()
    a = np.column_stack([xs, ys, np.ones_like(xs)]) * weight[:, None]
    solution, *_ = np.linalg.lstsq(a, -(xs * xs + ys * ys) * weight, rcond=None)
    return -solution[0] / 2, -solution[1] / 2


def test_binning_gives_the_beam_centre_in_image_pixels_at_the_same_physical_point(server: DcuServer) -> None:
    bx, by, distance, wavelength = 600.3, 290.7, 0.09, 1.0
    with server.client() as http:
        configure(
            http,
            "detector",
            binning_2x2_applied=False,
            beam_center_x=bx,
            beam_center_y=by,
            detector_distance=distance,
            wavelength=wavelength,
        )
        translation = http.get(f"{D}/config/detector_translation").json()["value"]
        unbinned, plain_messages = acquire_v2(server, http, 1)
        configure(http, "detector", binning_2x2_applied=True)
        assert http.get(f"{D}/config/beam_center_x").json()["value"] == bx  # the user's value, detector pixels
        assert http.get(f"{D}/config/detector_translation").json()["value"] == pytest.approx(translation, abs=1e-12)
        binned, messages = acquire_v2(server, http, 1)
        configure(http, "detector", binning_2x2_applied=False)
    start = messages[0]
    assert start["beam_center_x"] == pytest.approx(bx / 2) and start["beam_center_y"] == pytest.approx(by / 2)
    assert start["pixel_size_x"] == pytest.approx(150e-6) and start["pixel_size_y"] == pytest.approx(150e-6)
    assert start["detector_translation"] == pytest.approx(plain_messages[0]["detector_translation"], rel=1e-9)
    assert plain_messages[0]["beam_center_x"] == pytest.approx(bx)
    det = "/entry/instrument/detector"
    with master(server, unbinned) as plain, master(server, binned) as half:
        assert plain[f"{det}/beam_center_x"][()] == pytest.approx(bx) and plain[f"{det}/x_pixel_size"][()] == 75e-6
        assert half[f"{det}/beam_center_x"][()] == pytest.approx(bx / 2)
        assert half[f"{det}/beam_center_y"][()] == pytest.approx(by / 2)
        assert half[f"{det}/x_pixel_size"][()] == pytest.approx(150e-6)
        assert half[f"{det}/y_pixel_size"][()] == pytest.approx(150e-6)
        for path in (f"{det}/geometry/translation/distances", f"{det}/module/module_offset"):
            vector = half[path][()] if path.endswith("distances") else half[path].attrs["offset"]
            reference = plain[path][()] if path.endswith("distances") else plain[path].attrs["offset"]
            np.testing.assert_allclose(vector, reference, rtol=1e-6)
        image = half["/entry/data/data_000001"][0]
        top = int(np.iinfo(image.dtype).max)
    # the simulated rings are centred on the user's beam centre (detector pixels): in the binned image at half
    first_ring = distance * np.tan(2 * np.arcsin(wavelength / (2 * 4.15683))) / 150e-6
    cx, cy = ring_centre(image.astype(np.float64), top, (bx / 2, by / 2), first_ring)
    assert abs(cx - bx / 2) < 0.3 and abs(cy - by / 2) < 0.3, (cx, cy)


# -- B3: the 8-bit float counter describes itself ---------------------------------------------------------------------
def test_float8_series_carry_their_decode_table(server: DcuServer, clients_python: Path, shared_dir: Path) -> None:
    codec = Float8E3M5()
    with server.client() as http:
        configure(http, "detector", float8_encoding_applied=True)
        try:
            series_id, messages = acquire_v2(server, http, 2)
            # stream v1: the header config carries the same table (JSON)
            configure(http, "stream", format="legacy")
            v1 = stream_socket(server.stream_v1_port)
            try:
                v1_series = http.put(f"{D}/command/arm").json()["sequence id"]
                assert http.put(f"{D}/command/trigger").status_code == 200
                header = decode_v1(v1.recv_multipart())
                while json.loads(v1.recv_multipart()[0])["htype"] != "dseries_end-1.0":
                    pass
            finally:
                v1.close()
                configure(http, "stream", format="cbor")
            # the third-party consumers take such a series as any other
            for script, port in (
                ("stream2_consume.py", server.stream_v2_port),
                ("libertem_stream1_smoke.py", server.stream_v1_port),
            ):
                out = subprocess.run(
                    [
                        str(clients_python),
                        str(shared_dir / "clients" / script),
                        "127.0.0.1",
                        str(server.port),
                        *(["2"] if script.startswith("stream2") else []),
                        str(port),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=120,
                )
                assert out.returncode == 0, script + out.stdout + out.stderr
        finally:
            configure(http, "detector", float8_encoding_applied=False)
            configure(http, "stream", format="cbor", header_detail="basic")

    with master(server, series_id) as f:
        table_ds = f[f"{SPECIFIC}/float8_decode_lookup_table"]
        file_table = table_ds[()]
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in table_ds.attrs.items()}
        codes = f["/entry/data/data_000001"][()]
        assert f[f"{SPECIFIC}/float8_encoding_applied"][()] == 1
    assert attrs["encoding"] == "E3M5" and attrs["invalid_code"] == 255 and attrs["units"] == "counts"
    assert codes.dtype == np.uint8 and codes.shape[0] == 2
    # the table from the file decodes the file's images exactly as the pipeline's codec does
    np.testing.assert_array_equal(file_table[codes], codec.decode_unbiased(codes))
    # ... and each count decodes back inside its code's interval (the table fits the encoder)
    counts = np.arange(FLOAT8_MAX)
    assert np.all(np.abs(file_table[ENCODE_TABLE[counts]] - counts) < np.maximum(1, counts / 32))

    start, images = messages[0], messages[1:-1]
    assert header["header_detail"] == "basic" and header["series"] == v1_series
    for described in (start["opendcu_float8"], header["config"]["opendcu_float8"]):
        assert described["encoding"] == "E3M5" and described["invalid_code"] == 255
        np.testing.assert_array_equal(np.asarray(described["decode_lookup_table"], dtype=np.float32), file_table)
    stream_table = np.asarray(start["opendcu_float8"]["decode_lookup_table"])
    assert stream_table.dtype == np.float32  # a typed array, not a list
    for i, message in enumerate(images):
        image = message["data"]["threshold_1"]
        np.testing.assert_array_equal(image, codes[i])  # the stream sends the file's codes
        np.testing.assert_array_equal(stream_table[image], codec.decode_unbiased(codes[i]))
