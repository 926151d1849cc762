"""The whole DCU, end to end, as a user drives it: `dcu serve`, REST, FileWriter and Stream V2 on, a real ZeroMQ
PULL consumer. For each detector: the highest frame rate with 0 packets lost, every image in the files and every
image on the stream; next to it the CPU bound measured in the same run and the per-stage CPU per frame.

    .venv/bin/python bench/e2e.py [--quick] [--detectors eiger2-500k,eiger2-4m,fastasic-bin2-8bit,fastasic]

CPU bound = cores / sum of CPU seconds per frame of the simulated modules' sender, the DAQ receivers, the pipeline
(workers + collector), the FileWriter and the Stream, each read from its own process's or thread's accounting
(/proc/<pid>/task/<tid>/stat; app-detector names its data-path threads). Machines are shared: read the ratios.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ResultTable  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")
CORES = os.cpu_count() or 1
API = "api/1.8.0"
#: detector models and their nominal frame rates (the seed's numbers / the model's maximum)
NOMINAL_HZ = {"eiger2-500k": 2000.0, "eiger2-4m": 560.0, "fastasic-bin2-8bit": 120_000.0, "fastasic": 120_000.0}
#: where the rate search starts (Hz)
START_HZ = {"eiger2-500k": 500.0, "eiger2-4m": 50.0, "fastasic-bin2-8bit": 2000.0, "fastasic": 2000.0}
STAGES = ("sender", "daq", "pipeline", "filewriter", "stream")
#: parts of a stage, printed under it (where a stage's time goes: compiled work or Python hand-offs); the pool
#: threads are app-detector's pipeline dispatcher and collector (answers, re-order, the ImageMux hand-off)
PARTS = (
    "daq: receivers",
    "daq: assembler",
    "pipeline: workers",
    "pipeline: pool threads",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu(path: str) -> float:
    try:
        fields = Path(path).read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def children(pid: int) -> list[int]:
    try:
        out = []
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            out += [int(c) for c in text]
        return out
    except FileNotFoundError:
        return []


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        return ""


class Dcu:
    """`dcu serve` in its own session, driven over REST."""

    def __init__(self, detector: str, workdir: Path, workers: int):
        self.detector = detector
        self.port, self.v1, self.v2 = free_port(), free_port(), free_port()
        self.data = workdir / f"data-{detector}"
        dcu = str(Path(sys.executable).with_name("dcu"))
        self.log = open(workdir / f"serve-{detector}.log", "w")
        self.proc = subprocess.Popen(
            [
                dcu,
                "serve",
                "--port",
                str(self.port),
                "--detector",
                detector,
                "--data-dir",
                str(self.data),
                "--calibration-dir",
                str(workdir / f"calibration-{detector}"),
                "--stream-v1-port",
                str(self.v1),
                "--stream-v2-port",
                str(self.v2),
                "--pipeline-workers",
                str(workers),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.base = f"http://127.0.0.1:{self.port}"

    def req(self, method: str, path: str, value=None, timeout: float = 120):
        body = None if value is None else json.dumps({"value": value}).encode()
        r = urllib.request.Request(
            self.base + path, data=body, method=method, headers={"Content-Type": "application/json"}
        )
        with urllib.request.urlopen(r, timeout=timeout) as resp:
            raw = resp.read()
            return json.loads(raw) if raw else None

    def put(self, module: str, task: str, key: str, value=None, timeout: float = 120):
        return self.req("PUT", f"/{module}/{API}/{task}/{key}", value, timeout)

    def get(self, module: str, task: str, key: str):
        return self.req("GET", f"/{module}/{API}/{task}/{key}")

    def wait_ready(self, budget: float = 600) -> None:
        deadline = time.monotonic() + budget
        while True:
            try:
                self.get("detector", "status", "state")
                return
            except Exception:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"dcu serve ({self.detector}) did not answer within {budget} s") from None
                time.sleep(0.5)

    def processes(self) -> dict[str, int]:
        """pids of the simulator and app-detector (children of the base system)."""
        found = {}
        for pid in children(self.proc.pid):
            line = cmdline(pid)
            if "opendcu.simulator" in line:
                found["simulator"] = pid
            elif "opendcu.app_detector" in line:
                found["app_detector"] = pid
        return found

    def close(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(30)
        except Exception:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
            except Exception:
                pass
        self.log.close()


def stage_cpu(dcu: Dcu) -> dict[str, float]:
    """CPU seconds so far of each stage, from each process's and thread's own accounting."""
    pids = dcu.processes()
    cpu = dict.fromkeys((*STAGES, "other", *PARTS), 0.0)
    if "simulator" in pids:
        cpu["sender"] = proc_cpu(f"/proc/{pids['simulator']}/stat")
    ad = pids.get("app_detector")
    if ad is None:
        return cpu
    for task in Path(f"/proc/{ad}/task").iterdir():
        comm = (task / "comm").read_text().strip()
        seconds = proc_cpu(str(task / "stat"))
        if comm.startswith("daq-") or comm == "daq-assembler":
            cpu["daq"] += seconds
            cpu["daq: assembler" if comm == "daq-assembler" else "daq: receivers"] += seconds
        elif comm.startswith("pipeline-"):
            cpu["pipeline"] += seconds
            cpu["pipeline: pool threads"] += seconds
        elif comm.startswith("filewriter"):
            cpu["filewriter"] += seconds
        elif comm.startswith("stream"):
            cpu["stream"] += seconds
        else:
            cpu["other"] += seconds
    for child in children(ad):
        line = cmdline(child)
        seconds = proc_cpu(f"/proc/{child}/stat")
        comm = Path(f"/proc/{child}/comm").read_text().strip() if Path(f"/proc/{child}/comm").exists() else ""
        if comm.startswith("pipeline") or "pipeline" in line:
            cpu["pipeline"] += seconds
            cpu["pipeline: workers"] += seconds
        elif comm.startswith("filewriter") or "writer" in line:
            cpu["filewriter"] += seconds
        elif "resource_tracker" not in line:
            cpu["other"] += seconds
    return cpu


def udp_rcvbuf_errors() -> int:
    lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
    return int(lines[1][lines[0].index("RcvbufErrors")])


class Consumer:
    """A stream V2 PULL consumer that keeps up: counts image messages and sees start and end."""

    def __init__(self, endpoint: str):
        import zmq

        self.zmq = zmq
        self.sock = zmq.Context.instance().socket(zmq.PULL)
        self.sock.setsockopt(zmq.RCVHWM, 1_000_000)
        self.sock.setsockopt(zmq.RCVTIMEO, 200)
        self.sock.connect(endpoint)
        self.images = 0
        self.first = self.last = 0.0
        self.started = self.ended = False
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def reset(self) -> None:
        self.images = 0
        self.first = self.last = 0.0
        self.started = self.ended = False

    def _run(self) -> None:
        while not self._stop:
            try:
                m = self.sock.recv(copy=False)
            except self.zmq.Again:
                continue
            head = bytes(m.buffer[:32])
            if b"image" in head:
                self.last = time.monotonic()
                if not self.images:
                    self.first = self.last
                self.images += 1
            elif b"start" in head:
                self.started = True
            elif b"end" in head:
                self.ended = True

    def wait_end(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while not self.ended and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.ended

    def close(self) -> None:
        self._stop = True
        self._thread.join(2)
        self.sock.close(linger=0)


@dataclass
class Attempt:
    rate: float
    nimages: int
    ok: bool
    packets_lost: int
    in_files: int
    on_stream: int
    trigger_s: float
    cpu_per_frame: dict[str, float] = field(default_factory=dict)
    rcvbuf_errors: int = 0
    load: float = 0.0
    #: seconds from the first to the last image on the stream
    stream_span: float = 0.0

    @property
    def achieved(self) -> float:
        """Images per second the modules delivered: the trigger returns once the DAQ has settled every frame (a
        simulated module starved of CPU sends late, so this falls below the asked rate)."""
        return self.nimages / self.trigger_s if self.trigger_s > 0 else 0.0

    @property
    def stream_rate(self) -> float:
        """Images per second on the stream, first to last (lower than `achieved` while the interfaces' buffers
        absorb a burst; what they cannot absorb shows as loss)."""
        if self.stream_span > 0 and self.on_stream > 1:
            return (self.on_stream - 1) / self.stream_span
        return 0.0

    @property
    def held(self) -> bool:
        """0 loss, every image in files and on the stream, and the modules held at least 80 % of the asked rate."""
        return self.ok and self.achieved >= 0.8 * self.rate

    @property
    def bound(self) -> float:
        total = sum(self.cpu_per_frame.get(s, 0.0) for s in STAGES)
        return CORES / total if total > 0 else float("inf")


def images_in_files(data: Path, series_id: int) -> int:
    import h5py
    import hdf5plugin  # noqa: F401

    master = data / f"series_{series_id}_master.h5"
    with h5py.File(master) as f:
        return sum(f["/entry/data"][k].shape[0] for k in f["/entry/data"] if k.startswith("data_"))


PROFILE_DIR: Path | None = None


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds of each thread of `pid`, by "name/tid"."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[f"{(task / 'comm').read_text().strip()}/{task.name}"] = proc_cpu(str(task / "stat"))
        except OSError:
            continue
    return out


def run_series(dcu: Dcu, consumer: Consumer, rate: float, nimages: int, readout: float) -> Attempt:
    frame_time = 1.0 / rate
    for key, value in {
        "nimages": nimages,
        "ntrigger": 1,
        "trigger_mode": "ints",
        "frame_time": frame_time,
        "count_time": max(frame_time - readout, frame_time / 2),
    }.items():
        dcu.put("detector", "config", key, value)
    consumer.reset()
    sid = dcu.put("detector", "command", "arm")["sequence id"]
    errors0, cpu0 = udp_rcvbuf_errors(), stage_cpu(dcu)
    spy = None
    ad = dcu.processes().get("app_detector")
    if PROFILE_DIR is not None and ad:
        threads0 = thread_cpu(ad)
        name = f"{dcu.detector}-{rate:.0f}Hz"
        spy = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("py-spy")),
                "record",
                "--pid",
                str(ad),
                "--threads",
                "--idle",
                "--native",
                "-r",
                "100",
                "-d",
                str(int(nimages / rate) + 2),
                "-f",
                "raw",
                "-o",
                str(PROFILE_DIR / f"{name}.raw"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    t0 = time.monotonic()
    dcu.put("detector", "command", "trigger", timeout=600)
    took = time.monotonic() - t0
    if spy is not None:
        threads1 = thread_cpu(ad)
        spy.wait(120)
        with open(PROFILE_DIR / f"{name}-threads.txt", "w") as f:
            for key in sorted(threads1, key=lambda t: threads0.get(t, 0) - threads1[t]):
                f.write(f"{threads1[key] - threads0.get(key, 0):8.2f} s  {key}\n")
    consumer.wait_end(60)
    dcu.put("detector", "command", "wait", 120, timeout=200)
    cpu1, errors1 = stage_cpu(dcu), udp_rcvbuf_errors()
    lost = dcu.get("detector", "status", "daq/packets_lost")["value"]
    in_files = images_in_files(dcu.data, sid)
    per_frame = {k: (cpu1[k] - cpu0[k]) / nimages for k in cpu1}
    ok = lost == 0 and in_files == nimages and consumer.images == nimages
    for name in [p for p in dcu.data.iterdir()]:  # keep the disk free between attempts
        if name.is_file():
            name.unlink()
    return Attempt(
        rate,
        nimages,
        ok,
        lost,
        in_files,
        consumer.images,
        took,
        per_frame,
        errors1 - errors0,
        os.getloadavg()[0],
        consumer.last - consumer.first,
    )


def log_attempt(log, detector: str, a: Attempt) -> None:
    verdict = "ok" if a.held else ("LOSS" if not a.ok else "0 loss, but the modules fell behind the asked rate")
    log(
        f"  {detector} asked {a.rate:9.1f} Hz x {a.nimages}: achieved {a.achieved:.1f} Hz "
        f"(stream {a.stream_rate:.1f} Hz), lost {a.packets_lost} "
        f"packets (RcvbufErrors +{a.rcvbuf_errors}), files {a.in_files}, stream {a.on_stream}, trigger "
        f"{a.trigger_s:.1f} s, load {a.load:.1f}, CPU bound {a.bound:.0f} Hz -> {verdict}\n    CPU per frame (us): "
        + ", ".join(f"{k} {v * 1e6:.0f}" for k, v in a.cpu_per_frame.items())
    )


def highest_rate(dcu: Dcu, consumer: Consumer, detector: str, quick: bool, log) -> tuple[Attempt | None, list[Attempt]]:
    """Grow the rate by 1.5x while every image arrives (or halve it until one does), then bisect between the last
    good and the first bad rate."""
    readout = dcu.get("detector", "config", "detector_readout_time")["value"]
    max_rate = 1.0 / (dcu.get("detector", "config", "frame_time")["min"] or 1e-6)
    seconds, min_frames = (2.0, 500) if quick else (5.0, 2000)
    steps = 2 if quick else 4
    attempts: list[Attempt] = []

    def attempt(rate: float) -> Attempt:
        rate = min(rate, max_rate)
        n = int(max(min_frames, rate * seconds))
        try:
            a = run_series(dcu, consumer, rate, n, readout)
        except urllib.error.HTTPError as exc:  # e.g. arm refused after an overloaded series: a failed attempt
            log(f"  {detector} {rate:.1f} Hz: {exc.code} {exc.read().decode(errors='replace')[:300]}")
            try:
                dcu.put("detector", "command", "initialize", timeout=300)
            except Exception:
                pass
            a = Attempt(rate, n, False, -1, 0, 0, 0.0, {}, 0, os.getloadavg()[0])
            attempts.append(a)
            return a
        attempts.append(a)
        log_attempt(log, detector, a)
        return a

    good: Attempt | None = None
    bad: Attempt | None = None
    rate = START_HZ[detector]
    while True:
        a = attempt(rate)
        if a.held:
            good = a
            if rate >= max_rate:
                break
            rate *= 1.5 if not quick else 2.0
        else:
            bad = a
            break
    if good is None:  # even the start rate lost: go down, then bisect between the good and the bad rate
        rate = START_HZ[detector]
        for _ in range(steps):
            rate /= 2
            a = attempt(rate)
            if a.held:
                good = a
                break
            bad = a
        if good is None:
            return None, attempts
    if bad is not None:
        low, high = good.rate, bad.rate
        for _ in range(steps - 1):
            mid = (low + high) / 2
            a = attempt(mid)
            if a.held:
                good, low = a, mid
            else:
                high = mid
    return good, attempts


def fixed_rates(
    dcu: Dcu, consumer: Consumer, detector: str, rates: list[float], nimages: int, log
) -> tuple[Attempt | None, list[Attempt]]:
    readout = dcu.get("detector", "config", "detector_readout_time")["value"]
    attempts = []
    good = None
    for rate in rates:
        n = nimages or int(max(2000, rate * 5))
        a = run_series(dcu, consumer, rate, n, readout)
        attempts.append(a)
        log_attempt(log, detector, a)
        if a.held and (good is None or a.rate > good.rate):
            good = a
    return good, attempts


def bare_bounds(detector: str) -> dict[str, float]:
    """Per-frame CPU (s) of the bare libraries each stage is built on, for this detector's frames: bitshuffle-lz4
    of an image (pipeline), write() of the chunk to /dev/shm (FileWriter), a pyzmq PUSH->PULL of it (Stream),
    a recvmmsg-only loop is in bench/udp.py (DAQ), its value is not repeated here."""
    import bitshuffle
    import zmq

    from opendcu.geometry import get_model

    model = get_model(detector)
    h, w = model.shape
    rng = np.random.default_rng(1)
    image = rng.poisson(2.0, size=(h, w)).astype(np.uint16 if "8bit" not in detector else np.uint8)
    n = max(20, int(2e8 // image.nbytes))
    n = min(n, 20000)
    t0 = time.process_time()
    for _ in range(n):
        chunk = bitshuffle.compress_lz4(image, 0)
    out = {"pipeline": (time.process_time() - t0) / n}
    payload = chunk.tobytes()
    fd, path = tempfile.mkstemp(dir="/dev/shm" if Path("/dev/shm").is_dir() else None)
    try:
        t0 = time.process_time()
        for _ in range(n):
            os.write(fd, payload)
        out["filewriter"] = (time.process_time() - t0) / n
    finally:
        os.close(fd)
        os.unlink(path)
    ctx = zmq.Context()
    push, pull = ctx.socket(zmq.PUSH), ctx.socket(zmq.PULL)
    port = push.bind_to_random_port("tcp://127.0.0.1")
    pull.connect(f"tcp://127.0.0.1:{port}")
    t0 = time.process_time()
    for _ in range(n):
        push.send(payload, copy=True)
        pull.recv(copy=False)
    out["stream"] = (time.process_time() - t0) / n  # both ends: an upper bound of the sender's share
    push.close(0)
    pull.close(0)
    ctx.term()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer, shorter series (>= 500 frames / 2 s)")
    parser.add_argument("--detectors", default=",".join(NOMINAL_HZ))
    parser.add_argument("--workers", type=int, default=2, help="pipeline worker processes")
    parser.add_argument("--rates", default="", help="only these rates (Hz, comma-separated), no search")
    parser.add_argument("--nimages", type=int, default=0, help="with --rates: images per series")
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="write a py-spy record of app-detector and per-thread CPU of each series here",
    )
    parser.add_argument(
        "--workdir", type=Path, default=None, help="keep the DCUs' logs and data here (default: a temporary dir)"
    )
    args = parser.parse_args()
    global PROFILE_DIR
    PROFILE_DIR = args.profile
    if PROFILE_DIR is not None:
        PROFILE_DIR.mkdir(parents=True, exist_ok=True)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="opendcu-e2e-"))
    workdir.mkdir(parents=True, exist_ok=True)

    def log(text: str) -> None:
        print(text, flush=True)

    summary = ResultTable(
        f"end to end: FileWriter + Stream V2 on, {CORES} cores, load {os.getloadavg()[0]:.1f} at start"
    )
    stages = ResultTable("per-stage CPU per frame at the highest 0-loss rate (bare: the library alone, same frames)")
    try:
        for detector in args.detectors.split(","):
            dcu = Dcu(detector, workdir, args.workers)
            consumer = None
            try:
                dcu.wait_ready()
                dcu.put("detector", "command", "initialize", timeout=300)
                dcu.put("filewriter", "config", "mode", "enabled")
                dcu.put("stream", "config", "mode", "enabled")
                dcu.put("stream", "config", "format", "cbor")
                consumer = Consumer(f"tcp://127.0.0.1:{dcu.v2}")
                time.sleep(0.3)
                if args.rates:
                    good, attempts = fixed_rates(
                        dcu, consumer, detector, [float(r) for r in args.rates.split(",")], args.nimages, log
                    )
                else:
                    good, attempts = highest_rate(dcu, consumer, detector, args.quick, log)
            finally:
                if consumer is not None:
                    consumer.close()
                dcu.close()
            nominal = NOMINAL_HZ[detector]
            measured = good or (attempts[-1] if attempts else None)
            if measured is None:
                continue
            bound = measured.bound
            if good is None:
                summary.add(f"{detector}: no 0-loss rate found (lowest tried {attempts[-1].rate:.0f} Hz)", 0, "Hz")
                continue
            summary.add(
                f"{detector} highest 0-loss rate held ({good.nimages} frames, load {good.load:.1f})",
                good.achieved,
                "Hz",
                bound,
                good.achieved / bound,
                ">= 0.8x CPU bound",
            )
            summary.add(
                f"{detector} against nominal", good.achieved, "Hz", nominal, good.achieved / nominal, f"{nominal:g} Hz"
            )
            bare = bare_bounds(detector)
            rows = [row for stage in (*STAGES, "other") for row in (stage, *(p for p in PARTS if p.startswith(stage)))]
            for stage in rows:
                us = measured.cpu_per_frame.get(stage, 0.0) * 1e6
                ref = bare.get(stage)
                stages.add(
                    f"{detector} {stage}",
                    us,
                    "us/frame",
                    None if ref is None else ref * 1e6,
                    None if not ref else us / (ref * 1e6),
                )
            need = sum(measured.cpu_per_frame.get(s, 0.0) for s in STAGES) * nominal
            stages.add(f"{detector}: cores the nominal {nominal:g} Hz would need", need, "cores")
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    summary.print()
    stages.print()


if __name__ == "__main__":
    main()
