"""`servegen watch`: re-render (and optionally publish) whenever a spec or the config changes.

Output: one line per batch for people, or with --format json one JSON object per line
for machines: `type` (start, batch, error, publish, stop), `time` (epoch seconds),
`message`, and for builds `ok`, `full`, `changed` and `rendered` (lists), `written` and
`removed` (counts), `models`, `elapsed_ms` (processing; with --publish it includes the
deploy commit, made before the write), `debounce_ms`, `diagnostics` and `notes`.

SIGINT and SIGTERM stop it cleanly (exit 0) once the batch in progress is written; a
second signal interrupts at once.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TextIO

from generator.errors import EXIT_OK, UsageError, inert_json, inert_line, printable
from generator.incremental import BatchResult, IncrementalBuild
from generator.options import WatchOptions
from generator.report import to_json
from generator.reporter import Reporter
from generator.watch import Event, Publish, run_watch


def run(options: WatchOptions) -> int:
    if options.debounce_ms < 0:
        raise UsageError("watch: --debounce must be 0 or more milliseconds")
    if options.push:
        # What --push publishes must be merged (publish's rule); what watch renders is
        # the working tree, edits included.
        raise UsageError(
            "watch: --push is refused: it would push uncommitted edits to the deploy branch. "
            "watch --publish commits them locally; push merged commits with publish --push"
        )
    build = incremental_build(options)
    writer = EventWriter(options.format, options.debounce_ms)
    publish = _publisher(options, build, writer)
    stop = threading.Event()
    with _stop_on_signals(stop), _live(options, writer) as emit:
        run_watch(build, stop, emit, debounce_ms=options.debounce_ms, publish=publish)
    return EXIT_OK


def incremental_build(options: WatchOptions) -> IncrementalBuild:
    """The build the watcher keeps, batch by batch."""
    return IncrementalBuild(options.common.root, out=options.out, crds=options.crds)


@contextlib.contextmanager
def _live(options: WatchOptions, writer: EventWriter) -> Iterator[Callable[[Event], None]]:
    """With --status: the cluster's live state, planned again after each new render."""
    if not options.status:
        yield writer
        return
    from generator.statuslive import LiveView  # the kubernetes client only when asked

    live = LiveView(options.common.root, writer.live)
    live.start()

    def emit(event: Event) -> None:
        writer(event)
        result = event.result
        rendered = result is not None and result.ok and bool(result.written or result.removed)
        if event.kind == "start" or (event.kind == "batch" and rendered):
            live.refresh()

    try:
        yield emit
    finally:
        live.stop()


