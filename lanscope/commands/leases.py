"""``lanscope leases``: DHCP leases from a MikroTik gateway first, then local lease files.

The seed's ``get_dhcp_leases``, built on the dhcp_leases stage: gateway
settings default from ``producers.dhcp_leases.gateway`` in the config (host,
user, pass), lease files from ``producers.dhcp_leases.lease_files``. A gateway
that cannot be read is an error but not the end: the lease files are still shown
(the exit code is 1 when there was an error and nothing was found). A ``--file``
that is missing, unreadable or not a lease file is an error and exit code 1
whatever else was found; rows skipped inside a lease file (a row cut mid-write)
are warnings. With ``--json`` both are in the document ("errors", "warnings"),
and on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from datetime import UTC, datetime
from typing import Any

import msgspec

from lanscope.commands._remote import add_tls_arguments, env_secret, tls_from_args
from lanscope.config import Config
from lanscope.errors import UsageError
from lanscope.output import error, print_json, print_line, print_table, warn


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gateway", metavar="HOST", help="MikroTik RouterOS 7 gateway (default: "
                        "producers.dhcp_leases.gateway.host)")
    parser.add_argument("--user", metavar="USER", help="RouterOS user (default: the configured one)")
    parser.add_argument("--password-env", metavar="VAR",
                        help="read the RouterOS password from environment variable VAR "
                             "(default: the configured one)")
    parser.add_argument("--scheme", choices=["auto", "http", "https"],
                        help="auto: http for 10/8, 172.16/12, 192.168/16, https otherwise")
    parser.add_argument("--port", type=int, help="REST port (default: 80/443)")
    add_tls_arguments(parser, "the router")
    parser.add_argument("--no-arp", action="store_true", help="do not read the router's ARP table")
    parser.add_argument("--file", action="append", default=[], metavar="PATH",
                        help="read this lease file (glob allowed, repeatable) instead of "
                             "producers.dhcp_leases.lease_files")
    parser.add_argument("--no-gateway", action="store_true", help="only read lease files")
    parser.add_argument("--json", action="store_true", help="JSON instead of a table")


def _stage_config(args: argparse.Namespace, config: Config) -> Any:
    """producers.dhcp_leases with the command line on top."""
    from producers.dhcp_leases import GatewayConfig

    stage = config.producers.dhcp_leases
    gateway = stage.gateway
    if args.gateway and gateway.host != args.gateway:
        # Another router than the configured one: none of its credentials or pins apply.
        gateway = GatewayConfig(host=args.gateway, user=gateway.user, timeout_secs=gateway.timeout_secs)
    if args.no_gateway:
        gateway = GatewayConfig()
    if gateway.host:
        changes: dict[str, Any] = {}
        if args.user:
            changes["user"] = args.user
        if args.password_env:
            changes["password"] = env_secret("--password-env", args.password_env)
        if args.scheme:
            changes["scheme"] = args.scheme
        if args.port:
            changes["port"] = args.port
        if args.no_arp:
            changes["arp_table"] = False
        tls = tls_from_args(args)
        if tls is not None:
            changes["tls"] = tls
        gateway = msgspec.structs.replace(gateway, **changes)
    files = list(args.file) if args.file else stage.lease_files
    return msgspec.structs.replace(stage, gateway=gateway, lease_files=files)


async def _collect(stage_config: Any, config: Config) -> Any:
    from producers import dhcp_leases

    try:
        stage = dhcp_leases.build(stage_config, config.stage_context())
    except ValueError as exc:        # a malformed --fingerprint
        raise UsageError(str(exc)) from None
    # The reader logs missing files once, for the pipeline; here each is an error below.
    reader_log = logging.getLogger("producers.dhcp_leases._files")
    level = reader_log.level
    reader_log.setLevel(logging.ERROR)
    try:
        return await stage.collect(ignore_backoff=True)
    finally:
        reader_log.setLevel(level)
        if stage.gateway is not None:
            await stage.gateway.aclose()   # type: ignore[attr-defined]


def _ago(seconds: int | None) -> str | None:
    return None if seconds is None else _span(seconds) + " ago"


def _span(seconds: int) -> str:
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            out += f"{seconds // size}{unit}"
            seconds %= size
    return out + (f"{seconds}s" if seconds or not out else "")


def _expires(lease: Any, now: datetime) -> str | None:
    if lease.expires_after_secs is not None and lease.origin == "mikrotik":
        return "in " + _span(lease.expires_after_secs)
    if lease.expires_at is not None:
        left = int((lease.expires_at - now).total_seconds())
        return ("in " + _span(left)) if left > 0 else "expired"
    if lease.expires_after_secs is not None:
        return _span(lease.expires_after_secs)
    return "never" if lease.origin in ("mikrotik", "dnsmasq", "dhcpd") and lease.status in (
        "bound", "active") else None


def _source(lease: Any) -> str:
    where = lease.gateway or ""
    if lease.origin != "mikrotik":
        where = os.path.basename(where) or where      # the file name; --json has the full path
    return f"{lease.origin} {where}".strip()


def main(args: argparse.Namespace, config: Config) -> int:
    from producers.dhcp_leases import lease_type

    stage_config = _stage_config(args, config)
    if not stage_config.gateway.host and not stage_config.lease_files:
        raise UsageError("no gateway and no lease files: give --gateway HOST or --file PATH, or set "
                         "producers.dhcp_leases.gateway.host / .lease_files in the config")
    snapshot = asyncio.run(_collect(stage_config, config))
    named = list(args.file)           # files the user named: each must be there and readable
    errors = [*snapshot.errors, *snapshot.file_errors,
              *(f"--file {p}: no such file" for p in snapshot.unmatched if p in named)]
    for problem in errors:
        error(problem)
    for problem in snapshot.file_warnings:
        warn(problem)
    leases = [item.lease for item in snapshot.leases]
    if args.json:
        print_json({
            "leases": [msgspec.to_builtins(lease) | {"alive": item.alive}
                       for lease, item in zip(leases, snapshot.leases, strict=True)],
            "arp": [{"address": row.address, "mac": row.mac, "status": row.status,
                     "interface": row.interface, "alive": row.alive, "dhcp": row.dhcp,
                     "comment": row.comment, "gateway": row.gateway} for row in snapshot.arp],
            "errors": errors,
            "warnings": snapshot.file_warnings,
        })
    else:
        now = datetime.now(UTC)
        if leases:
            print_table(
                ["address", "mac", "hostname", "type", "status", "expires", "last seen", "server",
                 "comment", "source"],
                [(lease.active_address or lease.address, lease.active_mac or lease.mac, lease.hostname,
                  lease_type(lease), lease.status, _expires(lease, now), _ago(lease.last_seen_secs),
                  lease.server, lease.comment, _source(lease))
                 for lease in leases],
                title=f"{len(leases)} DHCP leases")
        else:
            print_line("no DHCP leases found")
        if snapshot.arp:
            print_table(["address", "mac", "status", "interface", "dhcp", "comment"],
                        [(row.address, row.mac, row.status, row.interface, row.dhcp, row.comment)
                         for row in snapshot.arp],
                        title=f"router ARP table ({stage_config.gateway.host})")
    file_failed = bool(named) and len(errors) > len(snapshot.errors)
    return 1 if file_failed or (errors and not leases and not snapshot.arp) else 0
