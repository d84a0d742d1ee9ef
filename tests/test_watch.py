"""`servegen watch` with the real watchfiles watcher, on a real file system.

Each test runs the loop in a background thread, changes files the way editors, shells
and git do, waits on the loop's own events (never on a fixed sleep) and compares the
output folder with a one-shot render of the final tree, byte for byte.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import watchfiles

from generator import cli, pipeline
from generator.commands import watch as watch_command
from generator.errors import ServegenError
from generator.incremental import BatchResult, IncrementalBuild
from generator.options import Common, WatchOptions
from generator.reporter import Notes
from generator.watch import ChangeFilter, Event, Publish, _Watchers, run_watch
from generator.write import MANIFEST, manifest_bytes
from tests.cacheutil import spied_loads
from tests.conftest import REPO_ROOT
from tests.incrementalutil import add_env, env_added, one_shot, spec_text, tree
from tests.streams import pump_lines

pytestmark = pytest.mark.timeout(60)

WAIT_S = 30.0  # generous: CI machines are slow; a passing test waits only for its events

# servegen renders with one module-level ruamel.yaml writer, which is not thread-safe:
# the test thread's one-shot renders must not overlap the watch thread's batches.
RENDER_LOCK = threading.RLock()  # initial() calls apply()


class LockedBuild(IncrementalBuild):
    def initial(self) -> BatchResult:
        with RENDER_LOCK:
            return super().initial()

    def apply(self, paths: Any) -> BatchResult:
        with RENDER_LOCK:
            return super().apply(paths)


def expected_output(repo: Path, crds: list[Path]) -> dict[str, bytes]:
    with RENDER_LOCK:
        return one_shot(repo, crds)


def output(folder: Path) -> dict[str, bytes]:
    """The output folder between two batches (read while one is written, it may change)."""
    with RENDER_LOCK:
        return tree(folder)


class Watching:
    """run_watch in a background thread; every event it emits lands in a queue."""

    def __init__(
        self,
        build: IncrementalBuild,
        debounce_ms: int = 20,
        publish: Publish | None = None,
    ) -> None:
        self.build = build
        self.events: queue.Queue[Event] = queue.Queue()
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(
            target=self._run, args=(debounce_ms, publish), name="test-watch", daemon=True
        )

    def _run(self, debounce_ms: int, publish: Publish | None) -> None:
        try:
            run_watch(
                self.build, self.stop, self.events.put, debounce_ms=debounce_ms, publish=publish
            )
        except BaseException as exc:
            self.error = exc

    def start(self) -> BatchResult:
        self.thread.start()
        event = self.next_event(lambda e: e.kind == "start")
        assert event.result is not None
        return event.result

    def close(self) -> None:
        self.stop.set()
        self.thread.join(WAIT_S)
        assert not self.thread.is_alive(), "the watch loop did not stop"
        assert self.error is None, self.error

    def next_event(self, matches: Callable[[Event], bool]) -> Event:
        deadline = time.monotonic() + WAIT_S
        while True:
            event = self._get(deadline, "an expected event")
            if matches(event):
                return event

    def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        """Check `condition` now and after each processed batch, until it holds."""
        deadline = time.monotonic() + WAIT_S
        while not condition():
            self._get(deadline, what)

    def wait_output(self, expected: dict[str, bytes]) -> None:
        out = self.build.out
        self.wait_until(lambda: output(out) == expected, "the output to equal a one-shot render")

    def _get(self, deadline: float, what: str) -> Event:
        left = deadline - time.monotonic()
        try:
            return self.events.get(timeout=max(left, 0.001))
        except queue.Empty:
            assert self.error is None, self.error
            pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def crds(crds_dir: Path) -> list[Path]:
    return [crds_dir]


@pytest.fixture
def watching(example_repo: Path, crds: list[Path]) -> Iterator[Watching]:
    running = Watching(LockedBuild(example_repo, crds=crds))
    result = running.start()
    assert result.ok, result.diagnostics
    try:
        yield running
    finally:
        running.close()


def changed(path: str) -> Callable[[Event], bool]:
    return lambda e: e.result is not None and path in e.result.changed


def write_in_place(path: Path, text: str) -> None:
    """An edit in place that the watcher cannot see half done: the new bytes (no fewer
    than the old ones) over the old ones, in one write() to the same inode.

    Not write_text(): it truncates the file first, and a test thread descheduled between
    that truncation and its write (a loaded machine) lets the watcher render the empty
    file in between, rightly reported as an error batch before the real one."""
    data = text.encode()
    assert len(data) >= path.stat().st_size, "a shorter text would leave the old tail"
    fd = os.open(path, os.O_WRONLY)
    try:
        assert os.write(fd, data) == len(data)
    finally:
        os.close(fd)


def atomic_write(path: Path, text: str, temp_name: str) -> None:
    """What editors do on save: write a temporary file, rename it over the target."""
    temp = path.with_name(temp_name)
    temp.write_text(text)
    os.replace(temp, path)


# --------------------------------------------------------------------------- changes


def test_initial_output_equals_one_shot(
    watching: Watching, example_repo: Path, crds: list[Path]
) -> None:
    assert output(watching.build.out) == expected_output(example_repo, crds)


def test_edit_in_place(watching: Watching, example_repo: Path, crds: list[Path]) -> None:
    path = example_repo / "specs" / "kubeai" / "nomic-embed.yaml"
    write_in_place(path, path.read_text().replace("max_replicas: 3", "max_replicas: 5"))
    expected = expected_output(example_repo, crds)
    event = watching.next_event(changed("specs/kubeai/nomic-embed.yaml"))
    assert event.kind == "batch" and event.result is not None
    assert event.result.rendered == ("nomic-embed",)
    watching.wait_output(expected)


@pytest.mark.parametrize("temp_name", [".nomic-embed.yaml.swp", "nomic-embed.yaml.tmp.4913"])
def test_atomic_save(
    watching: Watching, example_repo: Path, crds: list[Path], temp_name: str
) -> None:
    path = example_repo / "specs" / "kubeai" / "nomic-embed.yaml"
    atomic_write(path, path.read_text().replace("max_replicas: 3", "max_replicas: 8"), temp_name)
    expected = expected_output(example_repo, crds)
    watching.wait_output(expected)
    assert not path.with_name(temp_name).exists()


def test_delete(watching: Watching, example_repo: Path, crds: list[Path]) -> None:
    (example_repo / "specs" / "kubeai" / "bge-reranker.yaml").unlink()
    expected = expected_output(example_repo, crds)
    watching.wait_output(expected)
    assert not (watching.build.out / "models" / "bge-reranker").exists()


def test_rename_file_and_folder(watching: Watching, example_repo: Path, crds: list[Path]) -> None:
    specs = example_repo / "specs"
    (specs / "kubeai" / "bge-reranker.yaml").rename(specs / "kubeai" / "reranker.yml")
    expected = expected_output(example_repo, crds)
    watching.wait_output(expected)
    (specs / "kubeai").rename(specs / "kubeai-models")
    expected = expected_output(example_repo, crds)
    watching.wait_output(expected)
    # Moved out of the spec folder altogether: its models go.
    (specs / "kubeai-models").rename(example_repo / "parked")
    expected = expected_output(example_repo, crds)
    watching.wait_output(expected)


def test_new_files_in_new_subfolders(
    watching: Watching, example_repo: Path, crds: list[Path]
) -> None:
    for depth, folder in enumerate(["team-a", "team-a/x/y", "team-b/z/w/v"]):
        target = example_repo / "specs" / folder
        target.mkdir(parents=True, exist_ok=True)
        (target / f"model-{depth}.yaml").write_text(spec_text(f"model-{depth}"))
    expected = expected_output(example_repo, crds)
    watching.wait_output(expected)
    assert {"model-0", "model-1", "model-2"} <= {
        p.name for p in (watching.build.out / "models").iterdir()
    }


def test_burst_of_200_edits(watching: Watching, example_repo: Path, crds: list[Path]) -> None:
    specs = example_repo / "specs" / "burst"
    specs.mkdir()
    for i in range(200):
        path = specs / f"burst-{i % 10}.yaml"
        if i % 3 == 0:
            atomic_write(path, spec_text(f"burst-{i % 10}", 1 + i % 9), f".{path.name}.tmp")
        else:
            path.write_text(spec_text(f"burst-{i % 10}", 1 + i % 9))
    expected = expected_output(example_repo, crds)
    watching.wait_output(expected)


def test_broken_then_fixed(watching: Watching, example_repo: Path, crds: list[Path]) -> None:
    before = output(watching.build.out)
    path = example_repo / "specs" / "kubeai" / "nomic-embed.yaml"
    good = path.read_text()
    path.write_text(good.replace("serve:\n", "serve:\n  scaling: {half typed\n"))
    event = watching.next_event(changed("specs/kubeai/nomic-embed.yaml"))
    assert event.kind == "error" and event.result is not None
    assert str(event.result.diagnostics[0]).startswith("specs/kubeai/nomic-embed.yaml:")
    assert output(watching.build.out) == before
    path.write_text(good.replace("max_replicas: 3", "max_replicas: 4"))
    expected = expected_output(example_repo, crds)
    watching.wait_output(expected)


def test_config_change_rerenders_everything(
    watching: Watching, example_repo: Path, crds: list[Path]
) -> None:
    config = example_repo / "servegen.yaml"
    write_in_place(config, env_added(config.read_text()))
    expected = expected_output(example_repo, crds)
    event = watching.next_event(changed("servegen.yaml"))
    assert event.result is not None and event.result.ok and event.result.full
    assert len(event.result.rendered) == 10
    watching.wait_output(expected)
    assert (watching.build.out / "clusters" / "staging" / "kustomization.yaml").is_file()


def test_spec_folder_deleted_and_recreated(
    watching: Watching, example_repo: Path, crds: list[Path]
) -> None:
    specs = example_repo / "specs"
    saved = example_repo / "saved-specs"
    shutil.copytree(specs, saved)
    shutil.rmtree(specs)
    expected = expected_output(example_repo, crds)
    watching.wait_output(expected)
    assert not (watching.build.out / "models").exists()
    shutil.copytree(saved, specs)
    expected = expected_output(example_repo, crds)
    watching.wait_output(expected)


def test_git_checkout_between_branches(
    watching: Watching, example_repo: Path, crds: list[Path]
) -> None:
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "commit.gpgSign=0"]

    def git(*args: str) -> None:
        subprocess.run(
            ["git", *identity, *args],
            cwd=example_repo,
            check=True,
            capture_output=True,
        )

    (example_repo / ".gitignore").write_text("output/\n")
    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("commit", "-q", "-m", "main")
    main_tree = expected_output(example_repo, crds)
    git("checkout", "-q", "-b", "other")
    shutil.rmtree(example_repo / "specs" / "kubeai")
    (example_repo / "specs" / "new" / "deeper").mkdir(parents=True)
    (example_repo / "specs" / "new" / "deeper" / "n.yaml").write_text(spec_text("n-model"))
    add_env(example_repo)
    git("add", "-A")
    git("commit", "-q", "-m", "other")
    other_tree = expected_output(example_repo, crds)
    watching.wait_output(other_tree)
    git("checkout", "-q", "main")
    watching.wait_output(main_tree)
    git("checkout", "-q", "other")
    watching.wait_output(other_tree)


def test_spec_folder_moved_by_the_config_is_followed(
    watching: Watching, example_repo: Path, crds: list[Path]
) -> None:
    """A new `specs:` names a folder no watcher looked at: it is watched from then on."""
    nested = example_repo / "more" / "specs"
    shutil.copytree(example_repo / "specs", nested)
    config = example_repo / "servegen.yaml"
    config.write_text(config.read_text() + "specs: more/specs\n")
    watching.next_event(changed("servegen.yaml"))
    path = nested / "kubeai" / "nomic-embed.yaml"
    path.write_text(path.read_text().replace("max_replicas: 3", "max_replicas: 4"))
    watching.wait_output(expected_output(example_repo, crds))
    (nested / "extra").mkdir()
    (nested / "extra" / "n.yaml").write_text(spec_text("n-model"))
    watching.wait_output(expected_output(example_repo, crds))
    assert (watching.build.out / "models" / "n-model").is_dir()


def _watched_inodes() -> set[int]:
    """The inode of every folder an inotify watch of this process is on (Linux)."""
    inodes: set[int] = set()
    for fd in Path("/proc/self/fdinfo").iterdir():
        with contextlib.suppress(OSError):
            for line in (Path("/proc/self/fdinfo") / fd.name).read_text().splitlines():
                if line.startswith("inotify wd:"):
                    fields = dict(field.split(":", 1) for field in line.split()[1:])
                    inodes.add(int(fields["ino"], 16))
    return inodes


@pytest.mark.skipif(not Path("/proc/self/fdinfo").is_dir(), reason="inotify, Linux only")
def test_output_and_git_folders_are_not_watched(example_repo: Path, crds: list[Path]) -> None:
    """Watching the output folder made every write re-walk thousands of its folders and
    overflow the inotify queue, losing spec saves: only the inputs are watched."""
    subprocess.run(["git", "init", "-q", str(example_repo)], check=True)
    running = Watching(LockedBuild(example_repo, crds=crds))
    assert running.start().ok
    try:
        path = example_repo / "specs" / "kubeai" / "nomic-embed.yaml"
        path.write_text(path.read_text().replace("max_replicas: 3", "max_replicas: 4"))
        running.wait_output(expected_output(example_repo, crds))  # a second tree swapped in
        watched = _watched_inodes()
    finally:
        running.close()
    out = running.build.out
    outputs = [out, *(p for p in out.rglob("*") if p.is_dir())]
    assert len(outputs) > 20
    assert not {p.stat().st_ino for p in outputs} & watched
    dot_git = example_repo / ".git"
    assert not {p.stat().st_ino for p in [dot_git, *dot_git.rglob("*")] if p.is_dir()} & watched
    specs = example_repo / "specs"
    inputs = [example_repo, specs, *(p for p in specs.rglob("*") if p.is_dir())]
    assert {p.stat().st_ino for p in inputs} <= watched


# --------------------------------------------------------------------------- publishing


class NewerChangeWhileRendering(LockedBuild):
    """On its first batch, another spec changes while the batch renders."""

    def __init__(self, root: Path, crds: list[Path], other: Path) -> None:
        super().__init__(root, crds=crds)
        self.other = other
        self.batches = 0

    def apply(self, paths: Any) -> BatchResult:
        self.batches += 1
        if self.batches == 1:
            text = self.other.read_text()
            self.other.write_text(text.replace("max_replicas: 2", "max_replicas: 5"))
            # watchfiles yields the change within ~2 steps (20 ms); this render must be
            # seen to be overtaken, so it lasts well beyond that.
            time.sleep(0.5)
        return super().apply(paths)


def test_publish_only_good_and_latest_renders(example_repo: Path, crds: list[Path]) -> None:
    published: list[dict[str, bytes]] = []
    first = example_repo / "specs" / "kubeai" / "nomic-embed.yaml"
    other = example_repo / "specs" / "kubeai" / "bge-reranker.yaml"
    build = NewerChangeWhileRendering(example_repo, crds, other)

    def publish(files: Mapping[str, bytes]) -> str:
        published.append({**files, MANIFEST: manifest_bytes(files)})  # as written to disk
        return f"commit {len(published)}"

    running = Watching(build, publish=publish)
    assert running.start().ok
    try:
        running.next_event(lambda e: e.kind == "publish" and e.message == "commit 1")
        assert published == [expected_output(example_repo, crds)]
        first.write_text(first.read_text().replace("max_replicas: 3", "max_replicas: 4"))
        event = running.next_event(lambda e: e.kind == "publish")
        assert event.message == "commit 2"
        assert published[1] == expected_output(example_repo, crds)  # both edits, not just the first
        first.write_text("kind: kubeai-text\nname: [\n")
        running.next_event(lambda e: e.kind == "error")
        first.write_text(spec_text("nomic-embed"))
        running.next_event(lambda e: e.kind == "publish" and e.message == "commit 3")
    finally:
        running.close()
    assert len(published) == 3  # never after the broken batch, never the overtaken render
    assert published[2] == expected_output(example_repo, crds)


def test_a_failed_publish_is_retried_after_the_next_batch(
    example_repo: Path, crds: list[Path]
) -> None:
    """The commit runs beside the write; when it fails, the same tree is published again
    after the next batch, even one that changes no output file."""
    calls: list[dict[str, bytes]] = []

    def publish(files: Mapping[str, bytes]) -> str:
        calls.append(dict(files))
        if len(calls) == 1:
            raise ServegenError("the remote is down")
        return f"commit {len(calls)}"

    build = LockedBuild(example_repo, crds=crds)
    running = Watching(build, publish=publish)
    assert running.start().ok
    try:
        event = running.next_event(lambda e: e.kind in ("error", "publish"))
        assert event.kind == "error" and event.message == "publish failed: the remote is down"
        path = example_repo / "specs" / "kubeai" / "nomic-embed.yaml"
        write_in_place(path, path.read_text())  # saved unchanged: a batch, no new output
        event = running.next_event(lambda e: e.kind in ("error", "publish"))
        assert event.kind == "publish" and event.message == "commit 2"
    finally:
        running.close()
    expected = expected_output(example_repo, crds)
    assert [{**c, MANIFEST: manifest_bytes(c)} for c in calls] == [expected, expected]


def test_publish_hook_commits_the_watched_output(
    example_repo: Path, crds: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--publish goes through publish's own code with the tree the watcher rendered."""
    from generator import git

    options = WatchOptions(Common(example_repo), publish=True, crds=tuple(crds))
    with pytest.raises(ServegenError, match="git"):
        watch_command._publisher(options, IncrementalBuild(example_repo, crds=crds), Notes())
    for key, value in {
        "GIT_AUTHOR_NAME": "Ada",
        "GIT_AUTHOR_EMAIL": "ada@example.com",
        "GIT_COMMITTER_NAME": "Bot",
        "GIT_COMMITTER_EMAIL": "bot@example.com",
    }.items():
        monkeypatch.setenv(key, value)
    subprocess.run(["git", "init", "-q", "-b", "main", str(example_repo)], check=True)
    subprocess.run(["git", "-C", str(example_repo), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(example_repo), "commit", "-qm", "specs"], check=True)
    build = IncrementalBuild(example_repo, crds=crds)
    assert build.initial().ok
    hook = watch_command._publisher(options, build, Notes())
    assert hook is not None
    assert "deploy" in hook(build.files)
    repo = git.open_repo(example_repo)
    deployed = git.read_tree_files(repo, "refs/heads/deploy")
    assert {k: v for k, v in deployed.items() if k != "hydrator.metadata"} == build.files
    assert "up to date" in hook(build.files)  # nothing changed: no second commit
    assert watch_command._publisher(WatchOptions(Common(example_repo)), build, Notes()) is None


