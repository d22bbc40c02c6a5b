"""Flags of the commands that talk to a remote API (RouterOS, Proxmox): certificate checks
and secrets read from the environment."""

from __future__ import annotations

import argparse
import os

from lanscope.errors import UsageError
from lanscope.net.tls import TlsSettings


def add_tls_arguments(parser: argparse.ArgumentParser, whose: str) -> None:
    """--fingerprint, --ca-file, --insecure; ``whose``: "the router", "the" ..."""
    parser.add_argument("--fingerprint", metavar="SHA256",
                        help=f"accept only {whose} certificate with this SHA-256 fingerprint")
    parser.add_argument("--ca-file", metavar="PEM", help=f"verify {whose} certificate with this CA")
    parser.add_argument("--insecure", action="store_true",
                        help=f"do not verify {whose} certificate (prefer --fingerprint)")


def tls_from_args(args: argparse.Namespace) -> TlsSettings | None:
    """The TLS settings the flags ask for; None: none given (the config's stand)."""
    if not (args.fingerprint or args.ca_file or args.insecure):
        return None
    return TlsSettings(verify=not args.insecure, ca_file=args.ca_file, fingerprint_sha256=args.fingerprint)


def env_secret(flag: str, name: str) -> str:
    """The value of environment variable ``name``, given with ``flag``; a usage error if unset."""
    if name not in os.environ:
        raise UsageError(f"{flag}: environment variable {name} is not set")
    return os.environ[name]
