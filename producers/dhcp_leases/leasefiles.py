"""Lease file parsers: dhclient, NetworkManager, systemd-networkd, dnsmasq, ISC dhcpd, Kea.

Pure functions from file text to DhcpLease lists. Server-side files (dnsmasq,
dhcpd, Kea) describe other hosts; client-side files (dhclient, NetworkManager,
networkd) describe this machine's own lease. Append-style files (dhclient,
dhcpd, Kea) are logs: the last entry per lease wins. Lease text is untrusted
(host names come from clients): everything is capped and treated as data.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from schemas import DhcpLease
from schemas.types import normalize_ip, normalize_mac

from .routeros import cap

FORMATS = ("dhclient", "dhcpd", "dnsmasq", "kea", "networkmanager", "networkd")


@dataclass
class FileLease:
    """A lease from a file, with what the event needs besides the DhcpLease."""

    lease: DhcpLease
    alive: bool
    interface: str | None = None


@dataclass
class ParsedFile:
    path: str
    format: str
    leases: list[FileLease] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)   # lines/blocks skipped, with why


# --------------------------------------------------------------------------
# Format detection

_DHCLIENT = re.compile(r"^\s*lease\s*\{", re.M)
_DHCPD = re.compile(r"^\s*lease\s+[0-9A-Fa-f.:]+\s*\{", re.M)
_KEYVALUE = re.compile(r"^ADDRESS=", re.M)
# NetworkManager's internal DHCP client: /var/lib/NetworkManager/internal-<connection uuid>-<iface>.lease
_NM_INTERNAL = re.compile(r"(^|/)internal-[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}-[^/]+\.lease$")
_DNSMASQ_LINE = re.compile(r"^\d+ \S+ \S+ \S+ \S+\s*$", re.M)


def detect_format(path: str, text: str) -> str | None:
    """Which parser fits this file: by content first, then by name; None if unknown."""
    head = text.lstrip()[:200]
    if (head.startswith("address,") and "hwaddr" in head.split("\n", 1)[0]) or path.endswith(".csv"):
        return "kea"
    if _DHCPD.search(text) or "authoring-byte-order" in text or "server-duid" in text:
        return "dhcpd"
    if _DHCLIENT.search(text):
        return "dhclient"
    if _KEYVALUE.search(text) or "This is private data" in text[:80]:
        return "networkmanager" if "NetworkManager" in path or _NM_INTERNAL.search(path) else "networkd"
    if _DNSMASQ_LINE.search(text) or "dnsmasq" in path or path.endswith("dhcp.leases"):
        return "dnsmasq"
    return None


def parse_file(path: str, text: str, *, now: datetime, mtime: datetime | None = None,
               fmt: str | None = None) -> ParsedFile:
    """Parse one lease file (format detected unless given)."""
    fmt = fmt or detect_format(path, text)
    if fmt is None:
        if not text.strip():
            return ParsedFile(path, "empty")
        return ParsedFile(path, "unknown", problems=["not a lease file format lanscope knows"])
    parser = {
        "dhclient": parse_dhclient, "dhcpd": parse_dhcpd, "dnsmasq": parse_dnsmasq,
        "kea": parse_kea, "networkmanager": parse_keyvalue, "networkd": parse_keyvalue,
    }[fmt]
    result = ParsedFile(path, fmt)
    parser(text, result, now=now, mtime=mtime)
    return result


# --------------------------------------------------------------------------
# ISC syntax (dhclient.leases, dhcpd.leases): statements end in ';', blocks in braces,
# strings in double quotes with C escapes, '#' comments outside strings.

_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[{};]|#[^\n]*|[^\s{};"#]+', re.S)


@dataclass
class _Block:
    head: list[str]
    statements: list[list[str]] = field(default_factory=list)
    blocks: list[_Block] = field(default_factory=list)
    line: int = 0


def _tokens(text: str) -> Iterator[tuple[str, int]]:
    line = 1
    position = 0
    for match in _TOKEN.finditer(text):
        line += text.count("\n", position, match.start())
        position = match.start()
        token = match.group()
        if token.startswith("#"):
            continue
        yield token, line


def _parse_isc(text: str) -> tuple[_Block, list[str]]:
    """The file as a tree of blocks; unbalanced braces are reported, not fatal."""
    root = _Block(head=[])
    stack = [root]
    current: list[str] = []
    problems: list[str] = []
    for token, line in _tokens(text):
        if token == ";":
            if current:
                stack[-1].statements.append(current)
            current = []
        elif token == "{":
            block = _Block(head=current, line=line)
            stack[-1].blocks.append(block)
            stack.append(block)
            current = []
        elif token == "}":
            if len(stack) == 1:
                problems.append(f"line {line}: '}}' without a block")
            else:
                stack.pop()
            current = []
        else:
            current.append(token)
    if len(stack) > 1:
        # A file cut mid-write: the last block is incomplete; keep what came before it.
        unfinished = stack[1]
        problems.append(f"line {unfinished.line}: block {' '.join(unfinished.head)!r} is not closed")
        root.blocks.remove(unfinished)
    return root, problems


def _unquote_bytes(token: str) -> bytes:
    """A C-escaped quoted string's bytes (octal escapes such as ``\\001`` included)."""
    if len(token) < 2 or not token.startswith('"'):
        return token.encode()
    body = token[1:-1]
    out = bytearray()
    i = 0
    while i < len(body):
        if body[i] == "\\" and i + 1 < len(body):
            octal = re.match(r"[0-7]{1,3}", body[i + 1:])
            if octal:
                out.append(int(octal.group(), 8) & 0xFF)
                i += 1 + len(octal.group())
                continue
            out += {"n": b"\n", "t": b"\t", "r": b"\r"}.get(body[i + 1], body[i + 1].encode())
            i += 2
            continue
        out += body[i].encode()
        i += 1
    return bytes(out)


