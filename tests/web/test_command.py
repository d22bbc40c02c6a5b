"""`lanscope web` as a user runs it: serves the file read-only, stops cleanly on SIGTERM,
and says so in one line when its port is taken."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _config(tmp_path: Path, store: Path, port: int) -> Path:
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps({"data_dir": str(tmp_path / "var"),
                                  "sinks": {"host_state": {"path": str(store)}},
                                  "web": {"port": port}}))
    return config


def test_lanscope_web_serves_the_file_and_stops_on_sigterm(tmp_path: Path, store_file: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "lanscope", "-c", str(_config(tmp_path, store_file, port)),
                             "web"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/hosts", timeout=2) as page:
                    assert page.status == 200 and page.headers["X-Lanscope-Data"] == "file"
                    assert "ssh.lab.example" in page.read().decode()
                    break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
                time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=15)[0].decode()
        assert proc.returncode == 0, output
        assert f"Dashboard: http://127.0.0.1:{port}/" in output and "Traceback" not in output
    finally:
        if proc.poll() is None:
            proc.kill()


def test_lanscope_web_on_a_taken_port_is_one_line(tmp_path: Path, store_file: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = _config(tmp_path, store_file, port)
        result = subprocess.run([sys.executable, "-m", "lanscope", "-c", str(config), "web"], cwd=ROOT,
                                capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert result.stderr.strip() == (f"lanscope web: error: web: 127.0.0.1:{port} is already in use (another "
                                     "lanscope?): set web.port to a free port, or web.enabled: false "
                                     "(lanscope run --no-web)")
