"""The pipeline: N worker processes fed from the DAQ, with results put back in image order for the ImageMux.

Frames move in batches: the DAQ hands over what it settled in one poll (`submit_many`), a dispatcher thread
pairs each frame with a free output slot and sends the batch to the worker with the least work, and a worker
answers each batch with one message. Every worker has its own pipes (one writer, one reader each).

Supervision: a worker that dies is replaced at once. Every frame it held whose answer never came still has its
raw slot (only an answer gives a raw slot back), so its pixels are intact and it is sent to another worker: no
image is lost to a dead worker. A frame that cannot be processed (or whose workers died `MAX_ATTEMPTS` times) is
lost and counted (`images_lost_in_pipeline`, per series); the collector then stops waiting for it.
"""

from __future__ import annotations

import collections
import logging
import multiprocessing as mp
import multiprocessing.connection
import operator
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opendcu.app_detector.daq.assembler import NO_SLOT, AssembledFrame
from opendcu.app_detector.os_threads import start_named
from opendcu.app_detector.pipeline.worker import (
    ANSWER_FIELDS,
    FAILED,
    IMAGE,
    ProcessedImage,
    WorkerSpec,
    read_rows,
    task_rows,
    worker_main,
)
from opendcu.app_detector.series import SeriesSettings
from opendcu.app_detector.shared_memory import SlotRing
from opendcu.lifecycle import join_or_terminate

log = logging.getLogger(__name__)

#: frames per batch sent to a worker at most
MAX_BATCH = 64
#: a frame whose worker died this many times is given up (a frame that kills workers must not kill them all)
MAX_ATTEMPTS = 2
_frame_number = operator.attrgetter("frame_number")
#: images held back this long for an earlier one that has not come are reported (s)
HELD_BACK_S = 5.0


@dataclass
class _Worker:
    """The pool's side of one worker process."""

    index: int
    process: Any
    tasks: Any  # Connection the pool sends batches on
    results: Any  # Connection the pool reads answers from
    settings: Any  # Queue of SeriesSettings
    #: frames sent and not answered yet: (series_id, frame_number) -> (frame, output slot)
    outstanding: dict[tuple[int, int], tuple[AssembledFrame, int]] = field(default_factory=dict)


def _give_back_raw(raw_free: Any, frame: AssembledFrame) -> None:
    """Return a frame's raw slot to the DAQ (a frame without pixels, NO_SLOT, holds none)."""
    if frame.slot != NO_SLOT:
        raw_free.put(frame.slot)


