"""The image-processing keys of the SIMPLON `detector` subsystem and the series settings derived from them.

These keys switch the pipeline's steps (spec/simplon-api.md §6, §14); they are part of the detector subsystem,
which `control/detector_params.py` assembles (timing, `nframes_sum`, `frame_count_time` and `roi_mode` are
declared there). Read-only keys derived here, computed on every read from the keys they depend on:

- `bit_depth_image`: 8 with `float8_encoding_applied`; 32 when sub-frames are summed (`nframes_sum` > 1) or with
  2x2 binning (sums exceed 16 bit); else 16. Counts a 16-bit image cannot hold are flagged saturated (2^16 - 1);
- `countrate_correction_count_cutoff`: the largest valid count of an image (stream V2/NXmx `saturation_value`);
- `countrate_correction_table` (darray float32 [2, N], not listed): measured -> corrected counts of a sub-frame.
- `countrate_correction_dead_time` (float s, read-only, not listed; opendcu): the dead time the table inverts:
  the active calibration set's measured one (mean over the modules), else the module type's nominal one.

opendcu-specific keys (not in DECTRIS' SIMPLON):
- `binning_2x2_applied` (bool, default false): images are 2x2 block sums (half the width and height, pixels of
  twice the size: x/y_pixels_in_detector and x/y_pixel_size follow); a block with a masked pixel is masked,
  one with an invalid pixel invalid. `beam_center_x/y` stay what the user set, in detector pixels; what
  describes the images (the series' config snapshot: NXmx master, stream headers, monitor TIFF, analysis) gives
  the beam centre in image pixels, beam_center / 2 (pixel edges at 0, so the binned pixel c covers detector
  pixels 2c and 2c + 1), which puts it on the same physical spot: beam_center x pixel size is unchanged, and
  so is `detector_translation`;
- `float8_encoding_applied` (bool, default false): each pixel is the 8-bit float code E3M5 of its count
  (`opendcu.codecs.float8`: exact up to 63, 3 % steps above, 0xFF = 4032 or more / masked / invalid).
"""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache
from typing import Any

import numpy as np

from opendcu.app_detector.control.errors import InvalidValue
from opendcu.app_detector.control.parameters import Parameter, Subsystem
from opendcu.app_detector.pipeline.arrays import PipelineArrays, image_shape
from opendcu.app_detector.pipeline.countrate import CounterModel, CountRateCorrection, counter_model
from opendcu.app_detector.series import SeriesSettings
from opendcu.codecs import CODECS
from opendcu.codecs.float8 import FLOAT8_MAX
from opendcu.geometry import DetectorLayout, DetectorModel


def _check_flatfield(value: np.ndarray) -> None:
    if np.any(value < 0):
        raise InvalidValue("Parameter flatfield: factors must be >= 0")


@lru_cache(maxsize=16)
def _correction(counter: CounterModel, frame_count_time: float) -> tuple[int, np.ndarray]:
    """(sub-frame cutoff, exposed table) of one count time (cached: the table is read at every arm)."""
    correction = CountRateCorrection(counter, frame_count_time)
    table = correction.table()
    table.setflags(write=False)
    return correction.cutoff, table


def image_binning(det: Subsystem) -> int:
    """Detector pixels per image pixel along each axis: 2 with `binning_2x2_applied`, else 1."""
    return 2 if det.values.get("binning_2x2_applied") else 1


def bit_depth(values: dict[str, Any], nframes_sum: int) -> int:
    if values["float8_encoding_applied"]:
        return 8
    return 32 if (nframes_sum > 1 or values["binning_2x2_applied"]) else 16


def pixel_cutoff(det: Subsystem, counter: CounterModel) -> int:
    """Largest valid count of one pixel of an image: the sum of the sub-frames' cutoffs."""
    if det["countrate_correction_applied"]:
        subframe = _correction(counter, float(det["frame_count_time"]))[0]
    else:
        subframe = counter.counter_max
    return det["nframes_sum"] * subframe


def saturation(cutoff: int, bits: int, binning: bool, float8: bool) -> int:
    """Largest valid count of an image: the pixels' cutoff (x4 for a 2x2 block), within what the bit depth holds."""
    top_valid = FLOAT8_MAX - 1 if float8 else (1 << bits) - 2
    return int(min(cutoff * (4 if binning else 1), top_valid))


