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

from enrichers.port_probe.report import PORT_COLUMNS, ScanRun, port_row, to_grepable, to_python_nmap, to_xml
from enrichers.port_probe.stage import HostReport, Prober
from lanscope.commands._targets import add_target_arguments, targets_from_args
from lanscope.commands.probe import add_port_arguments, port_spec, prober_config
from lanscope.config import Config
from lanscope.errors import LanscopeError, UsageError
from lanscope.output import print_table, progress, stdout, warn
from schemas import PortState

HELP = "discover hosts, probe ports, fingerprint (like nmap)"
BATCH_HOSTS = 256                 # hosts per scan engine run (bounds memory on big targets)
FORMATS = {"json", "xml", "grepable"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_target_arguments(parser)
    add_port_arguments(parser)
    parser.add_argument("-Pn", dest="no_ping", action="store_true",
                        help="skip host discovery: treat every target as up")
    out = parser.add_argument_group("output")
    out.add_argument("-o", dest="outputs", nargs=2, action="append", default=[],
                     metavar=("FORMAT", "FILE"), help="write json|xml|grepable to FILE (- = stdout)")
    out.add_argument("-oX", dest="out_xml", metavar="FILE", help="same as -o xml FILE")
    out.add_argument("-oG", dest="out_grepable", metavar="FILE", help="same as -o grepable FILE")
    out.add_argument("-oJ", dest="out_json", metavar="FILE", help="same as -o json FILE")
    out.add_argument("--open", action="store_true", help="show only hosts with open ports")


def _outputs(args: argparse.Namespace) -> list[tuple[str, str]]:
    outputs = [(fmt.lower(), path) for fmt, path in args.outputs]
    for fmt, path in (("xml", args.out_xml), ("grepable", args.out_grepable), ("json", args.out_json)):
        if path:
            outputs.append((fmt, path))
    for fmt, _ in outputs:
        if fmt not in FORMATS:
            raise UsageError(f"-o: unknown format {fmt!r} (json, xml or grepable)")
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
    finished = time.time()
    scan_type = next(iter(reports.values())).scan_type if reports else (args.scan_type or "connect")
    run = ScanRun(args=argv, spec=spec, scan_type=scan_type, started=started, finished=finished,
                  reports=reports, down=len(addresses) - len(reports),
                  macs={ip: mac for ip, (mac, _) in alive.items() if mac},
                  up_reasons={ip: reason for ip, (_, reason) in alive.items()})
    _print(run, only_open=args.open)
    for fmt, path in outputs:
        _write(run, fmt, path)
    return 0


def _print(run: ScanRun, *, only_open: bool) -> None:
    for ip, report in sorted(run.reports.items(), key=lambda kv: tuple(int(x) for x in kv[0].split("."))
                             if "." in kv[0] else (999,)):
        shown = report.shown()
        if only_open and not any(p.state == PortState.OPEN for p in shown):
            continue
        hidden = report.not_shown()
        caption = "; ".join(f"not shown: {n} {state}" for state, n in hidden.items())
        if report.os is not None:
            caption += ("; " if caption else "") + f"OS: {report.os.name} ({report.os.confidence}/10)"
        mac = run.macs.get(ip)
        title = f"{ip}" + (f" [{mac}]" if mac else "")
        print_table(PORT_COLUMNS, [port_row(p) for p in shown], title=title, caption=caption or None)
    elapsed = run.finished - run.started
    stdout.print(f"lanscope done: {len(run.reports) + run.down} IP addresses ({len(run.reports)} hosts up) "
                 f"scanned in {elapsed:.2f} seconds", markup=False)


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
