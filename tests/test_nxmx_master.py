"""The NXmx master field by field (docs/nxmx-fields.md): every kind of master (serial, parallel, vds writer modes;
8/16/32-bit; the 8-bit float counter; 2x2 binning; one or several data files), validated by nxvalidate, and read
by Debian's dxtbx (DIALS' reader) next to the rules of the current dxtbx's EIGER format class."""

from __future__ import annotations

import dataclasses
import json
import re
import subprocess
from datetime import datetime, timedelta
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from packaging import version
from series_factory import ImageSource, make_pixels, make_series
from test_dials_mx import dials_env  # noqa: F401  (the fixture: Debian's DIALS, installed on demand)

from opendcu.app_detector.imagemux import ImageMux
from opendcu.app_detector.interfaces.filewriter.writer import FileWriter
from opendcu.app_detector.series import Series

#: what nxvalidate (0.3.5b3) still reports on our masters, each with its reason (README, "Files")
DOCUMENTED_WARNINGS = {
    # NXmx types time_zone NX_DATE_TIME but defines it as an offset; nxvalidate accepts only whole dates
    "/entry/instrument/time_zone: The field value is not a valid NX_DATE_TIME",
    # a single detector: no group to describe
    "NXdetector_group: This recommended group is not in the NeXus file",
    # nexusformat sizes a virtual dataset as one image per source file (2 files of 2 images read as 2 images)
    'Values for "nP" are not unique',
    # one data file: its legacy link alone (fabio would count a virtual dataset and the link twice)
    "/entry/data/data: This recommended field is not in the NeXus file",
    "/entry/instrument/detector/data: This recommended field is not in the NeXus file",
}

KINDS = {
    "serial-16bit": dict(bit_depth=16),
    "parallel-16bit": dict(bit_depth=16, writer_mode="parallel"),
    "vds-16bit": dict(bit_depth=16, writer_mode="vds"),
    "serial-8bit": dict(bit_depth=8),
    "serial-32bit": dict(bit_depth=32),
    "serial-float8": dict(bit_depth=8, float8=True),
    "serial-2x2": dict(bit_depth=32, binning=True),
    "one-data-file": dict(bit_depth=16, per_file=8),
    "images-in-master": dict(bit_depth=16, per_file=0),
}


def kind_series(nimages: int, bit_depth: int, float8: bool = False, binning: bool = False) -> Series:
    series = make_series(nimages=nimages, bit_depth=bit_depth, countrate_correction_count_cutoff=(1 << bit_depth) - 2)
    settings = dataclasses.replace(
        series.settings,
        float8_encoding_applied=float8,
        binning_2x2_applied=binning,
        count_cutoff=(1 << bit_depth) - 2 if bit_depth < 32 else 1_000_000,
    )
    series.settings = settings
    if binning:
        cfg = series.detector_config
        h, w = cfg["y_pixels_in_detector"] // 2, cfg["x_pixels_in_detector"] // 2
        cfg.update(
            y_pixels_in_detector=h,
            x_pixels_in_detector=w,
            x_pixel_size=150e-6,
            y_pixel_size=150e-6,
            beam_center_x=w / 2,
            beam_center_y=h / 2,
        )
        mask = series.pixel_mask
        series.pixel_mask = mask.reshape(h, 2, w, 2).max(axis=(1, 3))
    return series


def write_kind(data_dir: Path, kind: str, nimages: int = 4) -> tuple[Series, Path]:
    spec = dict(KINDS[kind])
    per_file = spec.pop("per_file", 2)
    mode = spec.pop("writer_mode", "serial")
    series = kind_series(nimages, **spec)
    fw = FileWriter(data_dir)
    fw.subsystem.values.update(mode="enabled", nimages_per_file=per_file, writer_mode=mode, writer_processes=2)
    mux = ImageMux()
    mux.attach(fw)
    source = ImageSource(series, n_slots=6)
    try:
        mux.start_series(series)
        for i in range(nimages):
            mux.publish(source.image(i))
        mux.end_series(series, aborted=False)
    finally:
        fw.close()
        source.close()
    assert fw.errors == []
    return series, data_dir / "series_1_master.h5"


