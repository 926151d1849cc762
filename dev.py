#!/usr/bin/env python3
"""Set up opendcu in a local virtual environment and run it or its tests.

Needs only Python >= 3.11 on the machine:

    python3 dev.py run  [dcu serve options]   # set up .venv, start the DCU with a simulated detector
                                              # (an MX rotation series unless --scene is given); the first
                                              # time for a detector, measure its factory calibration
                                              # (--no-factory-calibration: start with the nominal one)
    python3 dev.py lint                       # ruff check, ruff format --check, import-linter, mypy (ceiling)
    python3 dev.py unit [pytest options]      # the tests that start no DCU (marker `not integration`)
    python3 dev.py integration [pytest opts]  # the tests that start real process trees (marker `integration`)
                                              # (each stage: 2 pytest-xdist workers, then the tests marked `alone`)
    python3 dev.py test                       # what CI runs: lint (while the rest is set up), unit,
                                              # integration
    python3 dev.py test [pytest options]      # pytest with those options only, e.g. `test tests/test_x.py -x`

Every command is idempotent: the venvs are reused and only refreshed when pyproject.toml (or the clients'
constraints) change. Before the tests the numba kernels are compiled once (`dev.py: compiling kernels`), so
that no test pays for it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import venv
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"

# Third-party clients and readers the tests drive against opendcu (spec/clients.md). They live in their own
# venv so that their pins never clash with opendcu's; tests find it through $OPENDCU_CLIENTS_PYTHON.
CLIENTS_VENV = ROOT / ".venv-clients"
CLIENT_PACKAGES = [
    "numpy",
    "h5py",
    "hdf5plugin",
    "bitshuffle",
    "dectris-compression",
    "cbor2",
    "pyzmq",
    "nxmx",
    "fabio",
    "silx",
    "tifffile",
    "pillow",
    "libertem-dectris",
    "opentelemetry-api",
    "fastcs-eiger",
    "eiger-simulator",
    "httpx",
    "nxvalidate",
]
CLIENT_PACKAGES_NO_DEPS = ["libertem-live==0.3.0"]  # only for DECTRIS' DEigerClient.py inside its wheel
#: every version of the clients and their dependencies, pinned
CLIENT_CONSTRAINTS = ROOT / "constraints-clients.txt"


def _stamp_for(extras: str) -> tuple[Path, str]:
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    return VENV / f".installed-{extras or 'base'}", digest


def _create_venv(path: Path) -> None:
    # Symlinked, as `python -m venv` does on Linux. A copied interpreter is written by this process; while
    # another set-up thread forks, its child holds that file open for writing and running it fails with
    # "Text file busy" (ETXTBSY), as one CI run did.
    venv.EnvBuilder(with_pip=True, symlinks=os.name != "nt").create(path)


def ensure_venv(extras: str = "") -> None:
    """Create .venv and install opendcu (editable) with the given extras, unless already done."""
    if sys.version_info < (3, 11):  # noqa: UP036 (dev.py runs under whatever python3 a new user has)
        sys.exit(f"opendcu needs Python >= 3.11, this is {sys.version.split()[0]}")
    if not (BIN / "python").exists():
        print(f"dev.py: creating {VENV}", flush=True)
        _create_venv(VENV)
        subprocess.check_call([BIN / "python", "-m", "pip", "install", "-q", "--upgrade", "pip"])
    stamp, digest = _stamp_for(extras)
    if stamp.exists() and stamp.read_text() == digest:
        return
    target = f".[{extras}]" if extras else "."
    print(f"dev.py: installing opendcu{f'[{extras}]' if extras else ''} into {VENV}", flush=True)
    subprocess.check_call([BIN / "python", "-m", "pip", "install", "-q", "-e", target], cwd=ROOT)
    stamp.write_text(digest)


def ensure_clients_venv() -> Path:
    """Create .venv-clients with the external clients, unless it is up to date; return its python."""
    python = CLIENTS_VENV / "bin" / "python"
    pins = CLIENT_CONSTRAINTS.read_bytes()
    digest = hashlib.sha256(repr((CLIENT_PACKAGES, CLIENT_PACKAGES_NO_DEPS)).encode() + pins).hexdigest()[:16]
    stamp = CLIENTS_VENV / ".installed"
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return python
    print(f"dev.py: installing external clients into {CLIENTS_VENV} (a few minutes the first time)", flush=True)
    if not python.exists():
        _create_venv(CLIENTS_VENV)
        subprocess.check_call([python, "-m", "pip", "install", "-q", "--upgrade", "pip"])
    subprocess.check_call([python, "-m", "pip", "install", "-q", "-c", CLIENT_CONSTRAINTS, *CLIENT_PACKAGES])
    subprocess.check_call([python, "-m", "pip", "install", "-q", "--no-deps", *CLIENT_PACKAGES_NO_DEPS])
    stamp.write_text(digest)
    return python


#: what the main job shows unless told otherwise: a crystal rotating in the beam (`dcu serve` alone: a flood)
DEMO_SCENE = '{"kind": "mx"}'


def run(args: list[str]) -> int:
    ensure_venv()
    if "--no-factory-calibration" in args:
        args = [a for a in args if a != "--no-factory-calibration"]
    elif "--help" not in args:
        try:
            code = ensure_factory_calibration(args)
        except KeyboardInterrupt:
            print("dev.py: factory calibration interrupted; the calibration dir is unchanged", flush=True)
            return 130
        if code:
            return code
    scene = [] if _option(args, "--scene") is not None else ["--scene", DEMO_SCENE]
    return subprocess.call([BIN / "dcu", "serve", *scene, *args], cwd=ROOT)


def _option(args: list[str], name: str) -> str | None:
    """The value of `name VALUE` or `name=VALUE` among `dcu serve` options (None: not given)."""
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


#: which detector and calibration dir `dcu serve` would use with these options, and whether nothing was ever
#: calibrated there (its defaults, from the package)
_UNTOUCHED = """
import sys
from pathlib import Path
from opendcu.app_calibration.store import CalibrationStore
from opendcu.cli.main import DEFAULT_CALIBRATION_DIR, DEFAULT_DETECTOR
from opendcu.geometry import MODELS
detector = sys.argv[1] or DEFAULT_DETECTOR
root = Path(sys.argv[2]) if sys.argv[2] else DEFAULT_CALIBRATION_DIR
known = detector in MODELS  # an unknown one: `dcu serve` says so
print(detector, int(known and CalibrationStore(root, detector).untouched), root.resolve(), sep="\\n")
"""

FACTORY_SERVE_OPTIONS = ("--raw-buffer-mib", "--image-buffer-mib", "--pipeline-workers")
FACTORY_BUDGET_S = 3600  # a 16M's floods at three energies; a 4M takes a few minutes


def ensure_factory_calibration(serve_args: list[str], precision: float | None = None) -> int:
    """The main job's setup: a simulated detector leaves the factory *measured*. Where nothing was ever calibrated
    for this detector in the calibration dir that `dcu serve` will read, a DCU of our own runs the factory
    procedure (app-calibration's floods, darks, flux series and threshold scans through app-detector, as
    `dcu calibrate factory` does) and stores the set, so that the main job starts with it active. Returns the
    exit code (0: calibrated or nothing to do)."""
    detector = _option(serve_args, "--detector") or ""
    cal_dir = _option(serve_args, "--calibration-dir") or ""
    answer = subprocess.check_output([BIN / "python", "-c", _UNTOUCHED, detector, cal_dir], cwd=ROOT, text=True)
    detector, untouched, cal_path = answer.split("\n")[:3]
    if untouched != "1":
        return 0
    print(f"dev.py: measuring the factory calibration of the simulated {detector} into {cal_path}, once", flush=True)
    t0 = time.monotonic()
    data_dir = VENV / "factory-calibration-data"
    serve = ["--detector", detector, "--calibration-dir", cal_path, "--data-dir", str(data_dir)]
    for name in FACTORY_SERVE_OPTIONS:  # the memory and workers the user gave the main job
        value = _option(serve_args, name)
        serve += [] if value is None else [name, value]
    with _own_dcu(serve) as dcu:
        dcu.wait_for_rest(FACTORY_BUDGET_S)
        dcu.request("PUT", "/detector/api/1.8.0/command/initialize", timeout=300)  # procedures need it idle
        extra = [] if precision is None else ["--precision", str(precision)]
        code = subprocess.call([BIN / "dcu", "calibrate", "factory", "--url", dcu.url, *extra], cwd=ROOT)
    shutil.rmtree(data_dir, ignore_errors=True)
    if code:
        print(
            f"dev.py: the factory calibration FAILED (exit code {code}); the calibration dir is unchanged. "
            "Run again, or pass --no-factory-calibration to start uncalibrated (the nominal set)",
            flush=True,
        )
        return code
    print(f"dev.py: factory calibration measured in {time.monotonic() - t0:.0f} s", flush=True)
    return 0


def _pytest(args: list[str]) -> int:
    ensure_venv("test")
    clients = ensure_clients_venv()
    compile_kernels()
    env = dict(os.environ, PYTHONUNBUFFERED="1", OPENDCU_CLIENTS_PYTHON=str(clients))
    return subprocess.call([BIN / "python", "-m", "pytest", *args], cwd=ROOT, env=env)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


KERNEL_BUDGET_S = 1800  # a first compile takes a few minutes on a quiet 2-core machine


class _OwnDcu:
    """A `dcu serve` of dev.py's own on free ports (never a fixed port: other DCUs may run on this machine), its
    output read all along so that it never blocks on a full pipe, and shown if it fails."""

    def __init__(self, extra: list[str]):
        port, stream_v1, stream_v2 = (str(_free_port()) for _ in range(3))
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [
                BIN / "dcu",
                "serve",
                "--port",
                port,
                "--stream-v1-port",
                stream_v1,
                "--stream-v2-port",
                stream_v2,
                *extra,
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self._reader = threading.Thread(target=lambda: self.output.extend(self.process.stdout or ()), daemon=True)
        self._reader.start()

    def fail(self, what: str) -> NoReturn:
        self._reader.join(5)
        sys.exit("".join(self.output[-40:]) + f"dev.py: dcu serve (exit code {self.process.poll()}) {what}")

    def wait_until(self, ready: Callable[[], bool], budget_s: float, what: str) -> None:
        deadline = time.monotonic() + budget_s
        while not ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.fail(what)
            time.sleep(0.5)

    def request(self, method: str, path: str, timeout: float) -> bytes:
        """One REST request (with $OPENDCU_AUTH_TOKEN, which `dcu serve` then also asks for)."""
        token = os.environ.get("OPENDCU_AUTH_TOKEN", "")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(self.url + path, method=method, headers=headers)
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.read()

    def wait_for_rest(self, budget_s: float) -> None:
        def answers() -> bool:
            try:
                self.request("GET", "/detector/api/1.8.0/status/state", timeout=5)
                return True
            except OSError:
                return False

        self.wait_until(answers, budget_s, "did not answer REST")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextlib.contextmanager
def _own_dcu(extra: list[str]) -> Iterator[_OwnDcu]:
    dcu = _OwnDcu(extra)
    try:
        yield dcu
    finally:
        dcu.stop()


KERNEL_BUDGET_S = 1800  # a first compile takes a few minutes on a quiet 2-core machine


def compile_kernels() -> None:
    """Start a DCU once if its kernels are not in numba's cache yet (the stamp `dcu serve` writes), so that the
    first test that starts one does not spend minutes compiling within its time limit."""
    check = "from opendcu.lifecycle import kernel_cache_stamp; print(kernel_cache_stamp())"
    stamp = Path(subprocess.check_output([BIN / "python", "-c", check], cwd=ROOT, text=True).strip())
    if stamp.exists():
        return
    print("dev.py: compiling kernels, first start only (a few minutes)", flush=True)
    t0 = time.monotonic()
    with _own_dcu(["--data-dir", str(VENV / "kernel-warm-up")]) as dcu:
        # the DCU is ready first; its analysis workers compile theirs in the background, and write the stamp
        dcu.wait_until(stamp.exists, KERNEL_BUDGET_S, "did not compile the kernels")
    print(f"dev.py: kernels compiled in {time.monotonic() - t0:.0f} s", flush=True)


def lint(args: list[str]) -> int:
    """The gates: each must pass; all run, so that one report shows every violation."""
    ensure_venv("test")
    gates = [
        ("ruff check", [BIN / "ruff", "check", *args]),
        ("ruff format --check", [BIN / "ruff", "format", "--check"]),
        ("import-linter", [BIN / "lint-imports"]),
        ("mypy (strict packages clean, the rest under the ceiling)", [BIN / "python", "scripts/mypy_ceiling.py"]),
    ]
    failed = []
    for name, cmd in gates:
        print(f"dev.py lint: {name}", flush=True)
        if subprocess.call(cmd, cwd=ROOT) != 0:
            failed.append(name)
    if failed:
        print(f"dev.py lint: FAILED: {', '.join(failed)}", flush=True)
        return 1
    print("dev.py lint: all gates pass", flush=True)
    return 0


#: the slowest tests of a stage are listed at its end (where the suite's wall time goes)
DURATIONS = "--durations=15"


#: tests run on this many pytest-xdist workers, a whole test file per worker (so that a file's module-scoped
#: server starts once); the integration tests mostly wait on process trees, the unit tests are short
WORKERS = 2
NO_TESTS_COLLECTED = 5  # pytest's exit code when a selection is empty


def _side_by_side_then_alone(stage: str, args: list[str]) -> int:
    """The tests of `stage` (a marker expression) on WORKERS workers, then those marked `alone` (they hold a
    rate, or need the machine to themselves) one at a time."""
    codes = [
        _pytest(["-m", f"{stage} and not alone", "-n", str(WORKERS), "--dist", "loadfile", DURATIONS, *args]),
        _pytest(["-m", f"{stage} and alone", DURATIONS, *args]),
    ]
    return max((code for code in codes if code != NO_TESTS_COLLECTED), default=NO_TESTS_COLLECTED)


def unit(args: list[str]) -> int:
    return _side_by_side_then_alone("not integration", args)


def integration(args: list[str]) -> int:
    return _side_by_side_then_alone("integration", args)


def install_debian_packages() -> None:
    """As root: the Debian packages the tests drive (tests/debian.py), if missing."""
    if subprocess.call([sys.executable, ROOT / "tests" / "debian.py"], cwd=ROOT) != 0:
        raise RuntimeError("tests/debian.py could not install the Debian packages")


class Background:
    """A set-up step on a thread of its own: its failure (an exception, or sys.exit) is kept for `join`."""

    def __init__(self, name: str, step) -> None:
        self.name, self.error = name, ""
        self._thread = threading.Thread(target=self._run, args=(step,), name=name, daemon=True)
        self._thread.start()

    def _run(self, step) -> None:
        try:
            step()
        except BaseException as exc:  # noqa: BLE001 - compile_kernels ends with sys.exit on failure
            self.error = str(exc) or type(exc).__name__

    def join(self) -> str:
        self._thread.join()
        return self.error


def lint_and_set_up(args: list[str]) -> int:
    """Lint, while what the tests need besides the test venv is set up side by side: the external clients'
    venv, the compiled kernels and (as root) the Debian packages."""
    ensure_venv("test")
    steps = [
        Background("external clients", ensure_clients_venv),
        Background("kernels", compile_kernels),
        Background("Debian packages", install_debian_packages),
    ]
    code = lint(args)
    for step in steps:
        error = step.join()
        if error:
            print(f"dev.py: setting up {step.name} FAILED: {error}", flush=True)
            code = 1
    return code


def test(args: list[str]) -> int:
    """With options: pytest with them. Without: lint (while the rest is set up), then unit, then integration,
    stopping at the first stage that fails (CI)."""
    if args:
        return _pytest(args)
    for stage in (lint_and_set_up, unit, integration):
        t0 = time.monotonic()
        code = stage([])
        print(
            f"dev.py test: {stage.__name__} {'passed' if code == 0 else 'FAILED'} in {time.monotonic() - t0:.0f} s",
            flush=True,
        )
        if code != 0:
            return code
    return 0


def main() -> int:
    commands = {"run": run, "lint": lint, "unit": unit, "integration": integration, "test": test}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        print(__doc__)
        return 2
    return commands[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
