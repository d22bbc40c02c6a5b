"""Loading, expanding and validating ``config.yaml``.

The one place that reads the environment: ``${VAR}``, ``${VAR:-default}`` and
``${VAR:?message}`` are expanded once, in string values only (so a variable
can never inject YAML structure). ``<secret>_file`` keys (``pass_file``,
``password_file``, ``token_file``, ``token_value_file``) read the secret from a
file. Validation is strict: an unknown key or a wrong type is an error that
names the key path.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import msgspec
import yaml

import lanscope.web.config as _web  # the `web:` section lives with the dashboard

DEFAULT_PATHS = ("config.yaml", "/etc/lanscope/config.yaml")
SECRET_KEYS = frozenset({"pass", "password", "token", "token_value"})


class ConfigError(ValueError):
    """A configuration problem, with the key path and what is wrong."""


class Secret(str):
    """A string that never shows itself in repr(), logs or error messages."""

    def __repr__(self) -> str:
        return "Secret('***')"


class _Section(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    pass


class TlsConfig(_Section):
    """Also the settings lanscope's TLS clients take (lanscope.net.tls.TlsSettings)."""

    verify: bool = True
    ca_file: str | None = None
    cert_file: str | None = None          # client certificate (NATS mTLS)
    key_file: str | None = None
    fingerprint_sha256: str | None = None  # pin a self-signed certificate instead of a CA (hex,
                                           # colons allowed)


class NatsConfig(_Section):
    url: str = ""                          # empty: start the bundled nats-server
    user: str | None = None
    password: Secret | None = None
    token: Secret | None = None
    creds_file: str | None = None
    tls: TlsConfig | None = None
    name: str = "lanscope"
    connect_timeout_secs: float = 5.0
    # Streams and consumers
    replicas: int = 1
    max_age_days: float = 7.0
    max_bytes: int = 1 << 30
    duplicate_window_secs: float = 120.0
    ack_wait_secs: float = 30.0
    max_deliver: int = 5
    max_ack_pending: int = 1000            # a sink's consumer gets at least 3 x its batch size
    nak_backoff_ms: int = 1000             # first retry delay after a failure; doubles per delivery
    nak_backoff_max_secs: float = 60.0
    shutdown_grace_secs: float = 10.0      # in-flight work may finish this long after SIGTERM
    # Embedded server
    embedded_host: str = "127.0.0.1"
    embedded_port: int = 0                 # 0: a free port
    sync_always: bool = False              # fsync every write (slower, survives power loss)


class ScopeConfig(_Section):
    attached: bool = True                  # private subnets of the machine's own interfaces
    allow: list[str] = []                  # extra CIDRs/ranges that may be scanned
    exclude: list[str] = []                # never scanned
    allow_public: bool = False
    max_addresses: int = 65536             # larger targets need --force


class SchedulesConfig(_Section):
    """Seconds between runs of each producer; 0 disables it."""

    arp_sweep_secs: float = 60.0
    ping_sweep_secs: float = 300.0
    neighbours_secs: float = 30.0
    dhcp_leases_secs: float = 120.0
    proxmox_guests_secs: float = 600.0
    port_probe_secs: float = 3600.0        # re-probe a host when its last probe is older


class PortsConfig(_Section):
    tcp: str = "20-1024"                   # nmap -p syntax; "" disables TCP probing
    top_ports: int = 0                     # >0: use the N most common ports instead of `tcp`
    udp: str = "53,123,137,161,1900,5353"  # "" disables UDP probes
    tcp_ping: list[int] = msgspec.field(default_factory=lambda: [22, 80, 443, 445, 3389])
    scan_type: Literal["auto", "connect", "syn"] = "auto"
    syn_min_ports: int = 64                # auto: SYN scan (when root) from this many ports per scan
    fingerprint: bool = True               # grab banners and identify services on open ports
    nmap_service_probes: str = ""          # path of nmap-service-probes: extra rules (never shipped)


class TimeoutsConfig(_Section):
    connect_ms: int = 1000
    banner_ms: int = 3000
    arp_ms: int = 800                      # wait for late ARP replies after the last request
    icmp_ms: int = 1000
    dns_ms: int = 1000
    http_secs: float = 10.0
    host_secs: float = 300.0               # give up on one host's probe after this


class ConcurrencyConfig(_Section):
    hosts: int = 16                        # hosts probed at once (per process)
    sockets: int = 512                     # connect-scan sockets in flight (global)
    per_host: int = 128                    # connect-scan sockets per host
    banners: int = 32                      # banner grabs in flight
    retries: int = 1                       # retransmissions for ARP/ICMP/SYN/UDP
    packets_per_sec: int = 0               # 0: unpaced (the lab); set e.g. 5000 on real LANs


class GatewayConfig(_Section):
    """A MikroTik RouterOS gateway (REST API). The seed's keys: host, user, pass."""

    host: str | None = None
    user: str = "admin"
    password: Secret | None = msgspec.field(default=None, name="pass")
    scheme: Literal["auto", "http", "https"] = "auto"  # auto: http for private addresses
    port: int | None = None
    tls: TlsConfig = msgspec.field(default_factory=TlsConfig)
    timeout_secs: float = 10.0
    arp_table: bool = True                 # also read /rest/ip/arp


