"""Loading, expanding and validating ``config.yaml``.

The top level holds the shared settings (``data_dir``, ``targets``, ``scope``,
``nats``, ``dns``, ``proxmox``, ``logging``) and one section per stage,
mirroring the folders: ``producers.arp_sweep``, ``enrichers.port_probe``,
``sinks.host_state`` ... Each stage section is decoded into that stage's own
``Config`` (beside the stage), whose field defaults are the only defaults.

The one place that reads the environment: ``${VAR}``, ``${VAR:-default}`` and
``${VAR:?message}`` are expanded once, in string values only (so a variable
can never inject YAML structure). ``<secret>_file`` keys (``pass_file``,
``password_file``, ``token_file``, ``token_value_file``, SNMP's ``community_file``,
``auth_key_file``, ``priv_key_file``, and ``<key>_file`` for every field of type
``Secret``, such as a notify target's ``url_file``) read the secret from a file. Lists
and maps of sections (``sinks.notify.rules``, ``.targets``) are walked like sections, so
their keys get the same checks. Validation is strict and complete: every unknown key
(with a "did you
mean"), every key of the old layout (with its new place), every wrong type
and every rule a section's ``check()`` states is reported, each as
``FILE: key.path: problem``, in one ConfigError.
"""

from __future__ import annotations

import difflib
import os
import re
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
import yaml

from enrichers.dns_names.stage import Config as DnsNamesConfig
from enrichers.mac_vendor.stage import Config as MacVendorConfig
from enrichers.netbios.stage import Config as NetBiosConfig
from enrichers.port_probe.stage import Config as PortProbeConfig
from enrichers.presence_check.stage import Config as PresenceCheckConfig
from enrichers.proxmox_names.stage import Config as ProxmoxNamesConfig
from enrichers.snmp.stage import Config as SnmpConfig
from lanscope.config_moved import MOVED, OLD_SECTIONS
from lanscope.settings import (
    DnsConfig,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    Problems,
    ProxmoxConfig,
    ScopeConfig,
    Secret,
    Section,
    TlsConfig,
    target_count,
    target_problems,
)
from lanscope.sites import HubConfig, Role, SensorConfig, check_roles
from lanscope.web.config import WebConfig
from producers.arp_sweep.stage import Config as ArpSweepConfig
from producers.dhcp_leases.stage import Config as DhcpLeasesConfig
from producers.mdns.stage import Config as MdnsConfig
from producers.neighbours.stage import Config as NeighboursConfig
from producers.passive.stage import Config as PassiveConfig
from producers.ping_sweep.stage import Config as PingSweepConfig
from producers.proxmox_guests.stage import Config as ProxmoxGuestsConfig
from producers.ssdp.stage import Config as SsdpConfig
from sinks.findings.stage import Config as FindingsConfig
from sinks.host_state.stage import Config as HostStateConfig
from sinks.host_state.stage import database_path
from sinks.notify.stage import Config as NotifyConfig
from sinks.registry.stage import Config as RegistryConfig

if TYPE_CHECKING:
    from lanscope.net.targets import Targets
    from lanscope.runtime.claims import Claims
    from lanscope.runtime.layout import Layout
    from lanscope.runtime.stage import DeadLetter, Progress, StageContext
    from lanscope.runtime.topology import StageSpec

DEFAULT_PATHS = ("config.yaml", "/etc/lanscope/config.yaml")


