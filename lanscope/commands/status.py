"""``lanscope status HOST``: one host's record, its ports and its recent history, from the store.

HOST is an IP, a MAC or a hostname (or a host key, ``paris/10.20.0.5``). The
questions go through the same read-only path as ``lanscope query`` (the
running pipeline, else the file). ``--site`` picks the site when the same
address is a host at several.
"""

from __future__ import annotations

import argparse
import re

from lanscope.commands.query import ask, show
from lanscope.config import Config
from lanscope.errors import UsageError
from lanscope.output import print_json
from schemas import check_site, normalize_ip, normalize_mac, site_of_key

_HOSTNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
_RECORD_COLUMNS = ("host_key, site, mac, ip, ips, hostname, vendor, os_hint, active, flapping, open_ports, "
                   "services, dhcp_type, dhcp_status, dhcp_comment, arp_state, rtt_ms, ttl, vm_name, "
                   "vm_id, vm_node, first_seen, last_seen, last_evidence, last_evidence_at")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("host", help="an IP, MAC or hostname")
    parser.add_argument("--history", type=int, default=20, metavar="N",
                        help="how many history rows to show (default 20)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--site", default=None, metavar="SITE",
                        help="the host at this site ('' for the default site; default: any site)")


def host_filter(host: str, site: str | None = None) -> str:
    """A WHERE clause for HOST (at ``site``, if given). The value is validated as an IP, MAC,
    hostname or host key first, so it can be written as a SQL literal (the query subject
    takes SQL text, not parameters)."""
    if site is not None:
        try:
            check_site(site)
        except ValueError as exc:
            raise UsageError(f"--site: {exc}") from None
        return f"site = '{site}' AND " + host_filter(host)
    if "/" in host:
        try:
            return f"host_key = '{_canonical_key(host)}'"
        except ValueError:
            raise UsageError(f"not an IP, MAC, hostname or host key: {host!r}") from None
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
    """A host key read back from the store (``[site/]MAC-or-IP``), re-validated before it
    goes into SQL text."""
    site = check_site(site_of_key(key))
    bare = key.partition("/")[2] if site else key
    try:
        value = normalize_mac(bare)
    except ValueError:
        value = normalize_ip(bare)
    return f"{site}/{value}" if site else value


def main(args: argparse.Namespace, config: Config) -> int:
    where = host_filter(args.host, args.site)
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
    ip = normalize_ip(str(record.rows[0][3])) if record.rows[0][3] else ""
    site = site_of_key(key)
    findings = ask(config, "SELECT severity, rule, port, title, first_seen, last_seen FROM findings "
                           f"WHERE state = 'opened' AND (host_key = '{key}' OR "
                           f"(ip = '{ip}' AND site = '{site}')) "
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
