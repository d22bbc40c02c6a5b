"""The fingerprint engine: a port's banner or probe reply -> service, product, version, OS hint, CPE.

Rules are data (``rules/*.yaml`` and ``rules.yaml`` next to this module, see
``_rules.py``), loaded once and compiled. ``identify()`` asks every source and
keeps the most specific, most confident answer:

1. the shipped rules (first match wins; a file's rules are only tried when the
   reply looks like its protocol: ``applies_if``);
2. nmap's ``match`` lines when switched on (``ports.nmap_service_probes``);
   they may fill in what a shipped rule left open for the same product, or
   answer where no shipped rule knew the software, never replace a more
   specific answer;
3. generic extraction (``_generic.py``): the answer where no rule named a
   product, and the version of a product a rule named without one when the
   reply's own ``Name/1.2`` token names the same product ("Server: Caddy/2.7.6");
4. a port-number hint.

A version no software prints (nine digits or more and nothing else: a build
id, a timestamp) is dropped, whoever read it.

A greeting given without its status code (``host ESMTP Postfix`` on port 25)
is read again with the code the port's protocol would have sent. Everything
here is pure: bytes in, an ``Identity`` out. The banner is attacker-controlled:
it is matched as data (latin-1, one character per byte), at most ``MATCH_CAP``
bytes of it, and every extracted field is stripped of control characters and
capped.
"""

from __future__ import annotations

import logging
import re
from functools import cache
from pathlib import Path

from lanscope.net.ports import service_name

from ._generic import GENERIC_CONFIDENCE, generic
from ._rules import (
    Compiled,
    CompiledOs,
    Identity,
    RuleError,
    RuleFile,
    apply,
    clean,
    compile_file,
    expand,
    load_nmap_probes,
    parse,
    port_hints,
    shipped_files,
)

__all__ = ["GENERIC_CONFIDENCE", "Identity", "RuleError", "RuleSet", "default_rules", "escape_banner",
           "expand", "identify", "load_nmap_probes", "port_hint_rules", "rule_set", "rules_with_nmap"]

log = logging.getLogger(__name__)

MATCH_CAP = 16384            # bytes of a reply the rules look at
PORT_HINT_CONFIDENCE = 3
NAME_HINT_CONFIDENCE = 2

# The status code a server-first protocol puts before its greeting, by port: banners
# collected without it ("ESMTP Postfix", "Dovecot ready.") are read again with it, and a
# bare Server header value on a web port ("nginx/1.24.0") as the header of a response.
_WEB_PORTS = (80, 81, 443, 591, 3000, 4443, 5000, 7001, 7080, 8000, 8008, 8080, 8081, 8088, 8443, 8888, 9000,
              9080, 9090, 9443, 10000)
_GREETING_PREFIX = {21: "220 ", 990: "220 ", 2121: "220 ", 25: "220 ", 465: "220 ", 587: "220 ", 2525: "220 ",
                    110: "+OK ", 995: "+OK ", 143: "* OK ", 993: "* OK ", 22: "SSH-2.0-", 2222: "SSH-2.0-",
                    **dict.fromkeys(_WEB_PORTS, "HTTP/1.0 200 OK\r\nServer: ")}
# nmap's probes whose replies are HTTP responses (ours is "GET / HTTP/1.0").
_NMAP_HTTP_PROBES = frozenset({"GetRequest", "HTTPOptions", "FourOhFourRequest"})
_HAS_STATUS = re.compile(r"^(?:[1-5]\d\d[ -]|\+OK|-ERR|\* ?(?:OK|BYE|PREAUTH)|SSH-|HTTP/|\xff)", re.ASCII)


def _specificity(found: Identity) -> int:
    return (2 if found.product else 0) + (1 if found.version else 0)


# Words two names of different software share: a vendor, a protocol, a daemon suffix.
_COMMON_WORDS = frozenset({
    "apache", "microsoft", "oracle", "ibm", "sun", "hp", "hpe", "cisco", "google", "huawei", "novell",
    "lotus", "amazon", "aws", "gnu", "http", "httpd", "web", "server", "service", "smtpd", "ftpd", "ftp",
    "sshd", "ssh", "imapd", "imap", "imap4", "pop3d", "pop3", "telnetd", "mail", "proxy", "daemon", "and",
    "for", "the",
})


def _name_words(name: str) -> set[str]:
    return {w for w in re.split(r"[^a-z0-9]+", name.lower()) if len(w) > 2 and w not in _COMMON_WORDS}


def _same_product(a: str, b: str) -> bool:
    """Whether two names share a word that names software ("Yahoo popgate", "popgate")."""
    return bool(_name_words(a) & _name_words(b))


_NO_VERSION = re.compile(r"\d{9,}", re.ASCII)    # a build id or timestamp, not a version


