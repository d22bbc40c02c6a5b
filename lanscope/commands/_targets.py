"""Target arguments shared by every command that sends packets (ping, arp, scan, discover ...).

``add_target_arguments`` adds nmap's target options; ``targets_from_args``
turns them into a scope-checked ``Targets`` before any packet is sent.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from lanscope.config import Config
from lanscope.errors import UsageError
from lanscope.net.interfaces import IPNetwork, attached_private_networks, default_target_networks
from lanscope.net.scope import check_scope
from lanscope.net.targets import Resolver, Targets, parse_targets, prefix_spec, read_target_file


def add_target_arguments(parser: argparse.ArgumentParser, *, positional: bool = True) -> None:
    group = parser.add_argument_group("targets (nmap syntax)")
    if positional:
        group.add_argument("targets", nargs="*", metavar="TARGETS",
                           help="addresses, CIDRs, ranges (10.0.0.1-254, 10.0.1-3.*), hostnames; "
                                "default: config targets, else the attached private subnets")
    group.add_argument("--exclude", action="append", default=[], metavar="LIST",
                       help="targets to leave out (comma-separated, repeatable)")
    group.add_argument("-iL", "--input-file", dest="input_file", metavar="FILE",
                       help="read targets from FILE (one spec per line, # comments, - for stdin)")
    group.add_argument("--exclude-file", metavar="FILE", help="read excludes from FILE")
    group.add_argument("--prefix", metavar="A.B.C.",
                       help="the simple form: --prefix 10.0.10. --start 1 --end 50")
    group.add_argument("--start", type=int, default=1, help="first last-octet for --prefix (1)")
    group.add_argument("--end", type=int, default=254, help="last last-octet for --prefix (254)")
    group.add_argument("--allow-public", action="store_true",
                       help="allow public (non-private) addresses")
    group.add_argument("--force", action="store_true",
                       help="allow more than scope.max_addresses, or private ranges not attached here")


def target_specs(args: argparse.Namespace, config: Config) -> tuple[list[str], list[str]]:
    """(include specs, exclude specs) from the arguments, the config and the interfaces."""
    specs = list(getattr(args, "targets", None) or [])
    if getattr(args, "input_file", None):
        specs += read_target_file(args.input_file)
    if getattr(args, "prefix", None):
        specs.append(prefix_spec(args.prefix, args.start, args.end))
    elif (getattr(args, "start", 1) != 1 or getattr(args, "end", 254) != 254) and not specs:
        raise UsageError("--start/--end need --prefix")
    excludes = [*getattr(args, "exclude", []), *config.scope.exclude]
    if getattr(args, "exclude_file", None):
        excludes += read_target_file(args.exclude_file)
    if not specs:
        specs = list(config.targets) or [str(n) for n in default_target_networks()]
    if not specs:
        raise UsageError("no targets given and no private IPv4 subnet is attached to this machine; "
                         "name targets (e.g. 192.168.1.0/24) or set `targets:` in the config")
    return specs, excludes


def name_resolver(config: Config) -> Resolver | None:
    """How hostname targets are looked up: at ``dns.servers`` when set (the servers reverse DNS
    asks too; dnspython is imported only when a name comes up), else the system resolver."""
    servers, timeout_ms = list(config.dns.servers), config.dns.timeout_ms
    if not servers:
        return None
    lookup: list[Resolver] = []

    def resolve(name: str) -> list[str]:
        if not lookup:
            from enrichers.dns_names._io import make_forward_lookup

            lookup.append(make_forward_lookup(servers, timeout_ms))
        return lookup[0](name)

    return resolve


def targets_from_args(args: argparse.Namespace, config: Config, *,
                      attached: list[IPNetwork] | None = None,
                      resolve: Resolver | None = None,
                      check: Callable[..., None] = check_scope) -> Targets:
    """Parse the target arguments and check them against the scope (before any packet)."""
    specs, excludes = target_specs(args, config)
    targets = parse_targets(specs, exclude=excludes, resolve=resolve or name_resolver(config))
    if not targets:
        raise UsageError(f"no addresses left in {' '.join(specs)!r} after excludes")
    check(targets, config.scope,
          attached=attached_private_networks() if attached is None else attached,
          allow_public=getattr(args, "allow_public", False), force=getattr(args, "force", False))
    return targets
