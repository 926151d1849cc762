"""Counter model of a module type and the count-rate (pile-up) correction.

Dead-time model: a paralysable counter with dead time tau (`ModuleType.dead_time_s`, the same value the
simulated modules pile up with) measures m = n * exp(-n * tau) counts per second at a true rate n. The
correction inverts that on its rising branch: for a sub-frame of `frame_count_time` t, the measured count c
stands for t * n(c / t), rounded to the nearest integer. It is trusted up to the true rate where n * tau = 1/4
(22 % of the counts lost, the inversion still well conditioned); a measured count beyond that, or beyond what
the counter can hold, is *saturated* and comes out as 2^bits - 1. A read-out pixel of a module with on-chip
2x2 binning sums 4 counters, each seeing a quarter of the rate: its effective dead time is tau / 4.
`countrate_correction_count_cutoff` is the largest count an image can carry that is not flagged.

The pipeline applies the correction as one lookup table per series, `lut[raw] -> corrected or SATURATED`,
indexed by the raw 16-bit sub-frame value (0xFFFF, the DAQ's error value, maps to SATURATED too). With the
correction off the table is the identity (still flagging 0xFFFF), so the kernel always does one lookup.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from opendcu.geometry.models import ModuleType
from opendcu.hardware.counters import counter_top

#: raw sub-frame values are uint16; 0xFFFF means lost packet or saturated counter
RAW_ERROR = 0xFFFF
#: what a lookup table entry says for a saturated / invalid measured count
SATURATED = 0xFFFFFFFF


@dataclass(frozen=True)
class CounterModel:
    """The counting behaviour of one module type, as the pipeline sees it (widened to 16 bit by the DAQ)."""

    #: raw value depth in the pipeline; the top value 2^bits - 1 is the error value
    bits: int
    #: largest valid raw count (the counter's top value is reserved for "saturated")
    counter_max: int
    #: dead time (s) of a read-out pixel's paralysable counter
    dead_time: float
    #: true count rate (counts/s/pixel) up to which the correction is trusted
    max_true_rate: float

    def measured_counts(self, true_counts: np.ndarray, frame_count_time: float) -> np.ndarray:
        """Expected measured counts for true counts in one sub-frame (the forward model, e.g. for tests)."""
        return true_counts * np.exp(-np.asarray(true_counts, dtype=np.float64) / frame_count_time * self.dead_time)

    def true_counts(self, measured: np.ndarray, frame_count_time: float) -> np.ndarray:
        """Invert the dead-time model (float64): true counts for measured counts in one sub-frame."""
        rate = np.asarray(measured, dtype=np.float64) / frame_count_time
        n = rate.copy()
        # fixed point n = m * exp(n * tau): a contraction (factor n * tau <= max_true_rate * tau < 1) on the
        # trusted range; converges to machine precision in a few dozen steps
        for _ in range(60):
            n = rate * np.exp(np.minimum(n * self.dead_time, 1.0))
        return n * frame_count_time

    def measured_cutoff(self, frame_count_time: float) -> int:
        """Largest raw count whose corrected value is still trusted."""
        m = self.measured_counts(np.float64(self.max_true_rate * frame_count_time), frame_count_time)
        return int(min(math.floor(float(m)), self.counter_max))


@dataclass(frozen=True)
class CountRateCorrection:
    """The correction for sub-frames of one count time."""

    counter: CounterModel
    frame_count_time: float

    @property
    def measured_cutoff(self) -> int:
        return self.counter.measured_cutoff(self.frame_count_time)

    def table(self) -> np.ndarray:
        """The exposed table (SIMPLON `countrate_correction_table`, stream V1 `dcountrate_table`):
        float32 [2, N], row 0 measured counts 0..N-1, row 1 the corrected counts (corrected = LUT[measured])."""
        measured = np.arange(self.measured_cutoff + 1, dtype=np.float64)
        corrected = np.floor(self.counter.true_counts(measured, self.frame_count_time) + 0.5)
        return np.stack([measured, corrected]).astype(np.float32)

    def lut(self) -> np.ndarray:
        """uint32[2^bits]: raw value -> corrected count, or SATURATED above the cutoff and for the error value."""
        lut = np.full(1 << self.counter.bits, SATURATED, dtype=np.uint32)
        measured = np.arange(self.measured_cutoff + 1, dtype=np.float64)
        lut[: measured.size] = np.floor(self.counter.true_counts(measured, self.frame_count_time) + 0.5)
        return lut

    @property
    def cutoff(self) -> int:
        """Largest corrected count of one sub-frame."""
        return int(self.lut()[self.measured_cutoff])


def identity_lut(bits: int) -> np.ndarray:
    """The lookup table without correction: raw value -> itself, the error value -> SATURATED."""
    lut = np.arange(1 << bits, dtype=np.uint32)
    lut[-1] = SATURATED
    return lut


def lut_identity_limit(lut: np.ndarray) -> int:
    """Smallest raw value whose entry differs from the value itself (below it the table is a no-op)."""
    differs = np.flatnonzero(lut != np.arange(lut.size, dtype=np.uint32))
    return int(differs[0]) if differs.size else lut.size


#: the correction is trusted while n * tau <= this (22 % of the counts lost)
TRUSTED_DEAD_FRACTION = 0.25


def counter_model(module: ModuleType, dead_time: float | None = None) -> CounterModel:
    """The counter of `module` as the pipeline sees it; `dead_time`: the measured dead time of a read-out pixel
    (app-calibration's count-rate calibration), else the module type's nominal one."""
    pixels = module.binning * module.binning  # sensor counters summed into one read-out pixel
    if dead_time is None or dead_time <= 0:
        dead_time = module.dead_time_s / pixels
    return CounterModel(
        bits=16,
        counter_max=min(counter_top(module.counter) * pixels, RAW_ERROR - 1),
        dead_time=dead_time,
        max_true_rate=TRUSTED_DEAD_FRACTION / dead_time,
    )
