"""``lanscope schema``: the JSON Schema of every event, and the subjects they travel on."""

from __future__ import annotations

import argparse

from lanscope.config import Config
from lanscope.output import print_json, print_table
from schemas import STREAMS, json_schema


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--subjects", action="store_true",
                        help="list the streams and subjects instead of the schema")
    parser.add_argument("--json", action="store_true",
                        help="--subjects as JSON (the schema is always JSON)")


def main(args: argparse.Namespace, config: Config) -> int:
    if args.subjects and args.json:
        print_json({"streams": list(STREAMS)})
        return 0
    if args.subjects:
        print_table(["stream", "subjects", "description"],
                    [(s.name, " ".join(s.subjects), s.description) for s in STREAMS])
        return 0
    print_json(json_schema())
    return 0
