"""The DAQ's compiled hot path: receive a module's packets in batches and put their pixels into frame slots.

One call of `receive` runs (without the GIL) for as long as packets come: it never waits on Python while packets
are queued in its socket. The frame shares it closes go into its event ring (`events[m]`, head `evhead[m]`
written here, tail `evtail[m]` written by the assembler thread, which polls the rings in batches). It returns only
when the socket was idle for its timeout, a series change or stop was published (`control`), its event ring is
full, or a frame it needs has had no slot for a while (the assembler opens frames ahead of their packets). Every
packet is checked and accounted here; the Python side (assembler.py) only opens frames and hands complete ones on.

A packet is accepted only from the module's data source address (`params[P_SRC_IP]`/`[P_SRC_PORT]`, set from what
the module driver learnt at CONFIGURE; 0 accepts any source); the others count as foreign.

Frame table (`FrameTable` in assembler.py, one per series): entry e = frame % window holds one frame in flight.
Each receiver writes only its own module's column (bitmap, count, share_done, counters), so receivers never
race each other; a module's "share" of a frame is closed only by its own receiver (all packets in, a packet of
frame >= f + 2 arrived, the frame timed out, or a flush was requested), after which it never writes that slot
again. The assembler hands a frame on once every module closed its share: no receiver touches it any more.

Modules read out (table `active`, one flag per module): a series may read out only some modules (roi_mode 4M of
a 9M/16M). The shares of the others are closed from the start (`install`), their packets are foreign, and neither
their packets nor their pixels count as expected or lost; their part of the slot is left as it is.
"""

from __future__ import annotations

import numba
import numpy as np

from opendcu.hardware.counters import SATURATED, widen_into
from opendcu.hardware.udp_io import MSG_WAITFORONE, fence, memcpy, monotonic_ns, recvmmsg, sleep_ns
from opendcu.hardware.udp_packet import HEADER_SIZE, HEADER_VERSION

# table.params: per-series constants and the few values the assembler moves while the series runs
(
    P_ACTIVE,
    P_SERIES,
    P_NFRAMES,
    P_NPACKETS,
    P_NSUB,
    P_PPP,
    P_PACKET_BYTES,
    P_LAST_BYTES,
    P_NPIX,
    P_WINDOW_BASE,
    P_TIMEOUT_NS,
    P_FLUSH_REQ,
    P_DET_TYPE,
    P_COUNTER,
    P_NMODULES,
    P_NREAD,
    NPARAMS,
) = range(17)
# control: [epoch, stop]; receivers compare the epoch with their table's to notice a new series
CTL_EPOCH, CTL_STOP = 0, 1
# table.state values of an entry
FREE, OPEN, DONE, DROPPED = 0, 1, 2, 3
# per-module packet counters (table.counters columns)
C_LATE, C_DUPLICATE, C_FOREIGN, C_MALFORMED, C_OVERFLOW, NCOUNTERS = range(6)
COUNTER_NAMES = ("late", "duplicate", "foreign", "malformed", "overflow")
# what `receive` returns to Python
RET_IDLE, RET_EVENTS, RET_OPEN, RET_EPOCH, RET_BUDGET, RET_WAIT = range(6)
# a share closes early once its module sends a frame this much newer (tolerates one frame of reordering)
REORDER_FRAMES = 2
SCAN_NS = 2_000_000  # how often a receiver looks for timed-out shares
#: how long a receiver waits, in its compiled loop, for the assembler to open a frame or move the window
WAIT_IN_LOOP_NS = 2_000_000
POLL_NS = 20_000
# a receiver's source filter (sources[m]): [IPv4 address as in sockaddr_in (network order, read little-endian),
# port (host order)]; 0 accepts any
SRC_IP, SRC_PORT = 0, 1


@numba.njit(nogil=True, cache=True, inline="always")
def _u16(b: np.ndarray, o: int) -> int:
    return np.int64(b[o]) | (np.int64(b[o + 1]) << 8)


