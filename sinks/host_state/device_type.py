"""What kind of device a host is, from everything known about it. Pure; rules as data.

``classify(Evidence)`` scores the rules of ``device_types.yaml`` (see its
header for the rule syntax) and returns the winning type with a confidence
(0-10) and the reasons. ``classify_record(HostRecord)`` does it for a host
record: the host_state fold calls it when a host's evidence changes and keeps
``device_type`` as a fact with history. A classification is cached by its
evidence: hosts that look alike (most of a LAN) cost one lookup.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from schemas import HostRecord

RULES_FILE = Path(__file__).with_name("device_types.yaml")
UNKNOWN = "unknown"


@dataclass(frozen=True)
class Evidence:
    """The host record's fields the rules may read (lists as tuples: hashable)."""

    vendor: str = ""
    mac: str = ""
    hostname: str = ""
    names: tuple[str, ...] = ()
    advertised: tuple[str, ...] = ()
    model: str = ""
    manufacturer: str = ""
    dhcp_fingerprint: str = ""
    dhcp_vendor_class: str = ""
    services: tuple[str, ...] = ()
    open_ports: tuple[str, ...] = ()
    os_hint: str = ""
    sys_object_id: str = ""
    sys_descr: str = ""
    vm_name: str = ""
    workgroup: str = ""
    neighbours: tuple[str, ...] = ()

    @classmethod
    def of(cls, record: HostRecord) -> Evidence:
        values: dict[str, Any] = {}
        for name in _FIELDS:
            value = getattr(record, name)
            if isinstance(value, list):
                values[name] = tuple(value)
            elif value:
                values[name] = value
        values["names"] = tuple(dict.fromkeys([*record.names.values(), *(
            [record.hostname] if record.hostname else [])]))
        return cls(**values)

    def values(self, field: str) -> tuple[str, ...]:
        value = getattr(self, field)
        return value if isinstance(value, tuple) else ((value,) if value else ())


_FIELDS = tuple(f.name for f in fields(Evidence) if f.name != "names")


@dataclass(frozen=True)
class Rule:
    id: str
    type: str
    score: int
    reason: str
    when: tuple[tuple[tuple[str, ...], re.Pattern[str]], ...]   # ((fields, regex), ...): all hold

    def holds(self, evidence: Evidence) -> bool:
        return all(any(pattern.search(v) for f in names for v in evidence.values(f))
                   for names, pattern in self.when)


@dataclass(frozen=True)
class DeviceType:
    type: str
    confidence: int
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class Rules:
    types: tuple[str, ...]
    rules: tuple[Rule, ...]

    def classify(self, evidence: Evidence) -> DeviceType:
        scores: dict[str, int] = {}
        reasons: dict[str, list[tuple[int, str]]] = {}
        for rule in self.rules:
            if rule.holds(evidence):
                scores[rule.type] = scores.get(rule.type, 0) + rule.score
                reasons.setdefault(rule.type, []).append((rule.score, rule.reason))
        if not scores:
            return DeviceType(UNKNOWN, 0, ())
        ranked = sorted(scores, key=lambda t: (-scores[t], self.types.index(t)))
        best = ranked[0]
        why = [text for _, text in sorted(reasons[best], key=lambda r: -r[0])]
        if len(ranked) > 1:
            runner_up = ranked[1]
            why.append(f"less likely {runner_up}: {reasons[runner_up][0][1]}")
        return DeviceType(best, min(10, scores[best]), tuple(why))


class RulesError(ValueError):
    """The rules file is not what device_type.py reads; the message names the rule and key."""


def load_rules(path: Path = RULES_FILE) -> Rules:
    """Read and check a rules file (every problem names the rule)."""
    data = yaml.safe_load(path.read_text())
    types = tuple(data.get("types") or ())
    known = {f.name for f in fields(Evidence)}
    rules: list[Rule] = []
    seen: set[str] = set()
    for n, raw in enumerate(data.get("rules") or []):
        rule_id = str(raw.get("id") or f"#{n}")
        where = f"{path.name}: rule {rule_id}"
        if rule_id in seen:
            raise RulesError(f"{where}: id used twice")
        seen.add(rule_id)
        if raw.get("type") not in types:
            raise RulesError(f"{where}: type {raw.get('type')!r} is not one of {', '.join(types)}")
        when = []
        for key, pattern in (raw.get("when") or {}).items():
            names = tuple(str(key).split("|"))
            unknown = [f for f in names if f not in known]
            if unknown:
                raise RulesError(f"{where}: unknown field {', '.join(unknown)}")
            try:
                when.append((names, re.compile(str(pattern), re.IGNORECASE)))
            except re.error as exc:
                raise RulesError(f"{where}: {key}: bad regex: {exc}") from None
        if not when:
            raise RulesError(f"{where}: no condition under `when`")
        rules.append(Rule(rule_id, raw["type"], int(raw.get("score", 1)), str(raw.get("reason", rule_id)),
                          tuple(when)))
    return Rules(types, tuple(rules))


@functools.cache
def default_rules() -> Rules:
    return load_rules()


@functools.lru_cache(maxsize=16384)
def classify(evidence: Evidence) -> DeviceType:
    """The device type by the shipped rules."""
    return default_rules().classify(evidence)


def classify_record(record: HostRecord) -> DeviceType:
    return classify(Evidence.of(record))


# The record fields a classification reads: when none of them changed, it stands.
EVIDENCE_FIELDS = frozenset({*_FIELDS, "hostname"})