def nxvalidate(clients_python: Path, master: Path) -> tuple[int, list[str]]:
    tool = clients_python.parent / "nxvalidate"
    if not tool.exists():
        pytest.fail(f"{tool} missing: dev.py installs nxvalidate into the clients venv")
    out = subprocess.run([str(tool), str(master)], capture_output=True, text=True, timeout=300)
    text = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    errors = int(re.search(r"Total number of errors: (\d+)", text).group(1))
    lines = [line.strip() for line in text.splitlines()]
    messages = []
    for i, line in enumerate(lines):  # "Field: PATH" / "Group: NAME" followed by its message
        if (
            line.startswith(("Field: ", "Group: "))
            and i + 1 < len(lines)
            and not lines[i + 1].startswith(("Field: ", "Group: ", "Values for", "Total"))
        ):
            messages.append(f"{line.split(': ', 1)[1]}: {lines[i + 1]}")
        elif line.startswith("Values for"):
            messages.append(line)
    return errors, messages


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_kind_of_master(tmp_path: Path, kind: str, clients_python: Path) -> None:
    series, master = write_kind(tmp_path, kind)
    n = series.nimages_total
    settings = series.settings
    top = (1 << settings.bit_depth_image) - 1
    with h5py.File(master) as f:
        det = f["/entry/instrument/detector"]
        spec = det["detectorSpecific"]
        # the mask at NXmx's place is DECTRIS' dataset itself (a hard link), uint32 and unchunked (neggia)
        assert det["pixel_mask"].id == spec["pixel_mask"].id and det["pixel_mask"].chunks is None
        np.testing.assert_array_equal(det["pixel_mask"][()], series.pixel_mask)
        assert det["pixel_mask_applied"][()] == 1
        # the valid pixel values: [underload, saturation]; masked/invalid pixels hold 2^bits - 1, above it
        assert det["underload_value"][()] == 0
        # (a 2x2 image pixel sums four pixels: four times the cutoff, within what the bit depth holds)
        cutoff = settings.count_cutoff * (4 if settings.binning_2x2_applied else 1)
        want = 254 if settings.float8_encoding_applied else min(cutoff, top - 1)
        assert det["saturation_value"][()] == want and det["bit_depth_image"][()] == settings.bit_depth_image
        # dxtbx 3.18-3.23 parse eiger_fw_version and keep data_size for 2022.1.2 and later; 3.24+ keep it when it
        # is a known (slow, fast) EIGER size: our [slow, fast] survives both
        fw_version = spec["eiger_fw_version"][()].decode()
        assert re.fullmatch(r"release-\d{4}\.\d+\.\d+", fw_version)
        assert not version.parse("2022.1.2") > version.parse(fw_version.replace("release-", ""))
        h, w = series.detector_config["y_pixels_in_detector"], series.detector_config["x_pixels_in_detector"]
        assert list(det["module/data_size"][()]) == [h, w]
        assert f["/entry/program_name"][()] == b"opendcu" and f["/entry/program_name"].attrs["version"] == b"0.1.0"
        # times: ISO 8601 with the offset; the estimate is the start plus the series' frames
        start = datetime.fromisoformat(f["/entry/start_time"][()].decode())
        estimated = datetime.fromisoformat(f["/entry/end_time_estimated"][()].decode())
        end = datetime.fromisoformat(f["/entry/end_time"][()].decode())
        assert estimated - start == timedelta(seconds=round(n * series.frame_time, 6))
        assert end.utcoffset() == start.utcoffset() and f["/entry/instrument/time_zone"][()] == b"+00:00"
        assert det["distance_derived"][()] == 0 and det["distance"][()] == pytest.approx(0.12)
        beam = f["/entry/instrument/beam"]
        assert beam["incident_polarization_stokes"].shape == (n, 4)
        np.testing.assert_allclose(beam["incident_polarization_stokes"][0], [1, 0.998, 0, 0], rtol=1e-6)
        assert beam["profile"][()] == b"Gaussian" and beam["incident_beam_size"].shape == (2,)
        # every image through every path the file offers
        data = f["/entry/data"]
        links = sorted(k for k in data if k.startswith("data_"))
        paths = [[data[k] for k in links]] if links else []
        if "data" in data:
            assert data["data"].shape[0] == n and det["data"].id == data["data"].id
            assert data.attrs["signal"] == b"data"
            paths.append([data["data"]])
        else:
            assert data.attrs["signal"] == b"data_000001" and len(links) == 1
        assert "data" in data or links
        for datasets in paths:
            images = np.concatenate([d[()] for d in datasets])
            assert images.shape[0] == n
            for i in range(n):
                np.testing.assert_array_equal(images[i], make_pixels(series, i))
            valid = images[images != top]
            assert valid.min() >= 0 and valid.max() <= want
    errors, messages = nxvalidate(clients_python, master)
    assert errors == 0, messages
    unexplained = [m for m in messages if m not in DOCUMENTED_WARNINGS]
    assert unexplained == [], unexplained


