"""The ``lanscope`` command line.

Each subcommand lives in ``lanscope/commands/<name>.py`` and exposes
``HELP`` (one line), ``add_arguments(parser)`` and ``main(args, config) -> int``.
Modules are imported only when their command runs, so ``lanscope ip`` does not
pay for DuckDB or nats-py.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from collections.abc import Sequence
from types import ModuleType
from typing import TYPE_CHECKING

from lanscope import __version__

if TYPE_CHECKING:
    from lanscope.config import Config

# `lanscope --help` imports nothing else: the config loader (msgspec, yaml), logging and the
# command modules are imported when a command runs.

# name -> (module, one-line help). Explicit, in the order `lanscope --help` shows them.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("lanscope.commands.run", "run the pipeline: every stage, or one with --stage"),
    "sensor": ("lanscope.commands.sensor", "a site's sensor: producers and port_probe, a leaf of the hub"),
    "hub-config": ("lanscope.commands.hub_config", "credentials and nats-server config of a hub's cluster"),
    "provision": ("lanscope.commands.provision", "create the NATS streams and consumers"),
    "watch": ("lanscope.commands.watch", "print host-change events live"),
    "web": ("lanscope.commands.web", "the live web dashboard (on its own; `run` serves it too)"),
    "discover": ("lanscope.commands.discover", "one-shot full discovery, persisted, with a summary"),
    "scan": ("lanscope.commands.scan", "discover hosts, probe ports, fingerprint (like nmap)"),
    "probe": ("lanscope.commands.probe", "probe one host's ports, banners and OS"),
    "ping": ("lanscope.commands.ping", "ping sweep: which hosts are up (like nmap -sn)"),
    "arp": ("lanscope.commands.arp", "ARP discovery plus the neighbour table"),
    "list": ("lanscope.commands.list", "expand targets without sending packets (like nmap -sL)"),
    "leases": ("lanscope.commands.leases", "DHCP leases from a MikroTik gateway and lease files"),
    "proxmox": ("lanscope.commands.proxmox", "Proxmox guests with MACs and IPs"),
    "fingerprint": ("lanscope.commands.fingerprint", "identify services from banners (JSON lines)"),
    "interfaces": ("lanscope.commands.interfaces", "list network interfaces"),
    "ip": ("lanscope.commands.ip", "facts about an address or network"),
    "dns": ("lanscope.commands.dns", "DNS lookups (like dig)"),
    "query": ("lanscope.commands.query", "read-only SQL against the DuckDB store"),
    "status": ("lanscope.commands.status", "a host's record, ports and recent history"),
    "schema": ("lanscope.commands.schema", "print the JSON Schema of every event"),
    "config": ("lanscope.commands.config", "check or show the configuration"),
    "notify": ("lanscope.commands.notify", "notifications: send a sample to a target (notify test TARGET)"),
}


def _load_command(name: str) -> ModuleType:
    module_name, _ = COMMANDS[name]
    return importlib.import_module(module_name)


def _add_common(parser: argparse.ArgumentParser, *, sub: bool) -> None:
    """-c, -v and --json, accepted before the command (the main parser) and after it (each
    command's parser, under their own dests, merged by ``_merge_common``)."""
    prefix = "sub_" if sub else ""
    # After the command an option that is not given sets nothing (SUPPRESS), so it cannot
    # overwrite the value given before the command.
    config_default: object = argparse.SUPPRESS if sub else None
    verbose_default: object = argparse.SUPPRESS if sub else 0
    parser.add_argument("-c", "--config", metavar="FILE", dest=f"{prefix}config", default=config_default,
                        help="config file (default: ./config.yaml, then /etc/lanscope/config.yaml)")
    parser.add_argument("-v", "--verbose", action="count", dest=f"{prefix}verbose", default=verbose_default,
                        help="more log output (-vv for debug)")
    if not sub:
        parser.add_argument("--json", action="store_true", dest="global_json",
                            help="JSON output, for the commands that offer --json")


def _chosen(argv: Sequence[str]) -> str | None:
    """The command named in ``argv``: its first positional word (skipping -c's value)."""
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in ("-c", "--config"):
            skip = True
        elif not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(argv: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lanscope",
        description="Watch a LAN continuously: discovery, ports, fingerprints, changes.",
    )
    parser.add_argument("--version", action="version", version=f"lanscope {__version__}")
    _add_common(parser, sub=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Only the chosen command's module is imported; the others get a stub parser for --help.
    chosen = _chosen(argv)
    for name, (_, help_text) in COMMANDS.items():
        command_parser = sub.add_parser(name, help=help_text, description=help_text)
        if name == chosen:
            _load_command(name).add_arguments(command_parser)
            _add_common(command_parser, sub=True)
    return parser


def _merge_common(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """One -c / -v / --json whichever side of the command they were given on."""
    sub_config = getattr(args, "sub_config", None)
    if sub_config is not None:
        if args.config is not None and args.config != sub_config:
            parser.error(f"-c given twice ({args.config} and {sub_config})")
        args.config = sub_config
    args.verbose += getattr(args, "sub_verbose", 0)
    if args.global_json:
        if not hasattr(args, "json"):
            parser.error(f"lanscope {args.command} has no --json output")
        args.json = True


def parse_args(argv: Sequence[str]) -> argparse.Namespace | None:
    """The arguments of ``lanscope ARGV``; None (after the help) when no command is named.
    A usage error exits, like argparse."""
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return None
    _merge_common(parser, args)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    if args is None:
        return 2
    _tune_gc()
    from lanscope.config import ConfigError
    from lanscope.errors import LanscopeError
    from lanscope.log import setup_logging

    try:
        config = _config_for(args)
        setup_logging(config.logging, verbose=args.verbose)
        result: int = _load_command(args.command).main(args, config)
        return result
    except (ConfigError, LanscopeError) as exc:
        if args.verbose:
            traceback.print_exc()
        print(f"lanscope {args.command}: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ConfigError) else getattr(exc, "exit_code", 1)
    except KeyboardInterrupt:
        print(f"lanscope {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:   # a bug or an unforeseen failure: one line; -v for the traceback
        if args.verbose:
            traceback.print_exc()
        text = " ".join(str(exc).split())[:500]
        print(f"lanscope {args.command}: error: {type(exc).__name__}: {text}"
              + ("" if args.verbose else " (-v shows the traceback)"), file=sys.stderr)
        return 1


def _tune_gc() -> None:
    """Scans and the pipeline allocate many short-lived objects (results, decoded events,
    rows) and almost no cycles: collect generation 0 far less often. bench.pipeline,
    10,000 new hosts/s into host_state: 3,800-3,900/s kept up with the default
    thresholds, 4,600-5,300/s with these. (No gc.freeze(): frozen DuckDB objects are
    never finalised and nanobind reports them as leaks at exit.)"""
    import gc

    gc.set_threshold(50_000, 20, 100)


def _config_for(args: argparse.Namespace) -> Config:
    from lanscope.config import Config, load

    # `config check FILE` validates its own argument and must not fail on another file.
    if args.command == "config":
        return Config()
    return load(args.config)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