@numba.njit(nogil=True, cache=True, inline="always")
def _u32(b: np.ndarray, o: int) -> int:
    return _u16(b, o) | (_u16(b, o + 2) << 16)


@numba.njit(nogil=True, cache=True, inline="always")
def _u64(b: np.ndarray, o: int) -> int:
    return _u32(b, o) | (_u32(b, o + 4) << 32)  # frame numbers beyond 2^63 read negative: rejected as foreign


@numba.njit(nogil=True, cache=True)
def _close_share(m: int, e: int, share_done: np.ndarray, events: np.ndarray, nev: int) -> int:
    """Close module m's share of entry e and publish it in m's event ring (events[m, :-2] entries, then
    [head, tail]); the entry is written before the head moves (fence), so that the poller never reads a stale one.
    `nev` counts the events of this call."""
    share_done[e, m] = 1
    cap = events.shape[1] - 2
    head = events[m, cap]
    events[m, head % cap] = e
    fence()
    events[m, cap] = head + 1
    return nev + 1


@numba.njit(nogil=True, cache=True)
def ring_room(events: np.ndarray, m: int) -> int:
    """Free entries of module m's event ring."""
    cap = events.shape[1] - 2
    return cap - (events[m, cap] - events[m, cap + 1])


@numba.njit(nogil=True, cache=True)
def _newer_frame(
    m: int,
    f: int,
    base: int,
    now: int,
    frame: np.ndarray,
    state: np.ndarray,
    last_ns: np.ndarray,
    share_done: np.ndarray,
    cursor: np.ndarray,
    events: np.ndarray,
    nev: int,
) -> int:
    """Module m sent frame f: close its shares of frames <= f - REORDER_FRAMES (their packets will not come),
    and start the timeout of frame f - 1 even if no packet of it ever arrived.

    cursor[m] is the lowest frame whose share may still be open, so each frame is looked at once; frames are
    opened in order, so the walk stops at the first frame not opened yet."""
    window = frame.shape[0]
    previous = (f - 1) % window
    if frame[previous] == f - 1 and last_ns[previous] == 0:
        last_ns[previous] = now
    fr = max(cursor[m], base)  # frames below the base are settled; the walk ends at the last frame opened
    while fr <= f - REORDER_FRAMES:
        e = fr % window
        if frame[e] != fr:
            break
        if (state[e] == OPEN or state[e] == DROPPED) and share_done[e, m] == 0:
            nev = _close_share(m, e, share_done, events, nev)
        fr += 1
    cursor[m] = fr
    return nev


@numba.njit(nogil=True, cache=True)
def _scan(
    m: int,
    now: int,
    params: np.ndarray,
    state: np.ndarray,
    last_ns: np.ndarray,
    share_done: np.ndarray,
    flush_done: np.ndarray,
    events: np.ndarray,
    nev: int,
) -> int:
    """Close this module's shares of frames that timed out, or of every frame if a flush was requested."""
    flush = params[P_FLUSH_REQ] > flush_done[m]
    timeout = params[P_TIMEOUT_NS]
    for e in range(state.shape[0]):
        if (state[e] == OPEN or state[e] == DROPPED) and share_done[e, m] == 0:
            if flush or (last_ns[e] > 0 and now - last_ns[e] > timeout):
                nev = _close_share(m, e, share_done, events, nev)
    if flush:
        flush_done[m] = params[P_FLUSH_REQ]
    return nev


@numba.njit(nogil=True, cache=True)
def _wait_for(
    cond_frame: int,
    e: int,
    f: int,
    window: int,
    frame: np.ndarray,
    params: np.ndarray,
    control: np.ndarray,
    epoch: int,
    scratch: np.ndarray,
) -> bool:
    """Wait (sleeping POLL_NS at a time, at most WAIT_IN_LOOP_NS) until frame f is opened (`cond_frame` 1) or fits
    the window (0); False if it did not happen in time or the series changed."""
    waited = 0
    while waited < WAIT_IN_LOOP_NS:
        if control[CTL_EPOCH] != epoch or control[CTL_STOP] != 0:
            return False
        if cond_frame == 1:
            if frame[e] >= f:
                return True
        elif f < params[P_WINDOW_BASE] + window:
            return True
        sleep_ns(scratch, POLL_NS)
        waited += POLL_NS
    return False


