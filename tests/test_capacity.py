"""The capacity estimate behind the arm-time warning: CPU per frame from the machine's own busy time."""

from __future__ import annotations

from pathlib import Path

import pytest

from opendcu.app_detector.control.capacity import CapacityEstimate, busy_cpu_seconds


class Clock:
    def __init__(self) -> None:
        self.t = 0.0
        self.busy = 100.0

    def now(self) -> float:
        return self.t

    def read_busy(self) -> float:
        return self.busy


def measured(frames: int, seconds: float, busy: float, frame_bytes: int = 1 << 20) -> CapacityEstimate:
    clock = Clock()
    estimate = CapacityEstimate(cores=2, read_busy=clock.read_busy, clock=clock.now)
    estimate.series_started()
    clock.t += seconds
    clock.busy += busy
    estimate.series_ended(frame_bytes, frames)
    return estimate


def test_a_series_gives_the_rate_the_cores_carry_and_a_faster_one_is_warned_of():
    estimate = measured(frames=2000, seconds=5.0, busy=8.0)  # 4 ms of busy cores per frame
    bound, m = estimate.bound_hz(1 << 20)
    assert m.cpu_per_frame == pytest.approx(0.004)
    assert bound == pytest.approx(500.0)  # 2 cores / 4 ms
    assert estimate.warning(1 << 20, 400.0) is None
    text = estimate.warning(1 << 20, 2000.0)
    assert "2000 Hz" in text and "2097 MB/s" in text and "4.00 ms" in text and "about 500 Hz" in text


def test_another_frame_size_is_scaled_by_its_bytes():
    estimate = measured(frames=1000, seconds=2.0, busy=4.0)  # 4 ms per 1 MiB frame
    bound, _ = estimate.bound_hz(4 << 20)
    assert bound == pytest.approx(125.0)
    assert "scaled from frames of 1.00 MiB" in estimate.warning(4 << 20, 200.0)


@pytest.mark.parametrize(("frames", "seconds"), [(99, 5.0), (5000, 0.5)])
def test_a_short_series_is_not_a_measurement(frames: int, seconds: float):
    estimate = measured(frames=frames, seconds=seconds, busy=1.0)
    assert estimate.bound_hz(1 << 20) is None
    assert estimate.warning(1 << 20, 1e6) is None


def test_busy_time_is_read_from_proc_stat(tmp_path: Path):
    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice (clock ticks)
    stat.write_text("cpu  100 20 30 5000 70 1 2 3 0 0\ncpu0 50 10 15 2500 35 0 1 1 0 0\n")
    import os

    assert busy_cpu_seconds(stat) == pytest.approx((100 + 20 + 30 + 1 + 2 + 3) / os.sysconf("SC_CLK_TCK"))
    assert busy_cpu_seconds(tmp_path / "missing") is None
    assert busy_cpu_seconds(Path("/proc/stat")) > 0