@pytest.mark.parametrize("publish", [False, True], ids=["watch", "watch --publish"])
def test_every_watcher_starts_from_the_latest_whole_build(
    example_repo: Path, crds: list[Path], monkeypatch: pytest.MonkeyPatch, publish: bool
) -> None:
    """After a render, the first build takes the latest whole build's files without
    reading each spec file's entry, a watcher that publishes too: a publish compares
    files by their blob ids, so it reads the files left in the build's entry only where
    a model changed (tests/test_listingcache.py)."""
    pipeline.build(example_repo, crds=tuple(crds))  # what `servegen render` stores
    loaded = spied_loads(monkeypatch)
    options = WatchOptions(Common(example_repo), publish=publish, crds=tuple(crds))
    assert watch_command.incremental_build(options).initial().ok
    assert loaded == []


# --------------------------------------------------------------------------- the loop


def test_a_stop_is_seen_while_waiting_even_when_no_watcher_wakes_the_wait(
    example_repo: Path,
) -> None:
    # A signal's Python handler (which sets `stop`) runs in the main thread only once it
    # runs Python code again; if nothing ever wakes its wait on the queue, the feeders
    # never see the stop and never queue their None. Here no feeder runs at all.
    build = IncrementalBuild(example_repo)
    stop = threading.Event()
    watchers = _Watchers(build, ChangeFilter(build), 20, (stop,))
    taken: list[set[str] | None] = []
    waiting = threading.Thread(target=lambda: taken.append(watchers.take()), daemon=True)
    waiting.start()
    time.sleep(0.3)  # waiting on the queue by now (if not, it only proves less)
    stop.set()
    waiting.join(WAIT_S)
    assert not waiting.is_alive()
    assert taken == [None]


