"""Shared test fixtures: free ports, the shared golden data, and a real `dcu serve` process.

No process a test starts may outlive it: `start_dcu` runs `dcu serve` in a process group of its own that dies
with pytest (PR_SET_PDEATHSIG, set before exec), stops it with SIGTERM and kills whatever is left of the group;
at the end of the session a guard kills every descendant of pytest and every member of those groups that is
still there, names them, and fails the session.
"""

from __future__ import annotations

import inspect
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# the tests' own decoders use bitshuffle's OpenMP: its idle threads must not spin and take a core from the DCU
# under test (opendcu's import says the same; this holds even where a test imports bitshuffle first)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import httpx  # noqa: E402
import pytest  # noqa: E402
from golden import find_golden  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_shared() -> Path | None:
    """The `shared/` folder with spec, golden data and client scripts (not part of this repository)."""
    candidates = [os.environ.get("OPENDCU_SHARED")]
    candidates += [str(p / "shared") for p in [REPO, *REPO.parents]]
    candidates.append("/work/shared")
    for c in candidates:
        if c and (Path(c) / "golden" / "expected.json").is_file():
            return Path(c)
    return None


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    path = find_shared()
    if path is None:
        pytest.fail("shared/ (golden data) not found: set OPENDCU_SHARED to its path")
    return path


@pytest.fixture(scope="session")
def clients_python() -> Path:
    """The python of .venv-clients (fastcs-eiger, DEigerClient, libertem-dectris, nxmx, fabio, silx, ...).

    `python3 dev.py test` creates it and sets $OPENDCU_CLIENTS_PYTHON; in CI its absence is a failure.
    """
    path = os.environ.get("OPENDCU_CLIENTS_PYTHON")
    if path and Path(path).exists():
        return Path(path)
    if os.environ.get("CI"):
        pytest.fail("OPENDCU_CLIENTS_PYTHON is not set: run the tests with `python3 dev.py test`")
    pytest.skip("external clients venv not set up (run the tests with `python3 dev.py test`)")


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """The DECTRIS golden files: $OPENDCU_GOLDEN, shared/golden, or downloaded at pinned commits (tests/golden.py);
    every file is checked against its sha256."""
    try:
        return find_golden(find_shared())
    except RuntimeError as exc:
        pytest.fail(str(exc))


def _proc_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, process group, state letter) of every process, from /proc."""
    table: dict[int, tuple[int, int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        table[int(entry.name)] = (int(fields[1]), int(fields[2]), fields[0])
    return table


def child_pids(pid: int) -> list[int]:
    """All descendants of `pid` (from /proc)."""
    children: dict[int, list[int]] = {}
    for child, (ppid, _, _) in _proc_table().items():
        children.setdefault(ppid, []).append(child)
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def group_pids(pgid: int) -> list[int]:
    """The live (not zombie) members of process group `pgid`."""
    return [pid for pid, (_, group, state) in _proc_table().items() if group == pgid and state != "Z"]


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def kill_group(pgid: int, grace: float = 30.0) -> list[str]:
    """SIGTERM every member of process group `pgid`, SIGKILL what is left after `grace` s; return the command
    lines of the ones that had to be killed."""
    try:
        os.killpg(pgid, signal.SIGTERM)
    except ProcessLookupError:
        return []
    deadline = time.monotonic() + grace
    while group_pids(pgid) and time.monotonic() < deadline:
        time.sleep(0.1)
    survivors = [f"{pid}: {_command_line(pid)}" for pid in group_pids(pgid)]
    if survivors:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return survivors


#: process groups of the servers this session started (the session guard looks for survivors in them)
_STARTED_GROUPS: set[int] = set()
#: descendants that legitimately live as long as pytest: multiprocessing's resource tracker
_SESSION_HELPERS = ("multiprocessing.resource_tracker", "multiprocessing.forkserver")


def leftover_processes() -> list[int]:
    """Descendants of this pytest process and members of the groups it started that are still running."""
    table = _proc_table()
    pids = set(child_pids(os.getpid()))
    pids |= {pid for pid, (_, group, _) in table.items() if group in _STARTED_GROUPS}
    pids.discard(os.getpid())
    return sorted(
        pid
        for pid in pids
        if table.get(pid, (0, 0, "Z"))[2] != "Z" and not any(h in _command_line(pid) for h in _SESSION_HELPERS)
    )


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    """SIGTERM (a CI time limit, `timeout`) ends pytest like Ctrl-C does: fixtures tear down, servers stop and
    the session guard still runs."""
    signal.signal(signal.SIGTERM, _interrupt)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test that starts a DCU (the `dcu` fixture, or a call of `start_dcu` in its body) is an integration test,
    marked or not: `dev.py unit` (`-m "not integration"`) never starts a process tree."""
    for item in items:
        # the test's own body and every fixture it uses (a fixture of any name may start one)
        functions = [getattr(item, "function", None)]
        fixture_info = getattr(item, "_fixtureinfo", None)
        if fixture_info is not None:
            for definitions in fixture_info.name2fixturedefs.values():
                functions.extend(definition.func for definition in definitions)
        if "dcu" in getattr(item, "fixturenames", ()) or any(_starts_dcu(f) for f in functions):
            item.add_marker(pytest.mark.integration)


