"""Batched UDP I/O from compiled code: libc `recvmmsg`/`sendmmsg` called from numba, no per-packet Python.

The libc calls are numba intrinsics that reference the C symbols by name (resolved when the code is loaded),
so the compiled receive and send loops (DAQ receivers, simulated modules) can be cached on disk and run without
the GIL, moving up to `BATCH` datagrams per system call. Pointers are passed as int64 (`array.ctypes.data`).
The message vectors (`struct mmsghdr` + `struct iovec`) are numpy arrays laid out as on Linux LP64.
"""

from __future__ import annotations

import errno
import socket
import struct
import sys

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic

if not sys.platform.startswith("linux") or struct.calcsize("P") != 8:
    raise ImportError("opendcu's UDP data path needs 64-bit Linux (recvmmsg/sendmmsg)")

_I32, _I64 = ir.IntType(32), ir.IntType(64)


def _libc_call(name: str, restype: ir.Type, argtypes: list[ir.Type]):
    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(restype, argtypes), name)
        return builder.call(fn, args)

    return codegen


@intrinsic
def recvmmsg(typingctx, fd, msgvec, vlen, flags, timeout):
    """int recvmmsg(int fd, struct mmsghdr *msgvec, unsigned vlen, int flags, struct timespec *timeout)"""
    sig = types.int32(types.int32, types.int64, types.int32, types.int32, types.int64)
    return sig, _libc_call("recvmmsg", _I32, [_I32, _I64, _I32, _I32, _I64])


@intrinsic
def sendmmsg(typingctx, fd, msgvec, vlen, flags):
    """int sendmmsg(int fd, struct mmsghdr *msgvec, unsigned vlen, int flags)"""
    sig = types.int32(types.int32, types.int64, types.int32, types.int32)
    return sig, _libc_call("sendmmsg", _I32, [_I32, _I64, _I32, _I32])


@intrinsic
def clock_gettime(typingctx, clock, timespec):
    """int clock_gettime(clockid_t clock, struct timespec *tp)"""
    return types.int32(types.int32, types.int64), _libc_call("clock_gettime", _I32, [_I32, _I64])


@intrinsic
def nanosleep(typingctx, request, remain):
    """int nanosleep(const struct timespec *req, struct timespec *rem)"""
    return types.int32(types.int64, types.int64), _libc_call("nanosleep", _I32, [_I64, _I64])


@intrinsic
def memcpy(typingctx, dest, src, n):
    """Copy n bytes from address src to address dest (LLVM's memcpy)."""

    def codegen(context, builder, signature, args):
        dest_ptr, src_ptr = (builder.inttoptr(a, ir.IntType(8).as_pointer()) for a in args[:2])
        cgutils.raw_memcpy(builder, dest_ptr, src_ptr, args[2], 1)
        return context.get_dummy_value()

    return types.void(types.int64, types.int64, types.int64), codegen


@intrinsic
def fence(typingctx):
    """A sequentially consistent memory fence: stores before it are visible to other threads before stores after
    it (a ring's entry before its head)."""

    def codegen(context, builder, signature, args):
        builder.fence("seq_cst")
        return context.get_dummy_value()

    return types.void(), codegen


CLOCK_MONOTONIC = 1
MSG_WAITFORONE = 0x10000
MSG_DONTWAIT = 0x40
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)
SO_SNDBUFFORCE = getattr(socket, "SO_SNDBUFFORCE", 32)

BATCH = 64  # datagrams per system call
MMSGHDR_SIZE = 64  # struct mmsghdr on LP64: msghdr (56) + msg_len (4) + padding
_MSG_LEN_WORD = 14  # msg_len as the 15th uint32 of an mmsghdr

MMSGHDR = np.dtype(
    {
        "names": ["name", "namelen", "iov", "iovlen", "control", "controllen", "flags", "len"],
        "formats": ["<u8", "<u4", "<u8", "<u8", "<u8", "<u8", "<i4", "<u4"],
        "offsets": [0, 8, 16, 24, 32, 40, 48, 56],
        "itemsize": MMSGHDR_SIZE,
    }
)


@numba.njit(nogil=True, cache=True)
def monotonic_ns(scratch: np.ndarray) -> int:
    """CLOCK_MONOTONIC in ns (same clock as time.monotonic_ns); `scratch` is an int64[2] timespec."""
    clock_gettime(CLOCK_MONOTONIC, scratch.ctypes.data)
    return scratch[0] * 1_000_000_000 + scratch[1]