def test_a_config_edit_queued_when_the_watchers_are_replaced_is_kept(
    example_repo: Path,
) -> None:
    # The spec folder is replaced (a checkout), so the watchers start afresh and the
    # folder is read again; a servegen.yaml edit queued just before must still be seen.
    build = IncrementalBuild(example_repo)
    stop = threading.Event()
    watchers = _Watchers(build, ChangeFilter(build), 20, (stop,))
    watchers.start()
    try:
        config = str(example_repo / "servegen.yaml")
        watchers.batches.put({config})
        specs = example_repo / "specs"
        specs.rename(example_repo / "specs.old")
        shutil.copytree(example_repo / "specs.old", specs)
        watchers.follow()
        taken = watchers.take()
        assert taken is not None and {config, str(build.spec_root)} <= taken
    finally:
        stop.set()
        watchers.close()


def test_filter_keeps_specs_and_config_only(example_repo: Path) -> None:
    build = IncrementalBuild(example_repo)
    keep = ChangeFilter(build)
    root = build.root
    (root / "specs" / "README.md").write_text("about the specs\n")
    added = watchfiles.Change.added
    assert keep(added, str(root / "servegen.yaml"))
    assert keep(added, str(root / "specs" / "a" / "b.yaml"))
    assert keep(added, str(root / "specs" / "gone-folder"))  # vanished: may have held specs
    assert keep(added, str(root / "specs"))
    assert keep(added, str(root))
    assert not keep(added, str(root / "specs" / "README.md"))
    assert not keep(added, str(root / "specs" / ".b.yaml.swp"))
    assert not keep(added, str(root / "specs" / ".hidden" / "b.yaml"))
    assert not keep(added, str(root / "output" / "models" / "x" / "base" / "m.yaml"))
    assert not keep(added, str(root / ".git" / "index"))
    assert not keep(added, str(root / "other" / "x.yaml"))
    assert not keep(added, str(root / "servegen.yaml.tmp"))


