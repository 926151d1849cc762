"""The image-processing keys of the SIMPLON `detector` subsystem and the series settings derived from them.

These keys switch the pipeline's steps (spec/simplon-api.md §14); they are part of the detector subsystem,
which `control/detector_params.py` assembles.
"""

from __future__ import annotations

from typing import Any

from opendcu.app_detector.control.parameters import Parameter, Subsystem
from opendcu.app_detector.series import SeriesSettings
from opendcu.geometry import DetectorLayout, DetectorModel


def image_processing_parameters(model: DetectorModel) -> list[Parameter]:
    """Parameters that select what the pipeline does to each image."""
    layout = DetectorLayout(model)
    h, w = model.shape
    return [
        Parameter("compression", "string", "bslz4", allowed_values=["bslz4"]),
        Parameter("bit_depth_image", "uint", 16, access_mode="r"),
        Parameter("countrate_correction_count_cutoff", "uint", 0xFFFE, access_mode="r", unit="counts"),
        Parameter("pixel_mask_applied", "bool", True),
        Parameter("mask_to_zero", "bool", False),
        Parameter("pixel_mask", "uint[][]", layout.default_pixel_mask(), listed=False, shape=lambda: (h, w)),
    ]


def series_settings(det: Subsystem, model: DetectorModel, series_id: int, nimages_total: int) -> SeriesSettings:
    """The pipeline settings of a series, from the detector config at arm."""
    values: dict[str, Any] = det.values
    return SeriesSettings(
        series_id=series_id,
        detector=model.name,
        nimages_total=nimages_total,
        bit_depth_image=values["bit_depth_image"],
        compression=values["compression"],
        pixel_mask_applied=values["pixel_mask_applied"],
        mask_to_zero=values["mask_to_zero"],
    )