class ConfigError(ValueError):
    """Configuration problems, each ``source: key.path: what is wrong``."""

    def __init__(self, problems: str | list[str]) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class NatsConfig(Section):
    url: str = ""                          # empty: start the bundled nats-server
    user: str | None = None
    password: Secret | None = None
    token: Secret | None = None
    creds_file: str | None = None
    nkey_seed_file: str | None = None     # an NKEY seed file (the server lists its public key)
    # One credentials file per role (<role>.nk or <role>.creds): each process connects as its
    # role (lanscope.runtime.auth). The embedded server's are in <data_dir>/credentials.
    credentials_dir: str = ""
    tls: TlsConfig | None = None
    name: str = "lanscope"
    connect_timeout_secs: PositiveFloat = 5.0
    # Streams and consumers
    replicas: int = 1
    max_age_days: PositiveFloat = 7.0
    max_bytes: PositiveInt = 1 << 30
    duplicate_window_secs: NonNegativeFloat = 120.0
    ack_wait_secs: PositiveFloat = 30.0
    max_deliver: PositiveInt = 5
    max_ack_pending: PositiveInt = 1000    # a sink's consumer gets at least 3 x its batch size
    nak_backoff_ms: NonNegativeInt = 1000  # first retry delay after a failure; doubles per delivery
    nak_backoff_max_secs: NonNegativeFloat = 60.0
    shutdown_grace_secs: NonNegativeFloat = 10.0  # in-flight work may finish this long after SIGTERM
    # Embedded server
    embedded_host: str = "127.0.0.1"
    embedded_port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0   # 0: a free port
    sync_always: bool = False              # fsync every write (slower, survives power loss)

    def check(self) -> Problems:
        if self.replicas not in (1, 3, 5):
            yield "replicas", "must be 1, 3 or 5"


class LoggingConfig(Section):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["text", "json"] = "text"


# One section per stage, named and ordered as the topology (a test checks both agree).
class Producers(Section):
    arp_sweep: ArpSweepConfig = msgspec.field(default_factory=ArpSweepConfig)
    ping_sweep: PingSweepConfig = msgspec.field(default_factory=PingSweepConfig)
    neighbours: NeighboursConfig = msgspec.field(default_factory=NeighboursConfig)
    dhcp_leases: DhcpLeasesConfig = msgspec.field(default_factory=DhcpLeasesConfig)
    proxmox_guests: ProxmoxGuestsConfig = msgspec.field(default_factory=ProxmoxGuestsConfig)
    passive: PassiveConfig = msgspec.field(default_factory=PassiveConfig)
    mdns: MdnsConfig = msgspec.field(default_factory=MdnsConfig)
    ssdp: SsdpConfig = msgspec.field(default_factory=SsdpConfig)


class Enrichers(Section):
    port_probe: PortProbeConfig = msgspec.field(default_factory=PortProbeConfig)
    dns_names: DnsNamesConfig = msgspec.field(default_factory=DnsNamesConfig)
    mac_vendor: MacVendorConfig = msgspec.field(default_factory=MacVendorConfig)
    proxmox_names: ProxmoxNamesConfig = msgspec.field(default_factory=ProxmoxNamesConfig)
    netbios: NetBiosConfig = msgspec.field(default_factory=NetBiosConfig)
    snmp: SnmpConfig = msgspec.field(default_factory=SnmpConfig)
    presence_check: PresenceCheckConfig = msgspec.field(default_factory=PresenceCheckConfig)


class Sinks(Section):
    host_state: HostStateConfig = msgspec.field(default_factory=HostStateConfig)
    findings: FindingsConfig = msgspec.field(default_factory=FindingsConfig)
    registry: RegistryConfig = msgspec.field(default_factory=RegistryConfig)
    notify: NotifyConfig = msgspec.field(default_factory=NotifyConfig)


