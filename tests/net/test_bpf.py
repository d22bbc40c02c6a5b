"""A classic BPF filter attached to a socket: the kernel drops what it rejects (loopback UDP)."""

from __future__ import annotations

import socket

from lanscope.net.bpf import attach_filter


def test_the_kernel_queues_only_what_the_filter_accepts() -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        receiver.bind(("127.0.0.1", 0))
        receiver.settimeout(5)
        # A UDP socket's filter sees the UDP header (8 bytes), then the payload.
        attach_filter(receiver, [
            (0x30, 0, 0, 8),          # ldb [8]     the payload's first byte
            (0x15, 0, 1, ord("A")),   # jeq #'A'    else drop
            (0x06, 0, 0, 0xFFFF),     # accept
            (0x06, 0, 0, 0),          # drop
        ])
        for payload in (b"B-dropped", b"C-dropped", b"A-kept"):
            sender.sendto(payload, receiver.getsockname())
        assert receiver.recv(64) == b"A-kept"
    finally:
        receiver.close()
        sender.close()
