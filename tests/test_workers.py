"""A fresh build spread over worker processes: the same build, the same errors."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from generator import buildcache, pipeline, wholebuild, workers
from generator.cli import main
from generator.config import Config
from generator.errors import InvalidInputError, RenderError
from generator.pipeline import Build, build
from generator.render import ModelRender, render_spec
from generator.spool import SpooledFiles
from generator.validate import ValidatedSpec, load_config
from tests.cacheutil import entries, head
from tests.conftest import REPO_ROOT


def _serial(root: Path, monkeypatch: pytest.MonkeyPatch) -> Build:
    with monkeypatch.context() as serial:
        serial.setenv("SERVEGEN_JOBS", "1")
        return build(root)


@pytest.fixture
def spread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Worker processes for any repository of two spec files or more, every file
    derived by them."""
    monkeypatch.setattr(workers, "MIN_FILES", 2)
    monkeypatch.setattr(workers, "WARM_UP", 0)
    monkeypatch.setenv("SERVEGEN_JOBS", "2")


def _forget_builds() -> None:
    shutil.rmtree(buildcache.cache_dir(), ignore_errors=True)


class _RenderedBy:
    """render_spec, noting which process rendered each model (forks inherit it)."""

    def __init__(self, log: Path) -> None:
        self.log = log

    def __call__(self, spec: ValidatedSpec, config: Config) -> ModelRender:
        with self.log.open("a", encoding="utf-8") as handle:
            handle.write(f"{os.getpid()} {spec.name}\n")
        return render_spec(spec, config)

    def pids(self) -> set[int]:
        return {int(line.split()[0]) for line in self.log.read_text().splitlines()}


