"""Scan reports in nmap's formats: XML (``-oX``), grepable (``-oG``) and python-nmap's scan dict (JSON).

The XML follows nmap.dtd closely enough for tools that read ``nmap -oX``
(python-nmap, Metasploit's db_import, ndiff ...): nmaprun/scaninfo/host/
status/address/hostnames/ports/extraports/port/state/service/cpe/os/
runstats. Text from banners is attacker-controlled; ElementTree escapes it.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

from lanscope import __version__
from lanscope.net.ports import PortSpec
from schemas import PortResult, PortState

from .stage import HostReport


@dataclass
class ScanRun:
    """Everything one ``lanscope scan`` found, for the report writers."""

    args: str
    spec: PortSpec
    scan_type: str
    started: float                      # epoch seconds
    finished: float
    reports: dict[str, HostReport]      # only hosts that are up
    down: int = 0
    macs: dict[str, str] = field(default_factory=dict)
    hostnames: dict[str, str] = field(default_factory=dict)     # reverse DNS (nmap's type "PTR")
    given_names: dict[str, str] = field(default_factory=dict)   # the name the user typed ("user")
    vendors: dict[str, str] = field(default_factory=dict)       # MAC vendor, by IP
    up_reasons: dict[str, str] = field(default_factory=dict)

    def names(self, ip: str) -> list[tuple[str, str]]:
        """(name, type) pairs as nmap lists them: the name given, then the PTR name."""
        out = [(self.given_names[ip], "user")] if ip in self.given_names else []
        if ip in self.hostnames:
            out.append((self.hostnames[ip], "PTR"))
        return out

    def name(self, ip: str) -> str:
        """The one name nmap shows for a host (PTR, else the name given), or ""."""
        return self.hostnames.get(ip) or self.given_names.get(ip, "")


def _service_text(p: PortResult) -> str:
    return " ".join(x for x in (p.product, p.version, f"({p.extra_info})" if p.extra_info else None) if x)


def _method(p: PortResult) -> str:
    return "table" if p.method in (None, "port") else "probed"


def _vendor(run: ScanRun, ip: str) -> str:
    """The MAC vendor as nmap writes it: a maker's name ("(randomised)" is none)."""
    vendor = run.vendors.get(ip, "")
    return "" if vendor.startswith("(") else vendor


def _addrtype(ip: str) -> str:
    return "ipv6" if ":" in ip else "ipv4"


