"""Geometry and radial integration against pyFAI (the oracle: its no-pixel-splitting engines)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from pyFAI.detectors import Detector
from pyFAI.integrator.azimuthal import AzimuthalIntegrator

from opendcu.analysis.geometry import Geometry
from opendcu.analysis.integrate import IntegrationSettings, RadialIntegrator
from opendcu.geometry import DetectorLayout, get_model
from opendcu.simulator.scenes import make_scene

warnings.filterwarnings("ignore", category=DeprecationWarning)

# several geometries: untilted, tilted, off-centre, another wavelength, beam centre outside the detector
GEOMETRIES = [
    dict(dist=0.2, poni1=1100.3 * 75e-6, poni2=1030.7 * 75e-6, wavelength=1.0e-10),
    dict(dist=0.12, poni1=500.3 * 75e-6, poni2=600.7 * 75e-6, rot1=0.05, rot2=-0.03, rot3=0.4, wavelength=0.9e-10),
    dict(dist=0.35, poni1=-40.0 * 75e-6, poni2=300.2 * 75e-6, rot2=0.2, wavelength=1.5e-10),
    dict(dist=0.08, poni1=20.5 * 75e-6, poni2=1000.9 * 75e-6, rot1=-0.1, rot3=1.2, wavelength=0.7e-10),
]


def assert_relative(ours: np.ndarray, ref: np.ndarray, tolerance: float = 1e-6) -> None:
    """|ours - ref| <= tolerance |ref| element by element (0 == 0 passes)."""
    assert ours.shape == ref.shape
    worst = np.abs(ours - ref) - tolerance * np.abs(ref)
    assert worst.max() <= 0, f"relative difference above {tolerance}: {np.nanmax(np.abs(ours / ref - 1))}"


def pyfai_integrator(g: Geometry) -> AzimuthalIntegrator:
    return AzimuthalIntegrator(
        dist=g.dist,
        poni1=g.poni1,
        poni2=g.poni2,
        rot1=g.rot1,
        rot2=g.rot2,
        rot3=g.rot3,
        detector=Detector(g.pixel1, g.pixel2, max_shape=g.shape),
        wavelength=g.wavelength,
    )


@pytest.fixture(scope="module")
def frame_1m() -> tuple[np.ndarray, np.ndarray]:
    """A 1M-sized uint32 frame with Poisson counts, the gaps at the error value, and a few lost pixels."""
    layout = DetectorLayout(get_model("eiger2-1m"))
    rng = np.random.default_rng(7)
    image = rng.poisson(rng.uniform(0.5, 50, layout.shape)).astype(np.uint32)
    image[layout.gap_mask] = 0xFFFFFFFF
    image[300:304, 100:600] = 0xFFFFFFFF  # a lost packet: error value outside the static mask
    return image, layout.gap_mask.copy()  # pyFAI needs a writable mask


@pytest.mark.parametrize("params", GEOMETRIES)
def test_pixel_geometry_equals_pyfai(params: dict) -> None:
    g = Geometry(shape=(300, 260), **params)
    ai = pyfai_integrator(g)
    arrays = g.pixel_arrays()
    assert np.allclose(arrays["2th"], ai.center_array(unit="2th_rad"), rtol=0, atol=1e-12)
    assert np.allclose(arrays["chi"], ai.center_array(unit="chi_rad"), rtol=0, atol=1e-9)
    assert np.allclose(arrays["solid_angle"], ai.solidAngleArray(), rtol=1e-6, atol=0)
    from opendcu.analysis.geometry import polarization

    assert np.allclose(
        polarization(arrays["2th"], arrays["chi"], 0.95, 0.3), ai.polarization(factor=0.95, axis_offset=0.3), rtol=1e-6
    )


@pytest.mark.parametrize("params", GEOMETRIES)
def test_project_inverts_lab_vectors(params: dict) -> None:
    g = Geometry(shape=(300, 260), **params)
    x, y = np.array([0.0, 17.25, 259.9]), np.array([3.5, 150.0, 299.0])
    px, py, hits = g.project(g.lab_vectors(x, y) * 3.7)
    assert hits.all() and np.allclose(px, x) and np.allclose(py, y)


def test_poni_round_trip_and_versions() -> None:
    g = Geometry(
        shape=(2162, 2068),
        dist=0.2,
        poni1=0.0825225,
        poni2=0.0773025,
        rot1=0.01,
        rot2=-0.02,
        rot3=0.3,
        wavelength=1e-10,
    )
    assert Geometry.from_poni(g.to_poni()) == g
    v21 = (
        "# Nota: C-Order\nponi_version: 2.1\nDetector: Eiger2_4M\n"
        'Detector_config: {"pixel1": 7.5e-05, "pixel2": 7.5e-05, "orientation": 3}\n'
        "Distance: 0.2\nPoni1: 0.08252249999999998\nPoni2: 0.0773025\nRot1: 0\nRot2: 0\nRot3: 0\nWavelength: 1e-10\n"
    )
    parsed = Geometry.from_poni(v21, shape=(2162, 2068))
    assert parsed.beam_center_px == pytest.approx((1030.7, 1100.3))
    v1 = "PixelSize1: 0.000172\nPixelSize2: 0.000172\nDistance: 0.3\nPoni1: 0.01\nPoni2: 0.02\nWavelength: 1.2e-10\n"
    assert Geometry.from_poni(v1, shape=(100, 100)).pixel1 == 0.000172
    for bad in ("Distance 0.2", "Distance: x\nPoni1: 0\nPoni2: 0\nWavelength: 1e-10", "Poni1: 0\nPoni2: 0"):
        with pytest.raises(ValueError):
            Geometry.from_poni(bad, shape=(10, 10))


@pytest.mark.parametrize("params", GEOMETRIES)
@pytest.mark.parametrize("unit", ["q_nm^-1", "q_A^-1", "2th_deg", "r_mm", "d*2_A^-2"])
def test_profile_equals_pyfai_no_split(frame_1m, params: dict, unit: str) -> None:
    """Full radial range: every bin equal to pyFAI's ("no", "csr") and ("no", "histogram") within 1e-6."""
    image, mask = frame_1m
    g = Geometry(shape=image.shape, **params)
    ai = pyfai_integrator(g)
    for polarization_factor in (None, 0.95):
        settings = IntegrationSettings(npt=700, unit=unit, polarization_factor=polarization_factor)
        ours = RadialIntegrator(g, settings, mask=mask).integrate(image, invalid_value=0xFFFFFFFF)
        assert ours.count.sum() == (image != 0xFFFFFFFF).sum()
        for method in (("no", "csr", "cython"), ("no", "histogram", "cython")):
            ref = ai.integrate1d(
                image.astype(np.float64),
                700,
                unit=unit,
                method=method,
                mask=mask,
                dummy=float(0xFFFFFFFF),
                delta_dummy=0.5,
                polarization_factor=polarization_factor,
                correctSolidAngle=True,
                error_model="poisson",
            )
            filled = ref.count > 0
            assert np.array_equal(ours.count, ref.count)
            assert np.allclose(ours.radial, ref.radial, rtol=1e-12, atol=0)
            assert_relative(ours.intensity[filled], ref.intensity[filled])
            assert_relative(ours.sigma[filled], ref.sigma[filled])


