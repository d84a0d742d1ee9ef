"""Benchmark the build path against its targets: cold, nothing changed, one spec changed.

For each size a repository is generated (bench/generate.py), then every row below is a
fresh process (wall time and the kernel's peak RSS from os.wait4), repeated --repeat
times (median reported), with its yardsticks from the same run:

- full cold render: empty build cache, empty output folder (CRD cache warm, as on any
  machine that ran servegen once);
- nothing changed: `render` (output up to date), `render --check`, `validate`;
- one spec changed: one spec file gets a new comment line, then `render`; and one
  spec's `max_replicas` goes up by one (its model's files change), then `render`;
- a spec file added (a copy of a spec under a new name), then `render`; and one of
  the generated spec files moved out of the repository, then `render` (each time
  another file, so no build of that very set of files was made before);
- nothing changed, `render` run inside the repository without -C (a relative root);
- `publish --push` to a bare repository standing in for the remote: the first one,
  which makes the deploy branch (every file new; the branch is deleted before each
  run), and one after a spec's value changed and was committed and pushed (its
  model's files change; a fresh process, as CI runs it);
- `diff --base HEAD~1` after a spec's value changed and was committed (a pull request's
  diff: the base's build stored by the run before, the working tree the head), with
  `git diff HEAD~1` of that commit as its yardstick; commits are exported into a
  temporary folder on the workdir's file system;
- watch's first build: a fresh IncrementalBuild.initial() (what `servegen watch` does
  first), with the output up to date and the build cache warm;
- with --no-cache-rows, the nothing-changed and one-changed runs again with
  SERVEGEN_NO_CACHE=1, i.e. what they cost without the cache;
- yardsticks: `cp -r` of the rendered output folder, `python -c pass`, and (at sizes up
  to --kustomize-max, 1,000 by default) `kubectl kustomize` of every environment.

It prints every row, then the issue's targets next to the measured medians and the
yardsticks of the same run:

    python bench/bench_cache.py --sizes 1000,10000 --repeat 3 --workdir /dev/shm/sgc

The figures are noisy on a shared machine: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

from bench_render import Run, checked, default_kubectl, run_measured  # noqa: E402
from generate import generate_repository  # noqa: E402

COLD = "render, cold (empty build cache and output)"
UNCHANGED = (
    "render, nothing changed",
    "render --check, nothing changed",
    "validate, nothing changed",
)
ONE_CHANGED = "render, one spec changed"
VALUE_CHANGED = "render, one spec's value changed (its model's files change)"
ADDED = "render, a spec file added (a new model)"
REMOVED = "render, a spec file removed"
NO_C = "render, nothing changed, run inside the repository (no -C)"
WATCH_FIRST = "watch's first build (IncrementalBuild.initial), warm cache"
PUBLISH_FIRST = "publish --push, a new deploy branch (every file new)"
PUBLISH_ONE = "publish --push, one spec's value changed and pushed"
DIFF = "diff --base HEAD~1, one spec's value changed and committed"
GIT_DIFF = "yardstick: git diff HEAD~1 of that commit"
CP = "yardstick: cp -r of the output"
PYTHON = "yardstick: python -c pass"
KUSTOMIZE = "yardstick: kubectl kustomize, every environment"


@dataclass(frozen=True)
class Target:
    """One row of the issue's table: a measured row at a size, and its limit."""

    label: str
    size: int
    rows: tuple[str, ...]
    limit: float
    unit: str = "s"  # "s": median seconds; "MB": the largest peak RSS of the rows


