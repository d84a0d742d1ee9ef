"""Reporters for diagnostics: text for people, JSON for machines, GitHub workflow commands.

GitHub shows at most 10 error annotations per step, so the github format annotates the
first 10 and writes every diagnostic to the job summary ($GITHUB_STEP_SUMMARY).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from generator import terminal
from generator.errors import Diagnostic, inert_json, printable

MAX_ANNOTATIONS = 10


def report(
    diagnostics: Sequence[Diagnostic],
    fmt: str,
    stream: TextIO | None = None,
    summary: str = "",
    color: bool | None = None,
) -> None:
    """Every diagnostic, then the summary line (`servegen: <summary>`) unless JSON."""
    out = stream or sys.stdout
    ok = not any(d.severity == "error" for d in diagnostics)
    if fmt == "json":
        out.write(inert_json(json.dumps(to_json(diagnostics, summary), indent=2)) + "\n")
        return
    if fmt == "github":
        write_github(diagnostics, out)
        color = False  # workflow logs: plain text
    else:
        for diagnostic in diagnostics:
            terminal.diagnostic(diagnostic, stream=out, color=color)
    if summary:
        terminal.summary(summary, ok=ok, stream=out, color=color)


def to_json(diagnostics: Sequence[Diagnostic], summary: str = "") -> dict[str, object]:
    return {
        "ok": not any(d.severity == "error" for d in diagnostics),
        "summary": summary,
        "diagnostics": [
            {
                "path": d.path,
                "line": d.line,
                "col": d.col,
                "json_path": d.json_path,
                "message": d.message,
                "severity": d.severity,
            }
            for d in diagnostics
        ],
    }


def escape_data(text: str) -> str:
    # % and line breaks are escaped per the workflow-command rules; any other unprintable
    # character (ESC, U+2028, ...) is spelled out, so none reaches the log raw.
    return printable(text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A"))


def escape_property(text: str) -> str:
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_command(diagnostic: Diagnostic) -> str:
    level = "error" if diagnostic.severity == "error" else "warning"
    props = [f"file={escape_property(diagnostic.path)}"]
    if diagnostic.line:
        props += [f"line={diagnostic.line}", f"col={diagnostic.col}"]
    title = diagnostic.json_path or "servegen"
    props.append(f"title={escape_property(title)}")
    return f"::{level} {','.join(props)}::{escape_data(diagnostic.message)}"


def write_github(diagnostics: Sequence[Diagnostic], out: TextIO) -> None:
    for diagnostic in diagnostics[:MAX_ANNOTATIONS]:
        out.write(github_command(diagnostic) + "\n")
    if len(diagnostics) > MAX_ANNOTATIONS:
        rest = len(diagnostics) - MAX_ANNOTATIONS
        out.write(f"{rest} more problem(s) are listed in the job summary\n")
    summary_file = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary_file and diagnostics:
        with Path(summary_file).open("a", encoding="utf-8") as handle:
            handle.write(summary_markdown(diagnostics))


def _code(text: str) -> str:
    """Table cell text inside backticks: one line, no way out of the code span (so no
    @mention, link or image a spec's text holds comes alive in the job summary)."""
    return printable(text).replace("|", "\\|").replace("`", "'")


def summary_markdown(diagnostics: Sequence[Diagnostic]) -> str:
    rows = [
        f"| `{_code(d.path)}:{d.line}:{d.col}` | `{_code(d.json_path)}` | `{_code(d.message)}` |"
        for d in diagnostics
    ]
    head = f"### servegen: {len(diagnostics)} problem(s)\n\n| where | field | problem |\n"
    return head + "|---|---|---|\n" + "\n".join(rows) + "\n\n"
