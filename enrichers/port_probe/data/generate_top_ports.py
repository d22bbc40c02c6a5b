"""Regenerate ``top_ports.json`` from nmap's ``nmap-services`` (a development-time tool).

    python -m enrichers.port_probe.data.generate_top_ports /usr/share/nmap/nmap-services

``nmap-services`` lists, per port and protocol, a service name and the
fraction of scanned hosts on which nmap's Internet survey found the port open.
The shipped file keeps only facts derived from it: the port numbers ranked by
that frequency (for ``--top-ports N``) and the service name of each port (for
``-p ssh,http``). nmap itself is never needed at run time.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

OUT = Path(__file__).with_name("top_ports.json")
UDP_KEEP = 2000          # UDP has ~19k entries, most never seen open; keep the ranked head


def parse(path: Path) -> dict[str, list[tuple[int, str, float]]]:
    entries: dict[str, list[tuple[int, str, float]]] = {"tcp": [], "udp": []}
    for line in path.read_text(errors="replace").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) < 3:
            continue
        name, portproto, freq = fields[0], fields[1], fields[2]
        port, _, proto = portproto.partition("/")
        if proto in entries:
            entries[proto].append((int(port), name, float(freq)))
    return entries


def build(path: Path) -> dict[str, object]:
    entries = parse(path)
    out: dict[str, object] = {
        "source": "derived from nmap-services (nmap 7.93, Debian package) by generate_top_ports.py",
    }
    for proto, rows in entries.items():
        # Highest frequency first; ties by port number so the order is stable.
        ranked = sorted(rows, key=lambda r: (-r[2], r[0]))
        ranked = [r for r in ranked if r[2] > 0]
        if proto == "udp":
            ranked = ranked[:UDP_KEEP]
        out[f"{proto}_ranked"] = [r[0] for r in ranked]
        out[f"{proto}_names"] = {str(port): name for port, name, _ in sorted(rows)
                                 if name != "unknown" and port < 49152}
    return out


def main(argv: list[str]) -> int:
    source = Path(argv[1] if len(argv) > 1 else "/usr/share/nmap/nmap-services")
    OUT.write_text(json.dumps(build(source), separators=(",", ":")) + "\n")
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
