"""The port_probe enricher: HostSeen in, one PortsProbed (ports, banners, fingerprints, OS) out.

``Prober`` does the work for any number of hosts (the enricher gives it one,
``lanscope scan`` many): a TCP scan (SYN when raw sockets are available and
the port set is large, else connect), banner grabs and fingerprints of the
open ports, UDP probes, and an OS guess. ``PortProbe`` is the stage: it
probes a host when it is new or its last probe is older than
``reprobe_secs``, holding a claim so two replicas never probe one host at
once. Timeouts give a partial snapshot, never an exception. An address the
scope does not allow (lanscope.net.scope.ScopeGuard: the commands' rules) is
never probed: the event is unusable (dead-lettered with the reason).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Annotated, Literal

import msgspec

from enrichers._asking import act_on_request
from lanscope.errors import UnusableEvent
from lanscope.net.ports import PortSpec, resolve
from lanscope.net.scope import ScopeGuard
from lanscope.runtime.claims import Claims, MemoryClaims
from lanscope.runtime.stage import StageContext
from lanscope.settings import NonNegativeInt, PositiveFloat, PositiveInt, Problems
from schemas import (
    Event,
    HostSeen,
    OsGuess,
    PortResult,
    PortsProbed,
    PortState,
    ProbeRequested,
    Protocol,
    port_name,
)

from . import _connect
from .fingerprint import Identity, RuleSet, escape_banner, port_hint_rules, rule_set
from .os_hints import BannerHint, guess_os

log = logging.getLogger(__name__)

_STATES = {s.value: s for s in PortState}     # Enum(value) costs ~5 us; 65k ports add up
_TTL_SAMPLE = 256             # closed-port replies kept for the TTL vote (every open one is kept)
SHOWN_STATE_LIMIT = 25        # like nmap: a non-open state with more ports than this is summarised


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """enrichers.port_probe in config.yaml (documented in config.sample.yaml); also what
    `lanscope probe` and `lanscope scan` start from."""

    enabled: bool = True
    tcp: str = "20-1024"                   # nmap -p syntax; "" disables TCP
    # >0: the N most common TCP ports instead of `tcp`
    top_ports: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 0
    udp: str = "53,123,137,161,1900,5353"  # "" disables UDP
    scan_type: Literal["auto", "connect", "syn"] = "auto"
    syn_min_ports: NonNegativeInt = 64     # auto: SYN (when root) from this many ports per scan
    fingerprint: bool = True               # grab banners and identify services
    nmap_service_probes: str = ""          # path: also use nmap's match lines (if the file exists)
    connect_timeout_ms: PositiveInt = 1000
    banner_timeout_ms: PositiveInt = 3000
    host_timeout_secs: PositiveFloat = 300.0
    hosts: PositiveInt = 16                # a many-host probe gets host_timeout_secs per this many
    sockets: PositiveInt = 512             # connect-scan sockets in flight (per process)
    per_host: PositiveInt = 128            # connect-scan sockets per host
    banners: PositiveInt = 32              # banner grabs and UDP probes in flight
    retries: NonNegativeInt = 1            # retransmissions (connect, SYN, UDP)
    packets_per_sec: NonNegativeInt = 0    # SYN pacing; 0: unpaced
    reprobe_secs: PositiveFloat = 3600.0   # re-probe a host when its last probe is older
    request_max_age_secs: PositiveFloat = 300.0   # a "probe now" request older than this is dropped
    concurrency: PositiveInt = 8           # hosts the pipeline probes at once per process

    def check(self) -> Problems:
        from lanscope.errors import UsageError
        from lanscope.net.ports import parse_ports

        for key, text, udp in (("tcp", self.tcp, False), ("udp", self.udp, True)):
            try:
                if text:
                    parse_ports(text, udp=udp, tcp=not udp)
            except UsageError as exc:
                yield key, str(exc)


class HostReport:
    """One host's result.

    ``ports`` is every scanned port in order (TCP, then UDP). A big scan is mostly one or two
    states that nobody reads port by port (65,534 closed), so ``Prober`` keeps those TCP ports
    compact (port numbers and the engine's shared outcomes) and makes ``PortResult`` objects
    only for the ports ``shown()`` lists; ``ports`` builds the rest on first use. The
    summaries (``shown``, ``not_shown``, ``hidden_reasons``, ``state_counts``) never do.
    """

    def __init__(self, ip: str, ports: list[PortResult] | None = None, os: OsGuess | None = None,
                 scan_type: str = "connect", duration_ms: float = 0.0, complete: bool = True) -> None:
        self.ip = ip
        self.os = os
        self.scan_type = scan_type
        self.duration_ms = duration_ms
        self.complete = complete
        self._results: list[PortResult] = ports if ports is not None else []   # made, in port order
        self._bulk_ports: list[int] = []              # TCP ports kept compact, ascending
        self._bulk: list[_connect.Outcome] = []       # their outcomes (all in hidden states)

    def __repr__(self) -> str:
        # Short on purpose: asyncio reprs task results, and 65k ports took 0.2 s to print.
        return f"HostReport({self.ip}, {len(self._results) + len(self._bulk)} ports, {self.scan_type})"

    @property
    def ports(self) -> list[PortResult]:
        """Every scanned port (the compact ones are made into PortResults now, once)."""
        if self._bulk:
            tcp = Protocol.TCP
            made = [p for p in self._results if p.protocol is tcp]
            rest = self._results[len(made):]
            bulk = [PortResult(protocol=tcp, port=port, state=_STATES[state], reason=reason, reason_ttl=ttl)
                    for port, (state, reason, ttl, _window) in zip(self._bulk_ports, self._bulk, strict=True)]
            self._results = [*heapq.merge(made, bulk, key=lambda p: p.port), *rest]
            self._bulk_ports, self._bulk = [], []
        return self._results

    def shown(self) -> list[PortResult]:
        """``shown_ports(self.ports)`` without making the compact ports: they are all hidden."""
        return shown_ports(self._results)

    def not_shown(self) -> dict[str, int]:
        """``not_shown(self.ports)``: state -> count of the ports ``shown()`` leaves out."""
        hidden = self._bulk_states()
        hidden.update(not_shown(self._results))
        return dict(hidden)

    def hidden_reasons(self) -> dict[str, Counter[str]]:
        """State -> reason -> count of the ports ``shown()`` leaves out, in port order (TCP
        first), for nmap's ``<extraports>``."""
        pairs = Counter((state, reason) for state, reason, _ttl, _window in self._bulk)
        shown = {id(p) for p in self.shown()}
        pairs.update((p.state.value, p.reason) for p in self._results if id(p) not in shown)
        out: dict[str, Counter[str]] = {}
        for (state, reason), n in pairs.items():
            out.setdefault(state, Counter())[reason or "unknown"] += n
        return out

    def state_counts(self) -> Counter[PortState]:
        """How many ports are in each state (all of them, compact or not)."""
        counts = Counter({_STATES[state]: n for state, n in self._bulk_states().items()})
        counts.update(p.state for p in self._results)
        return counts

    def _bulk_states(self) -> Counter[str]:
        """State -> count of the compact ports."""
        return Counter(state for state, _reason, _ttl, _window in self._bulk)

    def _add_tcp(self, ports: list[int], outcomes: list[_connect.Outcome], hidden: frozenset[str]) -> None:
        """Record this host's TCP results (ascending ports): the states in ``hidden`` compact."""
        tcp = Protocol.TCP
        append, bulk_port, bulk = self._results.append, self._bulk_ports.append, self._bulk.append
        for port, outcome in zip(ports, outcomes, strict=True):
            state = outcome[0]
            if state in hidden:
                bulk_port(port)
                bulk(outcome)
            else:
                append(PortResult(protocol=tcp, port=port, state=_STATES[state], reason=outcome[1],
                                  reason_ttl=outcome[2]))


def _hidden_groups(ports: list[PortResult]) -> list[tuple[Protocol, PortState, int]]:
    """(protocol, state, count) of the non-open states with more than SHOWN_STATE_LIMIT ports."""
    counts = Counter((p.protocol, p.state) for p in ports)
    return [(protocol, state, n) for (protocol, state), n in counts.items()
            if state != PortState.OPEN and n > SHOWN_STATE_LIMIT]


def shown_ports(ports: list[PortResult]) -> list[PortResult]:
    """Open ports plus the other states that are few (nmap's "Not shown: 1000 closed ports")."""
    hidden = [(protocol, state) for protocol, state, _n in _hidden_groups(ports)]
    if not hidden:
        return list(ports)
    if len(hidden) == 1:
        # Identity tests on the enum members: hashing a StrEnum runs Python code (65k ports).
        [(protocol, state)] = hidden
        return [p for p in ports if p.state is not state or p.protocol is not protocol]
    return [p for p in ports if not any(p.state is s and p.protocol is pr for pr, s in hidden)]


def not_shown(ports: list[PortResult]) -> dict[str, int]:
    """State -> count of the ports ``shown_ports`` leaves out."""
    hidden: Counter[str] = Counter()
    for _protocol, state, count in _hidden_groups(ports):
        hidden[state.value] += count
    return dict(hidden)


class Prober:
    """Scans, banners and fingerprints; shared by the enricher and the one-shot commands."""

    def __init__(self, config: Config, *, rules: RuleSet | None = None,
                 syn_available: Callable[[], bool] | None = None) -> None:
        self.config = config
        self._rules = rules
        self._syn_available = syn_available or _syn_available
        self._budget = _connect.SocketBudget(config.sockets)
        self._banner_slots = asyncio.Semaphore(config.banners)
        # UDP runs per host (one socket each, paced for that host's ICMP rate limit): a slow
        # host must not hold up the others, so many hosts at once.
        self._udp_hosts = asyncio.Semaphore(max(1, config.hosts * 4))

    @property
    def rules(self) -> RuleSet:
        """The fingerprint rules, loaded and compiled when first needed (not for states only)."""
        if self._rules is None:
            self._rules = rule_set(self.config.nmap_service_probes)
        return self._rules

    def spec(self) -> PortSpec:
        c = self.config
        return resolve(None, top=c.top_ports, default=c.tcp, tcp=bool(c.tcp or c.top_ports),
                       udp=bool(c.udp), udp_default=c.udp)

    def choose_scan_type(self, ips: Iterable[str], port_count: int, wanted: str | None = None) -> str:
        wanted = wanted or self.config.scan_type
        ipv4 = all(":" not in ip for ip in ips)
        if wanted == "connect":
            return "connect"
        if wanted == "syn":
            return "syn" if ipv4 and self._syn_available() else "connect"
        if ipv4 and port_count >= self.config.syn_min_ports and self._syn_available():
            return "syn"
        return "connect"

    async def probe(self, ips: list[str], spec: PortSpec | None = None, *, scan_type: str | None = None,
                    fingerprint: bool | None = None,
                    progress: Callable[[int, int], None] | None = None) -> dict[str, HostReport]:
        """Probe every host in ``ips``; a host that runs out of time gets a partial report."""
        spec = spec if spec is not None else self.spec()
        fingerprint = self.config.fingerprint if fingerprint is None else fingerprint
        started = time.monotonic()
        kind = self.choose_scan_type(ips, len(spec.tcp), scan_type) if spec.tcp else "none"
        reports = {ip: HostReport(ip=ip, scan_type=kind if spec.tcp else "udp") for ip in ips}
        budget = self.config.host_timeout_secs * max(1, -(-len(ips) // self.config.hosts))
        deadline = started + budget

        outcomes: dict[tuple[str, int], _connect.Outcome] = {}
        if spec.tcp:
            outcomes, complete = await self._tcp(ips, spec.tcp, kind, deadline, progress)
            if not complete:
                for report in reports.values():
                    report.complete = False
        # Per host in port order (no global sort of 65k results): the states with many ports stay
        # compact in the report; PortResults are made for the others, the open ports are
        # identified, and the reply TTLs are sampled for the OS guess.
        tcp_ports = sorted(set(spec.tcp))
        identify_tasks = []
        replies: dict[str, list[_connect.Outcome]] = {}
        for ip in ips:
            ports: list[int] = []
            host_outcomes: list[_connect.Outcome] = []
            for port in tcp_ports:
                outcome = outcomes.get((ip, port))
                if outcome is not None:       # None: out of time before this port was scanned
                    ports.append(port)
                    host_outcomes.append(outcome)
            counts = Counter(outcome[0] for outcome in host_outcomes)
            report = reports[ip]
            report._add_tcp(ports, host_outcomes, frozenset(
                state for state, n in counts.items() if state != "open" and n > SHOWN_STATE_LIMIT))
            with_ttl: list[_connect.Outcome] = []
            for result in report._results:
                if result.state is PortState.OPEN:
                    if fingerprint:
                        identify_tasks.append(self._identify_tcp(ip, result, deadline))
                    else:
                        _apply_identity(result, self._port_hints().identify(b"", result.port, "tcp"))
            for outcome in host_outcomes:
                if outcome[0] == "open" or (outcome[2] and len(with_ttl) < _TTL_SAMPLE):
                    with_ttl.append(outcome)
            replies[ip] = with_ttl
        udp_ports = sorted(set(spec.udp))
        udp_tasks = [self._udp(ip, udp_ports, deadline) for ip in ips] if udp_ports else []
        _, udp_results = await asyncio.gather(asyncio.gather(*identify_tasks), asyncio.gather(*udp_tasks))
        for ip, port_results in udp_results:
            reports[ip]._results.extend(port_results)  # after TCP, in port order: as sorted
        for report in reports.values():
            # Only made PortResults carry OS hints (the compact ports were never identified).
            report.os = _os_guess(report._results, replies.get(report.ip, []))
            report.duration_ms = (time.monotonic() - started) * 1000
        return reports

    def _port_hints(self) -> RuleSet:
        """Port-number hints only (states-only scans): no rule compiled for them."""
        return self._rules if self._rules is not None else port_hint_rules()

    async def _tcp(self, ips: list[str], ports: tuple[int, ...], kind: str, deadline: float,
                   progress: Callable[[int, int], None] | None,
                   ) -> tuple[dict[tuple[str, int], _connect.Outcome], bool]:
        c = self.config
        stop = threading.Event()
        targets = {ip: list(ports) for ip in ips}
        timeout_s = c.connect_timeout_ms / 1000
        if kind == "syn":
            from . import _syn

            work = asyncio.to_thread(_syn.syn_scan, targets, timeout_s=timeout_s, retries=c.retries,
                                     packets_per_sec=c.packets_per_sec, stop=stop, progress=progress)
        else:
            work = asyncio.to_thread(_connect.connect_scan, targets, timeout_s=timeout_s,
                                     retries=c.retries, per_host=c.per_host, budget=self._budget,
                                     stop=stop, progress=progress)
        task = asyncio.ensure_future(work)
        try:
            done, _ = await asyncio.wait({task}, timeout=max(0.1, deadline - time.monotonic()))
            if task in done:
                return task.result(), True
            stop.set()                 # out of time: the engine returns what it has so far
            return await task, False
        except asyncio.CancelledError:
            stop.set()
            raise

    async def _identify_tcp(self, ip: str, result: PortResult, deadline: float) -> None:
        c = self.config
        timeout_s = min(c.banner_timeout_ms / 1000, max(0.1, deadline - time.monotonic()))
        async with self._banner_slots:
            from . import _banner  # ssl and the probes: only when a banner is wanted

            grab = await _banner.grab(ip, result.port, timeout_s=timeout_s,
                                      greet_s=min(1.0, timeout_s / 3))
        identity = self.rules.identify(grab.data, result.port, "tcp")
        if not grab.data and grab.tls is not None:
            identity = Identity(service="ssl", confidence=5, method="probe")
        _apply_identity(result, identity)
        if grab.shown:
            result.banner = escape_banner(grab.shown)
        result.tunnel = grab.tunnel
        result.tls = grab.tls
        result.http_status = grab.http_status
        result.http_title = grab.http_title
        if identity.method == "banner" and grab.probe not in (None, "greeting", "greet+http"):
            result.method = "probe"

    async def _udp(self, ip: str, ports: list[int], deadline: float) -> tuple[str, list[PortResult]]:
        """One host's UDP ports, paced for that host (``_udp.udp_scan``)."""
        c = self.config
        async with self._udp_hosts:
            from . import _udp as udp_io

            outcomes = await udp_io.udp_scan(ip, ports, timeout_s=c.connect_timeout_ms / 1000,
                                             retries=c.retries, deadline=deadline)
        results = []
        for port in ports:
            outcome = outcomes[port]
            result = PortResult(protocol=Protocol.UDP, port=port, state=PortState(outcome.state),
                                reason=outcome.reason)
            _apply_identity(result, self.rules.identify(outcome.data, port, "udp"))
            if outcome.shown:
                result.banner = escape_banner(outcome.shown)
            results.append(result)
        return ip, results


def _syn_available() -> bool:
    # Imported on use: the SYN engine brings ctypes, which a connect scan does not need.
    from . import _syn

    return _syn.available()


def _apply_identity(result: PortResult, identity: Identity) -> None:
    result.service = identity.service
    result.product = identity.product
    result.version = identity.version
    result.extra_info = identity.extra_info
    result.cpe = identity.cpe
    result.os_hint = identity.os_hint
    result.device_type = identity.device_type
    result.confidence = identity.confidence
    result.auth_required = identity.auth_required
    result.method = identity.method


def _os_guess(ports: list[PortResult], outcomes: list[_connect.Outcome]) -> OsGuess | None:
    hints = []
    for p in ports:
        if p.os_hint:
            # os_rules' confidence is not on PortResult; distro-specific names beat generic ones.
            specific = any(ch.isdigit() for ch in p.os_hint)
            source = f"{port_name(p.protocol, p.port)} {p.product or p.service or ''}".strip()
            hints.append(BannerHint(p.os_hint, _family(p.os_hint), 8 if specific else 6, source))
    ttls = [o.ttl for o in outcomes if o.ttl]
    windows = [o.window for o in outcomes if o.state == "open" and o.window]
    return guess_os(hints, ttls, windows)


def _family(name: str) -> str | None:
    lowered = name.lower()
    if "windows" in lowered:
        return "windows"
    if any(w in lowered for w in ("debian", "ubuntu", "linux", "openwrt", "red hat", "centos", "fedora",
                                  "raspberry", "synology", "qnap", "rocky", "alma", "suse")):
        return "linux"
    if "bsd" in lowered or "macos" in lowered:
        return "bsd"
    if "unix" in lowered or "solaris" in lowered:
        return "unix"
    if any(w in lowered for w in ("routeros", "ios", "vrp")):
        return "network"
    return None


def _utcnow() -> datetime:
    return datetime.now(UTC)


ProbeFn = Callable[[list[str]], Awaitable[dict[str, HostReport]]]


class PortProbe:
    """Enricher: probes a host seen alive when it is new or its last probe is stale, and a host
    someone asked to probe now (``ProbeRequested``) at once, if its address is in scope."""

    def __init__(self, config: Config, *, scope: ScopeGuard, claims: Claims | None = None,
                 prober: Prober | None = None, clock: Callable[[], datetime] = _utcnow) -> None:
        self.config = config
        self.scope = scope
        self.claims: Claims = claims or MemoryClaims()
        self.prober = prober or Prober(config)
        self.clock = clock

    async def handle(self, event: Event) -> list[Event]:
        if isinstance(event, ProbeRequested):
            return await self._requested(event)
        if not isinstance(event, HostSeen) or not event.alive or not event.ip:
            return []
        ip = event.ip
        refusal = self.scope.refusal(ip)
        if refusal is not None:          # before any packet, claim or stamp
            raise UnusableEvent(refusal)
        key = _claim_key(ip)
        last = await self.claims.last_done(key)
        if last is not None and (self.clock() - last).total_seconds() < self.config.reprobe_secs:
            return []
        return await self._probe(event.ip, key, event.host_key, event.mac)

    async def _requested(self, event: ProbeRequested) -> list[Event]:
        """Probe now, whatever the re-probe interval; never out of scope, never a stale wish."""
        who = event.requested_by or event.source
        if not act_on_request(self.scope, event.ip, observed_at=event.observed_at, now=self.clock(),
                              max_age_secs=self.config.request_max_age_secs, log=log,
                              stale="port_probe: dropping a probe request for %s by %s: %.0f s old "
                                    "(more than request_max_age_secs)",
                              stale_args=(event.ip, who), refused=f"probe request by {who}"):
            return []
        log.info("port_probe: probing %s now, as %s asked", event.ip, who)
        return await self._probe(event.ip, _claim_key(event.ip), event.host_key, event.mac)

    async def _probe(self, ip: str, key: str, host_key: str, mac: str | None) -> list[Event]:
        """Probe ``ip`` under its claim ``key`` (_claim_key(ip))."""
        if not await self.claims.claim(key, self.config.host_timeout_secs + 60):
            return []                      # another replica is probing it right now
        try:
            spec = self.prober.spec()
            reports = await self.prober.probe([ip], spec)
            report = reports[ip]
            observed = self.clock()
            await self.claims.mark_done(key, observed)
        finally:
            await self.claims.release(key)
        if not report.complete:
            log.warning("port_probe: %s: host timeout, publishing a partial result", ip)
        return [PortsProbed(host_key=host_key, observed_at=observed, source="port_probe", ip=ip,
                            mac=mac, ports=report.shown(), scanned=spec.describe(),
                            scan_type=report.scan_type, os=report.os, duration_ms=report.duration_ms)]


def _claim_key(ip: str) -> str:
    return "port_probe." + ip.replace(":", "_")


def build(config: Config, ctx: StageContext) -> PortProbe:
    return PortProbe(config, scope=ctx.scope_guard(), claims=ctx.claims)