@numba.njit(nogil=True, cache=True)
def receive(
    fd: int,
    m: int,
    module_id: int,
    msgs: np.ndarray,
    lengths: np.ndarray,
    rbuf: np.ndarray,
    names: np.ndarray,
    sources: np.ndarray,
    batch: np.ndarray,
    control: np.ndarray,
    epoch: int,
    params: np.ndarray,
    frame: np.ndarray,
    slot: np.ndarray,
    state: np.ndarray,
    last_ns: np.ndarray,
    bitmap: np.ndarray,
    count: np.ndarray,
    share_done: np.ndarray,
    cursor: np.ndarray,
    flush_done: np.ndarray,
    counters: np.ndarray,
    active: np.ndarray,
    events: np.ndarray,
    slots: np.ndarray,
    lut: np.ndarray,
    scratch: np.ndarray,
):
    """Receive and place packets of module index `m` (whose packets carry `module_id`) until there is something
    for Python to do (see the module docstring).

    names: uint8 [BATCH, 16] source addresses of the datagrams; sources: int64 [2] this module's data source.
    batch: int64 [pos, n, last_scan_ns, now_ns] of the datagrams in rbuf (kept across calls).
    Returns (code, shares closed in this call, frame to open for RET_OPEN / RET_WAIT)."""
    nev = 0
    window = frame.shape[0]
    npackets = params[P_NPACKETS]
    nsub = params[P_NSUB]
    nmod = params[P_NMODULES]
    ppp = params[P_PPP]
    npix = params[P_NPIX]
    counter_id = params[P_COUNTER]
    room_needed = 2 * window + 2  # a scan and a newer frame may each close a window of shares
    while True:
        if control[CTL_EPOCH] != epoch:
            return RET_EPOCH, nev, 0
        if control[CTL_STOP] != 0:
            return RET_IDLE, nev, 0
        if ring_room(events, m) < room_needed:
            return RET_EVENTS, nev, 0
        if batch[0] >= batch[1]:  # the batch is used up: look at the clock, receive more
            now = monotonic_ns(scratch)
            # shares time out only while this socket is drained (the last receive took less than a full batch):
            # after a stall, packets still queued here must not find their frame closed
            caught_up = batch[1] < rbuf.shape[0]
            if (caught_up and now - batch[2] > SCAN_NS) or params[P_FLUSH_REQ] > flush_done[m]:
                batch[2] = now
                nev = _scan(m, now, params, state, last_ns, share_done, flush_done, events, nev)
            r = recvmmsg(fd, msgs.ctypes.data, rbuf.shape[0], MSG_WAITFORONE, 0)
            if r <= 0:  # timeout (SO_RCVTIMEO), interrupted or closed: let Python look around
                batch[0] = batch[1] = 0
                return RET_IDLE, nev, 0
            batch[0] = 0
            batch[1] = r
            batch[3] = monotonic_ns(scratch)
            continue
        i = batch[0]
        batch[0] += 1
        b = rbuf[i]
        length = lengths[i]
        if sources[SRC_PORT] != 0:  # read per datagram: the driver learns the source at CONFIGURE, after arm
            nm = names[i]
            port = (np.int64(nm[2]) << 8) | np.int64(nm[3])
            if port != sources[SRC_PORT] or _u32(nm, 4) != sources[SRC_IP]:
                counters[m, C_FOREIGN] += 1  # not from this module's data source
                continue
        if length < HEADER_SIZE or b[47] != HEADER_VERSION:
            counters[m, C_MALFORMED] += 1
            continue
        if _u16(b, 32) != module_id or b[46] != params[P_DET_TYPE] or _u64(b, 16) != params[P_SERIES] or active[m] == 0:
            counters[m, C_FOREIGN] += 1
            continue
        if params[P_ACTIVE] == 0:  # the series' own packet, still in the socket when it ended (abort): late
            counters[m, C_LATE] += 1
            continue
        packet = _u32(b, 12)
        sub = _u16(b, 38)
        if _u16(b, 44) != nsub or sub >= nsub or packet >= npackets:
            counters[m, C_MALFORMED] += 1
            continue
        payload = params[P_LAST_BYTES] if packet == npackets - 1 else params[P_PACKET_BYTES]
        if length != HEADER_SIZE + payload:
            counters[m, C_MALFORMED] += 1
            continue
        f = _u64(b, 0)
        if f < 1 or f > params[P_NFRAMES]:
            counters[m, C_FOREIGN] += 1
            continue
        base = params[P_WINDOW_BASE]
        if f < base:
            counters[m, C_LATE] += 1
            continue
        e = f % window
        if f >= base + window:  # this module is a window ahead of the slowest one: wait for it
            nev = _newer_frame(m, f, base, batch[3], frame, state, last_ns, share_done, cursor, events, nev)
            batch[0] -= 1
            if not _wait_for(0, e, f, window, frame, params, control, epoch, scratch):
                return RET_WAIT, nev, f
            continue
        if frame[e] != f:
            if frame[e] > f:
                counters[m, C_LATE] += 1
                continue
            batch[0] -= 1  # come back to this packet once its frame is open
            if not _wait_for(1, e, f, window, frame, params, control, epoch, scratch):
                return RET_OPEN, nev, f
            continue
        st = state[e]
        if st == DONE or share_done[e, m] != 0:
            counters[m, C_LATE] += 1
            continue
        last_ns[e] = batch[3]
        if st == DROPPED:  # no slot for this frame: its pixels are lost
            counters[m, C_OVERFLOW] += 1
        else:
            bit = sub * npackets + packet
            if bitmap[e, m, bit] != 0:
                counters[m, C_DUPLICATE] += 1
                continue
            dst = slots[slot[e]].view(np.uint16)
            start = (sub * nmod + m) * npix + packet * ppp
            if counter_id == 0:
                memcpy(dst.ctypes.data + 2 * start, b.ctypes.data + HEADER_SIZE, payload)
            else:
                widen_into(counter_id, b, HEADER_SIZE, payload, dst, start, lut)
            bitmap[e, m, bit] = 1
            count[e, m] += 1
            if count[e, m] == nsub * npackets:
                nev = _close_share(m, e, share_done, events, nev)
        nev = _newer_frame(m, f, base, batch[3], frame, state, last_ns, share_done, cursor, events, nev)


