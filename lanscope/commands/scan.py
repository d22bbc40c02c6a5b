"""``lanscope scan TARGETS``: discovery, then ports and fingerprints over many hosts (like nmap).

    lanscope scan 192.168.1.0/24 --top-ports 100
    lanscope scan 10.0.0.1-50 -p 22,80,443 -sU -o xml scan.xml

Hosts are found with the discovery producers (ARP/ICMP/TCP ping, as
``lanscope ping``) unless ``-Pn`` says to treat every target as up; then the
port_probe Prober scans them in batches with one progress bar. Reports:
a table per host on stdout, and ``-o json|xml|grepable FILE`` (``-`` for
stdout): XML as ``nmap -oX``, JSON shaped like python-nmap's scan dict,
grepable as ``nmap -oG``.
"""

from __future__ import annotations

import argparse
import asyncio
import shlex
import sys
import time
from pathlib import Path

import msgspec

from enrichers.port_probe.report import (
    PORT_COLUMNS,
    ScanRun,
    all_hidden,
    ip_key,
    port_row,
    to_grepable,
    to_python_nmap,
    to_xml,
)
from enrichers.port_probe.stage import HostReport, Prober
from lanscope.commands._targets import add_target_arguments, targets_from_args
from lanscope.commands.probe import add_port_arguments, port_spec, prober_config
from lanscope.config import Config
from lanscope.errors import LanscopeError, UsageError
from lanscope.output import print_line, print_table, progress, warn
from schemas import PortState

HELP = "discover hosts, probe ports, fingerprint (like nmap)"
BATCH_HOSTS = 256                 # hosts per scan engine run (bounds memory on big targets)
FORMATS = {"json", "xml", "grepable"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser)
    add_port_arguments(parser)
    parser.add_argument("-Pn", dest="no_ping", action="store_true",
                        help="skip host discovery: treat every target as up")
    parser.add_argument("-n", "--no-dns", action="store_true", help="no reverse DNS for the hosts up")
    out = parser.add_argument_group("output")
    out.add_argument("-o", dest="outputs", nargs=2, action="append", default=[],
                     metavar=("FORMAT", "FILE"), help="write json|xml|grepable to FILE (- = stdout)")
    out.add_argument("-oX", dest="out_xml", metavar="FILE", help="same as -o xml FILE")
    out.add_argument("-oG", dest="out_grepable", metavar="FILE", help="same as -o grepable FILE")
    out.add_argument("-oJ", dest="out_json", metavar="FILE", help="same as -o json FILE")
    out.add_argument("--json", action="store_true", help="same as -oJ - (python-nmap's dict on stdout)")
    out.add_argument("--open", action="store_true", help="show only hosts with open ports")


def _outputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    outputs = [(fmt.lower(), path) for fmt, path in args.outputs]
    for fmt, path in (("xml", args.out_xml), ("grepable", args.out_grepable), ("json", args.out_json)):
        if path:
            outputs.append((fmt, path))
    if args.json:
        outputs.append(("json", "-"))
    for fmt, _ in outputs:
        if fmt not in FORMATS:
            raise UsageError(f"-o: unknown format {fmt!r} (json, xml or grepable)")
    to_stdout = [fmt for fmt, path in outputs if path == "-"]
    if len(to_stdout) > 1:
        raise UsageError(f"only one document can go to stdout (-): {' and '.join(to_stdout)} both do")
    return outputs


async def _discover(targets: object, config: Config, update: object) -> dict[str, tuple[str | None, str]]:
    """ip -> (mac, reason) of the hosts discovery found alive."""
    from lanscope.commands._discovery import discover_hosts

    seen = await discover_hosts(targets, config, progress=update)  # type: ignore[arg-type]
    alive: dict[str, tuple[str | None, str]] = {}
    for event in seen:
        if event.alive and event.ip and event.ip not in alive:
            alive[event.ip] = (event.mac, event.evidence or "user-set")
    return alive


async def _names(ips: list[str], macs: dict[str, str], config: Config,
                 dns: bool) -> tuple[dict[str, str], dict[str, str]]:
    """(ip -> reverse DNS name, ip -> MAC vendor) of the hosts up, as ping and discover find them."""
    from lanscope.commands._discovery import reverse_names, vendors

    names, makers = await asyncio.gather(reverse_names(ips, config) if dns else asyncio.sleep(0, {}),
                                         vendors(list(macs.values())))
    # "(randomised)" stays for the table; -oX and -oJ leave it out (no maker's name).
    return names, {ip: makers[mac] for ip, mac in macs.items() if makers.get(mac)}


