"""Worker processes: for a fresh build of many spec files, and for one long sweep.

A build that reuses nothing renders, checks and lays out every spec file, each on its
own: that work is spread over forks of the building process (they share its loaded
config and code, nothing is imported again), in batches of spec files taken in order.
A worker sends back plain data only: for each file, the bytes of the build-cache entry
it made (JSON, decoded and checked against its key by the parent, exactly as an entry
read from the cache), or None for a file the parent must derive itself. Files that do
not pass are always derived by the parent, so every problem is found and reported by
the very code and in the very order of a single-process build.

Batches are handed out a few per worker ahead of the parent (IN_FLIGHT): results wait
in the parent's memory until it uses them.

Only where forking is safe and worth it: at least MIN_FILES spec files, more than one
CPU, and no other thread in the process (a fork copies locks another thread may hold).
SERVEGEN_JOBS=N caps the number of worker processes; SERVEGEN_JOBS=1 builds in one
process.

A long sweep of system calls (`in_two`: the lstat of every output file and folder that
proves an output folder unchanged, the read of every spec file for the build's key, the
creation of every file of a first write) is split the same way, in two: a thread would
not help, each call takes the interpreter's lock back, and one fork halves the wait.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # imported when a pool starts: 30 ms no small repository should pay
    from concurrent.futures import Future, ProcessPoolExecutor

T = TypeVar("T")
Batch = Callable[[Sequence[str]], list[T | None]]

# Below this many spec files, starting the workers costs more than they save (and
# small repositories, the common case of validate and publish, stay in one process).
MIN_FILES = 256
# Derived by the parent before it forks: what they load (templates, schemas, runtime
# modules) is then loaded once, not once per worker.
WARM_UP = 32
_BATCHES_PER_JOB = 16  # small enough to keep every worker busy to the end
_MAX_BATCH = 64
IN_FLIGHT = 4  # batches handed to each worker and not yet used by the parent


def jobs() -> int:
    """How many worker processes a large build may use (1: none)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not on Linux
        cpus = os.cpu_count() or 1
    wanted = os.environ.get("SERVEGEN_JOBS", "").strip()
    if wanted.isascii() and wanted.isdigit() and len(wanted) <= 9 and int(wanted) > 0:
        return min(int(wanted), max(cpus, 1) * 2)
    return cpus


def usable(files: int, job_count: int) -> bool:
    """Whether `files` spec files are worth spreading over `job_count` processes now."""
    return files >= MIN_FILES and _forkable(job_count)


def _forkable(job_count: int) -> bool:
    return job_count > 1 and threading.active_count() == 1 and hasattr(os, "fork")


# Below this many items a sweep stays in one process: a fork and its pipe cost a few
# milliseconds, what 2,000 lstat calls or a few hundred small file reads cost.
MIN_SWEEP = 16_384


def in_two(
    task: Callable[[Sequence[str]], bytes], items: Sequence[str], minimum: int | None = None
) -> bytes:
    """task(items), with the second half of `items` done by one forked child meanwhile,
    where that is safe and worth it (`minimum` items, default MIN_SWEEP):
    task(first half) + task(second half) is taken to equal task(items). The child's
    bytes come through a pipe; a child that fails or dies (its exit status says so)
    leaves its half to be done here, so a task's error is raised here, as without the
    child."""
    half = len(items) // 2
    if len(items) < (MIN_SWEEP if minimum is None else minimum) or not _forkable(jobs()):
        return task(items)
    try:
        reading, writing = os.pipe()
    except OSError:  # out of descriptors: one process it is
        return task(items)
    try:
        pid = os.fork()
    except OSError:
        os.close(reading)
        os.close(writing)
        return task(items)
    if pid == 0:  # the child: its half into the pipe, and out without any cleanup
        code = 1
        try:
            os.close(reading)
            view = memoryview(task(items[half:]))
            while view:
                view = view[os.write(writing, view) :]
            code = 0
        finally:
            os._exit(code)
    os.close(writing)
    pipe = os.fdopen(reading, "rb")
    try:
        first = task(items[:half])
        second = pipe.read()
    finally:
        pipe.close()  # first: a child blocked on a full pipe then ends, and is waited for
        status = os.waitpid(pid, 0)[1]
    return first + (second if status == 0 else task(items[half:]))


_task: Callable[[Sequence[str]], list[object]] | None = None  # what a fork runs


def _run(batch: Sequence[str]) -> list[object]:
    assert _task is not None
    return _task(batch)


def _quiet() -> None:
    # Ctrl-C is the parent's to handle: it stops the pool; workers just end.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def batches(items: Sequence[str], job_count: int) -> list[Sequence[str]]:
    size = max(1, min(_MAX_BATCH, len(items) // (job_count * _BATCHES_PER_JOB)))
    return [items[start : start + size] for start in range(0, len(items), size)]


def spread(task: Batch[T], items: Sequence[str], job_count: int) -> Iterator[T | None]:
    """task(batch) for batches of `items`, run in forked workers: one result per item,
    in order. A batch whose worker failed yields None for each of its items.

    The workers are forked before this returns, so that nothing the caller does while
    it reads the results (a progress bar's thread) is in the forks.
    """
    global _task
    _task = task  # type: ignore[assignment]  # inherited by the forks, never pickled
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    waiting = deque(batches(items, job_count))
    pending: Pending = deque()
    try:
        context = multiprocessing.get_context("fork")
        pool = ProcessPoolExecutor(job_count, mp_context=context, initializer=_quiet)
        _submit(pool, waiting, pending, job_count)  # every worker is forked by the first
    except (OSError, ValueError):  # no processes to be had: the parent does it all
        return iter([None] * len(items))
    finally:
        _task = None  # the forks have their copy
    return _results(pool, waiting, pending, job_count)


Pending = deque[tuple[Sequence[str], "Future[list[object]] | None"]]


def _submit(
    pool: ProcessPoolExecutor, waiting: deque[Sequence[str]], pending: Pending, job_count: int
) -> None:
    """Hand out batches until IN_FLIGHT per worker are handed out and not yet used:
    results wait in the parent's memory until it uses them, so a parent slower than its
    workers (a busy machine) must not let them all pile up."""
    while waiting and len(pending) < job_count * IN_FLIGHT:
        part = waiting.popleft()
        try:
            future: Future[list[object]] | None = pool.submit(_run, part)
        except Exception:  # a worker died (BrokenProcessPool): the parent derives it
            future = None
        pending.append((part, future))


def _results(
    pool: ProcessPoolExecutor, waiting: deque[Sequence[str]], pending: Pending, job_count: int
) -> Iterator[Any]:
    try:
        while pending:
            part, future = pending.popleft()  # not kept: each result is let go once used
            try:
                results = [None] * len(part) if future is None else future.result()
            except Exception:  # a worker died (BrokenProcessPool) or failed: redone here
                results = [None] * len(part)
            del future
            _submit(pool, waiting, pending, job_count)
            if not pending:  # every result is in: the workers end before the last is used
                pool.shutdown(wait=True)
            yield from results
            del results
    finally:  # also when the caller stops early
        pool.shutdown(wait=True, cancel_futures=True)
