"""The FileWriter on its own: EIGER2-identical data files, the NXmx master read by h5py/nxmx/fabio/silx, the
three writer modes giving the same bytes, nimages_per_file 0, early ends, the master-contributor hook, unsafe
names, and a full disk."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import hdf5plugin  # noqa: F401
import numpy as np
import pytest
from series_factory import ImageSource, make_pixels, make_series

from opendcu.app_detector.control.errors import InvalidValue
from opendcu.app_detector.imagemux import ImageMux
from opendcu.app_detector.interfaces.filewriter.paths import UnsafePath
from opendcu.app_detector.interfaces.filewriter.sinks import ParallelSink, SerialSink
from opendcu.app_detector.interfaces.filewriter.writer import FileWriter

REPO = Path(__file__).resolve().parent.parent


def write_series(
    data_dir: Path, nimages: int = 10, stop_after: int | None = None, series_id: int = 1, contributor=None, **config
) -> FileWriter:
    fw = FileWriter(data_dir)
    fw.subsystem.values.update(mode="enabled", **config)
    if contributor is not None:
        fw.add_master_contributor(contributor)
    mux = ImageMux()
    mux.attach(fw)
    series = make_series(series_id=series_id, nimages=nimages)
    source = ImageSource(series, n_slots=6)
    try:
        mux.start_series(series)
        for i in range(nimages if stop_after is None else stop_after):
            mux.publish(source.image(i))
        mux.end_series(series, aborted=stop_after is not None)
        assert source.all_free()
    finally:
        fw.close()
        source.close()
    return fw


def test_data_files_look_like_eiger2_files(tmp_path: Path, golden_dir: Path):
    fw = write_series(tmp_path, nimages=5, nimages_per_file=2, image_nr_start=1)
    assert fw.list_files() == [
        "series_1_data_000001.h5",
        "series_1_data_000002.h5",
        "series_1_data_000003.h5",
        "series_1_master.h5",
    ]
    golden = golden_dir / "h5-testfiles/datasets_eiger2/eiger2_simread7_2datafiles_4images_bslz4_data_000002.h5"
    with h5py.File(golden) as g, h5py.File(tmp_path / "series_1_data_000002.h5") as f:
        ours, theirs = f["/entry/data/data"], g["/entry/data/data"]
        assert ours.shape == theirs.shape and ours.maxshape == theirs.maxshape and ours.chunks == theirs.chunks
        assert ours.dtype == theirs.dtype and ours.fillvalue == theirs.fillvalue == 65535
        fid, flags, cd_values, _ = ours.id.get_create_plist().get_filter(0)
        assert fid == 32008 and flags == 0 and len(cd_values) == 5 and cd_values[2] == 2 and cd_values[4] == 2
        for attr in ("image_nr_low", "image_nr_high"):
            assert ours.attrs[attr].dtype == theirs.attrs[attr].dtype == np.uint64
        assert (ours.attrs["image_nr_low"], ours.attrs["image_nr_high"]) == (3, 4)
        for path in ("/entry", "/entry/data"):
            assert (
                f[path].attrs.get_id("NX_class").get_type().get_size()
                == g[path].attrs.get_id("NX_class").get_type().get_size()
            )
        series = make_series(nimages=5)
        for i in range(2):
            np.testing.assert_array_equal(ours[i], make_pixels(series, i + 2))
    with h5py.File(tmp_path / "series_1_data_000003.h5") as f:
        assert f["/entry/data/data"].shape[0] == 1 and f["/entry/data/data"].attrs["image_nr_high"] == 5


def test_master_reads_in_nxmx_fabio_silx(tmp_path: Path, clients_python: Path, shared_dir: Path):
    write_series(tmp_path, nimages=4, nimages_per_file=4)
    with h5py.File(tmp_path / "series_1_master.h5") as f:
        det = f["/entry/instrument/detector"]
        spec = det["detectorSpecific"]
        assert f["/entry/definition"][()] == b"NXmx"
        assert list(det["module/data_size"][()]) == [512, 1028]  # [slow, fast]
        assert spec["pixel_mask"].chunks is None and spec["pixel_mask"].dtype == np.uint32
        assert spec["flatfield"].shape == (512, 1028) and spec["flatfield"].dtype == np.float32
        assert spec["nimages"][()] == 4 and spec["ntrigger"][()] == 1
        assert spec["eiger_fw_version"][()] == b"release-2022.1.2" and f["/entry/program_name"][()] == b"opendcu"
        assert det["saturation_value"][()] == 65534
        assert spec["detectorModule_000/countrate_correction_table"].shape[0] == 2
        np.testing.assert_allclose(f["/entry/sample/goniometer/omega"][()], [10.0, 10.5, 11.0, 11.5])
        assert f["/entry/sample/depends_on"][()] == b"/entry/sample/transformations/omega"
    out = subprocess.run(
        [str(clients_python), str(shared_dir / "clients" / "read_clients.py"), str(tmp_path / "series_1_master.h5")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and "OK" in out.stdout, out.stdout + out.stderr
    series = make_series(nimages=4)
    want = sum(int(make_pixels(series, i).sum()) for i in range(4))
    assert f"'h5py': {want}" in out.stdout and f"'fabio': {want}" in out.stdout and f"'silx': {want}" in out.stdout
    out = subprocess.run(
        [
            str(clients_python),
            str(shared_dir / "clients" / "chunk_check.py"),
            str(tmp_path / "series_1_data_000001.h5"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0 and out.stdout.count(" OK") == 4, out.stdout + out.stderr


def test_serial_parallel_and_vds_files_are_bit_identical(tmp_path: Path):
    for mode in ("serial", "parallel", "vds"):
        fw = write_series(tmp_path / mode, nimages=10, nimages_per_file=4, writer_mode=mode, writer_processes=2)
        assert fw.errors == []
    names = [f"series_1_data_00000{i}.h5" for i in (1, 2, 3)]
    for name in names:
        serial = (tmp_path / "serial" / name).read_bytes()
        assert (tmp_path / "parallel" / name).read_bytes() == serial
        assert (tmp_path / "vds" / name).read_bytes() == serial
    series = make_series(nimages=10)
    with h5py.File(tmp_path / "vds" / "series_1_master.h5") as f:
        data = f["/entry/data/data"]
        assert data.is_virtual and data.shape == (10, 512, 1028)
        assert [k for k in f["/entry/data"]] == ["data", "data_000001", "data_000002", "data_000003"]
        for i in range(10):
            np.testing.assert_array_equal(data[i], make_pixels(series, i))
    with h5py.File(tmp_path / "parallel" / names[1]) as f:
        assert f["/entry/data/data"].id.get_chunk_info(0).byte_offset % 4096 == 0  # page-aligned payloads


def test_all_images_in_master_and_contributor_hook(tmp_path: Path, clients_python: Path):
    def spots(series):
        return {"/entry/analysis/spot_count": np.arange(series.nimages_total, dtype=np.uint32) * 3}

    write_series(tmp_path, nimages=3, nimages_per_file=0, contributor=spots)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["series_1_master.h5"]
    series = make_series(nimages=3)
    with h5py.File(tmp_path / "series_1_master.h5") as f:
        data = f["/entry/data/data"]
        assert data.shape == (3, 512, 1028) and data.attrs["image_nr_high"] == 3
        for i in range(3):
            np.testing.assert_array_equal(data[i], make_pixels(series, i))
        assert list(f["/entry/analysis/spot_count"][()]) == [0, 3, 6]
    script = "import fabio,sys; img=fabio.open(sys.argv[1]); print(img.nframes, int(img.getframe(2).data.sum()))"
    out = subprocess.run(
        [str(clients_python), "-c", script, str(tmp_path / "series_1_master.h5")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stdout.split() == ["3", str(int(make_pixels(series, 2).sum()))], out.stderr


def test_early_end_keeps_valid_files_and_drops_dangling_links(tmp_path: Path):
    write_series(
        tmp_path, nimages=10, stop_after=5, nimages_per_file=4, contributor=lambda s: {"/entry/analysis/x": np.zeros(3)}
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "series_1_data_000001.h5",
        "series_1_data_000002.h5",
        "series_1_master.h5",
    ]
    with h5py.File(tmp_path / "series_1_master.h5") as f:
        assert sorted(f["/entry/data"]) == ["data", "data_000001", "data_000002"]
        assert f["/entry/data/data_000002"].shape[0] == 1 and f["/entry/analysis/x"].shape == (3,)
        assert f["/entry/data/data"].shape[0] == 5 and f["/entry/instrument/detector/data"].shape[0] == 5
        assert b"T" in f["/entry/end_time"][()]


def test_name_pattern_must_stay_in_the_data_dir(tmp_path: Path):
    fw = FileWriter(tmp_path / "data")
    try:
        for bad in ("../x_$id", "/abs/series", "a/../../b", "sub/", "séries", ""):
            with pytest.raises(InvalidValue):
                fw.subsystem.set("name_pattern", bad)
        assert fw.subsystem.set("name_pattern", "run7/scan_$id") == ["name_pattern"]
        (tmp_path / "outside").mkdir()
        (tmp_path / "data" / "link").symlink_to(tmp_path / "outside")
        fw.subsystem.values.update(mode="enabled", name_pattern="link/s_$id")
        with pytest.raises(UnsafePath):
            fw.start_series(make_series())
        assert not list((tmp_path / "outside").iterdir())
    finally:
        fw.close()


def test_clear_deletes_files(tmp_path: Path):
    fw = write_series(tmp_path, nimages=2, nimages_per_file=1, name_pattern="run/s_$id")
    assert fw.list_files() == ["run/s_1_data_000001.h5", "run/s_1_data_000002.h5", "run/s_1_master.h5"]
    fw.clear()
    assert fw.list_files() == [] and not (tmp_path / "run").exists()


DISK_FULL_CHILD = textwrap.dedent("""
    import json, sys
    sys.path[:0] = [sys.argv[2], sys.argv[3]]
    from pathlib import Path
    import h5py, hdf5plugin, numpy as np
    from test_filewriter import write_series
    from series_factory import make_series, make_pixels

    if __name__ == "__main__":  # the writer processes are spawned: they import this file
        fw = write_series(Path(sys.argv[1]), name_pattern="s_$id", nimages=12, nimages_per_file=4,
                          writer_mode=sys.argv[4])
        out = {"state": fw.state, "errors": fw.errors, "files": fw.list_files()}
        series = make_series(nimages=12)
        with h5py.File(Path(sys.argv[1]) / "s_1_master.h5") as f:
            d = f["/entry/data/data_000001"]
            out["file1_ok"] = all(np.array_equal(d[i], make_pixels(series, i)) for i in range(4))
        print("RESULT " + json.dumps(out))
