"""Series ids that never repeat: the last sequence id is kept beside the data, across initialize and restarts.

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

log = logging.getLogger(__name__)

STATE_FILE = ".opendcu-sequence.json"


class SequenceStore:
    """The last sequence id armed with this data directory."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / STATE_FILE
        self.last = self._load()

    def _load(self) -> int:
        try:
            value = json.loads(self.path.read_text())["last_sequence_id"]
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return value
            raise ValueError(f"last_sequence_id {value!r}")
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("sequence ids: %s is unreadable (%s); counting from 0, arm still refuses to overwrite files",
                        self.path, exc)
            return 0

    def record(self, sequence_id: int) -> None:
        """Keep `sequence_id` as the last one (called at each successful arm)."""
        self.last = sequence_id
        tmp = self.path.with_name(f"{STATE_FILE}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(tmp, "w") as f:
                json.dump({"last_sequence_id": sequence_id}, f)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:  # a full disk: the id is kept in memory, the file check still guards the data
            log.warning("sequence ids: could not write %s: %s", self.path, exc)
            tmp.unlink(missing_ok=True)
