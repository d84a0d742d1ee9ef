"""The watch loop: file-system events in, incremental batches and events out.

What is watched is the spec folder (recursively) and, without recursion, the repository
root and every folder between it and the spec folder: servegen.yaml lives in the root,
and the spec folder can be deleted and re-created (`git checkout` of a branch without
it, `mv specs specs.old`) or moved by a new `specs:` in servegen.yaml, which those
shallow watches see. After each batch the folders to watch are looked at again (path and
inode, so a replaced folder counts as new); when they differ the watchers are started
afresh and, once they are ready, the whole spec folder is re-read, so nothing that
changed in between is missed.

The output folder and .git are deliberately not watched. Each batch swaps in a new
output tree (see generator/write.py): a recursive watch there made the watcher drop and
re-add an inotify watch for every output folder (thousands) on each write, and the
events of walking them overflowed the kernel's inotify queue (max_queued_events, 16,384
by default), which silently loses events, a spec save among them. A filter still keeps
only servegen.yaml and what may be a spec file or folder.

watchfiles runs in threads of its own (`_Feeder`) and queues batches; the calling thread
processes them. That split is what lets the loop see that newer changes arrived while it
was rendering: such a render is never published, the next batch is processed instead.
"""

from __future__ import annotations

import gc
import queue
import stat
import threading
from collections.abc import Callable, Mapping
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
# How often the waiting loop looks at its stop events (see _Watchers._next).
STOP_POLL_S = 0.1

EventKind = Literal["start", "batch", "error", "publish", "stop"]


@dataclass(frozen=True)
class Event:
    """Something to report: a processed batch, a failure, a publish, start and stop."""

    kind: EventKind
    result: BatchResult | None = None
    message: str = ""


Emit = Callable[[Event], None]
Publish = Callable[[Mapping[str, bytes]], str]  # the output tree -> a one-line result


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


# A folder as watched: its path, and the identity (device, inode) of what is there.
Folder = tuple[Path, int, int]


@dataclass(frozen=True)
class WatchSet:
    """The folders to watch: `shallow` without recursion, `deep` (the spec folder) with."""

    shallow: tuple[Folder, ...]
    deep: Folder | None

    def paths(self) -> list[tuple[list[Path], bool]]:
        """(folders, recursive) for each watcher to run."""
        watchers = [([folder for folder, _dev, _ino in self.shallow], False)]
        if self.deep is not None:
            watchers.append(([self.deep[0]], True))
        return watchers


def watch_set(build: IncrementalBuild) -> WatchSet:
    """The root, each existing folder on the way down to the spec folder, and the spec
    folder itself when it exists: a few stats, taken again after every batch."""
    root, spec_root = build.root, build.spec_root
    shallow = [_identity(root) or (root, 0, 0)]  # a missing root: watchfiles says why
    folder = root
    for part in spec_root.relative_to(root).parts[:-1]:
        folder = folder / part
        found = _identity(folder)
        if found is None:
            return WatchSet(tuple(shallow), None)
        shallow.append(found)
    return WatchSet(tuple(shallow), _identity(spec_root))


def _identity(folder: Path) -> Folder | None:
    try:
        info = folder.stat()
    except OSError:
        return None
    return (folder, info.st_dev, info.st_ino) if stat.S_ISDIR(info.st_mode) else None


