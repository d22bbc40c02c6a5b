"""The contract between a stage and whatever runs it: the pipeline or a one-shot command.

Every stage folder has a ``build(config, ctx)`` beside its ``Config``: it
takes the stage's own section of config.yaml and a StageContext (the shared
settings, claims, a progress callback) and returns the stage with its real
I/O. It raises StageDisabled when the stage cannot run as configured (no
gateway, no Proxmox host). Stages may import this module; it imports no
NATS and no heavy I/O library.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from lanscope.runtime.claims import Claims, MemoryClaims
from lanscope.settings import DnsConfig, ProxmoxConfig, ScopeConfig
from schemas import Event

if TYPE_CHECKING:
    from lanscope.net.scope import ScopeGuard
    from lanscope.net.targets import Targets

Progress = Callable[[int, int], None]


class DeadLetter(Protocol):
    """Copies what a stage gave up on to ``lanscope.dlq.<stage>``, with the reason in headers.

    For work a stage does after its input was acknowledged (a notification that could not
    be delivered); what fails while an input is handled is the runtime's to dead-letter.
    ``key`` makes the copy's Nats-Msg-Id, so a retried call stores it once. Returns once
    the stream has it."""

    async def __call__(self, stage: str, payload: bytes, *, reason: str, key: str,
                       headers: Mapping[str, str] | None = None) -> None: ...


class StageDisabled(Exception):
    """Raised by a builder when its stage cannot run as configured; the runner says why
    and runs the other stages."""


@dataclass(frozen=True, kw_only=True)
class StageContext:
    """What a builder may hand to a stage besides its own Config: the shared settings
    (lanscope.config.Config.stage_context() fills them from config.yaml), the claims
    store, and a progress callback."""

    data_dir: Path                         # where stages keep state files (DuckDB, registry ...)
    targets: tuple[str, ...] = ()          # config `targets:`; empty: the attached private subnets
    scope: ScopeConfig = field(default_factory=ScopeConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    proxmox: ProxmoxConfig = field(default_factory=ProxmoxConfig)
    claims: Claims = field(default_factory=MemoryClaims)
    progress: Progress | None = None       # long sweeps call it as (done, total)
    sweep: Targets | None = None           # one-shot commands: sweep these (parsed, scope-checked)
    dead_letter: DeadLetter | None = None  # the pipeline's DLQ; None: nowhere (one-shot commands)

    def sweep_targets(self) -> Targets | None:
        """What a sweep covers: the command's targets, else ``targets:`` parsed and checked
        against the scope (raises before any packet), else None: the attached private subnets."""
        if self.sweep is not None:
            return self.sweep
        if not self.targets:
            return None
        from lanscope.net.interfaces import attached_private_networks
        from lanscope.net.scope import check_scope
        from lanscope.net.targets import parse_targets

        targets = parse_targets(self.targets, exclude=self.scope.exclude)
        check_scope(targets, self.scope, attached=attached_private_networks())
        return targets

    def scope_guard(self) -> ScopeGuard:
        """The check before a packet to an address learned from an event: the scope rules
        without flags, and a one-shot command's checked targets (lanscope.net.scope.ScopeGuard)."""
        from lanscope.net.scope import ScopeGuard

        return ScopeGuard(self.scope, granted=self.sweep)


@runtime_checkable
class Producer(Protocol):
    """Says "I saw this host". The runtime calls sweep() every interval_secs."""

    interval_secs: float

    async def sweep(self) -> list[Event]: ...


@runtime_checkable
class Listener(Protocol):
    """A producer that streams instead of sweeping (a passive listener): ``listen()`` yields
    batches of events as they happen and the runtime publishes each one at once. It runs
    until the runtime stops iterating it (``aclose()``), which must release its sockets;
    when it raises, the runtime says why and calls ``listen()`` again after
    ``restart_secs``. A stage may be both: a Producer's ``sweep()`` is then not called."""

    restart_secs: float

    def listen(self) -> AsyncIterator[list[Event]]: ...


@runtime_checkable
class Enricher(Protocol):
    """Adds knowledge to one event; returns zero or more new events.

    Raises only where a retry can help (the runtime naks with a delay)."""

    async def handle(self, event: Event) -> list[Event]: ...


@runtime_checkable
class Sink(Protocol):
    """Keeps state. write() commits a batch and returns the events to publish.

    The runtime publishes the returned events (waiting for PubAck) and only
    then acks the batch. A redelivered input must be harmless: write() returns
    the same outputs for it again (outbox), so nothing is lost between the
    commit and the publish. ``redelivered`` names the inputs the bus delivered
    before (only those can have been committed before); None: any may have been."""

    async def open(self) -> None: ...

    async def write(self, batch: list[Event], redelivered: Collection[str] | None = None) -> list[Event]: ...

    async def close(self) -> None: ...
