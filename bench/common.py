"""Shared helpers of the benchmarks: repeatable timing and the result table.

Every benchmark measures its subject *and* the bare library or kernel bound it is compared against in the same
run, and prints a table with the ratio, because the machines are shared and absolute numbers drift.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Console
from rich.table import Table


def time_call(fn: Callable[[], object], repeat: int = 7, warmup: int = 1) -> list[float]:
    """Wall times (s) of `repeat` calls of fn after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def best(times: list[float]) -> float:
    return min(times)


def median(times: list[float]) -> float:
    return statistics.median(times)


@dataclass
class ResultTable:
    """Rows of (what, value, unit, reference value, ratio, goal) printed as one table."""

    title: str
    rows: list[tuple[str, ...]] = field(default_factory=list)

    def add(
        self,
        what: str,
        value: float,
        unit: str,
        reference: float | None = None,
        ratio: float | None = None,
        goal: str = "",
    ) -> None:
        ratio_text = "" if ratio is None else f"{ratio:.2f}x"
        ref_text = "" if reference is None else f"{reference:.4g}"
        self.rows.append((what, f"{value:.4g}", unit, ref_text, ratio_text, goal))

    def print(self, console: Console | None = None) -> None:
        table = Table(title=self.title)
        for column in ("measurement", "value", "unit", "reference", "ratio", "goal"):
            table.add_column(column, justify="left" if column == "measurement" else "right")
        for row in self.rows:
            table.add_row(*row)
        (console or Console()).print(table)
