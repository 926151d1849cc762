"""A series: everything the data path needs to know about one arm..disarm, fixed at arm time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from opendcu.geometry import DetectorLayout, get_model


@dataclass(frozen=True)
class SeriesSettings:
    """Pipeline settings of one series (small and picklable: it is sent to every worker process).

    Built from the detector config at arm by `pipeline/params.py:series_settings`. Each step's switch is the
    SIMPLON key of the same name; `binning_2x2_applied` and `float8_encoding_applied` are opendcu's.
    """

    series_id: int
    detector: str
    nimages_total: int
    bit_depth_image: int
    compression: str
    pixel_mask_applied: bool
    mask_to_zero: bool
    countrate_correction_applied: bool = False
    #: sub-frame count time (s): selects the count-rate lookup table
    frame_count_time: float = 1.0
    #: sub-frames summed into each image (auto_summation)
    nframes_sum: int = 1
    #: largest valid count of one pixel (the sum of the sub-frames' cutoffs); larger values are flagged saturated
    count_cutoff: int = 0xFFFE
    #: dead time (s) of a read-out pixel the count-rate table inverts (0: the module type's nominal one)
    dead_time: float = 0.0
    virtual_pixel_correction_applied: bool = False
    flatfield_correction_applied: bool = False
    roi_mode: str = "disabled"
    binning_2x2_applied: bool = False
    float8_encoding_applied: bool = False
    #: image shape (height, width) after ROI and binning, what every interface receives (None: the detector's)
    image_shape: tuple[int, int] | None = None
    #: name of the shared-memory block holding this series' pipeline arrays (pixel mask, flatfield)
    calibration_shm: str = ""
    #: (slot bytes, slots) of the raw ring's partition for this series (set by the DataPath at arm): every
    #: process that reads raw frames views the ring so; (0, 0): as it is
    raw_slots: tuple[int, int] = (0, 0)
    #: (slot bytes, slots) of the compressed-image ring's partition for this series, as raw_slots
    out_slots: tuple[int, int] = (0, 0)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype({8: np.uint8, 16: np.uint16, 32: np.uint32}[self.bit_depth_image])

    @property
    def error_value(self) -> int:
        return (1 << self.bit_depth_image) - 1

    @property
    def binning(self) -> int:
        """Pixels per image pixel along each axis (1, or 2 with 2x2 binning): pixel size and beam centre scale."""
        return 2 if self.binning_2x2_applied else 1


@dataclass
class Series:
    """One series as the app-detector runs it.

    The arrays describe the images as interfaces receive them (after ROI and binning), for NXmx and stream
    headers: `pixel_mask` (uint32, with 2x2 binning the OR of each block), `flatfield` (float32, with binning
    the block mean) and `countrate_table` (float32 [2, N]: measured counts, corrected counts of one sub-frame).
    """

    settings: SeriesSettings
    nimages: int
    ntrigger: int
    trigger_mode: str
    count_time: float
    frame_time: float
    #: detector config snapshot taken at arm (for file and stream headers)
    detector_config: dict[str, Any] = field(default_factory=dict)
    pixel_mask: np.ndarray | None = None
    flatfield: np.ndarray | None = None
    countrate_table: np.ndarray | None = None  # 2 x N [measured, corrected] (stream headers, NXmx master)
    unique_id: str = ""
    #: the full-detector pixel mask and flatfield the pipeline works from (before ROI and binning)
    detector_pixel_mask: np.ndarray | None = None
    detector_flatfield: np.ndarray | None = None
    #: extra keys for the stream v2 end message, filled by interfaces that end the series before the Stream
    #: (ImageMux order), e.g. the analysis results no later image message could carry
    end_annotations: dict[str, Any] = field(default_factory=dict)

    @property
    def series_id(self) -> int:
        return self.settings.series_id

    @property
    def nimages_total(self) -> int:
        return self.settings.nimages_total

    @property
    def modules(self) -> tuple[int, ...]:
        """The modules read out, as indices of the detector's modules: all of them, or those of the ROI."""
        return DetectorLayout(get_model(self.settings.detector), self.settings.roi_mode).modules
