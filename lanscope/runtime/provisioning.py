"""Helpers of Bus.provision: comparing stream and consumer configs, and waiting out a
JetStream that cannot answer yet (a cluster electing a leader)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from nats.js.api import StreamConfig

from lanscope.errors import LanscopeError

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long provisioning waits out a JetStream that cannot answer yet: a cluster electing a
# leader (a node just died, or the cluster just started) answers with timeouts and 503s.
PATIENCE_SECS = 60.0


class ProvisioningError(LanscopeError):
    """JetStream did not answer the provisioning for PATIENCE_SECS."""


async def settled(step: Callable[..., Awaitable[T]], transient: tuple[type[BaseException], ...],
                  *args: Any) -> T:
    """``await step(*args)``, again while it fails with a ``transient`` error, for a while."""
    deadline = time.monotonic() + PATIENCE_SECS
    delay = 0.25
    while True:
        try:
            return await step(*args)
        except transient as exc:
            if time.monotonic() >= deadline:
                raise ProvisioningError(f"provisioning: JetStream did not answer for {PATIENCE_SECS:g}s "
                                        f"({type(exc).__name__})") from None
            log.warning("provisioning: %s; retrying", type(exc).__name__)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 5.0)


def sources_of(config: StreamConfig) -> list[tuple[str, str | None, str | None, str | None]]:
    """A stream's sources, comparable: (name, filter, API prefix, deliver prefix)."""
    return sorted((s.name, s.filter_subject, s.external.api if s.external else None,
                   s.external.deliver if s.external else None) for s in config.sources or ())


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(float(a) - float(b)) < 1e-3
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return sorted(a or ()) == sorted(b or ())
    return bool(a == b or (not a and not b))


def differences(have: Any, wanted: Any, fields: tuple[str, ...]) -> list[str]:
    """The ``fields`` whose wanted value (when set) differs from the one the server has."""
    return [f for f in fields if getattr(wanted, f) is not None
            and not _same(getattr(have, f), getattr(wanted, f))]
