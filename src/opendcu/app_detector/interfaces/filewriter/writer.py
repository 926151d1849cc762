"""The FileWriter interface: NXmx master at arm, data files filled with the pipeline's chunks, never dropping.

Images come from the ImageMux into a bounded buffer that blocks when full (backpressure towards the pipeline)
instead of dropping. One thread owns the HDF5 handles; `writer_mode` picks where the chunk bytes go
(sinks.py): written in that thread ("serial", the default), memcpy'd into the same file by writer processes
("parallel"), or whole files written by writer processes with a virtual-dataset master ("vds").

Files: `<pattern>_master.h5` (visible at arm) and `<pattern>_data_NNNNNN.h5` (each appears when complete);
`nimages_per_file` 0 puts the images into the master, which then appears at series end. A write that fails
(disk full, a writer process killed) puts the writer in state `error` with the reason; files already closed stay
valid, the file being written is removed (its images no longer count as written), and the series' further images
are not written. A pool with a dead writer process is replaced at the next arm.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from opendcu.app_detector.imagemux.buffer import Policy
from opendcu.app_detector.imagemux.mux import BufferedInterface, CompressedImage
from opendcu.app_detector.interfaces.filewriter import paths
from opendcu.app_detector.interfaces.filewriter.datafile import ALIGNMENT, LIBVER, create_image_dataset, part_path
from opendcu.app_detector.interfaces.filewriter.nxmx import (
    add_contributions,
    finalize_master,
    write_end_time,
    write_master,
)
from opendcu.app_detector.interfaces.filewriter.parallel import WriterPool
from opendcu.app_detector.interfaces.filewriter.params import build_filewriter_subsystem
from opendcu.app_detector.interfaces.filewriter.sinks import FileSpec, ParallelSink, SerialSink, Sink, WorkerFileSink
from opendcu.app_detector.interfaces.status import ModeAndState
from opendcu.app_detector.series import Series
from opendcu.codecs import get_codec
from opendcu.codecs.base import Hdf5Filter

log = logging.getLogger(__name__)

#: the master as DECTRIS' (superblock v2, readable by neggia), except the virtual dataset's layout, which needs
#: the HDF5 1.10 format
MASTER_LIBVER = (LIBVER[0], "v110")

#: a component's contribution to the master at series end: {hdf5 path below /entry/: per-image array}
MasterContributor = Callable[[Series], dict[str, np.ndarray]]


@dataclass
class _SeriesFiles:
    """The files of the running series and how far they got."""

    series: Series
    prefix: str
    master: Path
    nimages_per_file: int
    image_nr_start: int
    mode: str
    compress: bool
    planned_files: int
    current: Sink | None = None
    written: int = 0
    files_done: int = 0
    failed: bool = False
    #: nimages_per_file 0: the master itself, open until series end
    master_file: h5py.File | None = None
    master_data: h5py.Dataset | None = None
    sinks_open: list[Sink] = field(default_factory=list)
    #: (data file, images) of each planned data file: the master's virtual /entry/data/data
    vds_sources: list[tuple[str, int]] | None = None


def hdf5_filter_for(compression: str, dtype: np.dtype) -> Hdf5Filter | None:
    return None if compression == "none" else get_codec(compression).hdf5_filter(dtype)


class FileWriter(ModeAndState, BufferedInterface):
    """Writes each series as `<pattern>_master.h5` + `<pattern>_data_NNNNNN.h5` into the data directory."""

    name = "filewriter"

    def __init__(self, data_dir: Path, model: Any = None, queue_size: int = 64, max_chunk_bytes: int = 0):
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.model = model
        self.max_chunk_bytes = max_chunk_bytes
        self.subsystem = build_filewriter_subsystem(self)
        self.errors: list[str] = []
        self._series: _SeriesFiles | None = None
        self._contributors: list[MasterContributor] = []
        self._pool: WriterPool | None = None
        super().__init__(queue_size, Policy.BLOCK)

    # -- hooks ---------------------------------------------------------------------------------------------------
    def add_master_contributor(self, contributor: MasterContributor) -> None:
        """Register `fn(series) -> {hdf5_path: array}`; called once per series after every interface has ended
        it, and each array is stored at its path (below /entry/) in that series' master file."""
        self._contributors.append(contributor)

    # -- series (arm, in the caller's thread) -------------------------------------------------------------------
    def start_series(self, series: Series) -> None:
        cfg = self.subsystem
        prefix = paths.series_prefix(cfg["name_pattern"], series.series_id)
        master = paths.resolve_in(self.data_dir, paths.master_name(prefix))
        per_file = cfg["nimages_per_file"]
        total = series.nimages_total
        mode = cfg["writer_mode"] if per_file else "serial"
        n_files = math.ceil(total / per_file) if per_file else 0
        names = [paths.data_name(prefix, i) for i in range(1, n_files + 1)]
        for name in names:
            paths.resolve_in(self.data_dir, name)
        links = [Path(n).name for n in names]  # relative to the master's folder
        s = _SeriesFiles(
            series, prefix, master, per_file, cfg["image_nr_start"], mode, cfg["compression_enabled"], n_files
        )
        try:
            master.parent.mkdir(parents=True, exist_ok=True)
            if per_file == 0:
                self._open_master_with_data(s)
            else:
                # a series over several data files also gets a virtual /entry/data/data over all of them: readers
                # that take one dataset (Debian's dxtbx 3.12) see every image, those that follow the links
                # (current dxtbx, neggia/XDS) are unchanged; one data file: its link alone (fabio counts both)
                if n_files > 1:
                    s.vds_sources = [(link, min(per_file, total - i * per_file)) for i, link in enumerate(links)]
                tmp = part_path(master)
                with h5py.File(tmp, "w", libver=MASTER_LIBVER) as f:
                    write_master(f, series, links, s.vds_sources)
                os.replace(tmp, master)
        except (OSError, RuntimeError) as exc:  # a full disk at arm: the arm fails and says why
            part_path(master).unlink(missing_ok=True)
            free = shutil.disk_usage(self.data_dir).free
            self._error(f"writing master {master.name} failed: {exc} ({free} bytes free in the data directory)")
            raise OSError(f"FileWriter: writing master {master.name} failed: {exc}") from exc
        if mode != "serial":
            self._ensure_pool(cfg["writer_processes"])
        self._series = s
        super().start_series(series)

    def _open_master_with_data(self, s: _SeriesFiles) -> None:
        f = h5py.File(part_path(s.master), "w", libver=LIBVER, **ALIGNMENT)
        data = write_master(f, s.series, [])
        dtype = s.series.settings.dtype
        compression = s.series.settings.compression if s.compress else "none"
        h, w = s.series.detector_config["y_pixels_in_detector"], s.series.detector_config["x_pixels_in_detector"]
        s.master_data = create_image_dataset(
            data, "data", (h, w), dtype, hdf5_filter_for(compression, dtype), s.series.nimages_total
        )
        f["/entry/instrument/detector/data"] = s.master_data
        s.master_file = f

    def _ensure_pool(self, n: int) -> None:
        if self._pool is not None and (self._pool.n_workers != n or not self._pool.alive()):
            self._pool.close()
            self._pool = None
        if self._pool is None:
            self._pool = WriterPool(n)

    def after_series(self, series: Series, aborted: bool) -> None:
        """After every interface has ended the series: contributions into the master, which is then final."""
        s = self._series
        if s is None:
            return
        try:
            contributions: dict[str, np.ndarray] = {}
            for contributor in self._contributors:
                contributions.update(contributor(series))
            if s.master_file is not None:
                self._close_master_with_data(s, contributions)
            else:
                finalize_master(
                    s.master, s.series, s.files_done, s.planned_files, s.written, s.vds_sources, contributions
                )
        except Exception as exc:
            self._error(f"finishing master {s.master.name} failed: {exc}")
            if s.master_file is not None:
                s.master_file.close()
                part_path(s.master).unlink(missing_ok=True)
        finally:
            self._series = None

    def _close_master_with_data(self, s: _SeriesFiles, contributions: dict[str, np.ndarray]) -> None:
        ds = s.master_data
        ds.resize((s.written, *ds.shape[1:]))
        ds.attrs.create("image_nr_low", s.image_nr_start, dtype=np.uint64)
        ds.attrs.create("image_nr_high", s.image_nr_start + s.written - 1, dtype=np.uint64)
        write_end_time(s.master_file)
        add_contributions(s.master_file, contributions)
        s.master_file.close()
        s.master_file = None
        if s.failed:
            part_path(s.master).unlink(missing_ok=True)
        else:
            os.replace(part_path(s.master), s.master)

    # -- writer thread -----------------------------------------------------------------------------------------------
    def handle_image(self, image: CompressedImage) -> None:
        s = self._series
        if s is None or s.failed:
            return
        chunk: Any = image.data
        if not s.compress and image.compression != "none":
            chunk = np.ascontiguousarray(image.decode()).view(np.uint8).reshape(-1)  # uncompressed files asked for
        try:
            if s.master_data is not None:
                s.master_data.id.write_direct_chunk((s.written, 0, 0), chunk)
            else:
                if s.current is None:
                    s.current = self._open_data_file(s, image)
                s.current.write(image, chunk)
            s.written += 1
            if s.current is not None and s.written % s.nimages_per_file == 0:
                self._close_current(s)
        except Exception as exc:  # disk full, permissions: keep what is written, report, stop writing this series
            self._fail(s, f"writing image {image.image_number} of series {s.series.series_id} failed: {exc}")

    def after_images(self) -> None:
        if self._pool is not None and len(self.buffer) == 0:
            self._pool.flush()  # nothing else queued: hand the batch of copies to the writer processes now

    def _open_data_file(self, s: _SeriesFiles, image: CompressedImage) -> Sink:
        number = s.written // s.nimages_per_file + 1
        total = s.series.nimages_total
        compression = image.compression if s.compress else "none"
        spec = FileSpec(
            path=paths.resolve_in(self.data_dir, paths.data_name(s.prefix, number)),
            shape=tuple(image.shape),
            dtype=np.dtype(image.dtype),
            hdf5_filter=hdf5_filter_for(compression, image.dtype),
            image_nr_low=s.image_nr_start + s.written,
            n_images=min(s.nimages_per_file, max(1, total - s.written)),
            max_chunk_bytes=self.max_chunk_bytes or 2 * image.nbytes + 4096,
        )
        if s.mode == "parallel":
            sink: Sink = ParallelSink(spec, self._pool)
        elif s.mode == "vds":
            sink = WorkerFileSink(spec, self._pool, number - 1)
        else:
            sink = SerialSink(spec)
        s.sinks_open.append(sink)
        return sink

    def _close_current(self, s: _SeriesFiles) -> None:
        sink, s.current = s.current, None
        if sink is None:
            return
        s.sinks_open.remove(sink)
        try:
            sink.close()
            s.files_done += 1
        except Exception as exc:
            self._fail(s, f"closing data file {s.files_done + 1} of series {s.series.series_id} failed: {exc}", sink)

    def _fail(self, s: _SeriesFiles, message: str, sink: Sink | None = None) -> None:
        free = shutil.disk_usage(self.data_dir).free
        self._error(f"{message} ({free} bytes free in the data directory)")
        s.failed = True
        sink = sink or s.current
        s.current = None
        if sink is not None:
            if sink in s.sinks_open:
                s.sinks_open.remove(sink)
            # the images handed to the file being given up are in no file: `written` counts what the files hold
            s.written = s.files_done * s.nimages_per_file
            try:
                sink.discard()
            except Exception as exc:
                self._error(f"discarding data file {s.files_done + 1} of series {s.series.series_id} failed: {exc}")

    def _error(self, message: str) -> None:
        log.error("filewriter: %s", message)
        self.errors.append(message)

    def handle_end(self, series: Series, aborted: bool) -> None:
        s = self._series
        if s is not None and s.current is not None:
            self._close_current(s)

    # -- status and commands -----------------------------------------------------------------------------------
    def list_files(self) -> list[str]:
        return paths.list_data_files(self.data_dir)

    def buffer_free(self) -> int:
        return shutil.disk_usage(self.data_dir).free

    def clear(self) -> None:
        """Delete every finished file in the data directory (and folders left empty); reset errors."""
        for name in self.list_files():
            (self.data_dir / name).unlink(missing_ok=True)
        for folder in sorted(
            (p for p in self.data_dir.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
        ):
            try:
                folder.rmdir()
            except OSError:
                pass  # not empty (e.g. a file being written)
        self.errors.clear()

    def initialize(self) -> None:
        self.subsystem.reset()
        self.errors.clear()

    def close(self) -> None:
        self.close_buffer()
        s = self._series
        if s is not None:
            for sink in list(s.sinks_open):
                sink.discard()
            if s.master_file is not None:
                self.after_series(s.series, True)
        if self._pool is not None:
            self._pool.close()
            self._pool = None
