"""Nominal acquisition times of image `i` of a series, as the streams report them.

Images start every `frame_time` and count for `count_time`, relative to the series start. Stream V2 gives them
as rationals of a 50 MHz clock (the frequency DECTRIS detectors use), stream V1 as integer nanoseconds.
"""

from __future__ import annotations

from opendcu.app_detector.series import Series

Rational = tuple[int, int]
TICKS_PER_SECOND = 50_000_000


def image_times(
    series: Series, image_id: int, frequency: int = TICKS_PER_SECOND
) -> tuple[Rational, Rational, Rational]:
    """(real_time, start_time, stop_time) of image `image_id` (0-based) in ticks of `frequency`."""
    count = round(series.count_time * frequency)
    start = start_ticks(series, image_id, frequency)
    return (count, frequency), (start, frequency), (start + count, frequency)


def start_ticks(series: Series, image_id: int, frequency: int = TICKS_PER_SECOND) -> int:
    """When image `image_id` (0-based) starts, in ticks of `frequency` after the series start."""
    return round(image_id * series.frame_time * frequency)


def image_times_ns(series: Series, image_id: int) -> tuple[int, int, int]:
    """(start_time, stop_time, real_time) in integer nanoseconds, as the V1 `dconfig-1.0` part."""
    (real, _), (start, _), (stop, _) = image_times(series, image_id, 1_000_000_000)
    return start, stop, real
