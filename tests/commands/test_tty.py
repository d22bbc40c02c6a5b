"""The commands that draw progress bars and colour, run as a user runs them: on a terminal.

Every other command test writes to a pipe or a file, where rich draws nothing; that is
how `scan`, `probe` and `ping` could crash on every real terminal with the suite green.
Here each command runs under a pseudo-terminal (200x50) in the lab: exit 0, a progress
bar was drawn (its description and bar characters on the terminal), and the final output.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from tests.lab import Lab

pytestmark = pytest.mark.lab


def on_terminal(argv: list[str], timeout: float = 120.0) -> tuple[int, str]:
    """Run ``lanscope ARGV`` with stdin, stdout and stderr on a pseudo-terminal; (exit code,
    everything it wrote, escape sequences included)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "COLUMNS", "LINES", "TERM")}
    env["TERM"] = "xterm-256color"
    process = subprocess.Popen([sys.executable, "-m", "lanscope", *argv], stdin=slave, stdout=slave,
                               stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.5)
            if not ready:
                if process.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:               # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        code = process.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    return code, b"".join(chunks).decode("utf-8", "replace")


def assert_bar(text: str, description: str) -> None:
    assert description in text, text[-2000:]
    assert "━" in text and "\x1b[" in text                  # rich's bar, in colour
    assert "Traceback" not in text and "context manager" not in text


@pytest.fixture(scope="module")
def tty_cfg(tmp_path_factory: pytest.TempPathFactory) -> str:
    d = tmp_path_factory.mktemp("tty")
    path = d / "config.yaml"
    path.write_text(f"data_dir: {d / 'var'}\nscope:\n  allow: [198.18.0.0/15]\n"
                    "dns:\n  servers: [198.18.0.53]\n"
                    "enrichers:\n  port_probe:\n    tcp: '22,80'\n    udp: ''\n")
    return str(path)


def test_probe_on_a_terminal(lab: Lab, tty_cfg: str) -> None:
    ssh = lab.host("ssh")
    code, text = on_terminal(["-c", tty_cfg, "probe", ssh.ip, "-p", "22"])
    assert code == 0, text[-2000:]
    assert_bar(text, f"probing {ssh.ip}")
    assert "22/tcp" in text and "OpenSSH" in text and "OS guess" in text


def test_scan_on_a_terminal(lab: Lab, tty_cfg: str) -> None:
    code, text = on_terminal(["-c", tty_cfg, "scan", "198.18.0.8/29", "-p", "22,80"])
    assert code == 0, text[-2000:]
    assert_bar(text, "discovering hosts")
    assert_bar(text, "scanning")
    assert "ssh.lab.test (198.18.0.10)" in text and "lanscope done: 8 IP addresses" in text


def test_ping_on_a_terminal(lab: Lab, tty_cfg: str) -> None:
    code, text = on_terminal(["-c", tty_cfg, "ping", "198.18.0.0/21"])      # a bar above 1024
    assert code == 0, text[-2000:]
    assert_bar(text, "ping sweep")
    assert "2048 addresses" in text and "hosts up" in text and "ssh.lab.test" in text


def test_arp_on_a_terminal(lab: Lab, tty_cfg: str) -> None:
    code, text = on_terminal(["-c", tty_cfg, "arp", "198.18.0.0/24", "--no-neighbours"])
    assert code == 0, text[-2000:]
    assert_bar(text, "ARP sweep")
    assert lab.host("f01").mac in text and "hosts answered ARP" in text


def test_discover_on_a_terminal(lab: Lab, tty_cfg: str) -> None:
    code, text = on_terminal(["-c", tty_cfg, "discover", "198.18.0.8/29"])
    assert code == 0, text[-2000:]
    assert_bar(text, "discovering hosts")
    assert_bar(text, "probing")
    assert lab.host("ssh").ip in text and "stored in" in text
    assert (Path(tty_cfg).parent / "var" / "lanscope.duckdb").exists()


def test_dns_names_and_tables_in_colour_on_a_terminal(lab: Lab, tty_cfg: str) -> None:
    """No progress here, but colour: a table drawn for a terminal, bold headers."""
    code, text = on_terminal(["-c", tty_cfg, "list", "ssh.lab.test"])
    assert code == 0, text[-2000:]
    assert "ssh.lab.test" in text and "\x1b[1maddress" in text      # the header row, in bold
