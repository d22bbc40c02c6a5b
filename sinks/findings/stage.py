"""The ``findings`` sink: security findings as a lifecycle (opened, resolved), rules as data.

Port rules are checked on every ``PortsProbed`` snapshot (the same ports as the
IP's last snapshot, with no certificate among them, keep the last verdict): a
finding opens the first time a rule holds for an IP and port and resolves when a
later snapshot of that IP no longer shows it. Sighting checks (rogue DHCP server, ARP
spoofing, duplicate IP) open on ``HostSeen`` and resolve when the condition
is not seen again within the window; a new host inside a static range opens
on ``HostChanged`` kind new and resolves when that host is gone. Only
transitions are published, as ``Finding`` events with deterministic ids.

State across restarts lives in a small local JSON file (open findings, the
newest probe per IP, and the outputs of recent inputs — an outbox, so a
redelivered input returns the same events and the runtime's de-duplication
drops them). It is rewritten only when something opened or resolved, and at
most once a minute for last-seen updates. Run one replica per state file.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
from collections.abc import Callable, Collection
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec

from lanscope.runtime.stage import StageContext
from lanscope.settings import NonNegativeInt, PositiveFloat, PositiveInt, Problems
from schemas import (
    ChangeKind,
    Event,
    Finding,
    FindingState,
    HostChanged,
    HostSeen,
    PortResult,
    PortsProbed,
    normalize_mac,
    port_name,
    site_key,
)
from sinks._outbox import apply_batch, trim

from . import _io
from .rules import PortRules, Rule, parse_rules, port_holds, version_tuple

log = logging.getLogger(__name__)
STAGE = "findings"
_SAVE_EVERY = timedelta(seconds=60)


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """sinks.findings in config.yaml (documented in config.sample.yaml)."""

    enabled: bool = True
    min_openssh: str = "8.8"                  # older OpenSSH versions are a finding
    static_ranges: list[str] = []             # a new host inside one of these is a finding
    gateways: dict[str, str] = {}             # gateway IP (or SITE/IP, one site's) -> its MAC (ARP spoofing)
    dhcp_servers: list[str] = []              # known DHCP servers; another one is a finding
    cert_expiry_days: NonNegativeInt = 0      # warn this many days before expiry (0: only expired)
    rules_file: str = ""                      # empty: the shipped rules.yaml
    window_secs: PositiveFloat = 300.0        # two MACs for one IP within this long is a finding;
                                              # sighting findings resolve after this long unseen
    state_file: str = ""                      # empty: <data_dir>/findings.json
    batch_size: PositiveInt = 500             # events per commit when behind
    flush_ms: NonNegativeInt = 200            # a batch waits this long to fill up

    def check(self) -> Problems:
        if version_tuple(self.min_openssh) is None:
            yield "min_openssh", f"{self.min_openssh!r} is not a version (e.g. \"8.8\")"
        for i, text in enumerate(self.static_ranges):
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                yield f"static_ranges[{i}]", f"{text!r} is not a network (e.g. 192.168.1.0/24)"
        for i, text in enumerate(self.dhcp_servers):
            if not _is_ip(text):
                yield f"dhcp_servers[{i}]", f"{text!r} is not an IP address"
        for ip, mac in self.gateways.items():
            if not _is_ip(ip.rpartition("/")[2]):
                yield f"gateways.{ip}", f"{ip!r} is not an IP address (or SITE/IP)"
            try:
                normalize_mac(mac)
            except ValueError:
                yield f"gateways.{ip}", f"{mac!r} is not a MAC address"


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


class _Judged(msgspec.Struct, gc=False):
    """The port rules that held for one snapshot: (rule, finding id, evidence, port) each."""

    ports: list[PortResult]
    holds: list[tuple[Rule, str, str, int]]
    tls: bool            # a port shows a certificate (its verdict depends on the time)


class _State(msgspec.Struct, kw_only=True):
    open: dict[str, Finding] = {}             # finding_id -> the finding, last_seen kept current
    probed_at: dict[str, datetime] = {}       # ip (site/ip at a named site) -> newest PortsProbed handled
    outbox: dict[str, list[Finding]] = {}     # input id -> the findings it produced (recent)
    newest: datetime | None = None            # newest event time seen (window expiry)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _finding_event_id(finding_id: str, state: FindingState, at: datetime) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{STAGE}\0{finding_id}\0{state.value}\0{at.isoformat()}".encode())
    return h.hexdigest()


class Findings:
    """Sink: evaluate the rules, keep the open findings, return opened/resolved events."""

    def __init__(self, config: Config, clock: Callable[[], datetime] = _utcnow) -> None:
        self.config = config
        self.clock = clock
        self.rules: list[Rule] = []
        self._port_rules = PortRules([])
        self._checks: dict[str, Rule] = {}
        self.state = _State()
        self._state_path = Path(config.state_file)
        self._saved_at: datetime | None = None
        self._dirty = False
        self._ip_macs: dict[str, dict[str, datetime]] = {}   # window-bounded, rebuilt from sightings
        self._open_at: dict[str | None, set[str]] = {}      # ip -> ids of the open findings there
        self._judged: dict[str, _Judged] = {}               # ip -> its last snapshot and what held
        self._static = [ipaddress.ip_network(r, strict=False) for r in config.static_ranges]
        self._thresholds = {"min_openssh": config.min_openssh}
        self._window = timedelta(seconds=config.window_secs)

    async def open(self) -> None:
        rules_path = Path(self.config.rules_file) if self.config.rules_file else _io.SHIPPED_RULES
        self.rules = parse_rules(await _io.read_yaml(rules_path), str(rules_path))
        self._port_rules = PortRules(self.rules)
        self._checks = {}
        for rule in self.rules:
            if rule.check is not None:
                self._checks.setdefault(rule.check, rule)
        raw = await _io.read_bytes(self._state_path)
        if raw:
            try:
                self.state = msgspec.json.decode(raw, type=_State)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise _io.StateFileError(f"{self._state_path}: not a findings state file ({exc}); "
                                         "move it away to start with no open findings") from None
        self._open_at = {}
        for finding_id, finding in self.state.open.items():
            self._open_at.setdefault(_where(finding.site, finding.ip), set()).add(finding_id)
        log.info("findings: %d rules, %d open findings", len(self.rules), len(self.state.open))

    async def close(self) -> None:
        if self._dirty:
            await self._save()

    # ------------------------------------------------------------------ batch

    async def write(self, batch: list[Event], redelivered: Collection[str] | None = None) -> list[Event]:
        # Every input is looked up in the outbox anyway (it is in memory): `redelivered` is not needed.
        outputs, produced = apply_batch(batch, self.state.outbox, self._handle)
        expired = self._expire()
        if expired:
            produced = True
            for finding in expired:
                outputs[finding.id] = finding
        if produced:
            trim(self.state.outbox)
            await self._save()
        elif self._dirty and (self._saved_at is None or self.clock() - self._saved_at > _SAVE_EVERY):
            await self._save()
        return list(outputs.values())

    async def _save(self) -> None:
        # Until this write succeeds, the next batch writes again (a redelivery of this
        # batch is answered from the outbox, produces nothing, and would not wait a minute).
        self._saved_at = None
        await _io.write_atomic(self._state_path, msgspec.json.encode(self.state))
        self._saved_at = self.clock()
        self._dirty = False

    def _handle(self, event: Event) -> list[Finding]:
        if self.state.newest is None or event.observed_at > self.state.newest:
            self.state.newest = event.observed_at
        if isinstance(event, PortsProbed):
            return self._ports(event)
        if isinstance(event, HostSeen):
            return self._seen(event)
        if isinstance(event, HostChanged):
            return self._changed(event)
        return []

    # --------------------------------------------------------------- lifecycle

    def _rule(self, check: str) -> Rule | None:
        return self._checks.get(check)

    def _observe(self, rule: Rule, finding_id: str, event: Event, *, evidence: str,
                 ip: str | None, mac: str | None, port: int | None, key: str) -> list[Finding]:
        """The condition holds now: open the finding, or refresh its last_seen."""
        current = self.state.open.get(finding_id)
        if current is not None:
            if event.observed_at > current.last_seen:
                current.last_seen = event.observed_at
                current.evidence = evidence[:4096]
                self._dirty = True
            return []
        finding = Finding(
            host_key=key, observed_at=event.observed_at, source=STAGE, finding_id=finding_id,
            state=FindingState.OPENED, rule=rule.id, severity=rule.severity, category=rule.category,
            title=rule.title, ip=ip, mac=mac, port=port, evidence=evidence[:4096],
            first_seen=event.observed_at, last_seen=event.observed_at, site=event.site)
        finding.id = _finding_event_id(finding_id, FindingState.OPENED, event.observed_at)
        self.state.open[finding_id] = msgspec.structs.replace(finding)
        self._open_at.setdefault(_where(event.site, ip), set()).add(finding_id)
        return [finding]

    def _resolve(self, finding_id: str, at: datetime, why: str) -> list[Finding]:
        current = self.state.open.pop(finding_id, None)
        if current is None:
            return []
        where = _where(current.site, current.ip)
        at_ip = self._open_at.get(where)
        if at_ip is not None:
            at_ip.discard(finding_id)
            if not at_ip:
                del self._open_at[where]
        resolved = msgspec.structs.replace(
            current, state=FindingState.RESOLVED, observed_at=at,
            evidence=f"{why}; was: {current.evidence}"[:4096],
            id=_finding_event_id(finding_id, FindingState.RESOLVED, at))
        return [resolved]

    # ------------------------------------------------------------------ events

    def _ports(self, event: PortsProbed) -> list[Finding]:
        ip = event.ip
        where = site_key(event.site, ip)     # the address at its site: ids and maps are keyed so
        newest = self.state.probed_at.get(where)
        if newest is not None and event.observed_at < newest:
            return []            # an older snapshot than one already judged
        self.state.probed_at[where] = event.observed_at
        self._dirty = True
        out: list[Finding] = []
        holds = self._holds(where, event)
        for rule, finding_id, evidence, port in holds:
            out += self._observe(rule, finding_id, event, evidence=evidence, ip=ip,
                                 mac=event.mac, port=port, key=site_key(event.site, event.host_key))
        open_here = self._open_at.get(where)
        if not open_here:
            return out
        holding = {finding_id for _, finding_id, _, _ in holds}
        port_rules = self._port_rules.ids
        for finding_id in sorted(open_here):   # not every open finding per probe
            if self.state.open[finding_id].rule in port_rules and finding_id not in holding:
                out += self._resolve(finding_id, event.observed_at, "the latest probe no longer shows it")
        return out

    def _holds(self, where: str, event: PortsProbed) -> list[tuple[Rule, str, str, int]]:
        """The port rules that hold for this snapshot. A host probed again mostly shows the
        same ports: then the last verdict stands, unless a certificate is in it (whether it
        has expired depends on the time)."""
        judged = self._judged.get(where)
        if judged is not None and not judged.tls and judged.ports == event.ports:
            return judged.holds     # equal ports: no certificate in these either
        holds: list[tuple[Rule, str, str, int]] = []
        for rule in self._port_rules.candidates(event.ports):
            assert rule.match is not None
            for port in event.ports:
                evidence = port_holds(rule.match, port, thresholds=self._thresholds,
                                      now=event.observed_at, expiry_days=self.config.cert_expiry_days)
                if evidence is not None:
                    holds.append((rule, f"{rule.id}/{where}/{port_name(port.protocol, port.port)}",
                                  evidence, port.port))
        self._judged[where] = _Judged(event.ports, holds,
                                   any(port.tls is not None for port in event.ports))
        return holds

    def _seen(self, event: HostSeen) -> list[Finding]:
        out: list[Finding] = []
        ip, mac, site = event.ip, event.mac, event.site
        key = site_key(site, event.host_key)     # the host's key at its site, as host_state keys it
        lease = event.lease
        rule = self._rule("rogue_dhcp")
        if rule and lease is not None and lease.server and self.config.dhcp_servers \
                and lease.server not in self.config.dhcp_servers:
            out += self._observe(rule, f"{rule.id}/{site_key(site, lease.server)}", event,
                                 evidence=f"lease for {lease.address or ip} ({lease.mac or mac}) "
                                          f"from DHCP server {lease.server}",
                                 ip=lease.address or ip, mac=lease.mac or mac, port=None, key=key)
        if not (event.alive and ip and mac):
            return out
        rule = self._rule("arp_spoof")
        where = site_key(site, ip)
        expected = self.config.gateways.get(where, self.config.gateways.get(ip))
        if rule and expected and mac != expected.lower():
            out += self._observe(rule, f"{rule.id}/{where}/{mac}", event,
                                 evidence=f"{mac} answered for gateway {ip} (its MAC is {expected}); "
                                          f"{event.evidence} via {event.source}",
                                 ip=ip, mac=mac, port=None, key=key)
        rule = self._rule("duplicate_ip")
        if rule:
            macs = self._ip_macs.get(where)
            if macs is None:
                macs = self._ip_macs[where] = {}
            elif len(macs) == 1 and mac in macs:   # the usual sighting: the one MAC of its IP
                if event.observed_at > macs[mac]:
                    macs[mac] = event.observed_at
                return out
            macs[mac] = max(event.observed_at, macs.get(mac, event.observed_at))
            for other, when in list(macs.items()):
                if event.observed_at - when > self._window:
                    del macs[other]
            if len(macs) > 1:
                out += self._observe(rule, f"{rule.id}/{where}", event,
                                     evidence=f"{ip} answered from {', '.join(sorted(macs))} within "
                                              f"{self.config.window_secs:g} s",
                                     ip=ip, mac=None, port=None, key=where)
        return out

    def _changed(self, event: HostChanged) -> list[Finding]:
        rule = self._rule("new_in_static_range")
        if rule is None:
            return []
        finding_id = f"{rule.id}/{event.host.host_key}"
        if event.kind is ChangeKind.GONE:
            return self._resolve(finding_id, event.observed_at, "the host is gone")
        if event.kind is not ChangeKind.NEW or not event.host.ip:
            return []
        address = ipaddress.ip_address(event.host.ip)
        inside = next((n for n in self._static if address.version == n.version and address in n), None)
        if inside is None:
            return []
        return self._observe(rule, finding_id, event,
                             evidence=f"new host {event.host.ip} ({event.host.mac or 'no MAC'}) in "
                                      f"static range {inside}",
                             ip=event.host.ip, mac=event.host.mac, port=None, key=event.host.host_key)

    def _expire(self) -> list[Finding]:
        """Sighting findings not seen again within the window resolve."""
        if self.state.newest is None:
            return []
        cutoff = self.state.newest - self._window
        rules = {r.id for r in self.rules if r.check in ("rogue_dhcp", "arp_spoof", "duplicate_ip")}
        out: list[Finding] = []
        for finding_id, finding in list(self.state.open.items()):
            if finding.rule in rules and finding.last_seen < cutoff:
                out += self._resolve(finding_id, self.state.newest,
                                     f"not seen for {self.config.window_secs:g} s")
        return out


def _where(site: str, ip: str | None) -> str | None:
    """An address at its site, as the maps and finding ids key it (types.site_key)."""
    return site_key(site, ip) if ip else None


def build(config: Config, ctx: StageContext) -> Findings:
    state_file = config.state_file or str(ctx.data_dir / "findings.json")
    return Findings(msgspec.structs.replace(config, state_file=state_file))


__all__ = ["Config", "Findings", "build"]
