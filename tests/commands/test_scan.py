"""`lanscope scan` against the lab: tables, and XML/JSON/grepable read the way nmap consumers read them."""

from __future__ import annotations

import contextlib
import io
import json
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from lanscope.cli import main
from tests.lab import Lab

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def outputs(lab: Lab, cfg: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("scan")
    files = {"xml": d / "scan.xml", "json": d / "scan.json", "grepable": d / "scan.gnmap"}
    ips = ",".join(lab.host(n).ip for n in ("ssh", "nginx", "filtered"))
    argv = ["-c", cfg, "scan", *ips.split(","), "-Pn", "-p", "22,80,8081,8082", "-sU", "--open"]
    for fmt, path in files.items():
        argv += ["-o", fmt, str(path)]
    assert main(argv) == 0
    return files


def test_xml_reads_like_nmap_xml(lab: Lab, outputs: dict[str, Path]) -> None:
    root = ET.parse(outputs["xml"]).getroot()
    assert root.tag == "nmaprun" and root.get("scanner") == "lanscope"
    assert {s.get("protocol") for s in root.findall("scaninfo")} == {"tcp", "udp"}
    hosts = {h.find("address").get("addr"): h for h in root.findall("host")}       # type: ignore[union-attr]
    ssh = hosts[lab.host("ssh").ip]
    assert ssh.find("status").get("state") == "up"                                  # type: ignore[union-attr]
    port = next(p for p in ssh.iter("port") if p.get("portid") == "22")
    assert port.get("protocol") == "tcp"
    assert port.find("state").attrib["state"] == "open"                             # type: ignore[union-attr]
    service = port.find("service")
    assert service is not None and service.get("name") == "ssh" and service.get("product") == "OpenSSH"
    assert service.get("conf") == "10" and service.find("cpe").text.startswith("cpe:/a:openbsd:openssh")  # type: ignore[union-attr]
    assert root.find("runstats/hosts").get("up") == "3"                             # type: ignore[union-attr]


def test_xml_parses_with_python_nmap(lab: Lab, outputs: dict[str, Path]) -> None:
    nmap = pytest.importorskip("nmap")
    scanner = nmap.PortScanner.__new__(nmap.PortScanner)     # no nmap binary needed to parse
    result = scanner.analyse_nmap_xml_scan(outputs["xml"].read_text())
    host = result["scan"][lab.host("filtered").ip]
    assert host["tcp"][80]["product"] == "nginx"
    assert host["tcp"][8081]["state"] == "filtered"
    assert host["tcp"][8082]["state"] == "closed"
    assert result["nmap"]["scanstats"]["uphosts"] == "3"


def test_json_is_shaped_like_python_nmap(lab: Lab, outputs: dict[str, Path]) -> None:
    data = json.loads(outputs["json"].read_text())
    entry = data["scan"][lab.host("ssh").ip]["tcp"]["22"]
    assert set(entry) == {"state", "reason", "name", "product", "version", "extrainfo", "conf", "cpe"}
    assert (entry["state"], entry["reason"], entry["name"], entry["product"]) == ("open", "syn-ack", "ssh",
                                                                                   "OpenSSH")
    assert data["nmap"]["scaninfo"]["tcp"]["services"] == "22,80,8081-8082"


def test_grepable_like_nmap(lab: Lab, outputs: dict[str, Path]) -> None:
    text = outputs["grepable"].read_text()
    prefix = f"Host: {lab.host('nginx').ip} "
    line = next(x for x in text.splitlines() if x.startswith(prefix) and "Ports:" in x)
    assert "80/open/tcp//http//nginx" in line
    assert text.splitlines()[-1].startswith("# lanscope done")


def test_bad_output_format(lab: Lab, cfg: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", cfg, "scan", lab.host("ssh").ip, "-Pn", "-p", "22", "-o", "yaml", "x"]) == 2
    assert "yaml" in capsys.readouterr().err


# --------------------------------------------------------------------------- stdout holds the document


def grepable_lines(text: str) -> list[str]:
    lines = text.splitlines()
    assert lines and all(line.startswith(("# lanscope", "Host: ")) for line in lines), text
    return lines


@pytest.mark.parametrize(("flags", "parse"), [
    (["-oJ", "-"], json.loads),
    (["--json"], json.loads),
    (["-o", "json", "-"], json.loads),
    (["-oX", "-"], ET.fromstring),
    (["-o", "xml", "-"], ET.fromstring),
    (["-oG", "-"], grepable_lines),
    (["-o", "grepable", "-"], grepable_lines),
], ids=["oJ", "json", "o-json", "oX", "o-xml", "oG", "o-grepable"])
def test_a_document_on_stdout_is_all_stdout_holds(lab: Lab, cfg: str, flags: list[str], parse: Any,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """`scan ... -oJ - | python3 -m json.tool` failed on the table and summary printed first."""
    assert main(["-c", cfg, "scan", lab.host("ssh").ip, "-Pn", "-p", "22,23", *flags]) == 0
    out, err = capsys.readouterr()
    assert parse(out)
    assert "┏" not in out and "lanscope done:" not in out.replace("# lanscope done", "")
    assert "lanscope done: 1 IP addresses (1 hosts up)" in err


def test_two_documents_cannot_share_stdout(lab: Lab, cfg: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["-c", cfg, "scan", lab.host("ssh").ip, "-Pn", "-p", "22", "-oX", "-", "-oJ", "-"]) == 2
    assert "only one document can go to stdout" in capsys.readouterr().err


# --------------------------------------------------------------------------- names and vendors


@pytest.fixture(scope="module")
def dns_cfg(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("dns") / "config.yaml"
    path.write_text(f"scope:\n  allow: [198.18.0.0/15]\ndns:\n  servers: [{Lab.DNS_IP}]\n")
    return str(path)


@pytest.fixture(scope="module")
def lan(lab: Lab, dns_cfg: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One scan of the lab's /24 with discovery: the table, -oX and -oJ."""
    d = tmp_path_factory.mktemp("lan")
    table = io.StringIO()
    with contextlib.redirect_stdout(table):
        code = main(["-c", dns_cfg, "scan", "198.18.0.0/24", "-p", "22", "--no-fingerprint",
                     "-oX", str(d / "lan.xml"), "-oJ", str(d / "lan.json")])
    assert code == 0
    return {"table": table.getvalue(), "xml": ET.parse(d / "lan.xml").getroot(),
            "json": json.loads((d / "lan.json").read_text())}


def test_every_host_shows_its_mac_vendor_and_name(lab: Lab, lan: dict[str, Any]) -> None:
    """MACs beginning with a letter vanished from the titles (rich read `[dc:a6:…]` as markup)."""
    table = lan["table"]
    for host in lab.live_hosts(Lab.LIVE_24):
        assert f"{host.name}.lab.test ({host.ip})" in table
        assert f"MAC {host.mac}" in table
    assert "MAC dc:a6:32:00:00:02 (Raspberry Pi Trading Ltd)" in table


def test_xml_has_hostnames_and_vendors_like_nmap(lab: Lab, lan: dict[str, Any]) -> None:
    hosts = {h.find("address").get("addr"): h for h in lan["xml"].findall("host")}   # type: ignore[union-attr]
    ssh = hosts[lab.host("ssh").ip]
    assert [(n.get("name"), n.get("type")) for n in ssh.iter("hostname")] == [("ssh.lab.test", "PTR")]
    mac = next(a for a in ssh.findall("address") if a.get("addrtype") == "mac")
    assert mac.get("addr") == lab.host("ssh").mac.upper()
    assert mac.get("vendor") == "Proxmox Server Solutions GmbH"


def test_json_has_hostnames_and_vendors_like_python_nmap(lab: Lab, lan: dict[str, Any]) -> None:
    f01 = lab.host("f01")
    entry = lan["json"]["scan"][f01.ip]
    assert entry["hostnames"] == [{"name": "f01.lab.test", "type": "PTR"}]
    assert entry["vendor"] == {f01.mac.upper(): "Raspberry Pi Trading Ltd"}


def test_a_hostname_target_resolves_through_dns_servers(lab: Lab, dns_cfg: str,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """The system resolver knows nothing of lab.test; dns.servers (the lab's dnsmasq) does."""
    assert main(["-c", dns_cfg, "scan", "ssh.lab.test", "-Pn", "-p", "22", "-oX", "-"]) == 0
    root = ET.fromstring(capsys.readouterr().out)
    host = root.find("host")
    assert host is not None and host.find("address").get("addr") == lab.host("ssh").ip  # type: ignore[union-attr]
    assert [(n.get("name"), n.get("type")) for n in host.iter("hostname")] == [
        ("ssh.lab.test", "user"), ("ssh.lab.test", "PTR")]


def test_a_host_with_every_port_hidden_gets_one_line_not_an_empty_table(
        lab: Lab, cfg: str, capsys: pytest.CaptureFixture[str]) -> None:
    f01 = lab.host("f01")
    assert main(["-c", cfg, "scan", f01.ip, "-Pn", "-n", "-p", "1-100"]) == 0
    out = capsys.readouterr().out
    assert f"All 100 scanned ports on {f01.ip} are closed" in out
    assert "┏" not in out and "PORT" not in out


# --------------------------------------------------------------------------- huge IPv6 targets


@pytest.mark.parametrize("argv", [
    ["scan", "fd00:1a5::/64", "--force", "-p", "22"],
    ["scan", "fd00:1a5::/64", "-p", "22"],
    ["ping", "fd00:1a5::/64", "--force"],
    ["ping", "fd00:1a5::/96", "--force"],
    ["list", "-n", "fd00:1a5::/64"],
    ["list", "-n", "2001:db8::/32"],
], ids=lambda argv: " ".join(argv))
def test_huge_ipv6_targets_are_refused_politely(lab: Lab, cfg: str, argv: list[str],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`OverflowError: cannot fit 'int' into an index-sized integer` at len(targets), even with
    --force; now a refusal that says what to pass, before any packet."""
    assert main(["-c", cfg, *argv]) == 2
    err = capsys.readouterr().err
    assert "at most 16,777,216" in err and "smaller" in err and "Traceback" not in err
