"""Notification rules: which events go where, and when.

A rule names the kinds it wants, filters on the host (subnet, vendor, device
type, known or unknown, tags) and, for findings, the severity; it sends to one
or more targets, now, or held: during its quiet hours, beyond its rate limit,
or gathered into a digest every ``digest_secs``. Everything here is pure: the
stage hands it the facts of one event and the time, and keeps the state
(``Window`` is a rule's recent sends).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, tzinfo
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from lanscope.settings import NonNegativeFloat, PositiveFloat, PositiveInt, Problems, Section
from schemas import Severity

Kind = Literal["new", "gone", "back", "changed", "flapping", "finding_opened", "finding_resolved"]
KINDS: tuple[str, ...] = get_args(Kind)
SEVERITIES = list(Severity)
_CLOCK = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class QuietHours(Section):
    """A daily period without messages (e.g. 22:00 to 07:00, across midnight)."""

    start: str = "22:00"
    end: str = "07:00"
    timezone: str = ""                 # an IANA name (Europe/Berlin); empty: this machine's local time
    hold: bool = True                  # true: what came in goes out as one digest when they end;
                                       # false: dropped

    def check(self) -> Problems:
        for key in ("start", "end"):
            if not _CLOCK.match(getattr(self, key)):
                yield key, f"{getattr(self, key)!r} is not a time of day (HH:MM, 24-hour)"
        if self.start == self.end:
            yield "end", "equals start: quiet hours would never end"
        if self.timezone:
            try:
                ZoneInfo(self.timezone)
            except (ZoneInfoNotFoundError, ValueError):
                yield "timezone", f"unknown time zone {self.timezone!r} (an IANA name, e.g. Europe/Berlin)"

    def zone(self) -> tzinfo | None:
        return ZoneInfo(self.timezone) if self.timezone else None

    def ends_after(self, now: datetime) -> datetime | None:
        """When the quiet period ``now`` falls in ends (aware, like ``now``), or None when
        ``now`` is outside quiet hours."""
        local = now.astimezone(self.zone())
        start, end = _clock(self.start), _clock(self.end)
        at = local.time().replace(tzinfo=None)
        if start < end:
            quiet = start <= at < end
            end_day = local.date()
        else:   # across midnight: quiet from start to 24:00 and from 00:00 to end
            quiet = at >= start or at < end
            end_day = local.date() + timedelta(days=1) if at >= start else local.date()
        if not quiet:
            return None
        ends = datetime.combine(end_day, end, tzinfo=local.tzinfo)
        # A wall-clock time that a DST change skips or repeats: fold onto the real instant.
        return ends.astimezone(now.tzinfo) if ends.tzinfo is not None else ends


class RateLimit(Section):
    """At most ``max`` messages per rule in any ``per_secs``; what comes beyond is held and
    goes out as one digest when the window has room again."""

    max: PositiveInt = 10
    per_secs: PositiveFloat = 3600.0


class Rule(Section):
    """One entry of sinks.notify.rules (README.md: Rules)."""

    name: str = ""                     # required, unique: in logs, templates and the DLQ
    kinds: list[Kind] = []             # empty: every kind
    fields: list[str] = []             # `changed`: only when one of these fields changed
    subnets: list[str] = []            # the host's (or finding's) IP in one of these
    exclude_subnets: list[str] = []
    vendors: list[str] = []            # a part of the MAC vendor, any case ("raspberry")
    device_types: list[str] = []       # host.device_type, any case (where host_state knows it)
    known: bool | None = None          # true: only known hosts; false: only unknown ones
    tags: list[str] = []               # the host has one of these tags (inventory)
    min_severity: Severity | None = None   # findings below this severity do not match
    targets: list[str] = []            # required: names under sinks.notify.targets
    quiet_hours: QuietHours | None = None
    rate_limit: RateLimit | None = None
    digest_secs: NonNegativeFloat = 0.0    # >0: one message per this long, carrying its events
    title: str = ""                    # Jinja2 templates; empty: the defaults (README.md)
    text: str = ""
    markdown: str = ""

    def check(self) -> Problems:
        if not self.name:
            yield "name", "required (it names the rule in logs and messages)"
        if not self.targets:
            yield "targets", "required: the names of the targets this rule sends to"
        for key in ("subnets", "exclude_subnets"):
            for i, text in enumerate(getattr(self, key)):
                try:
                    ipaddress.ip_network(text, strict=False)
                except ValueError:
                    yield f"{key}[{i}]", f"{text!r} is not a network (e.g. 192.168.1.0/24)"
        if self.fields and self.kinds and "changed" not in self.kinds:
            yield "fields", "only `changed` events have fields; add changed to kinds"


@dataclass(frozen=True)
class Facts:
    """What a rule is judged on: one event, with what notify knows of its host."""

    kinds: frozenset[str]
    fields: frozenset[str] = frozenset()   # the fields a `changed` event changed
    ip: str | None = None
    vendor: str | None = None
    device_type: str | None = None
    known: bool = False
    tags: frozenset[str] = frozenset()
    severity: Severity | None = None


class Matcher:
    """A rule's filters, parsed once."""

    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.kinds = frozenset(rule.kinds or KINDS)
        self.fields = frozenset(rule.fields)
        self.subnets = [ipaddress.ip_network(s, strict=False) for s in rule.subnets]
        self.excluded = [ipaddress.ip_network(s, strict=False) for s in rule.exclude_subnets]
        self.vendors = [v.lower() for v in rule.vendors]
        self.device_types = {d.lower() for d in rule.device_types}
        self.tags = frozenset(rule.tags)
        self.min_rank = SEVERITIES.index(rule.min_severity) if rule.min_severity else None

    def matches(self, facts: Facts) -> bool:
        kinds = facts.kinds & self.kinds
        if not kinds:
            return False
        if self.fields and kinds == {"changed"} and not facts.fields & self.fields:
            return False
        if self.subnets or self.excluded:
            address = _address(facts.ip)
            if self.subnets and (address is None or not any(address in n for n in self.subnets)):
                return False
            if address is not None and any(address in n for n in self.excluded):
                return False
        if self.vendors and not (facts.vendor and any(v in facts.vendor.lower() for v in self.vendors)):
            return False
        if self.device_types and (facts.device_type or "").lower() not in self.device_types:
            return False
        if self.rule.known is not None and facts.known != self.rule.known:
            return False
        if self.tags and not facts.tags & self.tags:
            return False
        return not (self.min_rank is not None and facts.severity is not None
                    and SEVERITIES.index(facts.severity) < self.min_rank)


