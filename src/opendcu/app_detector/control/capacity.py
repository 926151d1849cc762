"""What this machine carries: the frame rate beyond which a series will lose data, measured, not guessed.

After each series that ran long enough, the machine's busy CPU time over the series (all of /proc/stat: the DCU,
its workers and whatever else shares the cores, simulated modules included) is divided by the frames settled, by
raw frame size. At arm, a series that asks for more frames per second of that size than the cores carried gets a
warning that names the numbers (log, series summary, `dcu arm`). It is a warning, not a refusal: the estimate
is from one earlier series, and other load on the machine may have come or gone since.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

#: a series shorter than this says too little about the rate a machine holds
MIN_FRAMES, MIN_SECONDS = 100, 1.0
#: /proc/stat's cpu fields that count as busy: user nice system (idle iowait) irq softirq steal
_BUSY_FIELDS = (0, 1, 2, 5, 6, 7)


def busy_cpu_seconds(stat: Path = Path("/proc/stat")) -> float | None:
    """CPU seconds all cores have been busy since boot (None where /proc/stat is not there)."""
    try:
        first = stat.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if not first or first[0] != "cpu":
        return None
    values = [int(v) for v in first[1:]]
    return sum(values[i] for i in _BUSY_FIELDS if i < len(values)) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Measured:
    """One series' cost: busy CPU seconds per frame of `frame_bytes` raw bytes."""

    frame_bytes: int
    cpu_per_frame: float
    frames: int


class CapacityEstimate:
    """The per-frame CPU cost of the last long-enough series of each raw frame size, and what it implies."""

    def __init__(self, cores: int | None = None, read_busy=busy_cpu_seconds, clock=time.monotonic):
        self.cores = cores or len(os.sched_getaffinity(0))
        self._read_busy = read_busy
        self._clock = clock
        self._measured: dict[int, Measured] = {}
        self._start: tuple[float, float] | None = None

    def series_started(self) -> None:
        """The first trigger of a series went out."""
        busy = self._read_busy()
        self._start = None if busy is None else (busy, self._clock())

    def series_ended(self, frame_bytes: int, frames: int) -> Measured | None:
        """The series settled `frames` frames of `frame_bytes`; remembered if it ran long enough."""
        start, self._start = self._start, None
        busy = self._read_busy()
        if start is None or busy is None or frames < MIN_FRAMES or self._clock() - start[1] < MIN_SECONDS:
            return None
        measured = Measured(frame_bytes, max(busy - start[0], 1e-9) / frames, frames)
        self._measured[frame_bytes] = measured
        return measured

    def bound_hz(self, frame_bytes: int) -> tuple[float, Measured] | None:
        """Frames per second of `frame_bytes` the cores carry, from the series measured nearest in size (its cost
        scaled by the size ratio: the data path's work is mostly per byte); None before any measurement."""
        if not self._measured:
            return None
        nearest = min(self._measured.values(), key=lambda m: abs(m.frame_bytes - frame_bytes))
        cost = nearest.cpu_per_frame * frame_bytes / nearest.frame_bytes
        return self.cores / cost, nearest

    def warning(self, frame_bytes: int, rate_hz: float) -> str | None:
        """The warning for a series asking `rate_hz` frames per second of `frame_bytes`, or None."""
        known = self.bound_hz(frame_bytes)
        if known is None or rate_hz <= known[0]:
            return None
        bound, m = known
        scaled = "" if m.frame_bytes == frame_bytes else f", scaled from frames of {m.frame_bytes / 2**20:.2f} MiB"
        return (
            f"frame rate {rate_hz:g} Hz ({rate_hz * frame_bytes / 1e6:.0f} MB/s of raw data) is beyond what this "
            f"machine carried: its {self.cores} cores were busy {m.cpu_per_frame * 1e3:.2f} ms per "
            f"{frame_bytes / 2**20:.2f} MiB frame in an earlier series of {m.frames} frames{scaled}, about "
            f"{bound:.0f} Hz at most; expect lost packets"
        )
