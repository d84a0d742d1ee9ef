"""How core code tells people something without knowing where they are.

publish, diff, promote and the watch loop never print. What they have to say besides
their result (a note: "local branch not updated", "publishing a replacement") goes to
the `Reporter` they are given. The command line passes one that writes to the terminal
(`terminal.TerminalReporter`); library callers and tests pass `Notes`, which keeps them.
Progress of long work has its own ambient listener (generator/progress.py).
"""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    def note(self, message: str) -> None:
        """Something worth knowing that is not an error; one message, maybe several lines."""


class Notes:
    """A Reporter that keeps what it is told, in order."""

    def __init__(self) -> None:
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(message)
