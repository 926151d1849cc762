"""One UDP receiver per module: a thread whose compiled loop (kernels.receive) takes the module's packets in
batches of `BATCH` datagrams (recvmmsg) and writes their pixels straight into the frames' shared-memory slots."""

from __future__ import annotations

import logging
import threading

import numpy as np

from opendcu.app_detector.daq import kernels as k
from opendcu.app_detector.daq.assembler import FrameAssembler
from opendcu.app_detector.os_threads import make_receiver_thread_urgent, start_named
from opendcu.hardware.counters import FLOAT8_DECODE
from opendcu.hardware.udp_io import BATCH, MessageVector, data_socket, socket_buffer_sizes
from opendcu.hardware.udp_packet import HEADER_SIZE, MAX_PAYLOAD

log = logging.getLogger(__name__)

#: socket receive buffer asked for (granted beyond net.core.rmem_max only with CAP_NET_ADMIN)
SOCKET_BUFFER = 64 << 20
#: one receive buffer row: a datagram of the largest payload, plus room to see that a datagram is too long
DATAGRAM_STRIDE = -(-(HEADER_SIZE + MAX_PAYLOAD + 64) // 64) * 64


class ModuleReceiver:
    """Receives the data packets of module `index` of the assembler's detector on its own UDP port."""

    def __init__(
        self,
        assembler: FrameAssembler,
        index: int,
        host: str = "127.0.0.1",
        port: int = 0,
        socket_buffer: int = SOCKET_BUFFER,
        realtime: bool = True,
        cpu: int | None = None,
    ):
        self.assembler = assembler
        self.index = index
        self.module_id = assembler.model.physical_module(index)
        self.sock = data_socket(host, port, rcvbuf=socket_buffer)
        self.buffer = np.zeros((BATCH, DATAGRAM_STRIDE), dtype=np.uint8)
        self._msgs = MessageVector(BATCH, 1)
        self._msgs.point_at(self.buffer)
        self._names = self._msgs.record_sources()
        self._batch = np.zeros(4, dtype=np.int64)  # [position, count, last scan, arrival] of the current batch
        self._scratch = np.zeros(2, dtype=np.int64)
        #: real-time scheduling (when permitted) and CPU affinity of the receiver thread
        self.realtime = realtime
        self.cpu = cpu
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        #: set once the compiled loop runs (compiling or loading it from the cache takes a moment)
        self.running = threading.Event()

    @property
    def address(self) -> tuple[str, int]:
        return self.sock.getsockname()

    @property
    def socket_buffer(self) -> int:
        """Receive buffer bytes the kernel granted."""
        return socket_buffer_sizes(self.sock)[0]

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"daq-module{self.module_id}", daemon=True)
        start_named(self._thread)

    def stop(self) -> None:
        self._stop.set()
        self.assembler.control[k.CTL_STOP] = 1  # the compiled loop returns at its next datagram or timeout
        if self._thread is not None:
            self._thread.join()
        self.sock.close()

    def _run(self) -> None:
        if self.realtime:
            make_receiver_thread_urgent(self.cpu)
        while not self._stop.is_set():
            try:
                self._receive()
            except Exception:  # noqa: BLE001 - the receiver must outlive any one frame's trouble
                log.exception("DAQ receiver of module %d: error while receiving; continuing", self.module_id)
                self._stop.wait(0.01)

    def _receive(self) -> None:
        """Receive until stopped: the compiled loop keeps receiving across frames (closed shares go to the
        assembler thread through the table's event rings); Python only helps when a frame has no slot yet."""
        asm = self.assembler
        fd = self.sock.fileno()
        while not self._stop.is_set():
            table = asm.table
            # the ring's view after the table: a series' table is published after the ring was partitioned for it
            ring = asm.ring.buffer
            code, _nev, frame = k.receive(
                fd,
                self.index,
                self.module_id,
                self._msgs.headers,
                self._msgs.lengths,
                self.buffer,
                self._names,
                table.sources[self.index],
                self._batch,
                asm.control,
                table.epoch,
                *table.kernel_args(),
                ring,
                FLOAT8_DECODE,
                self._scratch,
            )
            self.running.set()
            if code == k.RET_WAIT:  # a window ahead of the oldest frame in flight
                asm.open_frames_upto(table, frame)  # frames this module passed must exist to be settled
                asm.wait_window(table, frame)
            elif code == k.RET_OPEN:
                asm.open_frames_upto(table, frame)
                if table.frame[frame % table.window] != frame:  # no room for it: skip the packet
                    self._batch[0] += 1
                    table.counters[self.index, k.C_OVERFLOW] += 1
            elif code == k.RET_EVENTS:  # the event ring is full: the assembler thread is behind
                asm.poll()
