"""Child processes never outlive their parent: SIGTERM ends a worker blocked on its queue, an orphan ends itself,
and join_or_terminate kills a child that ignores SIGTERM. (A leftover analysis worker that survived SIGTERM once
hung a whole CI run.)"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from opendcu.lifecycle import ORPHAN_GRACE_S, join_or_terminate

BUDGET_S = 120  # polls: generous for a loaded machine, quick when things work


def _blocked_worker(inbox, ready) -> None:
    from opendcu.lifecycle import child_process_setup

    child_process_setup("test-worker", exit_on_term=True)
    ready.put(os.getpid())
    inbox.get()  # blocks forever: only a signal can end it


def _stubborn_worker(ready) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    ready.put(os.getpid())
    time.sleep(600)


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.1)
    return False


def test_sigterm_ends_a_worker_blocked_on_its_queue():
    ctx = mp.get_context("spawn")
    inbox, ready = ctx.Queue(), ctx.Queue()
    worker = ctx.Process(target=_blocked_worker, args=(inbox, ready), daemon=True)
    worker.start()
    try:
        assert ready.get(timeout=BUDGET_S) == worker.pid
        worker.terminate()  # SIGTERM
        worker.join(BUDGET_S)
        assert worker.exitcode == 128 + signal.SIGTERM  # SystemExit from the handler: finally blocks ran
    finally:
        worker.kill()


def _blocked_worker_signalled_in_another_thread(exit_on_term, inbox, ready) -> None:
    """As `_blocked_worker`, but the SIGTERM goes to another thread: the kernel may hand a process-directed
    signal to any thread, and the main thread, asleep in read(), would never run its handler."""
    import threading

    from opendcu.lifecycle import child_process_setup

    child_process_setup("test-worker", exit_on_term=exit_on_term)
    go = threading.Event()

    def helper() -> None:
        go.wait()
        time.sleep(0.2)  # the main thread is inside inbox.get() by then
        signal.pthread_kill(threading.get_ident(), signal.SIGTERM)
        time.sleep(600)

    threading.Thread(target=helper, daemon=True).start()
    ready.put(os.getpid())
    go.set()
    inbox.get()


@pytest.mark.parametrize("exit_on_term", [True, "at_once"])
def test_sigterm_delivered_to_another_thread_still_ends_a_blocked_worker(exit_on_term):
    """Without the wake-up pipe and the watcher's forwarding this worker lived on (a CI run hung on it once)."""
    ctx = mp.get_context("spawn")
    inbox, ready = ctx.Queue(), ctx.Queue()
    worker = ctx.Process(
        target=_blocked_worker_signalled_in_another_thread, args=(exit_on_term, inbox, ready), daemon=True
    )
    worker.start()
    try:
        assert ready.get(timeout=BUDGET_S) == worker.pid
        worker.join(BUDGET_S)
        assert worker.exitcode == 128 + signal.SIGTERM
    finally:
        worker.kill()


def _worker_in_a_ctypes_callback(exit_on_term, ready) -> None:
    """Busy inside a ctypes callback, as an analysis worker is while numba loads or compiles its kernels (llvmlite
    calls back into Python): an exception raised there is printed and swallowed."""
    import ctypes

    from opendcu.lifecycle import child_process_setup

    child_process_setup("test-worker", exit_on_term=exit_on_term)
    callback = ctypes.CFUNCTYPE(None)(lambda: time.sleep(0.05))
    caller = ctypes.CFUNCTYPE(None)(ctypes.cast(callback, ctypes.c_void_p).value)
    ready.put(os.getpid())
    while True:
        caller()


def test_sigterm_ends_a_worker_at_once_even_inside_a_ctypes_callback():
    """With exit_on_term=True the handler's SystemExit would be printed and lost inside the callback, and the
    worker would live on until SIGKILL (the analysis workers did, 10 s per `dcu serve` stopped soon after start);
    "at_once" ends it on the spot."""
    ctx = mp.get_context("spawn")
    ready = ctx.Queue()
    worker = ctx.Process(target=_worker_in_a_ctypes_callback, args=("at_once", ready), daemon=True)
    worker.start()
    try:
        assert ready.get(timeout=BUDGET_S) == worker.pid
        time.sleep(0.2)  # well inside the loop of callbacks
        worker.terminate()  # SIGTERM
        worker.join(BUDGET_S)
        assert worker.exitcode == 128 + signal.SIGTERM
    finally:
        worker.kill()
        worker.join(BUDGET_S)


def test_join_or_terminate_kills_a_child_that_ignores_sigterm():
    ctx = mp.get_context("spawn")
    ready = ctx.Queue()
    worker = ctx.Process(target=_stubborn_worker, args=(ready,), name="stubborn", daemon=True)
    worker.start()
    try:
        assert ready.get(timeout=BUDGET_S) == worker.pid
        join_or_terminate([worker], timeout=1)
        assert not worker.is_alive() and worker.exitcode == -signal.SIGKILL
    finally:
        worker.kill()


CHILD = (
    "import sys, time; from opendcu.lifecycle import child_process_setup; "
    "child_process_setup('orphan', exit_on_term=sys.argv[1] == '1'); print('ready', flush=True); time.sleep(600)"
)
# the middle process starts the child, reports its pid once it is set up, and exits without waiting for it
MIDDLE = (
    "import subprocess, sys; p = subprocess.Popen([sys.executable, '-c', sys.argv[1], sys.argv[2]], "
    "stdout=subprocess.PIPE, text=True); p.stdout.readline(); print(p.pid, flush=True)"
)


@pytest.mark.parametrize("exit_on_term", [True, False], ids=["blocking-worker", "stop-flag-process"])
def test_an_orphan_ends_itself(exit_on_term: bool):
    out = subprocess.run(
        [sys.executable, "-c", MIDDLE, CHILD, "1" if exit_on_term else "0"],
        capture_output=True,
        text=True,
        timeout=BUDGET_S,
        check=True,
    )
    pid = int(out.stdout.split()[0])
    try:
        # the watcher notices the re-parenting within 0.5 s and sends SIGTERM; a process that only sets its stop
        # flag (and here never looks at it) ends ORPHAN_GRACE_S later
        assert _gone(pid, within=BUDGET_S if exit_on_term else ORPHAN_GRACE_S + BUDGET_S)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
