"""The fingerprint engine: a port's banner or probe reply -> service, product, version, OS hint, CPE.

Rules are data (``rules.yaml`` next to this module), loaded once and compiled.
``identify()`` tries, in order: the shipped rules, the optional rules translated
from nmap's ``nmap-service-probes`` (when present on the machine and switched
on; never shipped), generic extraction for unknown software (``Server:
Name/1.2``, ``SSH-2.0-Name_1.2``, ``220 host Name 1.2 ready``) and finally a
port-number hint. Everything here is pure: bytes in, an ``Identity`` out.

The banner is attacker-controlled: it is matched as data (latin-1, one
character per byte), at most ``MATCH_CAP`` bytes of it, and every extracted
field is stripped of control characters and capped.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import msgspec
import yaml

from lanscope.net.ports import service_name

log = logging.getLogger(__name__)

MATCH_CAP = 16384            # bytes of a reply the rules look at
FIELD_CAP = 200              # characters of one extracted field
PORT_HINT_CONFIDENCE = 3
NAME_HINT_CONFIDENCE = 2
GENERIC_CONFIDENCE = 5


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


class OsRule(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    match: str
    name: str
    family: str | None = None
    confidence: int = 7


class RuleFile(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    rules: list[Rule]
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
class _Compiled:
    regex: re.Pattern[str]
    rule: Rule
    source: str


@dataclass(frozen=True)
class _CompiledOs:
    regex: re.Pattern[str]
    rule: OsRule


class RuleError(ValueError):
    """A rules file that cannot be used; names the file and the rule."""


class RuleSet:
    """Compiled rules. Build once (``default_rules()``) and share."""

    def __init__(self, rules: list[_Compiled], os_rules: list[_CompiledOs],
                 port_hints: dict[tuple[str, int], str]) -> None:
        self.rules = rules
        self.os_rules = os_rules
        self.port_hints = port_hints

    @classmethod
    def from_text(cls, text: str, *, source: str = "rules") -> RuleSet:
        return cls.from_file(_parse(text, source), source=source)

    @classmethod
    def from_file(cls, data: RuleFile, *, source: str = "rules") -> RuleSet:
        rules = [_Compiled(_compile(r.match, source, i), r, "lanscope") for i, r in enumerate(data.rules)]
        os_rules = [_CompiledOs(_compile(r.match, source, i), r) for i, r in enumerate(data.os_rules)]
        return cls(rules, os_rules, _port_hints(data, source))

    def with_extra(self, extra: list[_Compiled]) -> RuleSet:
        """These rules plus ``extra`` tried after them (nmap's match lines)."""
        return RuleSet(self.rules + extra, self.os_rules, self.port_hints)

    def identify(self, data: bytes | str, port: int, protocol: str = "tcp") -> Identity:
        """Identify the service behind one reply; never raises on hostile input."""
        text = data[:MATCH_CAP].decode("latin-1") if isinstance(data, bytes) else data[:MATCH_CAP]
        found: Identity | None = None
        if text:
            for compiled in self.rules:
                if compiled.rule.ports and port not in compiled.rule.ports:
                    continue
                m = compiled.regex.search(text)
                if m:
                    found = _apply(compiled.rule, m, compiled.source)
                    break
            if found is None:
                found = _generic(text)
        if found is None:
            found = self._port_hint(port, protocol)
        if text:
            self._os(found, text)
        return found

    def _port_hint(self, port: int, protocol: str) -> Identity:
        name = self.port_hints.get((protocol, port))
        if name:
            return Identity(service=name, confidence=PORT_HINT_CONFIDENCE, method="port")
        name = service_name(port, protocol)
        if name:
            return Identity(service=name, confidence=NAME_HINT_CONFIDENCE, method="port")
        return Identity()

    def _os(self, found: Identity, text: str) -> None:
        for compiled in self.os_rules:
            m = compiled.regex.search(text)
            if m:
                name = _clean(expand(compiled.rule.name, m))
                if name:
                    found.os_hint = name
                    found.os_family = compiled.rule.family
                    found.os_confidence = compiled.rule.confidence
                    return


def _parse(text: str, source: str) -> RuleFile:
    try:
        # libyaml's loader when present: the shipped file parses in 10 ms instead of 50 ms.
        raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        return msgspec.convert(raw, RuleFile)
    except (yaml.YAMLError, msgspec.ValidationError) as exc:
        raise RuleError(f"{source}: {exc}") from None


def _port_hints(data: RuleFile, source: str) -> dict[tuple[str, int], str]:
    hints: dict[tuple[str, int], str] = {}
    for key, name in data.port_hints.items():
        proto, _, port = key.partition("/")
        if proto not in ("tcp", "udp") or not port.isdigit():
            raise RuleError(f"{source}: port_hints: {key!r} is not like 'tcp/22'")
        hints[(proto, int(port))] = name
    return hints


def _compile(pattern: str, source: str, index: int) -> re.Pattern[str]:
    try:
        # ASCII: the text is bytes as latin-1, so \w must not match 0xC0-0xFF "letters".
        return re.compile(pattern, re.ASCII)
    except re.error as exc:
        raise RuleError(f"{source}: rule #{index + 1} {pattern!r}: {exc}") from None


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


def _clean(value: str | None) -> str | None:
    """Printable, trimmed, capped; empty -> None."""
    if value is None:
        return None
    text = "".join(c if c.isprintable() else " " for c in value)
    text = re.sub(r"\s+", " ", text).strip(" ;,")
    return text[:FIELD_CAP] or None


def _apply(rule: Rule, m: re.Match[str], source: str) -> Identity:
    def field(template: str | None) -> str | None:
        return _clean(expand(template, m)) if template else None

    cpes = []
    for template in rule.cpe:
        cpe = _clean(expand(template, m))
        if cpe:
            cpes.append(cpe.rstrip(":").replace(" ", "_").lower())
    identity = Identity(
        service=field(rule.service), product=field(rule.product), version=field(rule.version),
        extra_info=field(rule.extra_info), os_hint=field(rule.os), os_family=rule.os_family,
        os_confidence=min(rule.confidence, 6) if rule.os else None, device_type=field(rule.device_type),
        cpe=cpes, confidence=max(0, min(10, rule.confidence)), auth_required=rule.auth_required,
        method="banner", rule=source)
    return identity


# Generic extraction for software no rule knows.
_GENERIC: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"^SSH-([\d.]+)-([A-Za-z][\w.-]*?)[_-]v?(\d[\w.]*)", re.ASCII), "ssh"),
    (re.compile(r"(?mi)^Server:[ \t]*([A-Za-z][\w .-]{0,40}?)/v?(\d[\w.-]{0,30})", re.ASCII), "http"),
    (re.compile(r"^220[ -](?:[\w.-]+ )?\(?([A-Za-z][\w-]{1,40})\)? v?(\d[\d.]+\w*)[^\r\n]*", re.ASCII),
     "ftp"),
]


