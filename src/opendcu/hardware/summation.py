"""Auto-summation: how a long count time is split into sub-frames that the modules' counters can hold.

SIMPLON (spec/simplon-api.md §14, UM2 §3.2.3): with `auto_summation` the detector takes each image as
`nframes_sum` sub-frames of `frame_count_time` = count_time / nframes_sum (one every `frame_period` =
frame_time / nframes_sum), reads each out at the counter depth (`bit_depth_readout`), and the DCU sums them
into one image of up to 32 bit. Without auto-summation an image is one sub-frame and its counters may saturate.

The rule, from the simulated module's physics (`simulator/physics.py`): a pixel's counter is paralysable with
dead time tau (`ModuleType.dead_time_s`). At a true rate n it counts n exp(-n tau) per second, which is largest,
1 / (e tau), at n = 1 / tau: more flux makes it count *less*. So no flux can make a counter count faster than
1 / (e tau) (3.68e6 counts/s for the EIGER2's 100 ns), and a read-out pixel (binning^2 counters) no faster than
binning^2 / (e tau). A sub-frame is short enough when a pixel counting at that rate, plus 5 standard deviations of
Poisson noise, stays below the top of the read-out format (`counter_top`, the value below "saturated"):

    mu + 5 sqrt(mu) <= top,    frame_count_time <= mu / (binning^2 / (e tau))
    nframes_sum = ceil(count_time / that limit)

EIGER2 (16 bit, 100 ns): 17.5 ms, so images of more than ~57 Hz are one sub-frame (16 bit) and slower ones are
summed (32 bit), in line with the "<= 50 Hz -> 32 bit" rule of spec §14 and with a real EIGER1 (12 bit) header
(frame_count_time 1.272 ms, i.e. a counter of ~115 ns).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from opendcu.geometry.models import ModuleType
from opendcu.hardware.counters import counter_top

#: Poisson standard deviations kept free below the counter's top at the highest count rate
POISSON_MARGIN = 5.0
#: sub-frames a module takes per image at most (it renders an image's sub-frames at once: this bounds its memory)
MODULE_MAX_SUBFRAMES = 256
#: the count time the default raw slots are sized for: SIMPLON's count_time after initialize (RN 1.3.0)
DEFAULT_COUNT_TIME = 1.0
#: relative slack so that a count time of exactly k limits gives k sub-frames despite rounding
_ROUNDING = 1e-9


def max_frame_count_time(module: ModuleType) -> float:
    """Longest sub-frame (s) whose counters no flux can overflow (see the module doc)."""
    pixels = module.binning**2
    top = min(counter_top(module.counter), module.pixel_counter_max * pixels)
    # largest mean count mu with mu + k sqrt(mu) <= top (a quadratic in sqrt(mu))
    root = (-POISSON_MARGIN + math.sqrt(POISSON_MARGIN**2 + 4 * top)) / 2
    fastest = pixels / (math.e * module.dead_time_s)  # counts per second of a read-out pixel, at most
    return root * root / fastest


@dataclass(frozen=True)
class SummationPlan:
    """How the images of a series are taken: `nframes_sum` sub-frames each."""

    nframes_sum: int
    frame_count_time: float
    frame_period: float


def plan(module: ModuleType, count_time: float, frame_time: float, auto_summation: bool) -> SummationPlan:
    """The sub-frames of an image of `count_time` every `frame_time` (one sub-frame without auto-summation)."""
    n = nframes_sum(module, count_time) if auto_summation else 1
    return SummationPlan(n, count_time / n, frame_time / n)


def nframes_sum(module: ModuleType, count_time: float) -> int:
    """Sub-frames an image of `count_time` needs with auto-summation."""
    return max(1, math.ceil(count_time / max_frame_count_time(module) * (1 - _ROUNDING)))
