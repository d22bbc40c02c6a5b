"""The passive listener's parser: what each kind of frame says about its sender."""

from __future__ import annotations

import pytest

from producers.passive._io import bpf_program
from producers.passive.packets import Sighting, parse_frame
from schemas import DhcpRequest
from tests.producers.passive import frames as f

PHONE = "3c:22:fb:12:34:56"
ROUTER = "00:00:0c:00:00:fe"


@pytest.mark.parametrize(("frame", "expected"), [
    (f.arp(1, PHONE, "192.168.1.20", "192.168.1.1"), Sighting("arp-request", PHONE, "192.168.1.20")),
    (f.arp(1, PHONE, "0.0.0.0", "192.168.1.20"), Sighting("arp-probe", PHONE)),
    (f.arp(1, PHONE, "192.168.1.20", "192.168.1.20"), Sighting("garp", PHONE, "192.168.1.20")),
    (f.arp(2, PHONE, "192.168.1.20", "192.168.1.20"), Sighting("garp", PHONE, "192.168.1.20")),
    # An ordinary reply (to us or anyone else) is the ARP sweep's business.
    (f.arp(2, PHONE, "192.168.1.20", "192.168.1.1", dst=ROUTER), None),
    # Senders that are no host: zero, multicast and broadcast MACs.
    (f.arp(1, "00:00:00:00:00:00", "192.168.1.20", "192.168.1.1"), None),
    (f.arp(1, "01:00:5e:00:00:01", "192.168.1.20", "192.168.1.1"), None),
], ids=["request", "probe", "garp-request", "garp-reply", "reply", "zero-mac", "multicast-mac"])
def test_arp(frame: bytes, expected: Sighting | None) -> None:
    assert parse_frame(frame) == expected


def test_dhcp_discover_carries_the_clients_fingerprint() -> None:
    frame = f.dhcp_client(PHONE, 1, o12=b"Pixel-7\0", o60=b"android-dhcp-13",
                          o55=bytes([1, 3, 6, 15, 26, 28, 51, 58, 59, 43]),
                          o61=bytes.fromhex("013c22fb123456"), o50=bytes([192, 168, 1, 77]))
    assert parse_frame(frame) == Sighting("dhcp-discover", PHONE, None, DhcpRequest(
        message="discover", hostname="Pixel-7", vendor_class="android-dhcp-13",
        parameters=[1, 3, 6, 15, 26, 28, 51, 58, 59, 43], client_id="01:3c:22:fb:12:34:56",
        requested_ip="192.168.1.77"))


@pytest.mark.parametrize(("message", "ciaddr", "options", "kind", "ip"), [
    (3, "0.0.0.0", {"o50": bytes([192, 168, 1, 77])}, "dhcp-request", "192.168.1.77"),   # accepts an offer
    (3, "192.168.1.77", {}, "dhcp-request", "192.168.1.77"),                            # renews
    (8, "192.168.1.77", {}, "dhcp-inform", "192.168.1.77"),
    (7, "192.168.1.77", {}, "dhcp-release", "192.168.1.77"),
    (4, "0.0.0.0", {"o50": bytes([192, 168, 1, 77])}, "dhcp-decline", None),             # it is taken
])
def test_dhcp_client_messages(message: int, ciaddr: str, options: dict[str, bytes], kind: str,
                              ip: str | None) -> None:
    sighting = parse_frame(f.dhcp_client(PHONE, message, ciaddr=ciaddr, **options))
    assert sighting is not None and (sighting.kind, sighting.ip) == (kind, ip)
    assert sighting.alive is (kind != "dhcp-release")


def test_a_dhcp_server_reply_names_the_server_and_its_role() -> None:
    sighting = parse_frame(f.dhcp_server(ROUTER, "192.168.1.1", PHONE))
    assert sighting == Sighting("dhcp-server", ROUTER, "192.168.1.1")
    assert sighting.role == "dhcp-server"


@pytest.mark.parametrize("frame", [
    f.dhcp_client(PHONE, 2),                          # an OFFER is no client message
    f.dhcp_client(PHONE, 1)[:200],                    # truncated
    f.ether(f.BROADCAST, PHONE, 0x0800, f.ipv4_udp("0.0.0.0", "255.255.255.255", 68, 67,
                                                    f.bootp(1, PHONE, f.dhcp_options(o53=b"\x01")),
                                                    fragment=0x2000 | 3)),   # a fragment
    f.ether(f.BROADCAST, PHONE, 0x0800, f.ipv4_udp("0.0.0.0", "255.255.255.255", 68, 67, b"\0" * 240)),
], ids=["offer-from-client-port", "truncated", "fragment", "no-magic-cookie"])
def test_not_dhcp(frame: bytes) -> None:
    assert parse_frame(frame) is None