class PipelinePool:
    """Distributes raw frames to worker processes and re-orders their compressed images by frame number."""

    def __init__(
        self,
        detector: str,
        raw_ring: SlotRing,
        out_ring: SlotRing,
        raw_free,
        out_free,
        on_images: Callable[[list[ProcessedImage]], None],
        n_workers: int = 2,
    ):
        self._ctx = mp.get_context("spawn")
        self._detector = detector
        self._raw_ring = raw_ring
        self._out_ring = out_ring
        #: takes the next images in frame order, a batch at a time (called with the pool's lock held)
        self.on_images = on_images
        self._raw_free = raw_free
        self._out_free = out_free
        self._ready = self._ctx.Queue()
        self._workers = [self._new_worker(i) for i in range(n_workers)]
        self._lock = threading.Condition()
        self._series_id = -1
        self._settings: SeriesSettings | None = None
        self._next_frame = 1
        self._published = 0
        self._held: dict[int, ProcessedImage] = {}
        #: (the next image in order, since when it is awaited, whether that was logged)
        self._waiting_for: tuple[int, float, bool] = (1, time.monotonic(), False)
        self._lost: set[int] = set()  # frame numbers of the series that will not come (collector skips them)
        self._lost_in_pipeline = 0
        self._attempts: dict[tuple[int, int], int] = {}
        self._pending: collections.deque[AssembledFrame] = collections.deque()
        self._unsorted = False
        #: frames of the current series go to the workers only below the next image in order + this many: fewer
        #: than the output slots, so that the next image always finds one
        self._span = max(1, out_ring.n_slots - n_workers)
        self._span_off = False
        self._work = threading.Condition()
        self.workers_replaced = 0
        #: (index, pid, exit code) of every worker that ended, in order (the collector is the only thread that
        #: reaps workers: two threads waiting for one child race in waitpid, and one of them gets no exit code)
        self.ended: list[tuple[int, int | None, int | None]] = []
        self._collector = threading.Thread(target=self._collect, name="pipeline-collector", daemon=True)
        self._dispatcher = threading.Thread(target=self._dispatch, name="pipeline-dispatch", daemon=True)
        self._running = True
        self._launched = False

    @property
    def workers(self) -> list[Any]:
        """The worker processes now serving (replacements included)."""
        return [w.process for w in self._workers]

    def _new_worker(self, index: int) -> _Worker:
        task_reader, task_writer = self._ctx.Pipe(duplex=False)
        result_reader, result_writer = self._ctx.Pipe(duplex=False)
        settings = self._ctx.Queue()
        spec = WorkerSpec(
            index,
            self._detector,
            self._raw_ring.spec(),
            self._out_ring.spec(),
            task_reader,
            settings,
            result_writer,
            self._ready,
        )
        process = self._ctx.Process(target=worker_main, args=(spec,), name=f"pipeline-worker{index}", daemon=True)
        worker = _Worker(index, process, task_writer, result_reader, settings)
        worker._ends = (task_reader, result_writer)  # type: ignore[attr-defined]  # closed here once started
        return worker

    def _start_process(self, worker: _Worker) -> None:
        # processes are the parallelism: each worker compresses with one thread (bitshuffle's OpenMP would
        # oversubscribe the cores; libgomp reads the variable when a worker imports bitshuffle)
        previous = os.environ.get("OMP_NUM_THREADS")
        os.environ["OMP_NUM_THREADS"] = "1"
        try:
            worker.process.start()
        finally:
            if previous is None:
                del os.environ["OMP_NUM_THREADS"]
            else:
                os.environ["OMP_NUM_THREADS"] = previous
        for end in worker._ends:  # type: ignore[attr-defined]  # the child's ends: EOF when it dies
            end.close()

    def launch(self) -> None:
        """Start the worker processes now: they import and load their kernels while the caller goes on."""
        if not self._launched:
            self._launched = True
            for w in self._workers:
                self._start_process(w)

    def start(self, timeout: float = 300.0) -> None:
        """Start the workers (unless `launch` did) and wait until each has its compiled kernels ready (the first
        start of a fresh installation compiles them, later starts load numba's on-disk cache)."""
        self.launch()
        start_named(self._collector)
        start_named(self._dispatcher)
        deadline = time.monotonic() + timeout
        for _ in self._workers:
            try:
                self._ready.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError("pipeline workers did not become ready") from None

    def start_series(self, settings: SeriesSettings) -> None:
        with self._lock:
            self._series_id = settings.series_id
            self._settings = settings
            self._next_frame = 1
            self._published = 0
            with self._work:
                self._span_off = False
                self._span = max(1, self._out_ring.n_slots - len(self._workers))  # the series' partition
                self._unsorted = bool(self._pending)  # frames of the last series (if any) go first
            self._give_back_held()
            self._lost.clear()
            self._lost_in_pipeline = 0
            self._attempts.clear()
            workers = list(self._workers)
        for w in workers:
            w.settings.put(settings)

    def discard_pending(self) -> int:
        """Drop the frames not yet sent to a worker, giving back their raw slots; the number dropped. For arm
        only: every frame still pending then belongs to a series that is over (an aborted one), and sending it
        later would pair it with a slot of the next series' partition of the output ring."""
        with self._work:
            frames, self._pending = self._pending, collections.deque()
            self._unsorted = False
        for frame in frames:
            _give_back_raw(self._raw_free, frame)
        return len(frames)

    def give_back_held(self) -> None:
        """Free the output slots of images held back for one that never came (a series that ended so)."""
        with self._lock:
            self._give_back_held()

    def _give_back_held(self) -> None:
        for image in self._held.values():  # never published: their slots are free
            self._out_free.put(image.out_slot)
        self._held.clear()

    @property
    def images_lost_in_pipeline(self) -> int:
        """Images of the running (or last) series the pipeline could not produce (each is missing downstream)."""
        with self._lock:
            return self._lost_in_pipeline

    # -- DAQ -> workers ------------------------------------------------------------------------------------------
    def submit(self, frame: AssembledFrame) -> None:
        """Hand one assembled raw frame to the workers."""
        self.submit_many([frame])

    def submit_many(self, frames: list[AssembledFrame]) -> None:
        """Hand the frames the DAQ settled in one poll to the workers (one hand-off per batch). Frames settle
        out of order at times (a frame missing packets closes by its timeout, after newer complete ones): the
        pending frames are then put in order again before the next dispatch."""
        if not frames:
            return
        frames = sorted(frames, key=_frame_number)
        with self._work:
            last = self._pending[-1] if self._pending else None
            if last is not None and last.frame_number > frames[0].frame_number:
                self._unsorted = True
            self._pending.extend(frames)
            self._work.notify()

    def _dispatchable(self) -> int:
        """(work lock held) How many pending frames, from the left, may take an output slot now: frames of the
        current series only below `_next_frame + _span`. The images after the next one in order wait for it,
        each in an output slot; bounding how far ahead frames go keeps a slot for the next one, which would
        otherwise wait for a slot that only its own publication frees."""
        if self._unsorted:
            current = self._series_id
            self._pending = collections.deque(
                sorted(self._pending, key=lambda f: (f.series_id == current, f.frame_number))
            )
            self._unsorted = False
        pending = self._pending
        if self._span_off or not pending:
            return len(pending)
        limit = self._next_frame + self._span
        last = pending[-1]  # in order: if the last may go, all may
        if last.series_id != self._series_id or last.frame_number < limit:
            return len(pending)
        n = 0
        for frame in pending:
            if frame.series_id == self._series_id and frame.frame_number >= limit:
                break
            n += 1
        return n

    def _dispatch(self) -> None:
        while self._running:
            try:
                self._dispatch_once()
            except Exception:  # noqa: BLE001 - a dead dispatcher would stop the data path without a word
                log.exception("pipeline dispatcher: error while sending frames to the workers; continuing")
                time.sleep(0.01)

    def _dispatch_once(self) -> None:
        """Send the next batch of pending frames (with an output slot each) to the least busy worker."""
        with self._work:
            while self._running and not (ready := self._dispatchable()):
                # frames too far ahead wait for the next one in order (published by the collector): poll
                self._work.wait(0.005 if self._pending else 0.2)
            if not self._running:
                return
            n_alive = max(1, len(self._workers))
            size = min(MAX_BATCH, -(-ready // n_alive))
        try:  # a free output slot per frame; the first one may be waited for (the interfaces are behind)
            slots = [self._out_free.get(timeout=0.2)]
        except queue.Empty:
            return
        while len(slots) < size:
            try:
                slots.append(self._out_free.get_nowait())
            except queue.Empty:
                break
        with self._work:
            batch = [(self._pending.popleft(), slot) for slot in slots[: self._dispatchable()]]
        for slot in slots[len(batch) :]:
            self._out_free.put(slot)
        if batch:
            self._send(batch)

    def _send(self, batch: list[tuple[AssembledFrame, int]]) -> None:
        with self._lock:
            worker = min(self._workers, key=lambda w: len(w.outstanding))
            for frame, slot in batch:
                worker.outstanding[(frame.series_id, frame.frame_number)] = (frame, slot)
        try:
            worker.tasks.send_bytes(task_rows(batch))
        except (OSError, ValueError):  # the worker died: the collector re-sends what it held
            log.warning("pipeline worker %d did not take a batch (it died)", worker.index)

    # -- workers -> ImageMux -------------------------------------------------------------------------------------
    def wait_published(self, count: int, timeout: float) -> int:
        """Wait until `count` images of the current series went to the ImageMux or were lost in the pipeline;
        return how many went to the ImageMux."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._published + self._lost_in_pipeline < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._lock.wait(min(remaining, 0.1))
            return self._published

    def flush_held(self) -> None:
        """Publish whatever is held back waiting for a frame that will never come (after an abort), and let the
        frames still pending go to the workers in any order."""
        with self._lock:
            self._publish([self._held.pop(fn) for fn in sorted(self._held)])
        with self._work:
            self._span_off = True
            self._work.notify()

    def _collect(self) -> None:
        while self._running:
            with self._lock:
                by_conn = {w.results: w for w in self._workers}
                by_sentinel = {w.process.sentinel: w for w in self._workers}
            try:
                ready = mp.connection.wait([*by_conn, *by_sentinel], timeout=0.2)
            except OSError:
                continue
            try:
                for item in ready:
                    worker = by_conn.get(item)
                    if worker is not None:
                        self._read(worker)
                for item in ready:
                    worker = by_sentinel.get(item)
                    if worker is not None and self._running:
                        self._replace(worker)
            except Exception:  # noqa: BLE001 - a dead collector would stop the data path without a word
                log.exception("pipeline collector: error while taking the workers' answers; continuing")
            self._check_held_back()

    def _check_held_back(self) -> None:
        """Say once, loudly, when images wait longer than HELD_BACK_S for an earlier one that has not come, and
        where that one is: every image after it holds an output slot until it comes."""
        with self._lock:
            if not self._held or self._next_frame != self._waiting_for[0]:
                self._waiting_for = (self._next_frame, time.monotonic(), False)
                return
            frame_number, since, told = self._waiting_for
            if told or time.monotonic() - since < HELD_BACK_S:
                return
            self._waiting_for = (frame_number, since, True)
            key = (self._series_id, frame_number)
            where = next((f"at worker {w.index}" for w in self._workers if key in w.outstanding), None)
        if where is None:
            with self._work:
                queued = any((f.series_id, f.frame_number) == key for f in self._pending)
            where = "waiting for an output slot" if queued else "never handed to the pipeline"
        log.error(
            "series %d: %d images are held back for %.0f s waiting for image %d (%s)",
            key[0],
            len(self._held),
            time.monotonic() - since,
            frame_number,
            where,
        )

    def _read(self, worker: _Worker) -> bool:
        """Take one answer of `worker`; False if its pipe is broken (the worker died)."""
        try:
            answer = read_rows(worker.results.recv_bytes(), ANSWER_FIELDS)
        except (EOFError, OSError, ValueError):  # a message cut short by the worker's death
            return False
        give_back_raw, out_free, outstanding = self._raw_free.put, self._out_free, worker.outstanding
        with self._lock:
            current = self._series_id
            for series_id, frame_number, outcome, nbytes in answer.tolist():
                frame, out_slot = outstanding.pop((series_id, frame_number))
                if frame.slot != NO_SLOT:  # the worker is done with the raw frame
                    give_back_raw(frame.slot)
                if series_id != current:
                    if outcome == IMAGE:
                        log.warning("dropping image %d of stale series %d", frame_number, series_id)
                    out_free.put(out_slot)
                elif outcome == IMAGE:
                    self._held[frame_number] = ProcessedImage(
                        series_id, frame_number, out_slot, nbytes, frame.packets_expected, frame.packets_received
                    )
                else:
                    out_free.put(out_slot)
                    if outcome == FAILED:
                        self._lose(frame_number, "it could not be processed")
            self._advance()
        return True

    def _replace(self, worker: _Worker) -> None:
        """`worker` died: read what it answered, replace it, re-send the frames it held."""
        while True:
            try:
                if not worker.results.poll(0) or not self._read(worker):
                    break
            except (OSError, EOFError):
                break
        # its pipe closed: the process is ending; a clean stop (exit 0) can take seconds on a loaded machine, and
        # one still running after that is taken as dead (never a live worker next to its replacement)
        worker.process.join(timeout=10)
        if worker.process.exitcode is None:
            worker.process.kill()
            worker.process.join(timeout=5)
        code = worker.process.exitcode
        with self._lock:
            self.ended.append((worker.index, worker.process.pid, code))
            self._lock.notify_all()
            if worker not in self._workers:
                return
            # a clean exit is a stop that was asked for (SIGTERM to the process group): not replaced; nor is a
            # worker that ends while the pool closes
            replacement = self._new_worker(worker.index) if code != 0 and self._running else None
            if replacement is not None:
                self._workers[self._workers.index(worker)] = replacement
                self.workers_replaced += 1
            elif len(self._workers) > 1:
                self._workers.remove(worker)
            settings = self._settings
            resend: list[AssembledFrame] = []
            for key, (frame, out_slot) in sorted(worker.outstanding.items()):
                self._out_free.put(out_slot)
                attempts = self._attempts[key] = self._attempts.get(key, 0) + 1
                if frame.series_id != self._series_id:
                    _give_back_raw(self._raw_free, frame)
                elif attempts >= MAX_ATTEMPTS:
                    _give_back_raw(self._raw_free, frame)
                    self._lose(frame.frame_number, f"{attempts} workers died on it")
                else:
                    resend.append(frame)
            worker.outstanding.clear()
            self._advance()
        for conn in (worker.tasks, worker.results):
            conn.close()
        if replacement is None:
            log.warning("pipeline worker %d (pid %s) stopped", worker.index, worker.process.pid)
            if resend:
                with self._work:
                    self._pending.extendleft(reversed(resend))
                    self._unsorted = True
                    self._work.notify()
            return
        log.error(
            "pipeline worker %d (pid %s) died (exit code %s): replaced; %d frames it held go to the other workers",
            worker.index,
            worker.process.pid,
            code,
            len(resend),
        )
        self._start_process(replacement)
        if settings is not None:
            replacement.settings.put(settings)
        if resend:
            with self._work:
                self._pending.extendleft(reversed(resend))
                self._unsorted = True
                self._work.notify()

    def _lose(self, frame_number: int, why: str) -> None:
        """(lock held) Image `frame_number` of the series will not come."""
        self._lost.add(frame_number)
        self._lost_in_pipeline += 1
        log.error("series %d: image %d lost in the pipeline: %s", self._series_id, frame_number, why)

    def _advance(self) -> None:
        """(lock held) Publish the images that are next in order, in one batch; skip those that are lost."""
        ready: list[ProcessedImage] = []
        held, lost = self._held, self._lost
        while True:
            if self._next_frame in held:
                ready.append(held.pop(self._next_frame))
                self._next_frame += 1
            elif self._next_frame in lost:
                lost.discard(self._next_frame)
                self._next_frame += 1
                self._lock.notify_all()
            else:
                break
        self._publish(ready)

    def _publish(self, images: list[ProcessedImage]) -> None:
        if not images:
            return
        self._next_frame = images[-1].frame_number + 1
        self.on_images(images)
        self._published += len(images)
        self._lock.notify_all()

    def wait_ended(self, pid: int, timeout: float) -> tuple[bool, int | None]:
        """Wait until the collector has seen worker process `pid` end: (ended, its exit code)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                for _, ended_pid, code in self.ended:
                    if ended_pid == pid:
                        return True, code
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False, None
                self._lock.wait(min(remaining, 0.1))

    def close(self) -> None:
        self._running = False
        with self._work:
            self._work.notify_all()
        for w in self._workers:
            try:
                w.tasks.send_bytes(b"")  # the stop message
            except (OSError, ValueError):
                pass
        # the collector first (it may be reaping a worker), so that only one thread ever waits for a worker
        for thread, timeout in ((self._collector, 20), (self._dispatcher, 2)):
            if thread.ident is not None:  # started (a data path that failed to build closes a pool never started)
                thread.join(timeout=timeout)
        join_or_terminate([w.process for w in self._workers], timeout=5)
        for w in self._workers:
            for conn in (w.tasks, w.results):
                conn.close()
