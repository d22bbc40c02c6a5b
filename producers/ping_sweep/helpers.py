"""The seed's two ping helpers, as plain blocking functions on the ICMP I/O of the sweep."""

from __future__ import annotations

import ipaddress
import socket
import time

from producers.ping_sweep._io import icmp_sweep


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return ipaddress.ip_address(socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)[0][4][0])


def ping(host: str, count: int = 4, timeout_secs: float = 1.0,
         interval_secs: float = 0.2) -> tuple[bool, list[float]]:
    """Send ``count`` echo requests; (reachable, round-trip times in ms of the replies)."""
    address = _address(host)
    times: list[float] = []
    for i in range(count):
        reply = icmp_sweep([address], retries=0, timeout_ms=int(timeout_secs * 1000),
                           quiet_ms=int(timeout_secs * 1000)).get(address)
        if reply is not None:
            times.append(round(reply.rtt_ms, 3))
            if i < count - 1:
                time.sleep(interval_secs)      # pace like ping(8), not a flood
    return bool(times), times


def is_alive(host: str, timeout_secs: float = 1.0) -> bool:
    """The fast check: one echo request, at most ``timeout_secs`` of waiting."""
    address = _address(host)
    return address in icmp_sweep([address], retries=0, timeout_ms=int(timeout_secs * 1000),
                                 quiet_ms=int(timeout_secs * 1000))
