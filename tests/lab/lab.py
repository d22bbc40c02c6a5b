"""The lab: build, run, inspect and tear down a virtual LAN of namespaces.

See README.md beside this file for the topology. Everything the lab creates
is named after its prefix, so labs with different prefixes coexist.
"""

from __future__ import annotations

import fcntl
import ipaddress
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from . import netns, topology
from .netns import LabError
from .services import KINDS, Context, ServiceKind, answers, binary_path, launch_argv, service_env
from .topology import LabHost

_STATE_FILE = "lab.json"
_LINK_TIMEOUT = 5.0


@dataclass(frozen=True)
class _Instance:
    """One running server: a service kind on a host."""

    kind: ServiceKind
    host: LabHost

    @property
    def key(self) -> str:
        return f"{self.kind.name}@{self.host.name}"

    @property
    def slug(self) -> str:
        """File-name form of the key (postfix rejects '@' in its paths)."""
        return f"{self.host.name}-{self.kind.name}"


def _veth(ns: str, host: LabHost, bridge_ns: str) -> str:
    """`ip` command creating a host's eth0 in `ns` and its peer in `bridge_ns`."""
    return f"link add eth0 netns {ns} address {host.mac} type veth peer name {host.peer_if} netns {bridge_ns}"


class Lab:
    """A virtual LAN of network namespaces with real servers on it."""

    SUBNET: ClassVar[str] = topology.SUBNET
    LIVE_24: ClassVar[str] = topology.LIVE_24
    OFFLINK: ClassVar[str] = topology.OFFLINK
    DOWN_IP: ClassVar[str] = topology.DOWN_IP
    DNS_IP: ClassVar[str] = topology.DNS_IP
    DOMAIN: ClassVar[str] = topology.DOMAIN
    SCANNER_IP: ClassVar[str] = topology.SCANNER_IP

    def __init__(self, prefix: str = "ls", *, full: bool = False, state_root: Path = Path("/tmp")) -> None:
        if not prefix.isalnum() or not prefix.islower() or len(prefix) > 8:
            raise ValueError(f"lab prefix must be 1-8 lower-case letters/digits, got {prefix!r}")
        self.prefix = prefix
        self.full = full
        self.scanner_ns = f"{prefix}-scan"
        self.router_ns = f"{prefix}-rtr"
        self.state_dir = state_root / f"lanscope-lab-{prefix}"
        self.hosts: list[LabHost] = topology.build_hosts(prefix, full=full)
        self._by_name = {h.name: h for h in self.hosts}
        self._instances = [_Instance(KINDS[s], h) for h in self.hosts for s in h.services]
        self._lock_path = state_root / f"lanscope-lab-{prefix}.lock"
        self._home_fd: int | None = None
        self._links_down: set[str] = set()

    @classmethod
    def from_env(cls) -> Lab:
        """Lab configured by LANSCOPE_LAB_PREFIX (default 'ls') and LANSCOPE_LAB_FULL=1."""
        return cls(
            os.environ.get("LANSCOPE_LAB_PREFIX", "ls"),
            full=os.environ.get("LANSCOPE_LAB_FULL", "") == "1",
        )

    def __repr__(self) -> str:
        return f"Lab(prefix={self.prefix!r}, hosts={len(self.hosts)}, state_dir={str(self.state_dir)!r})"

    # --- lookups -----------------------------------------------------------

    def host(self, name: str) -> LabHost:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no lab host {name!r}; known: {', '.join(self._by_name)}") from None

    def live_hosts(self, subnet: str | None = None) -> list[LabHost]:
        """Hosts that answer on the wire (link up), optionally within `subnet`."""
        net = ipaddress.ip_network(subnet) if subnet else None
        return [
            h
            for h in self.hosts
            if h.name not in self._links_down and (net is None or ipaddress.ip_address(h.ip) in net)
        ]

    def namespaces(self) -> list[str]:
        """Every namespace this lab creates, scanner first."""
        names = [self.scanner_ns, self.router_ns]
        return names + [h.ns for h in self.hosts if h.ns not in names]

    def _all_possible_namespaces(self) -> list[str]:
        """Including hosts only declared in other modes and joined hosts (for cleanup)."""
        joined = sorted(n for n in netns.list_netns() if re.fullmatch(rf"{self.prefix}-j\d+", n))
        return [self.scanner_ns, self.router_ns, *joined] + [
            f"{self.prefix}-{n}" for n in topology.all_host_names()]

    # --- lifecycle -----------------------------------------------------------

    def is_up(self) -> bool:
        """State file of this configuration present and every namespace exists."""
        try:
            state = json.loads((self.state_dir / _STATE_FILE).read_text())
        except (FileNotFoundError, ValueError):
            return False
        if state.get("full") != self.full:
            return False
        return set(self.namespaces()) <= netns.list_netns()

    def up(self) -> None:
        """Build the lab and start every server.

        A complete, healthy lab of the same configuration is reused as is;
        anything else left by an earlier run of this prefix is removed first.
        A thread that had entered the scanner namespace is put back there.
        """
        with self._locked():
            if self.is_up() and self._healthy():
                return
            entered = self._home_fd is not None
            self._down()
            try:
                self._build_network()
                self._start_services()
            except BaseException:
                self._down()
                raise
            self._write_state()
            if entered:
                self.enter_scanner()

    def _healthy(self) -> bool:
        """Every link plugged in and every service answering."""
        try:
            for ns, bridge in ((self.scanner_ns, "br0"), (self.router_ns, "br1")):
                links = json.loads(netns.ip("-j", "link", "show", "master", bridge, ns=ns).stdout or "[]")
                if any(link.get("operstate") != "UP" for link in links):
                    return False
            return not self._not_answering()
        except (LabError, OSError, ValueError):
            return False

    def down(self) -> None:
        """Kill everything in the lab's namespaces, delete them and the state dir."""
        with self._locked():
            self._down()

    def _down(self) -> None:
        self.leave_scanner()
        ours = set(self._all_possible_namespaces())
        present = ours & netns.list_netns()
        pids = netns.pids_in_netns(present)
        if pids:
            netns.terminate(pids, timeout=10.0)
        if present:
            netns.ip_batch((f"netns del {ns}" for ns in sorted(present)), force=True)
        leftover = ours & netns.list_netns()
        if leftover:
            raise LabError(f"could not delete namespaces: {', '.join(sorted(leftover))}")
        shutil.rmtree(self.state_dir, ignore_errors=True)
        self._links_down.clear()

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Serialise up/down of one prefix across processes."""
        with open(self._lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write_state(self) -> None:
        state = {
            "prefix": self.prefix,
            "full": self.full,
            "scanner_ns": self.scanner_ns,
            "namespaces": self.namespaces(),
            "services": {i.key: self._pid(i) for i in self._instances},
            "up_at": time.time(),
        }
        (self.state_dir / _STATE_FILE).write_text(json.dumps(state, indent=2) + "\n")

    # --- network -----------------------------------------------------------

    def _build_network(self) -> None:
        self.state_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.state_dir.chmod(0o755)
        netns.ip_batch(self._root_batch())
        batches = [(self.scanner_ns, self._scanner_batch()), (self.router_ns, self._router_batch())]
        batches += [(h.ns, self._host_batch(h)) for h in self._host_hosts()]
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda job: netns.ip_batch(job[1], ns=job[0]), batches))
        netns.write_sysctl(self.router_ns, "net.ipv4.ip_forward", "1")
        for h in self.hosts:
            if h.drops_icmp:
                netns.write_sysctl(h.ns, "net.ipv4.icmp_echo_ignore_all", "1")
            if h.tcp_filtered:
                self._filter_ports(h)

    def _host_hosts(self) -> list[LabHost]:
        """Hosts with a namespace of their own (not the router's addresses)."""
        return [h for h in self.hosts if h.ns != self.router_ns]

    def _router_lab_side(self) -> LabHost:
        return next(h for h in self.hosts if h.ns == self.router_ns and h.on_link)

    def _router_off_side(self) -> LabHost:
        return next(h for h in self.hosts if h.ns == self.router_ns and not h.on_link)

    def _root_batch(self) -> list[str]:
        scan, rtr = self.scanner_ns, self.router_ns
        # group_fwd_mask 0x4000: the scanner's bridge forwards LLDP (01:80:c2:00:00:0e) like a
        # dumb switch, so hosts running lldpd see each other as neighbours.
        bridge = "type bridge forward_delay 0 stp_state 0"
        scanner_bridge = f"{bridge} group_fwd_mask 0x4000"
        lines = [f"netns add {ns}" for ns in self.namespaces()]
        lines.append(f"link add br0 netns {scan} address {topology.SCANNER_MAC} {scanner_bridge}")
        lines.append(f"link add br1 netns {rtr} address {self._router_off_side().mac} {bridge}")
        lines.append(_veth(rtr, self._router_lab_side(), scan))
        for h in self._host_hosts():
            lines.append(_veth(h.ns, h, scan if h.on_link else rtr))
        return lines

    def _scanner_batch(self) -> list[str]:
        ports = [self._router_lab_side().peer_if] + [h.peer_if for h in self._host_hosts() if h.on_link]
        return [
            "link set lo up",
            f"addr add {topology.SCANNER_IP}/16 dev br0",
            f"addr add {topology.SCANNER_IP6}/64 dev br0 nodad",
            "link set br0 up",
            *(f"link set {p} master br0 up" for p in ports),
            f"route add {self.OFFLINK} via {topology.ROUTER_IP}",
        ]

    def _router_batch(self) -> list[str]:
        ports = [h.peer_if for h in self._host_hosts() if not h.on_link]
        return [
            "link set lo up",
            f"addr add {topology.ROUTER_IP}/16 dev eth0",
            "link set eth0 up",
            f"addr add {topology.ROUTER_OFF_IP}/24 dev br1",
            "link set br1 up",
            *(f"link set {p} master br1 up" for p in ports),
        ]

    def _host_batch(self, h: LabHost) -> list[str]:
        prefix_len = 16 if h.on_link else 24
        lines = ["link set lo up"]
        if not h.dhcp:        # a DHCP host's address comes from its DHCP client
            lines.append(f"addr add {h.ip}/{prefix_len} dev eth0")
        if h.ip6:
            lines.append(f"addr add {h.ip6}/64 dev eth0 nodad")
        lines.append("link set eth0 up")
        # No default route anywhere in the lab: only the two segments are reachable.
        if h.dhcp:
            pass
        elif h.on_link:
            lines.append(f"route add {self.OFFLINK} via {topology.ROUTER_IP}")
        else:
            lines.append(f"route add {self.SUBNET} via {topology.ROUTER_OFF_IP}")
        return lines

    def _filter_ports(self, h: LabHost) -> None:
        ports = ", ".join(str(p) for p in h.tcp_filtered)
        ruleset = (
            "table inet lanscope_lab {\n"
            "  chain input {\n"
            "    type filter hook input priority 0; policy accept;\n"
            f"    tcp dport {{ {ports} }} drop\n"
            "  }\n"
            "}\n"
        )
        proc = subprocess.run(
            ["ip", "netns", "exec", h.ns, "nft", "-f", "-"],
            input=ruleset,
            capture_output=True,
            text=True,
            timeout=30,
        )
        if proc.returncode != 0:
            raise LabError(f"nft in {h.ns} failed: {proc.stderr.strip()}")

    # --- services ----------------------------------------------------------

    def _instance(self, service: str, host: str | None) -> _Instance:
        matches = [
            i for i in self._instances if i.kind.name == service and (host is None or i.host.name == host)
        ]
        if not matches:
            known = sorted({i.kind.name for i in self._instances})
            raise KeyError(
                f"no service {service!r}{' on ' + host if host else ''}; known: {', '.join(known)}"
            )
        return matches[0]  # the primary instance: first host in the table running it

    def _service_dir(self, inst: _Instance) -> Path:
        return self.state_dir / "services" / inst.slug

    def _pid_file(self, inst: _Instance) -> Path:
        return self.state_dir / "pids" / f"{inst.slug}.pid"

    def _pid(self, inst: _Instance) -> int | None:
        try:
            pid = int(self._pid_file(inst).read_text())
        except (FileNotFoundError, ValueError):
            return None
        return pid if netns.is_alive(pid) else None

    def _start_services(self) -> None:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(self._launch, self._instances))
        self._wait_ready(self._instances)

    def _launch(self, inst: _Instance) -> None:
        """Write the instance's config and start it in its host's namespace."""
        directory = self._service_dir(inst)
        directory.mkdir(mode=0o755, parents=True, exist_ok=True)
        launch = inst.kind.prepare(Context(inst.host, directory, tuple(self.hosts)))
        self._pid_file(inst).parent.mkdir(exist_ok=True)
        with open(directory / "server.log", "ab") as log:
            proc = subprocess.Popen(
                launch_argv(inst.host.ns, launch),
                cwd=directory,
                env=service_env(launch),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._pid_file(inst).write_text(f"{proc.pid}\n")

    def _wait_ready(self, instances: list[_Instance]) -> None:
        """Poll every instance from the scanner namespace until it answers."""

        def wait(inst: _Instance) -> str | None:
            deadline = time.monotonic() + inst.kind.start_timeout
            while time.monotonic() < deadline:
                if answers(inst.kind, inst.host, timeout=0.3):
                    return None
                if self._pid(inst) is None:
                    return f"{inst.key} exited during start-up:\n{self._log_tail(inst)}"
                time.sleep(0.05)
            return f"{inst.key} did not answer within {inst.kind.start_timeout:.0f}s:\n{self._log_tail(inst)}"

        workers = max(1, len(instances))
        with ThreadPoolExecutor(workers, initializer=netns.enter_netns, initargs=(self.scanner_ns,)) as pool:
            errors = [e for e in pool.map(wait, instances) if e]
        if errors:
            raise LabError("lab services failed to start:\n" + "\n".join(errors))

    def _log_tail(self, inst: _Instance, lines: int = 15) -> str:
        try:
            text = (self._service_dir(inst) / "server.log").read_text(errors="replace")
        except FileNotFoundError:
            return "  (no log)"
        return "\n".join("  | " + line for line in text.splitlines()[-lines:])

    def _not_answering(self) -> list[str]:
        """Keys of services that do not answer right now."""

        def check(inst: _Instance) -> str | None:
            return None if answers(inst.kind, inst.host, timeout=0.5) else inst.key

        with ThreadPoolExecutor(8, initializer=netns.enter_netns, initargs=(self.scanner_ns,)) as pool:
            return [k for k in pool.map(check, self._instances) if k]

    def service_status(self) -> dict[str, bool]:
        """Whether each service instance ('kind@host') answers right now."""
        failing = set(self._not_answering())
        return {i.key: i.key not in failing for i in self._instances}

    def stop_service(self, service: str, host: str | None = None) -> None:
        """Stop a server (by default the first host running that kind) and wait until it is gone."""
        inst = self._instance(service, host)
        pid = self._pid(inst)
        if pid is not None:
            netns.terminate([pid], sig=inst.kind.stop_signal, timeout=15.0)
        # Children (workers) may outlive a killed master; they are ours too.
        stragglers = [p for p in self._pids_of(inst) if netns.is_alive(p)]
        if stragglers:
            netns.terminate(stragglers)
        self._pid_file(inst).unlink(missing_ok=True)

    def start_service(self, service: str, host: str | None = None) -> None:
        """Start a stopped server again and wait until it answers."""
        inst = self._instance(service, host)
        if self._pid(inst) is None:
            self._launch(inst)
        self._wait_ready([inst])

    def _pids_of(self, inst: _Instance) -> list[int]:
        """Processes in the instance's namespace that run its binary."""
        binary = os.path.basename(binary_path(inst.kind))
        found = []
        for pid, _ in netns.pids_in_netns([inst.host.ns]).items():
            try:
                exe = os.path.basename(os.readlink(f"/proc/{pid}/exe"))
            except OSError:
                continue
            if exe == binary or exe.startswith(binary):
                found.append(pid)
        return found

    def package_version(self, service: str) -> str:
        """Debian package version of the program behind `service`, e.g. '1:9.2p1-2+deb12u3'."""
        inst = self._instance(service, None)
        path = os.path.realpath(binary_path(inst.kind))
        owner = subprocess.run(["dpkg-query", "-S", path], capture_output=True, text=True, timeout=30)
        if owner.returncode != 0:
            raise LabError(f"no Debian package owns {path}: {owner.stderr.strip()}")
        package = owner.stdout.split(":", 1)[0].split(",")[0].strip()
        version = subprocess.run(
            ["dpkg-query", "-W", "-f", "${Version}", package], capture_output=True, text=True, timeout=30
        )
        if version.returncode != 0:
            raise LabError(f"dpkg-query {package}: {version.stderr.strip()}")
        return version.stdout.strip()

    def upstream_version(self, service: str) -> str:
        """The upstream part of package_version(): '1:9.2p1-2+deb12u10' -> '9.2p1'."""
        version = re.sub(r"^\d+:", "", self.package_version(service))
        return version.rsplit("-", 1)[0] if "-" in version else version

    # --- links and namespaces ---------------------------------------------

    def set_link(self, host: str, up: bool) -> None:
        """Unplug a host from its segment (up=False) or plug it back in."""
        h = self.host(host)
        if not h.peer_if:
            raise LabError(f"host {host!r} shares a namespace with another address; unplug 'rtr' instead")
        bridge_ns = self.scanner_ns if h.on_link else self.router_ns
        netns.ip("link", "set", h.peer_if, "up" if up else "down", ns=bridge_ns)
        if up:
            if not netns.wait_until(lambda: self._link_forwarding(bridge_ns, h.peer_if), _LINK_TIMEOUT):
                raise LabError(f"link of {host} did not come back within {_LINK_TIMEOUT}s")
            self._links_down.discard(host)
        else:
            self._links_down.add(host)

    @staticmethod
    def _link_forwarding(ns: str, ifname: str) -> bool:
        info = json.loads(netns.ip("-j", "-d", "link", "show", "dev", ifname, ns=ns).stdout)[0]
        slave = info.get("linkinfo", {}).get("info_slave_data", {})
        return bool(info.get("operstate") == "UP" and slave.get("state", "forwarding") == "forwarding")

    def _resolve_ns(self, host_or_ns: str) -> str:
        if host_or_ns in ("scan", "scanner"):
            return self.scanner_ns
        if host_or_ns in ("rtr", "router"):
            return self.router_ns
        if host_or_ns in self._by_name:
            return self._by_name[host_or_ns].ns
        if host_or_ns in self.namespaces():
            return host_or_ns
        raise KeyError(f"no lab host or namespace {host_or_ns!r}")

    def run(
        self, host_or_ns: str, *argv: str, check: bool = True, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside a host's (or a namespace's) network namespace."""
        return subprocess.run(
            ["ip", "netns", "exec", self._resolve_ns(host_or_ns), *argv],
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def enter_scanner(self) -> None:
        """Move the calling thread (and threads/processes it creates later) into the scanner ns."""
        if self._home_fd is None:
            self._home_fd = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        netns.enter_netns(self.scanner_ns)

    def leave_scanner(self) -> None:
        """Undo `enter_scanner` for the calling thread (no-op if never entered)."""
        if self._home_fd is None:
            return
        netns.setns(self._home_fd)
        os.close(self._home_fd)
        self._home_fd = None
