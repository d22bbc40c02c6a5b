"""lanscope.output: progress bars on a terminal, and network-supplied text printed as data."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from rich.console import Console

from lanscope import output

# Text a host, a DHCP client or a DNS server controls: rich markup, emoji codes, escape
# sequences, control characters.
HOSTILE = {
    "[dc:a6:32:00:00:02]": "[dc:a6:32:00:00:02]",               # read as a style tag, vanished
    "02:ab:c6:12:00:1c": "02:ab:c6:12:00:1c",                   # :ab: became 🆎
    "[bold red]pwned[/bold red]": "[bold red]pwned[/bold red]",
    "host:smile:name": "host:smile:name",
    "evil\x1b[2J\x1b[31mred": "evil\\x1b[2J\\x1b[31mred",      # clear screen, colour
    "bell\x07nul\x00": "bell\\x07nul\\x00",
    "two\nlines\r": "two\\x0alines\\x0d",
}


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """stderr and stdout as terminals writing into one buffer."""
    buffer = io.StringIO()
    for name in ("stdout", "stderr"):
        lazy = getattr(output, name)
        monkeypatch.setattr(lazy, "_console", Console(file=buffer, force_terminal=True, width=300,
                                                      markup=False, emoji=False, highlight=False))
    yield buffer


def test_progress_bar_draws_on_a_terminal(terminal: io.StringIO) -> None:
    """rich's Progress enters its console as a context manager: the lazy console wrapper
    could not be one (`'_LazyConsole' object does not support the context manager protocol`)."""
    with output.progress("probing 198.18.0.10", 4) as update:
        update(2, 4)
    drawn = terminal.getvalue()
    assert "probing 198.18.0.10" in drawn and "━" in drawn and "\x1b[" in drawn


def test_progress_is_silent_off_a_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    with output.progress("scanning", 3, enabled=False) as update:
        update(3, 3)
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize(("given", "shown"), HOSTILE.items())
def test_table_cells_title_and_caption_are_printed_literally(given: str, shown: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    output.print_table(["mac", "banner"], [(given, [given, "x"])], title=f"title {given}",
                       caption=f"caption {given}")
    out = capsys.readouterr().out
    assert out.count(shown) == 4, out
    assert "🆎" not in out and "😄" not in out and "\x1b" not in out and "\x07" not in out


@pytest.mark.parametrize(("given", "shown"), HOSTILE.items())
def test_lines_and_warnings_are_printed_literally(given: str, shown: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    output.print_line(f"host {given}")
    output.warn(f"lease comment {given}")
    output.error(f"VM name {given}")
    captured = capsys.readouterr()
    assert f"host {shown}" in captured.out
    assert f"warning: lease comment {shown}" in captured.err
    assert f"error: VM name {shown}" in captured.err
    assert "\x1b" not in captured.out + captured.err


def test_printable_keeps_text_and_escapes_the_rest() -> None:
    assert output.printable("ssh.lab.test é ✓") == "ssh.lab.test é ✓"
    assert output.printable("a\x1bb\u200bc") == "a\\x1bb\\u200bc"