class RuleSet:
    """Compiled rules. Build once (``default_rules()``) and share."""

    def __init__(self, rules: list[Compiled], os_rules: list[CompiledOs],
                 port_hints: dict[tuple[str, int], str], extra: list[Compiled] | None = None) -> None:
        self.rules = rules
        self.os_rules = os_rules
        self.port_hints = port_hints
        self.extra = extra or []             # nmap's match lines: a second opinion, never the first

    @classmethod
    def from_text(cls, text: str, *, source: str = "rules") -> RuleSet:
        return cls.from_file(parse(text, source), source=source)

    @classmethod
    def from_file(cls, data: RuleFile, *, source: str = "rules") -> RuleSet:
        rules, os_rules = compile_file(data, source)
        return cls(rules, os_rules, port_hints(data, source))

    @classmethod
    def from_files(cls, files: list[tuple[str, RuleFile]]) -> RuleSet:
        rules: list[Compiled] = []
        os_rules: list[CompiledOs] = []
        hints: dict[tuple[str, int], str] = {}
        for source, data in files:
            r, o = compile_file(data, source)
            rules += r
            os_rules += o
            hints.update(port_hints(data, source))
        return cls(rules, os_rules, hints)

    def with_extra(self, extra: list[Compiled]) -> RuleSet:
        """These rules plus ``extra`` (nmap's match lines) as a lower-ranked source."""
        return RuleSet(self.rules, self.os_rules, self.port_hints, self.extra + extra)

    def identify(self, data: bytes | str, port: int, protocol: str = "tcp") -> Identity:
        """Identify the service behind one reply; never raises on hostile input."""
        text = data[:MATCH_CAP].decode("latin-1") if isinstance(data, bytes) else data[:MATCH_CAP]
        found = self._best(text, port) if text else None
        prefix = _GREETING_PREFIX.get(port) if protocol == "tcp" else None
        if prefix and text and (found is None or not found.product) and not _HAS_STATUS.match(text):
            again = self._best(prefix + text.lstrip(" "), port)
            if again is not None and again.product:
                found = again
        if found is None or (found.service is None and not found.product):
            hint = self._port_hint(port, protocol)
            found = hint if found is None else found
            found.service = found.service or hint.service
        if found.version and _NO_VERSION.fullmatch(found.version):
            found.version = None
        if text:
            self._os(found, text)
        return found

    def first_match(self, text: str, port: int) -> tuple[int, Identity] | None:
        """The index and answer of the first shipped rule that matches (what ``identify`` starts from)."""
        guards: dict[int, bool] = {}
        for index, compiled in enumerate(self.rules):
            rule = compiled.rule
            if rule.ports and port not in rule.ports:
                continue
            guard = compiled.guard
            if guard is not None:
                key = id(guard)
                if key not in guards:
                    guards[key] = guard.search(text) is not None
                if not guards[key]:
                    continue
            m = compiled.regex.search(text)
            if m:
                return index, apply(rule, m, compiled.source)
        return None

    def _best(self, text: str, port: int) -> Identity | None:
        hit = self.first_match(text, port)
        ours = hit[1] if hit else None
        if ours is not None and ours.product and ours.version:
            return ours                      # nothing can be more specific than a rule's product + version
        theirs = self._nmap(text, port)
        guess = generic(text, port)
        if ours is not None and ours.product:
            # nmap, then the reply's own name/version token, may know the version of the product a rule named.
            for other in (theirs, guess):
                if (other is not None and other.version and other.version[0].isdigit() and other.product
                        and _same_product(ours.product, other.product)):
                    ours.version = other.version
                    break
            return ours
        candidates = [c for c in (ours, theirs, guess) if c is not None]
        if not candidates:
            return None
        # Most specific first, then most confident; on a tie the earlier source (ours, nmap, generic).
        ranked = enumerate(candidates)
        best = max(ranked, key=lambda ic: (_specificity(ic[1]), ic[1].confidence or 0, -ic[0]))[1]
        if ours is not None and ours.service:
            best.service = ours.service          # a rule named the protocol; the guess only the software
        elif not best.service:
            best.service = next((c.service for c in candidates if c.service), None)
        return best

    def _nmap(self, text: str, port: int) -> Identity | None:
        http = text.startswith("HTTP/")
        for compiled in self.extra:
            if (compiled.probe in _NMAP_HTTP_PROBES) != http:
                continue                     # a line written for another kind of request's reply
            m = compiled.regex.search(text)
            if m:
                return apply(compiled.rule, m, compiled.source)
        return None

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
                name = clean(expand(compiled.rule.name, m))
                if name:
                    found.os_hint = name
                    found.os_family = compiled.rule.family
                    found.os_confidence = compiled.rule.confidence
                    return


@cache
def _shipped() -> tuple[tuple[str, RuleFile], ...]:
    return tuple((source, parse(text, source)) for source, text in shipped_files())


@cache
def default_rules() -> RuleSet:
    return RuleSet.from_files(list(_shipped()))


# The top-level ``port_hints:`` block of a rules file, up to the next top-level key.
_HINTS_SECTION = re.compile(r"^port_hints:.*?(?=^[^\s#]|\Z)", re.MULTILINE | re.DOTALL)


@cache
def port_hint_rules() -> RuleSet:
    """The shipped port hints without the banner rules: what a states-only scan needs,
    without compiling ~700 regular expressions or parsing their files."""
    source, text = shipped_files()[-1]
    section = _HINTS_SECTION.search(text)
    data = parse("rules: []\n" + section.group(0), source) if section else parse(text, source)
    return RuleSet([], [], port_hints(data, source))


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
