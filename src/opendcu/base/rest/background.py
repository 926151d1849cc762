"""Where the Web-UI's heavy work runs: decoding monitor chunks, binning and scaling images, summarising arrays.

It runs on a few threads of its own at a lower priority (nice `NICENESS`, per thread on Linux), so that
watching the live image never takes CPU from the data path on a loaded DCU: the receivers, the pipeline workers
and the writers run at normal (or real-time) priority and win every contention; the views come when there is
time. Measured on 2 cores with a 4M at 87 Hz: at normal priority, the views' decoding and binning alone cost
the series a third of its packets.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")

NICENESS = 10
WORKERS = 2


def _lower_priority() -> None:
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), NICENESS)
    except OSError:  # not permitted or not Linux: the thread runs at the process's priority
        pass


_executor = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="ui-work", initializer=_lower_priority)


async def in_background(fn: Callable[..., T], *args: Any) -> T:
    """Run `fn(*args)` on a low-priority UI thread and wait for it."""
    return await asyncio.get_running_loop().run_in_executor(_executor, functools.partial(fn, *args))