def _unquote(token: str) -> str:
    """A quoted string as text; undecodable bytes stay visible as ``\\xNN``."""
    return _unquote_bytes(token).decode("utf-8", "backslashreplace")


def _isc_time(words: list[str]) -> datetime | None:
    """``2 2016/03/01 16:40:56`` / ``... UTC`` / ``never`` / ``epoch 1700000000`` -> datetime.

    ISC writes UTC unless ``db-time-format local`` (then ``epoch N``)."""
    if not words or words[0] == "never":
        return None
    if words[0] == "epoch" and len(words) > 1:
        return datetime.fromtimestamp(int(words[1]), UTC)
    date_words = words[1:] if len(words) >= 3 and words[0].isdigit() and len(words[0]) == 1 else words
    if len(date_words) < 2:
        raise ValueError(f"not a lease time: {' '.join(words)[:60]!r}")
    try:
        day = datetime.strptime(f"{date_words[0]} {date_words[1]}", "%Y/%m/%d %H:%M:%S")
    except ValueError:
        raise ValueError(f"not a lease time: {' '.join(words)[:60]!r}") from None
    return day.replace(tzinfo=UTC)


def _options(block: _Block) -> dict[str, list[str]]:
    """Statements keyed by their leading words (``option host-name`` -> rest)."""
    found: dict[str, list[str]] = {}
    for statement in block.statements:
        if statement[0] == "option" and len(statement) > 1:
            found[f"option {statement[1]}"] = statement[2:]
        elif statement[:2] in (["binding", "state"], ["hardware", "ethernet"]):
            found[" ".join(statement[:2])] = statement[2:]
        elif statement[:3] in (["next", "binding", "state"], ["rewind", "binding", "state"]):
            found[" ".join(statement[:3])] = statement[3:]
        else:
            found[statement[0]] = statement[1:]
    return found


def _first(values: list[str] | None) -> str | None:
    return _unquote(values[0]) if values else None


def parse_dhclient(text: str, result: ParsedFile, *, now: datetime,
                   mtime: datetime | None = None) -> None:
    """dhclient.leases(5): one ``lease { }`` per lease, the last per interface wins."""
    root, problems = _parse_isc(text)
    result.problems.extend(problems)
    latest: dict[str, FileLease] = {}
    for block in root.blocks:
        if block.head != ["lease"]:
            continue
        try:
            options = _options(block)
            address = _first(options.get("fixed-address"))
            if not address:
                raise ValueError("no fixed-address")
            expires = _isc_time(options.get("expire", []))
            interface = _first(options.get("interface"))
            expired = expires is not None and expires <= now
            lease = DhcpLease(
                address=normalize_ip(address),
                hostname=cap(_first(options.get("option host-name"))),
                server=cap(_first(options.get("option dhcp-server-identifier"))),
                status="expired" if expired else "bound",
                expires_at=expires,
                dynamic=True,
                gateway=cap(result.path),
                origin="dhclient",
            )
        except ValueError as exc:
            result.problems.append(f"line {block.line}: lease skipped: {exc}")
            continue
        latest[interface or address] = FileLease(lease, alive=not expired, interface=cap(interface))
    result.leases.extend(latest.values())


_BINDING_ALIVE = {"active"}


