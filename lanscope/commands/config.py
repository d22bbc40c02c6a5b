"""``lanscope config check [FILE]`` and ``lanscope config show [FILE] [--json]``.

Both read the file the way every command does (``lanscope.config.load``): check
prints every problem as ``FILE: key.path: problem`` (exit 2 when there is one),
show prints the effective configuration — every key with its value, defaults
filled in — as YAML in config.yaml's layout, or JSON, with secrets as ``***``.
"""

from __future__ import annotations

import argparse
import sys

import msgspec
import yaml

from lanscope.config import Config, ConfigError, Secret, load
from lanscope.output import print_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["check", "show"],
                        help="check: report every problem; show: print the effective config "
                             "(secrets masked)")
    parser.add_argument("file", nargs="?", help="config file (default: -c FILE, else ./config.yaml, "
                                                "else /etc/lanscope/config.yaml)")
    parser.add_argument("--json", action="store_true", help="show: JSON instead of YAML")


def _mask(value: object) -> object:
    if isinstance(value, Secret):
        return "***"
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return value


def effective(config: Config) -> dict[str, object]:
    """Every key of ``config`` in config.yaml's names and order, secrets masked."""
    tree = _mask(msgspec.to_builtins(config, builtin_types=(Secret,)))
    assert isinstance(tree, dict)
    return tree


def main(args: argparse.Namespace, config: Config) -> int:
    path = args.file or args.config
    try:
        loaded = load(path)
    except ConfigError as exc:
        for problem in exc.problems:      # the report is the output: stdout, like a linter's
            print(problem)
        print(f"{len(exc.problems)} problem{'s' if len(exc.problems) != 1 else ''}", file=sys.stderr)
        return 2
    if args.action == "check":
        print(f"{path or 'built-in defaults'}: ok")
        return 0
    if args.json:
        print_json(effective(loaded))
    else:
        sys.stdout.write(yaml.safe_dump(effective(loaded), sort_keys=False, allow_unicode=True))
    return 0
