"""The Proxmox API client: proxmoxer (synchronous, requests) run off the event loop.

One ``asyncio.to_thread`` call per inventory fetch does every request of that
fetch (``/cluster/resources?type=vm``, then each guest's config and its agent
or LXC interfaces) on one pooled requests session, one request at a time —
the API is asked N+1 questions, gently.

TLS: a CA file goes to proxmoxer's ``verify_ssl`` (it accepts a path); a
pinned SHA-256 fingerprint is enforced inside the handshake by mounting an
adapter with a pinning SSLContext on proxmoxer's session. Password login with
a pin fetches the ticket through that same pinned session (proxmoxer's own
ticket request bypasses the session and could not be pinned), so the password
never goes to an unverified peer.

Errors become ProxmoxError naming the host and the reason (Proxmox puts it in
the HTTP reason phrase); never the password or the token secret. A guest
without a running agent (HTTP 500 "QEMU guest agent is not running") is
normal: its addresses are simply unknown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import requests
from proxmoxer import ProxmoxAPI
from proxmoxer.core import AuthenticationError, ResourceException
from requests.adapters import HTTPAdapter

from lanscope.net.tls import PinnedContext, describe, tls_error_text
from lanscope.settings import ProxmoxConfig

from .inventory import Guest, agent_addresses, agent_enabled, build_guest, lxc_addresses
from .stage import ProxmoxError

log = logging.getLogger(__name__)


class _PinnedAdapter(HTTPAdapter):
    def __init__(self, context: PinnedContext) -> None:
        self._context = context
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        # urllib3 checks the pin again and then counts the connection as verified
        # (no InsecureRequestWarning for a connection that is, in fact, verified).
        kwargs["assert_fingerprint"] = self._context.pin_sha256
        super().init_poolmanager(*args, **kwargs)


class _PinnedTicketAuth(requests.auth.AuthBase):
    """Ticket login over the pinned session; renewed hourly like proxmoxer does."""

    renew_secs = 3600.0

    def __init__(self, base_url: str, user: str, password: str, adapter: _PinnedAdapter,
                 timeout: float) -> None:
        self.base_url = base_url
        self.user = user
        self._password = password
        self.timeout = timeout
        self.verify_ssl = False            # the adapter's context does the (pinned) verification
        self.service = "PVE"
        self.cert = None
        self._session = requests.Session()
        self._session.mount("https://", adapter)
        self._ticket = ""
        self._csrf = ""
        self._born = -1e18

    def _login(self) -> None:
        response = self._session.post(f"{self.base_url}/access/ticket", verify=False,
                                      timeout=self.timeout,
                                      data={"username": self.user, "password": self._password})
        if response.status_code != 200:
            raise AuthenticationError(f"Couldn't authenticate user: {self.user} to "
                                      f"{self.base_url}/access/ticket code: {response.status_code}")
        data = response.json()["data"]
        self._ticket, self._csrf = data["ticket"], data["CSRFPreventionToken"]
        self._born = time.monotonic()

    def get_cookies(self) -> Any:
        if time.monotonic() - self._born >= self.renew_secs:
            self._login()
        return requests.cookies.cookiejar_from_dict({"PVEAuthCookie": self._ticket})

    def get_tokens(self) -> tuple[str, str]:
        return self._ticket, self._csrf

    def __call__(self, request: Any) -> Any:
        if request.method != "GET":
            request.headers["CSRFPreventionToken"] = self._csrf
        return request


class ProxmoxClient:
    """``await client.fetch_guests()`` -> every VM and container with MACs and IPs."""

    def __init__(self, settings: ProxmoxConfig) -> None:
        if not settings.host:
            raise ValueError("proxmox: no host")
        self.settings = settings
        self.host: str = settings.host
        self._api: Any = None
        # Agent errors are expected (no agent installed): log each guest's once, at debug.
        self._quiet: set[tuple[int, str]] = set()

    async def fetch_guests(self) -> list[Guest]:
        return await asyncio.to_thread(self._fetch)

    # -- everything below runs in a worker thread --------------------------------

    def _connect(self) -> Any:
        s = self.settings
        tls = s.tls
        verify: bool | str = tls.ca_file or tls.verify
        pinned = PinnedContext(tls.fingerprint_sha256) if tls.fingerprint_sha256 else None
        if pinned is not None:
            verify = False
        common = {"port": s.port, "verify_ssl": verify, "timeout": s.timeout_secs}
        if s.token_name:
            api = ProxmoxAPI(s.host, user=s.user, token_name=s.token_name,
                             token_value=s.token_value, **common)
        elif pinned is not None:
            # A placeholder token builds the backend without proxmoxer's unpinned login;
            # the session's auth is replaced before any request.
            api = ProxmoxAPI(s.host, user=s.user, token_name="-", token_value="-", **common)
        else:
            api = ProxmoxAPI(s.host, user=s.user, password=s.password or "", **common)
        if pinned is not None:
            adapter = _PinnedAdapter(pinned)
            session = api._store["session"]
            session.mount("https://", adapter)
            if not s.token_name:
                session.auth = _PinnedTicketAuth(api._store["base_url"], s.user or "",
                                                 s.password or "", adapter, s.timeout_secs)
        return api

    def _fetch(self) -> list[Guest]:
        try:
            if self._api is None:
                self._api = self._connect()
            resources = self._api.cluster.resources.get(type="vm")
        except Exception as exc:
            self._api = None              # log in again next time (expired ticket, new password)
            raise ProxmoxError(self.host, self._reason(exc, "/cluster/resources")) from None
        if not isinstance(resources, list):
            raise ProxmoxError(self.host, "/cluster/resources: expected a list of guests, got "
                               f"{type(resources).__name__}")
        guests: list[Guest] = []
        for resource in resources:
            if not isinstance(resource, dict) or resource.get("type") not in ("qemu", "lxc"):
                continue
            if str(resource.get("template", 0)) in ("1", "true"):
                continue                  # templates never run: not hosts
            try:
                guests.append(self._guest(resource))
            except ProxmoxError:
                raise
            except (KeyError, TypeError, ValueError) as exc:
                log.warning("proxmox %s: guest %r skipped: %s", self.host,
                            str(resource.get("vmid"))[:20], exc)
        return guests

    def _guest(self, resource: dict[str, Any]) -> Guest:
        vmid, node, kind = int(resource["vmid"]), str(resource["node"]), str(resource["type"])
        endpoint = self._api.nodes(node).qemu(vmid) if kind == "qemu" else \
            self._api.nodes(node).lxc(vmid)
        config = self._optional(vmid, "config", endpoint.config.get)
        live: dict[str, list[str]] | None = None
        if resource.get("status") == "running":
            if kind == "qemu" and agent_enabled(config if isinstance(config, dict) else None):
                result = self._optional(vmid, "agent", endpoint.agent("network-get-interfaces").get)
                live = agent_addresses(result) if result is not None else None
            elif kind == "lxc":
                result = self._optional(vmid, "interfaces", endpoint.interfaces.get)
                live = lxc_addresses(result) if result is not None else None
        return build_guest(resource, config if isinstance(config, dict) else None, live)

    def _optional(self, vmid: int, what: str, call: Any) -> Any:
        """One per-guest call whose failure loses only that detail (agent down, 403 ...)."""
        try:
            return call()
        except ResourceException as exc:
            if exc.status_code in (401, 595, 596):
                raise ProxmoxError(self.host, self._reason(exc, f"guest {vmid} {what}")) from None
            key = (vmid, f"{what}:{exc.content}")
            if key not in self._quiet:
                self._quiet.add(key)
                level = logging.DEBUG if exc.status_code == 500 and what == "agent" else logging.INFO
                log.log(level, "proxmox %s: guest %d %s unavailable: %s", self.host, vmid, what,
                        str(exc.content)[:200])
            return None
        except requests.RequestException as exc:
            raise ProxmoxError(self.host, self._reason(exc, f"guest {vmid} {what}")) from None

    def _reason(self, exc: BaseException, what: str) -> str:
        if isinstance(exc, ResourceException):
            hint = ""
            if exc.status_code == 401:
                hint = " (check the user and token/password)"
            elif exc.status_code == 403:
                hint = " (the token or user lacks VM.Audit)"
            return f"{what}: HTTP {exc.status_code} {str(exc.content)[:200]}{hint}"
        if isinstance(exc, AuthenticationError):
            return f"login failed for user {self.settings.user!r} (wrong password or realm)"
        tls = tls_error_text(exc)
        if tls:
            return f"{what}: {tls} (TLS: {describe(self.settings.tls)})"
        if isinstance(exc, requests.Timeout):
            return f"{what}: no answer within {self.settings.timeout_secs}s (timeout)"
        if isinstance(exc, requests.ConnectionError):
            return f"{what}: cannot connect to {self.host}:{self.settings.port}"
        if isinstance(exc, ValueError):
            return f"{what}: reply is not the JSON Proxmox sends ({str(exc)[:80]})"
        return f"{what}: {type(exc).__name__}"