class Config(Section):
    data_dir: str = "./var"
    site: str = ""                         # this install's site id ("": the default site)
    role: Role = "all"                     # all | sensor (producers + port_probe) | hub (the rest)
    targets: list[str] = []                # empty: the attached private subnets
    scope: ScopeConfig = msgspec.field(default_factory=ScopeConfig)
    nats: NatsConfig = msgspec.field(default_factory=NatsConfig)
    dns: DnsConfig = msgspec.field(default_factory=DnsConfig)
    proxmox: ProxmoxConfig = msgspec.field(default_factory=ProxmoxConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
    web: WebConfig = msgspec.field(default_factory=WebConfig)   # the dashboard (lanscope.web)
    sensor: SensorConfig = msgspec.field(default_factory=SensorConfig)   # role: sensor (lanscope.sites)
    hub: HubConfig = msgspec.field(default_factory=HubConfig)            # role: hub
    producers: Producers = msgspec.field(default_factory=Producers)
    enrichers: Enrichers = msgspec.field(default_factory=Enrichers)
    sinks: Sinks = msgspec.field(default_factory=Sinks)

    def check(self) -> Problems:
        yield from check_roles(self.site, self.role, self.sensor)
        problems = list(target_problems("targets", self.targets))
        yield from problems
        if self.targets and not problems and not list(target_problems("exclude", self.scope.exclude)):
            count = target_count(self.targets, self.scope.exclude)
            if count > self.scope.max_addresses:
                yield "targets", (f"{count} addresses is more than scope.max_addresses "
                                  f"({self.scope.max_addresses})")
        state = self.sinks.host_state
        if state.enabled and state.presence.confirm and not self.enrichers.presence_check.enabled:
            yield "sinks.host_state.presence.confirm", ("true needs enrichers.presence_check, which is "
                                                        "disabled: no host would be gone (set false)")

    @property
    def duckdb_path(self) -> Path:
        return database_path(self.sinks.host_state, Path(self.data_dir))

    def stage_config(self, name: str) -> Any:
        """The named stage's own section (``producers.arp_sweep`` for ``arp_sweep``)."""
        from lanscope.runtime.topology import STAGES

        spec = STAGES[name]
        return getattr(getattr(self, spec.kind.value), spec.name)

    def stage_specs(self) -> dict[str, StageSpec]:
        """The topology's stages with the runtime tuning their sections set."""
        from lanscope.runtime.topology import STAGES

        return {name: spec.tuned(self.stage_config(name)) for name, spec in STAGES.items()}

    def layout(self) -> Layout:
        """Where this process's events live (lanscope.runtime.layout)."""
        from lanscope.runtime.layout import Layout

        return Layout.of(self)

    def stage_context(self, *, claims: Claims | None = None, progress: Progress | None = None,
                      sweep: Targets | None = None, dead_letter: DeadLetter | None = None) -> StageContext:
        """What the stage builders get besides their own section: the shared settings."""
        from lanscope.runtime.claims import MemoryClaims
        from lanscope.runtime.stage import StageContext

        return StageContext(data_dir=Path(self.data_dir), targets=tuple(self.targets), scope=self.scope,
                            dns=self.dns, proxmox=self.proxmox, claims=claims or MemoryClaims(),
                            progress=progress, sweep=sweep, dead_letter=dead_letter)


# --------------------------------------------------------------------------- expansion

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:-|:\?)([^}]*))?\}")


def expand(value: str, where: str, env: Mapping[str, str]) -> str:
    """Expand ``${VAR}``, ``${VAR:-default}`` and ``${VAR:?message}`` in one string.

    ``$${`` escapes a literal ``${``. A missing required variable raises ConfigError."""

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


# --------------------------------------------------------------------------- decoding

_DROP = object()
_PATH_IN_MSG = re.compile(r" - at `\$([^`]*)`$")


def _dec_hook(typ: type, obj: Any) -> Any:
    if typ is Secret:
        if not isinstance(obj, (str, int)):
            raise TypeError(f"Expected `str`, got `{type(obj).__name__}`")
        return Secret(str(obj))
    raise NotImplementedError


def _struct_of(annotation: Any) -> type[msgspec.Struct] | None:
    """The Struct a field holds (``TlsConfig`` for ``TlsConfig | None``), else None."""
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return annotation
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        found = [a for a in typing.get_args(annotation)
                 if isinstance(a, type) and issubclass(a, msgspec.Struct)]
        return found[0] if len(found) == 1 else None
    return None


def _is_secret(annotation: Any) -> bool:
    """A ``Secret`` or ``Secret | None`` field."""
    if annotation is Secret:
        return True
    return typing.get_origin(annotation) in (typing.Union, types.UnionType) and \
        Secret in typing.get_args(annotation)


