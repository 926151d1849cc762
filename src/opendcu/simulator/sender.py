"""The simulated module's data transmitter: frames out as UDP data packets, compiled, batched with sendmmsg.

Each datagram is two iovecs, the 48-byte header and a slice of the frame's wire bytes (no copy in user space).
Messages of consecutive frames share `sendmmsg` calls when the module is behind its frame clock, so a small
fast-module frame (2 packets) does not cost a system call of its own.
"""

from __future__ import annotations

import socket

import numba
import numpy as np

from opendcu.hardware.udp_io import BATCH, MessageVector, data_socket, monotonic_ns, sendmmsg, sleep_ns
from opendcu.hardware.udp_packet import HEADER_DTYPE, HEADER_SIZE, HEADER_VERSION, PacketLayout

SEND_BUFFER = 8 << 20
MAX_SLEEP_NS = 10_000_000  # sleep in slices so that an abort is noticed within 10 ms
#: how far a module may fall behind its frame clock and still catch up (images back to back); beyond, it re-anchors.
#: A real module's clock is never held up; a simulated one sharing two cores with the DCU is, for a few ms now and
#: then at the fast module's rates: 8 ms of its frames (about 110 at 14 kHz) fit any DAQ socket buffer many times
MAX_LAG_NS = 8_000_000

# per-series constants the compiled sender reads, as one int64 array
(
    P_SERIES,
    P_MODULE,
    P_ROW,
    P_COLUMN,
    P_DET_TYPE,
    P_NSUB,
    P_NPACKETS,
    P_PACKET_BYTES,
    P_LAST_BYTES,
    P_EXP_LENGTH,
    P_FLAGS,
    P_FRAME_BYTES,
    P_T0,
    NPARAMS,
) = range(14)


SEND_ATTEMPTS = 3  # a message the kernel refuses this often (full buffer for 3 x 50 ms, bad address) is dropped


@numba.njit(nogil=True, cache=True)
def _flush(fd: int, msgs: np.ndarray, count: int, abort: np.ndarray) -> int:
    """sendmmsg all `count` prepared messages (retrying partial sends); returns how many went out."""
    sent = 0
    skipped = 0
    failures = 0
    while sent + skipped < count and abort[0] == 0:
        r = sendmmsg(fd, msgs.ctypes.data + (sent + skipped) * 64, count - sent - skipped, 0)
        if r > 0:
            sent += r
            failures = 0
        else:
            failures += 1
            if failures == SEND_ATTEMPTS:  # give this datagram up: the DAQ will count it as lost
                skipped += 1
                failures = 0
    return sent


@numba.njit(nogil=True, cache=True)
def send_frames(
    fd: int,
    msgs: np.ndarray,
    iov: np.ndarray,
    headers: np.ndarray,
    params: np.ndarray,
    frames: np.ndarray,
    cyclic: bool,
    first_frame: int,
    nframes: int,
    first_due_ns: int,
    period_ns: int,
    drops: np.ndarray,
    abort: np.ndarray,
    scratch: np.ndarray,
) -> int:
    """Send images first_frame .. first_frame + nframes - 1, image i not before first_due_ns + i * period_ns (the
    clock is re-anchored when the module is more than `MAX_LAG_NS` or two periods behind it).

    frames: uint8 [n, frame_bytes] wire frames; with `cyclic` sub-frame s of image f is frames[((f - 1) * nsub + s)
    % n] (a noise bank), else frames[s] (one rendered image). drops: int64 [k, 3] sorted (frame, subframe, packet)
    never sent (loss injection). Returns the number of images sent (fewer if `abort[0]` was set)."""
    nsub = params[P_NSUB]
    npackets = params[P_NPACKETS]
    packet_bytes = params[P_PACKET_BYTES]
    nbank = frames.shape[0]
    queued = 0
    drop_at = 0
    # the frame clock is absolute: each sleep's overshoot (tens of us on a VM) is made up by the next images, as a
    # module's hardware clock does not drift by its readout's latencies; a module held up for longer than
    # `max_lag` (a simulator starved of CPU) re-anchors its clock and sends late, it never bursts more than
    # `max_lag` of images to catch up
    max_lag = max(2 * period_ns, MAX_LAG_NS)
    origin = first_due_ns
    for i in range(nframes):
        frame = first_frame + i
        due = origin + i * period_ns
        now = monotonic_ns(scratch)
        if now - due > max_lag:
            origin = now - i * period_ns
            due = now
        if due > now:  # ahead of the frame clock: send what is queued, then wait
            if queued:
                _flush(fd, msgs, queued, abort)
                queued = 0
            while due > now and abort[0] == 0:
                sleep_ns(scratch, min(due - now, MAX_SLEEP_NS))
                now = monotonic_ns(scratch)
        if abort[0] != 0:
            return i
        for s in range(nsub):
            k = ((frame - 1) * nsub + s) % nbank if cyclic else s
            base = frames[k].ctypes.data
            for p in range(npackets):
                while drop_at < drops.shape[0] and (
                    drops[drop_at, 0] < frame
                    or (
                        drops[drop_at, 0] == frame
                        and (drops[drop_at, 1] < s or (drops[drop_at, 1] == s and drops[drop_at, 2] < p))
                    )
                ):
                    drop_at += 1
                if (
                    drop_at < drops.shape[0]
                    and drops[drop_at, 0] == frame
                    and drops[drop_at, 1] == s
                    and drops[drop_at, 2] == p
                ):
                    continue
                h = headers[queued]
                h.frame_number = frame
                h.exp_length = params[P_EXP_LENGTH]
                h.packet_number = p
                h.series_id = params[P_SERIES]
                h.timestamp = (now - params[P_T0]) // 100
                h.module_id = params[P_MODULE]
                h.row = params[P_ROW]
                h.column = params[P_COLUMN]
                h.subframe = s
                h.flags = params[P_FLAGS]
                h.nsubframes = nsub
                h.det_type = params[P_DET_TYPE]
                h.version = HEADER_VERSION
                iov[queued, 0, 0] = headers.ctypes.data + queued * HEADER_SIZE
                iov[queued, 0, 1] = HEADER_SIZE
                iov[queued, 1, 0] = base + p * packet_bytes
                iov[queued, 1, 1] = params[P_LAST_BYTES] if p == npackets - 1 else packet_bytes
                queued += 1
                if queued == msgs.shape[0]:
                    _flush(fd, msgs, queued, abort)
                    queued = 0
        abort[1] += 1
    if queued:
        _flush(fd, msgs, queued, abort)
    return nframes


