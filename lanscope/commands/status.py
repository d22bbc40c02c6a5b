"""``lanscope status HOST``: one host's record, its ports and its recent history, from the store.

HOST is an IP, a MAC or a hostname. The questions go through the same
read-only path as ``lanscope query`` (the running pipeline, else the file).
"""

from __future__ import annotations

import argparse
import re

from lanscope.commands.query import ask, show
from lanscope.config import Config
from lanscope.errors import UsageError
from lanscope.output import print_json
from schemas import normalize_ip, normalize_mac

_HOSTNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
_RECORD_COLUMNS = ("host_key, mac, ip, ips, hostname, vendor, os_hint, active, flapping, open_ports, "
                   "services, dhcp_type, dhcp_status, dhcp_comment, arp_state, rtt_ms, ttl, vm_name, "
                   "vm_id, vm_node, first_seen, last_seen, last_evidence, last_evidence_at")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("host", help="an IP, MAC or hostname")
    parser.add_argument("--history", type=int, default=20, metavar="N",
                        help="how many history rows to show (default 20)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")


def host_filter(host: str) -> str:
    """A WHERE clause for HOST. The value is validated as an IP, MAC or hostname first, so it can
    be written as a SQL literal (the query subject takes SQL text, not parameters)."""
    for normalize, column in ((normalize_mac, "mac"), (normalize_ip, "ip")):
        try:
            value = normalize(host)
        except ValueError:
            continue
        if column == "ip":
            return f"(ip = '{value}' OR list_contains(ips, '{value}'))"
        return f"mac = '{value}'"
    if not _HOSTNAME.match(host):
        raise UsageError(f"not an IP, MAC or hostname: {host!r}")
    name = host.lower()
    return f"(lower(hostname) = '{name}' OR lower(split_part(hostname, '.', 1)) = '{name}')"


def _canonical_key(key: str) -> str:
    """A host key read back from the store, re-validated before it goes into SQL text."""
    try:
        return normalize_mac(key)
    except ValueError:
        return normalize_ip(key)


def main(args: argparse.Namespace, config: Config) -> int:
    where = host_filter(args.host)
    record = ask(config, f"SELECT {_RECORD_COLUMNS} FROM hosts WHERE {where} "
                         "ORDER BY last_seen DESC NULLS LAST")
    if not record.rows:
        raise UsageError(f"no host {args.host!r} in the store (see `lanscope query \"SELECT ip, mac, "
                         "hostname FROM hosts\"`)")
    if len(record.rows) > 1 and not args.json:
        keys = ", ".join(str(r[0]) for r in record.rows)
        print(f"{len(record.rows)} hosts match {args.host!r} ({keys}); showing the most recent")
    key = _canonical_key(str(record.rows[0][0]))
    keyed = f"host_key = '{key}'"
    ports = ask(config, "SELECT protocol, port, state, service, product, version, banner, "
                        "first_seen, last_seen FROM host_ports "
                        f"WHERE {keyed} ORDER BY state <> 'open', protocol, port")
    history = ask(config, "SELECT observed_at, field, old, new, source FROM history "
                          f"WHERE {keyed} ORDER BY observed_at DESC, rowid DESC LIMIT {int(args.history)}")
    ip = normalize_ip(str(record.rows[0][2])) if record.rows[0][2] else ""
    findings = ask(config, "SELECT severity, rule, port, title, first_seen, last_seen FROM findings "
                           f"WHERE state = 'opened' AND (host_key = '{key}' OR ip = '{ip}') "
                           "ORDER BY severity, rule")
    if args.json:
        print_json({
            "host": dict(zip(record.columns, record.rows[0], strict=True)),
            "ports": [dict(zip(ports.columns, r, strict=True)) for r in ports.rows],
            "history": [dict(zip(history.columns, r, strict=True)) for r in history.rows],
            "findings": [dict(zip(findings.columns, r, strict=True)) for r in findings.rows],
        })
        return 0
    from sinks.host_state import QueryResult

    show(QueryResult(columns=["field", "value"],
                     rows=[[c, v] for c, v in zip(record.columns, record.rows[0], strict=True)]),
         "table", title=f"host {key}")
    show(ports, "table", title="ports")
    if findings.rows:
        show(findings, "table", title="open findings")
    show(history, "table", title=f"recent history (last {args.history})")
    return 0