@numba.njit(nogil=True, cache=True)
def flag_missing(raw: np.ndarray, received: np.ndarray, active: np.ndarray, npackets: int, ppp: int, npix: int) -> int:
    """Set the pixels of every packet not received from a module read out to SATURATED (the error value);
    returns their number.

    raw: uint16 [nsub, n_modules, npix] view of the slot; received: uint8 [n_modules, nsub * npackets]."""
    nsub = raw.shape[0]
    flagged = 0
    for m in range(raw.shape[1]):
        if active[m] == 0:
            continue
        for s in range(nsub):
            for p in range(npackets):
                if received[m, s * npackets + p] == 0:
                    stop = min((p + 1) * ppp, npix)
                    for px in range(p * ppp, stop):
                        raw[s, m, px] = SATURATED
                    flagged += stop - p * ppp
    return flagged


# -- the assembler's bookkeeping, compiled so that a frame costs no per-frame numpy calls ---------------------------
# what `settle` decided for a frame whose shares are all closed (column 3 of its output)
HAND_ON, RELEASE, NO_SLOT = 0, 1, 2


@numba.njit(nogil=True, cache=True)
def settle(
    entries: np.ndarray,
    closed: np.ndarray,
    frame: np.ndarray,
    slot: np.ndarray,
    state: np.ndarray,
    count: np.ndarray,
    bitmap: np.ndarray,
    active: np.ndarray,
    params: np.ndarray,
    slots: np.ndarray,
    flush_expected: int,
    out: np.ndarray,
) -> int:
    """Count closed shares of `entries`; settle every frame whose modules all closed their share.

    A frame is handed on (its lost packets' pixels flagged), or released (nothing arrived and, during a flush,
    it is beyond the images taken), or reported as without slot (DROPPED). out: int64 [n, 4] rows (frame, slot,
    packets received, decision); returns the number of rows."""
    nmod = params[P_NMODULES]
    nsub = params[P_NSUB]
    npackets = params[P_NPACKETS]
    npix = params[P_NPIX]
    n = 0
    for e in entries:
        closed[e] += 1
        if closed[e] != nmod or (state[e] != OPEN and state[e] != DROPPED):
            continue
        dropped = state[e] == DROPPED
        state[e] = DONE
        received = 0
        if not dropped:
            for m in range(nmod):
                received += count[e, m]
        decision = HAND_ON
        if received == 0 and 0 <= flush_expected < frame[e]:
            decision = RELEASE
        elif dropped:
            decision = NO_SLOT
        elif received < nsub * params[P_NREAD] * npackets:
            raw = slots[slot[e]].view(np.uint16)[: nsub * nmod * npix].reshape(nsub, nmod, npix)
            flag_missing(raw, bitmap[e], active, npackets, params[P_PPP], npix)
        out[n, 0] = frame[e]
        out[n, 1] = slot[e]
        out[n, 2] = received
        out[n, 3] = decision
        n += 1
    return n


