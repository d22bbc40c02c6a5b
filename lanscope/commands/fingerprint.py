"""``lanscope fingerprint --jsonl``: identify services from banners given as JSON lines on stdin.

Input, one object per line: ``{"port": 22, "protocol": "tcp", "banner": "SSH-2.0-..."}``
(``banner_b64`` instead of ``banner`` for raw bytes). Output, one line per
input line, in order: ``{"service", "product", "version", "os_hint", "cpe",
"confidence"}`` (null where unknown). A malformed line yields
``{"line": N, "error": "..."}`` and processing continues. For testing rules
and for other tools. A banner is what the server sent (a greeting, an HTTP
response); a greeting without its status code ("host ESMTP Postfix" on port
25) and a bare Server header value ("nginx/1.24.0" on a web port) are read
as the port's protocol would have sent them. ``bench/fingerprints.py`` scores
this command on the banner corpus in ``tests/data/banners``.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

from enrichers.port_probe.fingerprint import RuleSet, rule_set
from lanscope.config import Config
from lanscope.errors import UsageError

HELP = "identify services from banners (JSON lines)"
MAX_LINE = 1 << 20                  # a longer input line is rejected, not parsed
MAX_BANNER = 65536


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Also --json (before or after the command, like every command's): JSON lines are its output.
    parser.add_argument("--jsonl", "--json", dest="json", action="store_true",
                        help="read JSON lines on stdin, write JSON lines on stdout (required)")
    parser.add_argument("--nmap-probes", metavar="FILE", nargs="?",
                        const="/usr/share/nmap/nmap-service-probes",
                        help="also use the match lines of nmap's nmap-service-probes (if present)")


def _banner(obj: dict[str, Any]) -> bytes:
    if "banner_b64" in obj:
        value = obj["banner_b64"]
        if not isinstance(value, str):
            raise ValueError("banner_b64 must be a string")
        try:
            return base64.b64decode(value, validate=True)[:MAX_BANNER]
        except (binascii.Error, ValueError):
            raise ValueError("banner_b64 is not valid base64") from None
    value = obj.get("banner")
    if not isinstance(value, str):
        raise ValueError("needs a string 'banner' or 'banner_b64'")
    # A text banner: code points up to 255 map to the same bytes (latin-1), others to UTF-8.
    try:
        return value.encode("latin-1")[:MAX_BANNER]
    except UnicodeEncodeError:
        return value.encode("utf-8", "replace")[:MAX_BANNER]


def fingerprint_line(line: str, number: int, rules: RuleSet) -> dict[str, Any]:
    """One output object for one input line (an error object for a bad one)."""
    if len(line) > MAX_LINE:
        return {"line": number, "error": f"line is longer than {MAX_LINE} characters"}
    try:
        obj = msgspec.json.decode(line)
    except msgspec.DecodeError as exc:
        return {"line": number, "error": f"not JSON: {exc}"}
    if not isinstance(obj, dict):
        return {"line": number, "error": "expected a JSON object"}
    port = obj.get("port")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        return {"line": number, "error": "'port' must be an integer 0-65535"}
    protocol = obj.get("protocol", "tcp")
    if protocol not in ("tcp", "udp"):
        return {"line": number, "error": "'protocol' must be 'tcp' or 'udp'"}
    try:
        banner = _banner(obj)
    except ValueError as exc:
        return {"line": number, "error": str(exc)}
    found = rules.identify(banner, port, protocol)
    return {"service": found.service, "product": found.product, "version": found.version,
            "os_hint": found.os_hint, "cpe": found.cpe[0] if found.cpe else None,
            "confidence": found.confidence}


def run(lines: Iterable[str], rules: RuleSet) -> Iterator[dict[str, Any]]:
    for number, raw in enumerate(lines, start=1):
        line = raw.rstrip("\r\n")
        if not line.strip():
            yield {"line": number, "error": "empty line"}
            continue
        yield fingerprint_line(line, number, rules)


def main(args: argparse.Namespace, config: Config) -> int:
    if not args.json:
        raise UsageError("--jsonl is required: JSON lines are the only input it reads")
    rules = rule_set(args.nmap_probes or config.enrichers.port_probe.nmap_service_probes)
    encoder = msgspec.json.Encoder()
    out = sys.stdout
    for result in run(sys.stdin, rules):
        out.write(encoder.encode(result).decode() + "\n")
        out.flush()
    return 0
