"""The netbios enricher: on a fake NBSTAT answer, then on the lab's real nmbd."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from enrichers.netbios import Config, NetBios
from lanscope.net.netbios import NBSTAT_QUERY, NbName, NodeStatus, node_status, parse_nbstat
from lanscope.runtime.stage import StageContext
from lanscope.settings import ScopeConfig
from schemas import HostAnnotated
from tests.factories import host_seen
from tests.lab import Lab

MAC = "00:11:32:00:00:18"


def nbstat_reply(names: list[tuple[str, int, bool]], unit: bytes = b"\0" * 6) -> bytes:
    """An NBSTAT answer as nmbd sends it."""
    body = bytes([len(names)]) + b"".join(
        name.ljust(15).encode() + bytes([suffix]) + struct.pack("!H", 0x8400 if group else 0x0400)
        for name, suffix, group in names) + unit + b"\0" * 40
    return (b"\x80\xf0\x84\x00\x00\x00\x00\x01\x00\x00\x00\x00" + NBSTAT_QUERY[12:46]
            + b"\x00\x21\x00\x01\x00\x00\x00\x00" + struct.pack("!H", len(body)) + body)


def test_parse_nbstat_names_the_computer_and_the_workgroup() -> None:
    status = parse_nbstat(nbstat_reply([("NAS", 0x00, False), ("NAS", 0x03, False), ("NAS", 0x20, False),
                                        ("LAB", 0x00, True), ("LAB", 0x1E, True)],
                                       unit=bytes.fromhex("001132000018")))
    assert status is not None
    assert (status.computer, status.workgroup, status.mac) == ("NAS", "LAB", MAC)
    assert status.names[3] == NbName("LAB", 0x00, True)


@pytest.mark.parametrize("reply", [b"", b"\x80\xf0" + b"\0" * 60, nbstat_reply([("NAS", 0, False)])[:60]])
def test_not_an_answer_or_truncated(reply: bytes) -> None:
    status = parse_nbstat(reply)
    assert status is None or status.computer is None


class Allow:
    def __init__(self, refused: set[str] = frozenset()) -> None:   # type: ignore[assignment]
        self.refused = refused

    def refusal(self, address: str) -> str | None:
        return "out of scope" if address in self.refused else None


def _stage(answers: dict[str, NodeStatus | None], asked: list[str], refused: set[str] = set(),  # noqa: B006
           now: list[float] | None = None) -> NetBios:
    async def query(ip: str, **_: Any) -> NodeStatus | None:
        asked.append(ip)
        return answers.get(ip)

    ticks = now if now is not None else [0.0]
    return NetBios(Config(), query=query, guard=Allow(refused), monotonic=lambda: ticks[0])


async def test_an_answer_becomes_a_name_and_a_workgroup_asked_once_per_refresh() -> None:
    asked: list[str] = []
    now = [0.0]
    status = NodeStatus((NbName("DESKTOP", 0, False), NbName("LAB", 0, True)), None)
    stage = _stage({"198.18.0.26": status}, asked, now=now)
    [event] = await stage.handle(host_seen("198.18.0.26", "00:14:22:00:00:1a"))
    assert isinstance(event, HostAnnotated)
    assert (event.source, event.hostname, event.workgroup, event.mac) == (
        "netbios", "DESKTOP", "LAB", "00:14:22:00:00:1a")
    assert await stage.handle(host_seen("198.18.0.26", "00:14:22:00:00:1a", t=30)) == []
    now[0] = 3601
    assert len(await stage.handle(host_seen("198.18.0.26", "00:14:22:00:00:1a", t=3601))) == 1
    assert asked == ["198.18.0.26", "198.18.0.26"]


async def test_silence_is_asked_again_only_after_negative_secs() -> None:
    asked: list[str] = []
    now = [0.0]
    stage = _stage({}, asked, now=now)
    assert await stage.handle(host_seen("198.18.0.10")) == []
    now[0] = 600
    assert await stage.handle(host_seen("198.18.0.10")) == []
    now[0] = 901
    assert await stage.handle(host_seen("198.18.0.10")) == []
    assert asked == ["198.18.0.10", "198.18.0.10"]


async def test_out_of_scope_ipv6_and_stale_sightings_send_nothing() -> None:
    asked: list[str] = []
    stage = _stage({}, asked, refused={"8.8.8.8"})
    for event in (host_seen("8.8.8.8"), host_seen("fd00:1a5::10"), host_seen("198.18.0.10", alive=False),
                  host_seen(None, MAC)):
        assert await stage.handle(event) == []
    assert asked == []


@pytest.mark.lab
async def test_nmbd_in_the_lab(lab: Lab, tmp_path: Any) -> None:
    for name, computer in (("nas", "NAS"), ("desktop", "DESKTOP")):
        status = await node_status(lab.host(name).ip)
        assert status is not None and (status.computer, status.workgroup) == (computer, "LAB")
    assert await node_status(lab.host("ssh").ip, timeout_s=0.3, retries=0) is None
    # Built as the pipeline builds it: the scope guard lets the lab's addresses through.
    from enrichers.netbios import build

    stage = build(Config(), StageContext(data_dir=tmp_path, scope=ScopeConfig()))
    nas = lab.host("nas")
    [event] = await stage.handle(host_seen(nas.ip, nas.mac))
    assert (event.hostname, event.workgroup) == ("NAS", "LAB")   # type: ignore[union-attr]