def test_hostile_dhcp_text_is_capped_and_decoded_with_replacement() -> None:
    sighting = parse_frame(f.dhcp_client(PHONE, 1, o12=b"\xff\xfe" + b"x" * 253))
    assert sighting is not None and sighting.dhcp is not None
    assert sighting.dhcp.hostname is not None and len(sighting.dhcp.hostname) == 255


@pytest.mark.parametrize(("frame", "expected"), [
    (f.neighbour_solicitation(PHONE, "::", "fd00::20"), Sighting("ndp-dad", PHONE, "fd00::20")),
    (f.neighbour_solicitation(PHONE, "::", "fe80::20"), Sighting("ndp-dad", PHONE)),   # link-local: MAC only
    (f.neighbour_solicitation(PHONE, "fd00::1", "fd00::2"), Sighting("ndp-ns", PHONE, "fd00::1")),
    (f.neighbour_solicitation(PHONE, "fe80::1", "fe80::2"), Sighting("ndp-ns", PHONE)),
    (f.neighbour_advertisement(PHONE, "fd00::20"), Sighting("ndp-na", PHONE, "fd00::20")),
    (f.neighbour_advertisement(PHONE, "fd00::20", dst="fe80::9"), None),   # an answer, not news
    (f.router_solicitation(PHONE), Sighting("ndp-rs", PHONE)),
    (f.router_advertisement(ROUTER, "fe80::1"), Sighting("ndp-ra", ROUTER)),
    # Hop limit below 255: it crossed a router, so it is no neighbour discovery (RFC 4861).
    (f.icmpv6(PHONE, "::", "ff02::1:ff00:1", 135, b"\0" * 20, hop_limit=64), None),
], ids=["dad", "dad-link-local", "ns", "ns-link-local", "unsolicited-na", "solicited-na", "rs", "ra",
        "hop-limit"])
def test_ndp(frame: bytes, expected: Sighting | None) -> None:
    assert parse_frame(frame) == expected


@pytest.mark.parametrize("length", range(0, 80, 7))
def test_truncated_frames_are_no_sighting(length: int) -> None:
    for frame in (f.arp(1, PHONE, "192.168.1.20", "192.168.1.1"), f.dhcp_client(PHONE, 1),
                  f.router_advertisement(ROUTER, "fe80::1")):
        assert parse_frame(frame[:length]) is None or length >= 42


# ------------------------------------------------------------------ the kernel filter


def _run_bpf(program: list[tuple[int, int, int, int]], packet: bytes) -> int:
    """A classic-BPF interpreter for the instructions the filter uses."""
    a = x = pc = 0
    while True:
        code, jt, jf, k = program[pc]
        pc += 1
        if code == 0x28:
            a = int.from_bytes(packet[k:k + 2], "big")
        elif code == 0x30:
            a = packet[k]
        elif code == 0x48:
            a = int.from_bytes(packet[x + k:x + k + 2], "big")
        elif code == 0xB1:
            x = 4 * (packet[k] & 0x0F)
        elif code == 0x06:
            return k
        elif code in (0x15, 0x25, 0x35, 0x45):
            taken = {0x15: a == k, 0x25: a > k, 0x35: a >= k, 0x45: bool(a & k)}[code]
            pc += jt if taken else jf
        else:
            raise AssertionError(f"instruction {code:#x} not interpreted")


@pytest.mark.parametrize(("frame", "passes"), [
    (f.arp(1, PHONE, "192.168.1.20", "192.168.1.1"), True),
    (f.dhcp_client(PHONE, 1), True),
    (f.dhcp_server(ROUTER, "192.168.1.1", PHONE), True),
    (f.router_advertisement(ROUTER, "fe80::1"), True),
    (f.neighbour_solicitation(PHONE, "::", "fd00::20"), True),
    (f.ether(f.BROADCAST, PHONE, 0x0800, f.ipv4_udp("192.168.1.20", "192.168.1.255", 137, 137, b"x" * 50)),
     False),
    (f.ether(f.BROADCAST, PHONE, 0x0800, f.ipv4_udp("0.0.0.0", "255.255.255.255", 68, 67, b"x",
                                                    fragment=0x2000 | 8)), False),
    (f.icmpv6(PHONE, "fe80::1", "fe80::2", 128, b"\0" * 8), False),        # an echo request
    (f.ether(f.BROADCAST, PHONE, 0x88CC, b"\0" * 60), False),              # LLDP
], ids=["arp", "dhcp-client", "dhcp-server", "ra", "dad", "netbios", "fragment", "ping6", "lldp"])
def test_the_kernel_filter_passes_only_what_the_parser_reads(frame: bytes, passes: bool) -> None:
    assert (_run_bpf(bpf_program(), frame + b"\0" * 64) > 0) is passes