def main(args: argparse.Namespace, config: Config) -> int:
    outputs = _outputs(args)
    targets = targets_from_args(args, config)
    spec = port_spec(args, config, udp_default=False)
    prober = Prober(prober_config(args, config))
    # The whole command line, like nmap's args attribute (global options such as -c included).
    argv = " ".join(["lanscope", *(shlex.quote(a) for a in sys.argv[1:])])
    started = time.time()

    addresses = [str(a) for a in targets]
    alive: dict[str, tuple[str | None, str]] = {}
    discovery = not args.no_ping
    if discovery:
        try:
            with progress("discovering hosts", len(addresses)) as update:
                alive = asyncio.run(_discover(targets, config, update))
        except ImportError:
            warn("host discovery is not available in this build; scanning every target and "
                 "reporting the hosts that answered on some port")
            discovery = False
            alive = {}
    up = [ip for ip in addresses if ip in alive] if discovery else addresses

    reports: dict[str, HostReport] = {}
    total = len(up) * max(1, len(spec.tcp))
    with progress(f"scanning {len(up)} hosts", total) as update:
        for start in range(0, len(up), BATCH_HOSTS):
            batch = up[start:start + BATCH_HOSTS]
            offset = start * max(1, len(spec.tcp))

            def batch_progress(done: int, _total: int, offset: int = offset) -> None:
                update(offset + done, total)

            reports.update(asyncio.run(prober.probe(batch, spec, scan_type=args.scan_type,
                                                    fingerprint=not args.no_fingerprint,
                                                    progress=batch_progress)))
    if not discovery and not args.no_ping:
        # Without discovery, a host is up when some port answered (open, closed or UDP reply).
        reports = {ip: r for ip, r in reports.items()
                   if any(n for state, n in r.state_counts().items()
                          if state in (PortState.OPEN, PortState.CLOSED))}
    macs = {ip: mac for ip, (mac, _) in alive.items() if mac and ip in reports}
    hostnames, vendors = asyncio.run(_names(list(reports), macs, config, dns=not args.no_dns))
    finished = time.time()
    scan_type = next(iter(reports.values())).scan_type if reports else (args.scan_type or "connect")
    run = ScanRun(args=argv, spec=spec, scan_type=scan_type, started=started, finished=finished,
                  reports=reports, down=len(addresses) - len(reports), macs=macs,
                  hostnames=hostnames, vendors=vendors,
                  given_names={str(a): name for a, name in targets.names.items() if str(a) in reports},
                  up_reasons={ip: reason for ip, (_, reason) in alive.items()})
    # A document on stdout is all stdout holds (like nmap -oX -): the tables are left out and
    # the summary line goes to stderr.
    document_on_stdout = any(path == "-" for _, path in outputs)
    if not document_on_stdout:
        _print(run, only_open=args.open)
    elapsed = run.finished - run.started
    print_line(f"lanscope done: {len(run.reports) + run.down} IP addresses ({len(run.reports)} hosts up) "
               f"scanned in {elapsed:.2f} seconds", err=document_on_stdout)
    for fmt, path in outputs:
        _write(run, fmt, path)
    return 0


def _title(run: ScanRun, ip: str) -> str:
    """nmap's "scan report for NAME (IP)" and "MAC Address: MAC (Vendor)" in one line."""
    name = run.name(ip)
    title = f"{name} ({ip})" if name else ip
    if ip in run.macs:
        vendor = run.vendors.get(ip)
        title += f"  MAC {run.macs[ip]}" + (f" ({vendor})" if vendor else "")
    return title


def _print(run: ScanRun, *, only_open: bool) -> None:
    for ip, report in sorted(run.reports.items(), key=lambda kv: ip_key(kv[0])):
        shown = report.shown()
        if only_open and not any(p.state == PortState.OPEN for p in shown):
            continue
        os_text = f"OS: {report.os.name} ({report.os.confidence}/10)" if report.os is not None else ""
        # The title is a line of its own (nmap's "scan report for"): a table title would wrap
        # at the width of a narrow table.
        print_line(_title(run, ip))
        if not shown:
            print_line(all_hidden(report) + (f"; {os_text}" if os_text else ""))
            continue
        hidden = report.not_shown()
        caption = "; ".join([*(f"not shown: {n} {state}" for state, n in hidden.items()),
                             *([os_text] if os_text else [])])
        print_table(PORT_COLUMNS, [port_row(p) for p in shown], caption=caption or None)


def _write(run: ScanRun, fmt: str, path: str) -> None:
    if fmt == "xml":
        text = to_xml(run)
    elif fmt == "grepable":
        text = to_grepable(run)
    else:
        text = msgspec.json.format(msgspec.json.encode(to_python_nmap(run)), indent=2).decode() + "\n"
    if path == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        Path(path).write_text(text)
    except OSError as exc:
        raise LanscopeError(f"cannot write {path}: {exc.strerror}") from None
