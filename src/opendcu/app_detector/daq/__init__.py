"""DAQ: receive module UDP packets and assemble raw frames in shared memory."""

from __future__ import annotations

import os

from opendcu.app_detector.daq.assembler import AssembledFrame, DaqCounters, FrameAssembler
from opendcu.app_detector.daq.receiver import SOCKET_BUFFER, ModuleReceiver

__all__ = ["AssembledFrame", "Daq", "DaqCounters", "FrameAssembler", "ModuleReceiver"]


class Daq:
    """All module receivers of one detector plus the assembler they feed."""

    def __init__(
        self,
        assembler: FrameAssembler,
        host: str = "127.0.0.1",
        socket_buffer: int = SOCKET_BUFFER,
        realtime: bool = True,
    ):
        self.assembler = assembler
        n = assembler.model.n_modules
        cpus = sorted(os.sched_getaffinity(0))
        # with more CPUs than receivers, each receiver keeps one CPU (the last ones; the first stay for the rest)
        pinned = len(cpus) > n + 1
        self.receivers = [
            ModuleReceiver(
                assembler, m, host, socket_buffer=socket_buffer, realtime=realtime, cpu=cpus[-1 - m] if pinned else None
            )
            for m in range(n)
        ]
        assembler.data_ports = [r.address[1] for r in self.receivers]

    def data_addresses(self) -> dict[int, tuple[str, int]]:
        """Where each module must send its data packets, by the module id its packets carry."""
        return {r.module_id: r.address for r in self.receivers}

    def start(self, timeout: float = 120.0) -> None:
        """Start the assembler thread and every receiver, and wait until their compiled loops run."""
        self.assembler.start()
        for r in self.receivers:
            r.start()
        for r in self.receivers:
            if not r.running.wait(timeout):
                raise RuntimeError(f"DAQ receiver of module {r.module_id} did not start")

    def stop(self) -> None:
        for r in self.receivers:
            r._stop.set()
        for r in self.receivers:
            r.stop()
        self.assembler.stop()
