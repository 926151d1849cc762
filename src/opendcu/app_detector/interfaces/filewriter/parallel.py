"""Parallel writing of pre-compressed chunks: the DECTRIS technique (one file, many memcpy writers) and the
Diamond/Jungfraujoch one (several files, one writer process each, stitched by a virtual dataset).

One file, many writers ("parallel"), spec/filewriter-nxmx.md §8:
1. The FileWriter thread is the *allocator*. It runs HDF5 as usual (`write_direct_chunk`), but through a file
   object (`AllocatingFile`, h5py's fileobj driver) instead of the sec2 driver. HDF5 hands the chunk payload
   to the driver as the very buffer we passed (checked by address), so the allocator records the offset HDF5
   chose for it and skips the bytes; metadata goes to the file with pwrite.
2. A pool of writer processes copies each payload from the shared-memory slot straight into a MAP_SHARED
   mmap of the file at that offset (hugepages advised). Copies of different chunks run in parallel; pwrite
   from several processes into one file would serialise on the inode lock.
3. Before the HDF5 file is closed, the allocator waits for every copy of it, and each writer unmaps it.
Each region is reserved with fallocate before the copy, so a full disk is an error, never a SIGBUS.
The result is the same file the serial writer makes: same HDF5 calls, same addresses, same bytes.

Several files ("vds"): data file k is written whole by writer process (k-1) mod N with the serial code
(`DataFile`), so N files fill at once; the master adds a virtual dataset /entry/data/data over them.
"""

from __future__ import annotations

import io
import itertools
import logging
import mmap
import multiprocessing as mp
import multiprocessing.connection
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import shared_memory
from pathlib import Path
from typing import Any

import numpy as np

from opendcu.codecs.base import Hdf5Filter
from opendcu.lifecycle import join_or_terminate

log = logging.getLogger(__name__)

#: room reserved in the sparse file for metadata between the chunks (HDF5 index blocks, attributes)
METADATA_ALLOWANCE = 8 << 20


def buffer_address(buf: Any) -> int:
    """Address of the first byte of a buffer (0 for an empty one)."""
    view = np.frombuffer(buf, dtype=np.uint8)
    return int(view.ctypes.data) if view.size else 0


class AllocatingFile(io.RawIOBase):
    """A file object for h5py's fileobj driver: metadata is written, the expected chunk payload only placed.

    `expect(chunk)` before `write_direct_chunk(…, chunk)`; the driver write of exactly that buffer is recorded
    in `placed` as (offset, size) instead of being written. The real file is sized to `reserve` (sparse) so that
    writers can map it; HDF5's final truncate sets it to the true end of file.
    """

    def __init__(self, path: Path, reserve: int):
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.ftruncate(self.fd, reserve)
        self.reserve = reserve
        self.size = 0
        self.pos = 0
        self._expected: tuple[int, int] | None = None
        self.placed: tuple[int, int] | None = None

    def expect(self, chunk: Any) -> None:
        self._expected = (buffer_address(chunk), memoryview(chunk).nbytes)
        self.placed = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.pos = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence] + offset
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer: Any) -> int:
        n = os.preadv(self.fd, [buffer], self.pos)
        self.pos += n
        return n

    def write(self, buffer: Any) -> int:
        view = memoryview(buffer)
        n = view.nbytes
        if self._expected is not None and self._expected == (buffer_address(view), n):
            self.placed = (self.pos, n)
            self._expected = None
            if self.pos + n > self.reserve:
                raise OSError(f"chunk at {self.pos}+{n} beyond the reserved {self.reserve} bytes")
        else:
            os.pwrite(self.fd, view, self.pos)
        self.pos += n
        self.size = max(self.size, self.pos)
        return n

    def truncate(self, size: int | None = None) -> int:
        size = self.pos if size is None else size
        os.ftruncate(self.fd, size)
        self.size = size
        return size

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        super().close()


# -- writer processes ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ChunkSource:
    """Where a chunk's bytes are: shared-memory segment + offset, or (not in shared memory) the bytes."""

    shm_name: str
    offset: int
    size: int
    data: bytes | None = None