class _Feeder(threading.Thread):
    """Runs one watchfiles watcher and queues each batch of changed paths."""

    def __init__(
        self,
        watched: tuple[list[Path], bool],
        keep: ChangeFilter,
        debounce_ms: int,
        stops: tuple[threading.Event, ...],
        batches: queue.Queue[set[str] | None],
    ) -> None:
        super().__init__(name="servegen-watch", daemon=True)
        self._args = (*watched, keep, debounce_ms)
        self.halt = threading.Event()  # this watcher only: it is being replaced
        self._stop_when = _Either(*stops, self.halt)
        self.batches = batches
        self.ready = threading.Event()
        self.received = 0  # batches queued so far; only this thread writes it
        self.error: BaseException | None = None

    def run(self) -> None:
        paths, recursive, keep, debounce_ms = self._args
        try:
            for changes in watchfiles.watch(
                *paths,
                watch_filter=keep,
                debounce=debounce_ms,
                step=max(1, min(MAX_STEP_MS, debounce_ms)),
                stop_event=self._stop_when,
                rust_timeout=READY_MS,
                yield_on_timeout=True,
                raise_interrupt=False,
                recursive=recursive,
            ):
                self.ready.set()
                if changes:
                    self.received += 1
                    self.batches.put({path for _change, path in changes})
        except Exception as exc:  # handed to the processing thread, which reports it
            self.error = exc
        finally:
            self.ready.set()
            if not self.halt.is_set():  # ended by the caller or an error: so is the loop
                self.batches.put(None)


class _Watchers:
    """One feeder per watcher of the current WatchSet, all queueing into one queue."""

    def __init__(
        self,
        build: IncrementalBuild,
        keep: ChangeFilter,
        debounce_ms: int,
        stops: tuple[threading.Event, ...],
    ) -> None:
        self._build, self._keep, self._debounce_ms, self._stops = build, keep, debounce_ms, stops
        self.batches: queue.Queue[set[str] | None] = queue.Queue()
        self._feeders: list[_Feeder] = []
        self._retired = 0  # batches received by feeders since replaced
        self._carried: set[str] = set()  # paths queued when the watchers were replaced
        self.current: WatchSet | None = None

    @property
    def received(self) -> int:
        return self._retired + sum(feeder.received for feeder in self._feeders)

    @property
    def error(self) -> BaseException | None:
        return next((f.error for f in self._feeders if f.error is not None), None)

    def start(self) -> None:
        """Watch the current WatchSet; returns once every watcher records events.

        A folder that vanished between looking and watching fails its watcher: then the
        set is taken again (the caller re-reads the spec folder after any start).
        """
        while True:
            self.current = watch_set(self._build)
            self._feeders = [
                _Feeder(watched, self._keep, self._debounce_ms, self._stops, self.batches)
                for watched in self.current.paths()
            ]
            for feeder in self._feeders:
                feeder.start()
            for feeder in self._feeders:
                feeder.ready.wait()
            if self.error is None or watch_set(self._build) == self.current:
                return
            self._replace()

    def follow(self) -> None:
        """Start afresh when the folders to watch changed, then queue the whole spec
        folder to be read again: what changed while no watcher looked was not seen."""
        if watch_set(self._build) == self.current:
            return
        self._replace()
        self.start()
        self.batches.put(self._reread())

    def _replace(self) -> None:
        for feeder in self._feeders:
            feeder.halt.set()
        self.close()
        self._feeders = []
        while not self.batches.empty():  # a full re-read follows; an error's None goes too
            queued = self.batches.get_nowait()
            self._carried |= queued or set()

    def _reread(self) -> set[str]:
        """The spec folder, and what was queued when the watchers were replaced: the
        re-read covers the specs, but a servegen.yaml edit among it would be lost."""
        paths, self._carried = {str(self._build.spec_root), *self._carried}, set()
        return paths

    def _next(self) -> set[str] | None:
        """The next queued batch; None once a stop event is set.

        Never one wait without end: a signal that arrives just as this thread starts
        waiting on the queue's lock (or one delivered to another thread) has its Python
        handler, which sets the stop event, run only once this thread runs Python code
        again. A wait without end would not return then: no feeder sees a stop, so none
        queues its None.
        """
        while True:
            try:
                return self.batches.get(timeout=STOP_POLL_S)
            except queue.Empty:
                if any(event.is_set() for event in self._stops):
                    return None

    def close(self) -> None:
        """Wait for every feeder to end (the caller set a stop event, or _replace did)."""
        for feeder in self._feeders:
            feeder.join()
        self._retired += sum(feeder.received for feeder in self._feeders)

    def take(self) -> set[str] | None:
        """The next batch merged with any queued behind it; None once watching ended.

        A watcher that failed because the folders to watch changed under it (the spec
        folder deleted mid-walk, say) is replaced, and the spec folder read again."""
        paths = self._next()
        if paths is None and self.error is not None and watch_set(self._build) != self.current:
            self._replace()
            self.start()
            paths = self._reread()
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
    watchers = _Watchers(build, keep, debounce_ms, (stop, halt))
    watched = False  # the watchers were set up and batches processed
    try:
        watchers.start()
        if watchers.error is None and not stop.is_set():
            watched = True
            _process(build, watchers, keep, stop, emit, publish)
    finally:
        halt.set()
        watchers.close()
    error = watchers.error
    if error is not None:
        if watched and not stop.is_set():
            # What the watcher stopped at is reported at its place if the build reads it:
            # watchfiles cannot watch a folder holding a name that is not UTF-8, and
            # the build says which file that is.
            _step(build, {str(build.spec_root)}, emit)
        raise ServegenError(f"cannot watch {build.root}: {error}") from error
    emit(Event("stop"))


