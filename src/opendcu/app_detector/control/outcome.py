"""What became of a series: every image the detector took, counted from the DAQ to each interface.

`SeriesLedger` is an ImageMux interface of its own (always enabled, attached last): it records each image that
left the pipeline with its packet counts, so an image lost anywhere before the interfaces (no raw slot, a dead
pipeline worker) shows as expected but never seen. `summarize` turns the ledger, the DAQ counters and the
interfaces' counts into the series summary (status key `detector/status/series`, `dcu trigger`/`dcu wait`, the
log line, the NXmx record of `filewriter/outcome.py`):

    outcome "success"    every image complete, in every interface that must not drop
            "incomplete" images with missing packets (flagged pixels), or images the Stream dropped
            "failure"    images lost (never delivered), or images the FileWriter did not write
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from opendcu.app_detector.daq.assembler import DaqCounters
from opendcu.app_detector.series import Series

#: SIMPLON GET `state` of a status value by outcome
HEALTH_OF_OUTCOME = {"success": "normal", "running": "normal", "incomplete": "warning", "failure": "error"}


class SeriesLedger:
    """ImageMux interface that only counts: per image its packets received and expected."""

    name = "ledger"
    enabled = True

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.series_id = -1
        self.delivered = 0
        self.incomplete = 0
        self.highest = -1
        self._received = np.zeros(0, np.uint64)
        self._expected = np.zeros(0, np.uint64)
        self.started = time.monotonic()

    def start_series(self, series: Series) -> None:
        with self._lock:
            self.series_id = series.series_id
            self.delivered = self.incomplete = 0
            self.highest = -1
            self._received = np.zeros(min(series.nimages_total, 4096), np.uint64)
            self._expected = np.zeros_like(self._received)
            self.started = time.monotonic()

    def offer(self, image: Any) -> None:
        try:
            if image.series_id == self.series_id:
                self._record(image.image_id, image.packets_received, image.packets_expected)
        finally:
            image.release()

    def _record(self, index: int, received: int, expected: int) -> None:
        with self._lock:
            if index >= self._received.size:  # grows by doubling: arm allocates nothing per image
                size = max(index + 1, 2 * self._received.size)
                self._received = np.concatenate([self._received, np.zeros(size - self._received.size, np.uint64)])
                self._expected = np.concatenate([self._expected, np.zeros(size - self._expected.size, np.uint64)])
            self._received[index] = received
            self._expected[index] = expected
            self.delivered += 1
            self.incomplete += received < expected
            self.highest = max(self.highest, index)

    def end_series(self, series: Series, aborted: bool) -> None:
        """Nothing to finish: every image was counted when offered."""

    def per_image(self, nimages: int) -> tuple[np.ndarray, np.ndarray]:
        """(packets received, packets expected) of images 1..nimages; an image never delivered has 0 received
        and the packets of a delivered image expected (every image of a series has the same packets)."""
        with self._lock:
            n = max(0, nimages)
            received = np.zeros(n, np.uint64)
            expected = np.zeros(n, np.uint64)
            k = min(n, self._received.size)
            received[:k] = self._received[:k]
            expected[:k] = self._expected[:k]
            nominal = int(self._expected.max()) if self._expected.size else 0
            expected[expected == 0] = nominal
            return received, expected


@dataclass
class InterfaceCounts:
    """What the interfaces did with the delivered images (None: interface not active in the series)."""

    filewriter_written: int | None = None
    filewriter_errors: list[str] = field(default_factory=list)
    stream_dropped: int | None = None


def summarize(
    series: Series,
    ledger: SeriesLedger,
    counters: DaqCounters,
    images_expected: int,
    interfaces: InterfaceCounts,
    state: str,
    elapsed: float | None = None,
) -> dict[str, Any]:
    """The series summary; `state` is running, done or aborted (then only the images sent count as expected)."""
    delivered = ledger.delivered if ledger.series_id == series.series_id else 0
    incomplete = ledger.incomplete if ledger.series_id == series.series_id else 0
    running = state == "running"
    lost = 0 if running else max(0, images_expected - delivered)
    elapsed = time.monotonic() - ledger.started if elapsed is None else elapsed
    out: dict[str, Any] = {
        "series_id": series.series_id,
        "series_unique_id": series.unique_id,
        "state": state,
        "images_expected": images_expected,
        "images_settled": delivered,
        "images_complete": delivered - incomplete,
        "images_incomplete": incomplete,
        "images_lost": lost,
        "packets_expected": counters.packets_expected,
        "packets_received": counters.packets_received,
        "packets_lost": counters.packets_lost,
        "efficiency": round(counters.efficiency, 6),
        "elapsed_s": round(elapsed, 3),
        "rate_hz": round(delivered / elapsed, 1) if elapsed > 0 else 0.0,
        "interfaces": {},
    }
    problems = []
    if lost:
        problems.append(f"{lost} of {images_expected} images lost (never delivered)")
    if incomplete:
        problems.append(f"{incomplete} images incomplete ({counters.packets_lost} packets lost)")
    missing_in_files = 0
    if interfaces.filewriter_written is not None:
        missing_in_files = 0 if running else max(0, delivered - interfaces.filewriter_written)
        out["interfaces"]["filewriter"] = {"written": interfaces.filewriter_written, "missing": missing_in_files}
        if missing_in_files:
            problems.append(f"FileWriter wrote {interfaces.filewriter_written} of {delivered} images")
        problems.extend(f"FileWriter: {e}" for e in interfaces.filewriter_errors)
    if interfaces.stream_dropped is not None:
        dropped = interfaces.stream_dropped
        out["interfaces"]["stream"] = {"sent": max(0, delivered - dropped), "dropped": dropped}
        if dropped:
            problems.append(f"Stream dropped {dropped} images")
    if running:
        outcome = "running"
    elif lost or missing_in_files or interfaces.filewriter_errors:
        outcome = "failure"
    elif problems:
        outcome = "incomplete"
    else:
        outcome = "success"
    out["outcome"] = outcome
    out["problems"] = problems
    return out


def summary_line(summary: dict[str, Any]) -> str:
    """One log line for a series."""
    s = summary
    line = (
        f"series {s['series_id']} {s['state']}: {s['outcome']}; images {s['images_complete']} complete + "
        f"{s['images_incomplete']} incomplete + {s['images_lost']} lost of {s['images_expected']}; packets "
        f"{s['packets_received']}/{s['packets_expected']} (efficiency {s['efficiency']:.4f})"
    )
    for name, counts in s["interfaces"].items():
        line += f"; {name} " + ", ".join(f"{k} {v}" for k, v in counts.items())
    if s["problems"]:
        line += " -- " + "; ".join(s["problems"])
    return line
