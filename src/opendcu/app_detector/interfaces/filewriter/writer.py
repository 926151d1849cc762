"""The FileWriter interface: NXmx master at arm, data files filled with the pipeline's chunks, never dropping.

Images come from the ImageMux into a bounded queue; when it is full, `offer` blocks (backpressure towards the
pipeline) instead of dropping. One writer thread owns all HDF5 handles.
"""

from __future__ import annotations

import logging
import math
import queue
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from opendcu.app_detector.imagemux.mux import CompressedImage
from opendcu.app_detector.interfaces.filewriter import paths
from opendcu.app_detector.interfaces.filewriter.datafile import DataFile
from opendcu.app_detector.interfaces.filewriter.nxmx import write_master
from opendcu.app_detector.interfaces.filewriter.params import build_filewriter_subsystem
from opendcu.app_detector.series import Series
from opendcu.codecs import get_codec
from opendcu.geometry.models import DetectorModel

log = logging.getLogger(__name__)


@dataclass
class _SeriesFiles:
    series: Series
    prefix: str
    nimages_per_file: int
    image_nr_start: int
    current: DataFile | None = None
    written: int = 0
    failed: bool = False


class FileWriter:
    """Writes each series as `<pattern>_master.h5` + `<pattern>_data_NNNNNN.h5` into the data directory."""

    name = "filewriter"

    def __init__(self, data_dir: Path, model: DetectorModel, queue_size: int = 64):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.model = model
        self.subsystem = build_filewriter_subsystem(self)
        self.errors: list[str] = []
        self._queue: queue.Queue = queue.Queue(maxsize=queue_size)
        self._series: _SeriesFiles | None = None
        self._thread = threading.Thread(target=self._run, name="filewriter", daemon=True)
        self._thread.start()

    # -- ImageInterface ------------------------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        return self.subsystem["mode"] == "enabled"

    @property
    def state(self) -> str:
        if self.errors:
            return "error"
        if not self.enabled:
            return "disabled"
        return "acquire" if self._series is not None else "ready"

    def start_series(self, series: Series) -> None:
        cfg = self.subsystem
        prefix = paths.series_prefix(cfg["name_pattern"], series.series_id)
        per_file = cfg["nimages_per_file"]
        n_files = math.ceil(series.nimages_total / per_file)
        names = [paths.data_name(prefix, i) for i in range(1, n_files + 1)]
        master = paths.resolve_in(self.data_dir, paths.master_name(prefix))
        # links are relative to the master's folder
        write_master(master, series, self.model, [Path(n).name for n in names])
        self._series = _SeriesFiles(series, prefix, per_file, cfg["image_nr_start"])

    def offer(self, image: CompressedImage) -> None:
        self._queue.put(("image", image))

    def end_series(self, series: Series, aborted: bool) -> None:
        done = threading.Event()
        self._queue.put(("end", done))
        done.wait()

    # -- writer thread ---------------------------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            kind, item = self._queue.get()
            if kind == "image":
                try:
                    self._write(item)
                finally:
                    item.release()
            elif kind == "end":
                self._close_current()
                self._series = None
                item.set()
            elif kind == "stop":
                self._close_current()
                item.set()
                return

    def _write(self, image: CompressedImage) -> None:
        s = self._series
        if s is None or s.failed:
            return
        try:
            if s.current is None:
                number = s.written // s.nimages_per_file + 1
                path = paths.resolve_in(self.data_dir, paths.data_name(s.prefix, number))
                codec = get_codec(image.compression)
                s.current = DataFile(path, image.shape, image.dtype, codec.hdf5_filter(image.dtype), s.image_nr_start + s.written)
            s.current.append(image.data)
            s.written += 1
            if s.current.count == s.nimages_per_file:
                self._close_current()
        except OSError as exc:  # disk full, permissions: keep what is written, report, stop writing this series
            log.error("filewriter: %s", exc)
            self.errors.append(f"writing image {image.image_number} failed: {exc}")
            s.failed = True
            self._close_current()

    def _close_current(self) -> None:
        s = self._series
        if s is not None and s.current is not None:
            try:
                s.current.close()
            except OSError as exc:
                self.errors.append(f"closing {s.current.path.name} failed: {exc}")
            s.current = None

    # -- status and commands -----------------------------------------------------------------------------------
    def list_files(self) -> list[str]:
        return sorted(
            str(p.relative_to(self.data_dir)) for p in self.data_dir.rglob("*.h5") if not p.name.startswith(".")
        )

    def buffer_free(self) -> int:
        return shutil.disk_usage(self.data_dir).free

    def clear(self) -> None:
        for name in self.list_files():
            (self.data_dir / name).unlink(missing_ok=True)
        self.errors.clear()

    def initialize(self) -> None:
        self.subsystem.reset()
        self.errors.clear()

    def close(self) -> None:
        done = threading.Event()
        self._queue.put(("stop", done))
        done.wait(timeout=30)
