"""`lanscope run` as a user starts it: a subprocess with the embedded, closed nats-server.

The security tests (issue 20) drive the real command: it starts nats-server in
``<data_dir>/nats``, generates the credentials, provisions as admin and runs
its stages as their role. ``connect(role)`` joins it the way a local command
does (lanscope.runtime.auth.client_config), so the tests see exactly what the
permissions allow.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

from lanscope.config import NatsConfig
from lanscope.runtime.auth import client_config
from lanscope.runtime.bus import Bus
from lanscope.runtime.locate import configured_url
from tests.e2e.harness import Lanscope


class Running(Lanscope):
    """One ``lanscope -c CONFIG run --stage ...`` with its embedded server in ``data_dir``;
    ``stop()`` asks it to stop (SIGTERM) before it kills it."""

    def __init__(self, config: Path, data_dir: Path, stages: tuple[str, ...], log: Path,
                 *, verbose: bool = False) -> None:
        super().__init__(config, stages, log, verbose=verbose)
        self.config = config
        self.data_dir = data_dir

    @property
    def url(self) -> str:
        url = configured_url(NatsConfig(), self.data_dir)
        assert url, f"no embedded server in {self.data_dir}\n{self.tail()}"
        return url

    def wait_serving(self, timeout: float = 30.0, *, says: str = "") -> None:
        """Until its embedded server accepts connections and its stages run (and its log
        ``says`` that, when given: "answering queries" ...)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"lanscope run exited with {self.process.returncode}\n{self.tail()}")
            text = self.text()
            if configured_url(NatsConfig(), self.data_dir) and "runs" in text and says in text:
                return
            time.sleep(0.05)
        raise AssertionError(f"lanscope run did not start within {timeout}s\n{self.tail()}")

    async def connect(self, role: str) -> Bus:
        config = client_config(NatsConfig(connect_timeout_secs=3), self.data_dir, role)
        return await Bus.connect(config, url=self.url, name=f"test-{role}", role=role)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 30) -> str:
        return f"--- {self.log}\n" + "\n".join(self.text().splitlines()[-lines:])