def _starts_dcu(function: object) -> bool:
    if function is None:
        return False
    try:
        return "start_dcu(" in inspect.getsource(function)  # type: ignore[arg-type]
    except (OSError, TypeError):
        return False


def _is_xdist_controller(config: pytest.Config) -> bool:
    """pytest-xdist's controller: its descendants are the workers, whose own guards look after their tests."""
    return not hasattr(config, "workerinput") and bool(getattr(config.option, "numprocesses", None))


#: what the guards of the xdist workers reported, for the controller's session summary
_WORKER_LEFTOVERS: list[str] = []


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """(xdist controller) a worker ended: keep what its session guard found."""
    _WORKER_LEFTOVERS.extend(getattr(node, "workeroutput", {}).get("opendcu_leftovers", []))


def _kill_leftovers() -> list[str]:
    """Kill what outlived its test (this process's descendants, the groups it started); their command lines."""
    leftovers = leftover_processes()
    lines = [f"{pid}: {_command_line(pid)}" for pid in leftovers]
    for pid in leftovers:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if leftovers:
        for pgid in _STARTED_GROUPS:
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    return lines


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The session guard: a process that outlived its test is killed, named, and fails the session. Under
    pytest-xdist each worker guards its own tests and hands the names to the controller, which reports them."""
    config = session.config
    lines = list(_WORKER_LEFTOVERS) if _is_xdist_controller(config) else _kill_leftovers()
    if hasattr(config, "workerinput"):
        config.workeroutput["opendcu_leftovers"] = lines  # type: ignore[attr-defined]
    if not lines:
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    text = "processes left over by the tests (killed now):\n  " + "\n  ".join(lines)
    if reporter is not None:
        reporter.ensure_newline()
        reporter.write_sep("=", "LEFTOVER PROCESSES", red=True)
        reporter.write_line(text)
    else:
        print(text, file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def start_budget(default: float) -> float:
    """A readiness budget in seconds: `default`, or $OPENDCU_START_TIMEOUT (a slower machine)."""
    return float(os.environ.get("OPENDCU_START_TIMEOUT", default))


# the server dies with pytest even if pytest itself is killed: PR_SET_PDEATHSIG survives exec (the test's main
# thread starts it, and that thread lives as long as pytest); the parent may be gone before prctl took effect
_DIE_WITH_PARENT_EXEC = (
    "import ctypes, os, signal, sys; parent = int(sys.argv[1]); "
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0); "
    "os.getppid() == parent or sys.exit(1); os.execv(sys.argv[2], sys.argv[2:])"
)


def popen_in_own_group(cmd: list[str], **kw) -> subprocess.Popen:
    """Start `cmd` in a new session/process group of its own that dies with pytest; the session guard knows
    its group."""
    process = subprocess.Popen(
        [sys.executable, "-c", _DIE_WITH_PARENT_EXEC, str(os.getpid()), *cmd], start_new_session=True, **kw
    )
    _STARTED_GROUPS.add(process.pid)
    return process


@dataclass
class DcuServer:
    """A running `dcu serve` started by a test."""

    url: str
    port: int
    data_dir: Path
    process: subprocess.Popen
    stream_v1_port: int
    stream_v2_port: int
    detector: str
    output: list[str] = field(default_factory=list)

    def client(self, **kw) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=kw.pop("timeout", 120), **kw)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> int:
        """Send `sig` to `dcu serve`, wait for it and return its exit code. Its shutdown must take every process
        of its group with it: one still there 10 s after it exited is killed and fails the test, and so does a
        server that does not exit within `timeout` s (killed with its group)."""
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        deadline = time.monotonic() + 10
        while group_pids(self.process.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        leftovers = [f"{pid}: {_command_line(pid)}" for pid in group_pids(self.process.pid)]
        if leftovers:
            self.kill()
            raise AssertionError(
                "dcu serve exited but left processes behind (killed now):\n  " + "\n  ".join(leftovers)
            )
        return code

    def kill(self) -> list[str]:
        """End the server's whole process group (SIGTERM, then SIGKILL); the command lines that needed SIGKILL."""
        survivors = kill_group(self.process.pid)
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        return survivors