TARGETS = (
    Target("nothing changed: render / render --check / validate", 10_000, UNCHANGED, 1.5),
    Target("one spec changed: render", 10_000, (ONE_CHANGED,), 2.0),
    Target("one spec's value changed: render", 10_000, (VALUE_CHANGED,), 2.0),
    Target("full cold render (tmpfs)", 10_000, (COLD,), 8.0),
    Target(
        "peak RSS, nothing or one spec changed",
        10_000,
        (*UNCHANGED, ONE_CHANGED, VALUE_CHANGED),
        200,
        "MB",
    ),
    Target("a spec file added / removed: render", 10_000, (ADDED, REMOVED), 2.0),
    Target(
        "peak RSS, every servegen run",
        10_000,
        (COLD, *UNCHANGED, ONE_CHANGED, ADDED, REMOVED),
        200,
        "MB",
    ),
    Target("peak RSS, publish --push", 10_000, (PUBLISH_FIRST, PUBLISH_ONE), 200, "MB"),
    Target("diff of one spec's change against its parent commit", 10_000, (DIFF,), 2.0),
)


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class Scenario:
    """Runs servegen against one generated repository with a private cache folder."""

    def __init__(self, args: argparse.Namespace, root: Path, cache: Path) -> None:
        self.python, self.pythonpath = args.python, args.pythonpath
        self.root, self.cache = root, cache
        self.out = root / "output"
        self.tmp = cache.parent / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)

    def _env(self, cache: bool) -> list[str]:
        env = [f"XDG_CACHE_HOME={self.cache}", f"SERVEGEN_NO_CACHE={'' if cache else '1'}"]
        # Where diff (and publish, from an unclean worktree) export a commit: beside the
        # repository, on the workdir's file system (tmpfs, as every row here).
        env.append(f"TMPDIR={self.tmp}")
        if self.pythonpath:  # another servegen source tree (e.g. before a change)
            env.append(f"PYTHONPATH={self.pythonpath}")
        return env

    def servegen(self, *args: str, cache: bool = True) -> Run:
        command = ["env", *self._env(cache), self.python, "-m", "generator", "-C"]
        # Not from this folder: `python -m` puts the working folder first on sys.path.
        return checked(run_measured([*command, str(self.root), *args], cwd=self.root), args[0])

    def servegen_inside(self, *args: str) -> Run:
        """servegen run from the repository folder, without -C (root is ".")."""
        command = ["env", *self._env(True), self.python, "-m", "generator", *args]
        return checked(run_measured(command, cwd=self.root), args[0])

    def watch_first_build(self) -> Run:
        code = (
            "import sys; from pathlib import Path; "
            "from generator.incremental import IncrementalBuild; "
            "result = IncrementalBuild(Path(sys.argv[1])).initial(); "
            "sys.exit(0 if result.ok and not result.written else 1)"
        )
        command = ["env", *self._env(True), self.python, "-c", code, str(self.root)]
        return checked(run_measured(command, cwd=self.root), "IncrementalBuild.initial")

    def forget_builds(self) -> None:
        shutil.rmtree(self.cache / "servegen" / "builds", ignore_errors=True)
        shutil.rmtree(self.out, ignore_errors=True)


# --rows: the short name of each group of rows (a no-cache row goes with its row).
ROW_KEYS = (
    *("cold", "cp", "unchanged", "noc", "watch", "comment", "value", "files", "publish"),
    "diff",
    *("python", "kustomize"),
)


