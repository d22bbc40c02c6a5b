"""`lanscope dns` against the lab's DNS server."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lanscope.cli import main

pytestmark = pytest.mark.lab


def test_a_record(lab: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dns", "nginx.lab.test", "A", "--server", lab.DNS_IP, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["status"] == "NOERROR" and [a["data"] for a in out["answer"]] == [lab.host("nginx").ip]


def test_ptr_from_an_address(lab: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dns", lab.host("ssh").ip, "--server", lab.DNS_IP]) == 0
    out = capsys.readouterr().out
    assert ("10.0.18.198.in-addr.arpa." in out and "PTR\tssh.lab.test." in out.replace(" ", "\t")) \
        or "ssh.lab.test." in out


def test_nxdomain_exits_1(lab: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dns", "nosuch.lab.test", "--server", lab.DNS_IP, "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["status"] == "NXDOMAIN"


def test_silent_server_is_one_clear_line(lab: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dns", "x.lab.test", "--server", lab.DOWN_IP, "--timeout-ms", "300"]) == 1
    assert f"no answer from {lab.DOWN_IP}#53" in capsys.readouterr().err
