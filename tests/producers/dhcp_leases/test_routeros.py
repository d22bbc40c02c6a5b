"""RouterOS record parsing: durations, string-typed values, omitted keys, ARP states."""

from __future__ import annotations

import copy

import pytest

from producers.dhcp_leases import arp_from_record, lease_from_record, parse_duration
from tests.fakes.mikrotik import ARP, LEASES


@pytest.mark.parametrize(("text", "seconds"), [
    ("1w2d3h4m5s", 7 * 86400 + 2 * 86400 + 3 * 3600 + 4 * 60 + 5),
    ("9m59s", 599),
    ("24m3s", 1443),
    ("59m34s", 3574),
    ("26s", 26),
    ("0s", 0),
    ("1d", 86400),
    ("3h", 10800),
    ("4m", 240),
    ("2w", 1209600),
    ("1s500ms", 1),
    ("500ms", 0),
    ("1d02:03:04", 86400 + 2 * 3600 + 3 * 60 + 4),
    ("00:05:00", 300),
    ("never", None),
    ("", None),
    (None, None),
])
def test_parse_duration(text: str | None, seconds: int | None) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["1x", "abc", "5m5m", "-1s", "1d 2h", "m"])
def test_parse_duration_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError, match="not a RouterOS duration"):
        parse_duration(text)


def test_bound_static_lease_keeps_every_field() -> None:
    lease, problems = lease_from_record(LEASES[0], "gw1")
    assert problems == []
    assert lease.address == "10.70.0.2" and lease.mac == "e0:d9:e3:c2:ed:c0"
    assert lease.client_id == "1:e0:d9:e3:c2:ed:c0"          # from active-client-id
    assert lease.hostname == "10.70.0.2"
    assert lease.dynamic is False and lease.status == "bound"
    assert lease.expires_after_secs == 24 * 60 + 3 and lease.last_seen_secs == 5 * 60 + 57
    assert lease.server == "10.70.0.0/23"
    assert lease.disabled is False and lease.blocked is False
    assert lease.active_address == "10.70.0.2" and lease.active_mac == "e0:d9:e3:c2:ed:c0"
    assert lease.gateway == "gw1" and lease.origin == "mikrotik" and lease.comment is None


def test_waiting_static_lease_has_no_active_fields() -> None:
    lease, _ = lease_from_record(LEASES[2], "gw1")
    assert lease.status == "waiting" and lease.dynamic is False and lease.comment == "NAS"
    assert lease.last_seen_secs is None and lease.expires_after_secs is None
    assert lease.active_address is None and lease.active_mac is None and lease.hostname is None


@pytest.mark.parametrize(("change", "check"), [
    ({"dynamic": "true"}, lambda lease: lease.dynamic is True),
    ({"disabled": "true"}, lambda lease: lease.disabled is True),
    ({"blocked": "yes"}, lambda lease: lease.blocked is True),
    ({"host-name": "x" * 1000}, lambda lease: lease.hostname == "x" * 255),
    ({"comment": "<b>[red]evil</b>"}, lambda lease: lease.comment == "<b>[red]evil</b>"),
    ({"mac-address": "0:0:5e:0:53:1"}, lambda lease: lease.mac == "00:00:5e:00:53:01"),
    ({"client-id": "1:0:0:5e:0:53:1"}, lambda lease: lease.client_id == "1:0:0:5e:0:53:1"),
    ({"expires-after": "1w2d"}, lambda lease: lease.expires_after_secs == 9 * 86400),
])
def test_lease_fields(change: dict[str, str], check: object) -> None:
    record = {**copy.deepcopy(LEASES[1]), **change}
    lease, _ = lease_from_record(record, "gw")
    assert check(lease)  # type: ignore[operator]


def test_bad_duration_is_a_problem_not_a_lost_lease() -> None:
    lease, problems = lease_from_record({**LEASES[1], "expires-after": "soon"}, "gw")
    assert lease.address == "192.168.64.113" and lease.expires_after_secs is None
    assert problems and "expires-after" in problems[0]


@pytest.mark.parametrize(("record", "message"), [
    ("a string", "not an object"),
    ({"status": "bound"}, "neither address nor mac-address"),
    ({"address": "300.1.1.1"}, "does not appear to be an IPv4 or IPv6 address"),
    ({"mac-address": "zz:zz"}, "not a MAC address"),
])
def test_unusable_lease_records(record: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        lease_from_record(record, "gw")  # type: ignore[arg-type]


@pytest.mark.parametrize(("index", "expected"), [
    (0, ("192.168.9.10", "70:85:c2:37:5a:21", "reachable", True)),
    (1, ("192.168.64.113", "00:1a:96:49:84:de", "stale", False)),
    (2, None),                                    # failed, no mac-address key
    (3, ("192.168.9.1", "48:8f:5a:00:00:01", "permanent", True)),
])
def test_arp_rows(index: int, expected: tuple[str, str, str, bool] | None) -> None:
    row = arp_from_record(ARP[index], "gw")
    if expected is None:
        assert row is None
    else:
        assert row is not None
        assert (row.address, row.mac, row.status, row.alive) == expected


@pytest.mark.parametrize("change", [
    {"status": "incomplete"}, {"status": "failed"}, {"disabled": "true"}, {"invalid": "true"},
    {"mac-address": "00:00:00:00:00:00"},
])
def test_arp_rows_that_say_nothing_are_dropped(change: dict[str, str]) -> None:
    assert arp_from_record({**ARP[0], **change}, "gw") is None


def test_arp_dhcp_flag_accepts_either_case() -> None:
    assert arp_from_record(ARP[1], "gw").dhcp is True  # type: ignore[union-attr]
    lower = {k.lower(): v for k, v in ARP[1].items()}
    assert arp_from_record(lower, "gw").dhcp is True  # type: ignore[union-attr]


def test_arp_without_status_uses_complete_flag() -> None:
    record = {k: v for k, v in ARP[0].items() if k != "status"}
    row = arp_from_record(record, "gw")
    assert row is not None and row.alive and row.status == "complete"