class LeaseFilesConfig(_Section):
    enabled: bool = True
    paths: list[str] = msgspec.field(default_factory=lambda: [
        "/var/lib/dhcp/dhclient.leases",
        "/var/lib/dhcp/dhclient.*.leases",
        "/var/lib/dhclient/*.leases",
        "/var/lib/NetworkManager/*.lease",
        "/run/systemd/netif/leases/*",
        "/var/lib/misc/dnsmasq.leases",
        "/var/lib/dnsmasq/dnsmasq.leases",
        "/var/lib/dhcp/dhcpd.leases",
        "/var/lib/dhcpd/dhcpd.leases",
        "/var/lib/kea/kea-leases4.csv",
    ])


class ProxmoxConfig(_Section):
    host: str | None = None
    port: int = 8006
    user: str | None = None                # root@pam, inventory@pve ...
    password: Secret | None = None
    token_name: str | None = None
    token_value: Secret | None = None
    tls: TlsConfig = msgspec.field(default_factory=TlsConfig)
    timeout_secs: float = 10.0
    refresh_secs: float = 300.0
    report_guests: bool = True             # publish known guests as sightings


class DnsConfig(_Section):
    enabled: bool = True
    servers: list[str] = []                # empty: the system resolver
    timeout_ms: int = 1000
    cache_secs: float = 3600.0


class DuckDBConfig(_Section):
    path: str = ""                         # empty: <data_dir>/lanscope.duckdb
    batch_size: int = 4000                 # host_state's batch when behind (commits per batch)
    flush_ms: int = 200
    keep_event_ids_days: float = 7.0       # processed ids + outbox kept this long (redelivery, replay)
    max_query_rows: int = 10000            # a query returns at most this many rows
    compact_secs: float = 30.0             # host tables catch up with the sink's journal within this
    query_timeout_ms: int = 3000           # `lanscope query` waits this long for the running pipeline


class PresenceConfig(_Section):
    missed_sweeps: int = 3                 # gone after this many sweeps without evidence
    grace_secs: float = 900.0              # ... and at least this long since the last evidence


class RegistryConfig(_Section):
    mode: Literal["off", "register", "sync"] = "register"
    inventory: str = ""                    # YAML/CSV inventory to seed sync mode; empty: none
    state_file: str = ""                   # empty: <data_dir>/registry.json


class FindingsConfig(_Section):
    enabled: bool = True
    min_openssh: str = "8.8"               # older OpenSSH versions are a finding
    static_ranges: list[str] = []          # a new host inside one of these is a finding
    gateways: dict[str, str] = {}          # gateway IP -> its MAC (ARP spoofing)
    dhcp_servers: list[str] = []           # known DHCP servers; another one is a finding
    cert_expiry_days: int = 0              # warn this many days before expiry (0: only expired)
    rules_file: str = ""                   # empty: the shipped sinks/findings/rules.yaml
    duplicate_ip_window_secs: float = 300.0  # two MACs for one IP within this window: a finding
    state_file: str = ""                   # empty: <data_dir>/findings.json


class LoggingConfig(_Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


class Config(_Section):
    data_dir: str = "./var"
    targets: list[str] = []                # empty: the attached private subnets
    nats: NatsConfig = msgspec.field(default_factory=NatsConfig)
    scope: ScopeConfig = msgspec.field(default_factory=ScopeConfig)
    schedules: SchedulesConfig = msgspec.field(default_factory=SchedulesConfig)
    ports: PortsConfig = msgspec.field(default_factory=PortsConfig)
    timeouts: TimeoutsConfig = msgspec.field(default_factory=TimeoutsConfig)
    concurrency: ConcurrencyConfig = msgspec.field(default_factory=ConcurrencyConfig)
    gateway: GatewayConfig = msgspec.field(default_factory=GatewayConfig)
    lease_files: LeaseFilesConfig = msgspec.field(default_factory=LeaseFilesConfig)
    proxmox: ProxmoxConfig = msgspec.field(default_factory=ProxmoxConfig)
    dns: DnsConfig = msgspec.field(default_factory=DnsConfig)
    duckdb: DuckDBConfig = msgspec.field(default_factory=DuckDBConfig)
    presence: PresenceConfig = msgspec.field(default_factory=PresenceConfig)
    registry: RegistryConfig = msgspec.field(default_factory=RegistryConfig)
    findings: FindingsConfig = msgspec.field(default_factory=FindingsConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
    web: _web.WebConfig = msgspec.field(default_factory=lambda: _web.WebConfig())

    @property
    def duckdb_path(self) -> Path:
        return Path(self.duckdb.path) if self.duckdb.path else Path(self.data_dir) / "lanscope.duckdb"


_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\?)([^}]*))?\}")