def test_unwatchable_root_is_a_servegen_error(tmp_path: Path) -> None:
    build = IncrementalBuild(tmp_path / "missing")
    with pytest.raises(ServegenError, match="cannot watch"):
        run_watch(build, threading.Event(), lambda _event: None)


def test_a_name_watchfiles_cannot_report_stops_the_watch_at_that_file(
    example_repo: Path, crds: list[Path]
) -> None:
    """watchfiles cannot watch a folder holding a name that is not UTF-8: the watch ends
    with that file's positioned error, the output kept as it was."""
    running = Watching(LockedBuild(example_repo, crds=crds))
    assert running.start().ok
    before = output(running.build.out)
    with open(os.path.join(os.fsencode(example_repo / "specs"), b"caf\xe9.yaml"), "w") as handle:
        handle.write("kind: x\n")
    event = running.next_event(lambda e: e.result is not None and not e.result.ok)
    assert event.result is not None
    [diag] = event.result.diagnostics
    assert (diag.path, diag.line, diag.col) == ("specs/caf\udce9.yaml", 1, 1)
    running.thread.join(WAIT_S)
    assert isinstance(running.error, ServegenError)
    assert "cannot watch" in running.error.message
    assert output(running.build.out) == before


def test_text_and_json_reports(example_repo: Path) -> None:
    result = BatchResult(
        ("specs/a.yaml", "specs/b.yaml"), ("a",), ("x", "y", "z"), (), (), 10, 41.2
    )
    out, err = io.StringIO(), io.StringIO()
    watch_command.EventWriter("text", 50, out, err)(Event("batch", result))
    assert out.getvalue().endswith(
        "] 2 file(s) changed: 1 model(s) re-rendered, 3 file(s) written, 0 removed "
        "(41 ms, debounce 50 ms)\n"
    )
    out = io.StringIO()
    writer = watch_command.EventWriter("json", 50, out, err)
    writer(Event("batch", result))
    writer(Event("batch", BatchResult((), (), (), (), (), 10, 1.0)))  # nothing changed
    writer(Event("stop"))
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["type"] for line in lines] == ["batch", "stop"]
    assert lines[0]["written"] == 3 and lines[0]["elapsed_ms"] == 41.2
    assert lines[0]["debounce_ms"] == 50 and lines[1]["batches"] == 1


