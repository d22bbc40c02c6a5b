"""Network-namespace primitives: `ip` batches, setns(2), and process control.

Everything here works whatever network namespace the caller is in: links
are created directly inside their target namespaces, and namespaces are
addressed through their bind mounts under /run/netns.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000

T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


class LabError(RuntimeError):
    """The lab could not be built, changed or torn down."""


def ns_path(ns: str) -> Path:
    return NETNS_DIR / ns


def setns(fd: int) -> None:
    """Move the calling thread into the network namespace open on `fd`."""
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def enter_netns(ns: str) -> None:
    """Move the calling thread into namespace `ns` (for thread initializers)."""
    fd = os.open(ns_path(ns), os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(fd)
    finally:
        os.close(fd)


@contextmanager
def in_netns(ns: str) -> Iterator[None]:
    """Run the body in namespace `ns`, then return the thread where it was."""
    home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        enter_netns(ns)
        try:
            yield
        finally:
            setns(home)
    finally:
        os.close(home)


def call_in_netns(ns: str, fn: Callable[[], T]) -> T:
    """Call `fn` with the current thread inside `ns`, restoring it afterwards."""
    with in_netns(ns):
        return fn()


def ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one `ip` command, optionally inside a namespace (`ip -n`)."""
    argv = ["ip", *(("-n", ns) if ns else ()), *args]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed: {proc.stderr.strip()}")
    return proc


def ip_batch(lines: Iterable[str], *, ns: str | None = None, force: bool = False) -> None:
    """Run many `ip` commands in one process (`ip -batch -`)."""
    script = "\n".join(lines) + "\n"
    argv = ["ip", *(("-n", ns) if ns else ()), *(("-force",) if force else ()), "-batch", "-"]
    proc = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=60)
    if proc.returncode != 0 and not force:
        raise LabError(f"ip batch{' in ' + ns if ns else ''} failed: {proc.stderr.strip()}")


def list_netns() -> set[str]:
    """Names of all named network namespaces."""
    try:
        return {p.name for p in NETNS_DIR.iterdir()}
    except FileNotFoundError:
        return set()


def netns_inode(ns: str) -> int | None:
    try:
        return os.stat(ns_path(ns)).st_ino
    except FileNotFoundError:
        return None


def pids_in_netns(namespaces: Iterable[str]) -> dict[int, str]:
    """Processes (not threads) whose network namespace is one of `namespaces`.

    The caller's own process is never included.
    """
    inodes = {ino: ns for ns in namespaces if (ino := netns_inode(ns)) is not None}
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            ino = os.stat(entry / "ns" / "net").st_ino
        except OSError:
            continue
        if ino in inodes:
            found[int(entry.name)] = inodes[ino]
    return found


def is_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    if state in ("Z", "X"):
        _reap(pid)
        return False
    return True


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def wait_until(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    """Poll `predicate` until it is true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def terminate(pids: Iterable[int], *, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    """Signal `pids`, wait for them to exit, SIGKILL whatever is left."""
    pending = set(pids)
    for pid in pending:
        _signal(pid, sig)
    if wait_until(lambda: not any(is_alive(p) for p in pending), timeout):
        return
    for pid in pending:
        _signal(pid, signal.SIGKILL)
    wait_until(lambda: not any(is_alive(p) for p in pending), 5.0)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def write_sysctl(ns: str, key: str, value: str) -> None:
    """Set a per-namespace sysctl (net.*) without spawning a process."""
    path = Path("/proc/sys") / key.replace(".", "/")
    call_in_netns(ns, lambda: path.write_text(value))
