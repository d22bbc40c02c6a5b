"""``lanscope proxmox``: every Proxmox VM and container with its MACs and IPs.

Connection settings come from ``proxmox:`` in the config; the flags override
them for a one-off look at another cluster.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import msgspec

from lanscope.commands._remote import add_tls_arguments, env_secret, tls_from_args
from lanscope.config import Config
from lanscope.errors import LanscopeError, UsageError
from lanscope.output import print_json, print_table


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", help="Proxmox host (default: proxmox.host)")
    parser.add_argument("--port", type=int, help="API port (default: proxmox.port, 8006)")
    parser.add_argument("--user", help="user@realm (default: proxmox.user)")
    parser.add_argument("--token-name", help="API token id (default: proxmox.token_name)")
    parser.add_argument("--token-env", metavar="VAR",
                        help="read the API token secret from environment variable VAR")
    parser.add_argument("--password-env", metavar="VAR",
                        help="read the password from environment variable VAR")
    add_tls_arguments(parser, "the")
    parser.add_argument("--json", action="store_true", help="JSON instead of a table")


def _settings(args: argparse.Namespace, config: Config) -> Any:
    from lanscope.settings import ProxmoxConfig

    settings = config.proxmox
    if args.host and settings.host != args.host:
        # Another cluster than the configured one: none of its credentials or pins apply.
        settings = ProxmoxConfig(host=args.host, port=settings.port, user=settings.user)
    if not settings.host:
        raise UsageError("no Proxmox host: set proxmox.host in the config or give --host")
    changes: dict[str, Any] = {}
    for flag in ("port", "user", "token_name"):
        if getattr(args, flag):
            changes[flag] = getattr(args, flag)
    if args.token_env:
        changes["token_value"] = env_secret("--token-env", args.token_env)
    if args.password_env:
        changes["password"] = env_secret("--password-env", args.password_env)
        if not args.token_name:
            changes["token_name"] = None       # a password on the command line means ticket login
    tls = tls_from_args(args)
    if tls is not None:
        changes["tls"] = tls
    settings = msgspec.structs.replace(settings, **changes)
    if not (settings.token_name and settings.token_value) and not settings.password:
        raise UsageError("Proxmox credentials: give --token-name with --token-env, or "
                         "--password-env (or set them under proxmox: in the config)")
    if not settings.user:
        raise UsageError("Proxmox user: give --user user@realm or set proxmox.user")
    return settings


def main(args: argparse.Namespace, config: Config) -> int:
    from enrichers.proxmox_names import ProxmoxError
    from enrichers.proxmox_names._io import ProxmoxClient

    settings = _settings(args, config)
    try:
        guests = asyncio.run(ProxmoxClient(settings).fetch_guests())
    except ProxmoxError as exc:
        raise LanscopeError(str(exc)) from None
    except ValueError as exc:        # a malformed --fingerprint
        raise UsageError(str(exc)) from None
    guests.sort(key=lambda g: g.guest.vm_id)
    if args.json:
        print_json([msgspec.to_builtins(g.guest) | {
            "nics": [{"mac": nic.mac, "ips": nic.ips, "config_key": nic.name} for nic in g.nics],
            "macs": g.macs, "ips": g.ips} for g in guests])
        return 0
    print_table(["vmid", "name", "type", "node", "status", "MACs", "IPs", "tags"],
                [(g.guest.vm_id, g.guest.name, g.guest.vm_type, g.guest.node, g.guest.status,
                  g.macs, g.ips, g.guest.tags) for g in guests],
                title=f"{len(guests)} Proxmox guests on {settings.host}")
    return 0
