"""The ``notify`` sink: host changes and findings as notifications, through rules in config.

It consumes ``HostChanged`` (new, gone, back, changed, flapping) and ``Finding``
(opened, resolved). For each event the rules decide which targets get a
notification, now or held for a digest (rules.py); the decisions and the
rendered messages are written to a durable ledger (ledger.py) before the batch
is acknowledged, and per-target workers deliver them (dispatch.py): Apprise,
webhooks, MQTT with Home Assistant discovery. A notification is keyed by event
id and target: a redelivered event or a restart never makes a second one, and
one owed at a restart is sent again under the same key. One that cannot be
delivered is dead-lettered to ``lanscope.dlq.notify`` (one entry per event and
target). README.md has the details, including the crash window that remains.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from lanscope.runtime.stage import DeadLetter, StageContext, StageDisabled
from lanscope.settings import NonNegativeInt, PositiveFloat, PositiveInt, Problems
from schemas import Event, Finding, FindingState, HostChanged, encode

from .dispatch import Retry, Sender, TargetQueue
from .inventory import Inventory
from .ledger import Change, Dead, Ledger, Sent, State, apply
from .model import Held, HostFacts, Note, OpenFinding
from .rules import Facts, Matcher, Rule, Window, rule_problems
from .targets import Target

if TYPE_CHECKING:
    from .render import Renderer

log = logging.getLogger(__name__)
STAGE = "notify"
GRACE_SECS = 5.0            # a stop lets a notification being sent finish this long


class Config(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """sinks.notify in config.yaml (documented in config.sample.yaml)."""

    enabled: bool = True
    targets: dict[str, Target] = {}       # name -> one of apprise / webhook / mqtt
    rules: list[Rule] = []                # which events go to which targets, how
    inventory: str = ""                   # the registry's YAML/CSV inventory: known hosts and tags
    known_by: list[KnownBy] = msgspec.field(default_factory=lambda: list(KNOWN_BY))  # what makes hosts known
    max_age_secs: PositiveFloat = 3600.0  # older events update states but notify nobody
    retry: Retry = msgspec.field(default_factory=Retry)
    ledger_file: str = ""                 # empty: <data_dir>/notify/ledger.jsonl
    batch_size: PositiveInt = 200         # events per ledger write when behind
    flush_ms: NonNegativeInt = 200        # a batch waits this long to fill up

    def check(self) -> Problems:
        yield from rule_problems(self.rules, self.targets)
        for name in self.targets:
            if not name or not all(c.isalnum() or c in "-_" for c in name):
                yield f"targets.{name}", "a target's name is letters, digits, - and _"
        if any(r.title or r.text or r.markdown for r in self.rules):
            from .render import Templates  # jinja2 only when there are templates to check

            for i, rule in enumerate(self.rules):
                for key, problem in Templates.problems(rule.title, rule.text, rule.markdown):
                    yield f"rules[{i}].{key}", problem


KnownBy = Literal["inventory", "hostname", "vm", "static_lease"]
KNOWN_BY: tuple[KnownBy, ...] = ("inventory", "hostname", "vm", "static_lease")


def _utcnow() -> datetime:
    return datetime.now(UTC)


def kinds_of(event: Event) -> frozenset[str]:
    """The rule kinds an event is: its change kind (a `changed` whose changes say flapping
    is also, or only, `flapping`), or finding_opened / finding_resolved."""
    if isinstance(event, Finding):
        return frozenset({f"finding_{event.state.value}"})
    assert isinstance(event, HostChanged)
    kind = event.kind.value
    flapping = [c for c in event.changes if c.field == "flapping" and c.new]
    if kind == "changed" and flapping:
        return frozenset({"flapping"} if len(flapping) == len(event.changes) else {"changed", "flapping"})
    return frozenset({kind})


@dataclass
class _Batch:
    """What one batch decided so far (state changes only once it is in the ledger)."""

    now: datetime
    change: Change = field(default_factory=Change)
    hosts: dict[str, HostFacts] = field(default_factory=dict)   # -> change.hosts, before the ledger
    keys: set[str] = field(default_factory=set)


class Notify:
    """Sink: rules, the ledger and one delivery queue per target."""

    def __init__(self, config: Config, *, ledger: Ledger, senders: dict[str, Sender],
                 renderers: dict[str, Renderer], inventory: Inventory | None = None,
                 dead_letter: DeadLetter | None = None, clock: Callable[[], datetime] = _utcnow) -> None:
        self.config = config
        self.ledger = ledger
        self.senders = senders
        self.renderers = renderers
        self.inventory = inventory or Inventory(None)
        self.dead_letter = dead_letter
        self.clock = clock
        self.rules = [(rule, Matcher(rule)) for rule in config.rules]
        self._rules_by_name = {rule.name: rule for rule in config.rules}
        self.state = State()
        self.queues = {name: TargetQueue(sender, config.retry, self._settle)
                       for name, sender in senders.items()}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._releaser: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        self.state = await self.ledger.open()
        await self.inventory.refresh(force=True)
        await self._compact()
        for sender in self.senders.values():
            await sender.start()
        for queue in self.queues.values():
            queue.start()
        orphans = [n for n in self.state.pending.values() if n.target not in self.queues]
        for note in self.state.pending.values():
            if note.target in self.queues:
                self.queues[note.target].put(note)
        for note in orphans:
            await self._settle(note, f"target {note.target!r} is no longer configured")
        self._releaser = asyncio.create_task(self._release_loop(), name="notify:digests")
        log.info("notify: %d targets, %d rules; %d notifications owed, %d events held for digests",
                 len(self.senders), len(self.rules), len(self.state.pending), len(self.state.held))

    async def close(self) -> None:
        if self._releaser is not None:
            self._releaser.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._releaser
        await asyncio.gather(*(q.stop(GRACE_SECS) for q in self.queues.values()))
        for sender in self.senders.values():
            with contextlib.suppress(Exception):
                await sender.close()
        async with self._lock:
            await self._compact()
        self.ledger.close()

    def idle(self) -> bool:
        """Nothing owed and nothing being sent (held digests wait for their time)."""
        return not self.state.pending and all(q.idle() for q in self.queues.values())

    # ------------------------------------------------------------------ a batch

    async def write(self, batch: list[Event], redelivered: Collection[str] | None = None) -> list[Event]:
        # Every input is checked against the ledger's keys anyway: `redelivered` is not needed.
        async with self._lock:
            await self.inventory.refresh()
            work = _Batch(self.clock())
            horizon = work.now - timedelta(seconds=self.config.max_age_secs)
            for event in sorted(batch, key=lambda e: e.observed_at):
                if isinstance(event, HostChanged):
                    self._fold_host(event, work)
                elif isinstance(event, Finding):
                    self._fold_finding(event, work)
                else:
                    continue
                if event.observed_at >= horizon:
                    self._route(event, work)
            work.change.hosts = list(work.hosts.values())
            if work.change:
                await self.ledger.append(work.change)    # durable before the batch is acknowledged
                self._applied(work.change)
                if self.ledger.due():
                    await self._compact()
        return []

    def _fold_host(self, event: HostChanged, work: _Batch) -> None:
        old = self._host(event.host_key, work)
        if old is not None and old.observed_at is not None and event.observed_at < old.observed_at:
            return      # an older record than the one kept
        work.hosts.pop(event.host_key, None)    # the batch's hosts go to the ledger in order of last change
        work.hosts[event.host_key] = HostFacts.of(event)

    def _fold_finding(self, event: Finding, work: _Batch) -> None:
        if event.state is FindingState.OPENED:
            work.change.opened.append(OpenFinding.of(event))
        else:
            work.change.resolved.append(event.finding_id)
        if event.host_key not in work.hosts and event.host_key not in self.state.hosts:
            work.hosts[event.host_key] = HostFacts(host_key=event.host_key, ip=event.ip, mac=event.mac,
                                                   observed_at=event.observed_at)

    def _host(self, key: str, work: _Batch) -> HostFacts | None:
        return work.hosts.get(key) or self.state.hosts.get(key)

    def _route(self, event: Event, work: _Batch) -> None:
        kinds = kinds_of(event)
        host = self._host(event.host_key, work)
        ip = event.ip if isinstance(event, Finding) and event.ip else host.ip if host else None
        known, tags = self.known(host), self.inventory.tags(host)
        facts = Facts(kinds=kinds, ip=ip, vendor=host.vendor if host else None,
                      device_type=host.device_type if host else None, known=known, tags=tags,
                      fields=frozenset(c.field for c in event.changes) if isinstance(event, HostChanged)
                      else frozenset(),
                      severity=event.severity if isinstance(event, Finding) else None)
        served: set[str] = set()     # a target gets one notification per event: the first rule's
        shared: tuple[dict[str, Any], msgspec.Raw] | None = None   # the same for every rule: made once
        for rule, matcher in self.rules:
            if not matcher.matches(facts):
                continue
            targets = [t for t in rule.targets if t in self.queues and t not in served
                       and not self._decided(f"{event.id}/{t}", work)]
            if not targets:
                continue
            served.update(targets)
            kind = "flapping" if "flapping" in kinds & matcher.kinds else min(kinds & matcher.kinds)
            renderer = self.renderers[rule.name]
            if shared is None:
                shared = (renderer.host(host, event.host_key, known=known, tags=tags),
                          msgspec.Raw(encode(event)))
            host_view, raw = shared
            message = renderer.event(event, kind, host_view)
            self._decide(rule, event, raw, kind, targets, message, (renderer.when(event.observed_at),
                                                                    host_view["label"]), work)

    def _decided(self, key: str, work: _Batch) -> bool:
        """Whether event id/target ``key`` was decided before (a redelivery): owed, held or done."""
        state = self.state
        return key in work.keys or key in state.pending or key in state.done or key in state.held

    def _decide(self, rule: Rule, event: Event, raw: msgspec.Raw, kind: str, targets: list[str],
                message: tuple[str, str, str], where: tuple[str, str], work: _Batch) -> None:
        now, change = work.now, work.change
        title, text, md = message
        quiet_end = rule.quiet_hours.ends_after(now) if rule.quiet_hours is not None else None
        names = ", ".join(targets)
        if quiet_end is not None and rule.quiet_hours is not None and not rule.quiet_hours.hold:
            for target in targets:
                change.dropped[f"{event.id}/{target}"] = event.observed_at
                work.keys.add(f"{event.id}/{target}")
            log.info("notify: rule %s: %s dropped for %s (quiet hours)", rule.name, title, names)
            return
        held: list[str] = []
        for target in targets:
            key = f"{event.id}/{target}"
            work.keys.add(key)
            release = self._release_time(rule, target, now, quiet_end, change)
            if release is None:
                change.notes.append(Note(
                    key=key, target=target, rule=rule.name, kind=kind, title=title, text=text, markdown=md,
                    events=[raw], event_ids=[event.id], subject=event.host_key, observed_at=event.observed_at,
                    created_at=now))
            else:
                at, why = release
                held.append(f"{target} ({why})")
                change.held.append(Held(
                    key=key, target=target, rule=rule.name, kind=kind, title=title, text=text, markdown=md,
                    when=where[0], host=where[1], subject=event.host_key, event=raw, event_id=event.id,
                    observed_at=event.observed_at, release_at=at, why=why))
        if len(held) < len(targets):
            change.sends.append((rule.name, now))
            log.info("notify: rule %s: %s -> %s", rule.name, title, names)
        if held:
            log.info("notify: rule %s: %s held for %s", rule.name, title, ", ".join(held))

    def _release_time(self, rule: Rule, target: str, now: datetime, quiet_end: datetime | None,
                      change: Change) -> tuple[datetime, str] | None:
        """When an event for ``target`` by ``rule`` goes out, if not now: (when, why)."""
        times: list[tuple[datetime, str]] = []
        if rule.digest_secs > 0:
            buffered = [h.release_at for h in (*self.state.held.values(), *change.held)
                        if h.rule == rule.name and h.target == target]
            times.append((min(buffered) if buffered else now + timedelta(seconds=rule.digest_secs), "digest"))
        if rule.rate_limit is not None:
            window = Window(list(self.state.sends.get(rule.name, [])) +
                            [at for name, at in change.sends if name == rule.name])
            room = window.room_at(rule.rate_limit, now)
            if room is not None:
                times.append((room, "rate limit"))
        if quiet_end is not None:
            times.append((quiet_end, "quiet hours"))
        return max(times) if times else None

    # ------------------------------------------------------------------ held events: digests

    async def _release_loop(self) -> None:
        while True:
            due = self._next_release()
            wait = None if due is None else max((due - self.clock()).total_seconds(), 0.0)
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            async with self._lock:
                await self._release_due()

    def _buffers(self) -> dict[tuple[str, str], list[Held]]:
        buffers: dict[tuple[str, str], list[Held]] = {}
        for held in self.state.held.values():
            buffers.setdefault((held.rule, held.target), []).append(held)
        return buffers

    def _effective_release(self, rule: Rule | None, items: list[Held]) -> datetime:
        """A buffer goes out at its earliest release time, not inside its quiet hours, and
        when its rate limit has room."""
        now = self.clock()
        at = min(h.release_at for h in items)
        if rule is None:
            return at
        quiet = rule.quiet_hours.ends_after(max(at, now)) if rule.quiet_hours is not None else None
        if quiet is not None:
            at = max(at, quiet)
        if rule.rate_limit is not None:
            room = Window(list(self.state.sends.get(rule.name, []))).room_at(rule.rate_limit, max(at, now))
            if room is not None:
                at = max(at, room)
        return at

    def _next_release(self) -> datetime | None:
        times = [self._effective_release(self._rules_by_name.get(rule), items)
                 for (rule, _), items in self._buffers().items()]
        return min(times) if times else None

    async def _release_due(self) -> None:
        now = self.clock()
        counted: set[str] = set()    # a rule's digests of one round are one message to its rate limit
        for (rule_name, target), items in self._buffers().items():
            rule = self._rules_by_name.get(rule_name)
            if self._effective_release(rule, items) > now:
                continue
            items.sort(key=lambda h: h.observed_at)
            if rule is None or target not in self.queues:
                for held in items:
                    await self._dead_letter(target, rule_name, held.key, [held.event], [held.event_id],
                                            "its rule or target is no longer configured")
                await self._commit(Change(released=[h.key for h in items]))
                continue
            note = self._digest(rule, target, items, now)
            await self._commit(Change(notes=[note], released=[h.key for h in items],
                                      sends=[] if rule.name in counted else [(rule.name, now)]))
            counted.add(rule.name)
            log.info("notify: rule %s: %s -> %s", rule.name, note.title, target)

    def _digest(self, rule: Rule, target: str, items: list[Held], now: datetime) -> Note:
        if len(items) == 1:      # alone, an event goes out as itself, under its own key
            h = items[0]
            return Note(key=h.key, target=target, rule=rule.name, kind=h.kind, title=h.title, text=h.text,
                        markdown=h.markdown, events=[h.event], event_ids=[h.event_id], subject=h.subject,
                        observed_at=h.observed_at, created_at=now)
        digest = hashlib.blake2b("\0".join(h.key for h in items).encode(), digest_size=16).hexdigest()
        title, text, md = self.renderers[rule.name].digest(items, items[-1].why)
        return Note(key=f"digest-{digest}/{target}", target=target, rule=rule.name, kind="digest",
                    title=title, text=text, markdown=md, events=[h.event for h in items],
                    event_ids=[h.event_id for h in items], subject=rule.name,
                    observed_at=items[-1].observed_at, created_at=now)

    # ------------------------------------------------------------------ bookkeeping

    async def _commit(self, change: Change) -> None:
        await self.ledger.append(change)
        self._applied(change)

    def _applied(self, change: Change) -> None:
        """``change`` is in the ledger: apply it, hand its notifications to their queues."""
        apply(self.state, change)
        for note in change.notes:
            self.queues[note.target].put(note)
        if change.held:
            self._wake.set()
        changed = {h.host_key for h in change.hosts}
        if changed or change.opened or change.resolved:
            for sender in self.senders.values():
                mirror = getattr(sender, "changed", None)
                if mirror is not None:
                    mirror(changed)

    async def _settle(self, note: Note, reason: str | None) -> None:
        """A queue is done with ``note``: sent (reason None) or given up (dead-lettered)."""
        if reason is None:
            log.info("notify: sent %s to %s (%s)", note.kind, note.target, note.title)
        else:
            log.warning("notify: giving up %s to %s: %s", note.kind, note.target, reason)
            await self._dead_letter(note.target, note.rule, note.key, note.events, note.event_ids, reason)
        async with self._lock:
            try:
                record = Sent(note.key) if reason is None else Dead(note.key, reason)
                await self.ledger.append(record)
                apply(self.state, record)
                if self.ledger.due():
                    await self._compact()
            except Exception as exc:   # the disk: it stays owed, and goes out again after a restart
                log.error("notify: cannot record %s of %s: %s", "delivery" if reason is None else "failure",
                          note.key, exc)

    async def _dead_letter(self, target: str, rule: str, key: str, events: list[msgspec.Raw],
                           event_ids: list[str], reason: str) -> None:
        if self.dead_letter is None:
            log.error("notify: no dead-letter queue here; %s to %s is lost: %s", key, target, reason)
            return
        for raw, event_id in zip(events, event_ids, strict=True):
            await self.dead_letter(STAGE, bytes(raw), reason=f"target {target}: {reason}",
                                   key=f"{event_id}-{target}",
                                   headers={"Lanscope-Notify-Target": target, "Lanscope-Notify-Rule": rule,
                                            "Lanscope-Notify-Key": key, "Lanscope-Event-Id": event_id})

    async def _compact(self) -> None:
        forget = self.clock() - timedelta(seconds=self.config.max_age_secs + 600)
        await self.ledger.compact(self.state, forget_before=forget)

    def known(self, host: HostFacts | None) -> bool:
        """Known: in the inventory, or with a hostname, a Proxmox guest name or a static DHCP lease
        (those of them ``known_by`` names)."""
        if host is None:
            return False
        by = self.config.known_by
        return bool(("hostname" in by and host.hostname) or ("vm" in by and host.vm_name)
                    or ("static_lease" in by and host.dhcp_type == "static")
                    or ("inventory" in by and self.inventory.has(host)))


def build(config: Config, ctx: StageContext) -> Notify:
    if not config.targets:
        raise StageDisabled("no targets under sinks.notify.targets")
    from .render import Renderer

    ledger = Ledger(Path(config.ledger_file or ctx.data_dir / "notify" / "ledger.jsonl"))
    inventory = Inventory(Path(config.inventory) if config.inventory else None)
    holder: list[Notify] = []       # the MQTT senders mirror the stage's hosts, once it exists
    senders = {name: make_sender(name, target, holder) for name, target in config.targets.items()}
    stage = Notify(config, ledger=ledger, senders=senders, inventory=inventory, dead_letter=ctx.dead_letter,
                   renderers={rule.name: Renderer(rule) for rule in config.rules})
    holder.append(stage)
    return stage


def make_sender(name: str, target: Target, stage: list[Notify] | None = None) -> Sender:
    """The sender of one target (its I/O module imported now). ``stage``: where the stage
    whose hosts an MQTT target mirrors will be (None: it sends notifications only)."""
    if target.apprise is not None:
        from ._apprise import AppriseSender

        return AppriseSender(name, target.apprise)
    if target.webhook is not None:
        from ._webhook import WebhookSender

        return WebhookSender(name, target.webhook)
    assert target.mqtt is not None
    from ._mqtt import MqttSender, View

    if stage is None:
        return MqttSender(name, target.mqtt, None)
    return MqttSender(name, target.mqtt, View(
        hosts=lambda: stage[0].state.hosts, findings=lambda: stage[0].state.findings,
        known=lambda host: stage[0].known(host)))


__all__ = ["Config", "Notify", "build", "kinds_of", "make_sender"]
