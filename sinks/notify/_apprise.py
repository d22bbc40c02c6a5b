"""Apprise targets: one URL each (ntfy, Gotify, Telegram, Slack, Discord, Matrix, e-mail ...).

Apprise speaks to the service; this module picks the body (Markdown where the
service takes Markdown or HTML, which Apprise converts it to; plain text
elsewhere), runs the blocking send in a thread, and turns a failure into a reason
from Apprise's own log of the attempt, with the URL's secrets redacted. Apprise has
no idempotency key: see README.md for what a restart can repeat.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any
from urllib.parse import urlsplit

import apprise

from . import _redact
from .dispatch import DeliveryError
from .model import Note
from .targets import AppriseTarget

_TYPES = {"new": apprise.NotifyType.INFO, "changed": apprise.NotifyType.INFO,
          "gone": apprise.NotifyType.WARNING, "flapping": apprise.NotifyType.WARNING,
          "back": apprise.NotifyType.SUCCESS, "finding_opened": apprise.NotifyType.FAILURE,
          "finding_resolved": apprise.NotifyType.SUCCESS}
_TOKENS = re.compile(r"[^/:@?&=#,+]+")


class AppriseSender:
    kind = "apprise"

    def __init__(self, name: str, target: AppriseTarget) -> None:
        self.name = name
        self.target = target
        url = str(target.url)
        scheme = urlsplit(url).scheme
        _redact.register({url})       # Apprise logs a URL it cannot parse, whole
        _redact.guard_logger(apprise.LOGGER_NAME)
        plugin = apprise.Apprise.instantiate(url)
        if plugin is None:
            raise ValueError(f"sinks.notify.targets.{name}.apprise.url: Apprise does not understand this "
                             f"{scheme}:// URL (https://appriseit.com/services/ has each service's URL)")
        # What Apprise's privacy form hides is secret, in the form it prints too.
        private = set(_TOKENS.findall(plugin.url(privacy=True)))
        _redact.register({t for t in _TOKENS.findall(plugin.url()) if t not in private}
                         | {t for t in _TOKENS.findall(url) if t not in private and _redact.token_like(t)})
        self.service = str(getattr(plugin, "service_name", scheme))
        self.markdown = target.format == "markdown" or (
            target.format == "auto" and plugin.notify_format in (apprise.NotifyFormat.MARKDOWN,
                                                                  apprise.NotifyFormat.HTML))
        self._apprise = apprise.Apprise()
        self._apprise.add(plugin)

    async def start(self) -> None:
        pass

    async def send(self, note: Note) -> None:
        body, body_format = ((note.markdown, apprise.NotifyFormat.MARKDOWN) if self.markdown
                             else (note.text, apprise.NotifyFormat.TEXT))
        kind = "finding_opened" if note.kind == "digest" else note.kind
        result = await asyncio.to_thread(
            self._apprise.notify, body=body or note.title, title=note.title, body_format=body_format,
            notify_type=_TYPES.get(kind, apprise.NotifyType.INFO), timeout=self.target.timeout_secs)
        if not result:
            raise DeliveryError(f"{self.service}: {_reason(result)}")

    async def close(self) -> None:
        pass


def _reason(result: Any) -> str:
    """What Apprise logged about the failed attempt (its warnings and errors), redacted."""
    lines = [entry.message for entry in getattr(result, "logs", lambda: [])()
             if entry.level in ("WARNING", "ERROR", "CRITICAL")]
    text = "; ".join(dict.fromkeys(" ".join(line.split()) for line in lines)) or "Apprise reported a failure"
    return _redact.redact(text)[:500]