def to_xml(run: ScanRun) -> str:
    import xml.etree.ElementTree as ET  # only -oX needs it

    root = ET.Element("nmaprun", scanner="lanscope", args=run.args, start=str(int(run.started)),
                      startstr=time.ctime(run.started), version=__version__, xmloutputversion="1.05")
    for proto, ports in (("tcp", run.spec.tcp), ("udp", run.spec.udp)):
        if ports:
            ET.SubElement(root, "scaninfo", type=run.scan_type if proto == "tcp" else "udp",
                          protocol=proto, numservices=str(len(ports)),
                          services=run.spec.describe()[0 if proto == "tcp" else -1].split(":", 1)[1])
    ET.SubElement(root, "verbose", level="0")
    ET.SubElement(root, "debugging", level="0")
    for ip, report in sorted(run.reports.items(), key=lambda kv: ip_key(kv[0])):
        host = ET.SubElement(root, "host", starttime=str(int(run.started)), endtime=str(int(run.finished)))
        ET.SubElement(host, "status", state="up", reason=run.up_reasons.get(ip, "user-set"), reason_ttl="0")
        ET.SubElement(host, "address", addr=ip, addrtype=_addrtype(ip))
        if ip in run.macs:
            mac_attrs = {"addr": run.macs[ip].upper(), "addrtype": "mac"}
            if _vendor(run, ip):
                mac_attrs["vendor"] = _vendor(run, ip)
            ET.SubElement(host, "address", mac_attrs)
        names = ET.SubElement(host, "hostnames")
        for name, kind in run.names(ip):
            ET.SubElement(names, "hostname", name=name, type=kind)
        ports_el = ET.SubElement(host, "ports")
        for state, reasons in report.hidden_reasons().items():
            extra = ET.SubElement(ports_el, "extraports", state=state, count=str(sum(reasons.values())))
            for reason, n in reasons.items():
                ET.SubElement(extra, "extrareasons", reason=reason, count=str(n))
        for p in report.shown():
            port_el = ET.SubElement(ports_el, "port", protocol=p.protocol.value, portid=str(p.port))
            state_attrs = {"state": p.state.value, "reason": p.reason or "unknown",
                           "reason_ttl": str(p.reason_ttl or 0)}
            ET.SubElement(port_el, "state", state_attrs)
            if p.service or p.product:
                attrs = {"name": p.service or "unknown"}
                for key, value in (("product", p.product), ("version", p.version),
                                   ("extrainfo", p.extra_info), ("ostype", p.os_hint),
                                   ("devicetype", p.device_type), ("tunnel", p.tunnel)):
                    if value:
                        attrs[key] = value
                attrs["method"] = _method(p)
                attrs["conf"] = str(p.confidence if p.confidence is not None else 3)
                service = ET.SubElement(port_el, "service", attrs)
                for cpe in p.cpe:
                    ET.SubElement(service, "cpe").text = cpe
        if report.os is not None:
            os_el = ET.SubElement(host, "os")
            ET.SubElement(os_el, "osmatch", name=report.os.name, accuracy=str(report.os.confidence * 10),
                          line="0")
        ET.SubElement(host, "times", srtt="0", rttvar="0", to="100000")
    runstats = ET.SubElement(root, "runstats")
    elapsed = run.finished - run.started
    up = len(run.reports)
    ET.SubElement(runstats, "finished", time=str(int(run.finished)), timestr=time.ctime(run.finished),
                  elapsed=f"{elapsed:.2f}", exit="success",
                  summary=f"lanscope done; {up + run.down} IP addresses ({up} hosts up) "
                          f"scanned in {elapsed:.2f} seconds")
    ET.SubElement(runstats, "hosts", up=str(up), down=str(run.down), total=str(up + run.down))
    ET.indent(root)
    body = ET.tostring(root, encoding="unicode")
    return ('<?xml version="1.0" encoding="UTF-8"?>\n<!DOCTYPE nmaprun>\n'
            '<?xml-stylesheet href="file:///usr/share/nmap/nmap.xsl" type="text/xsl"?>\n' + body + "\n")


def to_python_nmap(run: ScanRun) -> dict[str, Any]:
    """The dictionary python-nmap's ``PortScanner.scan()`` returns (ports as string keys in JSON)."""
    scaninfo: dict[str, Any] = {}
    for proto, ports in (("tcp", run.spec.tcp), ("udp", run.spec.udp)):
        if ports:
            scaninfo[proto] = {"method": run.scan_type if proto == "tcp" else "udp",
                               "services": run.spec.describe()[0 if proto == "tcp" else -1].split(":", 1)[1]}
    up = len(run.reports)
    out: dict[str, Any] = {
        "nmap": {"command_line": run.args, "scaninfo": scaninfo,
                 "scanstats": {"timestr": time.ctime(run.finished),
                               "elapsed": f"{run.finished - run.started:.2f}", "uphosts": str(up),
                               "downhosts": str(run.down), "totalhosts": str(up + run.down)}},
        "scan": {},
    }
    for ip, report in sorted(run.reports.items(), key=lambda kv: ip_key(kv[0])):
        addresses = {_addrtype(ip): ip}
        vendor: dict[str, str] = {}
        if ip in run.macs:
            addresses["mac"] = run.macs[ip].upper()
            if _vendor(run, ip):
                vendor[addresses["mac"]] = _vendor(run, ip)
        host: dict[str, Any] = {
            "hostnames": [{"name": name, "type": kind} for name, kind in run.names(ip)]
            or [{"name": "", "type": ""}],
            "addresses": addresses, "vendor": vendor,
            "status": {"state": "up", "reason": run.up_reasons.get(ip, "user-set")},
        }
        for p in report.shown():
            host.setdefault(p.protocol.value, {})[p.port] = {
                "state": p.state.value, "reason": p.reason, "name": p.service or "",
                "product": p.product or "", "version": p.version or "", "extrainfo": p.extra_info or "",
                "conf": str(p.confidence if p.confidence is not None else ""),
                "cpe": p.cpe[0] if p.cpe else ""}
        if report.os is not None:
            host["osmatch"] = [{"name": report.os.name, "accuracy": str(report.os.confidence * 10),
                                "line": "0", "osclass": []}]
        out["scan"][ip] = host
    return out


