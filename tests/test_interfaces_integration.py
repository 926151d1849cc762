"""The three customer interfaces of a running DCU, driven by the real third-party clients (shared/clients/):
DECTRIS-recipe stream V2 consumer, libertem-dectris (stream V1), DEigerClient, h5py/nxmx/fabio/silx readers,
TIFF readers; plus /data, the files list, WebDAV, the monitor endpoints, and a stalled stream consumer that
must not cost the FileWriter a single image."""

from __future__ import annotations

import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
import zmq
from conftest import DcuServer, start_dcu

from opendcu.app_detector.interfaces.stream.decoder import decode_v2

pytestmark = pytest.mark.integration
D = "/detector/api/1.8.0"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> DcuServer:
    dcu = start_dcu(tmp_path_factory.mktemp("dcu"))
    with dcu.client() as http:
        assert http.put(f"{D}/command/initialize").status_code == 200
    yield dcu
    dcu.stop()


def client_script(clients_python: Path, shared_dir: Path, name: str, *args, timeout: float = 180):
    return subprocess.run(
        [str(clients_python), str(shared_dir / "clients" / name), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def configure(http, module: str, **values) -> None:
    for key, value in values.items():
        r = http.put(f"/{module}/api/1.8.0/config/{key}", json={"value": value})
        assert r.status_code == 200, (key, r.text)


def acquire(http, nimages: int, frame_time: float = 0.02) -> int:
    # one sub-frame per image (auto_summation false): 16-bit images, which every TIFF reader reads alike (Pillow
    # reads 32-bit TIFFs as signed)
    configure(
        http,
        "detector",
        nimages=nimages,
        ntrigger=1,
        trigger_mode="ints",
        frame_time=frame_time,
        count_time=frame_time * 0.9,
        auto_summation=False,
    )
    series_id = http.put(f"{D}/command/arm").json()["sequence id"]
    assert http.put(f"{D}/command/trigger").status_code == 200
    return series_id


def test_stream_v2_dectris_recipe_consumer(server: DcuServer, clients_python: Path, shared_dir: Path):
    out = client_script(
        clients_python, shared_dir, "stream2_consume.py", "127.0.0.1", server.port, 3, server.stream_v2_port
    )
    assert out.returncode == 0 and "OK 3 images" in out.stdout, out.stdout + out.stderr


def test_stream_v1_libertem_dectris_active_mode(server: DcuServer, clients_python: Path, shared_dir: Path):
    out = client_script(
        clients_python,
        shared_dir,
        "libertem_stream1_smoke.py",
        "127.0.0.1",
        server.port,
        server.stream_v1_port,
        timeout=150,
    )
    assert out.returncode == 0 and "OK 4 frames" in out.stdout, out.stdout + out.stderr


def test_deigerclient_workflow(server: DcuServer, clients_python: Path, shared_dir: Path):
    out = client_script(clients_python, shared_dir, "deiger_smoke.py", "127.0.0.1", server.port)
    assert out.returncode == 0 and "all calls OK" in out.stdout, out.stdout + out.stderr


def test_fastcs_eiger_introspects_stream_and_monitor(server: DcuServer, clients_python: Path, shared_dir: Path):
    out = client_script(clients_python, shared_dir, "fastcs_eiger_smoke.py", "127.0.0.1", server.port)
    assert out.returncode == 0, out.stdout + out.stderr
    counts = {line.split()[0]: int(line.split()[1]) for line in out.stdout.splitlines() if line.endswith(" attributes")}
    assert (
        counts.get("STREAM", counts.get("stream", 0)) >= 7 and counts.get("MONITOR", counts.get("monitor", 0)) >= 7
    ), out.stdout


def test_files_readers_data_and_webdav(server: DcuServer, clients_python: Path, shared_dir: Path):
    with server.client() as http:
        configure(http, "filewriter", mode="enabled", name_pattern="scan/s_$id", nimages_per_file=2)
        configure(http, "stream", mode="disabled")
        series_id = acquire(http, nimages=3)
        names = http.get("/filewriter/api/1.8.0/files/").json()  # a bare list
        prefix = f"scan/s_{series_id}"
        assert {f"{prefix}_master.h5", f"{prefix}_data_000001.h5", f"{prefix}_data_000002.h5"} <= set(names)
        assert http.get("/filewriter/api/1.8.0/status/files").json()["value"] == names
        r = http.head(f"/data/{prefix}_data_000002.h5")
        assert (
            r.status_code == 200
            and int(r.headers["content-length"]) == (server.data_dir / f"{prefix}_data_000002.h5").stat().st_size
        )
        body = http.get(f"/data/{prefix}_master.h5").content
        assert body[:8] == b"\x89HDF\r\n\x1a\n"
        assert http.head("/data/scan/nothing.h5").status_code == 404
        assert http.get("/data/%2e%2e/%2e%2e/etc/passwd").status_code in (400, 404)
        assert http.put("/filewriter/api/1.8.0/config/name_pattern", json={"value": "../up_$id"}).status_code == 400

        # WebDAV: the same files, read-only
        r = http.request("PROPFIND", "/webdav/scan/", headers={"Depth": "1"})
        assert r.status_code == 207
        hrefs = {e.text for e in ET.fromstring(r.content).iter("{DAV:}href")}
        assert f"/webdav/{prefix}_master.h5" in hrefs and not any(".part" in h for h in hrefs)
        assert http.get(f"/webdav/{prefix}_master.h5").content == body
        assert http.put("/webdav/scan/new.h5", content=b"x").status_code in (403, 405)

    with h5py.File(server.data_dir / f"{prefix}_master.h5") as f:
        assert f["/entry/data/data_000001"].shape == (2, 512, 1028) and f["/entry/data/data_000002"].shape[0] == 1

    with server.client() as http:  # the file readers on a single-data-file series downloaded over HTTP
        configure(http, "filewriter", name_pattern="series_$id", nimages_per_file=100)
        series_id = acquire(http, nimages=3)
    out = client_script(
        clients_python,
        shared_dir,
        "read_clients.py",
        "--host",
        "127.0.0.1",
        "--port",
        server.port,
        "--pattern",
        f"series_{series_id}",
    )
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout + out.stderr

    with server.client() as http:
        assert http.delete(f"/data/series_{series_id}_data_000001.h5").status_code == 204
        assert http.head(f"/data/series_{series_id}_data_000001.h5").status_code == 404
        assert http.put("/filewriter/api/1.8.0/command/clear").status_code == 200
        assert http.get("/filewriter/api/1.8.0/files").json() == []
        configure(http, "filewriter", mode="disabled")


def test_monitor_endpoints(server: DcuServer, clients_python: Path, shared_dir: Path):
    with server.client() as http:
        configure(http, "monitor", mode="enabled", buffer_size=2, discard_new=True)
        assert http.put("/monitor/api/1.8.0/command/clear").status_code == 200
        series_id = acquire(http, nimages=4)
        assert http.get("/monitor/api/1.8.0/images/").json() == [[series_id, [0, 1]]]
        status = http.get("/monitor/api/1.8.0/status/buffer_fill_level").json()
        assert status["value"] == [2, 2] and status["value_type"] == "uint"
        assert http.get("/monitor/api/1.8.0/status/dropped").json()["value"] == 2
        r = http.get(f"/monitor/api/1.8.0/images/{series_id}/1/1")
        assert r.status_code == 200 and r.content[:4] == b"II*\0"
        assert http.get(f"/monitor/api/1.8.0/images/{series_id}/3").status_code == 404  # discarded
        assert http.get(f"/monitor/api/1.6.0/images/{series_id}/0").status_code == 200
        assert http.get("/monitor/api/1.8.0/images/next?timeout=100").status_code == 200
        assert http.get("/monitor/api/1.8.0/images/next?timeout=100").status_code == 200
        assert http.get("/monitor/api/1.8.0/images/next?timeout=100").status_code == 408
        assert http.get("/monitor/api/1.8.0/images/next?timeout=soon").status_code == 400
        assert http.get("/monitor/api/1.8.0/images/monitor").status_code == 200  # the newest stays available
    out = client_script(
        clients_python, shared_dir, "tiff_check.py", "--host", "127.0.0.1", "--port", server.port, "--which", "monitor"
    )
    assert out.returncode == 0 and "tag 51192 present True" in out.stdout, out.stdout + out.stderr
    with server.client() as http:
        configure(http, "monitor", mode="disabled")


def test_stalled_stream_consumer_costs_no_file_image(server: DcuServer):
    # more images than the stream's send queue holds (sized for consumers that keep up): a stalled one drops some
    n = 600
    sock = zmq.Context.instance().socket(zmq.PULL)
    sock.setsockopt(zmq.RCVHWM, 1)
    sock.setsockopt(zmq.RCVBUF, 4096)  # small kernel buffer too: the stall shows within a short series
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(f"tcp://127.0.0.1:{server.stream_v2_port}")  # connected, but reads nothing during the series
    try:
        with server.client() as http:
            configure(http, "stream", mode="enabled", format="cbor", header_detail="basic")
            configure(http, "filewriter", mode="enabled", name_pattern="stall_$id", nimages_per_file=1000)
            series_id = acquire(http, nimages=n, frame_time=0.004)
            dropped = http.get("/stream/api/1.8.0/status/dropped").json()["value"]
            configure(http, "stream", mode="disabled")
            configure(http, "filewriter", mode="disabled")
        received = []
        sock.setsockopt(zmq.RCVTIMEO, 3000)
        try:
            while True:
                received.append(decode_v2(sock.recv()))
        except zmq.Again:
            pass
        images = [m for m in received if m["type"] == "image"]
        assert all(m["series_id"] == series_id for m in received)
        assert dropped > 0 and len(images) + dropped == n
        with h5py.File(server.data_dir / f"stall_{series_id}_master.h5") as f:
            data = f["/entry/data/data_000001"]
            assert data.shape[0] == n and data.attrs["image_nr_high"] == n
            for m in images[::25]:  # what the stream did deliver is what the file holds
                np.testing.assert_array_equal(data[m["image_id"]], m["data"]["threshold_1"])
    finally:
        sock.close()
