"""A fake Proxmox VE API (HTTPS, self-signed) answering with the documented shapes.

Shapes from ../shared/reference/integrations.md §3: every success is
``{"data": ...}``; errors carry their message in the HTTP reason phrase with a
``{"data":null}`` body; ``PVEAPIToken=USER@REALM!TOKENID=SECRET`` header or a
``PVEAuthCookie`` ticket from ``POST /access/ticket``; guest-agent calls answer
500 ``QEMU guest agent is not running`` (or ``No QEMU guest agent
configured``); LXC ``/interfaces`` only for running containers.

By hand:  python -m tests.fakes.proxmox --port 8006 --tls DIR
          curl -k -H 'Authorization: PVEAPIToken=inventory@pve!lanscope=secret' \
               https://127.0.0.1:8006/api2/json/cluster/resources?type=vm
"""

from __future__ import annotations

import argparse
import copy
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from .server import FakeHandler, FakeServer, server_context

AGENT_NOT_RUNNING = "QEMU guest agent is not running"
AGENT_NOT_CONFIGURED = "No QEMU guest agent configured"


@dataclass
class FakeGuest:
    vmid: int
    name: str
    type: str                              # qemu | lxc
    node: str = "pve1"
    status: str = "running"
    tags: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    # qemu: the agent's interface list, or AGENT_NOT_RUNNING / AGENT_NOT_CONFIGURED
    agent: list[dict[str, Any]] | str | None = None
    interfaces: list[dict[str, Any]] | None = None   # lxc /interfaces
    template: int = 0


