"""How one-shot commands print: rich tables for people, JSON for machines, progress on stderr.

Every command uses these so tables, JSON and progress bars look the same
everywhere. Attacker-controlled text (banners, hostnames) is printed as data:
rich markup in it is escaped.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import msgspec


class _LazyConsole:
    """A rich Console made on first use: commands that print JSON or XML never import rich
    (it is a fifth of a scan's start-up time)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return getattr(self._console, name)


# Piped output is read by people in files and pagers: do not fold tables at 80 columns.
stdout: Any = _LazyConsole(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 200)
stderr: Any = _LazyConsole(stderr=True, highlight=False)


def escape(text: str) -> str:
    """Escape rich markup in data (banners, hostnames) before it is printed."""
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    return escape(str(value))


def print_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None,
                caption: str | None = None) -> None:
    from rich.table import Table

    table = Table(title=title, caption=caption, header_style="bold", show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    stdout.print(table)


def print_json(value: Any) -> None:
    """JSON to stdout: Structs, dataclasses, datetimes and bytes are handled by msgspec."""
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(value), indent=2).decode() + "\n")
    sys.stdout.flush()


def print_jsonl(value: Any) -> None:
    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")
    sys.stdout.flush()


@contextmanager
def progress(description: str, total: int | None = None, *,
             enabled: bool | None = None) -> Iterator[Callable[[int, int], None]]:
    """A progress bar on stderr (only on a terminal); yields ``update(done, total)``."""
    show = stderr.is_terminal if enabled is None else enabled
    if not show:
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=stderr, transient=True)
    with bar:
        task = bar.add_task(description, total=total)

        def update(done: int, new_total: int) -> None:
            bar.update(task, completed=done, total=new_total)

        yield update


def warn(message: str) -> None:
    stderr.print(f"[yellow]warning:[/yellow] {escape(message)}")
