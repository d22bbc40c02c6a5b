"""Lease file parsers on realistic sample files (tests/data/leases/) and odd snippets."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from producers.dhcp_leases import LeaseFileReader, detect_format, parse_file
from producers.dhcp_leases.leasefiles import ParsedFile
from tests.factories import T0

DATA = Path(__file__).resolve().parents[2] / "data" / "leases"
NOW = T0     # 2026-01-01 12:00 UTC: the sample files are written around it


def parse(name: str, mtime: datetime | None = None) -> ParsedFile:
    path = DATA / name
    return parse_file(str(path), path.read_text(), now=NOW, mtime=mtime)


def by_address(parsed: ParsedFile) -> dict[str, tuple[object, ...]]:
    return {f.lease.address: (f.lease.mac, f.lease.hostname, f.lease.status, f.alive)
            for f in parsed.leases if f.lease.address}


@pytest.mark.parametrize(("name", "fmt"), [
    ("dhclient.leases", "dhclient"),
    ("dhcpd.leases", "dhcpd"),
    ("dnsmasq.leases", "dnsmasq"),
    ("kea/kea-leases4.csv", "kea"),
    ("NetworkManager/internal-3f2c5e0e-1f0b-4b9e-9d3c-5a7f0e6c2b11-eth0.lease", "networkmanager"),
    ("NetworkManager/internal-9a1b2c3d-0000-4000-8000-000000000001-ens3.lease", "networkmanager"),
    ("networkd/2", "networkd"),
])
def test_detect_format(name: str, fmt: str) -> None:
    path = DATA / name
    assert detect_format(str(path), path.read_text()) == fmt


def test_dhclient_last_block_per_interface_wins() -> None:
    parsed = parse("dhclient.leases")
    assert parsed.problems == []
    assert by_address(parsed) == {
        "192.168.1.195": (None, 'web "one"; {x}', "bound", True),   # the renewal replaced .194
        "10.0.0.23": (None, None, "expired", False),
    }
    eth0 = next(f for f in parsed.leases if f.interface == "eth0")
    assert eth0.lease.server == "192.168.1.2" and eth0.lease.origin == "dhclient"
    assert eth0.lease.expires_at == datetime(2026, 1, 2, 1, 40, 56, tzinfo=UTC)


def test_dhcpd_last_block_per_address_wins() -> None:
    parsed = parse("dhcpd.leases")
    assert parsed.problems == []
    assert by_address(parsed) == {
        "192.168.2.102": ("b8:27:eb:42:c9:e9", "red01", "active", True),
        "192.168.2.103": ("b8:27:eb:00:00:03", None, "free", False),   # released after its lease
        "192.168.2.104": ("00:16:3e:00:01:04", "static-forever", "active", True),  # ends never
        "192.168.2.105": ("00:16:3e:00:01:05", None, "active", True),  # db-time-format local
    }
    red = next(f.lease for f in parsed.leases if f.lease.address == "192.168.2.102")
    assert red.client_id == "01:b8:27:eb:42:c9:e9"       # octal-escaped uid, decoded as bytes
    assert red.expires_at == datetime(2026, 1, 2, 11, 50, tzinfo=UTC)
    assert red.last_seen_secs == 10 * 60                   # cltt 11:50, now 12:00
    forever = next(f.lease for f in parsed.leases if f.lease.address == "192.168.2.104")
    assert forever.expires_at is None


def test_dnsmasq_expiry_semantics() -> None:
    parsed = parse("dnsmasq.leases")
    leases = {f.lease.address: f for f in parsed.leases}
    assert by_address(parsed)["192.168.10.128"] == ("52:54:00:d1:23:c2", "ubuntu", "active", True)
    assert by_address(parsed)["192.168.10.121"] == ("aa:bb:cc:11:22:34", None, "active", True)
    infinite = leases["192.168.10.2"].lease                # expiry 0 = infinite
    assert infinite.expires_at is None and leases["192.168.10.2"].alive
    assert by_address(parsed)["192.168.10.50"][2:] == ("expired", False)
    assert leases["192.168.10.60"].lease.mac is None       # InfiniBand: "20-..." not a MAC
    v6 = leases["2001:db8:ca2:2:1::6c"].lease               # after the duid line: field 2 is an IAID
    assert v6.mac is None and v6.client_id and v6.client_id.startswith("00:04:76")
    assert leases["192.168.10.121"].lease.client_id == "01:aa:bb:cc:11:22:34"


@pytest.mark.parametrize(("line", "expires_after", "expires_at"), [
    ("0 aa:bb:cc:00:00:01 10.1.1.1 h *", None, None),                         # infinite
    ("3600 aa:bb:cc:00:00:01 10.1.1.1 h *", 3600, None),                      # length/remaining
    ("1767272400 aa:bb:cc:00:00:01 10.1.1.1 h *", 3600,
     datetime(2026, 1, 1, 13, 0, tzinfo=UTC)),                                # absolute epoch
])
def test_dnsmasq_expiry_forms(line: str, expires_after: int | None,
                              expires_at: datetime | None) -> None:
    parsed = parse_file("/tmp/dhcp.leases", line + "\n", now=NOW, fmt="dnsmasq")
    lease = parsed.leases[0].lease
    assert (lease.expires_after_secs, lease.expires_at) == (expires_after, expires_at)


def test_kea_reads_rotation_files_and_honours_delete_markers(tmp_path: Path) -> None:
    reader = LeaseFileReader([str(DATA / "kea" / "kea-leases4.csv*")])
    import asyncio

    files = asyncio.run(reader.read())
    assert [Path(f.path).name for f in files] == ["kea-leases4.csv"]   # .1 read with it, not alone
    parsed = parse_file(files[0].path, files[0].text, now=NOW)
    assert parsed.problems == []
    assert by_address(parsed) == {
        "10.0.10.90": ("aa:bb:cc:dd:ee:09", "kept-by-lfc.lab.test", "active", True),  # only in .1
        "10.0.10.50": ("aa:bb:cc:dd:ee:01", "laptop-42-renewed", "active", True),     # last row wins
        "10.0.10.70": ("aa:bb:cc:dd:ee:04", "decl", "declined", False),
        "10.0.10.51": (None, "kiosk, lobby", "active", True),                        # escaped comma
        "10.0.10.52": ("aa:bb:cc:dd:ee:52", "expired-one", "expired", False),
    }   # .60 and .80 deleted by valid_lifetime=0 markers


def test_kea_columns_by_name_not_position() -> None:
    text = ("address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,"
            "state,user_context,hwtype,hwaddr_source,pool_id\n"
            "10.9.0.5,aa:bb:cc:dd:ee:05,,3600,1782000000,7,0,0,pf,0,,1,4,0\n")
    parsed = parse_file("kea-leases4.csv", text, now=NOW)
    lease = parsed.leases[0].lease
    assert (lease.address, lease.mac, lease.hostname, lease.server) == (
        "10.9.0.5", "aa:bb:cc:dd:ee:05", "pf", "subnet 7")


def test_networkmanager_full_and_address_only() -> None:
    mtime = datetime(2026, 1, 1, 8, 0, tzinfo=UTC)
    full = parse("NetworkManager/internal-3f2c5e0e-1f0b-4b9e-9d3c-5a7f0e6c2b11-eth0.lease", mtime)
    lease = full.leases[0].lease
    assert (lease.address, lease.server, lease.client_id, lease.origin) == (
        "10.0.2.15", "10.0.2.2", "0108002712e0e7", "networkmanager")
    assert lease.expires_at == datetime(2026, 1, 2, 8, 0, tzinfo=UTC)      # mtime + LIFETIME
    only = parse("NetworkManager/internal-9a1b2c3d-0000-4000-8000-000000000001-ens3.lease", mtime)
    assert only.problems == [] and only.leases[0].lease.address == "192.168.56.120"
    assert only.leases[0].alive and only.leases[0].lease.expires_at is None


def test_networkmanager_internal_lease_anywhere_with_its_mac() -> None:
    """Named by NetworkManager's file name (internal-<uuid>-<iface>.lease), wherever it was
    copied; the MAC is in CLIENTID (hardware type 01 + the address)."""
    text = (DATA / "NetworkManager" / "internal-3f2c5e0e-1f0b-4b9e-9d3c-5a7f0e6c2b11-eth0.lease").read_text()
    parsed = parse_file("/tmp/copy/internal-3f2c5e0e-1f0b-4b9e-9d3c-5a7f0e6c2b11-eth0.lease", text, now=NOW)
    lease = parsed.leases[0].lease
    assert (parsed.format, lease.origin, lease.mac) == ("networkmanager", "networkmanager",
                                                        "08:00:27:12:e0:e7")


def test_networkd_lease() -> None:
    parsed = parse("networkd/2", datetime(2026, 1, 1, 11, 30, tzinfo=UTC))
    lease = parsed.leases[0].lease
    assert (lease.address, lease.hostname, lease.server, lease.origin, lease.status) == (
        "10.75.205.242", "a1", "10.75.205.1", "networkd", "bound")
    assert lease.mac is None                  # CLIENTID ff...: an RFC 4361 DUID, not a MAC


@pytest.mark.parametrize(("fmt", "text", "problem"), [
    ("dhcpd", "lease 10.0.0.1 {\n  binding state active;\n  hardware ethernet zz;\n}\n",
     "not a MAC"),
    ("dhcpd", "lease 10.0.0.1 {\n  binding state active;\n", "is not closed"),     # cut mid-write
    ("dhclient", "lease {\n interface \"eth0\";\n}\n", "no fixed-address"),
    ("dhclient", "lease {\n fixed-address 10.0.0.9;\n expire 2 yesterday;\n}\n", "lease time"),
    ("dnsmasq", "1767272400 aa:bb:cc:00:00:01\n", "expected 5 fields"),
    ("dnsmasq", "soon aa:bb:cc:00:00:01 10.0.0.1 * *\n", "invalid literal"),
    ("kea", "10.0.0.1,aa:bb:cc:dd:ee:ff\n", "before the CSV header"),
    ("networkd", "# This is private data. Do not parse.\nNETMASK=255.0.0.0\n", "no ADDRESS"),
])
def test_bad_entries_are_reported_and_skipped(fmt: str, text: str, problem: str) -> None:
    parsed = parse_file("/x", text, now=NOW, fmt=fmt)
    assert parsed.leases == []
    assert any(problem in p for p in parsed.problems), parsed.problems


KEA_HEADER = ("address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,"
              "state,user_context,pool_id\n")
KEA_ROW = "10.0.10.50,aa:bb:cc:dd:ee:01,,691200,1782000000,1,0,0,laptop-42,0,,0\n"


@pytest.mark.parametrize(("cut", "problem"), [
    ("10.0.10.51,aa:bb:cc:dd:ee:02,,691200,17820", "line 3: the last row has no line end"),
    ("10.0.10.51,aa:bb:cc:dd:ee:02,,691200,1782000000,1,0,0,ph,0,,0", "line 3: the last row has no"),
    ("10.0.10.51,aa:bb:cc:dd:ee:02,,691200,17820\n", "line 3: 5 of the header's 12 columns"),
], ids=["mid-field", "no-line-end", "short-row"])
def test_kea_row_cut_mid_write_is_a_problem_not_a_lease(cut: str, problem: str) -> None:
    """Kea writes whole lines: a last row without its line end (or short of columns) was cut;
    read as a lease, its expiry 17820 made it a lease of 1970 (or an active one)."""
    parsed = parse_file("kea-leases4.csv", KEA_HEADER + KEA_ROW + cut, now=NOW)
    assert [f.lease.address for f in parsed.leases] == ["10.0.10.50"]
    assert len(parsed.problems) == 1 and parsed.problems[0].startswith(problem), parsed.problems


def test_a_bad_block_loses_nothing_else() -> None:
    text = ("lease 10.0.0.1 {\n  hardware ethernet zz;\n}\n"
            "lease 10.0.0.2 {\n  binding state active;\n  hardware ethernet 00:11:22:33:44:55;\n}\n")
    parsed = parse_file("/x", text, now=NOW, fmt="dhcpd")
    assert [f.lease.address for f in parsed.leases] == ["10.0.0.2"] and len(parsed.problems) == 1


async def test_missing_and_unreadable_files_warn_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = tmp_path / "dnsmasq.leases"
    good.write_text("0 aa:bb:cc:00:00:01 10.1.1.1 h *\n")
    locked = tmp_path / "locked.leases"
    locked.write_text("x")
    locked.chmod(0)
    missing = tmp_path / "absent.leases"
    reader = LeaseFileReader([str(missing), str(locked), str(good), str(tmp_path / "nope-*.lease")])
    caplog.set_level(logging.INFO)
    for _ in range(3):
        files = await reader.read()
        if os.geteuid() != 0:        # root reads mode-0 files; the missing one still counts
            assert [f.path for f in files] == [str(good)]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings.count(f"lease files not found (skipped): {missing}") == 1
    if os.geteuid() != 0:
        assert sum("cannot read lease file" in w for w in warnings) == 1
    assert len(warnings) == (1 if os.geteuid() == 0 else 2)   # the empty glob is not a warning
    missing.write_text("0 aa:bb:cc:00:00:02 10.1.1.2 h *\n")
    assert str(missing) in [f.path for f in await reader.read()]
    assert any("readable again" in r.getMessage() for r in caplog.records)


async def test_huge_file_reads_its_end(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "dnsmasq.leases"
    lines = [f"0 aa:bb:cc:00:{i // 256:02x}:{i % 256:02x} 10.1.{i // 256}.{i % 256} h *"
             for i in range(2000)]
    path.write_text("\n".join(lines) + "\n")
    files = await LeaseFileReader([str(path)], max_bytes=4096).read()
    parsed = parse_file(files[0].path, files[0].text, now=NOW)
    assert parsed.problems == [] and parsed.leases[-1].lease.address == "10.1.7.207"
    assert "larger than 4096 bytes" in caplog.text