def expand(value: str, where: str, env: Mapping[str, str]) -> str:
    """Expand ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}`` in one string.

    ``$${`` escapes a literal ``${``.
    """

    def replace(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        current = env.get(name)
        if op == ":-":
            return current if current else (arg or "")
        if op == ":?":
            if not current:
                raise ConfigError(f"{where}: ${{{name}}} is required: {arg or 'not set'}")
            return current
        if current is None:
            raise ConfigError(f"{where}: environment variable {name} is not set "
                              f"(use ${{{name}:-default}} for an optional value)")
        return current

    parts = value.split("$${")
    return "${".join(_VAR.sub(replace, part) for part in parts)


def _walk(node: Any, where: str, env: Mapping[str, str], base: Path) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for key, item in node.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where or '<top>'}: key {key!r} is not a string")
            out[key] = _walk(item, f"{where}.{key}" if where else key, env, base)
        for key in [k for k in out if k.endswith("_file") and k[: -len("_file")] in SECRET_KEYS]:
            secret_key = key[: -len("_file")]
            path_where = f"{where}.{key}" if where else key
            if out.get(secret_key) not in (None, ""):
                raise ConfigError(f"{path_where}: set either {secret_key} or {key}, not both")
            path = out.pop(key)
            if path in (None, ""):
                continue
            out[secret_key] = _read_secret(Path(path) if Path(path).is_absolute() else base / path,
                                           path_where)
        return out
    if isinstance(node, list):
        return [_walk(item, f"{where}[{i}]", env, base) for i, item in enumerate(node)]
    if isinstance(node, str):
        return expand(node, where, env)
    return node


def _read_secret(path: Path, where: str) -> str:
    try:
        return path.read_text().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read secret file {str(path)!r}: {exc.strerror}") from None


def _dec_hook(typ: type, obj: Any) -> Any:
    if typ is Secret:
        if not isinstance(obj, (str, int)):
            raise TypeError(f"Expected `str`, got `{type(obj).__name__}`")
        return Secret(str(obj))
    raise NotImplementedError


_PATH_IN_MSG = re.compile(r" - at `\$\.?([^`]*)`$")


def parse(raw: Any, *, source: str = "config", env: Mapping[str, str] | None = None,
          base: Path | None = None) -> Config:
    """Validate an already-loaded YAML tree (a dict) into a Config."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, "
                          f"not {type(raw).__name__}")
    try:
        tree = _walk(raw, "", os.environ if env is None else env, base or Path.cwd())
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    try:
        config = msgspec.convert(tree, Config, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:
        message = str(exc)
        match = _PATH_IN_MSG.search(message)
        where = match.group(1) if match else ""
        message = _PATH_IN_MSG.sub("", message)
        unknown = re.match(r"Object contains unknown field `([^`]+)`", message)
        if unknown:
            key = f"{where}.{unknown.group(1)}" if where else unknown.group(1)
            raise ConfigError(f"{source}: {key}: unknown key") from None
        raise ConfigError(f"{source}: {where or '<top>'}: {message}") from None
    config = _blank_to_none(config)
    _check(config, source)
    return config


def _blank_to_none(section: Any) -> Any:
    """``${VAR:-}`` yields "" where the key's default is None (unset): make it None."""
    changes: dict[str, Any] = {}
    for info in msgspec.structs.fields(section):
        value = getattr(section, info.name)
        if value == "" and info.default is None:
            changes[info.name] = None
        elif isinstance(value, msgspec.Struct):
            fixed = _blank_to_none(value)
            if fixed is not value:
                changes[info.name] = fixed
    return msgspec.structs.replace(section, **changes) if changes else section


def _check(config: Config, source: str) -> None:
    """Rules a type cannot express."""
    problems: list[str] = []
    if config.nats.replicas not in (1, 3, 5):
        problems.append("nats.replicas: must be 1, 3 or 5")
    for key, value in (("duckdb.batch_size", config.duckdb.batch_size),
                       ("concurrency.hosts", config.concurrency.hosts),
                       ("concurrency.sockets", config.concurrency.sockets),
                       ("concurrency.per_host", config.concurrency.per_host),
                       ("nats.max_deliver", config.nats.max_deliver)):
        if value < 1:
            problems.append(f"{key}: must be at least 1, got {value}")
    for name in SchedulesConfig.__struct_fields__:
        if getattr(config.schedules, name) < 0:
            problems.append(f"schedules.{name}: must not be negative")
    if config.proxmox.host and not (config.proxmox.token_name or config.proxmox.password):
        problems.append("proxmox: set token_name/token_value or password for "
                        f"{config.proxmox.host}")
    if config.proxmox.token_name and not config.proxmox.token_value:
        problems.append("proxmox.token_value: required with token_name")
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))


def load(path: str | Path | None = None, *, env: Mapping[str, str] | None = None) -> Config:
    """Load a config file; with no path, the first of DEFAULT_PATHS that exists, else defaults."""
    if path is None:
        for candidate in DEFAULT_PATHS:
            if Path(candidate).is_file():
                path = candidate
                break
        else:
            return parse({}, source="defaults", env=env)
    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigError(f"{file}: not valid YAML{at}: {getattr(exc, 'problem', exc)}") from None
    return parse(raw, source=str(file), env=env, base=file.parent.resolve())
