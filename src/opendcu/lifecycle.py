"""Process lifecycle helpers shared by every opendcu process (base system, apps, simulated modules).

Child processes are started by the base system's app manager (apps, simulated modules) or by an app
(multiprocessing workers). They
- die with their parent: Linux PR_SET_PDEATHSIG where the parent is a process that outlives its threads, and
  always a watcher thread that notices the re-parenting (PDEATHSIG follows the *thread* that started the child,
  so a worker started from a gRPC thread would get it when that thread ends; the watcher has no such catch);
- ignore SIGINT (Ctrl-C reaches the whole process group; the parent decides the shutdown order) and
  shut down on SIGTERM: processes that poll a stop flag get `StopSignal` set, workers that block on a queue
  (`exit_on_term=True`) raise SystemExit at once, so that their `finally` blocks still run, and workers with
  nothing to save (`exit_on_term="at_once"`) end with os._exit: a SystemExit raised while numba loads or compiles
  kernels lands in a ctypes callback, which swallows it, and the worker would live on until SIGKILL;
- get that SIGTERM even when the kernel hands it to another thread: Python runs its handlers in the main thread
  only, and a main thread blocked in read() is then never woken (about 1 in 70 stops of a blocked worker on a
  loaded machine: the worker lived on). The C handler writes each signal to a wake-up pipe, from whichever thread;
  the watcher thread reads it and, where the handler has not run, sends the signal to the main thread itself;
- are killed by the parent if they do not stop after SIGTERM (`join_or_terminate`), so a hung child never
  blocks a shutdown;
- report readiness with one line `OPENDCU-READY <json>` on stdout, carrying whatever the parent needs
  (bound ports, socket paths).
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.metadata
import json
import logging
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Literal

READY_PREFIX = "OPENDCU-READY "
_PR_SET_PDEATHSIG = 1
#: how often a child looks whether its parent is still there, and how long it may take to stop after that
PARENT_POLL_S = 0.5
ORPHAN_GRACE_S = 10.0


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM this process when its parent exits (Linux only; a no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() == 1:  # the parent already died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


class StopSignal:
    """A stop request that a signal handler may set.

    (threading.Event.set() must not be called from a signal handler: the handler runs in the main thread, which
    may hold the event's lock inside Event.wait(), and the process deadlocks. Here the handler only assigns.)
    """

    def __init__(self) -> None:
        self._set = False

    def set(self, *_: object) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        """Sleep up to `timeout` s, returning early (True) once set."""
        deadline = time.monotonic() + timeout
        while not self._set and time.monotonic() < deadline:
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        return self._set


def _exit_once(handled: StopSignal, at_once: bool) -> Callable[[int, object], None]:
    """The SIGTERM handler of a worker that blocks: SystemExit (or os._exit) the first time, nothing after (a
    copy that the watcher forwarded to the main thread must not raise a second SystemExit in a finally block)."""

    def handler(signum: int, _frame: object) -> None:
        if handled.is_set():
            return
        handled.set()
        if at_once:
            os._exit(128 + signum)
        raise SystemExit(128 + signum)

    return handler


class _TermForwarder:
    """Makes sure the main thread runs its SIGTERM handler, whichever thread the kernel delivered SIGTERM to.

    The kernel may deliver a process-directed signal to any thread; the C-level handler then only marks it, and
    a main thread that sleeps in a system call never looks. `signal.set_wakeup_fd` makes the C handler write the
    signal number to a pipe from any thread; `on_wakeup` (called by the watcher thread) sends SIGTERM to the main
    thread where its handler has not run shortly after: that interrupts the system call, and the handler runs."""

    #: how long the main thread may take to run the handler by itself before it is sent the signal
    MAIN_THREAD_GRACE_S = 0.05

    def __init__(self, handled: StopSignal) -> None:
        self._handled = handled
        self.read_fd, write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)

    def on_wakeup(self) -> None:
        try:
            signums = os.read(self.read_fd, 256)
        except BlockingIOError:
            return
        if signal.SIGTERM not in signums or self._handled.wait(self.MAIN_THREAD_GRACE_S):
            return
        main = threading.main_thread().ident
        if main is not None:
            signal.pthread_kill(main, signal.SIGTERM)


def watch_parent(
    on_orphaned: Callable[[], None], grace_s: float = ORPHAN_GRACE_S, forwarder: _TermForwarder | None = None
) -> threading.Thread:
    """Call `on_orphaned` once this process's parent is gone (it was re-parented), and end the process
    `grace_s` later if it is still running by then. With a `forwarder`, also pass SIGTERM on to the main thread
    (before and after the parent is gone)."""
    parent = os.getppid()

    def pause(seconds: float) -> None:
        if forwarder is None:
            time.sleep(seconds)
            return
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            if select.select([forwarder.read_fd], [], [], left)[0]:
                forwarder.on_wakeup()

    def watch() -> None:
        while os.getppid() == parent:
            pause(PARENT_POLL_S)
        logging.getLogger(__name__).error("parent %d is gone: stopping", parent)
        on_orphaned()
        pause(grace_s)
        os._exit(1)

    thread = threading.Thread(target=watch, name="parent-watch", daemon=True)
    thread.start()
    return thread


def child_process_setup(name: str, exit_on_term: bool | Literal["at_once"] = False) -> StopSignal:
    """Common start-up of a child process: logging, parent-death handling, signal handling.

    Returns the stop request that SIGTERM sets. With `exit_on_term` (workers started from any thread, that block
    on their inbox) SIGTERM raises SystemExit instead, and only the watcher thread stands for PR_SET_PDEATHSIG;
    with "at_once" (workers with nothing to save) it ends the process on the spot, even inside a kernel load.
    """
    logging.basicConfig(
        level=os.environ.get("OPENDCU_LOG_LEVEL", "INFO"),
        format=f"%(asctime)s {name}[%(process)d] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    stop = StopSignal()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    forwarder = None
    if exit_on_term:
        # a process that polls `stop` needs no forwarder: its main thread looks at least every poll
        signal.signal(signal.SIGTERM, _exit_once(stop, at_once=exit_on_term == "at_once"))
        forwarder = _TermForwarder(stop)
    else:
        die_with_parent()
        signal.signal(signal.SIGTERM, stop.set)
    watch_parent(lambda: os.kill(os.getpid(), signal.SIGTERM), forwarder=forwarder)
    return stop


def announce_ready(info: dict[str, Any]) -> None:
    """Tell the parent this process is ready (one line on stdout)."""
    sys.stdout.write(READY_PREFIX + json.dumps(info) + "\n")
    sys.stdout.flush()


def run_until(stop: StopSignal, on_stop: Callable[[], None]) -> None:
    """Block until `stop` is set, then run the clean-up callback."""
    while not stop.wait(0.5):
        pass
    on_stop()


def join_or_terminate(processes: Iterable[Any], timeout: float) -> None:
    """Wait up to `timeout` s for each (multiprocessing) process that was asked to stop; terminate (SIGTERM) the
    ones that do not stop by then, and kill (SIGKILL) the ones that survive that too, so that a hung child never
    blocks a shutdown (nor multiprocessing's exit handler, which joins daemonic children without a timeout)."""
    for process in processes:
        process.join(timeout=timeout)
        if process.is_alive():
            logging.getLogger(__name__).error("%s did not stop within %.0f s: terminating it", process.name, timeout)
            process.terminate()
            process.join(timeout=timeout)
        if process.is_alive():
            logging.getLogger(__name__).error("%s survived SIGTERM: killing it", process.name)
            process.kill()
            process.join(timeout=timeout)


def kernel_cache_stamp() -> Path:
    """The file that says numba's on-disk cache holds this installation's kernels.

    Its name is a digest of what numba's cache depends on: the source files (their mtime and size, numba's own
    invalidation rule), numba's and Python's versions. `dcu serve` writes it once a start has compiled the
    kernels; without it a start says that it compiles them (a few minutes the first time)."""
    package = Path(__file__).resolve().parent
    digest = hashlib.sha256(sys.version.encode())
    try:
        digest.update(importlib.metadata.version("numba").encode())
    except importlib.metadata.PackageNotFoundError:
        pass
    for source in sorted(package.rglob("*.py")):
        stat = source.stat()
        digest.update(f"{source.relative_to(package)}:{stat.st_mtime_ns}:{stat.st_size}".encode())
    folder = package / "__pycache__"  # where numba keeps the cache of an editable or user install
    if not os.access(package, os.W_OK):
        folder = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "opendcu"
    return folder / f"kernels-{digest.hexdigest()[:16]}.stamp"


def write_kernel_cache_stamp() -> None:
    """Say that every kernel is in numba's cache: called once the last of them, the analysis workers', are
    compiled (their warm-up ends after `dcu serve` is ready, so a DCU stopped before that leaves no stamp)."""
    stamp = kernel_cache_stamp()
    if stamp.exists():
        return
    try:
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()
    except OSError as exc:  # a read-only installation: the "compiling kernels" line comes at every start
        logging.getLogger(__name__).warning("cannot write %s: %s", stamp, exc)
