"""Finding a running pipeline's NATS: ``nats.url``, else the embedded server a ``lanscope run``
started for the same data_dir, in this network namespace or (as root) in another one.

Used by the commands that join a running pipeline (``watch``, ``query``, ``provision``, the
web dashboard); ``no_server_hint`` says what was found instead when nothing was.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import socket
from pathlib import Path

from lanscope.config import NatsConfig
from lanscope.runtime.embedded import BINARY, CONFIG_FILE, STORE, config_path

_CLONE_NEWNET = 0x40000000


def configured_url(config: NatsConfig, data_dir: str | Path) -> str | None:
    """``nats.url``, else the url of an embedded server a ``lanscope run`` has started.

    The embedded server's generated config file names its host and port, so
    ``lanscope watch`` (or ``query``) finds the pipeline without a fixed port.
    Returns None when neither is set or that server does not accept connections.
    """
    if config.url:
        return config.url
    conf = config_path(data_dir)
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


def running_servers() -> list[tuple[int, Path, str | None]]:
    """Every embedded nats-server a ``lanscope run`` on this machine started: (PID, its data
    directory, the named network namespace it runs in when that is not ours, else None).
    Read from /proc (only the processes of this user are visible to others)."""
    found: list[tuple[int, Path, str | None]] = []
    try:
        ours = os.stat("/proc/self/ns/net").st_ino
        entries = [e for e in os.listdir("/proc") if e.isdigit()]
    except OSError:
        return found
    names: dict[int, str] | None = None
    for entry in entries:
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            if not argv[0].endswith(BINARY.encode()) or b"-c" not in argv:
                continue
            conf = Path(os.fsdecode(argv[argv.index(b"-c") + 1]))
            if conf.name != CONFIG_FILE or conf.parent.name != STORE:
                continue
            if not conf.is_absolute():
                conf = Path(os.readlink(f"/proc/{entry}/cwd")) / conf
            netns = os.stat(f"/proc/{entry}/ns/net").st_ino
        except (OSError, IndexError):
            continue
        namespace = None
        if netns != ours:
            if names is None:
                names = _netns_names()
            namespace = names.get(netns, f"net:[{netns}]")
        found.append((int(entry), conf.parent.parent, namespace))
    return found


def _netns_names() -> dict[int, str]:
    """inode -> name of the namespaces `ip netns` knows (/run/netns)."""
    names: dict[int, str] = {}
    with contextlib.suppress(OSError):
        for name in os.listdir("/run/netns"):
            with contextlib.suppress(OSError):
                names[os.stat(f"/run/netns/{name}").st_ino] = name
    return names


def pipeline_url(config: NatsConfig, data_dir: str | Path) -> tuple[str | None, str | None]:
    """``configured_url``, or else the embedded server of this very data_dir running in another
    network namespace (``make lab-run`` runs in the lab's scanner namespace): this process
    joins that namespace (root only) and connects there. (url or None, namespace joined)."""
    url = configured_url(config, data_dir)
    if url or config.url:
        return url, None
    here = Path(data_dir).resolve()
    spaces = {ns for _pid, where, ns in running_servers() if ns is not None and where == here
              and not ns.startswith("net:[")}
    if len(spaces) != 1:
        return None, None
    namespace = spaces.pop()
    try:
        fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None, None
    try:
        if ctypes.CDLL(None, use_errno=True).setns(fd, _CLONE_NEWNET) != 0:
            return None, None          # not root: the hint says how to run it there
    finally:
        os.close(fd)
    return configured_url(config, data_dir), namespace


def no_server_hint(data_dir: str | Path, command: str) -> str:
    """Why ``configured_url`` found no NATS for ``data_dir``, and how to point ``lanscope
    COMMAND`` at a pipeline that runs elsewhere (another data_dir, another namespace)."""
    here = Path(data_dir).resolve()
    lines = [f"no NATS to {command}: nats.url is not set and no `lanscope run` serves data_dir {data_dir}"]
    others = running_servers()
    for pid, where, namespace in others:
        shown = os.path.relpath(where) if where.is_relative_to(Path.cwd()) else str(where)
        if namespace is not None:
            lines.append(f"a pipeline (nats-server PID {pid}, data_dir {shown}) runs in network namespace "
                         f"{namespace}: run the command there with that data_dir, e.g. `ip netns exec "
                         f"{namespace} lanscope -c CONFIG {command}`" + (" (`make lab-run`: CONFIG is "
                         "tests/lab/lanscope.yaml)" if shown.endswith("var/lab") else ""))
        elif where != here:
            lines.append(f"a pipeline (nats-server PID {pid}) runs with data_dir {shown}: point at it with "
                         f"the config it was started with (`lanscope -c CONFIG {command}`) or "
                         f"LANSCOPE_DATA_DIR={shown}")
    if not others:
        lines.append("start one with `lanscope run` (`make lab-run` in the lab), or set nats.url; "
                     "a pipeline started with another config is found with the same `-c CONFIG` "
                     "(or LANSCOPE_DATA_DIR=DIR)")
    return "; ".join(lines)
