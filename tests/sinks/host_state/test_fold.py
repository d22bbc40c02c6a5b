"""Identity, ordering, presence and change detection of the host book (pure logic, no I/O)."""

from __future__ import annotations

import msgspec
import pytest

from schemas import ChangeKind, DhcpLease, HostChanged, HostRecord
from sinks.host_state import FACTS, OBSERVATIONS, HostBook, PresenceConfig
from tests.factories import at, host_annotated, host_seen, port, ports_probed

MAC_A = "02:00:00:00:00:0a"
MAC_B = "02:00:00:00:00:0b"


def book(missed: int = 2, grace: float = 60) -> HostBook:
    return HostBook(PresenceConfig(missed_sweeps=missed, grace_secs=grace))


def only(changed: list[HostChanged]) -> HostChanged:
    assert len(changed) == 1, changed
    return changed[0]


def test_new_host_is_one_new_event_with_its_fields() -> None:
    b = book()
    event = only(b.fold([host_seen("198.18.0.10", MAC_A, t=0)]).changed)
    assert event.kind is ChangeKind.NEW
    assert event.host.host_key == MAC_A and event.host.ip == "198.18.0.10" and event.host.active
    assert [c.field for c in event.changes] == ["mac", "ips", "ip", "device_type", "active"]
    assert event.evidence == "arp-reply via arp"
    assert event.host.arp_state == "reply"       # an observation: on the record, not a change


def test_same_facts_again_change_nothing() -> None:
    b = book()
    b.fold([host_seen(mac=MAC_A, t=0)])
    assert b.fold([host_seen(mac=MAC_A, t=10)]).changed == []


def test_mac_moves_to_a_new_ip_is_one_host_with_an_ip_change() -> None:
    b = book()
    b.fold([host_seen("198.18.0.10", MAC_A, t=0)])
    folded = b.fold([host_seen("198.18.0.20", MAC_A, t=10)])
    event = only(folded.changed)
    assert event.kind is ChangeKind.CHANGED
    assert [(c.field, c.old, c.new) for c in event.changes] == [
        ("ips", ["198.18.0.10"], ["198.18.0.10", "198.18.0.20"]), ("ip", "198.18.0.10", "198.18.0.20")]
    assert list(b.hosts) == [MAC_A]
    assert b.hosts[MAC_A].record.ips == ["198.18.0.20", "198.18.0.10"]
    assert [(h.field, h.old, h.new) for h in folded.history] == [
        (c.field, c.old, c.new) for c in event.changes]


def test_ip_changes_mac_makes_a_second_host_and_ip_only_facts_follow_the_new_owner() -> None:
    b = book()
    b.fold([host_seen("198.18.0.10", MAC_A, t=0)])
    event = only(b.fold([host_seen("198.18.0.10", MAC_B, t=10)]).changed)
    assert event.kind is ChangeKind.NEW and event.host.host_key == MAC_B
    assert sorted(b.hosts) == [MAC_A, MAC_B]
    # A later IP-only fact (ping) belongs to whoever holds the IP now.
    b.fold([host_seen("198.18.0.10", None, source="icmp", t=20, hostname="newer")])
    assert b.hosts[MAC_B].record.last_seen == at(20)
    assert b.hosts[MAC_A].record.last_seen == at(0)


def test_off_link_host_without_mac_is_keyed_by_ip() -> None:
    b = book()
    event = only(b.fold([host_seen("198.19.0.5", None, source="icmp", t=0)]).changed)
    assert event.kind is ChangeKind.NEW
    assert event.host.host_key == "198.19.0.5" and event.host.mac is None
    assert event.host.last_seen_by == {"icmp": at(0)}


def test_an_address_in_any_spelling_is_one_host() -> None:
    b = book()
    event = only(b.fold([host_seen("FD00:01A5:0::0007", None, source="icmp", t=0)]).changed)
    assert event.host.host_key == "fd00:1a5::7" and event.host.ip == "fd00:1a5::7"
    assert not b.fold([host_seen("fd00:1a5::7", None, source="icmp", t=1),
                       host_seen("FD00:1A5::7", None, source="icmp", t=2)]).changed


def test_first_seen_by_ip_then_with_mac_merges_into_one_host() -> None:
    b = book()
    b.fold([host_seen("198.18.0.10", None, source="icmp", t=0),
            ports_probed("198.18.0.10", None, [port(22, service="ssh")], t=1)])
    folded = b.fold([host_seen("198.18.0.10", MAC_A, t=10)])
    assert list(b.hosts) == [MAC_A]
    assert folded.deletes == {"198.18.0.10": MAC_A}
    entry = b.hosts[MAC_A]
    assert entry.record.first_seen == at(0) and entry.record.open_ports == ["tcp/22"]
    event = only(folded.changed)
    assert event.kind is not ChangeKind.NEW     # the same host, now with its identity
    assert event.host.mac == MAC_A


