"""`lanscope fingerprint --jsonl`: banners in, identities out, one line per input, in order."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

from enrichers.port_probe.fingerprint import default_rules
from lanscope.commands.fingerprint import run


def _cli(stdin: str) -> list[dict[str, object]]:
    done = subprocess.run([sys.executable, "-m", "lanscope", "fingerprint", "--jsonl"], input=stdin,
                          capture_output=True, text=True, timeout=60, check=True)
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_lines_in_order_with_errors_in_place() -> None:
    lines = [
        json.dumps({"port": 22, "protocol": "tcp", "banner": "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"}),
        "not json",
        json.dumps({"port": 3306, "banner_b64": base64.b64encode(
            b"Y\x00\x00\x00\x0a5.5.5-10.11.6-MariaDB-0+deb12u1\x00").decode()}),
        json.dumps({"port": 99999, "banner": "x"}),
        json.dumps({"port": 80, "banner_b64": "***"}),
        json.dumps({"port": 54321, "banner": ""}),
        json.dumps(["a list"]),
        json.dumps({"port": 80, "protocol": "sctp", "banner": "x"}),
        json.dumps({"port": 80}),
    ]
    out = _cli("\n".join(lines) + "\n")
    assert len(out) == len(lines)
    assert out[0] == {"service": "ssh", "product": "OpenSSH", "version": "9.2p1", "os_hint": "Debian 12",
                      "cpe": "cpe:/a:openbsd:openssh:9.2p1", "confidence": 10}
    assert out[1]["line"] == 2 and "not JSON" in str(out[1]["error"])
    assert (out[2]["product"], out[2]["version"], out[2]["os_hint"]) == ("MariaDB", "10.11.6", "Debian 12")
    assert "port" in str(out[3]["error"])
    assert "base64" in str(out[4]["error"])
    assert out[5] == {"service": None, "product": None, "version": None, "os_hint": None, "cpe": None,
                      "confidence": None}
    assert "object" in str(out[6]["error"])
    assert "protocol" in str(out[7]["error"])
    assert "banner" in str(out[8]["error"])


def test_binary_and_huge_banners_are_safe() -> None:
    rules = default_rules()
    lines = [json.dumps({"port": 80, "banner_b64": base64.b64encode(bytes(range(256)) * 100).decode()}),
             json.dumps({"port": 80, "banner": "Server: " + "x" * 500_000}),
             "{" * 2_000_000]
    out = list(run(lines, rules))
    assert len(out) == 3
    assert out[0]["service"] == "http"
    assert "error" in out[2]