@numba.njit(nogil=True, cache=True)
def advance_base(frame: np.ndarray, state: np.ndarray, params: np.ndarray) -> int:
    """Move the window base past every settled frame; returns the new base."""
    window = frame.shape[0]
    base = params[P_WINDOW_BASE]
    while frame[base % window] == base and state[base % window] == DONE:
        base += 1
    params[P_WINDOW_BASE] = base
    return base


@numba.njit(nogil=True, cache=True)
def install(
    first_frame: int,
    new_slots: np.ndarray,
    frame: np.ndarray,
    slot: np.ndarray,
    state: np.ndarray,
    last_ns: np.ndarray,
    bitmap: np.ndarray,
    count: np.ndarray,
    share_done: np.ndarray,
    closed: np.ndarray,
    active: np.ndarray,
) -> None:
    """Open frames first_frame, first_frame + 1, ... with `new_slots` (-1: no slot, frame DROPPED); the shares
    of modules not read out are closed from the start."""
    window = frame.shape[0]
    for i in range(new_slots.shape[0]):
        e = (first_frame + i) % window
        bitmap[e] = 0
        count[e] = 0
        closed[e] = 0
        for m in range(active.shape[0]):
            share_done[e, m] = 1 - active[m]
            closed[e] += 1 - active[m]
        last_ns[e] = 0
        slot[e] = new_slots[i]
        frame[e] = first_frame + i
        state[e] = OPEN if new_slots[i] >= 0 else DROPPED  # last: receivers accept its packets from now on


@numba.njit(nogil=True, cache=True)
def drain_events(events: np.ndarray, out: np.ndarray) -> int:
    """Move every published event of every module's ring into `out` (the assembler's poll); returns how many."""
    cap = events.shape[1] - 2
    n = 0
    for m in range(events.shape[0]):
        head = events[m, cap]
        tail = events[m, cap + 1]
        while tail < head and n < out.shape[0]:
            out[n] = events[m, tail % cap]
            n += 1
            tail += 1
        events[m, cap + 1] = tail
    return n
