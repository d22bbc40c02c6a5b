"""Sites in the host book: the same range (or MAC) at two sites is two hosts, judged by its own sweeps."""

from __future__ import annotations

from pathlib import Path

import duckdb
import msgspec

from schemas import ChangeKind, Event, HostChanged, SweepCompleted
from sinks.host_state import HostBook, PresenceConfig
from sinks.host_state._schema import MIGRATIONS
from sinks.host_state.stage import Config, HostState
from tests.factories import at, host_seen, ports_probed
from tests.sinks.host_state.test_stage import rows

MAC = "02:00:00:00:00:0a"


def book() -> HostBook:
    # Gone on missed sweeps alone (no presence check): what is shown here is whose sweeps count.
    return HostBook(PresenceConfig(missed_sweeps=2, grace_secs=10, confirm=False))


def at_site(site: str, event: Event) -> Event:
    return msgspec.structs.replace(event, site=site)


def sweep(t: float, site: str) -> SweepCompleted:
    return SweepCompleted(host_key="sweep", observed_at=at(t), source="arp", site=site,
                          covered=["10.20.0.0/24"], sweep_id=f"{site}{t}", duration_ms=1000)


def kinds(changed: list[HostChanged]) -> list[tuple[str, str]]:
    return sorted((c.kind.value, c.host_key) for c in changed)


def test_the_same_address_and_mac_at_two_sites_are_two_hosts_each_keyed_with_its_site() -> None:
    b = book()
    folded = b.fold([at_site("paris", host_seen("10.20.0.5", MAC, t=0)),
                     at_site("berlin", host_seen("10.20.0.5", MAC, t=0)),
                     host_seen("10.20.0.5", MAC, t=0)])            # and the default site's
    assert kinds(folded.changed) == [("new", MAC), ("new", f"berlin/{MAC}"), ("new", f"paris/{MAC}")]
    paris = b.hosts[f"paris/{MAC}"].record
    assert (paris.site, paris.mac, paris.ip) == ("paris", MAC, "10.20.0.5")
    assert {c.site for c in folded.changed} == {"", "paris", "berlin"}
    assert all(c.host.site == c.site for c in folded.changed)
    # An IP-only fact belongs to the owner of that IP at its own site.
    b.fold([at_site("berlin", host_seen("10.20.0.5", None, source="icmp", t=5))])
    assert b.hosts[f"berlin/{MAC}"].record.last_seen == at(5)
    assert b.hosts[f"paris/{MAC}"].record.last_seen == at(0)


def test_an_ip_record_merges_into_the_mac_record_of_its_own_site_only() -> None:
    b = book()
    b.fold([at_site("paris", host_seen("10.20.0.7", None, source="icmp", t=0)),
            at_site("berlin", host_seen("10.20.0.7", MAC, t=0))])
    folded = b.fold([at_site("paris", host_seen("10.20.0.7", MAC, t=5))])
    assert folded.deletes == {"paris/10.20.0.7": f"paris/{MAC}"}
    assert sorted(b.hosts) == [f"berlin/{MAC}", f"paris/{MAC}"]
    assert folded.changed == [] or all(c.kind is not ChangeKind.NEW for c in folded.changed)


def test_a_sweep_counts_for_its_own_sites_hosts_only() -> None:
    b = book()
    b.fold([at_site("paris", host_seen("10.20.0.5", MAC, t=0, sweep_id="paris0.5")),
            at_site("berlin", host_seen("10.20.0.5", MAC, t=0, sweep_id="berlin0.5")),
            sweep(0.5, "paris"), sweep(0.5, "berlin")])         # each seen by its site's sweep
    # Berlin sweeps the same range without its host; paris's sensor is silent (its link is down).
    gone = b.fold([sweep(30, "berlin"), sweep(60, "berlin")]).changed
    assert kinds(gone) == [("gone", f"berlin/{MAC}")]
    assert b.hosts[f"paris/{MAC}"].record.active
    # Paris's own sweeps arrive late, in order, with its sightings: still there.
    late = [at_site("paris", e) for e in (host_seen("10.20.0.5", MAC, t=29),
                                          ports_probed("10.20.0.5", MAC, t=29),
                                          host_seen("10.20.0.5", MAC, t=59))]
    folded = b.fold([*late, sweep(30, "paris"), sweep(60, "paris")])
    assert kinds(folded.changed) == [("changed", f"paris/{MAC}")]         # its open port, not gone
    assert b.hosts[f"paris/{MAC}"].record.active


def test_a_loaded_book_keeps_sites_apart() -> None:
    b = book()
    b.fold([at_site("paris", host_seen("10.20.0.5", None, source="icmp", t=0)),
            at_site("berlin", host_seen("10.20.0.5", None, source="icmp", t=0))])
    again = HostBook(b.policy, [msgspec.json.decode(msgspec.json.encode(e), type=type(e))
                                for e in b.hosts.values()])
    assert again.owner_of_ip("10.20.0.5", "paris") == "paris/10.20.0.5"
    assert again.owner_of_ip("10.20.0.5", "berlin") == "berlin/10.20.0.5"
    assert again.owner_of_ip("10.20.0.5") is None


async def test_the_store_keys_every_row_with_its_site_and_migrates_a_version_2_file(tmp_path: Path) -> None:
    db = tmp_path / "lanscope.duckdb"
    con = duckdb.connect(str(db))          # a file as the version before sites left it
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMPTZ NOT NULL)")
    for number, migration in enumerate(MIGRATIONS[:2], 1):
        con.execute(migration)
        con.execute("INSERT INTO schema_version VALUES (?, now())", [number])
    con.close()
    old = HostState(Config(path=str(db)))
    await old.open()
    await old.close()
    sink = HostState(Config(path=str(db)))
    await sink.open()
    await sink.write([at_site("paris", host_seen("10.20.0.5", MAC, t=0, id="p1")),
                      at_site("paris", ports_probed("10.20.0.5", MAC, t=1, id="p2")),
                      at_site("berlin", host_seen("10.20.0.5", MAC, t=0, id="b1")),
                      at_site("berlin", host_seen("10.20.0.9", None, source="icmp", t=0, id="b2"))])
    await sink.close()
    assert rows(db, "SELECT site, host_key, mac, ip FROM hosts ORDER BY host_key") == [
        ("berlin", f"berlin/{MAC}", MAC, "10.20.0.5"), ("berlin", "berlin/10.20.0.9", None, "10.20.0.9"),
        ("paris", f"paris/{MAC}", MAC, "10.20.0.5")]
    assert rows(db, "SELECT DISTINCT site FROM history ORDER BY site") == [("berlin",), ("paris",)]
    assert rows(db, "SELECT site, host_key, port FROM services") == [("paris", f"paris/{MAC}", 22)]
    again = HostState(Config(path=str(db)))
    await again.open()
    assert again.book.hosts[f"berlin/{MAC}"].record.site == "berlin"
    await again.close()