def to_grepable(run: ScanRun) -> str:
    lines = [f"# lanscope {__version__} scan initiated {time.ctime(run.started)} as: {run.args}"]
    for ip, report in sorted(run.reports.items(), key=lambda kv: ip_key(kv[0])):
        name = run.name(ip)
        lines.append(f"Host: {ip} ({name})\tStatus: Up")
        fields = []
        for p in report.shown():
            text = _service_text(p).replace("/", "|").replace(",", "")
            service = (f"ssl|{p.service}" if p.tunnel == "ssl" and p.service else p.service or "")
            fields.append(f"{p.port}/{p.state.value}/{p.protocol.value}//{service}//{text}/")
        entry = f"Host: {ip} ({name})\tPorts: {', '.join(fields)}"
        hidden = report.not_shown()
        if hidden:
            state, count = max(hidden.items(), key=lambda item: item[1])
            entry += f"\tIgnored State: {state} ({count})"
        if report.os is not None:
            entry += f"\tOS: {report.os.name}"
        lines.append(entry)
    up = len(run.reports)
    lines.append(f"# lanscope done at {time.ctime(run.finished)} -- {up + run.down} IP addresses "
                 f"({up} hosts up) scanned in {run.finished - run.started:.2f} seconds")
    return "\n".join(lines) + "\n"


def ip_key(ip: str) -> tuple[int, int]:
    import ipaddress

    address = ipaddress.ip_address(ip)
    return (address.version, int(address))


# A stored banner is escaped text (``fingerprint.escape_banner``): printable ASCII, ``\\\\``,
# ``\\r``, ``\\n`` and ``\\xNN``, read here token by token.
_MIN_GREETING = 4
_BANNER_TOKEN = re.compile(r"\\x[0-9a-f]{2}|\\[\\rn]|[^\\]+|\\")


def banner_text(banner: str | None) -> str:
    """What a table shows of a banner: the text before the first binary byte (the Dropbear
    greeting, not the SSH KEXINIT packet after it), line ends and tabs as spaces; nothing for
    a binary reply."""
    parts: list[str] = []
    binary = False
    for token in _BANNER_TOKEN.findall(banner or ""):
        if token in ("\\r", "\\n", "\\x09"):
            parts.append(" ")
        elif token.startswith("\\x"):
            binary = True
            break
        else:
            parts.append("\\" if token == "\\\\" else token)
    text = " ".join("".join(parts).split())
    # A binary reply (SNMP's "0m\x02...") may start with a byte or two that happen to print.
    return "" if binary and len(text) < _MIN_GREETING else text


def port_row(p: PortResult) -> list[Any]:
    """A table row: port, state, service, version, OS hint, banner."""
    service = f"ssl/{p.service}" if p.tunnel == "ssl" and p.service else (p.service or "")
    banner = f"title: {p.http_title}" if p.http_title else banner_text(p.banner)
    return [f"{p.port}/{p.protocol.value}", p.state.value, service, _service_text(p), p.os_hint or "",
            banner[:80]]


def all_hidden(report: HostReport) -> str:
    """nmap's line for a host none of whose ports is shown: "All 1000 scanned ports on
    198.18.0.2 are closed" (with the count per state when there are several)."""
    counts = report.not_shown()
    total = sum(counts.values())
    if len(counts) == 1:
        states = next(iter(counts))
    else:
        states = " or ".join(f"{state} ({n})" for state, n in counts.items())
    return f"All {total} scanned ports on {report.ip} are {states}"


PORT_COLUMNS = ["PORT", "STATE", "SERVICE", "VERSION", "OS HINT", "BANNER"]


def is_open(p: PortResult) -> bool:
    return p.state in (PortState.OPEN, PortState.OPEN_FILTERED)
