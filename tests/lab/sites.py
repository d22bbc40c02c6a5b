"""A lab of sites: a hub namespace and two sites with the same private range, each behind its sensor.

```
          <p>-hub  (lanscope hub: NATS leaf node listener on 198.19.240.1 / .5)
          up-paris 198.19.240.1/30        up-berlin 198.19.240.5/30
              |   (cut: link down)             |
          <p>-paris  sensor               <p>-berlin  sensor
          up0 198.19.240.2/30              up0 198.19.240.6/30
          br0 10.20.0.1/24                 br0 10.20.0.1/24
          ├── <p>-paris-1  10.20.0.11      ├── <p>-berlin-1  10.20.0.11  (the SAME MAC as paris-1)
          ├── <p>-paris-2  10.20.0.12      ├── <p>-berlin-2  10.20.0.12
          └── <p>-paris-3  10.20.0.13      └── <p>-berlin-3  10.20.0.13
```

Both sites use 10.20.0.0/24, inside their own namespaces only: no namespace
has a default route or any route beyond its two links, and nothing is created
in the namespace of the caller (veth ends are made in their namespaces). Host 1
of each site serves HTTP on port 80 (a port for port_probe to find). The
prefix is ``LANSCOPE_SITES_PREFIX`` (default: the lab prefix + ``s``), so it
never collides with the main lab. By hand (root): ``python -m tests.lab.sites
up|down|status``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from . import netns
from .netns import LabError

SUBNET = "10.20.0.0/24"
GATEWAY_IP = "10.20.0.1"          # the sensor's own address on its segment
HOSTS = 3
SHARED_MAC = "02:1a:5c:24:00:01"  # host 1 of every site: one MAC, two hosts
HTTP_PORT = 80
LEAF_PORT = 7422
LANSCOPE = str(Path(sys.executable).parent / "lanscope")    # the CLI of this environment


@dataclass(frozen=True)
class SiteHost:
    site: str
    index: int
    ns: str
    ip: str
    mac: str


@dataclass(frozen=True)
class Site:
    name: str
    index: int
    ns: str                        # the sensor's namespace
    hub_if: str                    # the uplink's end in the hub namespace (cut it to cut the site)
    hub_ip: str                    # the hub's address on it (where the sensor connects)
    sensor_ip: str
    hosts: tuple[SiteHost, ...]

    @property
    def leaf_url(self) -> str:
        return f"nats-leaf://{self.hub_ip}:{LEAF_PORT}"


class SitesLab:
    SITES = ("paris", "berlin")

    def __init__(self, prefix: str, state_root: Path = Path("/tmp")) -> None:
        if not prefix.isalnum() or not prefix.islower() or len(prefix) > 8:
            raise ValueError(f"sites lab prefix must be 1-8 lower-case letters/digits, got {prefix!r}")
        self.prefix = prefix
        self.hub_ns = f"{prefix}-hub"
        self.state_dir = state_root / f"lanscope-sites-{prefix}"
        self.sites = tuple(self._site(name, i) for i, name in enumerate(self.SITES))

    @classmethod
    def from_env(cls) -> SitesLab:
        lab_prefix = os.environ.get("LANSCOPE_LAB_PREFIX", "ls")
        prefix = os.environ.get("LANSCOPE_SITES_PREFIX") or lab_prefix + "s"
        return cls(prefix[:8])

    def _site(self, name: str, index: int) -> Site:
        ns = f"{self.prefix}-{name}"
        hosts = tuple(SiteHost(name, n, f"{ns}-{n}", f"10.20.0.{10 + n}",
                               SHARED_MAC if n == 1 else f"02:1a:5c:24:{index + 1:02x}:{n:02x}")
                      for n in range(1, HOSTS + 1))
        base = 4 * index
        return Site(name, index, ns, f"up-{name}"[:15], f"198.19.240.{base + 1}", f"198.19.240.{base + 2}",
                    hosts)

    def site(self, name: str) -> Site:
        return next(s for s in self.sites if s.name == name)

    def namespaces(self) -> list[str]:
        return [self.hub_ns, *(s.ns for s in self.sites), *(h.ns for s in self.sites for h in s.hosts)]

    # ------------------------------------------------------------------ lifecycle

    def up(self) -> None:
        self.down()
        try:
            self._build()
        except BaseException:
            self.down()
            raise

    def _build(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        root = [f"netns add {ns}" for ns in self.namespaces()]
        for site in self.sites:
            root.append(f"link add br0 netns {site.ns} type bridge forward_delay 0 stp_state 0")
            root.append(f"link add up0 netns {site.ns} type veth peer name {site.hub_if} netns {self.hub_ns}")
            for h in site.hosts:
                root.append(f"link add eth0 netns {h.ns} address {h.mac} type veth peer name h{h.index} "
                            f"netns {site.ns}")
        netns.ip_batch(root)
        hub = ["link set lo up"]
        for site in self.sites:
            hub += [f"addr add {site.hub_ip}/30 dev {site.hub_if}", f"link set {site.hub_if} up"]
            netns.ip_batch(["link set lo up", f"addr add {site.sensor_ip}/30 dev up0", "link set up0 up",
                            f"addr add {GATEWAY_IP}/24 dev br0", "link set br0 up",
                            *(f"link set h{h.index} master br0 up" for h in site.hosts)], ns=site.ns)
            for h in site.hosts:
                netns.ip_batch(["link set lo up", f"addr add {h.ip}/24 dev eth0", "link set eth0 up"],
                               ns=h.ns)
        netns.ip_batch(hub, ns=self.hub_ns)
        pids = {}
        for site in self.sites:
            web = site.hosts[0]
            log = open(self.state_dir / f"{web.ns}-http.log", "ab")   # noqa: SIM115 - the child keeps it
            proc = subprocess.Popen(
                ["ip", "netns", "exec", web.ns, sys.executable, "-m", "http.server", "--bind", web.ip,
                 str(HTTP_PORT)], stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.state_dir, start_new_session=True)
            log.close()
            pids[web.ns] = proc.pid
        (self.state_dir / "sites.json").write_text(json.dumps({"namespaces": self.namespaces(),
                                                               "pids": pids}, indent=2))
        for site in self.sites:
            web = site.hosts[0]
            if not netns.wait_until(lambda w=web, s=site: netns.call_in_netns(  # type: ignore[misc]
                    s.ns, lambda: _answers(w.ip, HTTP_PORT)), 10.0, 0.05):
                raise LabError(f"the web server of {web.ns} did not come up")

    def down(self) -> None:
        ours = set(self.namespaces()) & netns.list_netns()
        pids = netns.pids_in_netns(ours)
        if pids:
            netns.terminate(pids, timeout=10.0)
        if ours:
            netns.ip_batch((f"netns del {ns}" for ns in sorted(ours)), force=True)
        left = set(self.namespaces()) & netns.list_netns()
        if left:
            raise LabError(f"could not delete namespaces: {', '.join(sorted(left))}")

    # ------------------------------------------------------------------ changes

    def set_uplink(self, site: str, up: bool) -> None:
        """Cut (or restore) the link between a site's sensor and the hub, at the hub's end."""
        netns.ip("link", "set", self.site(site).hub_if, "up" if up else "down", ns=self.hub_ns)

    def set_host_link(self, site: str, index: int, up: bool) -> None:
        host = self.site(site).hosts[index - 1]
        netns.ip("link", "set", "eth0", "up" if up else "down", ns=host.ns)


@contextmanager
def scratch_namespace(name: str) -> Iterator[str]:
    """A namespace with only loopback up (the hub cluster's test runs its servers there);
    whatever runs in it is killed and the namespace deleted on the way out."""
    def clean() -> None:
        if name in netns.list_netns():
            netns.terminate(netns.pids_in_netns([name]), timeout=10.0)
            netns.ip("netns", "del", name)
    clean()
    netns.ip("netns", "add", name)
    try:
        netns.ip("link", "set", "lo", "up", ns=name)
        yield name
    finally:
        clean()


def _answers(ip: str, port: int) -> bool:
    import socket

    try:
        with socket.create_connection((ip, port), timeout=0.5):
            return True
    except OSError:
        return False


def main(argv: list[str]) -> int:
    if len(argv) != 1 or argv[0] not in ("up", "down", "status"):
        print("usage: python -m tests.lab.sites up|down|status", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("the sites lab needs root (network namespaces)", file=sys.stderr)
        return 4
    lab = SitesLab.from_env()
    if argv[0] == "up":
        lab.up()
        print(f"sites lab {lab.prefix!r} up: hub {lab.hub_ns}; " + ", ".join(
            f"{s.name} (sensor {s.ns}, {len(s.hosts)} hosts in {SUBNET}, hub at {s.hub_ip})"
            for s in lab.sites))
    elif argv[0] == "down":
        lab.down()
        print(f"sites lab {lab.prefix!r} down")
    else:
        present = set(lab.namespaces()) & netns.list_netns()
        print(f"sites lab {lab.prefix!r}: {len(present)}/{len(lab.namespaces())} namespaces")
        return 0 if len(present) == len(lab.namespaces()) else 3
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
