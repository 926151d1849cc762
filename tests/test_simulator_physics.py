"""Detector physics of the simulated modules: Poisson noise from the bank and fresh where frames differ, gain
non-uniformity that the factory flatfield corrects, dead/hot pixels in the factory mask, paralysable pile-up,
counter saturation, binning, sub-frames; all deterministic."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
from calibration_truth import true_calibration as calibration_for

from opendcu.geometry import DetectorLayout, get_model
from opendcu.geometry.layout import MASK_DEAD, MASK_GAP, MASK_NOISY, MASK_OVER, MASK_UNDER
from opendcu.hardware.counters import FLOAT8_DECODE, SATURATED
from opendcu.simulator.physics import (
    HOT_RATE,
    ModuleRenderer,
    effective_threshold,
    module_defects,
    render_module_frame,
    threshold_efficiency,
)
from opendcu.simulator.scenes import make_scene
from opendcu.simulator.scenes.base import Experiment

EIGER = get_model("eiger2-500k")


def flood(model=EIGER, flux=50.0, count_time=1.0, seed=3):
    return make_scene(model, seed, {"kind": "flood", "flux": flux, "experiment": {"count_time_s": count_time}})


def renderer(model=EIGER, flux=50.0, count_time=1.0, seed=3, nsub=1, bank=None) -> ModuleRenderer:
    return ModuleRenderer(flood(model, flux, count_time, seed), model, 0, seed, count_time, nsub, bank_frames=bank)


def normal_pixels(model=EIGER) -> np.ndarray:
    """Sensor pixels that are neither dead, hot, badly responding, nor double width."""
    d = module_defects(model, 0)
    ok = (d.gain > 0.85) & (d.gain < 1.15) & ~np.isin(np.arange(d.gain.size), d.hot).reshape(d.gain.shape)
    ok[:, list(model.module.double_cols)] = False
    return ok


def test_frames_are_deterministic_and_differ_by_seed_and_frame():
    a, b = renderer(), renderer()
    np.testing.assert_array_equal(a.render(5), b.render(5))
    assert not np.array_equal(a.render(5), a.render(6))
    assert not np.array_equal(a.render(5), renderer(seed=4).render(5))
    layout = DetectorLayout(EIGER)
    scene = flood()
    np.testing.assert_array_equal(render_module_frame(scene, layout, 0, 5, 3), a.render(5))


def test_flood_is_poisson_around_the_gain_of_each_pixel():
    r = renderer(flux=50.0, bank=16)
    frames = np.stack([r.render(f) for f in range(1, 17)]).astype(np.float64)
    gain = module_defects(EIGER, 0).gain
    ok = normal_pixels()
    residual = (frames - 50.0 * gain)[:, ok]
    assert abs(residual.mean()) < 0.05
    assert (residual**2).mean() / (50.0 * gain[ok]).mean() == pytest.approx(1.0, abs=0.02)  # variance = mean
    per_pixel = frames.mean(axis=0)[ok] / 50.0
    assert np.corrcoef(per_pixel, gain[ok])[0, 1] > 0.5  # the gain map is visible: a flatfield means something
    assert np.array_equal(frames[0], frames[0].round())  # a static scene replays its bank ...
    np.testing.assert_array_equal(r.render(1), r.render(17))  # ... with the bank's period


def test_dead_pixels_count_nothing_and_hot_pixels_count_without_photons():
    d = module_defects(EIGER, 0)
    assert d.dead.size >= 1 and d.hot.size >= 1
    dark = ModuleRenderer(make_scene(EIGER, 1, {"kind": "dark", "experiment": {"count_time_s": 0.5}}), EIGER, 0, 1, 0.5)
    frame = dark.render(1).reshape(-1)
    assert frame[d.dead].max() == 0
    assert frame[d.hot].mean() == pytest.approx(HOT_RATE * 0.5, rel=0.1)
    others = np.ones(frame.size, dtype=bool)
    others[d.hot] = False
    assert frame[others].max() == 0  # no dark current, no read noise
    lit = renderer(flux=100.0).render(1).reshape(-1)
    assert lit[d.dead].max() == 0


@dataclass
class SpotScene:
    """A flat background with one bright spot on even frames: only the spot differs from the noise bank."""

    experiment: Experiment
    exact = False

    def expected(self, frame_number, rows, cols):
        out = np.full((rows.stop - rows.start, cols.stop - cols.start), 3.0, dtype=np.float32)
        if frame_number % 2 == 0:
            out[100:103, 200:203] += 400.0
        return out


def test_changing_scenes_reuse_bank_noise_and_draw_fresh_noise_only_where_they_differ():
    scene = SpotScene(Experiment(EIGER, count_time_s=1.0))
    r = ModuleRenderer(scene, EIGER, 0, 9, 1.0, bank_frames=4)
    spot = np.zeros(EIGER.module.raw_shape, dtype=bool)
    spot[100:103, 200:203] = True
    gain = module_defects(EIGER, 0).gain
    hot = np.zeros(spot.size, dtype=bool)
    hot[module_defects(EIGER, 0).hot] = True  # hot pixels count anew in every frame
    same = ~spot & ~hot.reshape(spot.shape)
    for f in (2, 4, 6, 8):
        frame = r.render(f)
        bank = r.bank[r.bank_index(f)]
        np.testing.assert_array_equal(frame[same], bank[same])
        assert np.all(frame[spot] > bank[spot] + 200)  # the spot's photons, freshly drawn
    spot_counts = np.array([r.render(f)[spot] for f in range(2, 402, 2)], dtype=np.float64)
    expected = 403.0 * gain[spot]
    assert spot_counts.mean(axis=0) == pytest.approx(expected, rel=0.02)
    assert spot_counts.var(axis=0).mean() == pytest.approx(expected.mean(), rel=0.15)  # Poisson, not the bank
    np.testing.assert_array_equal(r.render(3)[same], r.bank[r.bank_index(3)][same])


def test_pile_up_is_paralysable():
    tau = EIGER.module.dead_time_s
    ok = normal_pixels()
    gain = module_defects(EIGER, 0).gain[ok]
    means = []
    for rate in (1e5, 1e6, 1e7, 3e7):  # photons per pixel per second; 1 ms frames
        counts = renderer(flux=rate, count_time=1e-3, bank=2).render(1)[ok].astype(np.float64)
        n = rate * gain
        want = (n * np.exp(-n * tau) * 1e-3).mean()
        assert counts.mean() == pytest.approx(want, rel=0.01), rate
        means.append(counts.mean())
    assert means[1] > 0.9 * 1e3  # nearly linear at 1 Mcps
    assert means[3] < means[2]  # beyond 1/tau more photons give fewer counts


def test_counters_saturate_at_their_top_value():
    # 5 Mcps for 0.1 s: 3e5 counts after pile-up, beyond the 16-bit counter
    assert np.all(renderer(flux=5e6, count_time=0.1, bank=2).render(1)[normal_pixels()] == SATURATED)
    fast = get_model("fastasic")
    frame = renderer(model=fast, flux=5e5, count_time=0.01, bank=2).render(1)  # 5000 > 4095
    assert np.all(frame[normal_pixels(fast)] == SATURATED)


def test_binned_fast_module_sums_four_sensor_pixels_and_quantizes_to_8_bit_floats():
    model = get_model("fastasic-bin2-8bit")
    assert model.module.raw_shape == (96, 96) and model.module.sensor_shape == (192, 192)
    frame = renderer(model=model, flux=1000.0, bank=2).render(1)
    assert set(np.unique(frame)) <= set(FLOAT8_DECODE.tolist())  # only values an 8-bit float carries
    gain = module_defects(model, 0).gain.reshape(96, 2, 96, 2).mean(axis=(1, 3))
    ok = (gain > 0.9) & (gain < 1.1)
    assert frame[ok].mean() == pytest.approx(1000.0 * gain[ok].mean(), rel=0.01)


def test_subframes_split_the_count_time():
    r = renderer(flux=400.0, nsub=4, bank=8)
    ok = normal_pixels()
    subframes = [r.render(1, s)[ok].mean() for s in range(4)]
    assert subframes == pytest.approx([100.0] * 4, rel=0.01)
    assert not np.array_equal(r.render(1, 0), r.render(1, 1))


def test_factory_calibration_describes_the_simulated_detector():
    model = get_model("eiger2-1m")
    cal = calibration_for(model.name, 12000.0, 6000.0)
    layout = DetectorLayout(model)
    assert np.array_equal(cal.pixel_mask & MASK_GAP != 0, layout.gap_mask)
    for m in range(model.n_modules):
        d = module_defects(model, m)
        rows, cols = layout.module_slices(m)
        block = cal.pixel_mask[rows, cols]
        r, c = np.unravel_index(d.dead, d.gain.shape)
        virtual_col = np.searchsorted(layout.col_map.src, c)  # first virtual pixel of each raw column
        assert np.all(block[r, virtual_col] & MASK_DEAD)
        r, c = np.unravel_index(d.hot, d.gain.shape)
        assert np.all(block[r, np.searchsorted(layout.col_map.src, c)] & MASK_NOISY)
        assert (block & MASK_UNDER).any() and (block & MASK_OVER).any()
    # a double-width pixel's two virtual pixels share its mask bits and flatfield
    np.testing.assert_array_equal(cal.pixel_mask[:512, 255], cal.pixel_mask[:512, 256])
    np.testing.assert_array_equal(cal.flatfield[:512, 255], cal.flatfield[:512, 256])


def test_flatfield_removes_the_gain_pattern():
    r = renderer(flux=200.0, bank=16)
    mean = np.stack([r.render(f) for f in range(1, 17)]).astype(np.float64).mean(axis=0)
    cal = calibration_for(EIGER.name, 8000.0, 4000.0)
    layout = DetectorLayout(EIGER)
    placed = layout.place_module_reference(mean.round().astype(np.uint16), SATURATED).astype(np.float64)
    ok = cal.pixel_mask == 0
    ok[:, 255:259] = ok[:, 767:771] = False  # split pixels halve their counts
    raw_spread = placed[ok].std() / placed[ok].mean()
    corrected = placed * cal.flatfield
    flat_spread = corrected[ok].std() / corrected[ok].mean()
    poisson = 1 / np.sqrt(16 * 200.0)
    assert raw_spread > 0.025  # the 3 % gain spread
    assert flat_spread == pytest.approx(poisson, rel=0.2)  # only photon noise left


def test_exact_scenes_bypass_the_physics():
    scene = make_scene(EIGER, 1, {"kind": "pattern"})
    frame = ModuleRenderer(scene, EIGER, 0, 1, 1.0).render(2)
    r, c = np.indices(frame.shape)
    virtual = np.where(c >= 257, c + 2, c)  # raw column 256 begins after the split pixel 255 (virtual 255 + 256)
    virtual = np.where(c >= 769, virtual + 2, virtual)
    ordinary = ~np.isin(c, (255, 256, 767, 768))
    np.testing.assert_array_equal(frame[ordinary], ((r + virtual + 26) % 4093)[ordinary])


def test_a_threshold_above_the_photon_energy_counts_almost_nothing():
    scene = flood(flux=1000.0)
    counts = {}
    for threshold in (4000.0, 8000.0, 9000.0):
        r = ModuleRenderer(scene, EIGER, 0, 3, 1.0, bank_frames=2, photon_energy=8000.0, threshold_energy=threshold)
        counts[threshold] = r.render(1)[normal_pixels()].mean()
    assert counts[4000.0] == pytest.approx(1000.0, rel=0.01)  # the usual threshold: every photon counts
    # at the photon energy about half of them: the module's comparator cuts at its own effective threshold
    effective = effective_threshold(EIGER, 0, 8000.0)
    assert abs(effective - 8000.0) > 0.5  # the hidden per-module threshold relation is not the identity
    assert counts[8000.0] == pytest.approx(1000.0 * threshold_efficiency(8000.0, effective), rel=0.02)
    assert counts[9000.0] < 10.0
