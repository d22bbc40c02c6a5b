"""Settings shared by several stages and commands, and the types config sections are made of.

config.yaml has one section per stage (``producers.arp_sweep`` ...), whose
``Config`` lives beside the stage, and a few shared sections that several
stages and commands read: ``scope``, ``dns`` and ``proxmox`` are defined here
(so stages may import them; they must not import ``lanscope.config``) and
reach a stage through its StageContext (``lanscope.runtime.stage``).

A section is a msgspec Struct with ``forbid_unknown_fields`` and
``kw_only``; its field defaults are the only defaults of its keys. Rules a
type can state (a positive size, a port number) are in the type
(``PositiveInt``, ``Port`` ...); other rules go in a ``check()`` method that
yields ``(key, problem)`` pairs, which ``lanscope config check`` and start-up
both run (``lanscope.config``).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from typing import Annotated

import msgspec

PositiveInt = Annotated[int, msgspec.Meta(ge=1)]
NonNegativeInt = Annotated[int, msgspec.Meta(ge=0)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
NonNegativeFloat = Annotated[float, msgspec.Meta(ge=0)]
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]

# (key relative to the section, what is wrong): what a section's check() yields.
Problems = Iterator[tuple[str, str]]


class Secret(str):
    """A string that never shows itself in repr(), logs or error messages."""

    def __repr__(self) -> str:
        return "Secret('***')"


class Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """A config section: unknown keys are errors, every field has its one default."""


class TlsConfig(Section):
    """Also the settings lanscope's TLS clients take (lanscope.net.tls.TlsSettings)."""

    verify: bool = True
    ca_file: str | None = None
    cert_file: str | None = None          # client certificate (NATS mTLS)
    key_file: str | None = None
    fingerprint_sha256: str | None = None  # pin a self-signed certificate instead of a CA (hex,
                                           # colons allowed)

    def check(self) -> Problems:
        if self.fingerprint_sha256:
            from lanscope.net.tls import normalize_fingerprint

            try:
                normalize_fingerprint(self.fingerprint_sha256)
            except ValueError as exc:
                yield "fingerprint_sha256", str(exc)


class ScopeConfig(Section):
    attached: bool = True                  # private subnets of the machine's own interfaces
    allow: list[str] = []                  # extra CIDRs/ranges that may be scanned
    exclude: list[str] = []                # never scanned
    allow_public: bool = False
    max_addresses: PositiveInt = 65536     # larger targets need --force

    def check(self) -> Problems:
        yield from target_problems("allow", self.allow, hostnames=False)
        yield from target_problems("exclude", self.exclude)


class DnsConfig(Section):
    """The resolver of dns_names and of `lanscope dns`."""

    servers: list[str] = []                # empty: the system resolver
    timeout_ms: PositiveInt = 1000

    def check(self) -> Problems:
        for i, server in enumerate(self.servers):
            try:
                ipaddress.ip_address(server)
            except ValueError:
                yield f"servers[{i}]", f"{server!r} is not an IP address"


class ProxmoxConfig(Section):
    """One Proxmox VE cluster's API: proxmox_guests, proxmox_names and `lanscope proxmox`."""

    host: str | None = None                # empty: no Proxmox
    port: Port = 8006
    user: str | None = None                # root@pam, inventory@pve ...
    password: Secret | None = None
    token_name: str | None = None
    token_value: Secret | None = None
    tls: TlsConfig = msgspec.field(default_factory=TlsConfig)
    timeout_secs: PositiveFloat = 10.0

    def check(self) -> Problems:
        if self.host and not (self.token_name or self.password):
            yield "host", f"set token_name/token_value or password for {self.host}"
        if self.token_name and not self.token_value:
            yield "token_value", "required with token_name"


def _syntax_only(name: str) -> list[str]:
    return ["192.0.2.1"]       # TEST-NET-1: a hostname's syntax was fine; it is not looked up here


def _no_hostnames(name: str) -> list[str]:
    from lanscope.errors import UsageError

    raise UsageError(f"{name!r}: a hostname is not allowed here, use addresses")


def target_problems(key: str, specs: list[str], *, hostnames: bool = True) -> Problems:
    """Each nmap-style spec that does not parse, as (``key[i]``, why).

    Syntax only: a hostname is not looked up (it may resolve where lanscope runs)."""
    from lanscope.errors import UsageError
    from lanscope.net.targets import parse_targets

    for i, spec in enumerate(specs):
        try:
            parse_targets([spec], resolve=_syntax_only if hostnames else _no_hostnames)
        except UsageError as exc:
            yield f"{key}[{i}]", str(exc)


def target_count(specs: list[str], exclude: list[str]) -> int:
    """How many addresses ``specs`` minus ``exclude`` are (specs that parse; names count once)."""
    from lanscope.net.targets import parse_targets

    return len(parse_targets(specs, exclude=exclude, resolve=_syntax_only))