def _generic(text: str) -> Identity | None:
    m = _GENERIC[0][0].match(text)
    if m:
        return Identity(service="ssh", product=_clean(m.group(2)), version=_clean(m.group(3)),
                        extra_info=f"protocol {m.group(1)}", confidence=GENERIC_CONFIDENCE, method="generic")
    m = _GENERIC[1][0].search(text)
    if m and text.startswith("HTTP/"):
        return Identity(service="http", product=_clean(m.group(1)), version=_clean(m.group(2)),
                        confidence=GENERIC_CONFIDENCE, method="generic")
    m = _GENERIC[2][0].match(text)
    if m:
        line = m.group(0).upper()
        service = "smtp" if "SMTP" in line or "MAIL" in line else "ftp"
        return Identity(service=service, product=_clean(m.group(1)), version=_clean(m.group(2)),
                        confidence=GENERIC_CONFIDENCE, method="generic")
    if text.startswith("SSH-"):
        return Identity(service="ssh", confidence=GENERIC_CONFIDENCE, method="generic")
    if re.match(r"^HTTP/[\d.]+ \d{3}", text):
        m = re.search(r"(?mi)^Server:[ \t]*([^\r\n]{1,60})", text)
        return Identity(service="http", product=_clean(m.group(1)) if m else None,
                        confidence=GENERIC_CONFIDENCE if m else 6, method="generic")
    if re.match(r"^220[ -][^\r\n]*(?:FTP|ftp)", text):
        return Identity(service="ftp", confidence=GENERIC_CONFIDENCE, method="generic")
    if re.match(r"^220[ -][^\r\n]*(?:SMTP|smtp|mail)", text):
        return Identity(service="smtp", confidence=GENERIC_CONFIDENCE, method="generic")
    return None


