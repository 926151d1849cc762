"""Series ids that never repeat: the last sequence id is kept beside the data, across initialize and restarts.

While a series writes files the state also names them (`running`: master, planned data files), so that an
app-detector that was killed mid-series can, when it starts again, make the master honest (crash recovery in
control/recovery.py).

The file `<data dir>/.opendcu-sequence.json` (hidden: no files list, /data or WebDAV shows it, `filewriter
clear` keeps it) is replaced atomically (write a temporary file, fsync, rename), so a crash leaves the old or
the new id, never a broken file. A file that cannot be read is reported and counted as 0: arm's check that no
file of the series exists still keeps earlier files from being overwritten.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STATE_FILE = ".opendcu-sequence.json"


class SequenceStore:
    """The last sequence id armed with this data directory."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / STATE_FILE
        self.running: dict[str, Any] | None = None
        self.last = self._load()

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
        tmp = self.path.with_name(f"{STATE_FILE}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as f:
                json.dump(state, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:  # a full disk: the id is kept in memory, the file check still guards the data
            log.warning("sequence ids: could not write %s: %s", self.path, exc)
            tmp.unlink(missing_ok=True)