class _Worker:
    """State of one writer process: attached shared memory, mapped files, open HDF5 files."""

    def __init__(self) -> None:
        self.segments: dict[str, tuple[shared_memory.SharedMemory, np.ndarray]] = {}
        self.maps: dict[int, tuple[int, mmap.mmap, np.ndarray]] = {}
        self.h5files: dict[int, Any] = {}

    def source(self, src: ChunkSource) -> np.ndarray:
        if src.data is not None:
            return np.frombuffer(src.data, np.uint8)
        if src.shm_name not in self.segments:
            shm = shared_memory.SharedMemory(name=src.shm_name, create=False)
            self.segments[src.shm_name] = (shm, np.ndarray((shm.size,), np.uint8, buffer=shm.buf))
        return self.segments[src.shm_name][1][src.offset : src.offset + src.size]

    def map(self, file_id: int, path: str, reserve: int) -> None:
        fd = os.open(path, os.O_RDWR)
        mm = mmap.mmap(fd, reserve, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        if hasattr(mmap, "MADV_HUGEPAGE"):
            try:
                mm.madvise(mmap.MADV_HUGEPAGE)  # takes effect on hugepage-capable tmpfs (shmem_enabled=advise)
            except OSError:
                pass
        self.maps[file_id] = (fd, mm, np.frombuffer(mm, dtype=np.uint8))

    def copy(self, file_id: int, src: ChunkSource, file_offset: int) -> None:
        fd, _mm, dst = self.maps[file_id]
        os.posix_fallocate(fd, file_offset, src.size)  # ENOSPC here, not SIGBUS in the copy
        dst[file_offset : file_offset + src.size] = self.source(src)

    def unmap(self, file_id: int) -> None:
        fd, mm, dst = self.maps.pop(file_id)
        del dst
        mm.close()
        os.close(fd)

    def open_h5(
        self, file_id: int, path: str, shape, dtype: str, hdf5_filter: Hdf5Filter | None, low: int, n: int
    ) -> None:
        from opendcu.app_detector.interfaces.filewriter.datafile import DataFile

        self.h5files[file_id] = DataFile(Path(path), tuple(shape), np.dtype(dtype), hdf5_filter, low, n)

    def write_h5(self, file_id: int, src: ChunkSource) -> None:
        self.h5files[file_id].append(self.source(src))

    def close_h5(self, file_id: int, discard: bool) -> None:
        f = self.h5files.pop(file_id)
        if discard:
            f.discard()
        else:
            f.close()

    def shutdown(self) -> None:
        for file_id in list(self.maps):
            self.unmap(file_id)
        for f in self.h5files.values():
            f.discard()
        for shm, view in self.segments.values():
            del view
            shm.close()


def _worker_main(index: int, tasks: Any, results: Any) -> None:
    from opendcu.app_detector.os_threads import name_this_thread
    from opendcu.lifecycle import child_process_setup

    child_process_setup(f"filewriter-worker{index}", exit_on_term=True)  # blocks on its pipe
    name_this_thread(f"filewriter-w{index}")  # its /proc comm: what ps, top and the fault tests see
    worker = _Worker()
    try:
        while True:
            batch = tasks.recv()
            if batch is None:
                break
            done: list[tuple[int, str | None]] = []
            for token, method, args in batch:
                try:
                    getattr(worker, method)(*args)
                    done.append((token, None))
                except Exception as exc:  # reported to the FileWriter, which goes to `error`
                    done.append((token, f"{type(exc).__name__}: {exc}"))
            results.send(done)
    except (KeyboardInterrupt, EOFError, BrokenPipeError):
        pass
    finally:
        worker.shutdown()


class WriterPool:
    """N writer processes; `submit(worker, method, *args, on_done=…)` runs `_Worker.method(*args)` there.

    Tasks are sent in batches (one pipe message per worker and flush) because a message costs more than a
    memcpy of a small chunk: the FileWriter flushes whenever its buffer runs empty, so batches grow only
    under load; `MAX_BATCH` bounds them.

    A writer process that dies (SIGKILL, OOM) is noticed within `WATCH_S`: every task it had not answered, and
    every task submitted to it later, ends at once with an error naming it (so a sink fails its file and releases
    the images it held instead of waiting), `alive()` turns false and the FileWriter starts a new pool at the
    next arm.

    Every worker has a task pipe and a result pipe of its own, with one writer and one reader each, and no
    locks shared with the processes. A worker killed in the middle of a message harms only its own pipes: a
    queue shared by all workers (multiprocessing's, with a lock between its writers) stays locked or holds half
    a message forever after such a kill, and every later write to it, the pool's close included, hangs.
    """

    MAX_BATCH = 16
    WATCH_S = 0.2

    def __init__(self, n_workers: int):
        ctx = mp.get_context("spawn")
        self.n_workers = n_workers
        self._tasks: list[Any] = []  # the pool's end of each worker's task pipe (it writes)
        self._results: list[Any] = []  # the pool's end of each worker's result pipe (it reads)
        self._processes: list[Any] = []
        for i in range(n_workers):
            task_reader, task_writer = ctx.Pipe(duplex=False)
            result_reader, result_writer = ctx.Pipe(duplex=False)
            process = ctx.Process(
                target=_worker_main, args=(i, task_reader, result_writer), name=f"filewriter-worker{i}", daemon=True
            )
            process.start()
            # the worker's ends are its own: once it dies, its result pipe reads EOF and its task pipe refuses
            task_reader.close()
            result_writer.close()
            self._tasks.append(task_writer)
            self._results.append(result_reader)
            self._processes.append(process)
        self._wake_reader, self._wake_writer = ctx.Pipe(duplex=False)  # ends the collector at close
        self._pending: list[list[tuple]] = [[] for _ in range(n_workers)]
        #: token -> (worker, callback) of every task not answered yet
        self._callbacks: dict[int, tuple[int, Callable[[str | None], None]]] = {}
        #: worker -> why it is gone (its tasks fail with this text)
        self._dead: dict[int, str] = {}
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._send_locks = [threading.Lock() for _ in range(n_workers)]
        self._tokens = itertools.count()
        self._collector = threading.Thread(target=self._collect, name="filewriter-pool", daemon=True)
        self._collector.start()
        self._watcher = threading.Thread(target=self._watch, name="filewriter-watch", daemon=True)
        self._watcher.start()

    def submit(self, worker: int, method: str, *args: Any, on_done: Callable[[str | None], None]) -> None:
        token = next(self._tokens)
        w = worker % self.n_workers
        with self._lock:
            dead = self._dead.get(w)
            if dead is None:
                self._callbacks[token] = (w, on_done)
                self._pending[w].append((token, method, args))
                full = len(self._pending[w]) >= self.MAX_BATCH
        if dead is not None:
            on_done(dead)
            return
        if full:
            self._send(w)

    def flush(self) -> None:
        """Send every pending task."""
        for w in range(self.n_workers):
            self._send(w)

    def _send(self, w: int) -> None:
        # the pipe write outside the lock: it waits while the worker is behind (its pipe full)
        with self._send_locks[w]:
            with self._lock:
                batch, self._pending[w] = self._pending[w], []
                if not batch or w in self._dead:
                    return
            try:
                self._tasks[w].send(batch)
            except OSError:  # the worker died (its end is closed): the watcher fails these tasks with the reason
                log.debug("filewriter worker %d did not take a batch of %d tasks", w, len(batch))

    def call(self, worker: int, method: str, *args: Any, timeout: float = 60) -> None:
        """Run and wait; raises OSError with the worker's message if it failed."""
        done = threading.Event()
        outcome: list[str | None] = []

        def finished(error: str | None) -> None:
            outcome.append(error)
            done.set()

        self.submit(worker, method, *args, on_done=finished)
        self._send(worker % self.n_workers)
        if not done.wait(timeout):
            raise OSError(f"filewriter worker {worker} did not answer {method} within {timeout} s")
        if outcome[0] is not None:
            raise OSError(outcome[0])

    def _collect(self) -> None:
        live: list[Any] = list(self._results)
        while live:
            ready: list[Any] = mp.connection.wait([*live, self._wake_reader])
            closing = self._wake_reader in ready
            for conn in list(live) if closing else ready:  # at close: what the workers answered before they ended
                while conn in live and conn.poll(0):
                    if not self._take(conn):
                        live.remove(conn)
            if closing:
                return

    def _take(self, conn: Any) -> bool:
        """Answer the callbacks of one result message; False once the worker's pipe is done (it died, maybe in the
        middle of a message: the watcher fails what it still owed)."""
        try:
            batch = conn.recv()
        except Exception:  # noqa: BLE001 - EOF, or half a message from a worker killed while sending it
            return False
        for token, error in batch:
            with self._lock:
                _, callback = self._callbacks.pop(token, (None, None))
            if callback is not None:
                self._answer(callback, error)
        return True

    @staticmethod
    def _answer(callback: Callable[[str | None], None], error: str | None) -> None:
        try:
            callback(error)
        except Exception:
            log.exception("filewriter pool callback failed")

    def _watch(self) -> None:
        """Notice a writer process that died: fail what it still owed (see the class docstring)."""
        while not self._closing.wait(self.WATCH_S):
            for w, process in enumerate(self._processes):
                if w in self._dead or process.exitcode is None:
                    continue
                reason = f"filewriter worker {w} (pid {process.pid}) died (exit code {process.exitcode})"
                with self._lock:
                    self._dead[w] = reason
                    self._pending[w] = []
                    owed = [t for t, (worker, _) in self._callbacks.items() if worker == w]
                    callbacks = [self._callbacks.pop(t)[1] for t in owed]
                log.error("%s: %d writes it had not done fail; a new pool starts at the next arm", reason, len(owed))
                for callback in callbacks:
                    self._answer(callback, reason)

    def alive(self) -> bool:
        return all(p.is_alive() for p in self._processes)

    def close(self) -> None:
        self._closing.set()
        self._watcher.join(timeout=5)
        self.flush()
        for w, conn in enumerate(self._tasks):
            if w not in self._dead and self._processes[w].is_alive():
                try:
                    conn.send(None)
                except OSError:  # it died just now
                    pass
        join_or_terminate(self._processes, timeout=10)
        self._wake_writer.send(None)
        self._collector.join(timeout=5)
        for conn in (*self._tasks, *self._results, self._wake_reader, self._wake_writer):
            conn.close()


def chunk_source(image: Any) -> ChunkSource:
    """Where a writer process finds the bytes of a CompressedImage."""
    if image.shm_name:
        return ChunkSource(image.shm_name, image.shm_offset, image.nbytes)
    return ChunkSource("", 0, image.nbytes, bytes(image.data))
