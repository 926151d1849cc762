"""The image-processing keys of the SIMPLON `detector` subsystem and the series settings derived from them.

These keys switch the pipeline's steps (spec/simplon-api.md §6, §14); they are part of the detector subsystem,
which `control/detector_params.py` assembles. Derived, read-only keys follow the switches and the count time
(`refresh_image_parameters`, also called when count_time/frame_time change):

- `nframes_sum`, `frame_count_time`: with `auto_summation` a count time longer than the counter's longest
  sub-frame (0.1 s on the simulated EIGER2) is split into `nframes_sum` equal sub-frames that are summed;
- `bit_depth_image`: 8 with `float8_encoding_applied`; 32 when sub-frames are summed or with 2x2 binning (sums
  exceed 16 bit); else 16. Counts a 16-bit image cannot hold are flagged saturated (2^16 - 1);
- `countrate_correction_count_cutoff`: the largest valid count of an image (stream V2/NXmx `saturation_value`);
- `countrate_correction_table` (darray float32 [2, N], not listed): measured -> corrected counts of a sub-frame;
- `number_of_excluded_pixels`: pixels with any `pixel_mask` bit.

opendcu-specific keys (not in DECTRIS' SIMPLON):
- `binning_2x2_applied` (bool, default false): images are 2x2 block sums (half the width and height, pixels of
  twice the size); a block with a masked pixel is masked, one with an invalid pixel invalid;
- `float8_encoding_applied` (bool, default false): each pixel is the 8-bit float code E3M5 of its count
  (`opendcu.codecs.float8`: exact up to 63, 3 % steps above, 0xFF = 4032 or more / masked / invalid).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from opendcu.app_detector.control.errors import InvalidValue
from opendcu.app_detector.control.parameters import OnChange, Parameter, Subsystem
from opendcu.app_detector.pipeline.arrays import PipelineArrays, image_shape
from opendcu.app_detector.pipeline.countrate import CountRateCorrection, counter_model
from opendcu.app_detector.series import SeriesSettings
from opendcu.codecs import CODECS
from opendcu.codecs.float8 import FLOAT8_MAX
from opendcu.geometry import DetectorLayout, DetectorModel

#: read-only keys recomputed by refresh_image_parameters
DERIVED_KEYS = ("bit_depth_image", "countrate_correction_count_cutoff", "countrate_correction_table",
                "frame_count_time", "nframes_sum", "number_of_excluded_pixels")


def _check_flatfield(value: np.ndarray) -> None:
    if not np.issubdtype(value.dtype, np.floating) and not np.issubdtype(value.dtype, np.integer):
        raise InvalidValue(f"Parameter flatfield: expected float32 factors, got {value.dtype}")
    if not np.all(np.isfinite(value)) or np.any(value < 0):
        raise InvalidValue("Parameter flatfield: factors must be finite and >= 0")


def _check_pixel_mask(value: np.ndarray) -> None:
    if not np.issubdtype(value.dtype, np.integer) or np.any(value < 0) or np.any(value > 0xFFFFFFFF):
        raise InvalidValue("Parameter pixel_mask: expected uint32 mask bits")


def _saturation(pixel_cutoff: int, bits: int, binning: bool, float8: bool) -> int:
    """Largest valid count of an image: the pixels' cutoff (x4 for a 2x2 block), within what the bit depth holds."""
    top_valid = FLOAT8_MAX - 1 if float8 else (1 << bits) - 2
    return int(min(pixel_cutoff * (4 if binning else 1), top_valid))


def derived_values(values: dict[str, Any], model: DetectorModel) -> dict[str, Any]:
    """The read-only image-processing values implied by the switches and the count time."""
    counter = counter_model(model.module)
    count_time = float(values.get("count_time", counter.frame_count_time_max))
    nframes = counter.nframes_sum(count_time, values["auto_summation"])
    frame_count_time = count_time / nframes
    correction = CountRateCorrection(counter, frame_count_time)
    subframe_cutoff = correction.cutoff if values["countrate_correction_applied"] else counter.counter_max
    binning, float8 = values["binning_2x2_applied"], values["float8_encoding_applied"]
    bits = 8 if float8 else 32 if (nframes > 1 or binning) else 16
    pixel_cutoff = nframes * subframe_cutoff
    return {
        "nframes_sum": nframes,
        "frame_count_time": frame_count_time,
        "bit_depth_image": bits,
        "pixel_cutoff": pixel_cutoff,
        "countrate_correction_count_cutoff": _saturation(pixel_cutoff, bits, binning, float8),
        "countrate_correction_table": correction.table(),
        "number_of_excluded_pixels": int(np.count_nonzero(values["pixel_mask"])),
    }


