"""What the operating system knows about the data path's threads: their names (so that `top -H`, py-spy and
bench/e2e.py can tell the receivers from the writers in /proc/<pid>/task/*/comm) and, for the DAQ receivers,
real-time scheduling and CPU affinity when the process may have them."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import threading

log = logging.getLogger(__name__)

_PR_SET_NAME = 15
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def name_this_thread(name: str) -> None:
    """Give the calling thread `name` (the kernel keeps 15 bytes) as its /proc comm."""
    _libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


def start_named(thread: threading.Thread) -> None:
    """Start `thread` so that it names itself after its Python name first."""
    target = thread.run

    def run() -> None:
        name_this_thread(thread.name)
        target()

    thread.run = run  # type: ignore[method-assign]
    thread.start()


#: SCHED_FIFO priority of the DAQ receivers (above every normal thread, below the kernel's own RT threads)
RECEIVER_RT_PRIORITY = 10
_warned = threading.Lock()
_said: set[str] = set()


def _say_once(key: str, level: int, message: str, *args: object) -> None:
    with _warned:
        if key in _said:
            return
        _said.add(key)
    log.log(level, message, *args)


def make_receiver_thread_urgent(cpu: int | None) -> bool:
    """Real-time scheduling (SCHED_FIFO) and, if `cpu` is given, affinity to that CPU for the calling receiver
    thread, as slsReceiver and Jungfraujoch give theirs. Returns whether real-time scheduling was granted; when
    it is not permitted (no CAP_SYS_NICE / RLIMIT_RTPRIO) one log line says so and the thread runs as before."""
    tid = threading.get_native_id()
    if cpu is not None:
        try:
            os.sched_setaffinity(tid, {cpu})
        except OSError as exc:
            _say_once("affinity", logging.WARNING, "DAQ receivers: CPU affinity not set (%s)", exc)
    try:
        os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(RECEIVER_RT_PRIORITY))
    except (PermissionError, OSError) as exc:
        _say_once(
            "rt",
            logging.WARNING,
            "DAQ receivers: real-time scheduling (SCHED_FIFO %d) not permitted (%s); "
            "they run at normal priority: grant CAP_SYS_NICE or an RLIMIT_RTPRIO for loss-free high rates",
            RECEIVER_RT_PRIORITY,
            exc,
        )
        return False
    _say_once("rt-ok", logging.INFO, "DAQ receivers: real-time scheduling SCHED_FIFO %d", RECEIVER_RT_PRIORITY)
    return True


def lower_this_process_priority(niceness: int = 10) -> None:
    """Make the calling process (analysis and other low-priority work) yield to the data path."""
    try:
        os.nice(niceness)
    except OSError as exc:
        log.warning("could not lower the priority of process %d: %s", os.getpid(), exc)


def run_on_idle_cpu_only(idle: bool) -> None:
    """SCHED_IDLE (True) or back to normal scheduling (False) for the calling thread. A SCHED_IDLE thread runs on
    CPU time that no other thread wants and is preempted at once when one wakes: analysing images while a series
    runs must not take time from the simulated modules' senders or the pipeline workers (a nice level alone
    still takes its share of a busy CPU). Where the policy is not available, the nice level alone remains."""
    policy = os.SCHED_IDLE if idle else os.SCHED_OTHER
    try:
        os.sched_setscheduler(0, policy, os.sched_param(0))
    except OSError as exc:
        _say_once("idle", logging.WARNING, "analysis: scheduling policy %d not set (%s)", policy, exc)