def _process(
    build: IncrementalBuild,
    watchers: _Watchers,
    keep: ChangeFilter,
    stop: threading.Event,
    emit: Emit,
    publish: Publish | None,
) -> None:
    published = -1  # the build generation last published
    paths: set[str] | None = None  # None: the initial build
    while True:
        seen = watchers.received
        commits: list[_Commit] = []
        if publish is not None:
            build.before_write = _early(publish, commits, watchers, seen)
        try:
            result = _step(build, paths, emit)
        finally:
            build.before_write = None
        keep.update(build)  # servegen.yaml may have moved the spec or output folder
        newer = watchers.received != seen  # changes arrived while rendering: it is stale
        good = result is not None and result.ok and build.generation != published
        if commits:
            published = _finish(commits[0], emit, build.generation, published)
        elif publish is not None and good and not newer:
            published = _publish(publish, build.files, emit, build.generation, published)
        if result is not None and result.full:
            _settle_heap()
        if not stop.is_set():
            watchers.follow()  # the spec folder came, went, was replaced or moved
        paths = None if stop.is_set() else watchers.take()
        if paths is None or stop.is_set():
            return


@dataclass
class _Commit:
    """One publish of a batch's new output tree, made just before that tree is written:
    the deploy commit is built from the same checked tree and reads nothing from disk,
    so it need not wait for the write. (Measured at 1,000 specs: the commit came ~0.5 s
    sooner, the output file no later within the noise; run in a thread beside the write
    instead, the commit competed with it for the interpreter lock and came ~100 ms later.)
    """

    message: str = ""
    error: ServegenError | None = None
    failure: BaseException | None = None


def _early(
    publish: Publish, commits: list[_Commit], watchers: _Watchers, seen: int
) -> Callable[[Mapping[str, bytes]], None]:
    """The before_write hook: publish a passing new tree, unless newer changes arrived
    while it was rendered (then it is stale, and the next batch follows)."""

    def run(files: Mapping[str, bytes]) -> None:
        if watchers.received != seen:
            return
        commit = _Commit()
        commits.append(commit)
        try:
            commit.message = publish(files)
        except ServegenError as exc:
            commit.error = exc
        except Exception as exc:  # re-raised once the batch is written and reported
            commit.failure = exc

    return run


def _finish(commit: _Commit, emit: Emit, generation: int, published: int) -> int:
    if commit.failure is not None:
        raise commit.failure
    if commit.error is not None:
        emit(Event("error", message=f"publish failed: {commit.error.message}"))
        return published
    emit(Event("publish", message=commit.message))
    return generation


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


def _publish(
    publish: Publish, files: Mapping[str, bytes], emit: Emit, generation: int, published: int
) -> int:
    """Publish; the generation now published (unchanged on failure, so it is retried)."""
    try:
        message = publish(files)
    except ServegenError as exc:
        emit(Event("error", message=f"publish failed: {exc.message}"))
        return published
    emit(Event("publish", message=message))
    return generation
