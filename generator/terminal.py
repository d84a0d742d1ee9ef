"""What people see in a terminal: colour, the one summary line per command, progress bars.

Colour and progress bars appear only on a terminal: never in pipes, files or CI logs,
never with `--no-color` or a non-empty NO_COLOR (https://no-color.org). rich is imported
only when something is printed, so `servegen --help` stays fast.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from generator import progress
from generator.errors import Diagnostic, inert_line, printable

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID
    from rich.table import Table

PREFIX = "servegen: "
PROGRESS_AFTER_S = 1.0  # a bar for work that takes longer than this; none for quick runs

_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "note": "cyan"}


def use_color(stream: TextIO, color: bool | None = None) -> bool:
    """`color` True/False decides; None means: only on a terminal and without NO_COLOR."""
    if color is False or os.environ.get("NO_COLOR"):
        return False
    if color:
        return True
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def console(stream: TextIO, color: bool | None = None, width: int | None = None) -> Console:
    from rich.console import Console

    colored = use_color(stream, color)
    return Console(
        file=stream,
        force_terminal=colored,
        no_color=not colored,
        color_system="standard" if colored else None,
        highlight=False,
        markup=False,
        emoji=False,
        soft_wrap=True,
        width=width,
    )


def _write(stream: TextIO, parts: list[tuple[str, str]], color: bool | None) -> None:
    """One line from (text, style) parts; plain text when not colouring. No line of it
    sends a terminal escape or can be read as a CI workflow command (errors.printable,
    errors.inert_line), even where the parts meet: a path the user typed included."""
    plain = "".join(text for text, _ in parts)
    inert = "\n".join(inert_line(printable(line)) for line in plain.split("\n"))
    if inert != plain:
        parts = [(inert, "")]  # rare: its styles go with what was escaped
    if not use_color(stream, color):
        stream.write(inert + "\n")
        return
    from rich.text import Text

    line = Text()
    for text, style in parts:
        line.append(text, style=style or None)
    console(stream, color).print(line)


def shown_path(path: Path) -> str:
    """`path` as the reader can use it from where the command runs: `-C examples --out
    ../output` names `examples/../output`, shown as `output`.

    Only a path with `..` in it changes. The folder holding its last part is resolved
    as the system does (`..` after a linked folder leads to the link's parent on its
    target's side), so the text names the same file; the last part itself is kept, so
    a link there is still shown as the link.
    """
    if ".." not in path.parts:
        return str(path)
    if path.name == "..":
        named = Path(os.path.realpath(path))
    else:
        named = Path(os.path.realpath(path.parent)) / path.name
    relative = os.path.relpath(named)
    return str(named) if relative == ".." or relative.startswith(".." + os.sep) else relative


def summary(
    message: str, *, ok: bool = True, stream: TextIO | None = None, color: bool | None = None
) -> None:
    """The one closing line of a command: `servegen: <message>`."""
    out = stream or (sys.stdout if ok else sys.stderr)
    _write(out, [(PREFIX, "bold"), (message, "green" if ok else "bold red")], color)


def note(message: str, *, stream: TextIO | None = None, color: bool | None = None) -> None:
    out = stream or sys.stderr
    _write(out, [(PREFIX, "bold"), ("note: ", _SEVERITY_STYLE["note"]), (message, "")], color)


def error(message: str, *, stream: TextIO | None = None, color: bool | None = None) -> None:
    out = stream or sys.stderr
    _write(out, [(PREFIX, "bold"), ("error: ", _SEVERITY_STYLE["error"]), (message, "")], color)


def diagnostic(d: Diagnostic, *, stream: TextIO | None = None, color: bool | None = None) -> None:
    """`file:line:col: error: path: message`, with the position and severity coloured."""
    out = stream or sys.stderr
    text = str(d)
    head = f"{d.path}:{d.line}:{d.col}: " if d.line else f"{d.path}: "
    marker = f"{d.severity}: "
    if not text.startswith(head + marker):
        _write(out, [(text, "")], color)
        return
    rest = text[len(head + marker) :]
    style = _SEVERITY_STYLE.get(d.severity, "")
    _write(out, [(head, "bold"), (marker, style), (rest, "")], color)


def table(*columns: str) -> Table:
    from rich.table import Table

    return Table(*columns)


def print_table(rows: Table, color: bool | None = None, stream: TextIO | None = None) -> None:
    console(stream or sys.stdout, color, width=200).print(rows)


@contextlib.contextmanager
def progress_bar(label: str, *, color: bool | None = None) -> Iterator[None]:
    """A progress bar on stderr for `generator.progress` steps reported inside the block.

    Shown only on a terminal, and only once the work has run for PROGRESS_AFTER_S, so
    quick runs and every pipe or log stay free of it. It disappears when done.
    """
    isatty = getattr(sys.stderr, "isatty", None)
    if not (isatty and isatty()):
        yield
        return
    bar = _LazyBar(label, color)
    try:
        with progress.reporting(bar.step):
            yield
    finally:
        bar.stop()


class _LazyBar:
    """A rich progress bar that starts only after PROGRESS_AFTER_S."""

    def __init__(self, label: str, color: bool | None) -> None:
        self.label = label
        self.color = color
        self.started = time.perf_counter()
        self.bar: Progress | None = None
        self.task: TaskID | None = None

    def step(self, done: int, total: int) -> None:
        if self.bar is None:
            if time.perf_counter() - self.started < PROGRESS_AFTER_S:
                return
            self._start(total)
        assert self.bar is not None and self.task is not None
        self.bar.update(self.task, completed=done, total=total)

    def _start(self, total: int) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.bar = Progress(
            TextColumn(self.label),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console(sys.stderr, self.color),
            transient=True,
        )
        self.task = self.bar.add_task(self.label, total=total)
        self.bar.start()

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


class TerminalReporter:
    """The command line's `generator.reporter.Reporter`: notes as `servegen: note: ...`."""

    def __init__(self, color: bool | None = None, stream: TextIO | None = None) -> None:
        self.color = color
        self.stream = stream  # None: stderr at the time of each note

    def note(self, message: str) -> None:
        note(message, stream=self.stream, color=self.color)
