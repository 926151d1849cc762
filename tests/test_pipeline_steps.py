"""Every pipeline step against a plain numpy reference (tests/pipeline_reference.py), each switch on and off,
on random and simulated frames with edge values: 0, the counter's top value, 0xFFFF (lost / saturated),
sub-frame sums beyond 16 bit, count rates above the cutoff, masked gaps and masked pixels."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from pipeline_reference import reference_image

from opendcu.app_detector.pipeline.arrays import PipelineArrays, image_shape
from opendcu.app_detector.pipeline.countrate import (
    SATURATED,
    CountRateCorrection,
    counter_model,
    identity_lut,
    lut_identity_limit,
)
from opendcu.app_detector.pipeline.processor import ImageProcessor
from opendcu.app_detector.series import SeriesSettings
from opendcu.geometry import DetectorLayout, get_model
from opendcu.geometry.layout import MASK_DEAD, MASK_NOISY
from opendcu.simulator.physics import render_module_frame
from opendcu.simulator.scenes import make_scene

EIGER2 = counter_model(get_model("eiger2-1m").module)
DETECTOR = "eiger2-1m"


# -- the counter model ------------------------------------------------------------------------------------------
def test_dead_time_inversion_recovers_true_counts():
    t = 0.01
    true = np.array([0.0, 1, 10, 1000, 5e4, EIGER2.max_true_rate * t])
    measured = EIGER2.measured_counts(true, t)
    np.testing.assert_allclose(EIGER2.true_counts(measured, t), true, rtol=1e-9)
    assert measured[-1] < true[-1] * 0.8  # 22 % lost at the trusted limit


def test_countrate_lookup_table():
    t = 0.002
    correction = CountRateCorrection(EIGER2, t)
    lut = correction.lut()
    cut = correction.measured_cutoff
    measured = np.arange(cut + 1, dtype=np.float64)
    np.testing.assert_array_equal(lut[: cut + 1], np.floor(EIGER2.true_counts(measured, t) + 0.5))
    assert np.all(lut[cut + 1 :] == SATURATED) and lut[0xFFFF] == SATURATED
    assert correction.cutoff == lut[cut] and correction.cutoff <= EIGER2.max_true_rate * t
    assert np.all(np.diff(lut[: cut + 1].astype(np.int64)) >= 1)  # strictly increasing: no two counts collide
    table = correction.table()
    assert table.dtype == np.float32 and table.shape == (2, cut + 1)
    np.testing.assert_array_equal(table[1], lut[: cut + 1].astype(np.float32))
    limit = lut_identity_limit(lut)
    assert 0 < limit < cut and np.array_equal(lut[:limit], np.arange(limit)) and lut[limit] != limit
    assert lut_identity_limit(identity_lut(16)) == 0xFFFF


def test_counter_models_follow_the_module_types():
    eiger2 = get_model("eiger2-4m").module
    assert EIGER2.dead_time == eiger2.dead_time_s and EIGER2.counter_max == 0xFFFE
    assert EIGER2.max_true_rate * EIGER2.dead_time == pytest.approx(0.25)
    fast12 = counter_model(get_model("fastasic").module)
    assert fast12.counter_max == 0xFFE  # 12-bit counter, top value = saturated
    binned = counter_model(get_model("fastasic-bin2").module)
    # a binned pixel sums 4 counters, each seeing a quarter of the rate
    assert binned.counter_max == 4 * 0xFFE and binned.dead_time == pytest.approx(fast12.dead_time / 4)


# -- whole frames against the reference ---------------------------------------------------------------------------
def edge_frames(nsub: int, seed: int = 1) -> np.ndarray:
    """Random sub-frames of a 1M with every edge value on chip borders, module edges and in the interior."""
    model = get_model(DETECTOR)
    rng = np.random.default_rng(seed)
    raw = rng.poisson(2.0, (nsub, model.n_modules, 512, 1024)).astype(np.uint16)
    raw[:, 0, 10, :] = 0  # a dark row
    raw[:, 1, 20, :] = 65534  # the largest valid raw count, everywhere in a row
    raw[:, 0, 30:40, 250:262] = rng.integers(0, 65535, (nsub, 10, 12), dtype=np.uint16)  # chip border
    raw[0, 1, 100, :512] = 0xFFFF  # a lost packet in the first sub-frame only
    raw[:, 0, 200, 768] = 0xFFFF  # an error on a double pixel
    raw[:, 0, 201, 254] = 0xFFFF  # ... and on the neighbour of a double pixel
    raw[:, 0, 300, 500:520] = rng.integers(3000, 9000, (nsub, 20), dtype=np.uint16)  # count rates near the cutoff
    flat = raw.reshape(-1)
    flat[rng.integers(0, flat.size, 2000)] = 0xFFFF
    return raw


def simulated_frames(nsub: int) -> np.ndarray:
    """Sub-frames as the simulated modules render them (scene -> physics -> raw counts)."""
    model = get_model(DETECTOR)
    layout = DetectorLayout(model)
    scene = make_scene(model, 5, {"kind": "flood", "flux": 40.0})
    return np.stack(
        [
            np.stack([render_module_frame(scene, layout, m, sub + 1, seed=5) for m in range(model.n_modules)])
            for sub in range(nsub)
        ]
    )


def calibration(seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Detector-size pixel mask (gaps + dead/noisy pixels, some next to virtual pixels) and flatfield."""
    rng = np.random.default_rng(seed)
    layout = DetectorLayout(get_model(DETECTOR))
    mask = layout.default_pixel_mask()
    mask[rng.random(mask.shape) < 0.002] |= MASK_DEAD
    mask[40, 254] |= MASK_NOISY  # left neighbour of a double pixel
    mask[41, 256] |= MASK_DEAD  # a virtual pixel
    flatfield = rng.normal(1.0, 0.05, mask.shape).astype(np.float32)
    flatfield[50, :] = 1.25  # 10 -> 12.5 -> 13: half up
    return mask, flatfield