def _secret_key(key: str, fields: Mapping[str, Any]) -> bool:
    """Whether ``<key>_file`` may hold field ``key``'s value (a secret)."""
    info = fields.get(key)
    return info is not None and _is_secret(info.type)


def _items_of(annotation: Any) -> tuple[type, type[msgspec.Struct]] | None:
    """``(list, S)`` for ``list[S]``, ``(dict, S)`` for ``dict[str, S]`` (S a Struct), else None."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list and len(args) == 1:
        struct = _struct_of(args[0])
        return (list, struct) if struct is not None else None
    if origin is dict and len(args) == 2 and args[0] is str:
        struct = _struct_of(args[1])
        return (dict, struct) if struct is not None else None
    return None


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


class _Decoder:
    """Walks the YAML tree along the Config types; every problem is recorded, none stops it."""

    def __init__(self, env: Mapping[str, str], base: Path) -> None:
        self.env = env
        self.base = base
        self.problems: list[tuple[str, str]] = []

    def section(self, node: Any, cls: type[msgspec.Struct], where: str) -> dict[str, Any]:
        if node is None:
            return {}
        if not isinstance(node, dict):
            self.problems.append((where or "<top>", f"expected a section (key: value lines), "
                                                    f"got {type(node).__name__}"))
            return {}
        fields = {f.encode_name: f for f in msgspec.structs.fields(cls)}
        out: dict[str, Any] = {}
        for key, value in self._secret_files(node, fields, where).items():
            here = _join(where, key)
            info = fields.get(key)
            if info is None:
                self._unknown(here, key, value, fields, where)
                continue
            struct = _struct_of(info.type)
            empty = value is None and info.default is not None    # `section:` with nothing under it
            if struct is not None and (isinstance(value, dict) or empty):
                out[key] = self.section(value, struct, here)
                continue
            items = _items_of(info.type)
            if items is not None and isinstance(value, (list, dict)) and isinstance(value, items[0]):
                out[key] = self._items(value, items[1], here)
                continue
            value = self._expand(value, here)
            if value is _DROP:
                continue
            if value == "" and info.default is None:
                value = None               # ${VAR:-} where the key's default is "unset"
            try:
                msgspec.convert(value, info.type, dec_hook=_dec_hook)
            except msgspec.ValidationError as exc:
                message = str(exc)
                match = _PATH_IN_MSG.search(message)
                self.problems.append((here + (match.group(1) if match else ""),
                                      _PATH_IN_MSG.sub("", message)))
                continue
            out[key] = value
        return out

    def _items(self, node: list[Any] | dict[Any, Any], cls: type[msgspec.Struct],
               where: str) -> list[Any] | dict[Any, Any]:
        """A list or a map of sections, each decoded like a section (``rules[0].kinds``)."""
        if isinstance(node, list):
            return [self.section(item, cls, f"{where}[{i}]") for i, item in enumerate(node)
                    if self._is_section(item, f"{where}[{i}]")]
        return {str(name): self.section(item, cls, _join(where, str(name))) for name, item in node.items()
                if self._is_section(item, _join(where, str(name)))}

    def _is_section(self, node: Any, where: str) -> bool:
        if isinstance(node, dict):
            return True
        self.problems.append((where, f"expected a section (key: value lines), got {type(node).__name__}"))
        return False

    def _secret_files(self, node: dict[Any, Any], fields: Mapping[str, Any], where: str) -> dict[str, Any]:
        """``pass_file: PATH`` -> ``pass: <the file's text>`` (a Secret)."""
        out: dict[str, Any] = {}
        for key, value in node.items():
            if not isinstance(key, str):
                self.problems.append((where or "<top>", f"key {key!r} is not a string"))
                continue
            secret = key.removesuffix("_file")
            if key == secret or not _secret_key(secret, fields):
                out.setdefault(key, value)
                continue
            here = _join(where, key)
            if node.get(secret) not in (None, ""):
                self.problems.append((here, f"set either {secret} or {key}, not both"))
                continue
            path = self._expand(value, here)
            if path is _DROP or path in (None, ""):
                continue
            file = Path(path) if Path(path).is_absolute() else self.base / path
            try:
                out[secret] = Secret(file.read_text().rstrip("\r\n"))
            except OSError as exc:
                self.problems.append((here, f"cannot read secret file {str(file)!r}: {exc.strerror}"))
        return out

    def _expand(self, node: Any, where: str) -> Any:
        if isinstance(node, str):
            try:
                return expand(node, where, self.env)
            except ConfigError as exc:
                self.problems.append((where, str(exc).removeprefix(f"{where}: ")))
                return _DROP
        if isinstance(node, list):
            items = [self._expand(item, f"{where}[{i}]") for i, item in enumerate(node)]
            return _DROP if any(item is _DROP for item in items) else items
        if isinstance(node, dict):
            pairs = {k: self._expand(v, _join(where, str(k))) for k, v in node.items()}
            return _DROP if any(v is _DROP for v in pairs.values()) else pairs
        return node

    def _unknown(self, here: str, key: str, value: Any, fields: Mapping[str, Any], where: str) -> None:
        from lanscope.runtime.topology import STAGES

        plain = re.sub(r"\[\d+\]", "", here)
        if plain in MOVED:
            self.problems.append((here, MOVED[plain]))
            return
        if not where and key in OLD_SECTIONS:
            gone = f"the {key} section is gone: {OLD_SECTIONS[key]}"
            if isinstance(value, dict) and value:
                for sub in value:
                    path = f"{key}.{sub}"
                    self.problems.append((path, MOVED.get(path, f"unknown key; {gone}")))
            else:
                self.problems.append((key, gone))
            return
        spec = STAGES.get(key)
        if spec is not None:
            self.problems.append((here, f"unknown key; the {key} stage's section is {spec.qualified}"))
            return
        names = [*fields, *(f"{k}_file" for k in fields if _secret_key(k, fields))]
        close = difflib.get_close_matches(key, names, n=1, cutoff=0.6)
        self.problems.append((here, "unknown key" + (f"; did you mean {close[0]}?" if close else "")))


