"""Progress of long work (rendering N specs), reported to whoever is listening.

The pipeline calls `step(done, total)`; a command that wants a progress bar listens with
`reporting(callback)`. Nothing listens by default, so library callers and tests pay
one context-variable lookup per step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextvars import ContextVar

Callback = Callable[[int, int], None]

_listener: ContextVar[Callback | None] = ContextVar("servegen_progress", default=None)


@contextlib.contextmanager
def reporting(callback: Callback) -> Iterator[None]:
    token = _listener.set(callback)
    try:
        yield
    finally:
        _listener.reset(token)


def step(done: int, total: int) -> None:
    listener = _listener.get()
    if listener is not None:
        listener(done, total)
