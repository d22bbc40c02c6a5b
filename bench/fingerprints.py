"""Service identification on a corpus of real-world banners: product and version accuracy per family.

    .venv/bin/python -m bench.fingerprints [--corpus DIR] [--strict] [--nmap-probes [FILE]] [--cli] [--misses]

The corpus is ``tests/data/banners/<family>.jsonl`` (see SOURCES.md there;
``--corpus tests/data/banners_heldout`` scores the held-out corpus):
one banner per line with the port it was read on and the expected product
and version. Each line goes through ``lanscope fingerprint --jsonl``: in
process through the command's own ``run()`` (the default), or as the real
command in a subprocess with ``--cli``. A product is right when every word of
the expected name appears in lanscope's product ("Postfix" in "Postfix
smtpd"); a version is right when it is exactly the expected one (no version
expected and none given is right too). ``--strict`` asks for the name
itself: lanscope's product, less a trailing daemon word ("httpd", "smtpd",
"sshd" ...), must equal the expected name, case and punctuation aside
("Postfix smtpd" is "Postfix", "Yahoo popgate" is not "Yahoo").
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from enrichers.port_probe.fingerprint import rule_set
from lanscope.commands.fingerprint import run

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "banners"
HELDOUT = CORPUS.parent / "banners_heldout"   # real-world banners from sources no rule was written from
NMAP_PROBES = "/usr/share/nmap/nmap-service-probes"


def load(corpus: Path = CORPUS) -> dict[str, list[dict[str, Any]]]:
    return {path.stem: [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            for path in sorted(corpus.glob("*.jsonl"))}


def _words(text: str) -> list[str]:
    return [w for w in re.split(r"[^a-z0-9]+", text.lower()) if w]


def product_right(expected: str | None, got: str | None) -> bool:
    if not expected:
        return not got
    have = set(_words(got or ""))
    return bool(got) and all(w in have for w in _words(expected))


# The daemon words lanscope appends to a product name ("Postfix smtpd", "Apache httpd").
_DAEMON_WORDS = frozenset({"httpd", "smtpd", "ftpd", "sshd", "imapd", "pop3d", "telnetd", "daemon"})


def _canonical(name: str) -> str:
    words = _words(name)
    while len(words) > 1 and words[-1] in _DAEMON_WORDS:
        words.pop()
    return " ".join(words)


def product_exact(expected: str | None, got: str | None) -> bool:
    if not expected or not got:
        return not expected and not got
    return _canonical(got) == _canonical(expected)


def version_right(expected: str | None, got: str | None) -> bool:
    return (expected or None) == (got or None)


def _inputs(rows: list[dict[str, Any]]) -> list[str]:
    keep = ("port", "protocol", "banner", "banner_b64")
    return [json.dumps({k: v for k, v in row.items() if k in keep}) for row in rows]


def identify(rows: list[dict[str, Any]], nmap_probes: str, cli: bool) -> list[dict[str, Any]]:
    lines = _inputs(rows)
    if not cli:
        return list(run(lines, rule_set(nmap_probes)))
    argv = [sys.executable, "-m", "lanscope", "fingerprint", "--jsonl"]
    if nmap_probes:
        argv += ["--nmap-probes", nmap_probes]
    done = subprocess.run(argv, input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=600,
                          check=True)
    return [json.loads(line) for line in done.stdout.splitlines()]


Scores = dict[str, tuple[int, int, int, list[tuple[dict[str, Any], dict[str, Any]]]]]


def score(corpus: dict[str, list[dict[str, Any]]], nmap_probes: str = "", cli: bool = False,
          strict: bool = False) -> Scores:
    """family -> (lines, products right, versions right, misses)."""
    right = product_exact if strict else product_right
    out = {}
    for family, rows in corpus.items():
        results = identify(rows, nmap_probes, cli)
        products = versions = 0
        misses = []
        for row, got in zip(rows, results, strict=True):
            p = right(row["product"], got.get("product"))
            v = version_right(row["version"], got.get("version"))
            products += p
            versions += v
            if not (p and v):
                misses.append((row, got))
        out[family] = (len(rows), products, versions, misses)
    return out


def table(scores: dict[str, tuple[int, int, int, list[Any]]]) -> str:
    lines = ["| family | banners | product right | version right |", "|---|---|---|---|"]
    total = [0, 0, 0]
    for family, (n, products, versions, _) in scores.items():
        lines.append(f"| {family} | {n} | {products} ({100 * products / n:.0f}%) "
                     f"| {versions} ({100 * versions / n:.0f}%) |")
        total = [total[0] + n, total[1] + products, total[2] + versions]
    n, products, versions = total
    lines.append(f"| all | {n} | {products} ({100 * products / n:.1f}%) "
                 f"| {versions} ({100 * versions / n:.1f}%) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nmap-probes", nargs="?", const=NMAP_PROBES, default="",
                        help=f"also use nmap's match lines (default file {NMAP_PROBES})")
    parser.add_argument("--cli", action="store_true", help="run the lanscope command in a subprocess")
    parser.add_argument("--misses", action="store_true", help="list the banners that were not fully right")
    parser.add_argument("--corpus", type=Path, default=CORPUS,
                        help="a folder of <family>.jsonl files (default %(default)s)")
    parser.add_argument("--strict", action="store_true",
                        help="a product is right only when its name is the expected one, daemon word aside")
    args = parser.parse_args(argv)
    if args.nmap_probes and not Path(args.nmap_probes).is_file():
        print(f"{args.nmap_probes} not found (install nmap)", file=sys.stderr)
        return 1
    scores = score(load(args.corpus), args.nmap_probes, args.cli, args.strict)
    print(table(scores))
    if args.misses:
        for family, (_, _, _, misses) in scores.items():
            for row, got in misses:
                banner = row.get("banner") or row.get("banner_b64", "")
                print(f"{family}: expected {row['product']!r} {row['version']!r}, got {got.get('product')!r} "
                      f"{got.get('version')!r}: {banner[:100]!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
