"""Indexing: orientations recovered from simulated rotation images, cell search, the crystallographic helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from analysis_support import ERROR32, LYSOZYME, mx_experiment

from opendcu.analysis.crystal import (
    UnitCell,
    misorientation_deg,
    random_rotation,
    reduce_basis,
    rotation_about,
)
from opendcu.analysis.index import IndexingSettings, index_known_cell, reciprocal_vectors, search_cell
from opendcu.analysis.scoring import in_ice_ring
from opendcu.analysis.spots import SpotFinder
from opendcu.testing.simulate import poisson_image

CRYSTALS = [
    # (cell, centring, d_min, distance, scene extras)
    (LYSOZYME, "P", 2.2, 0.08, {}),
    ((52.3, 61.7, 97.4, 90.0, 105.2, 90.0), "P", 2.5, 0.09, {}),  # monoclinic
    ((41.2, 73.9, 88.1, 90.0, 90.0, 90.0), "C", 2.4, 0.08, {}),  # C-centred orthorhombic
    (LYSOZYME, "P", 3.5, 0.1, {"spot_flux": 1500.0}),  # weak: tens of spots per image
    ((35.1, 35.1, 35.1, 90.0, 90.0, 90.0), "I", 3.0, 0.1, {"spot_flux": 4000.0}),  # small cubic I
]


def frame_vectors(experiment, frame: int, rng: np.random.Generator, finder: SpotFinder) -> np.ndarray:
    """Reciprocal-lattice vectors of the non-ice spots found on one frame."""
    image = poisson_image(experiment.scene, experiment.model, frame, rng)
    spots = finder.find(image, ERROR32)
    keep = ~in_ice_ring(spots.d, 0.025)
    phi = np.mean(experiment.scene.phi_range(frame)) * 180 / math.pi
    return reciprocal_vectors(experiment.geometry, spots.x[keep], spots.y[keep], phi)


def test_known_cell_orientation_within_half_a_degree() -> None:
    """>= 90 % of the images with >= 20 spots give the true orientation within 0.5 deg (up to the lattice's
    basis choice), indexing >= 90 % of their spots."""
    rng = np.random.default_rng(3)
    outcomes = []
    for number, (cell, centring, d_min, distance, extras) in enumerate(CRYSTALS):
        experiment = mx_experiment(
            seed=100 + number, distance=distance, d_min=d_min, cell=list(cell), centring=centring, **extras
        )
        finder = SpotFinder(experiment.geometry, experiment.mask)
        settings = IndexingSettings(cell=UnitCell(*cell))
        for frame in (1, 251, 702, 1333):
            vectors = frame_vectors(experiment, frame, rng, finder)
            if len(vectors) < 20:
                continue
            result = index_known_cell(vectors, settings)
            truth = experiment.scene.truth(frame)
            error = misorientation_deg(result.A, truth.A) if result is not None else None
            outcomes.append((number, frame, len(vectors), error, result.fraction_indexed if result else 0.0))
    assert len(outcomes) >= 16 and min(o[2] for o in outcomes) < 100
    good = [o for o in outcomes if o[3] is not None and o[3] < 0.5 and o[4] >= 0.9]
    assert len(good) >= 0.9 * len(outcomes), outcomes


def test_indexing_fails_cleanly_with_a_wrong_cell() -> None:
    experiment = mx_experiment(seed=7, distance=0.08, d_min=2.2)
    vectors = frame_vectors(experiment, 5, np.random.default_rng(1), SpotFinder(experiment.geometry, experiment.mask))
    wrong = IndexingSettings(cell=UnitCell(61.0, 67.0, 93.0, 90.0, 90.0, 90.0))
    result = index_known_cell(vectors, wrong)
    assert result is None or misorientation_deg(result.A, experiment.scene.truth(5).A) is None
    assert index_known_cell(vectors[:5], IndexingSettings(cell=UnitCell(*LYSOZYME))) is None


def test_cell_search_finds_the_reduced_cell() -> None:
    """No cell given: spots of a few frames spread over the rotation give the true cell (reduced)."""
    experiment = mx_experiment(seed=21, distance=0.08, d_min=2.4, cell=[52.3, 61.7, 97.4, 90.0, 105.2, 90.0])
    finder = SpotFinder(experiment.geometry, experiment.mask)
    rng = np.random.default_rng(4)
    vectors = np.concatenate([frame_vectors(experiment, f, rng, finder) for f in (1, 301, 601, 901)])
    result = search_cell(vectors)
    assert result is not None and result.fraction_indexed > 0.9
    truth_cell = UnitCell.from_basis(reduce_basis(experiment.scene.cell.real_basis))
    assert result.cell.matches(truth_cell, length_tol=0.01, angle_tol=1.0) or result.cell.matches(
        UnitCell(*truth_cell.lengths, *(180 - a if a > 90 else a for a in truth_cell.angles)),
        length_tol=0.01,
        angle_tol=1.0,
    ), (result.cell, truth_cell)
    assert misorientation_deg(result.A, experiment.scene.truth(1).A) < 0.5


def test_misorientation_is_basis_independent() -> None:
    cell = UnitCell(40.0, 50.0, 60.0, 80.0, 95.0, 105.0)
    U = random_rotation(np.random.default_rng(2))
    A = U @ cell.B
    change = np.array([[0, 1, 0], [-1, 0, 0], [0, 0, 1]])  # another basis of the same lattice
    assert misorientation_deg(A @ change, A) == pytest.approx(0.0, abs=1e-6)
    tilt = rotation_about([0.3, 0.4, 0.5], math.radians(0.7))
    assert misorientation_deg(tilt @ A, A) == pytest.approx(0.7, abs=1e-6)
    assert misorientation_deg(A * 1.3, A) is None  # not the same lattice


def test_reduce_basis_keeps_the_lattice() -> None:
    cell = UnitCell(40.0, 50.0, 60.0, 80.0, 95.0, 105.0)
    skewed = np.array([[1, 2, 0], [0, 1, 0], [1, 1, 1]]) @ cell.real_basis
    reduced = reduce_basis(skewed)
    change = np.linalg.solve(cell.real_basis.T, reduced.T)
    assert np.allclose(change, np.rint(change), atol=1e-6) and abs(round(np.linalg.det(change))) == 1
    assert np.linalg.det(reduced) > 0
    assert sorted(np.linalg.norm(reduced, axis=1)) == pytest.approx([40.0, 50.0, 60.0], rel=1e-6)


def test_unit_cell_b_matrix_and_errors() -> None:
    cell = UnitCell(40.0, 50.0, 60.0, 80.0, 95.0, 105.0)
    assert np.allclose(cell.real_basis @ cell.B, np.eye(3))
    assert UnitCell.from_basis(cell.real_basis).matches(cell, 1e-9, 1e-9)
    assert cell.d_spacing(np.array([1, 0, 0])) == pytest.approx(
        cell.volume / (cell.b * cell.c * math.sin(math.radians(80)))
    )
    for bad in ((0, 1, 1), (10, 10, 10, 90, 90, 190), (10, 10, 10, 10, 10, 150)):
        with pytest.raises(ValueError):
            UnitCell.from_sequence(list(bad) + [90.0] * (6 - len(bad)))
