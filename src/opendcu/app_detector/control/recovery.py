"""What app-detector puts right when it starts after it was killed (SIGKILL, power loss) in the middle of a series.

- Files being written (hidden `.name.part`) are incomplete HDF5 and cannot be finished: they are removed, each
  named in one WARNING line (no hidden leftovers that no REST or WebDAV call could remove).
- The interrupted series' master (the sequence state names it, control/sequence.py) keeps only the links to
  data files that exist, and records the outcome `failure` with what is missing
  (`detectorSpecific/series_outcome`, as interfaces/filewriter/outcome.py writes it at a normal end).
- The interrupted series gets a summary (control/outcome.py's keys, state `interrupted`, outcome `failure`): the
  images in the data files that exist count as written, every other image of the series as lost.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from opendcu.app_detector.interfaces.filewriter import paths
from opendcu.app_detector.interfaces.filewriter.nxmx import add_contributions
from opendcu.app_detector.interfaces.filewriter.outcome import ROOT

log = logging.getLogger(__name__)


def remove_partial_files(data_dir: Path) -> list[str]:
    """Remove every `.name.part` below `data_dir`; return their relative names."""
    root = Path(data_dir)
    removed = []
    for folder, _dirs, files in os.walk(root):
        for name in files:
            if name.startswith(".") and name.endswith(".part"):
                path = Path(folder) / name
                path.unlink(missing_ok=True)
                removed.append(str(path.relative_to(root)))
    for name in sorted(removed):
        log.warning("crash recovery: removed %s, a file that was being written when app-detector stopped", name)
    return sorted(removed)


def recover_interrupted(data_dir: Path, running: dict[str, Any] | None) -> dict[str, Any] | None:
    """Make the master of an interrupted series honest; return the series' summary (None: nothing to do)."""
    if not running:
        return None
    try:
        series_id, prefix, planned = int(running["series_id"]), str(running["prefix"]), int(running["data_files"])
        master = paths.resolve_in(Path(data_dir), paths.master_name(prefix))
    except (KeyError, TypeError, ValueError) as exc:
        log.warning("crash recovery: the running series in the sequence state is unreadable: %s", exc)
        return None
    present, written = 0, 0
    while present < planned:
        path = paths.resolve_in(Path(data_dir), paths.data_name(prefix, present + 1))
        if not path.is_file():
            break
        written += _images_in(path)
        present += 1
    if not master.is_file():
        problem = f"series {series_id} was interrupted before its master {master.name} was complete"
    else:
        problem = (
            f"app-detector stopped during series {series_id}: {present} of {planned} data files were written, "
            "the master links only those"
        )
        problem = _repair_master(master, series_id, present, planned, problem)
    log.warning("crash recovery: %s", problem)
    expected = max(written, int(running.get("images", written)))
    return interrupted_summary(series_id, str(running.get("unique_id", "")), expected, written, problem)


def _images_in(path: Path) -> int:
    try:
        with h5py.File(path, "r") as f:
            return int(f["/entry/data/data"].shape[0])
    except (OSError, KeyError, ValueError):
        return 0


def _repair_master(master: Path, series_id: int, present: int, planned: int, problem: str) -> str:
    try:
        with h5py.File(master, "r+") as f:  # (the series itself is gone: not finalize_master's full end)
            data = f["/entry/data"]
            for i in range(present + 1, planned + 1):
                if f"data_{i:06d}" in data:
                    del data[f"data_{i:06d}"]
            add_contributions(
                f,
                {
                    f"{ROOT}/series_outcome/outcome": np.asarray(np.bytes_(b"failure")),
                    f"{ROOT}/series_outcome/problems": np.asarray(np.bytes_(problem.encode())),
                },
            )
    except (OSError, KeyError, ValueError) as exc:
        return f"series {series_id}: the master {master.name} could not be repaired: {exc}"
    return problem


def interrupted_summary(series_id: int, unique_id: str, expected: int, written: int, problem: str) -> dict[str, Any]:
    """The summary of a series that app-detector did not live to end: what its files hold is all there is."""
    lost = expected - written
    return {
        "series_id": series_id,
        "series_unique_id": unique_id,
        "state": "interrupted",
        "images_expected": expected,
        "images_settled": written,
        "images_complete": written,
        "images_incomplete": 0,
        "images_lost": lost,
        "packets_expected": 0,
        "packets_received": 0,
        "packets_lost": 0,
        "efficiency": 0.0,
        "elapsed_s": 0.0,
        "rate_hz": 0.0,
        "interfaces": {"filewriter": {"written": written, "missing": 0}},
        "outcome": "failure",
        "problems": [f"{lost} of {expected} images lost (app-detector stopped during the series)", problem],
    }