def test_publish_notes_go_to_stderr_one_line_each_in_both_formats() -> None:
    for fmt in ("text", "json"):
        out, err = io.StringIO(), io.StringIO()
        watch_command.EventWriter(fmt, 50, out, err).note("first\nsecond \x1b[2J")
        assert out.getvalue() == ""
        assert err.getvalue() == "servegen: note: first\nsecond \\x1b[2J\n"


# --------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_cli_stops_cleanly_on_signal(example_repo: Path, signum: int) -> None:
    watch = ["watch", "--format", "json", "--debounce", "20"]
    command = [sys.executable, "-m", "generator", "-C", str(example_repo), *watch]
    lines: queue.Queue[str] = queue.Queue()
    with subprocess.Popen(
        command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as proc:
        stdout, stderr_stream = proc.stdout, proc.stderr
        assert stdout is not None and stderr_stream is not None
        reader = threading.Thread(target=pump_lines, args=(stdout, lines), daemon=True)
        reader.start()
        try:
            first = json.loads(lines.get(timeout=WAIT_S))
            assert first["type"] == "start" and first["ok"] is True
            path = example_repo / "specs" / "kubeai" / "nomic-embed.yaml"
            write_in_place(path, path.read_text().replace("max_replicas: 3", "max_replicas: 5"))
            batch = json.loads(lines.get(timeout=WAIT_S))
            assert batch["type"] == "batch" and batch["rendered"] == ["nomic-embed"]
            proc.send_signal(signum)
            code = proc.wait(timeout=WAIT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
        reader.join(WAIT_S)
        stderr = stderr_stream.read()
    assert code == 0, stderr
    assert "Traceback" not in stderr
    rest = []
    while not lines.empty():
        rest.append(json.loads(lines.get()))
    assert [event["type"] for event in rest] == ["stop"]


def test_cli_usage_errors(example_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["-C", str(example_repo), "watch", "--debounce", "-1"]) == 2
    assert cli.main(["-C", str(example_repo), "watch", "--push"]) == 2
    assert "it would push uncommitted edits" in capsys.readouterr().err
