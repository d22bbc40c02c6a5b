"""Generic extraction: product and version from the common greeting shapes, when no rule knows the software.

The shapes: ``SSH-2.0-Impl_1.2``, ``Server: Name/1.2.3 (extra)``, ``220 host
Product Version ready``, ``+OK Product vX``, ``* OK [CAPABILITY ...] Product
ready``, and the variants real servers send (UPnP-style lists, names of several
words, ``Name-1.2``). What comes out is a guess (confidence 5, 4 without a
version): a rule always beats it (it may still lend a rule the version of the
same product), and words that are protocol talk ("ESMTP", "ready"), look like
host names or name an operating system alone are never taken for a product.
"""

from __future__ import annotations

import itertools
import re

from ._rules import Identity, clean

GENERIC_CONFIDENCE = 5
GENERIC_NAME_ONLY_CONFIDENCE = 4
_GUESS = "generic"

_SSH = re.compile(r"^SSH-(\d[\d.]*)-([^\s\r\n]{1,80})(?:[ \t]+([^\r\n]{0,80}))?", re.ASCII)
# "SSH-2.0-Mocana SSH 6.3", "SSH-2.0-Data ONTAP SSH v9.1P5": a name of up to five words, a protocol word,
# then the version among the comments.
_SSH_COMMENT_VERSION = re.compile(
    r"^((?:[A-Za-z][\w.!-]*(?: |$)){0,4}?)(?:(?:SSH|Server|sshd)(?: |$))?v?(\d+\.\d+[\w.]*)?$", re.ASCII)
_SSH_SOFTWARE = re.compile(r"^([A-Za-z][\w.]*?(?:-[A-Za-z][\w.]*?)*)[_-]v?(\d[\w.-]*)$", re.ASCII)
_HTTP = re.compile(r"^HTTP/\d(?:\.\d)? \d{3}", re.ASCII)
_SERVER = re.compile(r"(?mi)^Server:[ \t]*([^\r\n]{1,200})", re.ASCII)
_SERVER_TOKEN = re.compile(r"^([A-Za-z][\w .+-]{0,40}?)(?:/| [vV]| |-(?=\d))[vV]?(\d[\w.-]{0,30})", re.ASCII)
# One product of a UPnP-style list ("Linux/2.6.21, UPnP/1.0, Portable SDK for UPnP devices/1.6.6").
_LISTED_PRODUCT = re.compile(r"^([A-Za-z][\w .+-]{0,60}?)/v?(\d[\w.-]{0,30})$", re.ASCII)
_PRODUCT_TOKEN = re.compile(r"(?:^|\s)([A-Za-z][\w.+-]{0,40})/v?(\d[\w.-]{0,30})", re.ASCII)
# The operating system and protocol tokens of a UPnP-style header ("Linux/3.14 UPnP/1.0 MiniUPnPd/2.1").
_NOISE = frozenset({"linux", "unix", "windows", "win32", "win64", "upnp", "dlnadoc", "unknown", "ubuntu",
                    "debian", "centos", "freebsd", "posix", "isos", "nucleus", "os", "darwin", "macos",
                    "http", "ipv6"})
_SERVER_NAME = re.compile(r"^([A-Za-z][\w.+-]{1,40})(?:[\s(;,]|$)", re.ASCII)
_LINE = re.compile(r"^(?:([1-5]\d\d)[ -]|(\+OK) ?|(\* ?OK) ?(?:\[[^\]\r\n]*\] ?)?)([^\r\n]*)", re.ASCII)
# A name of up to four words ("GlobalSCAPE Secure FTP Server", "Mercury/32", "OpenBSD ftpd"), then its
# version after a space, a slash, "(v" or a hyphen ("CompleteFTP-22.1.1").
_NAME_WORD = r"[A-Za-z][\w+'.!-]*(?:/\d+(?= ))?"
_MORE_WORDS = (r"(?: (?!(?:Version|Ver|Release|Build)\b|V\d)[A-Z][\w+'.!-]*(?:/\d+(?= ))?){0,3}"
               r"(?: (?:ftpd|smtpd|imapd|pop3d|httpd))?")
_VERSIONED = re.compile(
    rf"(?:^|[\s(\[<,])({_NAME_WORD}{_MORE_WORDS})"
    r"(?:[ /]\(?|-(?=\d))(?:[Vv]ersion:? |[Vv]er\.? |[Vv]|[Rr]elease )?(\d+\.\d+[\w.+-]*)", re.ASCII)