@numba.njit(nogil=True, cache=True)
def sleep_ns(scratch: np.ndarray, duration: int) -> None:
    """Sleep `duration` ns without the GIL; `scratch` is an int64[2] timespec."""
    scratch[0] = duration // 1_000_000_000
    scratch[1] = duration % 1_000_000_000
    nanosleep(scratch.ctypes.data, 0)


def sockaddr_in(host: str, port: int) -> np.ndarray:
    """struct sockaddr_in of an IPv4 address, as 16 bytes."""
    raw = struct.pack("<H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_aton(host) + bytes(8)
    return np.frombuffer(raw, dtype=np.uint8).copy()


class MessageVector:
    """`n` message headers with `iov_per_message` iovecs each, optionally all addressed to one destination.

    Compiled code fills the iovecs (`iov[i, j] = (address, length)`) and reads the received lengths (`lengths`).
    """

    def __init__(self, n: int = BATCH, iov_per_message: int = 1, dest: tuple[str, int] | None = None):
        self.headers = np.zeros(n, dtype=MMSGHDR)
        self.iov = np.zeros((n, iov_per_message, 2), dtype=np.uint64)
        self.headers["iov"] = self.iov.ctypes.data + np.arange(n, dtype=np.uint64) * (iov_per_message * 16)
        self.headers["iovlen"] = iov_per_message
        self.dest = sockaddr_in(*dest) if dest else np.zeros(16, dtype=np.uint8)
        if dest:
            self.headers["name"] = self.dest.ctypes.data
            self.headers["namelen"] = 16
        self.words = self.headers.view(np.uint32).reshape(n, MMSGHDR_SIZE // 4)

    @property
    def lengths(self) -> np.ndarray:
        """Received datagram lengths (a strided view of msg_len)."""
        return self.words[:, _MSG_LEN_WORD]

    def record_sources(self) -> np.ndarray:
        """Let each message record its datagram's source address: returns the uint8 [n, 16] sockaddr_in rows."""
        self.names = np.zeros((self.headers.size, 16), dtype=np.uint8)
        self.headers["name"] = self.names.ctypes.data + np.arange(self.headers.size, dtype=np.uint64) * 16
        self.headers["namelen"] = 16
        return self.names

    def point_at(self, buffer: np.ndarray) -> None:
        """One iovec per message, message i receiving into row i of `buffer` (uint8 [n, stride])."""
        rows, stride = buffer.shape
        assert rows >= self.headers.size and self.iov.shape[1] == 1 and buffer.flags.c_contiguous
        self.iov[:, 0, 0] = buffer.ctypes.data + np.arange(self.headers.size, dtype=np.uint64) * stride
        self.iov[:, 0, 1] = stride


def _force_buffer(sock: socket.socket, force_opt: int, opt: int, size: int) -> int:
    """Ask for a `size`-byte socket buffer: beyond net.core.[rw]mem_max when privileged, else up to it."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, force_opt, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, opt, size)
    except OSError as exc:
        if exc.errno != errno.EPERM:
            raise
        sock.setsockopt(socket.SOL_SOCKET, opt, size)
    return sock.getsockopt(socket.SOL_SOCKET, opt) // 2  # Linux reports double the usable size


def data_socket(host: str, port: int = 0, rcvbuf: int = 0, sndbuf: int = 0, timeout_s: float = 0.05) -> socket.socket:
    """A blocking UDP socket for compiled I/O: blocking calls give up after `timeout_s` (SO_RCVTIMEO/SO_SNDTIMEO),
    so that loops can notice a stop request."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if rcvbuf:
        _force_buffer(sock, SO_RCVBUFFORCE, socket.SO_RCVBUF, rcvbuf)
    if sndbuf:
        _force_buffer(sock, SO_SNDBUFFORCE, socket.SO_SNDBUF, sndbuf)
    sock.bind((host, port))
    sock.setblocking(True)
    timeval = struct.pack("ll", int(timeout_s), int((timeout_s % 1) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    return sock


def socket_buffer_sizes(sock: socket.socket) -> tuple[int, int]:
    """(receive, send) buffer bytes the kernel granted."""
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2,
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2,
    )