def test_ip_record_merges_into_an_existing_mac_record() -> None:
    b = book()
    b.fold([host_seen("198.18.0.10", MAC_A, t=0)])
    b.fold([host_seen("198.18.0.30", None, source="icmp", t=5)])
    assert set(b.hosts) == {"198.18.0.30", MAC_A}
    folded = b.fold([host_seen("198.18.0.30", MAC_A, t=10)])
    assert list(b.hosts) == [MAC_A] and folded.deletes == {"198.18.0.30": MAC_A}
    assert b.hosts[MAC_A].record.first_seen == at(0)


def test_ips_stay_newest_first_through_re_sightings_moves_late_facts_and_merges() -> None:
    b = book()
    steps = [("198.18.0.10", MAC_A, 0), ("198.18.0.10", MAC_A, 5), ("198.18.0.20", MAC_A, 10),
             ("198.18.0.20", MAC_A, 15), ("198.18.0.10", MAC_A, 12),    # late: older than .20's
             ("198.18.0.10", MAC_A, 20), ("198.18.0.30", None, 25),      # an IP-only record ...
             ("198.18.0.30", MAC_A, 22)]                                 # ... merged, older fact
    for ip, mac, t in steps:
        b.fold([host_seen(ip, mac, source="arp" if mac else "icmp", t=t)])
        for entry in b.hosts.values():
            assert entry.record.ips == sorted(entry.ips_at, key=lambda k: entry.ips_at[k], reverse=True)
    assert b.hosts[MAC_A].record.ips == ["198.18.0.30", "198.18.0.10", "198.18.0.20"]


def test_out_of_order_facts_never_overwrite_newer_values() -> None:
    b = book()
    b.fold([host_annotated(mac=MAC_A, vendor="New Corp", t=20)])
    folded = b.fold([host_annotated(mac=MAC_A, vendor="Old Corp", t=10)])
    assert b.hosts[MAC_A].record.vendor == "New Corp"
    assert folded.changed == [] and folded.history == []


def test_a_batch_is_folded_in_observed_order_so_the_newest_wins() -> None:
    b = book()
    b.fold([host_seen(mac=MAC_A, t=0)])
    folded = b.fold([host_seen("198.18.0.12", MAC_A, t=30), host_seen("198.18.0.11", MAC_A, t=20)])
    assert b.hosts[MAC_A].record.ip == "198.18.0.12"
    event = only(folded.changed)
    # One net change per field per batch: first old, last new.
    assert [(c.field, c.old, c.new) for c in event.changes] == [
        ("ips", ["198.18.0.10"], ["198.18.0.10", "198.18.0.11", "198.18.0.12"]),
        ("ip", "198.18.0.10", "198.18.0.12")]


def test_ports_probed_sets_open_ports_services_and_a_closed_port_is_a_change() -> None:
    b = book()
    b.fold([ports_probed(mac=MAC_A, ports=[port(22, service="ssh", product="OpenSSH", version="9.2p1"),
                                            port(23, service="telnet")], t=0)])
    rec = b.hosts[MAC_A].record
    assert rec.open_ports == ["tcp/22", "tcp/23"]
    assert rec.services == ["tcp/22 ssh OpenSSH 9.2p1", "tcp/23 telnet"]
    event = only(b.fold([ports_probed(mac=MAC_A, ports=[port(22, service="ssh", product="OpenSSH",
                                                                 version="9.2p1")], t=10)]).changed)
    change = {c.field: c for c in event.changes}
    assert change["open_ports"].old == ["tcp/22", "tcp/23"] and change["open_ports"].new == ["tcp/22"]
    assert b.hosts[MAC_A].ports["tcp/23"].result.state.value == "closed"