""")


@pytest.mark.parametrize("mode", ["serial", "parallel"])
def test_full_disk_is_an_error_and_written_files_stay_valid(tmp_path: Path, mode: str):
    if shutil.which("unshare") is None or shutil.which("mount") is None:
        pytest.skip("needs unshare and mount to create a small filesystem")
    # size the filesystem from a normal run: the master, one full data file and half of the next one
    probe = tmp_path / "probe"
    write_series(probe, nimages=12, nimages_per_file=4, name_pattern="s_$id")
    size = (probe / "s_1_master.h5").stat().st_size + (probe / "s_1_data_000001.h5").stat().st_size
    size += (probe / "s_1_data_000002.h5").stat().st_size // 2
    small = tmp_path / "small"
    small.mkdir()
    child = tmp_path / "child.py"
    child.write_text(DISK_FULL_CHILD)
    shell = (
        f"mount -t tmpfs -o size={size} tmpfs {small} && "
        f"{sys.executable} {child} {small} {REPO / 'tests'} {REPO / 'src'} {mode}"
    )
    out = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", shell],
        capture_output=True,
        text=True,
        timeout=240,
    )
    lines = [line for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines and "mount" in out.stderr and "permission" in out.stderr.lower():
        pytest.skip(f"cannot mount a small tmpfs here: {out.stderr.strip()}")
    assert lines, out.stdout + out.stderr
    result = json.loads(lines[0][len("RESULT ") :])
    assert result["state"] == "error"
    assert any("No space left on device" in e or "ENOSPC" in e for e in result["errors"]), result["errors"]
    assert "s_1_data_000001.h5" in result["files"] and "s_1_master.h5" in result["files"]
    assert "s_1_data_000003.h5" not in result["files"]
    assert result["file1_ok"]


@pytest.mark.parametrize("mode, sink", [("serial", SerialSink), ("parallel", ParallelSink)])
def test_full_disk_by_fault_injection(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, sink: type):
    """The always-on variant of the full-disk test (which needs mount rights): the sink's write raises ENOSPC,
    as the kernel does, from the 7th image on, i.e. in the middle of the second data file."""
    real_write = sink.write
    calls = 0

    def write(self, image, chunk):
        nonlocal calls
        calls += 1
        if calls >= 7:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(tmp_path))
        return real_write(self, image, chunk)

    monkeypatch.setattr(sink, "write", write)
    fw = write_series(tmp_path, name_pattern="s_$id", nimages=12, nimages_per_file=4, writer_mode=mode)
    assert calls == 7  # the series stopped writing at the first failure
    assert fw.state == "error"
    assert len(fw.errors) == 1 and "writing image 7 of series 1 failed" in fw.errors[0], fw.errors
    assert "No space left on device" in fw.errors[0]
    # the first file is complete and valid, the interrupted second one is gone (no partial files), no third one
    assert fw.list_files() == ["s_1_data_000001.h5", "s_1_master.h5"]
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".part")]
    series = make_series(nimages=12)
    with h5py.File(tmp_path / "s_1_master.h5") as f:
        d = f["/entry/data/data_000001"]
        assert d.shape[0] == 4 and all(np.array_equal(d[i], make_pixels(series, i)) for i in range(4))


def test_uncompressed_files_when_compression_is_disabled(tmp_path: Path):
    write_series(tmp_path, nimages=2, nimages_per_file=2, compression_enabled=False)
    series = make_series(nimages=2)
    with h5py.File(tmp_path / "series_1_data_000001.h5") as f:
        data = f["/entry/data/data"]
        assert data.id.get_create_plist().get_nfilters() == 0 and data.chunks == (1, 512, 1028)
        for i in range(2):
            np.testing.assert_array_equal(data[i], make_pixels(series, i))


@pytest.mark.parametrize("mode", ["parallel", "vds"])
def test_a_killed_writer_process_fails_its_file_at_once_and_the_next_series_gets_a_new_pool(tmp_path: Path, mode: str):
    """SIGKILL of a writer process in the middle of the second data file: the file it was writing is given up
    within the pool's watch interval (no 120 s wait on copies that never come), every image slot is given back,
    `written` counts only what the files hold, and the next series (a new pool) holds all its images."""
    import signal
    import time

    fw = FileWriter(tmp_path)
    fw.subsystem.values.update(mode="enabled", name_pattern="s_$id", nimages_per_file=4, writer_mode=mode)
    mux = ImageMux()
    mux.attach(fw)
    pools = []
    try:
        for series_id, kill_at in ((1, 6), (2, None)):
            series = make_series(series_id=series_id, nimages=12)
            source = ImageSource(series, n_slots=6)
            try:
                mux.start_series(series)
                pool = fw._pool
                pools.append(pool)
                started = time.monotonic()
                for i in range(12):
                    if i == kill_at:
                        deadline = time.monotonic() + 30  # the 6th image is handed to the sink (second file)
                        while fw._series.written < kill_at and time.monotonic() < deadline:
                            time.sleep(0.01)
                        victim = pool._processes[1]  # vds: file 2 is written by worker 1
                        os.kill(victim.pid, signal.SIGKILL)
                        while pool.alive() and time.monotonic() < deadline:
                            time.sleep(0.01)
                        assert not pool.alive()
                    mux.publish(source.image(i))
                mux.end_series(series, aborted=False)
                took = time.monotonic() - started
                deadline = time.monotonic() + 30
                while not source.all_free() and time.monotonic() < deadline:
                    time.sleep(0.01)
                assert source.all_free()  # the dead worker's copies gave their slots back
            finally:
                source.close()
            names = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(f"s_{series_id}_"))
            if kill_at is not None:
                assert took < 20, took
                assert fw.state == "error"
                assert any("filewriter worker 1" in e and "died (exit code -9)" in e for e in fw.errors), fw.errors
                assert names == ["s_1_data_000001.h5", "s_1_master.h5"], names
                with h5py.File(tmp_path / "s_1_data_000001.h5") as f:
                    assert f["/entry/data/data"].shape[0] == 4
                    assert all(np.array_equal(f["/entry/data/data"][i], make_pixels(series, i)) for i in range(4))
            else:
                assert pools[1] is not pools[0] and pool.alive()  # a new pool for the new series
                assert names == ["s_2_data_000001.h5", "s_2_data_000002.h5", "s_2_data_000003.h5", "s_2_master.h5"]
                for k in range(3):
                    with h5py.File(tmp_path / names[k]) as f:
                        d = f["/entry/data/data"]
                        assert d.shape[0] == 4
                        assert all(np.array_equal(d[i], make_pixels(series, 4 * k + i)) for i in range(4))
            assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".part")]
    finally:
        fw.close()