def parse_dhcpd(text: str, result: ParsedFile, *, now: datetime,
                mtime: datetime | None = None) -> None:
    """dhcpd.leases(5): ``lease <ip> { }`` blocks, the last per address is current."""
    root, problems = _parse_isc(text)
    result.problems.extend(problems)
    latest: dict[str, FileLease] = {}
    for block in root.blocks:
        if len(block.head) != 2 or block.head[0] != "lease":
            continue   # host, failover, ia-na (dhcpd6) blocks: not leases of IPv4 hosts
        try:
            address = normalize_ip(block.head[1])
            options = _options(block)
            state = _first(options.get("binding state")) or "active"
            ends = _isc_time(options.get("ends", []))
            cltt = _isc_time(options.get("cltt", []))
            mac_words = options.get("hardware ethernet")
            mac = normalize_mac(mac_words[0]) if mac_words else None
            if state == "active" and ends is not None and ends <= now:
                state = "expired"
            lease = DhcpLease(
                address=address,
                mac=mac,
                client_id=cap(_uid_hex(options.get("uid"))),
                hostname=cap(_first(options.get("client-hostname"))),
                dynamic=True,
                status=cap(state),
                expires_at=ends,
                last_seen_secs=max(0, int((now - cltt).total_seconds())) if cltt else None,
                gateway=cap(result.path),
                origin="dhcpd",
            )
        except ValueError as exc:
            result.problems.append(f"line {block.line}: lease skipped: {exc}")
            continue
        latest[address] = FileLease(lease, alive=state in _BINDING_ALIVE)
    result.leases.extend(latest.values())


def _uid_hex(words: list[str] | None) -> str | None:
    """dhcpd's ``uid`` (an octal-escaped string or colon hex) as colon hex, opaque."""
    if not words:
        return None
    token = words[0]
    if token.startswith('"'):
        return ":".join(f"{b:02x}" for b in _unquote_bytes(token))
    return token.lower()


# --------------------------------------------------------------------------
# Key=value files: NetworkManager internal client, systemd-networkd.


