"""The Monitor: buffer policy (buffer_size, discard_new), next/monitor/by-id access, and TIFFs that tifffile,
fabio and Pillow read identically, with DECTRIS' private tag 51192."""

from __future__ import annotations

import io
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tifffile
from series_factory import ImageSource, make_pixels, make_series

from opendcu.app_detector.control.errors import ParameterNotFound, Timeout
from opendcu.app_detector.interfaces.monitor.monitor import Monitor
from opendcu.app_detector.interfaces.monitor.tiff import DECTRIS_PRIVATE_TAG, MonitorMetadata, encode_tiff


def feed(monitor: Monitor, series, n: int) -> ImageSource:
    source = ImageSource(series, n_slots=4)
    monitor.start_series(series)
    for i in range(n):
        monitor.offer(source.image(i))
    monitor.end_series(series, False)
    assert source.all_free()  # the monitor keeps its own copy, never a pipeline slot
    return source


@pytest.mark.parametrize("discard_new, kept", [(True, [0, 1, 2]), (False, [3, 4, 5])])
def test_buffer_size_and_discard_new(discard_new: bool, kept: list[int], monkeypatch):
    from opendcu.app_detector.interfaces.monitor import monitor as monitor_module

    monkeypatch.setattr(monitor_module, "LATEST_PERIOD_NS", 0)  # every discarded image refreshes the live view
    monitor = Monitor()
    monitor.subsystem.values.update(mode="enabled", buffer_size=3, discard_new=discard_new)
    series = make_series(series_id=5, nimages=6)
    feed(monitor, series, 6).close()
    assert monitor.list_images() == [(5, kept)]
    assert monitor.dropped == 3 and monitor.state == "overflow" and monitor.fill_level() == [3, 3]
    first = monitor.next_image(0.1)
    assert (first.series.series_id, first.image_id) == (5, kept[0]) and monitor.next_image_number == [5, kept[0]]
    assert monitor.fill_level() == [2, 3]
    latest = monitor.latest_image(0.1)
    assert latest.image_id == 5  # the newest image, even if the buffer discarded it
    assert monitor.image(5, kept[1]).image_id == kept[1]
    with pytest.raises(ParameterNotFound):
        monitor.image(5, kept[0])  # taken by next
    with pytest.raises(ParameterNotFound):
        monitor.image(5, kept[1], threshold=2)
    monitor.clear()
    assert monitor.list_images() == [] and monitor.dropped == 0 and monitor.state == "normal"
    assert monitor.latest_image(0.1).image_id == 5  # stays available after clear
    with pytest.raises(Timeout):
        monitor.next_image(0.05)
    tiff = latest.tiff()
    np.testing.assert_array_equal(tifffile.imread(io.BytesIO(tiff)), make_pixels(series, 5))


def test_tiff_layout_and_private_tag():
    pixels = (np.arange(514 * 1030) % 5000).astype(np.uint32).reshape(514, 1030)
    meta = MonitorMetadata(
        "01ABCDEFGHJKMNPQRSTVWXYZ01",
        9,
        4,
        "2026-01-02T03:04:05.123456789+00:00",
        1,
        4000.0,
        0.1,
        8000.0,
        1.5498,
        7,
        (500.5, 250.25),
        0.15,
    )
    blob = encode_tiff(pixels, meta)
    assert blob[:4] == b"II*\0"
    assert blob[8 : 8 + pixels.nbytes] == pixels.tobytes()  # the single strip right after the header
    ifd = struct.unpack_from("<I", blob, 4)[0]
    n = struct.unpack_from("<H", blob, ifd)[0]
    entries = {
        tag: (typ, count, value)
        for tag, typ, count, value in (struct.unpack_from("<HHII", blob, ifd + 2 + 12 * i) for i in range(n))
    }
    # naive parsers (ADEiger) read these from the value field: inline, count 1
    assert entries[256][1:] == (1, 1030) and entries[257][1:] == (1, 514) and entries[258][1:] == (1, 32)
    assert entries[273][1:] == (1, 8) and entries[278][1:] == (1, 514) and entries[279][1:] == (1, pixels.nbytes)
    with tifffile.TiffFile(io.BytesIO(blob)) as tf:
        page = tf.pages[0]
        assert len(page.dataoffsets) == 1 and page.compression == 1
        private = page.tags[DECTRIS_PRIVATE_TAG].value
    count = struct.unpack_from("<H", blob, private)[0]
    tags = [struct.unpack_from("<H", blob, private + 2 + 12 * i)[0] for i in range(count)]
    assert tags == [0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 18, 22, 23]
    (typ, cnt, off) = struct.unpack_from("<HII", blob, private + 2 + 12 * 11 + 2)
    assert (typ, cnt) == (12, 2) and struct.unpack_from("<2d", blob, off) == (500.5, 250.25)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32])
def test_three_tiff_readers_agree(dtype, tmp_path: Path, clients_python: Path, shared_dir: Path):
    pixels = (np.arange(512 * 1028) * 7 % np.iinfo(dtype).max).astype(dtype).reshape(512, 1028)
    path = tmp_path / "m.tif"
    path.write_bytes(encode_tiff(pixels, MonitorMetadata("U", 1, 0, "", 1, 1.0, 1.0, 1.0, 1.0, 0, (0.0, 0.0), 0.0)))
    out = subprocess.run(
        [str(clients_python), str(shared_dir / "clients" / "tiff_check.py"), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "tag 51192 present True" in out.stdout and f"dtype {np.dtype(dtype).name}" in out.stdout
