"""`lanscope scan` against the lab: tables, and XML/JSON/grepable read the way nmap consumers read them."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

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
