"""How one-shot commands print: rich tables for people, JSON for machines, progress on stderr.

Every command prints through these helpers, so tables, JSON and progress bars
look the same everywhere, and so text from the network (MACs, banners,
hostnames, lease comments, VM names, finding evidence) is printed as data in
one place: the consoles read no markup (``[dc:a6:...]`` is not a style) and no
emoji codes (``02:ab:c6`` is not ``02🆎c6``), and control characters are shown
as ``\\xNN`` (an escape sequence in a banner cannot drive the terminal).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import msgspec


class _LazyConsole:
    """A rich Console made on first use: commands that print JSON or XML never import rich
    (it is a fifth of a scan's start-up time). ``console`` is the real one, for rich APIs
    that need a Console itself (a Progress enters it as a context manager)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Any = None

    @property
    def console(self) -> Any:
        if self._console is None:
            from rich.console import Console

            # Data never carries markup or emoji codes: the consoles do not look for them at all.
            self._console = Console(markup=False, emoji=False, highlight=False, **self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.console, name)


# Piped output is read by people in files and pagers: do not fold tables at 80 columns.
stdout: Any = _LazyConsole(soft_wrap=False, width=None if sys.stdout.isatty() else 200)
stderr: Any = _LazyConsole(stderr=True, soft_wrap=True)


def printable(text: str) -> str:
    """``text`` with every non-printable character (ESC, NUL, CR, LF ...) as ``\\xNN``."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}"
                   for c in text)


def _data(value: Any) -> Any:
    """A rich Text holding ``value`` literally (rich never parses a Text for markup or emoji)."""
    from rich.text import Text

    return Text(printable(str(value)))


def _cell(value: Any) -> Any:
    if value is None:
        return _data("")
    if isinstance(value, bool):
        return _data("yes" if value else "no")
    if isinstance(value, float):
        return _data(f"{value:.2f}")
    if isinstance(value, (list, tuple)):
        return _data(", ".join(str(_cell(v)) for v in value))
    return _data(value)


def print_table(columns: Sequence[str], rows: Iterable[Sequence[Any]], *, title: str | None = None,
                caption: str | None = None, err: bool = False) -> None:
    """A table of data (cells, title and caption are printed literally); ``err``: on stderr."""
    from rich.table import Table

    table = Table(title=_data(title) if title else None, caption=_data(caption) if caption else None,
                  header_style="bold", show_lines=False)
    for column in columns:
        table.add_column(_data(column), overflow="fold")
    for row in rows:
        table.add_row(*(_cell(v) for v in row))
    (stderr if err else stdout).print(table)


def print_line(text: str, *, err: bool = False) -> None:
    """One line of plain text (which may hold data) on stdout, or stderr with ``err``."""
    (stderr if err else stdout).print(_data(text))


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
    """A progress bar on stderr (only on a terminal); yields ``update(done, total)``.

    The bar is drawn once as soon as it exists, so even a short run shows it (the
    refresh thread would draw it only after a tenth of a second), and erased at the end."""
    show = stderr.is_terminal if enabled is None else enabled
    if not show:
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                   TimeElapsedColumn(), console=stderr.console, transient=True)
    with bar:
        task = bar.add_task(printable(description), total=total)
        bar.refresh()

        def update(done: int, new_total: int) -> None:
            bar.update(task, completed=done, total=new_total)

        yield update


def warn(message: str) -> None:
    from rich.text import Text

    stderr.print(Text.assemble(("warning:", "yellow"), " ", printable(message)))


def error(message: str) -> None:
    """An error the command reports and goes on from (it sets the exit code itself)."""
    from rich.text import Text

    stderr.print(Text.assemble(("error:", "red"), " ", printable(message)))