def parse_keyvalue(text: str, result: ParsedFile, *, now: datetime,
                   mtime: datetime | None = None) -> None:
    """``KEY=VALUE`` lines; only ADDRESS= is required (NetworkManager >= 1.3x writes only it)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            result.problems.append(f"line {number}: not KEY=VALUE")
            continue
        values[key.strip().upper()] = value.strip().strip('"')
    address = values.get("ADDRESS")
    if not address:
        result.problems.append("no ADDRESS= line")
        return
    try:
        expires: datetime | None = None
        lifetime = values.get("LIFETIME")
        if lifetime and lifetime.isdigit() and mtime is not None:
            # The file is written when the lease is (re)acquired: mtime + LIFETIME.
            expires = mtime + timedelta(seconds=int(lifetime))
        expired = expires is not None and expires <= now
        client_id = values.get("CLIENTID")
        lease = DhcpLease(
            address=normalize_ip(address),
            mac=_clientid_mac(client_id),
            hostname=cap(values.get("HOSTNAME")),
            client_id=cap(client_id),
            server=cap(values.get("SERVER_ADDRESS")),
            status="expired" if expired else "bound",
            expires_at=expires,
            dynamic=True,
            gateway=cap(result.path),
            origin=result.format,
        )
    except ValueError as exc:
        result.problems.append(f"lease skipped: {exc}")
        return
    result.leases.append(FileLease(lease, alive=not expired))


def _clientid_mac(client_id: str | None) -> str | None:
    """The MAC in a DHCP client identifier of hardware type 1 (Ethernet): ``01`` + 6 bytes."""
    if not client_id:
        return None
    hexed = client_id.replace(":", "").lower()
    if len(hexed) != 14 or not hexed.startswith("01"):
        return None
    try:
        return normalize_mac(hexed[2:])
    except ValueError:
        return None


# --------------------------------------------------------------------------
# dnsmasq: "<expiry> <mac> <ip> <hostname|*> <client-id|*>", then "duid ..." and IPv6 lines.

# Expiry values below this are not epoch times: builds with HAVE_BROKEN_RTC write the
# lease length, Asuswrt-Merlin the remaining seconds (both far below 2001-09-09).
_EPOCH_FLOOR = 1_000_000_000


def parse_dnsmasq(text: str, result: ParsedFile, *, now: datetime,
                  mtime: datetime | None = None) -> None:
    """dnsmasq.leases (rewritten whole on change); expiry 0 = infinite."""
    ipv6 = False
    latest: dict[str, FileLease] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        parts = raw.split()
        if not parts or parts[0].startswith("#"):
            continue
        if parts[0] == "duid":
            ipv6 = True
            continue
        if len(parts) < 4:
            result.problems.append(f"line {number}: expected 5 fields, got {len(parts)}")
            continue
        try:
            seconds = int(parts[0])
            if ipv6:
                mac = None          # field 2 is an IAID after the duid line
            else:
                # Non-Ethernet hardware is prefixed "<type>-"; only Ethernet MACs identify hosts.
                hw = parts[1]
                mac = normalize_mac(hw) if "-" not in hw or len(hw) == 17 else None
            address = normalize_ip(parts[2])
            expires: datetime | None = None
            expires_after: int | None = None
            if seconds >= _EPOCH_FLOOR:
                expires = datetime.fromtimestamp(seconds, UTC)
                expires_after = max(0, int((expires - now).total_seconds()))
            elif seconds > 0:
                expires_after = seconds
            expired = expires is not None and expires <= now
            hostname = parts[3] if parts[3] != "*" else None
            client_id = parts[4] if len(parts) > 4 and parts[4] != "*" else None
            lease = DhcpLease(
                address=address,
                mac=mac,
                hostname=cap(hostname),
                client_id=cap(client_id),
                dynamic=True,
                status="expired" if expired else "active",
                expires_at=expires,
                expires_after_secs=expires_after,
                gateway=cap(result.path),
                origin="dnsmasq",
            )
        except ValueError as exc:
            result.problems.append(f"line {number}: {exc}")
            continue
        latest[address] = FileLease(lease, alive=not expired)
    result.leases.extend(latest.values())


# --------------------------------------------------------------------------
# Kea memfile CSV (read by header name: columns were added across versions).

KEA_STATES = {"0": "active", "1": "declined", "2": "expired-reclaimed", "3": "released"}


def parse_kea(text: str, result: ParsedFile, *, now: datetime,
              mtime: datetime | None = None) -> None:
    """kea-leases4.csv (and LFC rotation files concatenated before it, oldest first).

    Last row per address wins; ``valid_lifetime`` 0 is a delete marker. Kea ends every row
    with a line end: a last row without one, or any row short of the header's columns, was
    cut mid-write and is skipped (a problem), not read as a lease."""
    latest: dict[str, FileLease | None] = {}
    header: list[str] | None = None
    complete, _, cut = text.rpartition("\n")
    if cut.strip():
        result.problems.append(f"line {complete.count(chr(10)) + 2 if complete else 1}: the last row has "
                               "no line end (the file was cut mid-write); skipped")
        text = complete
    for number, row in enumerate(csv.reader(io.StringIO(text)), 1):
        if not row or not any(cell.strip() for cell in row):
            continue
        if row[0] == "address":
            header = row           # each concatenated file starts with its own header
            continue
        if header is None:
            result.problems.append(f"line {number}: data before the CSV header")
            continue
        if len(row) < len(header):
            result.problems.append(f"line {number}: {len(row)} of the header's {len(header)} columns "
                                   "(a row cut mid-write?); skipped")
            continue
        record = dict(zip(header, row, strict=False))
        try:
            address = normalize_ip(record["address"])
            if record.get("valid_lifetime", "") == "0":
                latest[address] = None
                continue
            state = KEA_STATES.get(record.get("state", "0") or "0", record.get("state", ""))
            expire = int(record["expire"]) if record.get("expire") else None
            expires = datetime.fromtimestamp(expire, UTC) if expire else None
            if state == "active" and expires is not None and expires <= now:
                state = "expired"
            hwaddr = record.get("hwaddr", "")
            lease = DhcpLease(
                address=address,
                mac=normalize_mac(hwaddr) if hwaddr else None,
                client_id=cap(record.get("client_id") or None),
                hostname=cap(_kea_unescape(record.get("hostname", "")).rstrip(".") or None),
                dynamic=True,
                status=state,
                expires_at=expires,
                expires_after_secs=(max(0, int((expires - now).total_seconds()))
                                    if expires else None),
                server=cap(f"subnet {record['subnet_id']}") if record.get("subnet_id") else None,
                gateway=cap(result.path),
                origin="kea",
            )
        except (ValueError, KeyError) as exc:
            result.problems.append(f"line {number}: {exc}")
            continue
        latest[address] = FileLease(lease, alive=state == "active")
    result.leases.extend(lease for lease in latest.values() if lease is not None)


def _kea_unescape(value: str) -> str:
    """Kea escapes commas in text columns as ``&#x2c``."""
    return value.replace("&#x2c", ",")