@pytest.mark.parametrize("params", GEOMETRIES[:2])
def test_profile_with_radial_range_equals_pyfai(frame_1m, params: dict) -> None:
    """An explicit range: every bin but the first equal; pyFAI's first bin also takes the pixels within one bin
    width below the range (it truncates towards zero), ours does not."""
    image, mask = frame_1m
    g = Geometry(shape=image.shape, **params)
    full = RadialIntegrator(g, IntegrationSettings(unit="q_A^-1"), mask=mask)
    lo, hi = full.radial_range[0] + 0.3, full.radial_range[1] * 0.8
    settings = IntegrationSettings(npt=500, unit="q_A^-1", radial_range=(lo, hi), polarization_factor=0.99)
    integrator = RadialIntegrator(g, settings, mask=mask)
    ours = integrator.integrate(image, invalid_value=0xFFFFFFFF)
    ref = pyfai_integrator(g).integrate1d(
        image.astype(np.float64),
        500,
        unit="q_A^-1",
        method=("no", "csr", "cython"),
        mask=mask,
        dummy=float(0xFFFFFFFF),
        delta_dummy=0.5,
        radial_range=(lo, hi),
        polarization_factor=0.99,
    )
    assert np.array_equal(ours.count[1:], ref.count[1:])
    assert_relative(ours.intensity[1:], ref.intensity[1:])
    width = (hi * (1 + np.finfo(np.float32).eps) - lo) / 500
    q = g.radial_from_2th(g.pixel_arrays()["2th"], "q_A^-1")
    below = ((q >= lo - width) & (q < lo) & ~mask & (image != 0xFFFFFFFF)).sum()
    assert ref.count[0] == ours.count[0] + below


