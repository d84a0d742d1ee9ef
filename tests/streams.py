"""Reading a child process's output line by line without blocking the test."""

from __future__ import annotations

import queue
from collections.abc import Iterable


def pump_lines(stream: Iterable[str], lines: queue.Queue[str]) -> None:
    """Put every line of `stream` on `lines` (run in a daemon thread)."""
    for line in stream:
        lines.put(line)