def test_a_re_probe_with_the_same_ports_moves_only_times() -> None:
    b = book()
    ports = [port(22, service="ssh", product="OpenSSH", version="9.2p1"), port(80, service="http")]
    b.fold([ports_probed(mac=MAC_A, ports=ports, t=0)])
    assert b.fold([ports_probed(mac=MAC_A, ports=ports, t=10)]).changed == []
    entry = b.hosts[MAC_A]
    assert entry.record.open_ports == ["tcp/22", "tcp/80"]
    assert entry.field_at["open_ports"] == entry.field_at["services"] == at(10)
    assert entry.ports["tcp/22"].last_seen == at(10) and entry.ports["tcp/22"].first_seen == at(0)
    # A banner that changes is a new service text, even with the same ports open.
    newer = [port(22, service="ssh", product="OpenSSH", version="9.6p1"), port(80, service="http")]
    change = {c.field: c for c in only(b.fold([ports_probed(mac=MAC_A, ports=newer, t=20)]).changed).changes}
    assert change["services"].new == ["tcp/22 ssh OpenSSH 9.6p1", "tcp/80 http"]


def test_ports_merged_from_an_ip_record_show_at_the_next_probe_even_if_it_repeats_them() -> None:
    b = book()
    b.fold([ports_probed("198.18.0.10", MAC_A, [port(22, service="ssh")], t=0)])
    b.fold([ports_probed("198.18.0.30", None, [port(23, service="telnet")], t=1)])
    b.fold([host_seen("198.18.0.30", MAC_A, t=2)])                       # the merge
    assert set(b.hosts[MAC_A].ports) == {"tcp/22", "tcp/23"}
    both = [port(22, service="ssh"), port(23, service="telnet")]
    b.fold([ports_probed("198.18.0.30", MAC_A, both, t=3)])               # rows unchanged
    assert b.hosts[MAC_A].record.open_ports == ["tcp/22", "tcp/23"]


def test_a_loaded_host_derives_its_open_ports_again_at_the_first_probe() -> None:
    b = book()
    b.fold([ports_probed(mac=MAC_A, ports=[port(22, service="ssh")], t=0)])
    entry = b.hosts[MAC_A]
    entry.record.open_ports = []                     # as an older version might have left it
    again = HostBook(b.policy, [entry])
    again.fold([ports_probed(mac=MAC_A, ports=[port(22, service="ssh")], t=10)])
    assert again.hosts[MAC_A].record.open_ports == ["tcp/22"]


def test_lease_fields_are_tracked() -> None:
    b = book()
    lease = DhcpLease(address="198.18.0.10", mac=MAC_A, dynamic=False, status="bound",
                      comment="printer", hostname="hp-1")
    b.fold([host_seen(mac=MAC_A, source="dhcp", evidence="lease:bound", lease=lease, t=0)])
    rec = b.hosts[MAC_A].record
    assert (rec.dhcp_type, rec.dhcp_status, rec.dhcp_comment, rec.hostname) == (
        "static", "bound", "printer", "hp-1")


def test_dns_name_outranks_a_lease_name_so_it_does_not_flap() -> None:
    b = book()
    lease = DhcpLease(hostname="lease-name")
    b.fold([host_seen(mac=MAC_A, t=0), host_annotated(mac=MAC_A, hostname="dns-name", t=0)])
    assert b.fold([host_seen(mac=MAC_A, source="dhcp", lease=lease, t=10)]).changed == []
    assert b.hosts[MAC_A].record.hostname == "dns-name"


def test_port_answer_is_presence_evidence() -> None:
    b = book()
    event = only(b.fold([ports_probed(mac=MAC_A, t=0)]).changed)
    assert event.host.active and event.evidence == "tcp-answer via port_probe"


def test_output_ids_are_deterministic_from_the_inputs() -> None:
    first = book().fold([host_seen(mac=MAC_A, t=0, id="in-1")]).changed[0]
    again = book().fold([host_seen(mac=MAC_A, t=0, id="in-1")]).changed[0]
    assert first.id == again.id and first.id


def test_observations_update_the_record_and_are_never_a_change() -> None:
    b = book()
    b.fold([host_seen(mac=MAC_A, t=0)])
    # The noise: the ARP sweep says "reply", the neighbour table "REACHABLE", in turn.
    for t in range(1, 20):
        flip = (host_seen(mac=MAC_A, source="neighbour", evidence="neighbour:REACHABLE",
                          neighbour_state="REACHABLE", t=t) if t % 2 else
                host_seen(mac=MAC_A, t=t, rtt_ms=0.2 + t / 100, ttl=64))
        folded = b.fold([flip])
        assert folded.changed == [] and folded.history == []
    rec = b.hosts[MAC_A].record
    assert (rec.arp_state, rec.rtt_ms, rec.ttl) == ("REACHABLE", 0.38, 64)
    assert set(rec.last_seen_by) == {"arp", "neighbour"}