def settings_for(**changes) -> SeriesSettings:
    base = SeriesSettings(
        series_id=1,
        detector=DETECTOR,
        nimages_total=1,
        bit_depth_image=16,
        compression="bslz4",
        pixel_mask_applied=True,
        mask_to_zero=False,
        countrate_correction_applied=True,
        frame_count_time=0.001,
        nframes_sum=1,
        count_cutoff=CountRateCorrection(EIGER2, 0.001).cutoff,
        flatfield_correction_applied=True,
    )
    settings = replace(base, **changes)
    return replace(settings, image_shape=image_shape(settings))


def run(settings: SeriesSettings, raw: np.ndarray, mask: np.ndarray, flatfield: np.ndarray) -> np.ndarray:
    processor = ImageProcessor(settings, PipelineArrays.for_detector(settings, mask, flatfield))
    return processor.process(raw).copy()


LONG = CountRateCorrection(EIGER2, 0.1)
CASES = {
    "defaults": {},
    "countrate off": {"countrate_correction_applied": False, "count_cutoff": 65534},
    "flatfield off": {"flatfield_correction_applied": False},
    "mask off": {"pixel_mask_applied": False},
    "mask to zero": {"mask_to_zero": True},
    "virtual pixels interpolated": {"virtual_pixel_correction_applied": True},
    "3 sub-frames summed, 32 bit": {
        "nframes_sum": 3,
        "bit_depth_image": 32,
        "frame_count_time": 0.1,
        "count_cutoff": 3 * LONG.cutoff,
        "virtual_pixel_correction_applied": True,
    },
    "summed without correction": {
        "nframes_sum": 3,
        "bit_depth_image": 32,
        "countrate_correction_applied": False,
        "count_cutoff": 3 * 65534,
        "flatfield_correction_applied": False,
    },
    "2x2 binning": {"binning_2x2_applied": True, "bit_depth_image": 32},
    "2x2 binning, mask to zero": {"binning_2x2_applied": True, "bit_depth_image": 32, "mask_to_zero": True},
    "8-bit float": {"float8_encoding_applied": True, "bit_depth_image": 8},
    "8-bit float, 2x2, mask to zero": {
        "float8_encoding_applied": True,
        "bit_depth_image": 8,
        "binning_2x2_applied": True,
        "mask_to_zero": True,
    },
    "everything off": {
        "countrate_correction_applied": False,
        "count_cutoff": 65534,
        "flatfield_correction_applied": False,
        "pixel_mask_applied": False,
    },
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("frames", ["edge values", "simulated"])
def test_pipeline_matches_the_reference(case, frames):
    settings = settings_for(**CASES[case])
    raw = edge_frames(settings.nframes_sum) if frames == "edge values" else simulated_frames(settings.nframes_sum)
    mask, flatfield = calibration()
    image = run(settings, raw, mask, flatfield)
    want = reference_image(raw, settings, mask, flatfield)
    assert image.dtype == settings.dtype and image.shape == settings.image_shape
    np.testing.assert_array_equal(image, want)
    if frames == "edge values" and not settings.float8_encoding_applied:
        assert (image == settings.error_value).any() and (image == 0).any()


def test_processor_reuses_its_buffer_and_is_deterministic():
    settings = settings_for()
    mask, flatfield = calibration()
    processor = ImageProcessor(settings, PipelineArrays.for_detector(settings, mask, flatfield))
    a = processor.process(edge_frames(1, seed=1)).copy()
    b = processor.process(edge_frames(1, seed=9)).copy()
    np.testing.assert_array_equal(processor.process(edge_frames(1, seed=1)), a)
    assert not np.array_equal(a, b)


def test_roi_mode_places_the_central_modules():
    model = get_model("eiger2-9m")
    layout = DetectorLayout(model, "4M")
    assert layout.shape == (2162, 2068)
    assert layout.modules == (3, 4, 6, 7, 9, 10, 12, 13)  # rows 1-4, columns 0-1 of the 3 x 6 grid
    rng = np.random.default_rng(11)
    raw = rng.poisson(1.5, (1, model.n_modules, 512, 1024)).astype(np.uint16)
    full = DetectorLayout(model)
    mask, flatfield = full.default_pixel_mask(), rng.normal(1, 0.02, model.shape).astype(np.float32)
    settings = replace(settings_for(), detector="eiger2-9m", roi_mode="4M")
    settings = replace(settings, image_shape=image_shape(settings))
    image = run(settings, raw, mask, flatfield)
    np.testing.assert_array_equal(image, reference_image(raw, settings, mask, flatfield))
    # the ROI's first module is module 3 of the detector, at the image's top-left corner
    assert image.shape == (2162, 2068)
    with pytest.raises(ValueError, match="roi_mode"):
        DetectorLayout(get_model("eiger2-4m"), "4M")


# -- single steps with hand-computed values ------------------------------------------------------------------------
def one_module_row(values: dict[int, int], **changes) -> np.ndarray:
    """Process a 500K frame whose row 5 carries `values` at raw columns (others 0); return image row 5."""
    settings = replace(settings_for(**changes), detector="eiger2-500k")
    settings = replace(settings, image_shape=image_shape(settings))
    raw = np.zeros((settings.nframes_sum, 1, 512, 1024), np.uint16)
    for col, v in values.items():
        raw[:, 0, 5, col] = v
    layout = DetectorLayout(get_model("eiger2-500k"))
    return run(settings, raw, layout.default_pixel_mask(), np.ones(layout.shape, np.float32))[5]


def test_split_and_interpolation_of_double_pixels_by_hand():
    values = {254: 10, 255: 20, 256: 20, 257: 30}  # raw 255 and 256 are double width: virtual 255..258
    plain = one_module_row(values, countrate_correction_applied=False, flatfield_correction_applied=False)
    assert plain[254:260].tolist() == [10, 10, 10, 10, 10, 30]  # ceil/floor halves
    interpolated = one_module_row(
        values,
        countrate_correction_applied=False,
        flatfield_correction_applied=False,
        virtual_pixel_correction_applied=True,
    )
    # shape 10 -> 30 across the four virtual pixels: weights 14, 18 | 22, 26 -> 20 * 14/32 = 8.75 -> 9
    assert interpolated[254:260].tolist() == [10, 9, 11, 9, 11, 30]
    odd = one_module_row({255: 7}, countrate_correction_applied=False, flatfield_correction_applied=False)
    assert odd[255:257].tolist() == [4, 3]


def test_summation_beyond_16_bit_and_saturation_carried():
    kw = {
        "nframes_sum": 3,
        "bit_depth_image": 32,
        "countrate_correction_applied": False,
        "count_cutoff": 3 * 65534,
        "flatfield_correction_applied": False,
    }
    row = one_module_row({0: 65534, 1: 0xFFFF, 2: 1, 3: 0}, **kw)
    assert row[:4].tolist() == [196602, 2**32 - 1, 3, 0]


def test_count_rate_cutoff_flags_saturation():
    correction = CountRateCorrection(EIGER2, 0.001)
    cut = correction.measured_cutoff
    probe = cut // 2
    row = one_module_row({0: cut, 1: cut + 1, 2: probe}, flatfield_correction_applied=False)
    assert row[:3].tolist() == [correction.cutoff, 65535, correction.lut()[probe]]
    assert correction.lut()[probe] > probe  # the correction adds the lost counts
