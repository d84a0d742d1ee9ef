"""Helpers for the tests of generator/write.py: trees as dicts, writers killed mid-write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from generator import write as write_module
from tests.conftest import REPO_ROOT


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (no symlink followed), as the tests compare trees."""
    found = {}
    for current, _dirs, names in os.walk(folder):
        for name in names:
            path = Path(current) / name
            found[path.relative_to(folder).as_posix()] = path.read_bytes()
    return found


def left_beside(out: Path) -> list[str]:
    """What a finished write leaves beside `out`, as paths below its parent: the output,
    and in servegen's scratch folder its `.gitignore` and perhaps the spare (nothing a
    killed run made, no part folder, no half of a fallback swap)."""
    found = sorted(p.name for p in out.parent.iterdir())
    scratch = write_module.scratch_folder(out)
    if scratch.is_dir():
        found += sorted(f"{scratch.name}/{p.name}" for p in scratch.iterdir())
    return found


# What a write that ran to its end leaves beside an output folder named `out`
# (left_beside()): with or without the spare, as the last swap left it.
FINISHED_BESIDE = (
    [".out.servegen", "out", ".out.servegen/.gitignore"],
    [".out.servegen", "out", ".out.servegen/.gitignore", ".out.servegen/spare"],
)


def run_writer(program: str, args: list[str], kill_after: float | None) -> float:
    """Run `python -c program args...`, which prints `ready` before it writes; kill it
    `kill_after` seconds after that (None: let it finish). Returns its run time."""
    with subprocess.Popen(
        [sys.executable, "-c", program, *args], cwd=REPO_ROOT, stdout=subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline() == b"ready\n"
        started = time.perf_counter()
        if kill_after is None:
            assert proc.wait(timeout=120) == 0
        else:
            time.sleep(kill_after)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=60)
        return time.perf_counter() - started


def spied_scans(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Which folders write_tree lists (the spare is listed only when its record fails)."""
    scanned: list[Path] = []
    real = write_module._scan

    def spy(folder: Path) -> write_module._Scan:
        scanned.append(folder)
        return real(folder)

    monkeypatch.setattr(write_module, "_scan", spy)
    return scanned


def counted_forks(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The pids of the children os.fork() makes from now on (workers.in_two's splits)."""
    forks: list[int] = []
    fork = os.fork

    def counted() -> int:
        pid = fork()
        if pid:
            forks.append(pid)
        return pid

    monkeypatch.setattr(os, "fork", counted)
    return forks
