"""Port scanning and service identification: lanscope vs nmap and masscan, on the lab.

    LANSCOPE_LAB_PREFIX=p4 python -m tests.lab up
    ip netns exec p4-scan .venv/bin/python -m bench.ports [--runs 3] [--sv-runs 1]
    LANSCOPE_LAB_PREFIX=p4 python -m tests.lab down

Four scenarios, every tool on the same lab in one run:

1. full 65,535-port TCP scan of one host (the ssh host);
2. the top 1000 TCP ports of the ~40 live hosts of 198.18.0.0/24 (every tool
   is given the list of live hosts, -Pn: this compares port scanning, not
   discovery);
3. service identification of the lab's servers: lanscope's banners and rules
   vs ``nmap -sV`` on the same host/port pairs;
4. UDP: 15 ports on three hosts (``lanscope scan -sU`` vs ``nmap -sU``, and
   ``nmap -sU --scan-delay 1s``), the state of every port compared with the
   other tools and with the lab's truth (open, closed, open|filtered): Linux
   hosts answer closed UDP ports with a burst of 6 ICMP port-unreachables, then
   one per second, so a scanner that does not pace per host reads closed ports
   as open|filtered. Each tool waits ``UDP_REST_SECS`` before its run, so every
   one starts with the targets' rate-limit buckets full; the order alternates.

Wall time is the median of ``--runs`` runs (``--sv-runs`` for nmap -sV, which
is slow). lanscope is timed twice: the engine in process (as the pipeline runs
it) and the ``lanscope scan`` CLI (Python start-up and imports included).
Agreement is against the lab's declared truth: open ports from the topology,
product and version from dpkg (upstream part).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from enrichers.port_probe.stage import Config, Prober
from lanscope.net.ports import PortSpec, compress, top_ports
from tests.lab import SERVED, Lab, Served

Open = set[tuple[str, int]]
LANSCOPE = [sys.executable, "-m", "lanscope"]
# An installed lanscope has its bytecode compiled; a shell with PYTHONDONTWRITEBYTECODE set (as
# in CI or a shared checkout) would otherwise recompile every changed module on every CLI run.
CLI_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}

# The lab's servers as test_lab checks them, and dnsmasq's TCP port besides.
SERVICES = (*SERVED, Served("dns", 53, "dnsmasq", "domain", "dnsmasq", "dnsmasq", True))


class Found(NamedTuple):
    """What a tool reported: the open ports and how many ports it called filtered (None: the
    tool does not say, like masscan)."""

    open: Open
    filtered: int | None


def run(argv: list[str], timeout: float = 900, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"{argv[0]} failed ({done.returncode}): {done.stderr.strip()[:400]}")
    return done.stdout


def xml_found(xml_text: str) -> Found:
    """Open ports and the filtered count (listed ports plus ``extraports``) from nmap-style XML."""
    root = ET.fromstring(xml_text)
    found: Open = set()
    filtered = 0
    for host in root.iter("host"):
        address = host.find("address")
        if address is None:
            continue
        for extra in host.iter("extraports"):
            if extra.get("state") == "filtered":
                filtered += int(extra.get("count", "0"))
        for port in host.iter("port"):
            state = port.find("state")
            if state is None:
                continue
            if state.get("state") == "open":
                found.add((address.get("addr", ""), int(port.get("portid", "0"))))
            elif state.get("state") == "filtered":
                filtered += 1
    return Found(found, filtered)


def nmap_scan(flags: list[str], ips: list[str], ports: str) -> Callable[[], Found]:
    return lambda: xml_found(run(["nmap", *flags, "-n", "-Pn", "-p", ports, "-oX", "-", *ips]))


def masscan_scan(ips: list[str], ports: str, router_mac: str) -> Callable[[], Found]:
    def scan() -> Found:
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            run(["masscan", *ips, "-p", ports, "--rate", "1000000", "--wait", "1", "--router-mac", router_mac,
                 "--adapter", "br0", "-oJ", out.name], timeout=120)   # it has hung once on this lab
            text = Path(out.name).read_text().strip().rstrip(",")
        if not text:
            return Found(set(), None)
        rows = json.loads(text if text.startswith("[") else f"[{text}]")
        return Found({(r["ip"], p["port"]) for r in rows for p in r.get("ports", [])
                      if p.get("status") == "open"}, None)
    return scan


def lanscope_engine(ips: list[str], ports: tuple[int, ...], kind: str) -> Callable[[], Found]:
    def scan() -> Found:
        prober = Prober(Config(udp="", connect_timeout_ms=1000, per_host=512, sockets=4096))
        reports = asyncio.run(prober.probe(ips, PortSpec(tcp=ports), scan_type=kind, fingerprint=False))
        assert all(r.scan_type == kind for r in reports.values()), "scan type fell back"
        return Found({(ip, p.port) for ip, r in reports.items() for p in r.ports if p.state.value == "open"},
                     sum(p.state.value == "filtered" for r in reports.values() for p in r.ports))
    return scan


def lanscope_cli(ips: list[str], ports: str, kind: str, config: str) -> Callable[[], Found]:
    def scan() -> Found:
        with tempfile.NamedTemporaryFile(suffix=".xml") as out:
            run([*LANSCOPE, "-c", config, "scan", *ips, "-Pn", "--no-fingerprint",
                 "-sS" if kind == "syn" else "-sT", "-p", ports, "-oX", out.name], env=CLI_ENV)
            return xml_found(Path(out.name).read_text())
    return scan


def agreement(found: Found, truth: Open, truth_filtered: int) -> str:
    extra = sorted(found.open - truth)
    text = f"open {len(found.open & truth)}/{len(truth)}" + (f" (+{len(extra)} extra: {extra[:3]})"
                                                             if extra else "")
    if found.filtered is not None:
        text += f", filtered {found.filtered} (truth {truth_filtered})"
    return text


def interleaved(tools: list[tuple[str, Callable[[], Found]]], runs: int,
                ) -> dict[str, tuple[list[float], Found | Exception]]:
    """Every tool once per round, ``runs`` rounds: a change in the machine's load (it is shared)
    hits every tool alike instead of whichever ran during it."""
    out: dict[str, tuple[list[float], Found | Exception]] = {
        name: ([], Found(set(), None)) for name, _ in tools}
    for _ in range(runs):
        for name, fn in tools:
            times, last = out[name]
            if isinstance(last, Exception):
                continue
            start = time.perf_counter()
            try:
                found: Found | Exception = fn()
            except (RuntimeError, subprocess.TimeoutExpired, ValueError, AssertionError) as exc:
                found = exc
            times.append(time.perf_counter() - start)
            out[name] = (times, found)
    return out


def port_scans(lab: Lab, runs: int, config: str, masscan: bool = True,
               ) -> list[tuple[str, str, float, str]]:
    rows: list[tuple[str, str, float, str]] = []
    router_mac = lab.host("rtr").mac
    scenarios = []
    one = lab.host("ssh")
    for kind in ("syn", "connect"):        # warm-up: writes the bytecode cache, as an install has
        lanscope_cli([one.ip], "22", kind, config)()
    scenarios.append(("65535 ports, 1 host", [one.ip], tuple(range(1, 65536)), "1-65535",
                      {(one.ip, p) for p in one.tcp_open}, len(one.tcp_filtered)))
    live = lab.live_hosts("198.18.0.0/24")
    top = tuple(sorted(top_ports(1000)))
    top_set = set(top)
    ips = [h.ip for h in live]
    truth = {(h.ip, p) for h in live for p in h.tcp_open if p in top_set}
    scenarios.append((f"top-1000, {len(ips)} hosts", ips, top, compress(top), truth,
                      sum(p in top_set for h in live for p in h.tcp_filtered)))
    for name, targets, ports, ports_text, truth, truth_filtered in scenarios:
        tools: list[tuple[str, Callable[[], Found]]] = [
            ("lanscope SYN (engine)", lanscope_engine(targets, ports, "syn")),
            ("lanscope SYN (CLI)", lanscope_cli(targets, ports_text, "syn", config)),
            ("lanscope connect (engine)", lanscope_engine(targets, ports, "connect")),
            ("lanscope connect (CLI)", lanscope_cli(targets, ports_text, "connect", config)),
            ("nmap -sS", nmap_scan(["-sS"], targets, ports_text)),
            ("nmap -sS -T5 --min-rate 50000", nmap_scan(["-sS", "-T5", "--min-rate", "50000"], targets,
                                                        ports_text)),
            ("nmap -sT", nmap_scan(["-sT"], targets, ports_text)),
        ]
        if masscan and shutil.which("masscan"):
            tools.append(("masscan --rate 1M --wait 1", masscan_scan(targets, ports_text, router_mac)))
        for tool, (times, found) in interleaved(tools, runs).items():
            if isinstance(found, Exception):
                rows.append((name, tool, float("nan"), f"failed: {found}"[:80]))
            else:
                rows.append((name, tool, statistics.median(times), agreement(found, truth, truth_filtered)))
            print(f"  {name:22} {tool:32} {rows[-1][2]:7.2f}s  {rows[-1][3]}", flush=True)
        seconds = {tool: t for n, tool, t, _ in rows if n == name}
        for ours, theirs in (("lanscope SYN (CLI)", "nmap -sS"),
                             ("lanscope SYN (CLI)", "nmap -sS -T5 --min-rate 50000"),
                             ("lanscope connect (CLI)", "nmap -sT")):
            print(f"  {name:22} {theirs} / {ours}: {seconds[theirs] / seconds[ours]:.2f}x", flush=True)
    return rows


def service_id(lab: Lab, runs: int, sv_runs: int) -> list[tuple[str, float, int, int, int]]:
    truth = {(lab.host(s.host).ip, s.port): (s.product, s.nmap_product,
                                             lab.upstream_version(s.kind) if s.versioned else None)
             for s in SERVICES}
    ips = sorted({ip for ip, _ in truth}, key=lambda ip: tuple(int(x) for x in ip.split(".")))
    ports = sorted({p for _, p in truth})

    def lanscope_sv() -> dict[tuple[str, int], tuple[str, str]]:
        prober = Prober(Config(udp="", connect_timeout_ms=1000))
        reports = asyncio.run(prober.probe(ips, PortSpec(tcp=tuple(ports)), scan_type="syn"))
        return {(ip, p.port): (p.product or "", p.version or "") for ip, r in reports.items() for p in r.ports
                if p.state.value == "open"}

    def nmap_sv() -> dict[tuple[str, int], tuple[str, str]]:
        root = ET.fromstring(run(["nmap", "-sV", "-n", "-Pn", "-p", ",".join(map(str, ports)), "-oX", "-",
                                  *ips], timeout=1800))
        out = {}
        for host in root.iter("host"):
            ip = host.find("address").get("addr", "")                  # type: ignore[union-attr]
            for port in host.iter("port"):
                service = port.find("service")
                state = port.find("state")
                if service is not None and state is not None and state.get("state") == "open":
                    out[(ip, int(port.get("portid", "0")))] = (service.get("product", ""),
                                                                service.get("version", ""))
        return out

    def score(found: dict[tuple[str, int], tuple[str, str]], nmap: bool) -> tuple[int, int, int]:
        products = versions = 0
        for key, (lanscope_product, nmap_product, version) in truth.items():
            product, got_version = found.get(key, ("", ""))
            expected = nmap_product if nmap else lanscope_product
            if expected.lower() in product.lower():
                products += 1
            if version and got_version.split(" ")[0] == version:
                versions += 1
        return products, versions, sum(1 for v in truth.values() if v[2])

    rows = []
    for tool, fn, n in (("lanscope (SYN + banners)", lanscope_sv, runs), ("nmap -sV", nmap_sv, sv_runs)):
        times, found = [], {}
        for _ in range(n):
            start = time.perf_counter()
            found = fn()
            times.append(time.perf_counter() - start)
        products, versions, versioned = score(found, tool.startswith("nmap"))
        rows.append((tool, statistics.median(times), products, versions, versioned))
        print(f"  {tool:28} {rows[-1][1]:7.2f}s  products {products}/{len(truth)}  "
              f"versions {versions}/{versioned}", flush=True)
    return rows


UDP_PORTS = (53, 67, 68, 69, 123, 137, 138, 161, 162, 500, 514, 520, 1900, 4500, 5353)
UDP_HOSTS = ("ssh", "snmp", "dns")
UDP_REST_SECS = 8.0     # Linux refills its ICMP bucket (6 messages) at one per second


def udp_xml_states(xml_text: str) -> dict[tuple[str, int], str]:
    """(ip, port) -> state of every UDP port in nmap-style XML (summarised ports included)."""
    root = ET.fromstring(xml_text)
    states: dict[tuple[str, int], str] = {}
    for host in root.iter("host"):
        address = host.find("address")
        ip = address.get("addr", "") if address is not None else ""
        listed = set()
        for port in host.iter("port"):
            state = port.find("state")
            if port.get("protocol") == "udp" and state is not None:
                states[(ip, int(port.get("portid", "0")))] = state.get("state", "")
                listed.add(int(port.get("portid", "0")))
        extra = [e.get("state", "") for e in host.iter("extraports")]
        if len(extra) == 1:          # one summarised state: every port not listed has it
            for number in UDP_PORTS:
                states.setdefault((ip, number), extra[0])
    return states


def udp_compare(lab: Lab, runs: int, config: str) -> dict[str, tuple[int, int, int]]:
    """Per-port UDP states of lanscope and nmap, ``runs`` rounds (the tools' order alternates).
    Returns, per nmap variant: (ports where lanscope = that nmap, ports compared, ports where
    that nmap = the lab's truth); lanscope's own score against the truth is under "lanscope"."""
    hosts = [lab.host(name) for name in UDP_HOSTS]
    ips = [h.ip for h in hosts]
    truth = {(h.ip, p): "open" if p in h.udp_open else "closed" for h in hosts for p in UDP_PORTS}
    ports = ",".join(map(str, UDP_PORTS))
    ours = "lanscope scan -sU"
    tools: dict[str, Callable[[], str]] = {
        ours: lambda: run([*LANSCOPE, "-c", config, "scan", *ips, "-Pn", "-n", "-sU", "--no-fingerprint",
                           "-p", f"U:{ports}", "-oX", "-"], env=CLI_ENV),
        "nmap -sU": lambda: run(["nmap", "-sU", "-n", "-Pn", "-p", ports, "-oX", "-", *ips]),
        # nmap's own advice for hosts that rate-limit ICMP: one probe per second per host.
        "nmap -sU --scan-delay 1s": lambda: run(["nmap", "-sU", "-n", "-Pn", "--scan-delay", "1s",
                                                 "-p", ports, "-oX", "-", *ips]),
    }
    times: dict[str, list[float]] = {name: [] for name in tools}
    right = dict.fromkeys(tools, 0)
    same = {name: 0 for name in tools if name != ours}
    order = list(tools)
    for round_ in range(runs):
        found: dict[str, dict[tuple[str, int], str]] = {}
        for name in order if round_ % 2 == 0 else reversed(order):
            time.sleep(UDP_REST_SECS)
            start = time.perf_counter()
            found[name] = udp_xml_states(tools[name]())
            times[name].append(time.perf_counter() - start)
        line = []
        for name, states in found.items():
            right[name] += sum(states.get(key) == state for key, state in truth.items())
            wrong = sorted(k for k, state in truth.items() if states.get(k) != state)
            line.append(f"{name} {times[name][-1]:5.2f}s {len(truth) - len(wrong)}/{len(truth)} right"
                        + (f" (e.g. {wrong[0][0]}:{wrong[0][1]} {states.get(wrong[0])})" if wrong else ""))
            if name != ours:
                same[name] += sum(found[ours].get(key) == states.get(key) for key in truth)
        print(f"  UDP round {round_ + 1}: " + "; ".join(line), flush=True)
    compared = runs * len(truth)
    print(f"  UDP {len(UDP_PORTS)} ports x {len(hosts)} hosts, {runs} rounds, {compared} port states each:",
          flush=True)
    print(f"    {ours}: {right[ours]}/{compared} as the lab's truth, median "
          f"{statistics.median(times[ours]):.2f}s", flush=True)
    for name in same:
        print(f"    {name}: {right[name]}/{compared} as the truth, median "
              f"{statistics.median(times[name]):.2f}s; lanscope agrees on {same[name]}/{compared} "
              f"({100 * same[name] / compared:.1f}%)", flush=True)
    return {name: (same[name], compared, right[name]) for name in same} | {ours: (0, compared, right[ours])}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sv-runs", type=int, default=1)
    parser.add_argument("--skip-sv", action="store_true", help="no service identification (nmap -sV)")
    parser.add_argument("--skip-masscan", action="store_true")
    parser.add_argument("--skip-tcp", action="store_true", help="no TCP port scans")
    parser.add_argument("--skip-udp", action="store_true", help="no UDP comparison with nmap -sU")
    parser.add_argument("--udp-runs", type=int, default=3)
    args = parser.parse_args(argv)
    lab = Lab.from_env()
    if not lab.is_up():
        print(f"the lab {lab.prefix!r} is not up: LANSCOPE_LAB_PREFIX={lab.prefix} python -m tests.lab up",
              file=sys.stderr)
        return 1
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as cfg:
        cfg.write("scope:\n  allow: [198.18.0.0/15]\n"
                  "enrichers:\n  port_probe:\n    per_host: 512\n    sockets: 4096\n")
    if not args.skip_tcp:
        print(f"port scans (median of {args.runs} runs):", flush=True)
        port_scans(lab, args.runs, cfg.name, masscan=not args.skip_masscan)
    if not args.skip_sv:
        print(f"service identification ({len(SERVICES)} servers):", flush=True)
        service_id(lab, args.runs, args.sv_runs)
    if not args.skip_udp:
        print(f"UDP states vs nmap -sU ({args.udp_runs} rounds):", flush=True)
        udp_compare(lab, args.udp_runs, cfg.name)
    Path(cfg.name).unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