@pytest.mark.usefixtures("spread")
def test_workers_render_every_model_and_the_build_is_the_same(
    example_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serial = _serial(example_repo, monkeypatch)
    _forget_builds()
    rendered = _RenderedBy(tmp_path / "rendered")
    monkeypatch.setattr(pipeline, "render_spec", rendered)
    spread = build(example_repo)
    assert threading.active_count() == 1  # the pool is shut down once its results are in
    assert os.getpid() not in rendered.pids()  # the workers rendered every model
    assert len(rendered.log.read_text().splitlines()) == len(serial.models)
    assert spread.files == serial.files
    # The workers' files wait in the spool, not in memory; the tree's order is the same.
    assert isinstance(spread.files, SpooledFiles) and list(spread.files) == list(serial.files)
    assert spread.models == serial.models
    assert (spread.notes, spread.warnings) == (serial.notes, serial.warnings)
    # What the workers stored is found again: a later build renders nothing.
    assert len([p for p in entries() if "names" in head(p)]) == len(serial.models)


@pytest.mark.usefixtures("spread")
def test_the_parent_derives_the_first_files_before_it_forks(
    example_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serial = _serial(example_repo, monkeypatch)
    _forget_builds()
    monkeypatch.setattr(workers, "WARM_UP", 3)
    rendered = _RenderedBy(tmp_path / "rendered")
    monkeypatch.setattr(pipeline, "render_spec", rendered)
    spread = build(example_repo)
    lines = rendered.log.read_text().splitlines()
    by_parent = [name for pid, name in map(str.split, lines) if int(pid) == os.getpid()]
    assert len(by_parent) == 3 and len(lines) == len(serial.models)
    assert lines[:3] == [f"{os.getpid()} {name}" for name in by_parent]  # before any fork
    assert spread.files == serial.files


@pytest.mark.usefixtures("spread")
def test_an_invalid_spec_is_reported_as_by_one_process(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = example_repo / "specs" / "kserve" / "bert-sentiment.yaml"
    spec.write_text(spec.read_text().replace("backend:", "backnd:"))
    with pytest.raises(InvalidInputError) as serial:
        _serial(example_repo, monkeypatch)
    _forget_builds()
    with pytest.raises(InvalidInputError) as spread:
        build(example_repo)
    assert spread.value.diagnostics == serial.value.diagnostics
    assert any(
        d.path == "specs/kserve/bert-sentiment.yaml" and d.line == 8
        for d in spread.value.diagnostics
    )


@pytest.mark.usefixtures("spread")
def test_the_command_line_reports_file_line_col_and_exits_1(
    example_repo: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = example_repo / "specs" / "vllm" / "qwen-cpu.yaml"
    spec.write_text(spec.read_text() + "extra_field: 1\n")
    assert main(["-C", str(example_repo), "render"]) == 1
    err = capsys.readouterr().err
    assert re.search(r"specs/vllm/qwen-cpu\.yaml:\d+:\d+: .*extra_field", err), err
    assert "Traceback" not in err


@pytest.mark.usefixtures("spread")
def test_a_spec_that_does_not_render_raises_its_render_error(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(spec: ValidatedSpec, config: Config) -> ModelRender:
        if spec.name == "qwen-chat":
            raise RenderError("the template refused")
        return render_spec(spec, config)

    monkeypatch.setattr(pipeline, "render_spec", refuse)
    with pytest.raises(RenderError) as serial:
        _serial(example_repo, monkeypatch)
    _forget_builds()
    with pytest.raises(RenderError) as spread:
        build(example_repo)
    assert spread.value.message == serial.value.message
    assert "the template refused" in spread.value.message


@pytest.mark.usefixtures("spread")
def test_an_edited_spec_is_rendered_again_by_the_workers(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = build(example_repo)
    spec = example_repo / "specs" / "kserve" / "bert-sentiment.yaml"
    spec.write_text(spec.read_text().replace("max_replicas: 3", "max_replicas: 4"))
    for path in entries():  # no whole build to start from: every file goes to the workers
        if "notes" in head(path):
            path.unlink()
    second = build(example_repo)
    assert second.files != first.files
    assert second.files == _serial(example_repo, monkeypatch).files
    changed = {p for p in second.files if second.files[p] != first.files.get(p)}
    assert changed and all("bert-sentiment" in p or "endpoints" in p for p in changed), changed


@pytest.mark.usefixtures("spread")
def test_an_entry_not_of_its_key_is_derived_again(
    example_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serial = _serial(example_repo, monkeypatch)
    for path in entries():
        if "notes" in head(path):
            path.unlink()
        elif "names" in head(path):  # a foreign entry under this file's name
            path.write_bytes(re.sub(rb'"key":"[0-9a-f]+"', b'"key":"0"', path.read_bytes()))
    rendered = _RenderedBy(tmp_path / "rendered")
    monkeypatch.setattr(pipeline, "render_spec", rendered)
    again = build(example_repo)
    assert again.files == serial.files
    # None trusted: every model rendered again (by the workers), and stored again.
    assert len(rendered.log.read_text().splitlines()) == len(serial.models)
    assert all(head(p)["key"] != "0" for p in entries() if "names" in head(p))


@pytest.mark.usefixtures("spread")
@pytest.mark.parametrize("in_flight", [1, workers.IN_FLIGHT])
def test_a_worker_that_dies_leaves_its_files_to_the_parent(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch, in_flight: int
) -> None:
    # With one batch in flight per worker, most batches are handed out after the pool
    # broke: each is derived by the parent too.
    monkeypatch.setattr(workers, "IN_FLIGHT", in_flight)
    serial = _serial(example_repo, monkeypatch)
    _forget_builds()
    parent = os.getpid()
    derive = pipeline.Repository._derive_batch

    def dying(self: pipeline.Repository, rels: Sequence[str]) -> list[object]:
        if os.getpid() != parent:
            os._exit(3)
        return derive(self, rels)  # type: ignore[return-value]

    monkeypatch.setattr(pipeline.Repository, "_derive_batch", dying)
    assert build(example_repo).files == serial.files


def test_small_repositories_and_threads_stay_in_one_process() -> None:
    assert not workers.usable(workers.MIN_FILES - 1, 2)
    assert not workers.usable(workers.MIN_FILES, 1)
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:  # a fork would copy locks that thread may hold
        assert not workers.usable(workers.MIN_FILES, 2)
    finally:
        stop.set()
        other.join()


def test_jobs_follow_servegen_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVEGEN_JOBS", "1")
    assert workers.jobs() == 1
    for unusable in ("not a number", "²", "9" * 5000, "0"):
        monkeypatch.setenv("SERVEGEN_JOBS", unusable)
        assert workers.jobs() == len(os.sched_getaffinity(0))


def test_batches_cover_every_item_in_order() -> None:
    items = [f"specs/{n}.yaml" for n in range(1000)]
    parts = workers.batches(items, 2)
    assert [item for part in parts for item in part] == items
    assert len(parts) > 2 and max(map(len, parts)) <= 64


def test_what_the_parent_printed_before_forking_is_printed_once(example_repo: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from generator import pipeline, workers; "
        "workers.MIN_FILES = 2; workers.WARM_UP = 0; print('printed before the build'); "
        "pipeline.build(Path(sys.argv[1]))"
    )
    env = {**os.environ, "SERVEGEN_JOBS": "2"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(example_repo)],
        capture_output=True,  # a pipe: stdout is block-buffered, as in CI logs
        text=True,
        env=env,
        cwd=REPO_ROOT,
        check=True,
        timeout=300,
    )
    assert done.stdout.count("printed before the build") == 1, done.stdout


@pytest.mark.usefixtures("spread")
def test_what_workers_say_a_file_contributes_is_what_the_parent_computes(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A later build trusts these to keep the cross-model results (Repository.delta)."""
    config, problems = load_config(example_repo)
    assert not problems
    serial = pipeline.Repository(example_repo, config)
    serial.update(serial.scan())
    _forget_builds()
    spread = pipeline.Repository(example_repo, config)
    spread.update(spread.scan(), jobs=2)
    assert spread.files.keys() == serial.files.keys()
    for rel, state in spread.files.items():
        assert state.contribution is not None  # said by a worker
        assert state.contribution == pipeline._contribution(serial.files[rel])
        assert state.digest == serial.files[rel].digest
        assert state.names == serial.files[rel].names


@pytest.mark.usefixtures("spread")
def test_without_the_build_cache_the_workers_still_render_and_store_nothing(
    example_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SERVEGEN_NO_CACHE", "1")
    serial = _serial(example_repo, monkeypatch)
    rendered = _RenderedBy(tmp_path / "rendered")
    monkeypatch.setattr(pipeline, "render_spec", rendered)
    spread = build(example_repo)
    assert os.getpid() not in rendered.pids()
    assert (spread.files, spread.models, spread.notes) == (
        serial.files,
        serial.models,
        serial.notes,
    )
    assert entries() == []


@pytest.mark.usefixtures("spread")
def test_a_worker_build_stores_the_very_entry_one_process_stores(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _serial(example_repo, monkeypatch)
    serial = {p.name: p.read_bytes() for p in entries() if "sections" in head(p)}
    _forget_builds()
    build(example_repo)
    spread = {p.name: p.read_bytes() for p in entries() if "sections" in head(p)}
    assert len(serial) == 1 and spread == serial


@pytest.mark.usefixtures("spread")
def test_without_a_temporary_folder_the_files_stay_in_memory(
    example_repo: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    serial = _serial(example_repo, monkeypatch)
    _forget_builds()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    spread = build(example_repo)
    assert not isinstance(spread.files, SpooledFiles)
    assert list(spread.files.items()) == list(serial.files.items())


# --- a sweep split in two: the second half in one forked child ------------------------------


def _pids_of(items: Sequence[str]) -> bytes:
    """One line per item: the item and the process that looked at it."""
    return "".join(f"{item} {os.getpid()}\n" for item in items).encode()


@pytest.fixture
def sweep(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Items enough for a split, on two jobs."""
    monkeypatch.setattr(workers, "MIN_SWEEP", 4)
    monkeypatch.setenv("SERVEGEN_JOBS", "2")
    return [f"models/m{n}/base/deployment.yaml" for n in range(9)]


def _no_child_left() -> bool:
    try:
        os.waitpid(-1, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def test_a_sweep_is_the_task_of_all_items_with_its_second_half_in_a_child(
    sweep: list[str],
) -> None:
    lines = workers.in_two(_pids_of, sweep).decode().splitlines()
    assert [line.split()[0] for line in lines] == sweep
    pids = [int(line.split()[1]) for line in lines]
    assert set(pids[:4]) == {os.getpid()}
    assert len(set(pids[4:])) == 1 and pids[4] != os.getpid()
    assert _no_child_left()


def test_a_short_sweep_one_job_or_another_thread_stays_in_this_process(
    sweep: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def here(items: Sequence[str]) -> bool:
        lines = workers.in_two(_pids_of, items).decode().splitlines()
        return {int(line.split()[1]) for line in lines} == {os.getpid()}

    assert here(sweep[:3])
    monkeypatch.setenv("SERVEGEN_JOBS", "1")
    assert here(sweep)
    monkeypatch.setenv("SERVEGEN_JOBS", "2")
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:  # a fork would copy locks that thread may hold
        assert here(sweep)
    finally:
        stop.set()
        other.join()
    assert not here(sweep)


@pytest.mark.parametrize("how", ["raises", "is killed"])
def test_a_child_that_fails_leaves_its_half_to_this_process(sweep: list[str], how: str) -> None:
    parent = os.getpid()

    def task(items: Sequence[str]) -> bytes:
        if os.getpid() != parent:
            if how == "raises":
                raise OSError("gone")
            os.kill(os.getpid(), signal.SIGKILL)
        return _pids_of(items)

    assert workers.in_two(task, sweep) == _pids_of(sweep)
    assert _no_child_left()


def test_an_error_in_this_half_is_raised_and_the_child_is_waited_for(sweep: list[str]) -> None:
    """Also with the child's bytes more than a pipe holds: the pipe is closed first, so
    a child blocked writing ends rather than being waited for forever."""
    parent = os.getpid()

    def task(items: Sequence[str]) -> bytes:
        if os.getpid() == parent:
            raise FileNotFoundError(items[0])
        return b"x" * (1 << 20)

    with pytest.raises(FileNotFoundError, match="m0"):
        workers.in_two(task, sweep)
    assert _no_child_left()


def _cache_bytes() -> dict[str, bytes]:
    folder = buildcache.cache_dir()
    return {
        path.relative_to(folder).as_posix(): path.read_bytes() for path in folder.rglob("*.json")
    }


def test_workers_store_byte_for_byte_the_entries_of_one_process(
    example_repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each model's text is made once by its worker and carried into its file's entry,
    its contribution and (through the parent's spool) the whole build's entry: every
    entry is still exactly what a one-process build stores."""
    monkeypatch.setattr(buildcache, "cache_dir", lambda: tmp_path / "one")
    _serial(example_repo, monkeypatch)
    one = _cache_bytes()
    monkeypatch.setattr(buildcache, "cache_dir", lambda: tmp_path / "two")
    monkeypatch.setattr(workers, "MIN_FILES", 2)
    monkeypatch.setattr(workers, "WARM_UP", 0)
    monkeypatch.setenv("SERVEGEN_JOBS", "2")
    texts: list[object] = []
    store_build = wholebuild.store_build

    def spied(*args: Any, **kwargs: Any) -> str:
        texts.extend(args[7])  # the models' texts the parent passes on
        return store_build(*args, **kwargs)

    monkeypatch.setattr(wholebuild, "store_build", spied)
    build(example_repo)
    assert texts and all(text is not None for text in texts)  # all from the workers
    assert _cache_bytes() == one
    assert len(one) > 3  # the spec files', the whole build's, the latest, cluster files
