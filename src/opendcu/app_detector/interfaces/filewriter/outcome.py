"""The series outcome in the NXmx master (a FileWriter master contributor, no change to nxmx.py).

Below `/entry/instrument/detector/detectorSpecific/`:
- `image_packets_received`, `image_packets_expected`: uint64 [nimages], per image in image order (an image that
  never arrived has 0 received);
- `series_outcome/`: the scalars of the series summary (images expected / complete / incomplete / lost,
  packets expected / received / lost, efficiency, images the FileWriter wrote) and `outcome`
  (success, incomplete, failure) with its `problems` as one text.
"""

from __future__ import annotations

from typing import Any

import numpy as np

ROOT = "/entry/instrument/detector/detectorSpecific"
#: per-image records beyond this many are left out (the series scalars still count every image)
MAX_PER_IMAGE = 10_000_000

SCALARS = (
    "images_expected",
    "images_complete",
    "images_incomplete",
    "images_lost",
    "packets_expected",
    "packets_received",
    "packets_lost",
)


def outcome_datasets(summary: dict[str, Any], received: np.ndarray, expected: np.ndarray) -> dict[str, np.ndarray]:
    """{hdf5 path: array} for `FileWriter.add_master_contributor`."""
    out: dict[str, np.ndarray] = {
        f"{ROOT}/image_packets_received": np.asarray(received[:MAX_PER_IMAGE], np.uint64),
        f"{ROOT}/image_packets_expected": np.asarray(expected[:MAX_PER_IMAGE], np.uint64),
    }
    group = f"{ROOT}/series_outcome"
    for key in SCALARS:
        out[f"{group}/{key}"] = np.asarray(summary[key], np.uint64)
    out[f"{group}/efficiency"] = np.asarray(summary["efficiency"], np.float64)
    writer = summary["interfaces"].get("filewriter")
    if writer is not None:
        out[f"{group}/images_written"] = np.asarray(writer["written"], np.uint64)
    out[f"{group}/outcome"] = np.asarray(np.bytes_(summary["outcome"].encode()))
    out[f"{group}/problems"] = np.asarray(np.bytes_("; ".join(summary["problems"]).encode() or b"none"))
    return out
