"""A fake MikroTik RouterOS 7 REST API on a real socket, answering with the documented shapes.

Shapes from ../shared/reference/integrations.md §1: every value a string,
empty keys omitted, Basic auth on every path (401 with ``WWW-Authenticate``),
``{"error":<int>,"message":...,"detail":...}`` error bodies, the policy
refusals seen on RouterOS 7.23.7 (401 without ``rest-api``, 500 without
``api``/``read``), 400 ``no such command`` for unknown menus and GETs of
commands. Behaviours for failure tests: ``slow`` (answers after the client's
timeout), ``garbage`` (not JSON), ``object`` (a JSON object where an array
belongs), ``notfound`` (404 like pre-7.1 RouterOS), ``nosuch`` (400 no such
command or directory), ``timeout`` (RouterOS's own 60 s "Session closed"), ``html``.

By hand:  python -m tests.fakes.mikrotik --port 8080 [--tls DIR]
          curl -u admin:secret http://127.0.0.1:8080/rest/ip/dhcp-server/lease
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
from pathlib import Path
from urllib.parse import urlsplit

from .server import FakeHandler, FakeServer, server_context

# A realistic table (values combined from real captures, §1.3): a bound static lease,
# a bound dynamic one, a never-bound static reservation with a comment.
LEASES: list[dict[str, str]] = [
    {".id": "*2", "address": "10.70.0.2", "mac-address": "E0:D9:E3:C2:ED:C0", "address-lists": "",
     "server": "10.70.0.0/23", "dhcp-option": "", "status": "bound", "expires-after": "24m3s",
     "last-seen": "5m57s", "active-address": "10.70.0.2", "active-mac-address": "E0:D9:E3:C2:ED:C0",
     "active-client-id": "1:e0:d9:e3:c2:ed:c0", "active-server": "10.70.0.0/23",
     "host-name": "10.70.0.2", "src-mac-address": "A8:F9:4B:35:A8:40", "radius": "false",
     "dynamic": "false", "blocked": "false", "disabled": "false"},
    {".id": "*48", "address": "192.168.64.113", "mac-address": "00:1A:96:49:84:DE",
     "address-lists": "", "server": "rt.dhcp", "dhcp-option": "", "status": "bound",
     "expires-after": "59m34s", "last-seen": "26s", "active-address": "192.168.64.113",
     "active-mac-address": "00:1A:96:49:84:DE", "active-server": "rt.dhcp",
     "host-name": "android-570d7aade7c461a6", "radius": "false", "dynamic": "true",
     "blocked": "false", "disabled": "false"},
    {".id": "*5", "address": "192.168.88.20", "mac-address": "00:11:32:AA:BB:CC", "server": "defconf",
     "address-lists": "", "dhcp-option": "", "agent-circuit-id": "", "agent-remote-id": "",
     "active-agent-circuit-id": "", "active-agent-remote-id": "", "status": "waiting",
     "last-seen": "never", "blocked": "false", "radius": "false", "dynamic": "false",
     "disabled": "false", "comment": "NAS"},
]

ARP: list[dict[str, str]] = [
    {".id": "*1", "DHCP": "false", "address": "192.168.9.10", "complete": "true",
     "disabled": "false", "dynamic": "true", "interface": "ether1", "invalid": "false",
     "mac-address": "70:85:C2:37:5A:21", "published": "false", "status": "reachable"},
    {".id": "*2", "DHCP": "true", "address": "192.168.64.113", "complete": "true",
     "disabled": "false", "dynamic": "true", "interface": "bridge", "invalid": "false",
     "mac-address": "00:1A:96:49:84:DE", "published": "false", "status": "stale"},
    {".id": "*3", "DHCP": "false", "address": "192.168.9.77", "disabled": "false",
     "dynamic": "true", "interface": "ether1", "invalid": "false", "published": "false",
     "status": "failed"},
    {".id": "*4", "address": "192.168.9.1", "complete": "true", "disabled": "false",
     "dynamic": "false", "interface": "ether1", "invalid": "false",
     "mac-address": "48:8F:5A:00:00:01", "published": "false", "status": "permanent",
     "comment": "upstream"},
]

# Users whose group lacks a policy, and what RouterOS 7.23.7 answers them.
POLICY_REFUSALS = {
    "norest": (401, {"error": 401, "message": "Unauthorized"}),
    "noapi": (500, {"detail": "std failure: not allowed (9)", "error": 500,
                    "message": "Internal Server Error"}),
    "noread": (500, {"detail": "not enough permissions (9)", "error": 500,
                     "message": "Internal Server Error"}),
}
UNAUTHORIZED = {"error": 401, "message": "Unauthorized"}


class FakeRouterOS(FakeServer):
    """``with FakeRouterOS() as router: router.url``; mutate ``leases``/``arp``/``behaviour``."""

    def __init__(self, *, users: dict[str, str] | None = None, tls: tuple[str, str] | None = None,
                 port: int = 0, slow_secs: float = 30.0) -> None:
        super().__init__(_Handler, port=port, tls=server_context(*tls) if tls else None)
        self.users = dict(users or {"admin": "secret"})
        for name in POLICY_REFUSALS:
            self.users.setdefault(name, "secret")
        self.leases: list[dict[str, str]] = copy.deepcopy(LEASES)
        self.arp: list[dict[str, str]] = copy.deepcopy(ARP)
        self.behaviour: dict[str, str] = {}       # "ip/arp" -> "slow" | "garbage" | ...
        self.slow_secs = slow_secs
        self.requests: list[tuple[str, str, str | None]] = []   # (method, path, user)
        self.login_failures = 0

    def __enter__(self) -> FakeRouterOS:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(FakeHandler):
    server: FakeRouterOS

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        user = self._authenticate()
        with self.server.lock:
            self.server.requests.append(("GET", path, user))
        if user is None:
            with self.server.lock:
                self.server.login_failures += 1
            self.send_json(401, UNAUTHORIZED,
                           headers={"WWW-Authenticate": 'Basic realm="RouterOS"'})
            return
        if user in POLICY_REFUSALS:
            status, body = POLICY_REFUSALS[user]
            headers = {"WWW-Authenticate": 'Basic realm="RouterOS"'} if status == 401 else {}
            self.send_json(status, body, headers=headers)
            return
        if not path.startswith("/rest/"):
            self.send_raw(404, b"<html><body>Not Found</body></html>", content_type="text/html")
            return
        menu = path[len("/rest/"):].strip("/")
        if self._misbehave(menu):
            return
        tables = {"ip/dhcp-server/lease": self.server.leases, "ip/arp": self.server.arp}
        if menu in tables:
            self.send_json(200, tables[menu])
            return
        for table_path, rows in tables.items():
            if menu.startswith(table_path + "/"):
                item = menu[len(table_path) + 1:]
                if item == "print":
                    self.send_json(400, {"detail": "no such command", "error": 400,
                                         "message": "Bad Request"})
                    return
                match = [r for r in rows if r.get(".id") == item]
                if match:
                    self.send_json(200, match[0])
                else:
                    self.send_json(404, {"error": 404, "message": "Not Found"})
                return
        first = menu.split("/")[0] or "rest"
        self.send_json(400, {"detail": f"no such command or directory ({first})", "error": 400,
                             "message": "Bad Request"})

    def _misbehave(self, menu: str) -> bool:
        behaviour = self.server.behaviour.get(menu) or self.server.behaviour.get("*")
        if behaviour is None:
            return False
        if behaviour == "slow":
            # Longer than the client's timeout; released at once when the server stops.
            self.server.release.wait(self.server.slow_secs)
            self.send_json(200, [])
        elif behaviour == "garbage":
            self.send_raw(200, b'[{"address":"10.0.0.1", "mac-add\x00\xff<<garbage')
        elif behaviour == "object":
            self.send_json(200, {"address": "10.0.0.1", "mac-address": "AA:BB:CC:DD:EE:FF"})
        elif behaviour == "notfound":
            self.send_raw(404, b"", content_type="text/html")
        elif behaviour == "html":
            self.send_raw(200, b"<html><title>RouterOS</title></html>", content_type="text/html")
        elif behaviour == "nosuch":
            first = menu.split("/")[0]
            self.send_json(400, {"detail": f"no such command or directory ({first})", "error": 400,
                                 "message": "Bad Request"})
        elif behaviour == "timeout":
            # RouterOS's own 60 s command timeout, as the docs show it.
            self.send_json(400, {"detail": "Session closed", "error": 400, "message": "Bad Request"})
        else:
            raise ValueError(f"unknown behaviour {behaviour!r}")
        return True

    def _authenticate(self) -> str | None:
        header = self.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return None
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return None
        return user if self.server.users.get(user) == password else None


def main() -> None:  # pragma: no cover - manual use
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--tls", metavar="DIR", help="serve HTTPS with a self-signed cert in DIR")
    args = parser.parse_args()
    tls = None
    if args.tls:
        from .tls import self_signed

        cert = self_signed(Path(args.tls), "router")
        tls = (str(cert.cert_file), str(cert.key_file))
        print(f"certificate {cert.cert_file} sha256 {cert.sha256}")
    router = FakeRouterOS(port=args.port, tls=tls)
    print(f"fake RouterOS at {router.url}/rest (admin/secret); Ctrl-C stops")
    print(json.dumps({"users": sorted(router.users)}))
    try:
        router.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        router.server_close()


if __name__ == "__main__":  # pragma: no cover
    main()
