"""Where the FileWriter puts one data file's images: written here (serial), copied by writer processes into
one mmapped file (parallel), or written whole by one writer process (vds). See parallel.py for the techniques.

Every sink takes images in order with `write(image)`; a sink that finishes asynchronously keeps a reference to
the image (`retain`) and releases it when the copy is done, so the shared slot stays valid until then.
"""

from __future__ import annotations

import itertools
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from opendcu.app_detector.imagemux.mux import CompressedImage
from opendcu.app_detector.interfaces.filewriter.datafile import DataFile, part_path
from opendcu.app_detector.interfaces.filewriter.parallel import (
    METADATA_ALLOWANCE,
    AllocatingFile,
    ChunkSource,
    WriterPool,
    chunk_source,
)
from opendcu.codecs.base import Hdf5Filter

_file_ids = itertools.count(1)


@dataclass(frozen=True)
class FileSpec:
    """One data file to write."""

    path: Path
    shape: tuple[int, int]
    dtype: np.dtype
    hdf5_filter: Hdf5Filter | None
    image_nr_low: int
    n_images: int
    #: bytes of the largest chunk the pipeline can produce (sizes the parallel writer's sparse reserve)
    max_chunk_bytes: int


class Sink(Protocol):
    def write(self, image: CompressedImage, chunk: Any) -> None: ...

    def close(self) -> Path: ...

    def discard(self) -> None: ...


class SerialSink:
    """The file is written in this thread with H5Dwrite_chunk."""

    def __init__(self, spec: FileSpec):
        self.file = DataFile(spec.path, spec.shape, spec.dtype, spec.hdf5_filter, spec.image_nr_low, spec.n_images)

    def write(self, image: CompressedImage, chunk: Any) -> None:
        self.file.append(chunk)

    def close(self) -> Path:
        return self.file.close()

    def discard(self) -> None:
        self.file.discard()


class _Outstanding:
    """Counts asynchronous writes of one file and remembers the first error."""

    def __init__(self) -> None:
        self.count = 0
        self.error: str | None = None
        self._cond = threading.Condition()

    def add(self) -> None:
        with self._cond:
            self.count += 1

    def done(self, error: str | None) -> None:
        with self._cond:
            self.count -= 1
            if error is not None and self.error is None:
                self.error = error
            self._cond.notify_all()

    def settle(self) -> None:
        """Wait for the outstanding writes; their errors no longer matter (the file is being given up)."""
        try:
            self.wait()
        except OSError:
            pass

    def wait(self, timeout: float = 120) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self.count == 0, timeout):
                raise OSError(f"{self.count} chunk writes did not finish within {timeout} s")
            if self.error is not None:
                raise OSError(self.error)


def _source(image: CompressedImage, chunk: Any) -> ChunkSource:
    if chunk is image.data:
        return chunk_source(image)
    return ChunkSource("", 0, memoryview(chunk).nbytes, bytes(memoryview(chunk).cast("B")))


class ParallelSink:
    """One file: HDF5 allocates here (metadata pass), the pool's processes memcpy the chunks into an mmap."""

    def __init__(self, spec: FileSpec, pool: WriterPool):
        self.pool = pool
        self.file_id = next(_file_ids)
        self.pending = _Outstanding()
        self._next_worker = itertools.cycle(range(pool.n_workers))
        spec.path.parent.mkdir(parents=True, exist_ok=True)
        reserve = spec.n_images * (spec.max_chunk_bytes + 4096) + METADATA_ALLOWANCE
        self.fileobj = AllocatingFile(part_path(spec.path), reserve)
        self.file = DataFile(
            spec.path, spec.shape, spec.dtype, spec.hdf5_filter, spec.image_nr_low, spec.n_images, fileobj=self.fileobj
        )
        for w in range(pool.n_workers):
            pool.submit(w, "map", self.file_id, str(self.file.tmp_path), reserve, on_done=self._mapped)

    def _mapped(self, error: str | None) -> None:
        if error is not None:
            self.pending.error = self.pending.error or error

    def write(self, image: CompressedImage, chunk: Any) -> None:
        if self.pending.error is not None:  # a copy failed (disk full, a writer process died): the file is lost
            raise OSError(self.pending.error)
        self.fileobj.expect(chunk)
        self.file.append(chunk)
        if self.fileobj.placed is None:
            raise OSError("HDF5 did not hand the chunk to the file driver as one write")
        offset, _size = self.fileobj.placed
        image.retain()
        self.pending.add()

        def copied(error: str | None) -> None:
            image.release()
            self.pending.done(error)

        self.pool.submit(next(self._next_worker), "copy", self.file_id, _source(image, chunk), offset, on_done=copied)

    def _unmap_all(self) -> None:
        for w in range(self.pool.n_workers):
            self.pool.call(w, "unmap", self.file_id)

    def _unmap_all_quietly(self) -> None:
        """Unmap where the workers can (a dead one has no map left); the file is being given up."""
        for w in range(self.pool.n_workers):
            try:
                self.pool.call(w, "unmap", self.file_id)
            except OSError:
                pass

    def close(self) -> Path:
        self.pool.flush()
        self.pending.wait()
        self._unmap_all()
        try:
            return self.file.close()  # HDF5's last metadata writes and truncate go through the file object
        finally:
            self.fileobj.close()

    def discard(self) -> None:
        self.pool.flush()
        self.pending.settle()
        try:
            self._unmap_all_quietly()
        finally:
            self.file.discard()
            self.fileobj.close()


class WorkerFileSink:
    """One file written whole by one writer process (the "vds" mode: N files fill in parallel)."""

    def __init__(self, spec: FileSpec, pool: WriterPool, worker: int):
        self.pool = pool
        self.worker = worker
        self.file_id = next(_file_ids)
        self.path = spec.path
        self.pending = _Outstanding()
        pool.call(
            worker,
            "open_h5",
            self.file_id,
            str(spec.path),
            spec.shape,
            np.dtype(spec.dtype).str,
            spec.hdf5_filter,
            spec.image_nr_low,
            spec.n_images,
        )

    def write(self, image: CompressedImage, chunk: Any) -> None:
        if self.pending.error is not None:  # a write failed (disk full, the writer process died): the file is lost
            raise OSError(self.pending.error)
        image.retain()
        self.pending.add()

        def written(error: str | None) -> None:
            image.release()
            self.pending.done(error)

        self.pool.submit(self.worker, "write_h5", self.file_id, _source(image, chunk), on_done=written)

    def close(self) -> Path:
        self.pool.flush()
        try:
            self.pending.wait()
        except OSError:
            self._close_quietly()
            raise
        self.pool.call(self.worker, "close_h5", self.file_id, False)
        return self.path

    def discard(self) -> None:
        self.pool.flush()
        self.pending.settle()
        self._close_quietly()

    def _close_quietly(self) -> None:
        """Discard the file in its writer process; one that died left a `.part` (removed here)."""
        try:
            self.pool.call(self.worker, "close_h5", self.file_id, True)
        except OSError:
            part_path(self.path).unlink(missing_ok=True)
