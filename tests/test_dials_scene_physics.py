"""The MX scene's physics against DIALS' own libraries as oracles (cctbx for the space groups, dxtbx for the
sensor's parallax), and the Kabsch rocking width, the centroid scatter and the resolution taper it reports."""

from __future__ import annotations

import json
import math
import subprocess
from pathlib import Path

import numpy as np
import pytest
from analysis_support import LYSOZYME, mx_experiment
from test_dials_mx import dials_env  # noqa: F401  (the fixture: Debian's DIALS, installed on demand)

from opendcu.analysis.crystal import UnitCell, miller_indices
from opendcu.simulator.scenes.symmetry import SPACE_GROUPS, space_group

CELLS = {
    "triclinic": (50.0, 60.0, 70.0, 80.0, 85.0, 95.0),
    "monoclinic": (50.0, 60.0, 70.0, 90.0, 105.0, 90.0),
    "orthorhombic": (50.0, 60.0, 70.0, 90.0, 90.0, 90.0),
    "tetragonal": LYSOZYME,
}

CCTBX_SCRIPT = r"""
import json, sys
import numpy as np
from cctbx import crystal, miller
from cctbx.array_family import flex
job = json.load(open(sys.argv[1]))
out = {}
for name, item in job.items():
    hkl = np.load(item["hkl"])
    symmetry = crystal.symmetry(unit_cell=item["cell"], space_group_symbol=item["symbol"])
    ms = miller.set(symmetry, flex.miller_index([tuple(int(v) for v in r) for r in hkl]), anomalous_flag=False)
    asu = ms.map_to_asu().indices()
    out[name] = {"asu": [list(i) for i in asu], "absent": list(ms.sys_absent_flags().data()),
                 "laue": symmetry.space_group().build_derived_laue_group().type().lookup_symbol()}
print(json.dumps(out))
"""
CCTBX_SYMBOLS = {
    "P1": "P 1",
    "P2": "P 1 2 1",
    "P21": "P 1 21 1",
    "C2": "C 1 2 1",
    "P222": "P 2 2 2",
    "P212121": "P 21 21 21",
    "P4": "P 4",
    "P422": "P 4 2 2",
    "P41212": "P 41 21 2",
    "P43212": "P 43 21 2",
    "I422": "I 4 2 2",
}
CCTBX_LAUE = {"-1": "P -1", "2/m": "P 1 2/m 1", "mmm": "P m m m", "4/m": "P 4/m", "4/mmm": "P 4/m m m"}


