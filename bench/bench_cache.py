"""Benchmark what a run costs when little or nothing changed (the persistent build cache).

For each size a repository is generated (bench/generate.py), then every row below is a
fresh `python -m generator` process (wall time and the kernel's peak RSS from os.wait4),
repeated --repeat times (median reported), with its yardstick from the same run:

- full cold render: empty build cache, empty output folder (CRD cache warm, as on any
  machine that ran servegen once); yardstick `cp -r` of the rendered output folder;
- nothing changed: `render` (output up to date), `render --check`, `validate`; each
  also with SERVEGEN_NO_CACHE=1, i.e. what the same run costs without the cache;
- one spec changed: one spec file gets a new comment line, then `render`;
- `python -c pass`: a bare interpreter's start-up.

    python bench/bench_cache.py --sizes 1000 --repeat 5 --workdir /dev/shm/sgc

The figures are noisy on a shared machine: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from bench_render import Run, checked, run_measured  # noqa: E402
from generate import generate_repository  # noqa: E402


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class Scenario:
    """Runs servegen against one generated repository with a private cache folder."""

    def __init__(self, args: argparse.Namespace, root: Path, cache: Path) -> None:
        self.python, self.pythonpath = args.python, args.pythonpath
        self.root, self.cache = root, cache
        self.out = root / "output"

    def servegen(self, *args: str, cache: bool = True) -> Run:
        env = [f"XDG_CACHE_HOME={self.cache}", f"SERVEGEN_NO_CACHE={'' if cache else '1'}"]
        if self.pythonpath:  # another servegen source tree (e.g. before a change)
            env.append(f"PYTHONPATH={self.pythonpath}")
        command = ["env", *env, self.python, "-m", "generator", "-C", str(self.root), *args]
        # Not from this folder: `python -m` puts the working folder first on sys.path.
        return checked(run_measured(command, cwd=self.root), " ".join(args))

    def forget_builds(self) -> None:
        shutil.rmtree(self.cache / "servegen" / "builds", ignore_errors=True)
        shutil.rmtree(self.out, ignore_errors=True)


def _median(runs: Sequence[Run]) -> tuple[float, float]:
    return statistics.median(r.seconds for r in runs), max(r.maxrss_mb for r in runs)


def bench_size(
    size: int, args: argparse.Namespace, workdir: Path
) -> dict[str, tuple[float, float]]:
    root = workdir / f"repo-{size}"
    if root.exists():
        shutil.rmtree(root)
    log(f"{size} specs: generating")
    generate_repository(root, size, seed=args.seed)
    s = Scenario(args, root, workdir / f"cache-{size}")
    s.servegen("validate")  # warms the CRD cache, as any machine that ran servegen once
    rows: dict[str, list[Run]] = {}

    def measure(
        name: str, action: Callable[[], Run], before: Callable[[], None] = lambda: None
    ) -> None:
        for _ in range(args.repeat):
            before()
            rows.setdefault(name, []).append(action())
        log(f"{size} specs: {name}: {statistics.median(r.seconds for r in rows[name]):.2f} s")

    measure("render, cold (no cache, empty output)", lambda: s.servegen("render"), s.forget_builds)
    copy = workdir / "copy"

    def cp() -> Run:
        shutil.rmtree(copy, ignore_errors=True)
        return checked(run_measured(["cp", "-r", str(s.out), str(copy)]), "cp -r")

    measure("yardstick: cp -r of the output", cp)
    measure("render, nothing changed", lambda: s.servegen("render"))
    measure("render, nothing changed, no cache", lambda: s.servegen("render", cache=False))
    measure("render --check, nothing changed", lambda: s.servegen("render", "--check"))
    measure(
        "render --check, nothing changed, no cache",
        lambda: s.servegen("render", "--check", cache=False),
    )
    measure("validate, nothing changed", lambda: s.servegen("validate"))
    measure("validate, nothing changed, no cache", lambda: s.servegen("validate", cache=False))
    spec = sorted((root / "specs").rglob("*.yaml"))[size // 2]
    counter = iter(range(10**6))

    def touch() -> None:
        with spec.open("a", encoding="utf-8") as handle:
            handle.write(f"# edit {next(counter)}\n")

    measure("render, one spec changed", lambda: s.servegen("render"), touch)
    measure(
        "render, one spec changed, no cache",
        lambda: s.servegen("render", cache=False),
        touch,
    )
    measure(
        "yardstick: python -c pass",
        lambda: checked(run_measured([args.python, "-c", "pass"]), "python"),
    )
    return {name: _median(runs) for name, runs in rows.items()}


def report(results: dict[int, dict[str, tuple[float, float]]], repeat: int) -> str:
    sizes = sorted(results)
    lines = [
        "| " + " | ".join(["run", *(f"{n:,} specs: s / peak RSS MB" for n in sizes)]) + " |",
        "|---" + "|---:" * len(sizes) + "|",
    ]
    for name in results[sizes[0]]:
        cells = [f"{results[n][name][0]:.2f} / {results[n][name][1]:.0f}" for n in sizes]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines.append("")
    lines.append(f"Medians of {repeat} fresh processes; load average after the run: {load}.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000", help="comma-separated spec counts")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temp dir)")
    parser.add_argument("--python", default=sys.executable, help="interpreter with servegen")
    parser.add_argument("--pythonpath", help="run servegen from this source tree instead")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="servegen-bench-cache-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = {}
    for size in (int(n) for n in args.sizes.split(",")):
        results[size] = bench_size(size, args, workdir)
    print(report(results, args.repeat))
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
