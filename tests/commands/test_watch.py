"""`lanscope watch` finds a pipeline that runs in another network namespace.

`make lab-run` runs the pipeline inside the lab's scanner namespace, where its embedded
nats-server listens on 127.0.0.1: a `watch` from another shell said "no NATS to watch"
though the pipeline ran. Pointed at the pipeline's data_dir (`-c tests/lab/lanscope.yaml`),
watch now joins that namespace and connects.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.lab import Lab

pytestmark = pytest.mark.lab

SERVE = """
import sys
from pathlib import Path
from lanscope.config import NatsConfig
from lanscope.runtime.embedded import EmbeddedNats
server = EmbeddedNats.from_config(NatsConfig(), Path(sys.argv[1]))   # closed, as `lanscope run` starts it
print(server.start(), flush=True)
sys.stdin.read()            # until the test closes stdin
server.stop()
"""


def test_watch_joins_the_namespace_of_the_pipeline_it_is_pointed_at(lab: Lab, tmp_path: Path) -> None:
    ns = lab.host("f24").ns                 # not the namespace this test runs in
    data_dir = tmp_path / "var"
    config = tmp_path / "config.yaml"
    config.write_text(f"data_dir: {data_dir}\n")
    server = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVE, str(data_dir)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().strip()
        assert url.startswith("nats://127.0.0.1:")
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "lanscope", "-c", str(config),
                        "provision"], check=True, capture_output=True, timeout=60)
        watch = subprocess.Popen([sys.executable, "-m", "lanscope", "watch", "-c", str(config)],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            assert watch.stderr is not None
            line = watch.stderr.readline()
            assert f"on {url} (network namespace {ns})" in line, line
        finally:
            watch.terminate()
            assert watch.wait(timeout=10) == 0
    finally:
        server.communicate(input="", timeout=30)
