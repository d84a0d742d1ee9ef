"""The watch loop: file-system events in, incremental batches and events out.

One watchfiles watcher covers the whole repository, recursively, and a filter keeps
servegen.yaml and what may be a spec file or folder. Watching the root rather than the
spec folder itself is deliberate: the spec folder can be deleted and re-created (`git
checkout` of a branch without it, `mv specs specs.old`) or moved by a new `specs:` in
servegen.yaml, and a watch on a folder dies with it, while the root's watch sees it come
back. The price is that the output folder and .git are watched too; their events are
dropped by the filter (in Python, per batch), so servegen's own writes never trigger it.

watchfiles runs in a thread of its own (`_Feeder`) and queues batches; the calling thread
processes them. That split is what lets the loop see that newer changes arrived while it
was rendering: such a render is never published, the next batch is processed instead.
"""

from __future__ import annotations

import gc
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import watchfiles

from generator.config import CONFIG_FILE
from generator.errors import ServegenError
from generator.incremental import BatchResult, IncrementalBuild
from generator.load import is_spec_file

# watchfiles yields once a `step` passes with no new event (or `debounce` after the
# first): ~2 steps of latency. 10 ms is ample for an editor's write + rename.
MAX_STEP_MS = 10
# How long the Rust side waits before returning "no changes". Its first return shows the
# watcher is set up (events are recorded from then on), so start-up waits this long;
# later ones are ignored: ten idle wake-ups a second are the price.
READY_MS = 100

EventKind = Literal["start", "batch", "error", "publish", "stop"]


@dataclass(frozen=True)
class Event:
    """Something to report: a processed batch, a failure, a publish, start and stop."""

    kind: EventKind
    result: BatchResult | None = None
    message: str = ""


Emit = Callable[[Event], None]
Publish = Callable[[], str]


class ChangeFilter:
    """Keeps servegen.yaml and paths that may be spec files or folders holding them."""

    def __init__(self, build: IncrementalBuild) -> None:
        self.config = build.root / CONFIG_FILE
        self.git = build.root / ".git"
        self.update(build)

    def update(self, build: IncrementalBuild) -> None:
        # One tuple assigned at once: the feeder thread reads it while this one writes.
        self._folders = (build.spec_root, build.out)

    def __call__(self, change: watchfiles.Change, raw: str) -> bool:
        spec_root, out = self._folders
        path = Path(raw)
        if path == self.config:
            return True
        if path.is_relative_to(out) or path.is_relative_to(self.git):
            return False
        if spec_root.is_relative_to(path):  # the spec folder or a parent: replaced or moved
            return True
        if not path.is_relative_to(spec_root):
            return False
        parts = path.relative_to(spec_root).parts
        if any(part.startswith(".") for part in parts):  # discover() skips them too
            return False
        # Folders (and vanished paths, which may have been folders) may hold specs.
        return is_spec_file(parts[-1]) or not path.is_file()


class _Either:
    """Stops watchfiles when the caller's stop event or the loop's own one is set."""

    def __init__(self, *events: threading.Event) -> None:
        self._events = events

    def is_set(self) -> bool:
        return any(event.is_set() for event in self._events)


class _Feeder(threading.Thread):
    """Runs watchfiles and queues each batch of changed paths."""

    def __init__(self, root: Path, keep: ChangeFilter, debounce_ms: int, stop: _Either) -> None:
        super().__init__(name="servegen-watch", daemon=True)
        self._args = (root, keep, debounce_ms, stop)
        self.batches: queue.Queue[set[str] | None] = queue.Queue()
        self.ready = threading.Event()
        self.received = 0  # batches queued so far; only this thread writes it
        self.error: BaseException | None = None

    def run(self) -> None:
        root, keep, debounce_ms, stop = self._args
        try:
            for changes in watchfiles.watch(
                root,
                watch_filter=keep,
                debounce=debounce_ms,
                step=max(1, min(MAX_STEP_MS, debounce_ms)),
                stop_event=stop,
                rust_timeout=READY_MS,
                yield_on_timeout=True,
                raise_interrupt=False,
            ):
                self.ready.set()
                if changes:
                    self.received += 1
                    self.batches.put({path for _change, path in changes})
        except Exception as exc:  # handed to the processing thread, which reports it
            self.error = exc
        finally:
            self.ready.set()
            self.batches.put(None)

    def take(self) -> set[str] | None:
        """The next batch merged with any queued behind it; None once watching ended."""
        paths = self.batches.get()
        while paths is not None:
            try:
                more = self.batches.get_nowait()
            except queue.Empty:
                return paths
            if more is None:
                self.batches.put(None)  # seen again by the next take()
                return paths
            paths |= more
        return None


