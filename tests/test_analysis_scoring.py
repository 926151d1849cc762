"""MX image scoring: resolution estimate against the simulated limit, ice rings, hit/blank, the frame chain."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_support import ERROR32, LYSOZYME, mx_experiment

from opendcu.analysis.crystal import UnitCell, misorientation_deg
from opendcu.analysis.frame import AnalysisSettings, FrameAnalyzer
from opendcu.analysis.index import IndexingSettings
from opendcu.analysis.scoring import ICE_RING_D, ShellCoverage, estimate_d_min, in_ice_ring, score_image
from opendcu.analysis.spots import SpotFinder
from opendcu.testing.simulate import poisson_image

# (detector, simulated limit d_min (A), distance (m), Wilson B): limits from well inside the detector to its
# corners (where the coverage correction matters), weak and strong fall-off
CASES = [
    ("eiger2-1m", 2.2, 0.07, 25.0),
    ("eiger2-1m", 3.0, 0.1, 25.0),
    ("eiger2-1m", 4.0, 0.15, 25.0),
    ("eiger2-1m", 2.6, 0.1, 15.0),  # the limit beyond the inscribed circle: partly on the detector
    ("eiger2-4m", 1.9, 0.12, 25.0),
]


@pytest.mark.parametrize("detector, d_min, distance, wilson_b", CASES)
def test_d_min_estimate_within_ten_percent(detector: str, d_min: float, distance: float, wilson_b: float) -> None:
    experiment = mx_experiment(detector, seed=31, distance=distance, d_min=d_min, wilson_b=wilson_b)
    finder = SpotFinder(experiment.geometry, experiment.mask)
    coverage = ShellCoverage(experiment.geometry, experiment.mask)
    assert coverage.detector_d_min < d_min  # the limit is on the detector (at least in its corners)
    rng = np.random.default_rng(8)
    for frame in (1, 900):
        spots = finder.find(poisson_image(experiment.scene, experiment.model, frame, rng), ERROR32)
        score = score_image(spots.d, spots.intensity, coverage=coverage)
        assert score.d_min is not None and abs(score.d_min / d_min - 1) <= 0.10, (frame, score.d_min, d_min)


def test_resolution_estimate_needs_enough_spots_and_ignores_corner_cut() -> None:
    assert estimate_d_min(np.array([5.0, 4.0, 3.0])) is None
    # spots uniform in d*^3 up to 2.5 A: the estimate is the highest-resolution spot
    rng = np.random.default_rng(1)
    d = rng.uniform(0, 2.5**-3, 400) ** (-1 / 3)
    assert estimate_d_min(d) == pytest.approx(d.min())
    # add a lone noise spot far beyond: ignored (two empty shells before it)
    assert estimate_d_min(np.append(d, 1.2)) == pytest.approx(d.min())


def test_ice_rings_are_flagged_and_excluded() -> None:
    d = np.array([3.669, 3.70, 2.249, 2.8, 10.0])
    assert in_ice_ring(d, 0.025).tolist() == [True, True, True, False, False]
    score = score_image(d, np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert score.n_spots == 5 and score.n_spots_no_ice == 2 and score.total_intensity == 9.0
    assert score.n_spots_low_res == 1


def test_ice_ring_scene_gives_an_ice_score_and_spots_in_rings_are_not_counted() -> None:
    plain = mx_experiment(seed=2, distance=0.08, d_min=2.5)
    icy = mx_experiment(seed=2, distance=0.08, d_min=2.5, ice_rings=3.0)
    settings = AnalysisSettings()
    rng = np.random.default_rng(2)
    scores = {}
    for name, experiment in (("plain", plain), ("icy", icy)):
        analyzer = FrameAnalyzer(experiment.geometry, experiment.mask, settings)
        scores[name] = analyzer.analyse(poisson_image(experiment.scene, experiment.model, 7, rng), ERROR32).score
    assert scores["icy"].ice_score > 1.0 and abs(scores["plain"].ice_score) < 0.1, scores
    assert scores["plain"].is_hit and scores["icy"].is_hit
    assert scores["plain"].background == pytest.approx(scores["icy"].background, rel=0.2)


def test_blank_frame_is_not_a_hit() -> None:
    experiment = mx_experiment(seed=2, distance=0.08, d_min=2.5, spot_flux=0.0)
    image = poisson_image(experiment.scene, experiment.model, 1, np.random.default_rng(3))
    result = FrameAnalyzer(experiment.geometry, experiment.mask, AnalysisSettings()).analyse(image, ERROR32)
    assert not result.score.is_hit and result.score.n_spots_no_ice < 3 and result.score.d_min is None
    assert result.score.background == pytest.approx(
        experiment.scene.background_image(slice(0, 1062), slice(0, 1028))[~experiment.mask].mean(), rel=0.5
    )


def test_frame_analyzer_runs_the_whole_chain() -> None:
    experiment = mx_experiment(seed=5, distance=0.08, d_min=2.4)
    settings = AnalysisSettings(indexing=IndexingSettings(cell=UnitCell(*LYSOZYME)))
    analyzer = FrameAnalyzer(experiment.geometry, experiment.mask, settings)
    frame = 123
    phi = float(np.degrees(np.mean(experiment.scene.phi_range(frame))))
    result = analyzer.analyse(
        poisson_image(experiment.scene, experiment.model, frame, np.random.default_rng(1)), ERROR32, phi_deg=phi
    )
    assert result.profile is not None and np.isfinite(result.profile.intensity).sum() > 900
    assert result.score.n_spots > 100 and result.score.is_hit
    assert abs(result.score.d_min / 2.4 - 1) < 0.1
    assert result.indexing is not None and result.indexing.fraction_indexed > 0.9
    assert misorientation_deg(result.indexing.A, experiment.scene.truth(frame).A) < 0.5
    assert set(result.timings_ms) == {"integrate", "spots", "score", "index"}
    assert len(ICE_RING_D) == 10