_NAMED_READY = re.compile(
    r"(?:^|\s)([A-Z][\w+-]{2,40}(?: [A-Z][\w+-]{1,40}){0,2}) "
    r"(?:E?SMTP |FTP |POP3? |IMAP4?(?:rev1)? |[Mm]ail )?(?:[Ss]erver |[Ss]ervice )?(?:is )?ready", re.ASCII)
# "220 mx.example.com ESMTP Mailtrap", "ESMTP RZmta (P6 -)": a name after the protocol word, at the end.
_NAMED_AFTER = re.compile(r"(?:E?SMTP|FTP|POP3|IMAP4(?:rev1)?) ([A-Z][\w.-]{2,40})(?: \([^)\r\n]*\))?[ .]*$",
                          re.ASCII)
# "* OK Yandex IMAP4rev1 at ...": a capitalised name before the protocol word (IMAP and POP3, whose greetings
# rarely start with a host name; an SMTP greeting always does).
_NAMED_BEFORE = re.compile(r"(?:^|\s)([A-Z][\w.-]{2,40}) (?:IMAP4(?:rev1)?|POP3)\b", re.ASCII)
# An operating system named alone with its version ("FTP server (SunOS 5.10) ready") is not the server.
_OS_NAMES = frozenset({"sunos", "solaris", "linux", "freebsd", "netbsd", "openbsd", "windows", "ubuntu",
                       "debian", "centos", "unix", "aix", "hp-ux", "darwin", "macos", "fedora", "redhat"})
# Host names: dotted, an address, or a lower-case name numbered like a machine ("migmx000", "srv2196").
_HOSTLIKE = re.compile(r"^(?:[\w-]+\.)+[A-Za-z]{2,}$|^\d+\.\d+\.\d+\.\d+$|^\[|^[a-z]+[-_]?\d{2,}$", re.ASCII)
_STOP = frozenset({
    "esmtp", "smtp", "ftp", "ftpd", "pop", "pop3", "imap", "imap4", "imap4rev1", "lmtp", "server",
    "service", "services", "ready", "welcome", "to", "the", "a", "an", "mail", "email", "mailserver",
    "version", "ver", "release", "build", "at", "on", "host", "system", "daemon", "gateway", "for",
    "is", "by", "running", "ok", "hello", "this", "of", "and", "ip", "tcp", "http", "https", "web",
    "www", "you", "your", "are", "connected", "please", "login", "user", "users", "number", "allowed",
    "ssh", "sshd", "localhost",
})
_OS_OR_NOISE = _OS_NAMES | _NOISE    # ends an SSH comment's product name
_STOP_OR_NOISE = _STOP | _NOISE      # never an HTTP Server: name


def generic(text: str, port: int) -> Identity | None:
    """The product/version a greeting's shape gives away, or None."""
    if text.startswith("SSH-"):
        return _ssh(text)
    if _HTTP.match(text) or text[:7].lower() == "server:":
        return _http(text)
    m = _LINE.match(text)
    if m:
        return _line(m, text, port)
    return None


def _ssh(text: str) -> Identity:
    m = _SSH.match(text)
    if not m:
        return Identity(service="ssh", confidence=GENERIC_NAME_ONLY_CONFIDENCE, method=_GUESS)
    protocol, software = m.group(1), m.group(2)
    extra = f"protocol {protocol}"
    sm = _SSH_SOFTWARE.match(software)
    if sm:
        return Identity(service="ssh", product=clean(sm.group(1)), version=clean(sm.group(2)),
                        extra_info=extra, confidence=GENERIC_CONFIDENCE, method=_GUESS)
    if re.fullmatch(r"[A-Za-z][A-Za-z_.-]{1,40}", software) and software.lower() not in _STOP:
        cv = _SSH_COMMENT_VERSION.match((m.group(3) or "").strip())
        more = list(itertools.takewhile(lambda w: w.lower() not in _OS_OR_NOISE,
                                        cv.group(1).split() if cv else []))
        name = " ".join([software, *more])
        if cv and cv.group(2):
            return Identity(service="ssh", product=clean(name), version=clean(cv.group(2)),
                            extra_info=extra, confidence=GENERIC_CONFIDENCE, method=_GUESS)
        return Identity(service="ssh", product=clean(name), extra_info=extra,
                        confidence=GENERIC_NAME_ONLY_CONFIDENCE, method=_GUESS)
    return Identity(service="ssh", extra_info=extra, confidence=GENERIC_NAME_ONLY_CONFIDENCE, method=_GUESS)