def run_watch(
    build: IncrementalBuild,
    stop: threading.Event,
    emit: Emit,
    *,
    debounce_ms: int = 50,
    publish: Publish | None = None,
) -> None:
    """Build, then rebuild on every change until `stop` is set; report through `emit`.

    `stop` is only read here, never set or waited on, so a signal handler may set it.
    """
    halt = threading.Event()
    keep = ChangeFilter(build)
    feeder = _Feeder(build.root, keep, debounce_ms, _Either(stop, halt))
    feeder.start()
    try:
        feeder.ready.wait()
        if feeder.error is None and not stop.is_set():
            _process(build, feeder, keep, stop, emit, publish)
    finally:
        halt.set()
        feeder.join()
    if feeder.error is not None:
        raise ServegenError(f"cannot watch {build.root}: {feeder.error}") from feeder.error
    emit(Event("stop"))


def _process(
    build: IncrementalBuild,
    feeder: _Feeder,
    keep: ChangeFilter,
    stop: threading.Event,
    emit: Emit,
    publish: Publish | None,
) -> None:
    published = -1  # the build generation last published
    paths: set[str] | None = None  # None: the initial build
    while True:
        seen = feeder.received
        result = _step(build, paths, emit)
        keep.update(build)  # servegen.yaml may have moved the spec or output folder
        if result is not None and result.full:
            _settle_heap()
        newer = feeder.received != seen  # changes arrived while rendering: it is stale
        good = result is not None and result.ok and build.generation != published
        if publish is not None and good and not newer:
            published = _publish(publish, emit, build.generation, published)
        paths = None if stop.is_set() else feeder.take()
        if paths is None or stop.is_set():
            return


def _step(build: IncrementalBuild, paths: set[str] | None, emit: Emit) -> BatchResult | None:
    """One batch (None: the initial build); after an unexpected error, rebuild next time."""
    try:
        result = build.initial() if paths is None else build.apply(paths)
    except ServegenError as exc:  # e.g. a CRD source that cannot be read
        message = exc.message
    except Exception as exc:
        message = f"internal error ({type(exc).__name__}: {exc}); everything is rebuilt next time"
    else:
        if paths is None:
            emit(Event("start", result, _watching(build)))
        else:
            emit(Event("batch" if result.ok else "error", result))
        return result
    build.reset()
    emit(Event("error", message=message))
    if paths is None:
        emit(Event("start", message=_watching(build)))
    return None


def _watching(build: IncrementalBuild) -> str:
    return f"watching {build.root} (output {build.out})"


def _settle_heap() -> None:
    """Take the caches, now built, out of the cyclic garbage collector's sight.

    Each full collection walks every tracked object: with 1,000 cached models that is
    100-500 ms, paid by whichever batch triggers it. Frozen objects are still freed by
    reference counting; cycles among them wait for the next full rebuild, which
    unfreezes and collects first (so at most one start-up cache's worth waits).
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


def _publish(publish: Publish, emit: Emit, generation: int, published: int) -> int:
    """Publish; the generation now published (unchanged on failure, so it is retried)."""
    try:
        message = publish()
    except ServegenError as exc:
        emit(Event("error", message=f"publish failed: {exc.message}"))
        return published
    emit(Event("publish", message=message))
    return generation