def default_guests() -> list[FakeGuest]:
    """Two VMs (one with an agent, one without) and two containers (DHCP and static)."""
    return [
        FakeGuest(100, "web-01", "qemu", tags="prod;webtier", config={
            "name": "web-01", "cores": 4, "memory": "4096", "agent": "1",
            "net0": "virtio=BC:24:11:2E:C5:4A,bridge=vmbr0,firewall=1",
            "net1": "virtio=BC:24:11:2E:C5:4B,bridge=vmbr1,tag=30,firewall=1,mtu=1500",
            "ipconfig0": "ip=dhcp"},
            agent=[
                {"name": "lo", "hardware-address": "00:00:00:00:00:00", "ip-addresses": [
                    {"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8},
                    {"ip-address": "::1", "ip-address-type": "ipv6", "prefix": 128}]},
                {"name": "ens18", "hardware-address": "bc:24:11:2e:c5:4a", "ip-addresses": [
                    {"ip-address": "198.18.0.10", "ip-address-type": "ipv4", "prefix": 24},
                    {"ip-address": "fe80::be24:11ff:fe2e:c54a", "ip-address-type": "ipv6",
                     "prefix": 64}],
                 "statistics": {"rx-bytes": 1024, "rx-packets": 8, "tx-bytes": 2048}},
                {"name": "ens19", "hardware-address": "bc:24:11:2e:c5:4b"},
                {"name": "docker0", "hardware-address": "02:42:ac:11:00:01", "ip-addresses": [
                    {"ip-address": "172.17.0.1", "ip-address-type": "ipv4", "prefix": 16}]},
            ]),
        FakeGuest(101, "win-desktop", "qemu", status="running", config={
            "name": "win-desktop", "agent": "1", "ostype": "win11",
            "net0": "e1000=A6:43:11:00:00:65,bridge=vmbr0"}, agent=AGENT_NOT_RUNNING),
        FakeGuest(102, "old-vm", "qemu", status="stopped", config={
            "name": "old-vm", "net0": "rtl8139=E6:C8:CF:00:01:02,bridge=vmbr0"},
            agent=AGENT_NOT_CONFIGURED),
        FakeGuest(200, "ct-dns", "lxc", tags="infra", config={
            "hostname": "ct-dns", "cores": 1,
            "net0": "name=eth0,bridge=vmbr0,firewall=1,hwaddr=BC:24:11:80:25:32,ip=dhcp,ip6=dhcp,"
                    "type=veth"},
            interfaces=[
                {"name": "lo", "hwaddr": "00:00:00:00:00:00", "inet": "127.0.0.1/8", "inet6": "::1/128"},
                {"name": "eth0", "hwaddr": "bc:24:11:80:25:32", "inet": "198.18.0.53/24",
                 "inet6": "fd00::35/64"}]),
        FakeGuest(201, "ct-static", "lxc", status="stopped", config={
            "hostname": "ct-static",
            "net0": "name=eth0,bridge=vmbr0,firewall=1,hwaddr=AA:BB:CC:DD:EE:FF,ip=10.0.0.50/24,"
                    "gw=10.0.0.1,type=veth"}),
    ]


class FakeProxmox(FakeServer):
    """``with FakeProxmox(tls=(cert, key)) as pve: pve.port``; mutate ``guests``/``fail``."""

    def __init__(self, *, tls: tuple[str, str], users: dict[str, str] | None = None,
                 tokens: dict[str, str] | None = None, port: int = 0) -> None:
        super().__init__(_Handler, port=port, tls=server_context(*tls))
        self.users = dict(users or {"root@pam": "secret"})
        self.tokens = dict(tokens or {})                 # "user@realm!tokenid" -> secret
        self.tickets: dict[str, str] = {}                # ticket -> user
        self.guests: list[FakeGuest] = default_guests()
        self.hidden: set[int] = set()                    # vmids the caller may not VM.Audit
        self.fail: tuple[int, str] | None = None          # every API call fails like this
        self.requests: list[tuple[str, str]] = []         # (method, path)

    def __enter__(self) -> FakeProxmox:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def count(self, pattern: str) -> int:
        return sum(1 for _, path in self.requests if re.search(pattern, path))

    def guest(self, vmid: int) -> FakeGuest:
        return next(g for g in self.guests if g.vmid == vmid)


_TOKEN = re.compile(r"^PVEAPIToken=([^!=\s]+![^=\s]+)=(\S+)$")


class _Handler(FakeHandler):
    server: FakeProxmox

    def _error(self, status: int, reason: str, errors: dict[str, str] | None = None) -> None:
        body: dict[str, Any] = {"data": None}
        if errors:
            body["errors"] = errors
        self.send_json(status, body, reason=reason)

    def _user(self) -> str | None:
        match = _TOKEN.match(self.headers.get("Authorization", ""))
        if match:
            ident, secret = match.groups()
            if self.server.tokens.get(ident) == secret:
                return ident
            return None
        for part in self.headers.get("Cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == "PVEAuthCookie":
                return self.server.tickets.get(unquote(value))
        return None

    def do_POST(self) -> None:
        path = urlsplit(self.path).path
        with self.server.lock:
            self.server.requests.append(("POST", path))
        if path != "/api2/json/access/ticket":
            self._error(501, f"Method 'POST {path}' not implemented")
            return
        form = {k: v[0] for k, v in parse_qs(self.read_body().decode()).items()}
        user, password = form.get("username", ""), form.get("password", "")
        if not user or self.server.users.get(user) != password:
            self._error(401, "authentication failure")
            return
        ticket = f"PVE:{user}:6790A1B2::{secrets.token_urlsafe(24)}"
        self.server.tickets[ticket] = user
        self.send_json(200, {"data": {"ticket": ticket, "username": user,
                                      "CSRFPreventionToken": f"6790A1B2:{secrets.token_urlsafe(16)}",
                                      "cap": {}}})

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        path = url.path
        with self.server.lock:
            self.server.requests.append(("GET", path))
        if self._user() is None:
            self._error(401, "No ticket" if "Authorization" not in self.headers
                        else "authentication failure")
            return
        if self.server.fail is not None:
            self._error(*self.server.fail)
            return
        route = path.removeprefix("/api2/json").rstrip("/")
        if route == "/cluster/resources":
            query = parse_qs(url.query)
            kind = query.get("type", [""])[0]
            if kind and kind not in ("vm", "storage", "node", "sdn", "pool"):
                self._error(400, "Parameter verification failed.",
                            {"type": f"value '{kind}' does not have a value in the enumeration "
                                     "'vm, storage, node, sdn, pool'"})
                return
            self.send_json(200, {"data": [self._resource(g) for g in self.server.guests
                                          if g.vmid not in self.server.hidden
                                          and kind in ("", "vm")]})
            return
        match = re.fullmatch(r"/nodes/([^/]+)/(qemu|lxc)/(\d+)(/.*)?", route)
        if not match:
            self._error(501, f"Method 'GET {route}' not implemented")
            return
        node, kind, vmid, rest = match.group(1), match.group(2), int(match.group(3)), match.group(4)
        guest = next((g for g in self.server.guests
                      if g.vmid == vmid and g.node == node and g.type == kind), None)
        if guest is None:
            conf = "qemu-server" if kind == "qemu" else "lxc"
            self._error(500, f"Configuration file 'nodes/{node}/{conf}/{vmid}.conf' does not exist")
            return
        if vmid in self.server.hidden:
            self._error(403, f"Permission check failed (/vms/{vmid}, VM.Audit)")
            return
        if rest == "/config":
            self.send_json(200, {"data": {**guest.config, "digest": "0f3c" * 10}})
        elif rest == "/agent/network-get-interfaces" and kind == "qemu":
            self._agent(guest)
        elif rest == "/interfaces" and kind == "lxc":
            if guest.status != "running":
                self._error(500, f"CT {vmid} not running")
            else:
                self.send_json(200, {"data": copy.deepcopy(guest.interfaces or [])})
        else:
            self._error(501, f"Method 'GET {route}' not implemented")

    def _agent(self, guest: FakeGuest) -> None:
        if guest.status != "running":
            self._error(500, f"VM {guest.vmid} is not running")
        elif isinstance(guest.agent, str):
            self._error(500, guest.agent)
        elif guest.agent is None:
            self._error(500, AGENT_NOT_CONFIGURED)
        else:
            self.send_json(200, {"data": {"result": copy.deepcopy(guest.agent)}})

    @staticmethod
    def _resource(guest: FakeGuest) -> dict[str, Any]:
        item: dict[str, Any] = {
            "id": f"{guest.type}/{guest.vmid}", "type": guest.type, "vmid": guest.vmid,
            "name": guest.name, "node": guest.node, "status": guest.status,
            "maxmem": 4294967296, "maxdisk": 34359738368, "maxcpu": 4, "template": guest.template,
        }
        if guest.status == "running":
            item.update({"cpu": 0.034521, "mem": 1717986918, "uptime": 864321, "netin": 5555,
                         "netout": 4444, "diskread": 1234, "diskwrite": 987})
        if guest.tags:
            item["tags"] = guest.tags
        return item


def main() -> None:  # pragma: no cover - manual use
    from .tls import self_signed

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8006)
    parser.add_argument("--tls", metavar="DIR", default="./var/fake-pve")
    args = parser.parse_args()
    cert = self_signed(Path(args.tls), "pve")
    server = FakeProxmox(tls=(str(cert.cert_file), str(cert.key_file)), port=args.port,
                         tokens={"inventory@pve!lanscope": "secret"})
    print(f"fake Proxmox at {server.url}/api2/json (token inventory@pve!lanscope=secret, "
          f"root@pam/secret); certificate sha256 {cert.sha256}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":  # pragma: no cover
    main()
