"""Command line for the lab: `python -m tests.lab up|down|status|shell` (as root).

Exit codes: 0 success, 1 the lab failed (details on stderr), 2 usage error,
3 `status` found the lab down or a service not answering, 4 not root.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from . import netns, probes
from .lab import Lab
from .netns import LabError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_UNHEALTHY, EXIT_NOT_ROOT = 0, 1, 2, 3, 4


def _up(lab: Lab) -> int:
    started = time.monotonic()
    lab.up()
    elapsed = time.monotonic() - started
    print(f"lab {lab.prefix!r} up in {elapsed:.1f}s: {len(lab.hosts)} hosts, scanner ns {lab.scanner_ns}")
    print(f"enter it with: python -m tests.lab shell   (or ip netns exec {lab.scanner_ns} ...)")
    return EXIT_OK


def _down(lab: Lab) -> int:
    started = time.monotonic()
    lab.down()
    print(f"lab {lab.prefix!r} down in {time.monotonic() - started:.1f}s")
    return EXIT_OK


def _status(lab: Lab) -> int:
    if not lab.is_up():
        print(f"lab {lab.prefix!r} is down (no namespaces {lab.scanner_ns}, ...)")
        return EXIT_UNHEALTHY
    services = lab.service_status()
    with netns.in_netns(lab.scanner_ns):
        rows = [_host_row(lab, h.name, services) for h in lab.hosts]
    header = f"{'host':<10} {'ip':<15} {'mac':<17} {'icmp':<5} {'services':<32} vendor"
    print(header)
    print("-" * len(header))
    print("\n".join(rows))
    failing = [key for key, ok in services.items() if not ok]
    print(f"\n{len(lab.hosts)} hosts, {len(services) - len(failing)}/{len(services)} services answering")
    if failing:
        print(f"NOT answering: {', '.join(failing)}")
        return EXIT_UNHEALTHY
    return EXIT_OK


def _host_row(lab: Lab, name: str, services: dict[str, bool]) -> str:
    h = lab.host(name)
    icmp = "yes" if probes.icmp_echo(h.ip, timeout=0.3) else "no"
    marks = " ".join(f"{s}:{'ok' if services.get(f'{s}@{h.name}') else 'DOWN'}" for s in h.services) or "-"
    return f"{h.name:<10} {h.ip:<15} {h.mac:<17} {icmp:<5} {marks:<32} {h.vendor}"


def _shell(lab: Lab) -> int:
    if not lab.is_up():
        print(f"lab {lab.prefix!r} is down; run: python -m tests.lab up", file=sys.stderr)
        return EXIT_FAILED
    shell = os.environ.get("SHELL", "/bin/bash")
    os.execvp("ip", ["ip", "netns", "exec", lab.scanner_ns, shell])


COMMANDS = {"up": _up, "down": _down, "status": _status, "shell": _shell}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.lab",
        description="Virtual LAN of network namespaces for lanscope's tests. "
        "Prefix from LANSCOPE_LAB_PREFIX (default 'ls'); LANSCOPE_LAB_FULL=1 adds RabbitMQ.",
    )
    parser.add_argument("command", choices=sorted(COMMANDS))
    args = parser.parse_args(argv)
    if os.geteuid() != 0:
        print("the lab needs root (network namespaces, raw sockets)", file=sys.stderr)
        return EXIT_NOT_ROOT
    try:
        lab = Lab.from_env()
        return COMMANDS[args.command](lab)
    except (LabError, ValueError, OSError) as exc:
        print(f"lab {args.command} failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted; run `python -m tests.lab down` to clean up", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