@pytest.mark.parametrize(
    "params, azimuth_range",
    [(GEOMETRIES[0], None), (GEOMETRIES[0], (-170.0, -100.0)), (GEOMETRIES[1], None), (GEOMETRIES[1], (-90.0, 45.0))],
)
def test_cake_equals_pyfai(frame_1m, params: dict, azimuth_range) -> None:
    image, mask = frame_1m
    g = Geometry(shape=image.shape, **params)
    settings = IntegrationSettings(npt=200, npt_azim=36, azimuth_range=azimuth_range, polarization_factor=0.9)
    ours = RadialIntegrator(g, settings, mask=mask).integrate(image, invalid_value=0xFFFFFFFF)
    ref = pyfai_integrator(g).integrate2d(
        image.astype(np.float64),
        200,
        36,
        unit="q_A^-1",
        method=("no", "csr", "cython"),
        mask=mask,
        dummy=float(0xFFFFFFFF),
        delta_dummy=0.5,
        azimuth_range=azimuth_range,
        polarization_factor=0.9,
    )
    assert ours.intensity.shape == ref.intensity.shape == (36, 200)
    assert np.allclose(ours.azimuthal, ref.azimuthal, rtol=0, atol=1e-4)  # pyFAI reports chi centres in float32
    rows = slice(1, None) if azimuth_range else slice(None)  # explicit range: pyFAI's first chi bin, see above
    filled = ref.count[rows] > 0
    assert filled.sum() > 1000
    assert np.array_equal(ours.count[rows], ref.count[rows])
    assert_relative(ours.intensity[rows][filled], ref.intensity[rows][filled])


def test_integration_reads_uint16_and_counts_lost_pixels() -> None:
    g = Geometry.from_beam_center((200, 300), 150.2, 99.7, 0.05, 1.0)
    image = np.full((200, 300), 7, np.uint16)
    image[10, :] = 0xFFFF
    integrator = RadialIntegrator(g, IntegrationSettings(npt=50, solid_angle=False))
    profile = integrator.integrate(image, invalid_value=0xFFFF)
    assert profile.count.sum() == 200 * 300 - 300
    assert np.allclose(profile.intensity[profile.count > 0], 7.0)
    assert np.allclose(profile.mean_counts[profile.count > 0], 7.0)
    with pytest.raises(ValueError):
        integrator.integrate(np.zeros((10, 10), np.uint16))


def test_bad_settings_are_rejected() -> None:
    g = Geometry.from_beam_center((20, 30), 15, 10, 0.05, 1.0)
    for bad in (dict(unit="furlong"), dict(npt=0), dict(radial_range=(2.0, 1.0)), dict(polarization_factor=3.0)):
        with pytest.raises(ValueError):
            RadialIntegrator(g, IntegrationSettings(**bad))
    with pytest.raises(ValueError):
        RadialIntegrator(g, mask=np.zeros((5, 5)))


def test_powder_scene_rings_sit_at_lab6_d_spacings() -> None:
    """The powder scene's rings, integrated, peak at the LaB6 d-spacings pyFAI's calibrant table gives."""
    from pyFAI.calibrant import get_calibrant

    model = get_model("eiger2-1m")
    h, w = model.shape
    spec = {
        "kind": "powder",
        "calibrant": "LaB6",
        "experiment": {
            "wavelength_a": 1.0,
            "distance_m": 0.1,
            "beam_center_x_px": w / 2,
            "beam_center_y_px": h / 2,
            "count_time_s": 1.0,
        },
    }
    scene = make_scene(model, 1, spec)
    image = np.random.default_rng(2).poisson(scene.expected(1, slice(0, h), slice(0, w))).astype(np.uint32)
    g = Geometry.from_beam_center(model.shape, w / 2, h / 2, 0.1, 1.0)
    profile = RadialIntegrator(
        g, IntegrationSettings(npt=3000, unit="2th_deg"), mask=DetectorLayout(model).gap_mask
    ).integrate(image)
    intensity = np.nan_to_num(profile.intensity)
    expected_d = sorted(get_calibrant("LaB6").dSpacing, reverse=True)[:6]
    reach = g.radial_from_2th(np.radians(profile.radial[profile.count > 0].max()), "d_A")
    for d in expected_d:
        if d < reach:
            continue
        tth = np.degrees(g.radial_to_2th(d, "d_A"))
        near = np.abs(profile.radial - tth) < 0.3
        peak = profile.radial[near][np.argmax(intensity[near])]
        assert abs(peak - tth) < 0.03, (d, peak, tth)  # within the ring width, bins are 0.0075 deg
        assert intensity[near].max() > 3 * np.median(intensity[profile.count > 0])
