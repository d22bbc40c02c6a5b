"""``lanscope probe HOST``: one host's ports, states, services, versions, OS hint and banners.

The seed's ``direct`` mode: the same Prober the port_probe enricher runs, in
process, printed as a table (or JSON with ``--json``).
"""

from __future__ import annotations

import argparse
import asyncio

import msgspec

from enrichers.port_probe.report import PORT_COLUMNS, all_hidden, port_row
from enrichers.port_probe.stage import Config as ProbeConfig
from enrichers.port_probe.stage import Prober
from lanscope.commands._targets import targets_from_args
from lanscope.config import Config
from lanscope.errors import UsageError
from lanscope.net.ports import PortSpec, resolve
from lanscope.output import print_json, print_line, print_table, progress

HELP = "probe one host's ports, banners and OS"


def add_port_arguments(parser: argparse.ArgumentParser) -> None:
    """Port and scan-type options shared by probe and scan (nmap's spelling)."""
    group = parser.add_argument_group("ports and scan type (nmap syntax)")
    group.add_argument("-p", dest="ports", metavar="SPEC",
                       help="ports: 22 | 1-1024 | - (all) | U:53,T:21-25,80 | ssh,http (default: config)")
    group.add_argument("--top-ports", type=int, default=0, metavar="N",
                       help="the N most often open ports (nmap's ranking, shipped)")
    kind = group.add_mutually_exclusive_group()
    kind.add_argument("-sT", dest="scan_type", action="store_const", const="connect",
                      help="TCP connect scan")
    kind.add_argument("-sS", dest="scan_type", action="store_const", const="syn",
                      help="TCP SYN scan (raw sockets; falls back to connect without root)")
    group.add_argument("-sU", dest="udp", action="store_true",
                       help="also probe UDP ports (DNS, NTP, SNMP, NetBIOS, mDNS, SSDP payloads)")
    group.add_argument("--no-udp", action="store_true", help="no UDP probes at all")
    group.add_argument("--no-fingerprint", action="store_true",
                       help="states only: no banners, no service/version identification")
    group.add_argument("--nmap-probes", metavar="FILE", nargs="?",
                       const="/usr/share/nmap/nmap-service-probes",
                       help="also use the match lines of nmap's nmap-service-probes (if present)")


def prober_config(args: argparse.Namespace, config: Config) -> ProbeConfig:
    probe_config: ProbeConfig = config.enrichers.port_probe
    if getattr(args, "nmap_probes", None):
        probe_config = msgspec.structs.replace(probe_config, nmap_service_probes=args.nmap_probes)
    return probe_config


def port_spec(args: argparse.Namespace, config: Config, *, udp_default: bool) -> PortSpec:
    """-p / --top-ports / the config default for TCP. UDP: ``U:`` items or -sU (with -p: its
    numbers, like nmap), else the configured payload probes when ``udp_default`` (probe) and
    no ports were named: ``-p 8443`` probes 8443/tcp and nothing else."""
    if args.no_udp and args.udp:
        raise UsageError("-sU and --no-udp contradict each other")
    if args.ports and args.top_ports:
        raise UsageError("use either -p or --top-ports, not both")
    ports = config.enrichers.port_probe
    top = args.top_ports or (0 if args.ports else ports.top_ports)
    spec = resolve(args.ports, top=top, default=ports.tcp, tcp=True, udp=bool(args.udp),
                   udp_default=ports.udp)
    named = bool(args.ports or args.top_ports)
    wants_udp = bool(args.udp) or (udp_default and not named and not args.no_udp)
    if wants_udp and not spec.udp and ports.udp:
        spec = PortSpec(tcp=spec.tcp, text=spec.text,
                        udp=resolve(None, tcp=False, udp=True, udp_default=ports.udp).udp)
    if args.no_udp:
        spec = PortSpec(tcp=spec.tcp, text=spec.text)
    if not spec:
        raise UsageError("no ports to scan")
    return spec


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("host", metavar="HOST", help="one address or host name")
    add_port_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print the PortsProbed-style result as JSON")
    parser.add_argument("--all", action="store_true", help="list every port, closed and filtered too")
    parser.add_argument("--allow-public", action="store_true", help="allow a public address")
    parser.add_argument("--force", action="store_true", help="allow a private address not attached here")


def main(args: argparse.Namespace, config: Config) -> int:
    ns = argparse.Namespace(targets=[args.host], exclude=[], input_file=None, exclude_file=None,
                            prefix=None, start=1, end=254, allow_public=args.allow_public, force=args.force)
    targets = targets_from_args(ns, config)
    addresses = [str(a) for a in targets]
    if len(addresses) != 1:
        raise UsageError(f"probe takes one host; {args.host!r} is {len(addresses)} addresses (use scan)")
    ip = addresses[0]
    spec = port_spec(args, config, udp_default=True)
    prober = Prober(prober_config(args, config))
    with progress(f"probing {ip}", len(spec.tcp)) as update:
        reports = asyncio.run(prober.probe([ip], spec, scan_type=args.scan_type,
                                           fingerprint=not args.no_fingerprint, progress=update))
    report = reports[ip]
    ports = report.ports if args.all else report.shown()
    if args.json:
        print_json({"ip": ip, "scan_type": report.scan_type, "scanned": spec.describe(),
                    "ports": ports, "os": report.os, "duration_ms": round(report.duration_ms, 1),
                    "not_shown": {} if args.all else report.not_shown(), "complete": report.complete})
        return 0
    hidden = report.not_shown() if not args.all else {}
    caption = "; ".join(f"not shown: {n} {state}" for state, n in hidden.items())
    title = f"{ip} ({report.scan_type} scan, {report.duration_ms / 1000:.2f}s)"
    if ports:
        print_table(PORT_COLUMNS, [port_row(p) for p in ports], title=title, caption=caption or None)
    else:
        print_line(f"{title}: {all_hidden(report)}")
    if report.os is not None:
        print_line(f"OS guess: {report.os.name} (confidence {report.os.confidence}/10; "
                     f"{', '.join(report.os.evidence)})")
    if not report.complete:
        print_line("warning: host timeout reached, the result is partial")
    return 0
