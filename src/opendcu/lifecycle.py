"""Process lifecycle helpers shared by every opendcu process (base system, apps, simulated modules).

Child processes are started by the base system's app manager. They
- die with their parent (Linux PR_SET_PDEATHSIG), so a killed `dcu serve` leaves no orphans;
- ignore SIGINT (Ctrl-C reaches the whole process group; the app manager decides the shutdown order) and
  shut down cleanly on SIGTERM;
- report readiness with one line `OPENDCU-READY <json>` on stdout, carrying whatever the parent needs
  (bound ports, socket paths).
"""

from __future__ import annotations

import ctypes
import json
import logging
import os
import signal
import sys
import time
from typing import Any, Callable, Iterable

READY_PREFIX = "OPENDCU-READY "
_PR_SET_PDEATHSIG = 1


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


def child_process_setup(name: str) -> StopSignal:
    """Common start-up of a child process: logging, parent-death signal, signal handling.

    Returns the stop request that SIGTERM sets.
    """
    logging.basicConfig(
        level=os.environ.get("OPENDCU_LOG_LEVEL", "INFO"),
        format=f"%(asctime)s {name}[%(process)d] %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    die_with_parent()
    stop = StopSignal()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, stop.set)
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
    """Wait up to `timeout` s for each (multiprocessing) process that was asked to stop; terminate the ones that
    do not stop by then, so that a hung child never blocks a shutdown."""
    for process in processes:
        process.join(timeout=timeout)
        if process.is_alive():
            process.terminate()
            process.join(timeout=timeout)