def _http(text: str) -> Identity:
    server = _SERVER.search(text)
    if not server:
        return Identity(service="http", confidence=6, method=_GUESS)
    value = server.group(1).strip()
    parts = [_LISTED_PRODUCT.match(part.strip()) for part in value.split(",")] if "," in value else []
    listed = [t for t in parts if t is not None and t.group(1).split()[0].lower() not in _NOISE]
    if listed:                               # the product comes after the OS and UPnP tokens: the last one
        last = listed[-1]
        return Identity(service="http", product=clean(last.group(1)), version=clean(last.group(2)),
                        confidence=GENERIC_CONFIDENCE, method=_GUESS)
    for token in _PRODUCT_TOKEN.finditer(value):
        if token.group(1).lower() not in _NOISE:
            if token.start(1) == 0:
                break                        # the first token is the product: read it below
            return Identity(service="http", product=clean(token.group(1)), version=clean(token.group(2)),
                            confidence=GENERIC_CONFIDENCE, method=_GUESS)
    m = _SERVER_TOKEN.match(value)
    if m and m.group(1).strip().lower() not in _STOP:
        return Identity(service="http", product=clean(m.group(1)), version=clean(m.group(2)),
                        confidence=GENERIC_CONFIDENCE, method=_GUESS)
    m = _SERVER_NAME.match(value)
    if m and m.group(1).lower() not in _STOP_OR_NOISE and not _HOSTLIKE.match(m.group(1)):
        return Identity(service="http", product=clean(m.group(1)), confidence=GENERIC_NAME_ONLY_CONFIDENCE,
                        method=_GUESS)
    return Identity(service="http", confidence=GENERIC_NAME_ONLY_CONFIDENCE, method=_GUESS)


def _service(code: str | None, pop: str | None, line: str, port: int) -> str:
    if pop:
        return "pop3"
    if code is None:
        return "imap"
    if port in (21, 990, 2121) or re.search(r"\bFTP", line, re.I):
        return "ftp"
    if port in (25, 465, 587, 2525) or re.search(r"SMTP|\bmail", line, re.I):
        return "smtp"
    return "ftp"


# Words after which a greeting names its software: the protocol, a host name, "at"/"on" ...
_BEFORE_NAME = frozenset({"esmtp", "smtp", "lmtp", "pop", "pop3", "imap", "imap4", "imap4rev1", "at", "on",
                          "from", "to", "welcome", "localhost"})


def _ends_host_part(word: str) -> bool:
    return word.lower().strip(".,") in _BEFORE_NAME or bool(_HOSTLIKE.match(word))


def _product_ok(name: str) -> bool:
    first = name.split()[0]
    return (first.lower().strip(".,") not in _STOP and not _HOSTLIKE.match(first)
            and any(c.isalpha() for c in first) and len(first) > 1)


def _line(m: re.Match[str], text: str, port: int) -> Identity:
    code, pop = m.group(1), m.group(2)
    service = _service(code, pop, text[:400], port)
    # Every line of a multi-line reply ("220-...", "220 ...") can hold the product.
    lines = [m.group(4)]
    if code:
        lines += [x.group(1) for x in re.finditer(rf"(?m)^{code}[ -]([^\r\n]*)", text)][1:4]
    for line in lines:
        for v in _VERSIONED.finditer(line):
            name = v.group(1)
            words = name.split()
            # The name starts after the last protocol word or host name that other words follow
            # ("localhost IMAP4rev1 Mercury/32").
            cut = max((i + 1 for i, w in enumerate(words)
                       if _ends_host_part(w) and any(map(_product_ok, words[i + 1:]))), default=0)
            words = words[cut:]
            while words and not _product_ok(words[0]):
                words.pop(0)
            if len(words) == 1 and words[0].lower() in _OS_NAMES:
                continue
            if words and _product_ok(" ".join(words)):
                return Identity(service=service, product=clean(" ".join(words)), version=clean(v.group(2)),
                                confidence=GENERIC_CONFIDENCE, method=_GUESS)
    shapes = [_NAMED_READY, _NAMED_AFTER] + ([_NAMED_BEFORE] if service in ("imap", "pop3") else [])
    for line in lines:
        n = next((found for shape in shapes if (found := shape.search(line))), None)
        if n and _product_ok(n.group(1)):
            return Identity(service=service, product=clean(n.group(1)),
                            confidence=GENERIC_NAME_ONLY_CONFIDENCE, method=_GUESS)
    return Identity(service=service, confidence=GENERIC_NAME_ONLY_CONFIDENCE, method=_GUESS)
