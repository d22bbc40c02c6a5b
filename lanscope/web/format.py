"""How values read from the store look on a page (template filters). Plain text out:
the template engine escapes it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

NONE = "\u2013"          # an en dash: the value is not known


def as_time(value: Any) -> datetime | None:
    """A timestamp from a query result (ISO text) or an event (datetime)."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return None


def when(value: Any, seconds: bool = False) -> str:
    at = as_time(value)
    if at is None:
        return NONE
    local = at.astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")


def ago(value: Any) -> str:
    at = as_time(value)
    if at is None:
        return "never"
    secs = (datetime.now(UTC) - at).total_seconds()
    if secs < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if secs >= size:
            return f"{int(secs // size)} {unit} ago"
    return f"{int(secs)} s ago"


def value(raw: Any, limit: int = 200) -> str:
    """A history value or any cell as short text (JSON columns decoded; lists joined)."""
    if (isinstance(raw, str) and raw[:1] in '[{"') or raw in ("true", "false", "null"):
        try:
            raw = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            pass
    if raw is None or raw == [] or raw == "":
        return NONE
    if isinstance(raw, bool):
        return "yes" if raw else "no"
    if isinstance(raw, list):
        text = ", ".join(str(v) for v in raw)
    elif isinstance(raw, dict):
        text = ", ".join(f"{k}: {v}" for k, v in raw.items())
    else:
        text = str(raw)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def decoded(raw: Any) -> Any:
    """A JSON column (tls, last_seen_by, history old/new) as Python values; other values as they are."""
    if isinstance(raw, str):
        try:
            return msgspec.json.decode(raw)
        except msgspec.DecodeError:
            return raw
    return raw
