"""The FileWriter's writer pool survives a writer process killed at any moment, also in the middle of a message:
every task submitted is answered (done, or failed naming the dead worker) and `close()` returns.

Found beside a busy loop on one core: with one result queue shared by all writers, a writer SIGKILLed while it
held the queue's lock (or had written half a message) left every later write to it blocked, and the pool's close
hung the FileWriter and the test suite. Each worker now has pipes of its own."""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest

from opendcu.app_detector.interfaces.filewriter.parallel import WriterPool

#: a hang detector, not a timing: a healthy close takes well under a second
CLOSE_LIMIT_S = 30


@pytest.mark.parametrize("kill_after_s", [0.05, 0.1, 0.2, 0.3, 0.45])
def test_a_writer_killed_while_it_answers_leaves_no_task_unanswered_and_close_returns(kill_after_s: float):
    pool = WriterPool(2)
    submitted = 0
    answers: list[str | None] = []
    lock = threading.Lock()

    def answered(error: str | None) -> None:
        with lock:
            answers.append(error)

    stop = threading.Event()

    def flood() -> None:  # tasks that answer at once (unmapping a file never mapped fails): results stream back
        nonlocal submitted
        while not stop.is_set():
            for _ in range(64):
                for worker in (0, 1):
                    pool.submit(worker, "unmap", 999, on_done=answered)
                    submitted += 1
            pool.flush()

    flooder = threading.Thread(target=flood, daemon=True)
    try:
        flooder.start()
        time.sleep(kill_after_s)
        os.kill(pool._processes[0].pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while pool.alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(2 * WriterPool.WATCH_S)  # the watcher has seen it die
        stop.set()
        flooder.join(10)
        assert not flooder.is_alive(), "submitting to a pool with a dead writer blocked"
        closer = threading.Thread(target=pool.close, daemon=True)
        closer.start()
        closer.join(CLOSE_LIMIT_S)
        assert not closer.is_alive(), "WriterPool.close() hung after a writer was killed"
        assert len(answers) == submitted  # every task answered once
        dead = [e for e in answers if e is not None and "filewriter worker 0" in e and "died (exit code -9)" in e]
        assert dead, "the dead writer's tasks must fail naming it"
        assert all(e is None or "KeyError" in e or "filewriter worker 0" in e for e in answers)
    finally:
        stop.set()
        for process in pool._processes:
            if process.is_alive():
                process.kill()
