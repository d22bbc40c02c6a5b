"""Registry modes: register creates, sync only updates matches, people's fields are never overwritten."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from schemas import ChangeKind, HostChanged, HostRecord
from sinks.registry import Config, InventoryError, Registry
from tests.factories import at
from tests.sinks.disk import on_a_full_disk

INVENTORY = """\
- id: web-1
  hostname: web-1.lab.test
  ip: 203.0.113.10
  internal_ip: 198.18.0.10
  owner: alice
  notes: public web server
- id: db-1
  hostname: db-1
  owner: bob
"""


def changed(kind: ChangeKind = ChangeKind.NEW, *, ip: str = "198.18.0.10", t: float = 0,
            mac: str = "02:00:00:00:00:0a", **fields: Any) -> HostChanged:
    fields.setdefault("services", ["tcp/22 ssh OpenSSH 9.2p1"])
    fields.setdefault("os_hint", "Linux")
    host = HostRecord(host_key=mac, mac=mac, ip=ip, ips=[ip], last_seen=at(t), **fields)
    return HostChanged(host_key=mac, observed_at=at(t), source="host_state", kind=kind, host=host,
                       id=f"hc-{mac}-{t}-{kind.value}-{ip}")


async def opened(tmp_path: Path, mode: str, inventory: str | None = INVENTORY) -> Registry:
    path = ""
    if inventory is not None:
        (tmp_path / "inventory.yaml").write_text(inventory)
        path = str(tmp_path / "inventory.yaml")
    sink = Registry(Config(mode=mode, state_file=str(tmp_path / "registry.json"),  # type: ignore[arg-type]
                           inventory=path))
    await sink.open()
    return sink


async def test_register_creates_an_entry_for_a_new_host(tmp_path: Path) -> None:
    sink = await opened(tmp_path, "register", inventory=None)
    [entry] = await sink.write([changed(ip="198.18.0.20")])
    assert (entry.action, entry.entry_id, entry.ip, entry.services) == (
        "created", "02:00:00:00:00:0a", "198.18.0.20", ["tcp/22 ssh OpenSSH 9.2p1"])
    assert await sink.write([changed(ChangeKind.CHANGED, ip="198.18.0.20", t=0)]) == []


async def test_sync_updates_only_existing_entries_matched_by_internal_ip(tmp_path: Path) -> None:
    sink = await opened(tmp_path, "sync")
    assert await sink.write([changed(ip="198.18.0.99")]) == []        # unknown host: nothing
    [entry] = await sink.write([changed(ip="198.18.0.10", t=5)])
    assert (entry.action, entry.entry_id, entry.owner, entry.notes, entry.os_hint, entry.last_seen) == (
        "updated", "web-1", "alice", "public web server", "Linux", at(5))
    assert entry.hostname == "web-1.lab.test" and entry.ip == "203.0.113.10"   # people's fields kept


async def test_a_multi_nic_host_matches_on_its_public_ip_too(tmp_path: Path) -> None:
    sink = await opened(tmp_path, "sync")
    [entry] = await sink.write([changed(ip="203.0.113.10", mac="02:00:00:00:00:0b")])
    assert entry.entry_id == "web-1"


async def test_sync_matches_by_hostname(tmp_path: Path) -> None:
    sink = await opened(tmp_path, "sync")
    [entry] = await sink.write([changed(ip="198.18.0.30", hostname="db-1.lab.test")])
    assert (entry.entry_id, entry.owner, entry.mac) == ("db-1", "bob", "02:00:00:00:00:0a")


async def test_register_mode_updates_a_matching_entry_instead_of_creating(tmp_path: Path) -> None:
    sink = await opened(tmp_path, "register")
    [entry] = await sink.write([changed(ip="198.18.0.10")])
    assert (entry.action, entry.entry_id) == ("updated", "web-1")


async def test_an_older_change_does_not_overwrite_a_newer_one(tmp_path: Path) -> None:
    sink = await opened(tmp_path, "sync")
    await sink.write([changed(ip="198.18.0.10", t=10, os_hint="Debian")])
    assert await sink.write([changed(ip="198.18.0.10", t=5, os_hint="Windows")]) == []
    assert sink.state.entries["web-1"].os_hint == "Debian"


async def test_entries_and_outputs_survive_a_restart_and_redelivery(tmp_path: Path) -> None:
    sink = await opened(tmp_path, "register", inventory=None)
    event = changed(ip="198.18.0.20")
    first = await sink.write([event])
    again = await opened(tmp_path, "register", inventory=None)
    assert "02:00:00:00:00:0a" in again.state.entries
    assert await again.write([event]) == first


async def test_reimport_keeps_discovered_fields_and_takes_the_people_fields(tmp_path: Path) -> None:
    sink = await opened(tmp_path, "sync")
    await sink.write([changed(ip="198.18.0.10", t=5)])
    again = await opened(tmp_path, "sync", inventory=INVENTORY.replace("alice", "carol"))
    entry = again.state.entries["web-1"]
    assert (entry.owner, entry.os_hint) == ("carol", "Linux")


async def test_csv_inventory(tmp_path: Path) -> None:
    (tmp_path / "inv.csv").write_text("id,hostname,ip,owner\nnas,nas,198.18.0.40,ops\n")
    sink = Registry(Config(mode="sync", state_file=str(tmp_path / "r.json"),
                           inventory=str(tmp_path / "inv.csv")))
    await sink.open()
    [entry] = await sink.write([changed(ip="198.18.0.40")])
    assert (entry.entry_id, entry.owner) == ("nas", "ops")


@pytest.mark.parametrize(("text", "message"), [
    ("- {id: a, colour: red}\n", r"entry 1: unknown field\(s\) colour"),
    ("just text\n", r"expected a list of entries"),
    ("- {owner: x}\n", r"entry 1 has no id, hostname or ip"),
])
async def test_bad_inventory_is_named(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InventoryError, match=message):
        await opened(tmp_path, "sync", inventory=text)


async def test_batches_append_to_a_journal_until_it_outgrows_the_state_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sinks.registry.stage.JOURNAL_MIN_BYTES", 4000)
    sink = await opened(tmp_path, "register", inventory=None)
    state, journal = tmp_path / "registry.json", tmp_path / "registry.json.journal"
    await sink.write([changed(ip="198.18.0.20", mac="02:00:00:00:00:20")])
    assert not state.exists() and journal.read_bytes().count(b"\n") == 2   # header + one batch
    await sink.write([changed(ip="198.18.0.21", mac="02:00:00:00:00:21")])
    assert not state.exists() and journal.read_bytes().count(b"\n") == 3
    again = await opened(tmp_path, "register", inventory=None)        # folded in at open
    assert sorted(again.state.entries) == ["02:00:00:00:00:20", "02:00:00:00:00:21"]
    assert not journal.exists()
    folded = state.stat().st_size
    for n in range(30, 40):   # the journal passes 4,000 bytes: the state file is rewritten
        await again.write([changed(ip=f"198.18.0.{n}", mac=f"02:00:00:00:00:{n}")])
    assert state.stat().st_size > folded
    assert not journal.exists() or journal.stat().st_size < 4000
    last = await opened(tmp_path, "register", inventory=None)
    assert len(last.state.entries) == 12
    assert await last.write([changed(ip="198.18.0.39", mac="02:00:00:00:00:39")]) != []  # outbox kept
    await last.close()                                                # a clean stop: one file
    assert not journal.exists()
    assert len((await opened(tmp_path, "register", inventory=None)).state.entries) == 12


async def test_a_cut_off_journal_line_is_skipped_and_a_stale_journal_ignored(tmp_path: Path) -> None:
    sink = await opened(tmp_path, "register", inventory=None)
    await sink.write([changed(ip="198.18.0.20", mac="02:00:00:00:00:20", os_hint="Linux")])
    journal = tmp_path / "registry.json.journal"
    whole = journal.read_bytes()
    await sink.write([changed(ChangeKind.CHANGED, ip="198.18.0.20", mac="02:00:00:00:00:20", t=5,
                              os_hint="FreeBSD")])
    with journal.open("ab") as handle:     # a crash in the middle of the next append
        handle.write(b'{"entries": [{"entry_id": "02:00:00:00:00:21"')
    again = await opened(tmp_path, "register", inventory=None)
    assert list(again.state.entries) == ["02:00:00:00:00:20"]
    assert again.state.entries["02:00:00:00:00:20"].os_hint == "FreeBSD"
    # A crash after the state file was rewritten, before the journal was: its lines are old.
    journal.write_bytes(whole)
    third = await opened(tmp_path, "register", inventory=None)
    assert third.state.entries["02:00:00:00:00:20"].os_hint == "FreeBSD"


async def test_a_corrupt_journal_line_is_named(tmp_path: Path) -> None:
    sink = await opened(tmp_path, "register", inventory=None)
    await sink.write([changed(ip="198.18.0.20")])
    journal = tmp_path / "registry.json.journal"
    journal.write_bytes(journal.read_bytes() + b"not json\n")
    with pytest.raises(InventoryError, match=r"registry.json.journal: line 3: not a registry journal line"):
        await opened(tmp_path, "register", inventory=None)


async def test_a_failed_write_is_made_good_by_the_redelivery(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    sink = await opened(tmp_path, "register", inventory=None)
    await sink.write([changed(ip="198.18.0.20", mac="02:00:00:00:00:20")])
    event = changed(ip="198.18.0.21", mac="02:00:00:00:00:21")
    await on_a_full_disk(monkeypatch, "sinks.registry._io.append_durable", lambda: sink.write([event]))
    first = sink.state.outbox[event.id]
    assert await sink.write([event]) == first            # the redelivery: the same outputs, written
    again = await opened(tmp_path, "register", inventory=None)
    assert sorted(again.state.entries) == ["02:00:00:00:00:20", "02:00:00:00:00:21"]
    assert await again.write([event]) == first
