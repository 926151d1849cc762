"""UDP data path: the DAQ next to iperf3 on loopback, and the frame rates of an EIGER2 4M and the fast module.

    .venv/bin/python bench/udp.py            # ~2-3 minutes
    .venv/bin/python bench/udp.py --quick    # shorter runs

Same run, same datagram size (48-byte header + 8192-byte payload = 8240 bytes):
1. iperf3 -u on loopback: highest rate with 0 loss (unlimited first, then stepping down);
2. the DAQ (one module's receiver, real simulated-module process sending a flood series): highest rate with 0
   packets lost, found the same way; the ratio against iperf3 is the headline;
3. frame rates at 0 loss for an EIGER2 4M (8 modules, 8 receivers) and the fast module (2x2 binned, 8-bit
   float: 2 packets per frame), and where the fast module's time goes (sender alone, a bare recvmmsg loop,
   CPU per frame of the sender process and of the DAQ receiver thread).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ResultTable  # noqa: E402

from opendcu.app_detector.daq import Daq, FrameAssembler  # noqa: E402
from opendcu.app_detector.shared_memory import SlotRing  # noqa: E402
from opendcu.geometry import get_model  # noqa: E402
from opendcu.hardware.config_packet import Kind, TriggerMode  # noqa: E402
from opendcu.hardware.module_driver import ModuleAddress, ModuleDriver  # noqa: E402
from opendcu.hardware.udp_io import BATCH, MSG_WAITFORONE, MessageVector, data_socket, recvmmsg  # noqa: E402
from opendcu.hardware.udp_packet import HEADER_SIZE, PacketLayout  # noqa: E402
from opendcu.lifecycle import READY_PREFIX  # noqa: E402

DATAGRAM = HEADER_SIZE + 8192
CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    path = f"/proc/{pid}/task/{tid}/stat" if tid else f"/proc/{pid}/stat"
    fields = Path(path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# -- iperf3 ------------------------------------------------------------------------------------------------------
def iperf3(rate_bps: float, seconds: float, window: int = 4 << 20) -> tuple[float, float]:
    """One iperf3 -u run on loopback: (received bytes/s, lost fraction). `window`: socket buffers (-w)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        ["iperf3", "-s", "-1", "-p", str(port), "-B", "127.0.0.1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        time.sleep(0.3)
        out = subprocess.run(
            [
                "iperf3",
                "-c",
                "127.0.0.1",
                "-p",
                str(port),
                "-u",
                "-b",
                str(int(rate_bps)),
                "-l",
                str(DATAGRAM),
                "-t",
                str(seconds),
                "-w",
                str(window),
                "-J",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        result = json.loads(out.stdout)["end"]["sum"]
        return result["bytes"] * (1 - result["lost_percent"] / 100) / result["seconds"], result["lost_percent"] / 100
    finally:
        server.wait(timeout=10)


def highest_zero_loss(run, steps: int = 5):
    """The highest rate without loss: one unlimited run, then bisection between 0 and its achieved rate.

    `run(rate)` (rate 0 = unlimited) returns (achieved rate, lost fraction, details); returns (best zero-loss
    run or None, unlimited run)."""
    unlimited = run(0)
    if unlimited[1] == 0:
        return unlimited, unlimited
    low, high, best = 0.0, unlimited[0], None
    for _ in range(steps):
        attempt = run((low + high) / 2)
        if attempt[1] == 0:
            best, low = attempt, (low + high) / 2
        else:
            high = (low + high) / 2
    return best, unlimited


# -- simulated modules + DAQ -------------------------------------------------------------------------------------
class Simulator:
    """`python -m opendcu.simulator` as its own process, as `dcu serve` runs it."""

    def __init__(self, detector: str):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "opendcu.simulator", "--detector", detector], stdout=subprocess.PIPE, text=True
        )
        for line in self.process.stdout:
            if line.startswith(READY_PREFIX):
                modules = json.loads(line[len(READY_PREFIX) :])["modules"]
                break
        else:
            raise RuntimeError("simulator did not start")
        self.driver = ModuleDriver([ModuleAddress(**m) for m in modules])

    def close(self) -> None:
        self.driver.close()
        self.process.terminate()
        self.process.wait(timeout=10)


@dataclass
class Run:
    frames: int
    frame_rate: float
    bytes_per_s: float
    lost_packets: int
    lost_fraction: float
    sender_cpu_per_frame: float
    receiver_cpu_per_frame: float
    python_per_frame: float  # wall time in the assembler's bookkeeping (settling, handing on, restocking)


class DaqBench:
    """A DAQ whose frames are released as soon as they are handed on (no pipeline), fed by a simulator."""

    def __init__(self, detector: str, socket_buffer: int = 64 << 20):
        self.model = get_model(detector)
        frame_bytes = self.model.n_modules * self.model.module.raw_pixels * 2
        n_slots = max(16, min(256, (256 << 20) // frame_bytes))
        self.ring = SlotRing(n_slots, frame_bytes)
        self.free: queue.SimpleQueue[int] = queue.SimpleQueue()
        for i in range(n_slots):
            self.free.put(i)
        self.emitted: list[float] = []
        self.assembler = FrameAssembler(self.model, self.ring, self.free, self._emit)
        self.python_seconds = 0.0  # time the assembler thread spends in its Python bookkeeping (off the receivers)
        settle = self.assembler._poll_locked

        def timed_settle(*args):
            t0 = time.perf_counter()
            n = settle(*args)
            self.python_seconds += time.perf_counter() - t0
            return n

        self.assembler._poll_locked = timed_settle
        self.daq = Daq(self.assembler, socket_buffer=socket_buffer)
        self.daq.start()
        self.socket_buffer = self.daq.receivers[0].socket_buffer
        self.sim = Simulator(detector)
        self.series = 0

    def _emit(self, frame) -> None:
        if frame.packets_received:  # frames handed on empty at the end would time the wait, not the data
            self.emitted.append(time.perf_counter())
        self.free.put(frame.slot)

    def run(self, frame_rate: float, seconds: float) -> Run:
        """Send a flood series at `frame_rate` (0 = as fast as the modules go) for about `seconds`."""
        self.series += 1
        period = 1.0 / frame_rate if frame_rate else 1e-6
        nframes = int(seconds * frame_rate) if frame_rate else int(seconds * self._guess)
        self.emitted = []
        self.assembler.start_series(self.series, nframes, 8192, period)
        per_module = {mid: {"dest_host": h, "dest_port": p} for mid, (h, p) in self.daq.data_addresses().items()}
        self.sim.driver.broadcast(
            Kind.CONFIGURE,
            per_module=per_module,
            count_time=period / 2,
            frame_time=period,
            nimages=nframes,
            ntrigger=1,
            trigger_mode=TriggerMode.INTS,
            payload_size=8192,
            series_id=self.series,
            seed=self.series,
            content=json.dumps({"kind": "flood", "flux": 2.0 / (period / 2)}),  # ~2 counts per pixel
        )
        threads = [r._thread.native_id for r in self.daq.receivers]
        cpu0 = cpu_seconds(self.sim.process.pid), sum(cpu_seconds(os.getpid(), t) for t in threads)
        self.python_seconds = 0.0
        self.sim.driver.broadcast(Kind.TRIGGER)
        triggered = time.perf_counter()
        self.assembler.wait_frames(nframes, timeout=seconds * 4 + 10)
        counters = self.assembler.finish(1.0, nframes)
        cpu1 = cpu_seconds(self.sim.process.pid), sum(cpu_seconds(os.getpid(), t) for t in threads)
        n = len(self.emitted)
        rate = n / (self.emitted[-1] - triggered) if n else 0.0  # from the trigger: includes the first latency
        packets = self.assembler.packets_per_frame
        layout = PacketLayout.for_module(self.model.module, 8192)
        frame_bytes = self.model.n_modules * (layout.frame_bytes + layout.npackets * HEADER_SIZE)
        lost = counters.packets_lost + counters.overflow + counters.frames_lost * packets
        return Run(
            n,
            rate,
            rate * frame_bytes,
            lost,
            lost / max(1, nframes * packets),
            (cpu1[0] - cpu0[0]) / max(1, n),
            (cpu1[1] - cpu0[1]) / max(1, n),
            self.python_seconds / max(1, n),
        )

    _guess = 2000.0

    def calibrate(self, seconds: float) -> None:
        """One unlimited run to size the series of the later runs."""
        self._guess = 500.0 if self.model.n_modules > 1 else (20000.0 if self.model.module.raw_pixels < 1e5 else 1500.0)
        self._guess = max(50.0, self.run(0, seconds / 2).frame_rate)

    def close(self) -> None:
        self.sim.close()
        self.daq.stop()
        self.ring.close()


@numba.njit(nogil=True, cache=True)
def _bare_receive(fd: int, msgs: np.ndarray, n: int, expected: int, idle_limit: int) -> int:
    """Count datagrams with recvmmsg only (no parsing, no copy): the kernel's delivery bound."""
    got = 0
    idle = 0
    while got < expected and idle < idle_limit:
        r = recvmmsg(fd, msgs.ctypes.data, n, MSG_WAITFORONE, 0)
        if r > 0:
            got += r
            idle = 0
        else:
            idle += 1
    return got


def bare_receiver_run(sim: Simulator, model, nframes: int) -> tuple[float, float]:
    """The simulator sending unpaced to a bare recvmmsg loop: (frames/s received, fraction lost)."""
    sock = data_socket("127.0.0.1", rcvbuf=64 << 20, timeout_s=0.05)
    buffer = np.zeros((BATCH, 9088), dtype=np.uint8)
    msgs = MessageVector(BATCH, 1)
    msgs.point_at(buffer)
    layout = PacketLayout.for_module(model.module, 8192)
    expected = nframes * layout.npackets
    sim.driver.broadcast(
        Kind.CONFIGURE,
        count_time=5e-7,
        frame_time=1e-6,
        nimages=nframes,
        ntrigger=1,
        trigger_mode=TriggerMode.INTS,
        payload_size=8192,
        series_id=999,
        seed=1,
        dest_host="127.0.0.1",
        dest_port=sock.getsockname()[1],
        content=json.dumps({"kind": "flood", "flux": 10.0}),
    )
    done: list[tuple[int, float]] = []

    def receive() -> None:
        got = _bare_receive(sock.fileno(), msgs.headers, BATCH, expected, 10)  # stops 0.5 s after the last packet
        done.append((got, time.perf_counter()))

    receiver = threading.Thread(target=receive)
    receiver.start()
    sim.driver.broadcast(Kind.TRIGGER)
    triggered = time.perf_counter()
    receiver.join()
    sock.close()
    got, finished = done[0]
    if got < expected:
        finished -= 0.5  # the loop waited 10 x 50 ms for packets that never came
    return got / layout.npackets / (finished - triggered), 1 - got / expected


@contextmanager
def frame_rate_rows(table: ResultTable, detector: str, label: str, goal: float, seconds: float):
    """Run `detector` unlimited and at its highest zero-loss rate, add the rows; yields (bench, best run)."""
    bench = DaqBench(detector)
    try:
        bench.calibrate(seconds)
        best, unlimited = highest_zero_loss(
            lambda r: ((run := bench.run(r, seconds)).frame_rate, run.lost_fraction, run)
        )
        table.add(f"{label} unlimited", unlimited[0], "Hz", goal=f"loss {unlimited[1]:.2%}")
        if best:
            table.add(f"{label} at 0 loss", best[0], "Hz", goal, best[0] / goal, f"{goal:g} Hz")
        else:
            table.add(f"{label} at 0 loss", 0, "Hz", goal="no rate without loss found")
        yield bench, best[2] if best else None
    finally:
        bench.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs")
    args = parser.parse_args()
    seconds = 1.5 if args.quick else 3.0
    rmem_max = int(Path("/proc/sys/net/core/rmem_max").read_text())
    probe = data_socket("127.0.0.1", rcvbuf=64 << 20)
    granted = probe.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
    probe.close()
    how = (
        "SO_RCVBUFFORCE"
        if granted > rmem_max
        else "capped by rmem_max: raise it with sysctl -w net.core.rmem_max=67108864"
    )
    print(f"net.core.rmem_max = {rmem_max} bytes; DAQ socket buffer asked 64 MiB, granted {granted} bytes ({how})")
    print(f"{os.cpu_count()} CPUs; datagram {DATAGRAM} bytes; each point runs ~{seconds:.1f} s\n")

    table = ResultTable("UDP loopback: DAQ vs iperf3 (8240-byte datagrams)")
    iperf_best = None
    window = min(64 << 20, rmem_max)  # iperf3 sets SO_RCVBUF: capped by net.core.rmem_max
    if shutil.which("iperf3"):
        best, unlimited = highest_zero_loss(lambda r: (*iperf3(r * 8, seconds, window), None))
        table.add("iperf3 -u unlimited: received", unlimited[0] / 1e9, "GB/s", goal=f"loss {unlimited[1]:.2%}")
        if best:
            iperf_best = best[0]
            table.add(f"iperf3 -u -w {window >> 20}M at 0 loss", best[0] / 1e9, "GB/s", goal="kernel reference")
    else:
        print("iperf3 not found: install it (apt-get install iperf3) for the reference rows\n")

    for label, buffer in (("64 MiB socket buffer", 64 << 20), ("iperf3's socket buffer", window)):
        single = DaqBench("eiger2-500k", socket_buffer=buffer)
        try:
            single.calibrate(seconds)

            def daq_run(rate_bytes: float, single: DaqBench = single):
                r = single.run(rate_bytes / (128 * DATAGRAM) if rate_bytes else 0, seconds)
                return r.bytes_per_s, r.lost_fraction, r

            best, unlimited = highest_zero_loss(daq_run)
            name = f"DAQ, {label} ({single.socket_buffer >> 20} MiB)"
            table.add(f"{name} unlimited: received", unlimited[0] / 1e9, "GB/s", goal=f"loss {unlimited[1]:.2%}")
            if best is None:
                table.add(f"{name} at 0 loss", 0, "GB/s", goal="no rate without loss found")
                continue
            table.add(
                f"{name} at 0 loss",
                best[0] / 1e9,
                "GB/s",
                iperf_best and iperf_best / 1e9,
                best[0] / iperf_best if iperf_best else None,
                ">= 0.7x iperf3",
            )
            table.add("  = EIGER2 500K frames at 0 loss", best[2].frame_rate, "Hz", goal="real: 2000 Hz")
            table.add("  sender CPU per frame", best[2].sender_cpu_per_frame * 1e6, "us")
            table.add("  DAQ receiver CPU per frame", best[2].receiver_cpu_per_frame * 1e6, "us")
        finally:
            single.close()
    table.print()

    rates = ResultTable("Frame rates at 0 loss (loopback, simulator process -> DAQ)")
    cpus = os.cpu_count() or 1
    with frame_rate_rows(rates, "eiger2-4m", "EIGER2 4M", 560.0, seconds) as (four, best):
        if best:
            rates.add(
                "  = throughput",
                best.bytes_per_s / 1e9,
                "GB/s",
                iperf_best and iperf_best / 1e9,
                best.bytes_per_s / iperf_best if iperf_best else None,
            )
            rates.add("  sender CPU per frame (8 modules)", best.sender_cpu_per_frame * 1e3, "ms")
            rates.add("  DAQ receivers CPU per frame (8 threads)", best.receiver_cpu_per_frame * 1e3, "ms")
            bound = cpus / (best.sender_cpu_per_frame + best.receiver_cpu_per_frame)
            rates.add(
                f"  CPU bound: {cpus} cores / (sender + DAQ) per frame",
                bound,
                "Hz",
                best.frame_rate,
                best.frame_rate / bound,
            )
            rates.add(
                f"  DAQ alone ({cpus} cores / DAQ per frame; modules are other machines)",
                cpus / best.receiver_cpu_per_frame,
                "Hz",
                560.0,
                cpus / best.receiver_cpu_per_frame / 560,
            )
    with frame_rate_rows(rates, "fastasic-bin2-8bit", "fast module 2x2 8-bit", 120_000.0, seconds) as (fast, best):
        if best:
            rates.add("  sender CPU per frame", best.sender_cpu_per_frame * 1e6, "us")
            rates.add(
                "  DAQ receiver CPU per frame (compiled loop + Python per frame)",
                best.receiver_cpu_per_frame * 1e6,
                "us",
            )
            rates.add(
                "    of which Python bookkeeping (settle, hand on, restock)",
                best.python_per_frame * 1e6,
                "us",
                best.receiver_cpu_per_frame * 1e6,
                best.python_per_frame / best.receiver_cpu_per_frame,
            )
        received, lost = bare_receiver_run(fast.sim, fast.model, int(max(1000, 100_000 * seconds)))
        rates.add(
            "  sender -> bare recvmmsg loop (no DAQ)",
            received,
            "Hz",
            120_000.0,
            received / 120_000.0,
            f"loss {lost:.2%}",
        )
        if best:
            rates.add("  DAQ at 0 loss vs the bare loop", best.frame_rate, "Hz", received, best.frame_rate / received)
    rates.print()


if __name__ == "__main__":
    main()
