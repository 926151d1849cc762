"""Auto-summation planning (hardware/summation.py): how many sub-frames an image of a count time needs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from opendcu.app_detector.datapath import DataPathConfig, raw_slots
from opendcu.geometry import get_model
from opendcu.hardware import summation
from opendcu.hardware.counters import counter_top

EIGER2 = get_model("eiger2-500k").module


def test_eiger2_limit_is_17_5_ms():
    limit = summation.max_frame_count_time(EIGER2)
    assert limit == pytest.approx(0.01747, abs=1e-5)
    # the limit is what a counter at its fastest (1 / (e tau)) reaches with 5 sigma to spare below the top
    mu = limit / (math.e * EIGER2.dead_time_s)
    assert mu + 5 * math.sqrt(mu) == pytest.approx(counter_top("uint16"), rel=1e-9)


def test_plan_splits_count_time_at_the_limit():
    limit = summation.max_frame_count_time(EIGER2)
    assert summation.plan(EIGER2, limit, 2 * limit, True) == summation.SummationPlan(1, limit, 2 * limit)
    assert summation.plan(EIGER2, limit * (1 + 1e-6), 1.0, True).nframes_sum == 2  # just beyond: two sub-frames
    assert summation.plan(EIGER2, 3 * limit, 1.0, True).nframes_sum == 3  # exactly three limits: three
    assert summation.plan(EIGER2, 3 * limit * (1 + 1e-6), 1.0, True).nframes_sum == 4
    p = summation.plan(EIGER2, 0.05, 0.06, True)
    assert p.nframes_sum == 3
    assert p.frame_count_time == pytest.approx(0.05 / 3) and p.frame_period == pytest.approx(0.02)
    assert p.frame_count_time <= limit
    assert summation.plan(EIGER2, 1e-6, 1e-3, True).nframes_sum == 1
    assert summation.plan(EIGER2, 1.0, 1.0, True).nframes_sum == 58


@pytest.mark.parametrize("count_time", [1e-4, 0.05, 1.0, 100.0])
def test_without_auto_summation_one_subframe(count_time):
    p = summation.plan(EIGER2, count_time, count_time + 1e-7, False)
    assert p == summation.SummationPlan(1, count_time, count_time + 1e-7)


@pytest.mark.parametrize("name", ["eiger2-500k", "pilatus4-1m", "fastasic", "fastasic-bin2", "fastasic-bin2-8bit"])
def test_subframes_never_overflow_at_the_fastest_rate(name):
    """Every module type: a pixel counting at the paralysable maximum in a sub-frame of the planned length stays
    below its read-out format's top (checked with the simulator's own counting law, Poisson draws included)."""
    module = get_model(name).module
    count_time = 40 * summation.max_frame_count_time(module)
    p = summation.plan(module, count_time, count_time, True)
    assert p.nframes_sum == 40
    rate = module.binning**2 / (math.e * module.dead_time_s)
    counts = np.random.default_rng(1).poisson(rate * p.frame_count_time, 1_000_000)
    top = min(counter_top(module.counter), module.pixel_counter_max * module.binning**2)
    assert counts.max() <= top


@pytest.mark.parametrize(
    "name, nsub, slots",
    [
        ("eiger2-500k", 1, 1024),
        ("eiger2-500k", 58, 17),
        ("eiger2-4m", 1, 128),
        ("eiger2-4m", 58, 2),
        ("eiger2-16m", 1, 32),
        ("eiger2-16m", 58, 0),
        ("fastasic", 1, 8192),
        ("fastasic", 7, 2080),  # 7 x 72 KiB = 504 KiB per slot
    ],
)
def test_raw_slots_per_series(name, nsub, slots):
    """The 1 GiB raw buffer is cut per series into slots of one image's sub-frames (at most 8192 slots): a 4M
    holds two 1 s images (58 sub-frames of 1 MiB per module) or 128
    single frames; a 16M needs more memory; small frames are capped at 8192 slots."""
    assert raw_slots(get_model(name), nsub, DataPathConfig(data_dir=None)) == slots