def refresh_image_parameters(det: Subsystem, model: DetectorModel) -> list[str]:
    """Recompute the derived keys from the current values; return those that changed."""
    new = derived_values(det.values, model)
    changed = []
    for key in DERIVED_KEYS:
        old = det.values.get(key)
        same = np.array_equal(old, new[key]) if isinstance(new[key], np.ndarray) else old == new[key]
        if not same:
            det.values[key] = new[key]
            changed.append(key)
    return changed


def image_processing_parameters(model: DetectorModel) -> list[Parameter]:
    """Parameters that select what the pipeline does to each image."""
    layout = DetectorLayout(model)
    h, w = model.shape

    def refresh(det: Subsystem, _key: str, _value: Any) -> list[str]:
        return refresh_image_parameters(det, model)

    def switch(key: str, default: bool, on_change: OnChange | None = refresh) -> Parameter:
        return Parameter(key, "bool", default, on_change=on_change)

    mask = layout.default_pixel_mask()
    defaults = derived_values(
        {"auto_summation": True, "countrate_correction_applied": True, "binning_2x2_applied": False,
         "float8_encoding_applied": False, "pixel_mask": mask},
        model,
    )
    ro = "r"
    return [
        Parameter("compression", "string", "bslz4", allowed_values=list(CODECS)),
        Parameter("bit_depth_image", "uint", defaults["bit_depth_image"], access_mode=ro),
        switch("auto_summation", True),
        Parameter("nframes_sum", "uint", defaults["nframes_sum"], access_mode=ro),
        switch("countrate_correction_applied", True),
        Parameter("countrate_correction_count_cutoff", "uint", defaults["countrate_correction_count_cutoff"],
                  access_mode=ro, unit="counts"),
        Parameter("countrate_correction_table", "float[][]", defaults["countrate_correction_table"], access_mode=ro,
                  listed=False),
        switch("virtual_pixel_correction_applied", False, on_change=None),
        switch("flatfield_correction_applied", True, on_change=None),
        Parameter("flatfield", "float[][]", np.ones((h, w), np.float32), listed=False, shape=lambda: (h, w),
                  check=_check_flatfield),
        switch("pixel_mask_applied", True, on_change=None),
        Parameter("pixel_mask", "uint[][]", mask, listed=False, shape=lambda: (h, w), check=_check_pixel_mask,
                  on_change=refresh),
        Parameter("number_of_excluded_pixels", "uint", defaults["number_of_excluded_pixels"], access_mode=ro),
        switch("mask_to_zero", False, on_change=None),
        Parameter("roi_mode", "string", "disabled", allowed_values=["disabled", *model.roi_modes]),
        switch("binning_2x2_applied", False),
        switch("float8_encoding_applied", False),
    ]


def series_settings(det: Subsystem, model: DetectorModel, series_id: int, nimages_total: int) -> SeriesSettings:
    """The pipeline settings of a series, from the detector config at arm."""
    values: dict[str, Any] = det.values
    derived = derived_values(values, model)
    settings = SeriesSettings(
        series_id=series_id,
        detector=model.name,
        nimages_total=nimages_total,
        bit_depth_image=derived["bit_depth_image"],
        compression=values["compression"],
        pixel_mask_applied=values["pixel_mask_applied"],
        mask_to_zero=values["mask_to_zero"],
        countrate_correction_applied=values["countrate_correction_applied"],
        frame_count_time=derived["frame_count_time"],
        nframes_sum=derived["nframes_sum"],
        count_cutoff=derived["pixel_cutoff"],
        virtual_pixel_correction_applied=values["virtual_pixel_correction_applied"],
        flatfield_correction_applied=values["flatfield_correction_applied"],
        roi_mode=values["roi_mode"],
        binning_2x2_applied=values["binning_2x2_applied"],
        float8_encoding_applied=values["float8_encoding_applied"],
    )
    return replace(settings, image_shape=image_shape(settings))


def series_arrays(det: Subsystem, settings: SeriesSettings) -> dict[str, np.ndarray]:
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
    return _saturation(settings.count_cutoff, settings.bit_depth_image, settings.binning_2x2_applied,
                       settings.float8_encoding_applied)


def apply_calibration(det: Subsystem, model: DetectorModel, calibration: Any) -> None:
    """Store a calibration (app-calibration's CalibrationArrays, or a bare pixel mask) as the detector's
    `pixel_mask` and `flatfield`, and update what derives from them (at initialize)."""
    if isinstance(calibration, np.ndarray):
        det.values["pixel_mask"] = calibration
    else:
        det.values["pixel_mask"] = calibration.pixel_mask
        det.values["flatfield"] = calibration.flatfield
    refresh_image_parameters(det, model)
