"""Rules as tables: kinds, filters, quiet hours across midnight and time zones, rate-limit windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest

from schemas import Severity, decode, encode
from sinks.notify import kinds_of
from sinks.notify.model import HostFacts
from sinks.notify.rules import Facts, Matcher, QuietHours, RateLimit, Rule, Window
from tests.sinks.notify.events import changed, finding


def matches(facts: Facts, **rule: Any) -> bool:
    return Matcher(Rule(name="r", targets=["t"], **rule)).matches(facts)


NEW = Facts(kinds=frozenset({"new"}), ip="192.168.1.20", vendor="Raspberry Pi Trading Ltd",
            device_type="Printer", known=False, tags=frozenset({"iot"}))


@pytest.mark.parametrize(("rule", "expected"), [
    ({}, True),                                               # no filter: every kind, every host
    ({"kinds": ["new"]}, True),
    ({"kinds": ["gone", "back"]}, False),
    ({"subnets": ["192.168.1.0/24"]}, True),
    ({"subnets": ["10.0.0.0/8"]}, False),
    ({"subnets": ["192.168.0.0/16"], "exclude_subnets": ["192.168.1.16/28"]}, False),
    ({"vendors": ["raspberry"]}, True),                       # a part of the vendor, any case
    ({"vendors": ["dell", "intel"]}, False),
    ({"device_types": ["printer"]}, True),
    ({"device_types": ["phone"]}, False),
    ({"known": False}, True),
    ({"known": True}, False),
    ({"tags": ["iot", "cameras"]}, True),
    ({"tags": ["servers"]}, False),
])
def test_filters(rule: dict[str, Any], expected: bool) -> None:
    assert matches(NEW, **rule) is expected


def test_a_host_without_an_ip_matches_no_subnet_rule_but_any_exclusion_rule() -> None:
    nameless = Facts(kinds=frozenset({"new"}))
    assert not matches(nameless, subnets=["0.0.0.0/0"])
    assert matches(nameless, exclude_subnets=["10.0.0.0/8"])
    assert not matches(nameless, vendors=["intel"]) and not matches(nameless, device_types=["nas"])


def test_changed_fields_narrow_changed_events_only() -> None:
    ports = Facts(kinds=frozenset({"changed"}), fields=frozenset({"open_ports", "services"}))
    name = Facts(kinds=frozenset({"changed"}), fields=frozenset({"hostname"}))
    assert matches(ports, kinds=["changed"], fields=["open_ports"])
    assert not matches(name, kinds=["changed"], fields=["open_ports"])
    assert matches(NEW, kinds=["new", "changed"], fields=["open_ports"])     # new is not narrowed


def test_min_severity_applies_to_findings() -> None:
    low = Facts(kinds=frozenset({"finding_opened"}), severity=Severity.LOW)
    high = Facts(kinds=frozenset({"finding_opened"}), severity=Severity.HIGH)
    assert not matches(low, min_severity="medium") and matches(high, min_severity="medium")
    assert matches(NEW, min_severity="critical")      # host changes have no severity


def test_kinds_of_events_flapping_included() -> None:
    assert kinds_of(changed("new")) == {"new"}
    assert kinds_of(changed("gone")) == {"gone"}
    assert kinds_of(changed("changed", changes=[("flapping", False, True)])) == {"flapping"}
    assert kinds_of(changed("changed", changes=[("flapping", False, True), ("hostname", "a", "b")])) == \
        {"changed", "flapping"}
    assert kinds_of(changed("changed", changes=[("flapping", True, False)])) == {"changed"}
    assert kinds_of(finding("opened")) == {"finding_opened"}
    assert kinds_of(finding("resolved")) == {"finding_resolved"}


def test_device_type_is_read_from_the_host_record() -> None:
    event = changed("new")
    event.host = msgspec.structs.replace(event.host, device_type="Printer")
    facts = HostFacts.of(decode(encode(event)))   # type: ignore[arg-type]
    assert facts.device_type == "Printer"
    assert matches(Facts(kinds=frozenset({"new"}), device_type=facts.device_type), device_types=["printer"])
    assert not matches(Facts(kinds=frozenset({"new"}), device_type=facts.device_type), device_types=["nas"])


BERLIN = ZoneInfo("Europe/Berlin")


def at(text: str, zone: Any = UTC) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=zone)


@pytest.mark.parametrize(("now", "ends"), [
    ("2026-01-10 21:59", None),
    ("2026-01-10 22:00", "2026-01-11 07:00"),
    ("2026-01-10 23:30", "2026-01-11 07:00"),
    ("2026-01-11 03:00", "2026-01-11 07:00"),
    ("2026-01-11 07:00", None),
    ("2026-01-11 12:00", None),
])
def test_quiet_hours_across_midnight(now: str, ends: str | None) -> None:
    quiet = QuietHours(start="22:00", end="07:00", timezone="Europe/Berlin")
    found = quiet.ends_after(at(now, BERLIN))
    assert found == (at(ends, BERLIN) if ends else None)


def test_quiet_hours_are_judged_in_their_time_zone() -> None:
    quiet = QuietHours(start="22:00", end="07:00", timezone="Europe/Berlin")
    # 21:30 UTC is 22:30 in Berlin in winter: quiet, until 06:00 UTC.
    assert quiet.ends_after(at("2026-01-10 21:30")) == at("2026-01-11 06:00")
    # In summer Berlin is UTC+2: 20:30 UTC is already 22:30 there.
    assert quiet.ends_after(at("2026-07-10 20:30")) == at("2026-07-11 05:00")
    # The night the clocks go forward (29 March 2026) is an hour shorter (instants, not wall clocks).
    start = at("2026-03-28 22:00", BERLIN)
    ends = quiet.ends_after(start)
    assert ends is not None and ends.astimezone(UTC) - start.astimezone(UTC) == timedelta(hours=8)


def test_daytime_quiet_hours() -> None:
    quiet = QuietHours(start="09:00", end="17:00", timezone="UTC")
    assert quiet.ends_after(at("2026-01-10 12:00")) == at("2026-01-10 17:00")
    assert quiet.ends_after(at("2026-01-10 18:00")) is None


def test_rate_limit_window_slides() -> None:
    limit = RateLimit(max=2, per_secs=60)
    t0 = at("2026-01-10 12:00")
    window = Window([t0, t0 + timedelta(seconds=10)])
    assert window.room_at(limit, t0 + timedelta(seconds=20)) == t0 + timedelta(seconds=60)
    assert window.room_at(limit, t0 + timedelta(seconds=61)) is None      # the first one left the window
    assert Window().room_at(limit, t0) is None
