"""Rules as data: the rule files' schema, their loading and compiling, and nmap's match lines.

A rules file is YAML: ``rules`` (regex -> service/product/version templates),
optionally ``applies_if`` (a regex a reply must match before the file's rules
are tried: the cheap classification of the first bytes), ``os_rules`` and
``port_hints``. The shipped files are ``rules/*.yaml`` (one per protocol
family, tried in ``FAMILIES`` order) and ``rules.yaml`` (databases, brokers,
UDP renderings, OS rules and port hints). nmap's ``nmap-service-probes`` can be
translated into the same rules at run time; it is never shipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import msgspec
import yaml

FIELD_CAP = 200              # characters of one extracted field
FAMILIES = ("ssh", "ftp", "mail", "http", "telnet")


class Rule(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    match: str
    service: str | None = None
    product: str | None = None
    version: str | None = None
    extra_info: str | None = None
    os: str | None = None
    os_family: str | None = None
    device_type: str | None = None
    cpe: list[str] = []
    confidence: int = 8
    ports: list[int] = []
    auth_required: bool | None = None
    example: str = ""            # a real reply shape this rule must identify (checked by a test)


class OsRule(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    match: str
    name: str
    family: str | None = None
    confidence: int = 7


class RuleFile(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    rules: list[Rule] = []
    applies_if: str | None = None
    os_rules: list[OsRule] = []
    port_hints: dict[str, str] = {}


class Identity(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What the rules concluded about one port (None where unknown)."""

    service: str | None = None
    product: str | None = None
    version: str | None = None
    extra_info: str | None = None
    os_hint: str | None = None
    os_family: str | None = None
    os_confidence: int | None = None
    device_type: str | None = None
    cpe: list[str] = []
    confidence: int | None = None
    auth_required: bool | None = None
    method: str | None = None            # "banner" (a rule matched), "generic", "port"
    rule: str | None = None              # which rule source matched: "lanscope" | "nmap"


@dataclass(frozen=True)
class Compiled:
    regex: re.Pattern[str]
    rule: Rule
    source: str                          # "lanscope" | "nmap"
    guard: re.Pattern[str] | None = None  # the file's applies_if
    probe: str = ""                      # nmap: the probe whose reply the line was written for


@dataclass(frozen=True)
class CompiledOs:
    regex: re.Pattern[str]
    rule: OsRule


class RuleError(ValueError):
    """A rules file that cannot be used; names the file and the rule."""


def parse(text: str, source: str) -> RuleFile:
    try:
        # libyaml's loader when present: the shipped files parse in a fifth of the time.
        raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        return msgspec.convert(raw, RuleFile)
    except (yaml.YAMLError, msgspec.ValidationError) as exc:
        raise RuleError(f"{source}: {exc}") from None


def compile_pattern(pattern: str, source: str, index: int) -> re.Pattern[str]:
    try:
        # ASCII: the text is bytes as latin-1, so \w must not match 0xC0-0xFF "letters".
        return re.compile(pattern, re.ASCII)
    except re.error as exc:
        raise RuleError(f"{source}: rule #{index + 1} {pattern!r}: {exc}") from None


def compile_file(data: RuleFile, source: str) -> tuple[list[Compiled], list[CompiledOs]]:
    guard = None
    if data.applies_if:
        try:
            guard = re.compile(data.applies_if, re.ASCII)
        except re.error as exc:
            raise RuleError(f"{source}: applies_if {data.applies_if!r}: {exc}") from None
    rules = [Compiled(compile_pattern(r.match, source, i), r, "lanscope", guard)
             for i, r in enumerate(data.rules)]
    os_rules = [CompiledOs(compile_pattern(r.match, source, i), r) for i, r in enumerate(data.os_rules)]
    return rules, os_rules


def port_hints(data: RuleFile, source: str) -> dict[tuple[str, int], str]:
    hints: dict[tuple[str, int], str] = {}
    for key, name in data.port_hints.items():
        proto, _, port = key.partition("/")
        if proto not in ("tcp", "udp") or not port.isdigit():
            raise RuleError(f"{source}: port_hints: {key!r} is not like 'tcp/22'")
        hints[(proto, int(port))] = name
    return hints


def shipped_files() -> list[tuple[str, str]]:
    """(source name, text) of the shipped rule files, in the order they are tried."""
    package = resources.files("enrichers.port_probe")
    out = [(f"enrichers/port_probe/rules/{name}.yaml", package.joinpath("rules", f"{name}.yaml").read_text())
           for name in FAMILIES]
    out.append(("enrichers/port_probe/rules.yaml", package.joinpath("rules.yaml").read_text()))
    return out


