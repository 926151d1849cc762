"""A series: everything the data path needs to know about one arm..disarm, fixed at arm time."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class SeriesSettings:
    """Pipeline settings of one series (small and picklable: it is sent to every worker process)."""

    series_id: int
    detector: str
    nimages_total: int
    bit_depth_image: int
    compression: str
    pixel_mask_applied: bool
    mask_to_zero: bool
    #: name of the shared-memory block holding this series' calibration arrays (pixel mask)
    calibration_shm: str = ""

    @property
    def dtype(self) -> np.dtype:
        return np.dtype({8: np.uint8, 16: np.uint16, 32: np.uint32}[self.bit_depth_image])

    @property
    def error_value(self) -> int:
        return (1 << self.bit_depth_image) - 1


@dataclass
class Series:
    """One series as the app-detector runs it."""

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

    @property
    def series_id(self) -> int:
        return self.settings.series_id

    @property
    def nimages_total(self) -> int:
        return self.settings.nimages_total