class DataSender:
    """Sends one module's frames to the DAQ port given at CONFIGURE."""

    def __init__(self, host: str):
        self.sock = data_socket(host, sndbuf=SEND_BUFFER)
        self.headers = np.zeros(BATCH, dtype=HEADER_DTYPE)
        self.abort = np.zeros(2, dtype=np.int64)  # [abort request, images sent]
        self.params = np.zeros(NPARAMS, dtype=np.int64)
        self._scratch = np.zeros(2, dtype=np.int64)
        self._msgs: MessageVector | None = None
        self.layout: PacketLayout | None = None
        self.drops = np.zeros((0, 3), dtype=np.int64)
        self._warm_up()

    def _warm_up(self) -> None:
        """Compile (or load from numba's cache) the transmitter before the first trigger."""
        msgs = MessageVector(BATCH, 2, dest=("127.0.0.1", 9))
        send_frames(
            self.sock.fileno(),
            msgs.headers,
            msgs.iov,
            self.headers,
            self.params,
            np.zeros((1, 8), dtype=np.uint8),
            True,
            1,
            0,
            0,
            0,
            self.drops,
            self.abort,
            self._scratch,
        )

    def configure(
        self,
        dest: tuple[str, int],
        layout: PacketLayout,
        *,
        series_id: int,
        module_id: int,
        position: tuple[int, int],
        det_type: int,
        nsubframes: int,
        drops: list[tuple[int, int, int]] | None = None,
    ) -> None:
        """Fix the destination and the per-series header fields."""
        try:
            address = socket.gethostbyname(dest[0])
        except (OSError, UnicodeError) as exc:
            raise ValueError(f"cannot send to host {dest[0]!r}: {exc}") from None
        self._msgs = MessageVector(BATCH, 2, dest=(address, dest[1]))
        self.layout = layout
        p = self.params
        p[P_SERIES], p[P_MODULE], (p[P_ROW], p[P_COLUMN]) = series_id, module_id, position
        p[P_DET_TYPE], p[P_NSUB], p[P_NPACKETS] = det_type, nsubframes, layout.npackets
        p[P_PACKET_BYTES], p[P_LAST_BYTES] = layout.packet_bytes(0), layout.packet_bytes(layout.npackets - 1)
        p[P_FRAME_BYTES] = layout.frame_bytes
        self.drops = np.array(sorted(drops or []), dtype=np.int64).reshape(-1, 3)

    def start_clock(self, t0_ns: int) -> None:
        """Timestamps in the headers count from `t0_ns` (CLOCK_MONOTONIC)."""
        self.params[P_T0] = t0_ns

    def send(
        self,
        frames: np.ndarray,
        first_frame: int,
        nframes: int,
        *,
        cyclic: bool,
        first_due_ns: int,
        period_ns: int,
        count_time: float,
        external: bool,
    ) -> int:
        """Send images (see `send_frames`); returns how many went out before an abort."""
        assert self._msgs is not None, "configure first"
        self.params[P_EXP_LENGTH] = int(round(count_time * 1e7))
        self.params[P_FLAGS] = (1 << 31) if external else 0
        return send_frames(
            self.sock.fileno(),
            self._msgs.headers,
            self._msgs.iov,
            self.headers,
            self.params,
            frames,
            cyclic,
            first_frame,
            nframes,
            first_due_ns,
            period_ns,
            self.drops,
            self.abort,
            self._scratch,
        )

    def close(self) -> None:
        self.sock.close()
