"""The one user-facing error base, and the diagnostics it carries.

Every failure a user can cause derives from ServegenError; `generator.cli` is the only
place that turns errors into exit codes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_INTERNAL = 3
EXIT_CLUSTER = 3  # `servegen status`: cannot reach or authenticate to the cluster
EXIT_INTERRUPTED = 130

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """`text` with every unprintable character escaped (`\\n`, `\\x1b`, `\\u2028`).

    Paths and messages carry untrusted text (file names, field values): escaped, none
    can start a new output line, forge a CI workflow command or send a terminal escape.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in text)


# A GitHub runner reads a log line as a command when it starts with `::` (after leading
# spaces) or holds `##[` anywhere, the older form (actions/runner
# src/Runner.Common/ActionCommand.cs, TryParseV2 then TryParse).
_OLD_COMMAND = "##["


def inert_line(line: str) -> str:
    """One output line (already printable()) that a CI runner cannot read as a workflow
    command: a leading `::` and any `##[` get one character spelled out (`\x3a`,
    `\x23`), the way printable() spells out what it escapes."""
    if _OLD_COMMAND in line:
        line = line.replace(_OLD_COMMAND, "#\\x23[")
    body = line.lstrip()
    if body.startswith("::"):
        line = f"{line[: len(line) - len(body)]}\\x3a{body[1:]}"
    return line


def inert_json(text: str) -> str:
    """JSON text whose lines no CI runner reads as a workflow command, holding the very
    same data: `##[` can only be inside a string, where `#\\u0023[` means it too. (A
    line of JSON starts with a bracket, a quote or spaces, never with `::`.)"""
    return text.replace(_OLD_COMMAND, "#\\u0023[")


def cut(text: str, limit: int = 60) -> str:
    """`text` as a message quotes a value: whole when short, else its first characters
    and "..." (a 5,000-digit number is not worth a screenful)."""
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _escape(ch: str) -> str:
    code = ord(ch)
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


@dataclass(frozen=True, order=True)
class Diagnostic:
    """One problem at one place in one file.

    `path` is repository-relative with forward slashes; `line` and `col` are 1-based
    (0 when the problem is about the whole file); `json_path` names the offending node
    (`spec.adapters[0].name`), empty for file-level problems.
    """

    path: str
    line: int
    col: int
    json_path: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        # Line 0: about a path as a whole (a missing folder), with no position inside it.
        path = printable(self.path)
        where = f"{path}:{self.line}:{self.col}" if self.line else path
        what = f"{self.json_path}: {self.message}" if self.json_path else self.message
        return f"{where}: {self.severity}: {printable(what)}"


class ServegenError(Exception):
    """Invalid input or a refused operation: reported without a traceback, exit 1."""

    exit_code = EXIT_INVALID

    def __init__(self, message: str, diagnostics: Iterable[Diagnostic] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.diagnostics = tuple(diagnostics)


class InvalidInputError(ServegenError):
    """Spec files or the repository config failed validation."""

    def __init__(self, diagnostics: Iterable[Diagnostic]) -> None:
        diags = tuple(sorted(diagnostics))
        super().__init__(problems_summary(diags), diags)


def counted(count: int, noun: str) -> str:
    """`1 error`, `3 errors`."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def problems_summary(diagnostics: Iterable[Diagnostic], checked_files: int = 0) -> str:
    """The summary every command ends with: `N errors in M files` (and warnings, if any).

    M counts the files with errors; with none, the `checked_files` that were clean.
    """
    diags = tuple(diagnostics)
    errors = [d for d in diags if d.severity == "error"]
    warnings = sum(1 for d in diags if d.severity == "warning")
    files = len({d.path for d in errors}) if errors else checked_files
    text = f"{counted(len(errors), 'error')} in {counted(files, 'file')}"
    return text + (f", {counted(warnings, 'warning')}" if warnings else "")


class RenderError(ServegenError):
    """A spec could not be rendered, or what it rendered failed validation."""


class UnknownEnvironmentError(ServegenError):
    """A command named an environment servegen.yaml does not declare."""


class GitError(ServegenError):
    """A git operation failed or was refused (publish, diff, push)."""


class UsageError(ServegenError):
    """Bad command-line usage: exit 2."""

    exit_code = EXIT_USAGE


class ClusterError(ServegenError):
    """The cluster cannot be reached, or refuses the credentials or a read: exit 3."""

    exit_code = EXIT_CLUSTER