def bench_size(
    size: int, args: argparse.Namespace, workdir: Path
) -> dict[str, tuple[float, float]]:
    root = workdir / f"repo-{size}"
    picked = set(args.rows.split(",")) if args.rows else set(ROW_KEYS)
    if root.exists() and not (args.keep_repo and (root / "servegen.yaml").is_file()):
        shutil.rmtree(root)
    if not root.exists():
        log(f"{size} specs: generating")
        generate_repository(root, size, seed=args.seed)
    s = Scenario(args, root, workdir / f"cache-{size}")
    s.servegen("validate")  # warms the CRD cache, as any machine that ran servegen once
    if "cold" not in picked:
        s.servegen("render")  # not measured: the output and build cache as the rows expect
    rows: dict[str, list[Run]] = {}
    keys = {COLD: "cold", CP: "cp", NO_C: "noc", WATCH_FIRST: "watch", ONE_CHANGED: "comment"}
    keys.update({VALUE_CHANGED: "value", PYTHON: "python", KUSTOMIZE: "kustomize"})
    keys.update({ADDED: "files", REMOVED: "files"})
    keys.update(dict.fromkeys((PUBLISH_FIRST, PUBLISH_ONE), "publish"))
    keys.update(dict.fromkeys((DIFF, GIT_DIFF), "diff"))
    keys.update(dict.fromkeys(UNCHANGED, "unchanged"))

    def measure(
        name: str, action: Callable[[], Run], before: Callable[[], None] = lambda: None
    ) -> None:
        if keys[name.removesuffix(", no cache")] not in picked:
            return
        for _ in range(args.repeat):
            before()
            rows.setdefault(name, []).append(action())
        runs = [r.seconds for r in rows[name]]
        listed = " ".join(f"{seconds:.2f}" for seconds in runs)
        log(f"{size} specs: {name}: {statistics.median(runs):.2f} s (runs: {listed})")

    measure(COLD, lambda: s.servegen("render"), s.forget_builds)
    copy = workdir / "copy"

    def cp() -> Run:
        shutil.rmtree(copy, ignore_errors=True)
        return checked(run_measured(["cp", "-r", str(s.out), str(copy)]), "cp -r")

    measure(CP, cp)
    shutil.rmtree(copy, ignore_errors=True)
    for name, command in zip(
        UNCHANGED, (["render"], ["render", "--check"], ["validate"]), strict=True
    ):
        measure(name, lambda c=command: s.servegen(*c))
        if args.no_cache_rows:
            measure(f"{name}, no cache", lambda c=command: s.servegen(*c, cache=False))
    measure(NO_C, lambda: s.servegen_inside("render"))
    measure(WATCH_FIRST, s.watch_first_build)
    spec = sorted((root / "specs").rglob("*.yaml"))[size // 2]
    counter = iter(range(10**6))

    def touch() -> None:
        with spec.open("a", encoding="utf-8") as handle:
            handle.write(f"# edit {next(counter)}\n")

    measure(ONE_CHANGED, lambda: s.servegen("render"), touch)
    scaled = next(
        path
        for path in sorted((root / "specs").rglob("*.yaml"))[size // 2 :]
        if re.search(r"max_replicas: \d+", path.read_text(encoding="utf-8"))
    )

    def bump() -> None:
        text = scaled.read_text(encoding="utf-8")
        bumped = re.sub(r"max_replicas: (\d+)", lambda m: f"max_replicas: {int(m[1]) + 1}", text)
        scaled.write_text(bumped, encoding="utf-8")

    measure(VALUE_CHANGED, lambda: s.servegen("render"), bump)
    added, removed = add_and_remove(root, workdir / "removed", counter)
    measure(ADDED, lambda: s.servegen("render"), added)
    measure(REMOVED, lambda: s.servegen("render"), removed)
    if "publish" in picked or "diff" in picked:
        first, one = publish_steps(root, workdir / f"remote-{size}.git", bump)
        measure(PUBLISH_FIRST, lambda: s.servegen("publish", "--push"), first)
        measure(PUBLISH_ONE, lambda: s.servegen("publish", "--push"), one)
        # A pull request's diff: its base built before (the publish job stored it), the
        # working tree holding the commit that changed one spec.
        measure(DIFF, lambda: s.servegen("diff", "--base", "HEAD~1"), one)
        git_diff = ["git", "-C", str(root), "diff", "HEAD~1"]
        measure(GIT_DIFF, lambda: checked(run_measured(git_diff), "git diff"))
    if args.no_cache_rows:
        measure(f"{ONE_CHANGED}, no cache", lambda: s.servegen("render", cache=False), touch)
    measure(PYTHON, lambda: checked(run_measured([args.python, "-c", "pass"]), "python"))
    if size <= args.kustomize_max and args.kubectl:
        measure(KUSTOMIZE, lambda: kustomize_all(args.kubectl, s.out, args.kustomize_timeout))
    return {name: _median(runs) for name, runs in rows.items()}


def add_and_remove(
    root: Path, aside: Path, counter: Iterator[int]
) -> tuple[Callable[[], None], Callable[[], None]]:
    """Steps before the added and removed rows: a copy of a spec under a new name and
    file name, each time another; one of the generated spec files moved out of the
    repository (to `aside`), each time another, so no build of that very set of files
    was made before (a whole-build hit would not be this row)."""
    specs = sorted((root / "specs").rglob("*.yaml"))
    source = specs[len(specs) // 3]
    text = source.read_text(encoding="utf-8")
    name = re.search(r"^name: (\S+)$", text, re.MULTILINE)
    assert name is not None, source
    taken = iter(specs[len(specs) // 3 + 1 :])
    aside.mkdir(parents=True, exist_ok=True)

    def add() -> None:
        new = f"{name[1]}-copy{next(counter)}"
        copy = text.replace(f"name: {name[1]}\n", f"name: {new}\n")
        source.with_name(f"{new}.yaml").write_text(copy, encoding="utf-8")

    def remove() -> None:
        spec = next(taken)
        spec.rename(aside / f"{next(counter)}-{spec.name}")

    return add, remove


def publish_steps(
    root: Path, remote: Path, bump: Callable[[], None]
) -> tuple[Callable[[], None], Callable[[], None]]:
    """The repository made a git repository (its output folder left out), pushed to a
    bare repository whose HEAD names main; then the steps before the publish rows: the
    deploy branch deleted here and there (the next publish makes it anew), and a spec's
    value changed, committed and pushed."""
    shutil.rmtree(root / ".git", ignore_errors=True)
    shutil.rmtree(remote, ignore_errors=True)
    git(root, "init", "-q", "-b", "main")
    (root / ".git" / "info" / "exclude").write_text("/output/\n", encoding="utf-8")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "specs")
    git(root, "init", "-q", "--bare", str(remote))
    git(remote, "symbolic-ref", "HEAD", "refs/heads/main")
    git(root, "remote", "add", "origin", str(remote))
    git(root, "push", "-q", "origin", "main")

    def first() -> None:
        git(remote, "update-ref", "-d", "refs/heads/deploy")
        git(root, "update-ref", "-d", "refs/heads/deploy")
        git(root, "update-ref", "-d", "refs/remotes/origin/deploy")

    def one() -> None:
        bump()
        git(root, "commit", "-qam", "scale")
        git(root, "push", "-q", "origin", "main")

    return first, one


def git(where: Path, *args: str) -> None:
    """Plain git, as a user runs it (the bench's own identity for its commits)."""
    identity = ["-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    subprocess.run(["git", *identity, *args], cwd=where, check=True, capture_output=True)


def kustomize_all(kubectl: str, out: Path, timeout: float) -> Run:
    """`kubectl kustomize` of every clusters/<env>, as one summed run."""
    runs = [
        checked(run_measured([kubectl, "kustomize", str(env)], timeout=timeout), "kustomize")
        for env in sorted((out / "clusters").iterdir())
    ]
    return Run(sum(r.seconds for r in runs), max(r.maxrss_mb for r in runs), 0, "", "")


def _median(runs: Sequence[Run]) -> tuple[float, float]:
    return statistics.median(r.seconds for r in runs), max(r.maxrss_mb for r in runs)


def report(results: dict[int, dict[str, tuple[float, float]]], repeat: int) -> str:
    sizes = sorted(results)
    names = list(dict.fromkeys(name for n in sizes for name in results[n]))
    lines = [
        "| " + " | ".join(["run", *(f"{n:,} specs: s / peak RSS MB" for n in sizes)]) + " |",
        "|---" + "|---:" * len(sizes) + "|",
    ]
    for name in names:
        cells = [
            f"{results[n][name][0]:.2f} / {results[n][name][1]:.0f}" if name in results[n] else ""
            for n in sizes
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", *targets(results)]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    lines.append("")
    lines.append(f"Medians of {repeat} fresh processes; load average after the run: {load}.")
    return "\n".join(lines)


def targets(results: dict[int, dict[str, tuple[float, float]]]) -> list[str]:
    """The issue's targets, each next to its measured value and the run's yardsticks."""
    lines = [
        "| target | specs | now | target | met | yardsticks, same run |",
        "|---|---:|---:|---:|---|---|",
    ]
    for target in TARGETS:
        measured = results.get(target.size)
        if measured is None or not all(row in measured for row in target.rows):
            limit = f"< {target.limit:g} {target.unit}"
            lines.append(f"| {target.label} | {target.size:,} | not run | {limit} | | |")
            continue
        if target.unit == "MB":
            values = [measured[row][1] for row in target.rows]
            now = f"{max(values):.0f} MB"
            met = max(values) < target.limit
        else:
            values = [measured[row][0] for row in target.rows]
            now = " / ".join(f"{v:.2f}" for v in values) + " s"
            met = max(values) < target.limit
        lines.append(
            f"| {target.label} | {target.size:,} | {now} | < {target.limit:g} {target.unit} "
            f"| {'yes' if met else 'no'} | {yardsticks(results, target.size)} |"
        )
    return lines


def yardsticks(results: dict[int, dict[str, tuple[float, float]]], size: int) -> str:
    found = [f"cp -r {results[size][CP][0]:.2f} s"] if CP in results[size] else []
    for n, measured in sorted(results.items()):
        if KUSTOMIZE in measured:
            found.append(f"kubectl kustomize at {n:,} specs {measured[KUSTOMIZE][0]:.2f} s")
    return "; ".join(found)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000", help="comma-separated spec counts")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temp dir)")
    parser.add_argument("--python", default=sys.executable, help="interpreter with servegen")
    parser.add_argument("--pythonpath", help="run servegen from this source tree instead")
    parser.add_argument("--no-cache-rows", action="store_true", help="also SERVEGEN_NO_CACHE=1")
    parser.add_argument("--kubectl", default=default_kubectl())
    parser.add_argument("--kustomize-max", type=int, default=1000, help="largest size to kustomize")
    parser.add_argument("--kustomize-timeout", type=float, default=600.0)
    parser.add_argument("--json", type=Path, help="also write {size: {row: [s, MB]}} here")
    parser.add_argument(
        "--rows", help=f"only these rows, comma-separated: {','.join(ROW_KEYS)} (default: all)"
    )
    parser.add_argument(
        "--keep-repo", action="store_true", help="reuse the workdir's generated repository"
    )
    args = parser.parse_args(argv)
    unknown = set(args.rows.split(",")) - set(ROW_KEYS) if args.rows else set()
    if unknown:
        parser.error(f"--rows: unknown {', '.join(sorted(unknown))}; choose from {ROW_KEYS}")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="servegen-bench-cache-"))
    workdir.mkdir(parents=True, exist_ok=True)
    results = {}
    for size in (int(n) for n in args.sizes.split(",")):
        results[size] = bench_size(size, args, workdir)
    print(report(results, args.repeat))
    if args.json:
        raw = {
            str(size): {row: list(v) for row, v in rows.items()} for size, rows in results.items()
        }
        args.json.write_text(json.dumps(raw, indent=1))
    if args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
