"""Spot finding: the sparse DIALS dispersion finder against a dense oracle and against the simulator's truth."""

from __future__ import annotations

import numpy as np
import pytest
from analysis_support import ERROR32, match, mx_experiment
from scipy import ndimage

from opendcu.analysis.spots import SpotFinder, SpotFinderSettings, _label_sparse
from opendcu.testing.reference import dense_dispersion_spots
from opendcu.testing.simulate import detector_image, poisson_image


@pytest.fixture(scope="module")
def rotation():
    """A lysozyme-like crystal to 2.2 A on an EIGER2 1M at 70 mm, 0.1 deg frames."""
    return mx_experiment(seed=11, distance=0.07, d_min=2.2)


def test_strong_pixels_and_spots_equal_dense_oracle(rotation) -> None:
    """With the prefilter off the sparse finder is exact; with the default prefilter it loses almost nothing."""
    image = detector_image(rotation.scene, rotation.model, 3, seed=11)  # through module physics + pipeline
    exact = SpotFinder(
        rotation.geometry, rotation.mask, SpotFinderSettings(prefilter_sigma=0.0, max_candidate_fraction=1.0)
    )
    finder = SpotFinder(rotation.geometry, rotation.mask, rings=exact.rings)
    ring_mean = exact.rings.integrate(image, ERROR32).mean_counts
    background = np.nan_to_num(ring_mean)[np.maximum(exact.rings.pixel_radial, 0)]
    dense = dense_dispersion_spots(image, ~rotation.mask, background, invalid_value=ERROR32)
    sparse_exact = exact.find(image, ERROR32)
    assert sparse_exact.n_strong_pixels == dense["n_strong_pixels"] > 500
    assert len(sparse_exact) == len(dense["x"]) > 100
    order = np.lexsort((dense["x"], dense["y"]))
    mine = np.lexsort((sparse_exact.x, sparse_exact.y))
    assert np.array_equal(sparse_exact.npix[mine], dense["npix"][order])
    assert np.allclose(sparse_exact.x[mine], dense["x"][order]) and np.allclose(sparse_exact.y[mine], dense["y"][order])
    assert np.allclose(sparse_exact.raw_sum[mine], dense["raw_sum"][order])

    fast = finder.find(image, ERROR32)
    assert dense["n_strong_pixels"] - fast.n_strong_pixels <= 0.002 * dense["n_strong_pixels"]
    found, _ = match(dense["x"], dense["y"], fast.x, fast.y, 0.5)
    assert found.mean() >= 0.99


def test_recall_and_precision_on_rotation_images(rotation) -> None:
    """Every frame: >= 95 % of the findable truth spots found and >= 95 % of the found spots are true spots.

    Findable (MxScene.truth): >= 3 pixels expected one Poisson sigma above DIALS' strong threshold. At the bare
    expected-value boundary (no margin) half of the marginal pixels fall below it by chance; recall there is
    ~0.93 and is checked to stay above 0.85."""
    finder = SpotFinder(rotation.geometry, rotation.mask)
    rng = np.random.default_rng(5)
    recalls, precisions, errors = [], [], []
    for frame in (1, 2, 40, 400, 901, 1800, 2700):
        image = poisson_image(rotation.scene, rotation.model, frame, rng)
        truth = rotation.scene.truth(frame)
        spots = finder.find(image, ERROR32)
        findable = truth.findable
        assert findable.sum() >= 200
        marginal = rotation.scene.truth(frame, noise_margin=0.0).findable
        assert match(truth.x[marginal], truth.y[marginal], spots.x, spots.y, 2.0)[0].mean() > 0.85
        hit, distance = match(truth.x[findable], truth.y[findable], spots.x, spots.y, 2.0)
        real, _ = match(spots.x, spots.y, truth.x, truth.y, 2.0)
        recalls.append(hit.mean())
        precisions.append(real.mean())
        errors.append(np.median(distance[hit]))
    assert min(recalls) >= 0.95, recalls
    assert min(precisions) >= 0.95, precisions
    assert max(errors) < 0.25, errors  # median centroid error (pixels)


def test_blank_image_has_no_spots(rotation) -> None:
    flood = np.random.default_rng(3).poisson(1.5, rotation.model.shape).astype(np.uint32)
    flood[rotation.mask] = ERROR32
    spots = SpotFinder(rotation.geometry, rotation.mask).find(flood, ERROR32)
    assert len(spots) <= 2  # pure Poisson noise: DIALS' 3-pixel minimum rejects nearly everything
    assert not spots.overloaded


def test_overloaded_image_is_reported_not_analysed(rotation) -> None:
    """A pattern of isolated hot pixels everywhere: too many candidates, reported as overloaded."""
    image = np.zeros(rotation.model.shape, np.uint32)
    image[::3, ::3] = 1000
    image[rotation.mask] = ERROR32
    spots = SpotFinder(rotation.geometry, rotation.mask).find(image, ERROR32)
    assert spots.overloaded and len(spots) == 0


def test_spot_size_and_resolution_filters(rotation) -> None:
    image = poisson_image(rotation.scene, rotation.model, 10, np.random.default_rng(1))
    everything = SpotFinder(rotation.geometry, rotation.mask, SpotFinderSettings(min_spot_size=1)).find(image, ERROR32)
    settings = SpotFinderSettings(min_spot_size=5, d_min=3.0, d_max=8.0)
    limited = SpotFinder(rotation.geometry, rotation.mask, settings).find(image, ERROR32)
    assert 0 < len(limited) < len(everything)
    assert limited.npix.min() >= 5 and limited.d.min() >= 3.0 and limited.d.max() <= 8.0
    expected = (everything.npix >= 5) & (everything.d >= 3.0) & (everything.d <= 8.0)
    assert len(limited) == expected.sum()


def test_sparse_labels_equal_ndimage_label() -> None:
    rng = np.random.default_rng(9)
    mask = rng.random((120, 97)) < 0.3
    index = np.flatnonzero(mask)
    labels = _label_sparse(index, mask.shape[1])
    reference, n = ndimage.label(mask, structure=np.ones((3, 3), int))
    assert labels.max() + 1 == n
    # same partition: a bijection between our labels and ndimage's
    pairs = np.unique(np.c_[labels, reference.reshape(-1)[index]], axis=0)
    assert len(pairs) == n


def test_bad_settings_and_shapes(rotation) -> None:
    for bad in (
        dict(kernel_size=0),
        dict(prefilter_sigma=3.5),
        dict(min_spot_size=5, max_spot_size=2),
        dict(d_min=5.0, d_max=3.0),
        dict(gain=0.0),
    ):
        with pytest.raises(ValueError):
            SpotFinder(rotation.geometry, rotation.mask, SpotFinderSettings(**bad))
    with pytest.raises(ValueError):
        SpotFinder(rotation.geometry, rotation.mask).find(np.zeros((5, 5), np.uint16))
