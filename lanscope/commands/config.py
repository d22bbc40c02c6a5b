"""``lanscope config check [FILE]`` and ``lanscope config show [FILE]``."""

from __future__ import annotations

import argparse

import msgspec

from lanscope.config import Config, Secret, load
from lanscope.output import print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["check", "show"],
                        help="check: validate; show: print the effective config (secrets masked)")
    parser.add_argument("file", nargs="?", help="config file (default: the global --config or ./config.yaml)")


def _mask(value: object) -> object:
    if isinstance(value, Secret):
        return "***"
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


def main(args: argparse.Namespace, config: Config) -> int:
    path = args.file or args.config
    loaded = load(path)
    if args.action == "check":
        print(f"{path or 'built-in defaults'}: ok")
        return 0
    print_json(_mask(msgspec.to_builtins(loaded, builtin_types=(Secret,))))
    return 0
