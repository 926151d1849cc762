"""Debian's DIALS processes a rotation series recorded through `dcu serve` as if it came from a real EIGER2.

The session fixture installs DIALS (`python3-dials`) and the HDF5 bitshuffle filter (`bitshuffle`) from Debian
when `dials.import` is missing and the tests run as root (CI does); it fails loudly otherwise. The series: an
EIGER2 1M, a tetragonal crystal in P4(3)2(1)2 (the MX scene's default, as lysozyme), 20 images of 0.5 deg over two
data files (so the master has the virtual dataset next to the links). DIALS runs import, find_spots, index,
refine, integrate, symmetry and scale; the numbers asserted come from its own outputs (tests/dials_metrics.py
reads them with DIALS' Python).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import debian
import pytest
from analysis_support import LYSOZYME
from conftest import start_dcu

D = "/detector/api/1.8.0"
#: 0.1 s images with 2.5x the scene's default fluxes: the counts of 0.25 s images in 40 % of the time
COUNT_TIME = 0.0999
SCENE = {
    "kind": "mx",
    "d_min": 2.2,
    "cell": list(LYSOZYME),
    "crystal_seed": 11,
    "spot_flux": 5e4,
    "background_flux": 25.0,
}
DEBIAN_PYTHON = "/usr/bin/python3"
HDF5_PLUGINS = "/usr/lib/x86_64-linux-gnu/hdf5/serial/plugins"
NIMAGES, OSCILLATION = 20, 0.5
HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def dials_env() -> dict[str, str]:
    """The environment DIALS' commands run in (Debian's Python, the bitshuffle filter found by HDF5)."""
    if shutil.which("dials.import", path="/usr/bin") is None or not Path(HDF5_PLUGINS, "libh5bshuf.so").exists():
        if os.geteuid() != 0:
            pytest.fail(
                "DIALS is not installed and the tests do not run as root: apt-get install -y python3-dials bitshuffle"
            )
        done = debian.install("dials")
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "HDF5_PLUGIN"))}
    env.update(PATH="/usr/bin:/bin", HDF5_PLUGIN_PATH=HDF5_PLUGINS, OMP_NUM_THREADS="1")
    return env


def run_dials(env: dict[str, str], workdir: Path, program: str, *args: str, timeout: float = 900) -> str:
    done = subprocess.run(
        [f"/usr/bin/{program}", *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{program} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def record_series(tmp_path: Path) -> Path:
    """A rotation series through `dcu serve`: returns its master file."""
    server = start_dcu(tmp_path, detector="eiger2-1m", extra=["--scene", json.dumps(SCENE)], timeout=900)
    try:
        with server.client(timeout=300) as http:
            assert http.put(f"{D}/command/initialize").status_code == 200
            detector = {
                "nimages": NIMAGES,
                "ntrigger": 1,
                "trigger_mode": "ints",
                "frame_time": 0.1,
                "count_time": COUNT_TIME,
                "auto_summation": False,
                "omega_start": 0.0,
                "omega_increment": OSCILLATION,
                "detector_distance": 0.1,
                "wavelength": 1.0,
                "beam_center_x": 514.37,
                "beam_center_y": 530.79,
            }
            for key, value in detector.items():
                r = http.put(f"{D}/config/{key}", json={"value": value})
                assert r.status_code == 200, (key, r.text)
            for key, value in {"mode": "enabled", "nimages_per_file": NIMAGES // 2}.items():
                assert http.put(f"/filewriter/api/1.8.0/config/{key}", json={"value": value}).status_code == 200
            series_id = http.put(f"{D}/command/arm").json()["sequence id"]
            assert http.put(f"{D}/command/trigger").status_code == 200
            names = {
                f"series_{series_id}_master.h5",
                f"series_{series_id}_data_000001.h5",
                f"series_{series_id}_data_000002.h5",
            }
            deadline = time.monotonic() + 600
            while time.monotonic() < deadline:
                files = set(http.get("/filewriter/api/1.8.0/files/").json())
                if names <= files and http.get("/filewriter/api/1.8.0/status/state").json()["value"] == "ready":
                    break
                time.sleep(0.5)
            assert names <= files, files
            assert http.put(f"{D}/command/disarm").status_code == 200
    finally:
        server.stop()
    return server.data_dir / f"series_{series_id}_master.h5"


@pytest.mark.integration
@pytest.mark.timeout(3600)  # installing DIALS (first run), recording 20 1M images and seven DIALS programs
def test_dials_processes_a_rotation_series(tmp_path: Path, dials_env: dict[str, str]) -> None:
    master = record_series(tmp_path)
    work = tmp_path / "dials"
    work.mkdir()
    run_dials(dials_env, work, "dials.import", str(master))
    run_dials(dials_env, work, "dials.find_spots", "imported.expt", "nproc=2")
    run_dials(dials_env, work, "dials.index", "imported.expt", "strong.refl")
    run_dials(dials_env, work, "dials.refine", "indexed.expt", "indexed.refl")
    run_dials(
        dials_env,
        work,
        "dials.integrate",
        "refined.expt",
        "refined.refl",
        "nproc=2",
        "debug.output=True",
        "debug.separate_files=False",
    )  # keep the shoeboxes: which pixels it used
    run_dials(dials_env, work, "dials.symmetry", "integrated.expt", "integrated.refl")
    scale_log = run_dials(dials_env, work, "dials.scale", "symmetrized.expt", "symmetrized.refl")
    done = subprocess.run(
        [DEBIAN_PYTHON, str(HERE / "dials_metrics.py"), str(work), str(master)],
        env=dials_env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    m = json.loads(done.stdout.strip().splitlines()[-1])
    cc_half = re.findall(r"CC half\s+([0-9.]+)", scale_log)
    m["cc_half_overall"] = float(cc_half[0]) if cc_half else None
    (tmp_path / "dials_metrics.json").write_text(json.dumps(m, indent=1))
    print("DIALS:", json.dumps(m))

    assert m["images"] == NIMAGES  # every image through the virtual dataset, both data files
    assert m["format_class"].startswith("FormatNXmx")
    assert m["mask_shape"] == [1062, 1028] and m["our_masked"] > 0
    assert m["mask_differences"] == 0 and m["dials_masked"] == m["our_masked"]
    assert m["strong"] > 500 and m["indexed"] >= 0.9 * m["strong"], m
    for got, want in zip(m["symmetrized_cell"], LYSOZYME, strict=True):
        assert abs(got / want - 1) < 0.005, (m["symmetrized_cell"], LYSOZYME)
    assert m["laue_group"] == "P 4/m m m", m
    assert m["integrated"] > 1000
    assert m["integrated_pixels_on_masked"] == 0 and m["integrated_negative_pixels"] == 0
