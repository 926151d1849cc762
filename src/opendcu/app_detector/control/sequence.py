"""Series ids that never repeat: the last sequence id is kept beside the data, across initialize and restarts.

While a series writes files the state also names them (`running`: master, planned data files), so that an
app-detector that was killed mid-series can, when it starts again, make the master honest (crash recovery in
control/recovery.py).

The file `<data dir>/.opendcu-sequence.json` (hidden: no files list, /data or WebDAV shows it, `filewriter
clear` keeps it) is replaced atomically (write a temporary file, fsync, rename), so a crash leaves the old or
the new id, never a broken file. A file that cannot be read is reported and counted as 0: arm's check that no
file of the series exists still keeps earlier files from being overwritten.

The summary of the last series that ended (control/outcome.py) is kept the same way in
`<data dir>/.opendcu-last-series.json`, so that what a series lost is still reported (status `series`, `dcu
wait`) after app-detector was restarted; crash recovery writes the summary of the series it interrupted.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATE_FILE = ".opendcu-sequence.json"
SUMMARY_FILE = ".opendcu-last-series.json"


def _write_atomically(path: Path, state: dict[str, Any]) -> None:
    """Replace the JSON file `path` by `state` (temporary file, fsync, rename); a failure is logged (a full disk:
    the caller keeps the value in memory)."""
    tmp = path.with_name(f"{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "w") as f:
            json.dump(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("sequence ids: could not write %s: %s", path, exc)
        tmp.unlink(missing_ok=True)


class SequenceStore:
    """The last sequence id armed with this data directory."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / STATE_FILE
        self.summary_path = Path(data_dir) / SUMMARY_FILE
        self.running: dict[str, Any] | None = None
        self.last = self._load()
        self.last_summary = self._load_summary()

    def _load(self) -> int:
        try:
            state = json.loads(self.path.read_text())
            value = state["last_sequence_id"]
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                running = state.get("running")
                self.running = running if isinstance(running, dict) else None
                return value
            raise ValueError(f"last_sequence_id {value!r}")
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning(
                "sequence ids: %s is unreadable (%s); counting from 0, arm still refuses to overwrite files",
                self.path,
                exc,
            )
            return 0

    def record(self, sequence_id: int, running: dict[str, Any] | None = None) -> None:
        """Keep `sequence_id` as the last one (at each successful arm), with the files the series writes
        (`running`, None once the series has ended)."""
        self.last = sequence_id
        self.running = running
        state: dict[str, Any] = {"last_sequence_id": sequence_id}
        if running is not None:
            state["running"] = running
        _write_atomically(self.path, state)  # on a full disk the id is kept in memory, the file check guards the data

    def _load_summary(self) -> dict[str, Any] | None:
        try:
            summary = json.loads(self.summary_path.read_text())
            if not isinstance(summary, dict) or not isinstance(summary.get("series_id"), int):
                raise ValueError("not a series summary")
            return summary
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            log.warning("sequence ids: %s is unreadable (%s); no last series summary", self.summary_path, exc)
            return None

    def record_summary(self, summary: dict[str, Any]) -> None:
        """Keep the summary of the series that just ended (or that crash recovery found interrupted)."""
        self.last_summary = summary
        _write_atomically(self.summary_path, summary)