@dataclass
class Window:
    """A rule's sends within its rate limit's window, oldest first."""

    sends: list[datetime] = field(default_factory=list)

    def room_at(self, limit: RateLimit, now: datetime) -> datetime | None:
        """None when a message may go now; else when the window has room again."""
        horizon = now - timedelta(seconds=limit.per_secs)
        self.sends = [t for t in self.sends if t > horizon]
        if len(self.sends) < limit.max:
            return None
        return self.sends[len(self.sends) - limit.max] + timedelta(seconds=limit.per_secs)


def _address(ip: str | None) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    if not ip:
        return None
    try:
        return ipaddress.ip_address(ip)
    except ValueError:
        return None


def _clock(text: str) -> time:
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def rule_problems(rules: Iterable[Rule], targets: Iterable[str]) -> Problems:
    """What is wrong across rules: duplicate names, targets that do not exist."""
    known = set(targets)
    seen: set[str] = set()
    for i, rule in enumerate(rules):
        if rule.name and rule.name in seen:
            yield f"rules[{i}].name", f"{rule.name!r} is used by an earlier rule"
        seen.add(rule.name)
        for j, target in enumerate(rule.targets):
            if target not in known:
                listed = f" (known: {', '.join(sorted(known))})" if known else ""
                yield (f"rules[{i}].targets[{j}]",
                       f"no target named {target!r} under sinks.notify.targets{listed}")


__all__ = ["KINDS", "Facts", "Kind", "Matcher", "QuietHours", "RateLimit", "Rule", "Window", "rule_problems"]
