"""The MX and powder scenes: physics of the truth they report and the Scene protocol."""

from __future__ import annotations

import math

import numpy as np
import pytest
from analysis_support import mx_experiment

from opendcu.analysis.crystal import rotation_about
from opendcu.geometry import DetectorLayout, get_model
from opendcu.simulator.physics import render_module_frame
from opendcu.simulator.scenes import SCENES, make_scene
from opendcu.simulator.scenes.powder import calibrant_rings


@pytest.fixture(scope="module")
def mx():
    return mx_experiment(seed=4, distance=0.09, d_min=2.5)


def test_truth_spots_satisfy_the_ewald_condition_and_braggs_law(mx) -> None:
    scene = mx.scene
    truth = scene.truth(17)
    lam = truth.wavelength_a
    s0 = np.array([0.0, 0.0, 1.0 / lam])
    r = np.einsum("nij,nj->ni", rotation_about(truth.rotation_axis, np.radians(truth.phi_deg)), truth.hkl @ truth.A.T)
    s1 = s0 + r
    assert np.allclose(np.linalg.norm(s1, axis=1), 1 / lam, rtol=1e-12)
    # the spot lies where s1 meets the detector, at the Bragg angle of its d-spacing
    x, y, _ = truth.geometry.project(s1)
    assert np.allclose(x, truth.x_ideal) and np.allclose(y, truth.y_ideal)
    tth, _ = truth.geometry.two_theta_chi(truth.x_ideal, truth.y_ideal)
    assert np.allclose(np.sin(tth / 2), lam / (2 * truth.d), rtol=1e-9)
    assert truth.d.min() >= truth.d_min


def test_partialities_of_a_reflection_add_up_over_frames(mx) -> None:
    """A reflection crossing the sphere mid-rotation is recorded over several frames (rocking width sigma_m/zeta,
    Kabsch) with partialities summing to 1."""
    scene = mx.scene
    per_hkl: dict[tuple[int, int, int, float], list[float]] = {}
    for frame in range(80, 151):
        t = scene.truth(frame)
        for hkl, phi, p, photons, width in zip(
            map(tuple, t.hkl), t.phi_deg, t.partiality, t.photons, t.rocking_width_deg, strict=True
        ):
            total = per_hkl.setdefault((*hkl, round(phi, 6)), [0.0, 0.0, width])
            total[0] += p
            total[1] += photons
    # crossing well inside frames 80..150 (7.9..15.0 deg), rocking within them (+-5 sigma), and bright enough
    # that the 0.05-photon cut of the faintest tails does not matter
    inside = np.array(
        [
            p
            for (h, k, l, phi), (p, photons, width) in per_hkl.items()
            if 10.5 < phi < 12.5 and photons > 100 and width < 0.5
        ]
    )
    assert len(inside) > 50
    assert np.allclose(inside, 1.0, atol=3e-3)


def test_spot_photons_are_conserved_and_regions_agree(mx) -> None:
    scene = mx.scene
    h, w = mx.model.shape
    full = scene.expected(5, slice(0, h), slice(0, w)).astype(np.float64)
    truth = scene.truth(5)
    background = scene.background_image(slice(0, h), slice(0, w))
    inside = (truth.x > 6) & (truth.x < w - 6) & (truth.y > 6) & (truth.y < h - 6)
    assert inside.sum() > 100
    # every photon of a spot inside lands on the image (the stamps cover +-4 sigma); spots at the edges lose some
    excess = (full - background).sum()
    assert truth.photons[inside].sum() * (1 - 1e-4) <= excess <= truth.photons.sum() * (1 + 1e-5)
    # a module region equals the same part of the full image (modules render their own regions)
    layout = DetectorLayout(mx.model)
    rows, cols = layout.module_slices(1)
    assert np.allclose(scene.expected(5, rows, cols), full[rows, cols], rtol=1e-6)
    # and the module physics turns it into counts near it
    raw = render_module_frame(scene, layout, 1, 5, seed=4)
    assert abs(raw.astype(float).sum() / full[rows, cols].sum() - 1) < 0.01


def test_scene_centroid_is_the_photon_centroid(mx) -> None:
    """The stamps are integrated exactly over the pixels: the photon-weighted centroid is the spot position."""
    scene = mx.scene
    truth = scene.truth(9)
    i = int(np.argmax(np.where(truth.findable, truth.photons, 0)))
    cx, cy = truth.x[i], truth.y[i]
    rows = slice(int(cy) - 6, int(cy) + 7)
    cols = slice(int(cx) - 6, int(cx) + 7)
    spot = scene.expected(9, rows, cols).astype(float) - scene.background_image(rows, cols)
    yy, xx = np.mgrid[rows, cols] + 0.5
    assert (spot * xx).sum() / spot.sum() == pytest.approx(cx, abs=0.02)
    assert (spot * yy).sum() / spot.sum() == pytest.approx(cy, abs=0.02)


def test_stills_and_crystal_seed() -> None:
    still = mx_experiment(seed=3, omega_increment=0.0, distance=0.09, d_min=2.5)
    assert len(still.scene.truth(1)) > 50
    assert np.array_equal(still.scene.truth(1).x, still.scene.truth(2).x)  # a still does not rotate
    a = mx_experiment(seed=1, crystal_seed=42, d_min=3.0).scene
    b = mx_experiment(seed=2, crystal_seed=42, d_min=3.0).scene
    assert np.allclose(a.U, b.U)


def test_registered_and_bad_parameters_are_value_errors() -> None:
    assert {"mx", "powder"} <= set(SCENES)
    model = get_model("eiger2-500k")
    for spec in (
        {"kind": "mx", "d_min": -1},
        {"kind": "mx", "cell": [1, 2]},
        {"kind": "mx", "bogus": 1},
        {"kind": "mx", "rotation_axis": [0, 0, 0]},
        {"kind": "mx", "centring": "Q"},
        {"kind": "powder", "calibrant": "unobtainium"},
        {"kind": "powder", "ring_flux": -1},
    ):
        with pytest.raises(ValueError):
            make_scene(model, 1, spec)


def test_calibrant_rings() -> None:
    lab6 = calibrant_rings("LaB6")
    assert lab6[0].d == pytest.approx(4.156826) and lab6[1].d == pytest.approx(2.93932, abs=1e-5)
    assert max(r.intensity for r in lab6) == 100.0
    agbh = calibrant_rings("AgBh")
    assert agbh[0].d == pytest.approx(58.38) and agbh[1].d == pytest.approx(29.19)
    model = get_model("eiger2-500k")
    scene = make_scene(
        model,
        1,
        {
            "kind": "powder",
            "calibrant": "AgBh",
            "experiment": {"wavelength_a": 1.0, "distance_m": 2.0, "beam_center_x_px": 514, "beam_center_y_px": 256},
        },
    )
    tth = scene.ring_two_theta_deg()
    assert tth[0] == pytest.approx(math.degrees(2 * math.asin(1.0 / (2 * 58.38))))
    image = scene.expected(1, slice(0, 512), slice(0, 1028))
    assert image.max() > 5 * np.median(image)