#: (raw, image) shared memory of a test's `dcu serve`, MiB: mapping and unmapping dcu serve's default 1.5 GiB took
#: 2-3 s of each start and stop on 2 cores, and a test's series need far less (tests about rates or the default
#: start pass buffers=None)
TEST_BUFFERS_MIB = (256, 128)


def start_dcu(
    tmp_path: Path,
    detector: str = "eiger2-500k",
    extra: list[str] | None = None,
    timeout: float | None = None,
    buffers: tuple[int, int] | None = TEST_BUFFERS_MIB,
) -> DcuServer:
    """Start `dcu serve` and wait (polling) until it says it is ready. The default budget (600 s, or
    $OPENDCU_START_TIMEOUT) holds for a first start that compiles numba kernels on a loaded 2-core machine.
    `buffers`: (raw, image) MiB, each unless `extra` sets it; None: dcu serve's defaults."""
    timeout = start_budget(600.0) if timeout is None else timeout
    extra = list(extra or [])
    for flag, mib in zip(("--raw-buffer-mib", "--image-buffer-mib"), buffers or (), strict=False):
        if flag not in extra:
            extra += [flag, str(mib)]
    for attempt in range(PORT_ATTEMPTS):
        try:
            return _start_dcu_once(tmp_path, detector, extra, timeout)
        except PortTaken:  # a free port was taken by another socket before dcu serve bound it: new ports
            if attempt == PORT_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


#: starts of `dcu serve` tried with fresh ports when one was taken between choosing and binding it
PORT_ATTEMPTS = 3


class PortTaken(RuntimeError):
    """dcu serve could not bind a port chosen free a moment before (another socket got it first)."""


def _start_dcu_once(tmp_path: Path, detector: str, extra: list[str] | None, timeout: float) -> DcuServer:
    port, v1, v2 = free_port(), free_port(), free_port()
    data_dir = tmp_path / "data"
    cmd = [
        sys.executable,
        "-m",
        "opendcu",
        "serve",
        "--detector",
        detector,
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--stream-v1-port",
        str(v1),
        "--stream-v2-port",
        str(v2),
        *(extra or []),
    ]
    process = popen_in_own_group(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    server = DcuServer(f"http://127.0.0.1:{port}", port, data_dir, process, v1, v2, detector)
    ready = threading.Event()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            server.output.append(line)
            if line.startswith("opendcu ready"):
                ready.set()

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not ready.wait(0.1):
        if process.poll() is not None or time.monotonic() > deadline:
            why = (
                f"exited with code {process.returncode}"
                if process.poll() is not None
                else f"not ready in {timeout:.0f} s"
            )
            server.kill()
            text = f"dcu serve did not start ({why}):\n" + "".join(server.output[-50:])
            if process.returncode is not None and "address already in use" in text:
                raise PortTaken(text)
            raise RuntimeError(text)
    return server


@pytest.fixture
def dcu(tmp_path: Path) -> Iterator[DcuServer]:
    """A fresh DCU with a simulated EIGER2 500K, stopped after the test."""
    server = start_dcu(tmp_path)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server(tmp_path: Path):
    """A `dcu serve` of its own for the test (one whose test killed it is not stopped again)."""
    dcu = start_dcu(tmp_path)
    try:
        yield dcu
    finally:
        if dcu.process.poll() is None:
            dcu.stop()
