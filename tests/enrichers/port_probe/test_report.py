"""What the scan and probe tables show of a port: the banner's greeting, nmap's one line for a
host with nothing to show."""

from __future__ import annotations

import pytest

from enrichers.port_probe.fingerprint import escape_banner
from enrichers.port_probe.report import all_hidden, port_row
from enrichers.port_probe.stage import HostReport
from tests.factories import port

# Dropbear sends its SSH_MSG_KEXINIT right behind the greeting, in the same segment.
DROPBEAR = b"SSH-2.0-dropbear_2022.83\r\n\x00\x00\x01\xfc\x07\x14\x8a\x1b\xcf\x8b\x9a\x91curve25519-sha256"


@pytest.mark.parametrize(("raw", "shown"), [
    (DROPBEAR, "SSH-2.0-dropbear_2022.83"),
    (b"SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10\r\n", "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u10"),
    (b"220 smtp.lab.test ESMTP\r\n250-PIPELINING\r\n", "220 smtp.lab.test ESMTP 250-PIPELINING"),
    (b"+OK\tready\\path\r\n", "+OK ready\\path"),
    (b"0m\x02\x01\x00\x04\x06public", ""),                 # a binary (SNMP) reply: no greeting
    (b"\x00\x00\x00\x0aJ\x00", ""),
])
def test_banner_column_shows_the_printable_greeting(raw: bytes, shown: str) -> None:
    row = port_row(port(22, banner=escape_banner(raw)))
    assert row[-1] == shown


def test_a_host_with_every_port_hidden_gets_nmaps_line() -> None:
    report = HostReport("198.18.0.2", ports=[port(p, "closed") for p in range(1, 101)])
    assert all_hidden(report) == "All 100 scanned ports on 198.18.0.2 are closed"
    mixed = HostReport("198.18.0.2", ports=[port(p, "closed") for p in range(1, 31)]
                       + [port(p, "filtered") for p in range(31, 61)])
    assert all_hidden(mixed) == "All 60 scanned ports on 198.18.0.2 are closed (30) or filtered (30)"
