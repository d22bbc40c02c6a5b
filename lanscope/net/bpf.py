"""Classic BPF socket filters: the kernel drops what a raw socket does not want.

A raw socket sees every frame or segment of its protocol; a sweep or a SYN
scan wants only the replies to itself, and Python costs a microsecond per
packet it has to look at. A filter runs in the kernel, before the packet is
queued. Used by the ARP sweep (ARP replies to our address) and the SYN scan
(TCP segments to our source port).
"""

from __future__ import annotations

import ctypes
import socket
from collections.abc import Sequence

SO_ATTACH_FILTER = 26            # not exported by the socket module

# One instruction, as struct sock_filter: (code, jump if true, jump if false, k).
Instruction = tuple[int, int, int, int]


class _SockFilter(ctypes.Structure):
    _fields_ = [("code", ctypes.c_uint16), ("jt", ctypes.c_uint8), ("jf", ctypes.c_uint8),
                ("k", ctypes.c_uint32)]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_uint16), ("filter", ctypes.POINTER(_SockFilter))]


def attach_filter(sock: socket.socket, program: Sequence[Instruction]) -> None:
    """Attach ``program`` to ``sock`` (the kernel copies it: nothing needs to stay alive)."""
    code = (_SockFilter * len(program))(*[_SockFilter(*ins) for ins in program])
    fprog = _SockFprog(len(program), ctypes.cast(code, ctypes.POINTER(_SockFilter)))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, bytes(memoryview(fprog).cast("B")))
