"""The count-rate table pinned by numbers worked out by hand (not by the code under test run a second way).

EIGER2 module: paralysable counter, dead time tau = 100 ns, no on-chip binning. Sub-frame count time t = 1 ms.
A true count N in t is measured as m = N exp(-N tau / t) = N exp(-N / 10000). Its inverse on the rising branch
is N = -10000 W(-m / 10000), W the principal Lambert W, whose series W(x) = x - x^2 + 3/2 x^3 - 8/3 x^4 +
125/24 x^5 - 54/5 x^6 + ... converges fast for the small |x| here.
"""

from __future__ import annotations

import numpy as np

from opendcu.app_detector.pipeline.countrate import SATURATED, CountRateCorrection, counter_model
from opendcu.geometry import get_model

T = 1e-3  # s


def correction() -> CountRateCorrection:
    module = get_model("eiger2-500k").module
    assert module.dead_time_s == 100e-9 and module.binning == 1  # what the arithmetic below assumes
    return CountRateCorrection(counter_model(module), T)


def test_trusted_range_and_cutoff_by_hand():
    c = correction()
    # trusted while N tau / t <= 1/4: N <= 0.25 * 1e-3 / 100e-9 = 2500 true counts per sub-frame
    assert c.counter.max_true_rate * T == 2500.0
    # the largest trusted measured count: floor(2500 exp(-1/4)) = floor(2500 * 0.778800783) = floor(1947.002) = 1947
    assert c.measured_cutoff == 1947
    # its corrected value: W(-0.1947) lies 3.4e-7 above W(-0.19470020) = -1/4 (slope e^w (1 + w) = 0.584),
    # so N = 2499.9966, rounded 2500
    assert c.cutoff == 2500


def test_table_entries_by_hand():
    lut = correction().lut()
    # m = 0: nothing counted, nothing lost
    assert lut[0] == 0
    # m = 10: x = -0.001, W = -0.001 - 1e-6 - 1.5e-9 = -0.0010010015; N = 10.010 -> 10
    assert lut[10] == 10
    # m = 100: x = -0.01, W = -0.01 - 1e-4 - 1.5e-6 - 2.7e-8 - 5e-10 = -0.0101015; N = 101.015 -> 101
    assert lut[100] == 101
    # m = 1000: x = -0.1, W = -0.1 - 0.01 - 0.0015 - 0.000266667 - 0.0000520833 - 0.0000108 - 0.0000023343
    #   - ... = -0.11183; N = 1118.33 -> 1118 (fixed point N = 1000 exp(N / 10000) from 1000: 1105.17, 1116.86,
    #   1118.16, 1118.31, 1118.33)
    assert lut[1000] == 1118
    # beyond the cutoff, and the DAQ's error value 0xFFFF: saturated
    assert lut[1948] == SATURATED and lut[0xFFFF] == SATURATED


def test_exposed_table_by_hand():
    table = correction().table()
    # float32 [2, 1948]: row 0 the measured counts 0..1947, row 1 their corrected counts
    assert table.shape == (2, 1948) and table.dtype == np.float32
    assert np.array_equal(table[0], np.arange(1948, dtype=np.float32))
    assert (table[1, 0], table[1, 10], table[1, 100], table[1, 1000], table[1, 1947]) == (0, 10, 101, 1118, 2500)
