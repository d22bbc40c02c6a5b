"""Keeping target secrets out of logs and errors.

A target's URL may carry its credentials (an Apprise URL's token, a webhook's path
key). Every secret a target holds is registered here; ``redact`` replaces each in a
text by ``***``, and a logging filter does the same for what the libraries log
(Apprise logs its request URLs at debug level, some with the token in them).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import parse_qsl, unquote, urlsplit

_MIN_SECRET = 4          # shorter pieces (ports, "on") would blank out ordinary words
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def token_like(text: str) -> bool:
    """A path segment that looks like a key: long, or mixing letters and digits."""
    return len(text) >= 16 or (len(text) >= 8 and any(c.isdigit() for c in text)
                               and any(c.isalpha() for c in text))


def url_secrets(url: str) -> set[str]:
    """The parts of a URL that may be secret: the whole URL, its password, its query values,
    and path segments that look like keys (a Slack or Discord webhook's path is its secret)."""
    found = {url}
    parts = urlsplit(url)
    if parts.password:
        found |= {parts.password, unquote(parts.password)}
    for segment in parts.path.split("/"):
        if token_like(unquote(segment)):
            found |= {segment, unquote(segment)}
    for _, value in parse_qsl(parts.query, keep_blank_values=True):
        found.add(value)
    return {s for s in found if len(s) >= _MIN_SECRET}


def register(secrets: Iterable[str]) -> None:
    global _pattern
    _secrets.update(s for s in secrets if len(s) >= _MIN_SECRET)
    _pattern = re.compile("|".join(re.escape(s) for s in sorted(_secrets, key=len, reverse=True))) \
        if _secrets else None


def redact(text: str) -> str:
    """``text`` with every registered secret replaced by ``***`` (longest first)."""
    return _pattern.sub("***", text) if _pattern is not None else text


class RedactingFilter(logging.Filter):
    """Rewrites a record's message with the secrets redacted."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


def guard_logger(name: str) -> None:
    """Install the filter on a library's logger (once)."""
    logger = logging.getLogger(name)
    if not any(isinstance(f, RedactingFilter) for f in logger.filters):
        logger.addFilter(RedactingFilter())


__all__ = ["RedactingFilter", "guard_logger", "redact", "register", "token_like", "url_secrets"]
