"""The RouterOS REST client: the one HTTP primitive of the dhcp_leases producer.

One pooled ``httpx.AsyncClient`` per gateway: RouterOS writes a login line to
its log per connection, so a poller must not open a new one per request.
Every failure becomes a GatewayError whose message names the gateway and what
went wrong — and never the password (httpx is given it only through
``BasicAuth``, which keeps it out of URLs and exception texts).
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import httpx

from lanscope.net.tls import TlsSettings, describe, ssl_context, tls_error_text

from .stage import GatewayError

_PRIVATE = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))
MAX_BODY = 32 * 1024 * 1024   # a lease table of ~100k entries; anything bigger is not RouterOS


def default_scheme(host: str) -> str:
    """http for 10/8, 172.16/12, 192.168/16 (RouterOS 7.9+ serves REST on `www`), else https."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return "https"
    return "http" if any(address in net for net in _PRIVATE) else "https"


def base_url(host: str, scheme: str, port: int | None) -> str:
    if scheme == "auto":
        scheme = default_scheme(host)
    name = f"[{host}]" if ":" in host and not host.startswith("[") else host
    return f"{scheme}://{name}{f':{port}' if port else ''}/rest"


class RouterOsClient:
    """``await client.get("ip/dhcp-server/lease")`` -> list of records (all values strings)."""

    def __init__(self, host: str, *, user: str, password: str | None, scheme: str = "auto",
                 port: int | None = None, tls: TlsSettings | None = None,
                 timeout_secs: float = 10.0) -> None:
        self.host = host
        self.base_url = base_url(host, scheme, port)
        self.user = user
        self._tls = tls or TlsSettings()
        verify: Any = ssl_context(self._tls) if self.base_url.startswith("https:") else True
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            auth=httpx.BasicAuth(user, password or ""),
            verify=verify,
            timeout=httpx.Timeout(timeout_secs),
            limits=httpx.Limits(max_connections=2, max_keepalive_connections=1),
            headers={"Accept": "application/json", "User-Agent": "lanscope"},
            follow_redirects=False,
            trust_env=False,
        )

    async def get(self, path: str) -> list[dict[str, Any]]:
        """GET one menu; raises GatewayError with a clear reason on any failure."""
        url = f"{self.base_url}/{path}"
        try:
            response = await self._client.get(path)
        except httpx.TimeoutException:
            raise GatewayError(self.host, f"no answer from {url} within "
                               f"{self._client.timeout.read}s (timeout)") from None
        except httpx.ConnectError as exc:
            tls = tls_error_text(exc)
            if tls:
                raise GatewayError(self.host, f"{url}: {tls} (TLS: {describe(self._tls)})") from None
            raise GatewayError(self.host, f"cannot connect to {url}: {_short(exc)}") from None
        except httpx.HTTPError as exc:
            raise GatewayError(self.host, f"{url}: {type(exc).__name__}: {_short(exc)}") from None
        return self._records(url, response)

    def _records(self, url: str, response: httpx.Response) -> list[dict[str, Any]]:
        body = response.content[:MAX_BODY + 1]
        if response.status_code >= 400:
            raise GatewayError(self.host, self._http_error(url, response.status_code, body),
                               retryable=response.status_code not in (400, 404))
        if len(body) > MAX_BODY:
            raise GatewayError(self.host, f"{url}: reply larger than {MAX_BODY} bytes")
        try:
            data = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise GatewayError(self.host, f"{url}: reply is not JSON ({exc.__class__.__name__}: "
                               f"{str(exc)[:80]}; starts {body[:40]!r})") from None
        if not isinstance(data, list):
            raise GatewayError(self.host, f"{url}: expected a JSON array of records, got a JSON "
                               f"{_json_kind(data)}")
        return data

    def _http_error(self, url: str, status: int, body: bytes) -> str:
        message, detail = "", ""
        try:
            parsed = json.loads(body)
            if isinstance(parsed, dict):
                message = str(parsed.get("message", ""))[:120]
                detail = str(parsed.get("detail", ""))[:200]
        except ValueError:
            pass
        said = f"{message}: {detail}" if detail else message or "no JSON error body"
        if status == 401:
            hint = (f"wrong user or password for user {self.user!r}, or the user's group "
                    f"lacks the rest-api policy")
        elif status == 403:
            hint = f"user {self.user!r} is not allowed to read this menu"
        elif status == 500 and ("permission" in detail or "not allowed" in detail):
            hint = f"user {self.user!r} lacks the read/api policy"
        elif status == 404:
            hint = "not found: RouterOS older than 7.1 has no REST API"
        elif status == 400 and "no such command" in detail:
            hint = "this RouterOS has no such menu"
        else:
            hint = "request failed"
        return f"{url}: HTTP {status} ({said}): {hint}"

    async def aclose(self) -> None:
        await self._client.aclose()


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]


def _json_kind(value: Any) -> str:
    return {dict: "object", str: "string", int: "number", float: "number", bool: "boolean",
            type(None): "null"}.get(type(value), type(value).__name__)
