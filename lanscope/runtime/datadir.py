"""The data directory: private to its owner, and one process per stateful stage.

``<data_dir>`` holds the NATS store, the DuckDB file and its WAL, the sinks'
state files and journals, and the NATS credentials: everything about the LAN.
``private`` makes it 0700 and what is in it 0600 (tightening what an older
version left readable) and holds the umask at 077 while a command runs, so
whatever lanscope and its nats-server create meanwhile is private too.

A sink keeps state in the data directory, so two processes running the same
sink on one directory would corrupt it (or, for DuckDB, fail on its lock with
a traceback). ``StageLocks`` takes one lock file per sink,
``<data_dir>/<stage>.lock``, holding the owner's PID; the lock is an flock,
so it goes away with the process however it ends. Stateless stages take none:
running several copies is how they scale.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path

from lanscope.errors import LanscopeError, StartupError
from lanscope.runtime.topology import Kind, StageSpec


@contextlib.contextmanager
def private(data_dir: str | Path) -> Iterator[Path]:
    """Create ``data_dir`` 0700 (or make it so), its files 0600 and its directories 0700, and
    hold the umask at 077 meanwhile, so whatever this process and the children it starts
    (nats-server) create is private too; the umask is restored on exit (the commands also
    run inside other processes: tests, a dashboard)."""
    before = os.umask(0o077)
    try:
        path = Path(data_dir)
        try:
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise StartupError(f"cannot create data_dir {path}: {exc.strerror}") from None
        if not path.is_dir():
            raise StartupError(f"data_dir {path} is not a directory")
        _tighten(path)
        yield path
    finally:
        os.umask(before)


def _tighten(path: Path) -> None:
    uid = os.geteuid()
    for entry in (path, *_tree(path)):
        with contextlib.suppress(OSError):
            info = entry.lstat()
            if info.st_uid != uid or stat.S_ISLNK(info.st_mode):
                continue
            mode = stat.S_IMODE(info.st_mode)
            wanted = 0o700 if stat.S_ISDIR(info.st_mode) else mode & 0o700
            if mode != wanted and (mode & 0o077 or stat.S_ISDIR(info.st_mode)):
                os.chmod(entry, wanted)


def _tree(path: Path) -> Iterable[Path]:
    for root, dirs, files in os.walk(path):
        for name in (*dirs, *files):
            yield Path(root) / name


class StageLocks:
    """One lock per sink this process runs on ``data_dir``; ``StartupError`` naming the
    process that holds one already. Held until ``release()`` or the process ends."""

    def __init__(self, data_dir: str | Path) -> None:
        self.data_dir = Path(data_dir)
        self._held: list[int] = []

    def path(self, spec: StageSpec) -> Path:
        return self.data_dir / f"{spec.name}.lock"

    def take(self, specs: Iterable[StageSpec]) -> StageLocks:
        for spec in specs:
            if spec.kind is Kind.SINK:
                self._take(spec)
        return self

    def _take(self, spec: StageSpec) -> None:
        path = self.path(spec)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            self.release()
            raise StartupError(
                f"{spec.qualified} already runs on data_dir {self.data_dir} (pid {holder}, lock {path}): "
                "stop that lanscope run first, or give this one another data_dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._held.append(fd)

    def release(self) -> None:
        for fd in self._held:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._held = []


@contextlib.contextmanager
def starting(what: str = "") -> Iterator[None]:
    """Any failure inside is a start-up failure: one line (StartupError, exit code 2); the
    original stays its cause, which -v shows."""
    try:
        yield
    except StartupError:
        raise
    except LanscopeError as exc:
        raise StartupError(str(exc)) from exc
    except Exception as exc:
        text = " ".join(str(exc).split()) or type(exc).__name__
        raise StartupError(f"{what}{': ' if what else ''}{type(exc).__name__}: {text[:500]}") from exc