@pytest.mark.integration  # Debian's DIALS (installed on demand) as the oracle
def test_space_groups_agree_with_cctbx(tmp_path: Path, dials_env: dict[str, str]) -> None:
    job = {}
    for name, group in SPACE_GROUPS.items():
        cell = UnitCell.from_sequence(CELLS[group.system])
        hkl = miller_indices(cell, 4.0, group.centring)
        np.save(tmp_path / f"{name}.npy", hkl)
        job[name] = {
            "hkl": str(tmp_path / f"{name}.npy"),
            "cell": list(CELLS[group.system]),
            "symbol": CCTBX_SYMBOLS[name],
        }
    (tmp_path / "job.json").write_text(json.dumps(job))
    (tmp_path / "oracle.py").write_text(CCTBX_SCRIPT)
    done = subprocess.run(
        ["/usr/bin/python3", str(tmp_path / "oracle.py"), str(tmp_path / "job.json")],
        env=dials_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    oracle = json.loads(done.stdout.strip().splitlines()[-1])
    for name, group in SPACE_GROUPS.items():
        hkl = np.load(tmp_path / f"{name}.npy")
        theirs = oracle[name]
        assert theirs["laue"] == CCTBX_LAUE[group.laue_group], name
        np.testing.assert_array_equal(group.absent(hkl), np.array(theirs["absent"], bool), err_msg=name)
        # the same partition into sets of equivalents: our key <-> cctbx's asymmetric-unit index
        ours = group.asu_keys(hkl)
        asu = np.array(theirs["asu"])
        _u, by_ours = np.unique(ours, return_inverse=True)
        _u, by_theirs = np.unique(asu, axis=0, return_inverse=True)
        by_theirs = by_theirs.reshape(-1)
        pairs = set(zip(by_ours.tolist(), by_theirs.tolist(), strict=True))
        assert len(pairs) == by_ours.max() + 1 == by_theirs.max() + 1, name


def test_equivalent_reflections_share_their_intensity_and_absences_are_absent() -> None:
    scene = mx_experiment(seed=2, d_min=3.0).scene
    group = space_group("P 43 21 2")
    assert scene.group.name == "P43212" and scene.truth(1).space_group == "P43212"
    keys = group.asu_keys(scene.hkl)
    order = np.argsort(keys)
    k, i = keys[order], scene.intensity[order]
    same = k[1:] == k[:-1]
    assert same.sum() > 1000 and np.allclose(i[1:][same], i[:-1][same], rtol=1e-9, atol=0)
    assert not group.absent(scene.hkl).any()
    # l = 4n on 00l and h even on h00 are there (not all of them absent)
    axial = scene.hkl[(scene.hkl[:, 0] == 0) & (scene.hkl[:, 1] == 0)]
    assert len(axial) > 0 and np.all(axial[:, 2] % 4 == 0)
    with pytest.raises(ValueError):
        mx_experiment(d_min=3.0, cell=[50, 60, 70, 90, 90, 90], space_group="P43212")
    with pytest.raises(ValueError):
        mx_experiment(d_min=3.0, space_group="P6122")


def test_kabsch_rocking_width_and_lorentz_factor() -> None:
    """sigma_phi = sigma_m / zeta with Kabsch's zeta = e . (s1^ x s0^) / |s1^ x s0^|: no sin 2theta in it (a 0.1 deg
    crystal rocks over ~0.1 deg at any angle for reflections far from the axis)."""
    ex = mx_experiment(seed=4, distance=0.09, d_min=2.5, mosaicity_deg=0.1, beam_divergence_deg=0.02)
    scene = ex.scene
    t = scene.truth(20)
    lam = t.wavelength_a
    s1 = ex.geometry.lab_vectors(t.x_ideal, t.y_ideal)
    s1 = s1 / np.linalg.norm(s1, axis=1)[:, None]
    cross = np.cross(s1, [0.0, 0.0, 1.0])
    zeta = np.abs(cross @ t.rotation_axis) / np.linalg.norm(cross, axis=1)
    sigma_m = math.hypot(0.1, 0.02)
    far = zeta > 0.2
    assert far.sum() > 100
    np.testing.assert_allclose(t.rocking_width_deg[far], sigma_m / zeta[far], rtol=1e-6)
    # across the detector the width does not follow the Bragg angle: median ~ sigma_m / <zeta>, well under 0.3 deg
    assert np.median(t.rocking_width_deg[far]) < 0.25
    assert lam == 1.0


@pytest.mark.integration  # Debian's DIALS (installed on demand) as the oracle
def test_centroid_scatter_and_parallax_match_dxtbx(tmp_path: Path, dials_env: dict[str, str]) -> None:
    """Spots sit where dxtbx's parallax model puts them (mean depth of the absorbed photons) plus a random
    offset per reflection of 0.2-0.5 px rms, as observed centroids of real data scatter."""
    plain = mx_experiment(seed=5, distance=0.1, d_min=2.5, beam_divergence_deg=0.0)
    t = plain.scene.truth(10)
    shift = np.hypot(t.x - t.x_ideal, t.y - t.y_ideal)
    script = tmp_path / "parallax.py"
    script.write_text(r"""
import json, sys
import numpy as np
from cctbx.eltbx import attenuation_coefficient
t = json.load(open(sys.argv[1]))
mu = attenuation_coefficient.get_table("Si").mu_at_angstrom(t["wavelength"]) / 10.0  # per mm
r = np.hypot(np.array(t["x"]) - t["bx"], np.array(t["y"]) - t["by"]) * 0.075
cos_t = t["distance"] / np.hypot(r, t["distance"])
t0 = 0.45
o = 1.0 / mu - (t0 / cos_t + 1.0 / mu) * np.exp(-mu * t0 / cos_t)  # dxtbx's parallax-corrected depth (mm)
print(json.dumps({"shift_px": list(o * np.sqrt(1 - cos_t**2) / 0.075), "mu": mu}))
""")
    bx, by = plain.geometry.beam_center_px
    (tmp_path / "t.json").write_text(
        json.dumps(
            {
                "x": t.x_ideal.tolist(),
                "y": t.y_ideal.tolist(),
                "bx": bx,
                "by": by,
                "distance": 100.0,
                "wavelength": t.wavelength_a,
            }
        )
    )
    done = subprocess.run(
        ["/usr/bin/python3", str(script), str(tmp_path / "t.json")],
        env=dials_env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    oracle = json.loads(done.stdout.strip().splitlines()[-1])
    dxtbx_shift = np.array(oracle["shift_px"])
    # dxtbx integrates the depth over all photons entering; the spot's centroid is the mean over those absorbed:
    # ours = dxtbx's / absorbed fraction, with our absorption length within 15 % of cctbx's table
    r = np.hypot(t.x_ideal - bx, t.y_ideal - by) * 75e-6
    cos_t = 0.1 / np.hypot(r, 0.1)
    absorbed = -np.expm1(-oracle["mu"] * 0.45 / cos_t)
    far = r > 0.01
    assert far.sum() > 100
    ratio = shift[far] * absorbed[far] / dxtbx_shift[far]
    assert np.all(np.abs(ratio - 1) < 0.15), (ratio.min(), ratio.max())
    assert shift[far].max() > 0.3  # a visible effect at high angle (~0.5 px at 27 deg)

    jittered = mx_experiment(seed=5, distance=0.1, d_min=2.5, parallax=False)
    tj = jittered.scene.truth(10)
    scatter = np.hypot(tj.x - tj.x_ideal, tj.y - tj.y_ideal)
    assert 0.2 < math.sqrt(np.mean(scatter**2)) < 0.5


def test_resolution_fades_smoothly_past_d_min() -> None:
    scene = mx_experiment(seed=6, d_min=2.5).scene
    d = scene.cell.d_spacing(scene.hkl)
    assert d.min() < 2.4  # reflections past d_min are made...
    mean = lambda lo, hi: scene.intensity[(d >= lo) & (d < hi)].mean()  # noqa: E731
    # ...fading: no step at d_min, and an order of magnitude down within 0.15 A past it
    assert 0.5 < mean(2.45, 2.5) / mean(2.5, 2.55) < 1.1
    assert mean(2.3, 2.35) < 0.1 * mean(2.5, 2.55)
