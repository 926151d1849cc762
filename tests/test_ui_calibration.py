"""The Calibration page's map (base/rest/ui_calibration.py): modules found from the mask's gap bit are the
geometry's, and the binned codes and statistics are numpy's of the same pixels."""

from __future__ import annotations

import numpy as np
import pytest

from opendcu.base.rest.ui_calibration import binned_codes, describe, module_regions
from opendcu.base.rest.ui_images import GAP, MASKED
from opendcu.geometry import DetectorLayout, get_model


@pytest.mark.parametrize("detector", ["eiger2-500k", "eiger2-1m", "eiger2-4m", "eiger2-16m", "pilatus4-1m"])
def test_modules_from_the_gap_bit_are_the_geometrys(detector: str) -> None:
    layout = DetectorLayout(get_model(detector))
    want = sorted(
        (ys.start, xs.start, ys.stop - ys.start, xs.stop - xs.start)
        for ys, xs in (layout.module_slices(m) for m in layout.modules)
    )
    assert sorted(module_regions(layout.gap_mask)) == want


def test_codes_and_statistics_against_numpy() -> None:
    layout = DetectorLayout(get_model("eiger2-1m"))
    mask = layout.gap_mask.astype(np.uint32)
    rng = np.random.default_rng(3)
    flat = rng.normal(1.0, 0.05, mask.shape).astype(np.float32)
    mask[100, 200] |= 1 << 1  # dead
    mask[300:303, 400] |= 1 << 4  # noisy
    flat[500, 600] = np.nan  # a value that is no number is left out, not passed on as NaN
    answer = describe("flatfield", flat, mask, 4)
    valid = (mask == 0) & np.isfinite(flat)
    lo, hi = np.percentile(flat[valid], (0.5, 99.5))
    assert (answer["lo"], answer["hi"]) == pytest.approx((lo, hi))
    for m in answer["modules"]:
        region = np.s_[m["y0"] : m["y0"] + m["h"], m["x0"] : m["x0"] + m["w"]]
        v = flat[region][valid[region]].astype(np.float64)
        assert (m["mean"], m["std"], m["min"], m["max"]) == pytest.approx((v.mean(), v.std(), v.min(), v.max()))
        assert sum(m["histogram"]["counts"]) == np.count_nonzero((v >= lo) & (v <= hi))
    assert sum(m["masked_by_bit"]["dead"] for m in answer["modules"]) == 1
    assert sum(m["masked_by_bit"]["noisy"] for m in answer["modules"]) == 3
    codes = binned_codes("flatfield", flat, mask, 4, lo, hi)
    h, w = mask.shape
    for y, x in [(0, 0), (25, 50), (75, 150), (125, 100), (h // 4 - 1, w // 4 - 1)]:
        block = np.s_[4 * y : 4 * y + 4, 4 * x : 4 * x + 4]
        ok = valid[block]
        if (mask[block] & 1).all():
            assert codes[y, x] == GAP
        elif not ok.any():
            assert codes[y, x] == MASKED
        else:
            want = np.clip((flat[block][ok].astype(np.float64).mean() - lo) / (hi - lo) * 250, 0, 249)
            assert codes[y, x] == int(want)
    # the mask's map: any masked pixel marks its block, gaps are grey, the rest level 0
    mcodes = binned_codes("pixel_mask", mask, mask, 4, 0, 1)
    assert mcodes[100 // 4, 200 // 4] == MASKED and mcodes[300 // 4, 400 // 4] == MASKED
    assert set(np.unique(mcodes)) == {0, GAP, MASKED}