def image_processing_parameters(model: DetectorModel) -> list[Parameter]:
    """Parameters that select what the pipeline does to each image."""
    nominal = counter_model(model.module)
    h, w = model.shape

    def counter(det: Subsystem) -> CounterModel:
        return counter_model(model.module, det["countrate_correction_dead_time"])

    def depth(det: Subsystem) -> int:
        return bit_depth(det.values, det["nframes_sum"])

    def cutoff(det: Subsystem) -> int:
        return saturation(
            pixel_cutoff(det, counter(det)), depth(det), det["binning_2x2_applied"], det["float8_encoding_applied"]
        )

    def on_binning(det: Subsystem, _key: str, binning: bool) -> list[str]:
        # the delivered images have half the pixels of twice the size; the ROI (roi_mode) is already applied
        factor = 2 if binning else 1
        roi_h, roi_w = DetectorLayout(model, det["roi_mode"]).shape
        det.values.update(
            x_pixels_in_detector=roi_w // factor,
            y_pixels_in_detector=roi_h // factor,
            x_pixel_size=model.module.pixel_size_m * factor,
            y_pixel_size=model.module.pixel_size_m * factor,
        )
        return ["x_pixels_in_detector", "y_pixels_in_detector", "x_pixel_size", "y_pixel_size"]

    derived = ("bit_depth_image", "countrate_correction_count_cutoff")
    ro = "r"
    return [
        Parameter("compression", "string", "bslz4", allowed_values=list(CODECS)),
        Parameter("bit_depth_image", "uint", 16, access_mode=ro, compute=depth),
        Parameter("auto_summation", "bool", True),
        Parameter("countrate_correction_applied", "bool", True, affects=derived),
        Parameter("countrate_correction_count_cutoff", "uint", 0, access_mode=ro, unit="counts", compute=cutoff),
        # the dead-time model is that of a continuous source (no bunch structure)
        Parameter(
            "countrate_correction_bunch_mode", "string", "continuous", access_mode=ro, allowed_values=["continuous"]
        ),
        Parameter(
            "countrate_correction_table",
            "float[][]",
            np.zeros((2, 1), np.float32),
            access_mode=ro,
            compute=lambda det: _correction(counter(det), float(det["frame_count_time"]))[1],
        ),
        Parameter("countrate_correction_dead_time", "float", nominal.dead_time, access_mode=ro, unit="s", listed=False),
        Parameter("virtual_pixel_correction_applied", "bool", False),
        Parameter("flatfield_correction_applied", "bool", True),
        Parameter("flatfield", "float[][]", np.ones((h, w), np.float32), shape=lambda: (h, w), check=_check_flatfield),
        Parameter("pixel_mask_applied", "bool", True),
        Parameter("pixel_mask", "uint[][]", DetectorLayout(model).default_pixel_mask(), shape=lambda: (h, w)),
        Parameter("mask_to_zero", "bool", False),
        Parameter("binning_2x2_applied", "bool", False, affects=derived, on_change=on_binning),
        Parameter("float8_encoding_applied", "bool", False, affects=derived),
    ]


def series_settings(det: Subsystem, model: DetectorModel, series_id: int, nimages_total: int) -> SeriesSettings:
    """The pipeline settings of a series, from the detector config at arm."""
    nframes = det["nframes_sum"]
    settings = SeriesSettings(
        series_id=series_id,
        detector=model.name,
        nimages_total=nimages_total,
        bit_depth_image=det["bit_depth_image"],
        compression=det["compression"],
        pixel_mask_applied=det["pixel_mask_applied"],
        mask_to_zero=det["mask_to_zero"],
        countrate_correction_applied=det["countrate_correction_applied"],
        frame_count_time=float(det["frame_count_time"]),
        nframes_sum=nframes,
        count_cutoff=pixel_cutoff(det, counter_model(model.module, det["countrate_correction_dead_time"])),
        dead_time=float(det["countrate_correction_dead_time"]),
        virtual_pixel_correction_applied=det["virtual_pixel_correction_applied"],
        flatfield_correction_applied=det["flatfield_correction_applied"],
        roi_mode=det["roi_mode"],
        binning_2x2_applied=det["binning_2x2_applied"],
        float8_encoding_applied=det["float8_encoding_applied"],
    )
    return replace(settings, image_shape=image_shape(settings))


def series_arrays(det: Subsystem, settings: SeriesSettings) -> dict[str, Any]:
    """The per-pixel arrays a `Series` carries (keyword arguments of Series)."""
    arrays = PipelineArrays.for_detector(settings, det["pixel_mask"], det["flatfield"])
    mask, flatfield = arrays.in_image_geometry(settings)
    return {
        "pixel_mask": mask,
        "flatfield": flatfield,
        "countrate_table": det["countrate_correction_table"],
        "detector_pixel_mask": det["pixel_mask"],
        "detector_flatfield": det["flatfield"],
    }


def saturation_value(settings: SeriesSettings) -> int:
    """The largest valid count of an image of the series (stream V2 / NXmx `saturation_value`)."""
    return saturation(
        settings.count_cutoff, settings.bit_depth_image, settings.binning_2x2_applied, settings.float8_encoding_applied
    )


def apply_calibration(det: Subsystem, calibration: Any) -> None:
    """Store a calibration (app-calibration's CalibrationArrays, or a bare pixel mask) as the detector's
    `pixel_mask` and `flatfield`, and as what DELETE restores (at initialize)."""
    if isinstance(calibration, np.ndarray):
        arrays = {"pixel_mask": calibration}
    else:
        arrays = {"pixel_mask": calibration.pixel_mask, "flatfield": calibration.flatfield}
        dead_times = getattr(calibration, "dead_time", ())
        if len(dead_times):  # one table for all modules: their mean (app-calibration reports each)
            det.values["countrate_correction_dead_time"] = float(np.mean(dead_times))
    for key, value in arrays.items():
        det.values[key] = det.factory[key] = value


def apply_flatfield(det: Subsystem, calibration: Any) -> None:
    """Store the factory flatfield of new energies (app-calibration's CalibrationArrays) as `flatfield` and as
    what DELETE restores: a custom flatfield is lost on an energy change (spec §14); the pixel mask, which does
    not depend on the energy, stays as it is (custom or not)."""
    det.values["flatfield"] = det.factory["flatfield"] = calibration.flatfield