def _publisher(
    options: WatchOptions, build: IncrementalBuild, reporter: Reporter
) -> Publish | None:
    """The publish hook: the watcher's current output, through publish's guards."""
    if not options.publish:
        return None
    from generator import git
    from generator.publish import PublishSettings, publish_worktree

    root = options.common.root
    git.open_repo(root)  # fail before watching when it is not a repository
    settings = PublishSettings(
        worktree=True,
        push=False,  # refused above: what watch renders holds uncommitted edits
        remote=options.remote,
        allow_prune=options.allow_prune,
        crds=options.crds,
    )

    def publish(files: Mapping[str, bytes]) -> str:
        return publish_worktree(root, settings, files, build.config, reporter)

    return publish


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set `stop`; a second one raises KeyboardInterrupt (exit 130)."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be installed from the main thread
        return

    def handler(signum: int, frame: Any) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class EventWriter:
    """Turns loop events into text lines or JSON lines; a Reporter for publish's notes."""

    def __init__(
        self, fmt: str, debounce_ms: int, out: TextIO | None = None, err: TextIO | None = None
    ) -> None:
        self.json = fmt == "json"
        self.debounce_ms = debounce_ms
        self.out = out or sys.stdout
        self.err = err or sys.stderr  # diagnostics and notes, as `servegen render` does
        self.batches = 0

    def __call__(self, event: Event) -> None:
        result = event.result
        if event.kind in ("batch", "error") and result is not None and not result.changed:
            return  # touched but unchanged: nothing to say
        if event.kind in ("batch", "error") and result is not None:
            self.batches += 1
        if self.json:
            self._write(inert_json(json.dumps(self._fields(event), sort_keys=True)))
        else:
            self._text(event)

    def note(self, message: str) -> None:
        """A note from publishing: on stderr in either format, as `servegen publish` writes
        it (a line break in the message starts a new line; nothing else unprintable does)."""
        for line in f"servegen: note: {message}".split("\n"):
            self._write(line, self.err)

    def live(self, state: Any) -> None:
        """`watch --status`: a message, or the environments' live statuses."""
        if isinstance(state, str):
            if self.json:
                fields = {"type": "status", "time": round(time.time(), 3), "message": state}
                self._write(inert_json(json.dumps(fields, sort_keys=True)))
            else:
                self._write(f"{time.strftime('[%H:%M:%S]')} {state}", self.err)
            return
        if self.json:
            environments = [s.to_json() for s in state]
            fields = {"type": "status", "time": round(time.time(), 3), "environments": environments}
            self._write(inert_json(json.dumps(fields, sort_keys=True)))
            return
        from generator.statuslive import summary

        for status in state:
            self._write(f"{time.strftime('[%H:%M:%S]')} {summary(status)}")

    def _write(self, line: str, stream: TextIO | None = None) -> None:
        stream = stream or self.out
        # One event, one line: messages may quote untrusted names (escaped, never raw,
        # never a CI workflow command).
        stream.write(inert_line(printable(line)) + "\n")
        stream.flush()  # a pipe to another program: one event at a time

    def _fields(self, event: Event) -> dict[str, Any]:
        fields: dict[str, Any] = {"type": event.kind, "time": round(time.time(), 3)}
        if event.message:
            fields["message"] = event.message
        if event.kind == "stop":
            fields["batches"] = self.batches
        if event.result is not None:
            fields.update(_result_fields(event.result))
            fields["debounce_ms"] = self.debounce_ms
        return fields

    def _text(self, event: Event) -> None:
        stamp = time.strftime("[%H:%M:%S]")
        result = event.result
        if result is not None:
            for note in result.notes:
                self._write(f"servegen: note: {note}", self.err)
            for diagnostic in result.diagnostics:
                self._write(str(diagnostic), self.err)
        if event.kind == "stop":
            self._write(f"{stamp} stopped after {self.batches} batch(es)")
        elif event.kind == "publish":
            self._write(f"{stamp} published: {event.message}")
        elif result is None and event.kind == "error":
            self._write(f"{stamp} error: {event.message}", self.err)
        elif result is None:
            self._write(f"{stamp} {event.message or event.kind}")
        else:
            self._write(f"{stamp} {_summary(event, result, self.debounce_ms)}")


def _result_fields(result: BatchResult) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "full": result.full,
        "changed": list(result.changed),
        "rendered": list(result.rendered),
        "written": len(result.written),
        "removed": len(result.removed),
        "models": result.models,
        "elapsed_ms": round(result.elapsed_ms, 1),
        "diagnostics": to_json(result.diagnostics)["diagnostics"],
        "notes": list(result.notes),
    }


def _summary(event: Event, result: BatchResult, debounce_ms: int) -> str:
    if event.kind == "start":
        what, timing = event.message, f"({result.elapsed_ms:.0f} ms)"
        done = f"{result.models} model(s) rendered"
    else:
        what = f"{len(result.changed)} file(s) changed"
        timing = f"({result.elapsed_ms:.0f} ms, debounce {debounce_ms} ms)"
        done = f"{len(result.rendered)} model(s) re-rendered"
    if not result.ok:
        errors = sum(1 for d in result.diagnostics if d.severity == "error")
        return f"{what}: {errors} error(s); output kept at the last good state {timing}"
    written, removed = len(result.written), len(result.removed)
    return f"{what}: {done}, {written} file(s) written, {removed} removed {timing}"
