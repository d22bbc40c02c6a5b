"""Batched datagram I/O through sendmmsg(2)/recvmmsg(2), called with ctypes.

One system call moves up to a few hundred packets instead of one, and ctypes
drops the GIL for it. A ``Vector`` is the memory those calls read and write:
``size`` mmsghdr slots, each with one iovec over its own ``slot`` bytes of a
shared buffer, which the caller fills (sending) or parses (receiving) in
place; a ``Sender`` is a raw IPv4 socket with its own Vector. Used by the
SYN scan.
"""

from __future__ import annotations

import ctypes
import socket

SO_SNDBUFFORCE = 32             # not exported by the socket module


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    _fields_ = [("name", ctypes.c_void_p), ("namelen", ctypes.c_uint32), ("iov", ctypes.c_void_p),
                ("iovlen", ctypes.c_size_t), ("control", ctypes.c_void_p),
                ("controllen", ctypes.c_size_t), ("flags", ctypes.c_int)]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("hdr", _MsgHdr), ("len", ctypes.c_uint)]


_libc: ctypes.CDLL | None = None


def libc() -> ctypes.CDLL:
    """The C library with sendmmsg and recvmmsg typed (loaded once)."""
    global _libc
    if _libc is None:
        loaded = ctypes.CDLL(None, use_errno=True)
        loaded.sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
        loaded.sendmmsg.restype = ctypes.c_int
        loaded.recvmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int,
                                    ctypes.c_void_p]
        loaded.recvmmsg.restype = ctypes.c_int
        _libc = loaded
    return _libc


class Vector:
    """``size`` mmsghdr slots, each with one iovec over ``slot`` bytes of one shared buffer."""

    def __init__(self, size: int, slot: int) -> None:
        self.size = size
        self.slot = slot
        self.data = bytearray(size * slot)
        self.stride = ctypes.sizeof(_MMsgHdr)
        self.headers = bytearray(size * self.stride)
        self._iov = (_IoVec * size)()
        self._data_c = (ctypes.c_char * len(self.data)).from_buffer(self.data)
        self._headers_c = (_MMsgHdr * size).from_buffer(self.headers)
        base = ctypes.addressof(self._data_c)
        for i in range(size):
            self._iov[i].base = base + i * slot
            self._iov[i].len = slot
            self._headers_c[i].hdr.iov = ctypes.addressof(self._iov[i])
            self._headers_c[i].hdr.iovlen = 1
        self.address = ctypes.addressof(self._headers_c)

    def set_names(self, namelen: int) -> None:
        for i in range(self.size):
            self._headers_c[i].hdr.namelen = namelen


class Sender:
    """A socket to send on and its own vector (threads must not share a buffer)."""

    def __init__(self, fd: int | socket.socket, vec: Vector) -> None:
        self.sock = fd if isinstance(fd, socket.socket) else None     # keeps an extra socket open
        self.fd = fd.fileno() if isinstance(fd, socket.socket) else fd
        self.vec = vec
        vec.set_names(16)
        self.slot_host = [-1] * vec.size    # the host whose IP header each slot holds


def raw_send_socket() -> socket.socket:
    """A send-only raw socket (IPPROTO_RAW: we write the IP header, and the kernel never
    queues a copy of incoming segments on it, unlike a raw TCP socket). One per sender
    thread: the threads then share no socket lock."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, 8 << 20)
    except OSError:
        pass
    return sock