def test_history_is_exactly_the_published_changes() -> None:
    b = book()
    folded = b.fold([host_seen("198.18.0.10", MAC_A, t=0, id="a"),
                     host_annotated(mac=MAC_A, vendor="Acme", t=1, id="b")])
    event = only(folded.changed)
    assert [(h.event_id, h.field, h.old, h.new) for h in folded.history] == [
        (event.id, c.field, c.old, c.new) for c in event.changes]
    # A value that came and went within one batch is neither a change nor history.
    folded = b.fold([host_annotated(mac=MAC_A, vendor="Other", t=2, id="c"),
                     host_annotated(mac=MAC_A, vendor="Acme", t=3, id="d")])
    assert folded.changed == [] and folded.history == []
    # Intermediate values of one batch: one row, first old and last new, the event's id.
    folded = b.fold([host_annotated(mac=MAC_A, vendor=v, t=t, id=f"v{t}")
                     for t, v in ((4, "B"), (5, "C"), (6, "D"))])
    event = only(folded.changed)
    assert [(h.event_id, h.field, h.old, h.new, h.observed_at) for h in folded.history] == [
        (event.id, "vendor", "Acme", "D", at(6))]


def test_the_merge_of_an_ip_record_writes_history_only_for_what_it_publishes() -> None:
    b = book()
    b.fold([host_seen("198.18.0.10", None, source="icmp", t=0)])
    folded = b.fold([host_seen("198.18.0.10", MAC_A, t=10)])
    event = only(folded.changed)
    assert [(c.field, c.old, c.new) for c in event.changes] == [("mac", None, MAC_A)]
    assert [(h.host_key, h.field, h.event_id) for h in folded.history] == [(MAC_A, "mac", event.id)]


@pytest.mark.parametrize(("second", "t", "primary"), [
    ("fd00:1a5::10", 10, "198.18.0.10"),            # IPv6 never displaces IPv4
    ("fe80::10", 10, "198.18.0.10"),                # nor link-local
    ("198.18.0.20", 10, "198.18.0.20"),             # a new IPv4 address is the host's new address
])
def test_the_primary_ip_prefers_ipv4_and_new_addresses(second: str, t: float, primary: str) -> None:
    b = book()
    b.fold([host_seen("198.18.0.10", MAC_A, t=0)])
    b.fold([host_seen(second, MAC_A, source="neighbour", t=t)])
    assert b.hosts[MAC_A].record.ip == primary and second in b.hosts[MAC_A].record.ips


def test_two_addresses_seen_in_turn_do_not_flap_the_primary_ip() -> None:
    b = book()
    b.fold([host_seen("198.18.0.10", MAC_A, t=0), host_seen("198.18.0.20", MAC_A, t=1)])
    changes = [c.field for t in range(2, 40, 2)
               for e in b.fold([host_seen("198.18.0.10", MAC_A, t=t),
                                host_seen("198.18.0.20", MAC_A, t=t + 1)]).changed for c in e.changes]
    assert changes == [] and b.hosts[MAC_A].record.ip == "198.18.0.20"
    # The address left behind: the other takes over once the current one is stale.
    event = only(b.fold([host_seen("198.18.0.10", MAC_A, t=400)]).changed)
    assert [(c.field, c.old, c.new) for c in event.changes] == [("ip", "198.18.0.20", "198.18.0.10")]
    assert b.fold([host_seen("198.18.0.20", MAC_A, t=401)]).changed == []


def test_a_probe_nothing_answered_changes_no_port() -> None:
    b = book()
    b.fold([ports_probed(mac=MAC_A, ports=[port(22, service="ssh")], t=0)])
    # The host was unplugged while port_probe ran: every port silent.
    folded = b.fold([ports_probed(mac=MAC_A, ports=[port(22, "filtered", reason="no-response")], t=10)])
    assert folded.changed == [] and b.hosts[MAC_A].record.open_ports == ["tcp/22"]
    assert b.hosts[MAC_A].last_evidence_at == at(0) and b.hosts[MAC_A].record.last_seen == at(0)


def test_the_schema_says_which_record_fields_are_facts_and_which_observations() -> None:
    """`lanscope schema` documents the split the fold makes (the fields' descriptions)."""
    said: dict[str, set[str]] = {"fact": set(), "observation": set()}
    schema = msgspec.json.schema(HostRecord)
    for name, field in schema["$defs"]["HostRecord"]["properties"].items():
        if "description" in field:
            said[field["description"].split(" ", 1)[0]].add(name)
    assert said["fact"] == set(FACTS) | {"host_key"}
    assert said["observation"] == set(OBSERVATIONS)