def _checks(section: msgspec.Struct, where: str) -> Iterator[tuple[str, str]]:
    """What every section's check() finds, with the section's key path in front (sections
    in lists and maps too: ``rules[0].name``, ``targets.phone.url``)."""
    check = getattr(section, "check", None)
    if callable(check):
        for key, message in check():
            yield (_join(where, key) if key else where or "<top>"), message
    for info in msgspec.structs.fields(section):
        value = getattr(section, info.name)
        here = _join(where, info.encode_name)
        if isinstance(value, msgspec.Struct):
            yield from _checks(value, here)
        elif isinstance(value, list):
            for i, item in enumerate(value):
                if isinstance(item, msgspec.Struct):
                    yield from _checks(item, f"{here}[{i}]")
        elif isinstance(value, dict):
            for name, item in value.items():
                if isinstance(item, msgspec.Struct):
                    yield from _checks(item, _join(here, str(name)))


def parse(raw: Any, *, source: str = "config", env: Mapping[str, str] | None = None,
          base: Path | None = None) -> Config:
    """Validate an already-loaded YAML tree (a dict) into a Config; ConfigError lists every problem."""
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of sections, "
                          f"not {type(raw).__name__}")
    decoder = _Decoder(os.environ if env is None else env, base or Path.cwd())
    tree = decoder.section(raw, Config, "")
    try:
        config = msgspec.convert(tree, Config, dec_hook=_dec_hook)
    except msgspec.ValidationError as exc:     # every leaf was checked: not expected
        raise ConfigError([f"{source}: {k}: {m}" for k, m in decoder.problems]
                          + [f"{source}: <top>: {exc}"]) from None
    problems = decoder.problems + list(_checks(config, ""))
    if problems:
        raise ConfigError([f"{source}: {key}: {message}" for key, message in problems])
    return config


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