# --------------------------------------------------------------------------
# The shipped rules, and nmap's as an optional extra source


_SHIPPED = "enrichers/port_probe/rules.yaml"


def _shipped_text() -> str:
    return resources.files("enrichers.port_probe").joinpath("rules.yaml").read_text()


@cache
def _shipped() -> RuleFile:
    return _parse(_shipped_text(), _SHIPPED)


@cache
def default_rules() -> RuleSet:
    return RuleSet.from_file(_shipped(), source=_SHIPPED)


# The top-level ``port_hints:`` block of a rules file, up to the next top-level key.
_HINTS_SECTION = re.compile(r"^port_hints:.*?(?=^[^\s#]|\Z)", re.MULTILINE | re.DOTALL)


@cache
def port_hint_rules() -> RuleSet:
    """The shipped port hints without the banner rules: what a states-only scan needs,
    without compiling ~500 regular expressions or parsing them (a tenth of the file)."""
    section = _HINTS_SECTION.search(_shipped_text())
    data = _parse("rules: []\n" + section.group(0), _SHIPPED) if section else _shipped()
    return RuleSet([], [], _port_hints(data, _SHIPPED))


@cache
def rules_with_nmap(path: str) -> RuleSet:
    """The shipped rules, then the match lines of ``path`` (nmap-service-probes) if it exists."""
    base = default_rules()
    file = Path(path)
    if not file.is_file():
        log.warning("nmap service probes file %s not found; using lanscope's rules only", path)
        return base
    extra, skipped = load_nmap_probes(file.read_text(errors="replace"))
    log.info("loaded %d match lines from %s (%d skipped: not translatable)", len(extra), path, skipped)
    return base.with_extra(extra)


def rule_set(nmap_probes: str = "") -> RuleSet:
    """The rule set a stage should use: ``nmap_probes`` is a path or "" for the shipped rules only."""
    return rules_with_nmap(nmap_probes) if nmap_probes else default_rules()


_NMAP_MATCH = re.compile(r"^(?:soft)?match\s+(\S+)\s+m([|=%@/~!:,#\"])(.*?)\2([si]*)(.*)$")
_NMAP_FIELD = re.compile(r"\s([pvioh])/([^/]*)/|\s([pvioh])\|([^|]*)\||\s(cpe):/([^/]*)/a?")
_PERL_ONLY = re.compile(r"\\[GXRKhHvVN]|\(\?[<]?[=!]\?|\(\?\||\\x\{|\\Q|\\E|\(\?>|\\p\{")


def load_nmap_probes(text: str) -> tuple[list[_Compiled], int]:
    """Translate nmap-service-probes ``match`` lines into rules; returns (rules, skipped).

    Perl-only constructs (possessive/atomic groups, \\Q..\\E, \\x{...}) are
    skipped; the rest of Perl's regex syntax is Python's.
    """
    out: list[_Compiled] = []
    skipped = 0
    for line in text.splitlines():
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
        tunnel_service = service.removeprefix("ssl/")
        rule = Rule(match=pattern, service=tunnel_service, product=fields.get("p"),
                    version=fields.get("v"), extra_info=fields.get("i"), os=fields.get("o"),
                    device_type=fields.get("d"), cpe=cpes,
                    confidence=7 if line.startswith("match") else 4)
        out.append(_Compiled(regex, rule, "nmap"))
    return out, skipped


def identify(data: bytes | str, port: int, protocol: str = "tcp", *, nmap_probes: str = "") -> Identity:
    """Shortcut: identify with the default (or nmap-extended) rule set."""
    return rule_set(nmap_probes).identify(data, port, protocol)


def escape_banner(data: bytes, cap: int = 1024) -> str:
    """Printable ASCII kept, everything else as ``\\xNN`` (tabs, CR, LF too), at most ``cap`` bytes."""
    out = []
    for b in data[:cap]:
        if 0x20 <= b < 0x7F and b != 0x5C:
            out.append(chr(b))
        elif b == 0x5C:
            out.append("\\\\")
        elif b == 0x0A:
            out.append("\\n")
        elif b == 0x0D:
            out.append("\\r")
        else:
            out.append(f"\\x{b:02x}")
    text = "".join(out)
    if len(data) > cap:
        text += "..."
    return text[:4000]