def test_goniometer_chain_follows_transformation_order(tmp_path: Path) -> None:
    series = make_series(
        nimages=3,
        transformation_order=["omega", "kappa", "phi"],
        omega_axis=[0.0, 1.0, 0.0],
        kappa_axis=[-0.9135, 0.0, -0.4067],
        phi_axis=[-1.0, 0.0, 0.0],
        kappa_start=30.0,
        phi_start=5.0,
        phi_increment=0.0,
    )
    fw = FileWriter(tmp_path)
    fw.subsystem.values.update(mode="enabled", nimages_per_file=3)
    mux = ImageMux()
    mux.attach(fw)
    source = ImageSource(series, n_slots=4)
    try:
        mux.start_series(series)
        for i in range(3):
            mux.publish(source.image(i))
        mux.end_series(series, aborted=False)
    finally:
        fw.close()
        source.close()
    with h5py.File(tmp_path / "series_1_master.h5") as f:
        t = f["/entry/sample/transformations"]
        assert f["/entry/sample/depends_on"][()] == b"/entry/sample/transformations/phi"
        assert t["phi"].attrs["depends_on"] == b"/entry/sample/transformations/kappa"
        assert t["kappa"].attrs["depends_on"] == b"/entry/sample/transformations/omega"
        assert t["omega"].attrs["depends_on"] == b"."
        np.testing.assert_allclose(t["omega"].attrs["vector"], [0, 1, 0])
        np.testing.assert_allclose(t["omega"][()], [10.0, 10.5, 11.0])
        np.testing.assert_allclose(t["kappa"][()], [30.0] * 3)
        assert "chi" not in t  # not in the chain; DECTRIS' goniometer group still lists it
        assert "chi" in f["/entry/sample/goniometer"]


DXTBX_READ = r"""
import json, sys
import numpy as np
from dxtbx.model.experiment_list import ExperimentListFactory
iset = ExperimentListFactory.from_filenames([sys.argv[1]]).imagesets()[0]
panel = iset.get_detector()[0]
out = {"format": iset.get_format_class().__name__, "n": len(iset), "size": list(panel.get_image_size()),
       "trusted": list(panel.get_trusted_range()), "axis": list(iset.get_goniometer().get_rotation_axis()),
       "wavelength": iset.get_beam().get_wavelength(), "distance": panel.get_distance(),
       "pixel": list(panel.get_pixel_size()), "thickness": panel.get_thickness(), "material": panel.get_material()}
np.save(sys.argv[2], np.stack([iset.get_raw_data(i)[0].as_numpy_array() for i in range(len(iset))]))
np.save(sys.argv[3], iset.get_mask(0)[0].as_numpy_array())
print(json.dumps(out))
"""


@pytest.mark.integration  # Debian's DIALS, installed on demand
@pytest.mark.parametrize("kind", ["serial-16bit", "serial-32bit", "one-data-file"])
def test_debian_dxtbx_reads_what_we_wrote(tmp_path: Path, kind: str, dials_env: dict[str, str]) -> None:
    series, master = write_kind(tmp_path / "files", kind)
    script = tmp_path / "read.py"
    script.write_text(DXTBX_READ)
    raw, mask = tmp_path / "raw.npy", tmp_path / "mask.npy"
    out = subprocess.run(
        ["/usr/bin/python3", str(script), str(master), str(raw), str(mask)],
        env=dials_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    info = json.loads(out.stdout.strip().splitlines()[-1])
    h, w = series.detector_config["y_pixels_in_detector"], series.detector_config["x_pixels_in_detector"]
    assert info["n"] == 4 and info["size"] == [w, h]
    # Debian's dxtbx 3.12 takes [underload - 1, saturation] as its trusted range
    assert info["trusted"] == [
        -1.0,
        float(min(series.settings.count_cutoff, (1 << series.settings.bit_depth_image) - 2)),
    ]
    assert info["axis"] == pytest.approx([1.0, 0.0, 0.0])  # mcstas -x = imgCIF +x
    assert info["wavelength"] == pytest.approx(1.5406, rel=1e-6) and info["distance"] == pytest.approx(120.0)
    assert info["material"] == "Si" and info["thickness"] == pytest.approx(0.45)
    top = (1 << series.settings.bit_depth_image) - 1
    images = np.load(raw)
    for i in range(4):
        want = make_pixels(series, i).astype(np.int64)
        want[want == top] = -1  # what dxtbx makes of 2^bits - 1
        np.testing.assert_array_equal(images[i], want)
    np.testing.assert_array_equal(np.load(mask), series.pixel_mask == 0)