_TEMPLATE = re.compile(r'\$(\d)|\$P\((\d)\)|\$SUBST\((\d),"([^"]*)","([^"]*)"\)|\$I\((\d),"[<>]"\)')


def expand(template: str, m: re.Match[str]) -> str:
    """Fill ``$1``, ``$P(1)``, ``$SUBST(1,"_",".")`` from a match (nmap's template language)."""

    def group(n: str) -> str:
        index = int(n)
        if index > (m.re.groups or 0):
            return ""
        return m.group(index) or ""

    def replace(t: re.Match[str]) -> str:
        if t.group(1):
            return group(t.group(1))
        if t.group(2):
            return "".join(c for c in group(t.group(2)) if c.isprintable())
        if t.group(3):
            return group(t.group(3)).replace(t.group(4), t.group(5))
        return ""  # $I(): integer unpacking, not supported

    return _TEMPLATE.sub(replace, template)


def clean(value: str | None) -> str | None:
    """Printable, trimmed, capped; empty -> None."""
    if value is None:
        return None
    text = "".join(c if c.isprintable() else " " for c in value)
    text = re.sub(r"\s+", " ", text).strip(" ;,")
    return text[:FIELD_CAP] or None


def apply(rule: Rule, m: re.Match[str], source: str) -> Identity:
    def field(template: str | None) -> str | None:
        return clean(expand(template, m)) if template else None

    cpes = []
    for template in rule.cpe:
        cpe = clean(expand(template, m))
        if cpe:
            cpes.append(cpe.rstrip(":").replace(" ", "_").lower())
    return Identity(
        service=field(rule.service), product=field(rule.product), version=field(rule.version),
        extra_info=field(rule.extra_info), os_hint=field(rule.os), os_family=rule.os_family,
        os_confidence=min(rule.confidence, 6) if rule.os else None, device_type=field(rule.device_type),
        cpe=cpes, confidence=max(0, min(10, rule.confidence)), auth_required=rule.auth_required,
        method="banner", rule=source)


_NMAP_MATCH = re.compile(r"^(?:soft)?match\s+(\S+)\s+m([|=%@/~!:,#\"])(.*?)\2([si]*)(.*)$")
_NMAP_FIELD = re.compile(r"\s([pvioh])/([^/]*)/|\s([pvioh])\|([^|]*)\||\s(cpe):/([^/]*)/a?")
_PERL_ONLY = re.compile(r"\\[GXRKhHvVN]|\(\?[<]?[=!]\?|\(\?\||\\x\{|\\Q|\\E|\(\?>|\\p\{")
NMAP_MATCH_CONFIDENCE = 7
NMAP_SOFTMATCH_CONFIDENCE = 4


def load_nmap_probes(text: str) -> tuple[list[Compiled], int]:
    """Translate nmap-service-probes ``match`` lines into rules; returns (rules, skipped).

    Perl-only constructs (possessive/atomic groups, \\Q..\\E, \\x{...}) are
    skipped; the rest of Perl's regex syntax is Python's. Each rule keeps the
    name of the probe it was written for: a line for the reply to nmap's
    Ventrilo or SIP probe must not name the software behind an HTTP reply.
    """
    out: list[Compiled] = []
    skipped = 0
    probe = "NULL"
    for line in text.splitlines():
        if line.startswith("Probe "):
            probe = [*line.split(), "", "", ""][2]
            continue
        if not line.startswith(("match ", "softmatch ")):
            continue
        m = _NMAP_MATCH.match(line)
        if not m:
            skipped += 1
            continue
        service, pattern, flags, rest = m.group(1), m.group(3), m.group(4), m.group(5)
        if _PERL_ONLY.search(pattern):
            skipped += 1
            continue
        py_flags = re.ASCII | (re.S if "s" in flags else 0) | (re.I if "i" in flags else 0)
        try:
            regex = re.compile(pattern, py_flags)
        except (re.error, OverflowError, RecursionError):
            skipped += 1
            continue
        fields: dict[str, str] = {}
        cpes: list[str] = []
        for f in _NMAP_FIELD.finditer(" " + rest):
            if f.group(5):
                cpes.append("cpe:/" + f.group(6))
            else:
                key = f.group(1) or f.group(3)
                fields[key] = f.group(2) if f.group(1) else f.group(4)
        rule = Rule(match=pattern, service=service.removeprefix("ssl/"), product=fields.get("p"),
                    version=fields.get("v"), extra_info=fields.get("i"), os=fields.get("o"),
                    device_type=fields.get("d"), cpe=cpes,
                    confidence=(NMAP_MATCH_CONFIDENCE if line.startswith("match")
                                else NMAP_SOFTMATCH_CONFIDENCE))
        out.append(Compiled(regex, rule, "nmap", probe=probe))
    return out, skipped
