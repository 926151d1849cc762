"""The app manager: starts, supervises and stops the processes of one DCU.

All three start at once; app-detector reads the simulated modules' addresses on stdin once they are known.
Stop order: app-detector, app-calibration, simulated modules.
Each child reports readiness with one `OPENDCU-READY <json>` line on stdout; a child that exits while the
DCU is running is restarted (app-detector then comes back in state `na`, like a real DCU after a restart).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opendcu.base.server_config import ServerConfig
from opendcu.lifecycle import READY_PREFIX

log = logging.getLogger(__name__)

#: how many of each app's last output lines the System page can show
LOG_LINES = 200


class AppStartError(RuntimeError):
    """A child process failed to start."""


class ManagedProcess:
    """One child process, started with `python -m <module> args`."""

    def __init__(
        self, name: str, module: str, args_for: Callable[[], list[str]], stdin_line: Callable[[], str] | None = None
    ):
        self.name = name
        self.module = module
        self.args_for = args_for
        self.stdin_line = stdin_line  # what it reads on stdin once that is known (see AppManager.start)
        self._timeout = self._deadline = 0.0
        self.popen: subprocess.Popen | None = None
        self.ready: dict[str, Any] = {}
        self.started_at: float | None = None  # wall clock of the last start
        self.starts = 0  # restarts = starts - 1
        self.last_lines: deque[str] = deque(maxlen=LOG_LINES)  # its last output lines, for the Web-UI
        self._lines_lock = threading.Lock()  # copying a deque while another thread appends would raise

    def start(self, timeout: float) -> dict[str, Any]:
        self.launch(timeout)
        self.send_stdin_line()
        return self.wait_ready()

    def launch(self, timeout: float) -> None:
        """Start the process; `wait_ready` then waits at most `timeout` s from now."""
        argv = [sys.executable, "-m", self.module, *self.args_for()]
        stdin = subprocess.PIPE if self.stdin_line is not None else subprocess.DEVNULL
        # stderr (the apps' logging) joins stdout: the manager echoes both and keeps the last lines
        self.popen = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=stdin, text=True, bufsize=1
        )
        self.started_at = time.time()
        self.starts += 1
        self._timeout = timeout
        self._deadline = time.monotonic() + timeout

    def send_stdin_line(self) -> None:
        """Write its `stdin_line` (one line, then EOF); a process that is gone already says so in wait_ready."""
        if self.stdin_line is None or self.popen is None or self.popen.stdin is None:
            return
        try:
            self.popen.stdin.write(self.stdin_line() + "\n")
            self.popen.stdin.close()
        except (BrokenPipeError, OSError):
            pass

    def wait_ready(self) -> dict[str, Any]:
        """Echo its output until its ready line; AppStartError if it exits first or is not ready in time."""
        assert self.popen is not None and self.popen.stdout is not None
        timeout, deadline = self._timeout, self._deadline
        while True:
            line = self.popen.stdout.readline()
            if not line:
                code = self.popen.wait()
                raise AppStartError(f"{self.name} exited with code {code} before it was ready")
            if line.startswith(READY_PREFIX):
                self.ready = json.loads(line[len(READY_PREFIX) :])
                break
            self._echo(line)
            if time.monotonic() > deadline:
                self.stop()
                raise AppStartError(f"{self.name} was not ready within {timeout} s")
        threading.Thread(target=self._forward_stdout, name=f"{self.name}-stdout", daemon=True).start()
        log.info("%s ready (pid %d): %s", self.name, self.popen.pid, self.ready)
        return self.ready

    def _forward_stdout(self) -> None:
        assert self.popen is not None and self.popen.stdout is not None
        for line in self.popen.stdout:
            self._echo(line)

    def _echo(self, line: str) -> None:
        with self._lines_lock:
            self.last_lines.append(line.rstrip("\n"))
        sys.stdout.write(line)

    def describe(self) -> dict[str, Any]:
        """State, pid, start time, restarts and last output lines (the Web-UI's System page)."""
        alive = self.alive()
        with self._lines_lock:
            lines = list(self.last_lines)
        return {
            "name": self.name,
            "state": "running" if alive else ("stopped" if self.popen else "not started"),
            "pid": self.popen.pid if self.popen is not None else None,
            "exit_code": None if alive or self.popen is None else self.popen.returncode,
            "started_at": self.started_at,
            "uptime_s": time.time() - self.started_at if alive and self.started_at else 0.0,
            "restarts": max(0, self.starts - 1),
            "log": lines,
        }

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM, wait, then SIGKILL if it does not stop."""
        self.terminate()
        self.wait_stopped(timeout)

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM; EOF on a stdin it still waits on), without waiting."""
        p = self.popen
        if p is None or p.poll() is not None:
            return
        if p.stdin is not None and not p.stdin.closed:  # still waiting for its stdin line: EOF ends it
            p.stdin.close()
        p.send_signal(signal.SIGTERM)

    def wait_stopped(self, timeout: float = 20.0) -> None:
        """Wait until it has exited; SIGKILL once `timeout` s have passed."""
        p = self.popen
        if p is None:
            return
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("%s did not stop within %.0f s; killing it", self.name, timeout)
            p.kill()
            p.wait()


class AppManager:
    """Runs the simulator, app-calibration and app-detector for one DCU."""

    def __init__(self, config: ServerConfig):
        self.config = config
        self.runtime_dir = Path(tempfile.mkdtemp(prefix="opendcu-"))
        self.calibration_address = f"unix:{self.runtime_dir / 'app-calibration.sock'}"
        self.detector_address = f"unix:{self.runtime_dir / 'app-detector.sock'}"
        self.simulator = ManagedProcess(
            "simulator",
            "opendcu.simulator",
            lambda: [
                "--detector",
                config.detector,
                "--host",
                "127.0.0.1",
                *(["--scene", config.scene] if config.scene else []),
            ],
        )
        self.calibration = ManagedProcess(
            "app-calibration",
            "opendcu.app_calibration",
            lambda: [
                "--grpc",
                self.calibration_address,
                "--detector",
                config.detector,
                "--calibration-dir",
                str(Path(config.calibration_dir).resolve()),
                "--detector-grpc",
                self.detector_address,
            ],
        )
        self.detector = ManagedProcess(
            "app-detector",
            "opendcu.app_detector",
            lambda: ["--config", json.dumps(self._detector_config())],
            # the module addresses come once the simulator is ready, while app-detector builds its data path
            stdin_line=lambda: json.dumps({"modules": self.simulator.ready["modules"]}),
        )
        self._processes = [self.simulator, self.calibration, self.detector]
        self._stopping = threading.Event()
        self._supervisor = threading.Thread(target=self._supervise, name="app-manager", daemon=True)
        self._restart_lock = threading.RLock()

    def _detector_config(self) -> dict[str, Any]:
        c = self.config
        return {
            "detector": c.detector,
            "data_dir": str(Path(c.data_dir).resolve()),
            "calibration_address": self.calibration_address,
            "grpc_address": self.detector_address,
            "stream_host": c.host,
            "stream_v1_port": c.stream_v1_port,
            "stream_v2_port": c.stream_v2_port,
            "pipeline_workers": c.pipeline_workers,
            "raw_buffer_mib": c.raw_buffer_mib,
            "image_buffer_mib": c.image_buffer_mib,
        }

    def start(self) -> None:
        """Start the three at once: app-detector builds its data path (the longest start) while the simulator
        and app-calibration start; it reads the modules' addresses on stdin once the simulator is ready."""
        try:
            for p in self._processes:
                p.launch(self.config.start_timeout)
            self.simulator.wait_ready()
            self.detector.send_stdin_line()
            self.calibration.wait_ready()
            self.detector.wait_ready()
        except Exception:
            self.stop()
            raise
        self._supervisor.start()

    def _supervise(self) -> None:
        while not self._stopping.wait(0.5):
            # a deliberate restart (system/command/restart) holds the lock: its stopped child is not a crash
            if not self._restart_lock.acquire(blocking=False):
                continue
            try:
                for p in self._processes:
                    if p.alive() or self._stopping.is_set():
                        continue
                    code = p.popen.returncode if p.popen else None
                    if code == 0:
                        # a clean exit means someone asked it to stop (e.g. SIGTERM to the whole process group):
                        # the DCU is being shut down, so do not fight it
                        log.warning("%s stopped; shutting down", p.name)
                        os.kill(os.getpid(), signal.SIGTERM)
                        return
                    log.error("%s crashed (exit code %s); restarting it", p.name, code)
                    self._restart(p)
            finally:
                self._restart_lock.release()

    def _restart(self, process: ManagedProcess) -> None:
        with self._restart_lock:
            try:
                if process is self.simulator:  # new module ports: app-detector must be restarted with them
                    self.detector.stop()
                    self.simulator.start(self.config.start_timeout)
                    self.detector.start(self.config.start_timeout)
                else:
                    process.start(self.config.start_timeout)
            except Exception:
                log.exception("restarting %s failed", process.name)
                time.sleep(2)

    def restart_detector(self) -> None:
        """`system/command/restart`: restart app-detector (state becomes `na`)."""
        with self._restart_lock:
            self.detector.stop()
            self.detector.start(self.config.start_timeout)

    def restart_app(self, name: str) -> None:
        """Restart one app by name (the Web-UI's restart button); KeyError if there is none of that name."""
        process = next((p for p in self._processes if p.name == name), None)
        if process is None:
            raise KeyError(name)
        if process is self.detector:
            self.restart_detector()
            return
        with self._restart_lock:
            process.stop()
            self._restart(process)

    def describe(self) -> list[dict[str, Any]]:
        return [p.describe() for p in self._processes]

    def stop(self) -> None:
        """Stop every child and remove the runtime directory: app-detector and app-calibration together (each
        ends its own work), then the simulator, which app-detector still needs to stop the modules of a series."""
        self._stopping.set()
        with self._restart_lock:
            for phase in ([self.detector, self.calibration], [self.simulator]):
                for p in phase:
                    p.terminate()
                for p in phase:
                    p.wait_stopped()
        shutil.rmtree(self.runtime_dir, ignore_errors=True)

    def pids(self) -> list[int]:
        return [p.popen.pid for p in self._processes if p.popen is not None and p.alive()]

    def __enter__(self) -> AppManager:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
