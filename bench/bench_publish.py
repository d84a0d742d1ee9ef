"""Benchmark a one-spec `servegen publish --push` against a local bare remote.

A --specs repository is generated (bench/generate.py, plus the probe spec that
bench_watch.py edits), committed, and pushed to a bare repository standing in for the
remote; a first `servegen publish --push` creates the deploy branch. Then, --iterations
times, the probe spec gets a new `--max-model-len` and

- **yardstick**: `git commit -qam` + `git push -q origin main` of that one file (plain
  git, the same repository) is timed;
- **end to end**: `servegen publish --push` in a fresh process is timed (render of HEAD,
  checks, deploy commit, push);
- **deploy commit**: in one long-lived process, the same publish split in two: the
  render (`build()` of the working tree) and `publish_files` (tips, fetch, checks,
  commit, compare-and-swap, push), which is what publish and `watch --publish` share.

servegen runs as users run it, as in bench_cache.py: every custom resource is checked
against the CRDs it bundles, and no `--crds` is passed unless `--crds DIR` is given
here. (Earlier runs passed the bundled folder again; servegen then also hashes and
indexes those files as configured CRDs, which was within the noise of a fresh
process: 9 alternating runs, medians 992 and 949 ms.)

Every row is printed with its median, p90, the target and the yardstick of the same
run. `--pythonpath TREE` runs another source tree for every servegen row; `--baseline
TREE` also times a fresh-process publish of that tree (for example the code before a
change) after every edit, alternating with this tree's, so before and after come from
one run on one machine; it publishes from a copy of the repository and remote, so
each tree builds on deploy commits it made itself, as one servegen does.

    python bench/bench_publish.py                     # 1,000 specs, 7 edits
    python bench/bench_publish.py --specs 200 --iterations 3
    python bench/bench_publish.py --pythonpath /tmp/before   # same, with another tree
    python bench/bench_publish.py --baseline /tmp/before     # before and after, one run
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

from bench_watch import PROBE, PROBE_PATH, PROBE_TEXT, git  # noqa: E402
from generate import generate_repository  # noqa: E402

TARGET_END_TO_END_S = 0.5  # issue 14: one-spec publish at 1,000 specs
IDENTITY = {"SERVEGEN_COMMITTER_NAME": "bench", "SERVEGEN_COMMITTER_EMAIL": "bench@example.com"}


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def servegen_env(
    args: argparse.Namespace, workdir: Path, tree: Path | None = None
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    # An installed servegen runs from compiled bytecode; without it every fresh process
    # compiles its modules again (about 0.3 s), which no user pays.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update(IDENTITY)
    env["XDG_CACHE_HOME"] = str(workdir / "cache")  # the same warm cache for every run
    env["PYTHONPATH"] = str(tree or args.pythonpath or REPO_ROOT)
    return env


def edit_probe(repo: Path, value: int) -> None:
    (repo / PROBE_PATH).write_text(PROBE_TEXT.format(name=PROBE, value=value), encoding="utf-8")


def prepare(args: argparse.Namespace, workdir: Path) -> Path:
    repo, remote = workdir / "repo", workdir / "remote.git"
    for left in (remote, workdir / "cache"):  # a reused --workdir starts afresh too
        shutil.rmtree(left, ignore_errors=True)
    log(f"generating {args.specs} specs in {repo}")
    generate_repository(repo, args.specs - 1, seed=args.seed, force=True)
    (repo / PROBE_PATH).parent.mkdir(parents=True, exist_ok=True)
    edit_probe(repo, 4096)
    (repo / ".gitignore").write_text("output/\n", encoding="utf-8")
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    git(repo, "init", "-q", "-b", "main")
    # No `gc --auto` detached behind the yardstick's commits: it repacks while servegen
    # runs (CPU taken from the timed run, objects moving from loose to packed under it).
    git(repo, "config", "gc.auto", "0")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "specs")
    git(repo, "remote", "add", "origin", str(remote))
    git(repo, "push", "-q", "origin", "main")
    return repo


def run_publish(args: argparse.Namespace, repo: Path, env: dict[str, str]) -> float:
    command = [args.python, "-m", "generator", "-C", str(repo), "publish", "--push"]
    started = time.perf_counter()
    # cwd outside every source tree: `python -m` puts the cwd before PYTHONPATH.
    done = subprocess.run(
        [*command, *crd_args(args)], env=env, capture_output=True, cwd=repo.parent
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"publish failed: {done.stderr.decode(errors='replace')}")
    return elapsed


def crd_args(args: argparse.Namespace) -> list[str]:
    """`--crds DIR` when one was asked for; by default none, as users run servegen:
    every custom resource is then checked against the CRDs servegen bundles."""
    return [] if args.crds is None else ["--crds", str(args.crds)]


def twin(repo: Path, name: str) -> Path:
    """A copy of `repo` and its remote under `name`, for another tree to publish from:
    each tree builds on its own deploy branch (and its own commits' listings)."""
    workdir = repo.parent / name
    shutil.copytree(repo, workdir / "repo", symlinks=True)
    shutil.copytree(repo.parent / "remote.git", workdir / "remote.git", symlinks=True)
    git(workdir / "repo", "remote", "set-url", "origin", str(workdir / "remote.git"))
    return workdir / "repo"


def end_to_end(args: argparse.Namespace, repo: Path, workdir: Path) -> dict[str, list[float]]:
    trees = {"publish": (repo, servegen_env(args, workdir))}
    if args.baseline:
        baseline = twin(repo, "baseline")
        trees["baseline"] = (baseline, servegen_env(args, workdir, args.baseline))
    log("first publish (creates the deploy branch, warms the build cache)")
    for where, env in trees.values():
        run_publish(args, where, env)
    rows: dict[str, list[float]] = {"yardstick": [], **{name: [] for name in trees}}
    value = 5000
    for i in range(args.iterations):
        for name, (where, env) in trees.items():  # alternating: both see the same load
            value += 1
            edit_probe(where, value)
            started = time.perf_counter()
            git(where, "commit", "-qam", f"edit {value}")
            git(where, "push", "-q", "origin", "main")
            rows["yardstick"].append(time.perf_counter() - started)
            # The in-place build trusts only inputs older than its racy window.
            time.sleep(0.2)
            rows[name].append(run_publish(args, where, env))
            log(f"edit {i}: {name} {rows[name][-1]:.3f} s, git {rows['yardstick'][-1]:.3f} s")
    return rows


def in_process(args: argparse.Namespace, repo: Path, workdir: Path) -> dict[str, list[float]]:
    """The split, measured by this script run as `--split REPO N CRDS` under the tree."""
    command = [args.python, __file__, "--split", str(repo), str(args.iterations), *crd_args(args)]
    done = subprocess.run(command, env=servegen_env(args, workdir), capture_output=True)
    if done.returncode != 0:
        raise SystemExit(f"in-process run failed: {done.stderr.decode(errors='replace')}")
    rows: dict[str, list[float]] = json.loads(done.stdout)
    return rows


def split(repo: Path, iterations: int, crds: tuple[Path, ...]) -> int:
    """Render and deploy commit of each edit, timed apart in one process."""
    from generator import git as sg_git
    from generator import publish as pub
    from generator.pipeline import build
    from generator.reporter import Notes

    handle = sg_git.open_repo(repo)
    target = pub.Target(
        repo=handle,
        branch="deploy",
        remote="origin",
        source_remote="origin",
        committer=sg_git.Identity("bench", "bench@example.com"),
        sign=False,
        allow_prune=False,
        max_shrink=0.3,
        max_attempts=3,
        reporter=Notes(),
    )
    rows: dict[str, list[float]] = {"render": [], "deploy": [], "processes": []}
    started_git = sg_git._git
    counting = [False]  # only the git processes of publish_files

    def counted(*args: Any, **kwargs: Any) -> Any:
        if counting[0]:
            rows["processes"][-1] += 1
        return started_git(*args, **kwargs)

    sg_git._git = counted  # type: ignore[assignment]  # counting, nothing changed
    for i in range(iterations):
        edit_probe(repo, 9000 + i)
        git(repo, "commit", "-qam", f"split {i}")
        git(repo, "push", "-q", "origin", "main")
        started = time.perf_counter()
        files = build(repo, crds=crds).files
        rows["render"].append(time.perf_counter() - started)
        source = pub.Source(sg_git.head_commit(handle), False, "bench")
        started = time.perf_counter()
        rows["processes"].append(0)
        counting[0] = True
        outcome = pub.publish_files(target, source, files)
        counting[0] = False
        rows["deploy"].append(time.perf_counter() - started)
        if outcome.status != "published":
            raise SystemExit(f"expected a new deploy commit, got {outcome.status}")
    print(json.dumps(rows))
    return 0


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def row(label: str, values: list[float], target: str, yardstick: list[float]) -> str:
    median = statistics.median(values)
    return (
        f"| {label} | {median * 1000:.0f} ms | {p90(values) * 1000:.0f} ms | {target} | "
        f"{statistics.median(yardstick) * 1000:.0f} ms |"
    )


def report(args: argparse.Namespace, rows: dict[str, list[float]]) -> str:
    tree = f"`{args.pythonpath}`" if args.pythonpath else "this tree"
    yard = rows["yardstick"]
    lines = [
        "## servegen publish benchmark",
        "",
        f"{args.specs:,} specs, {args.iterations} one-spec edits, local bare remote, "
        f"servegen from {tree}; medians and p90. Yardstick: `git commit -qam` + "
        "`git push` of the one edited file, same repository, same run.",
        "",
        "| one-spec publish | median | p90 | target | yardstick (plain git) |",
        "|---|---:|---:|---:|---:|",
        row(
            "`servegen publish --push`, fresh process",
            rows["publish"],
            f"< {TARGET_END_TO_END_S * 1000:.0f} ms",
            yard,
        ),
        *(
            [row(f"the same, baseline `{args.baseline}`", rows["baseline"], "-", yard)]
            if "baseline" in rows
            else []
        ),
        row("of which render (`build()`, in-process)", rows["render"], "-", yard),
        row("of which the deploy commit (`publish_files`)", rows["deploy"], "-", yard),
        row("yardstick: `git commit` + `git push`", yard, "-", yard),
        "",
        f"git processes per deploy commit (`publish_files`, with --push): "
        f"{statistics.median(rows['processes']):.0f}; the render is the build of the "
        "working tree, which publish shares with `servegen render`.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--split"]:
        crds = tuple(Path(p) for p in argv[4:5])  # after "--crds", when given
        return split(Path(argv[1]), int(argv[2]), crds)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--specs", type=int, default=1000, help="repository size (default 1000)")
    parser.add_argument("--iterations", type=int, default=7, help="edits (default 7)")
    parser.add_argument(
        "--crds", type=Path, help="also pass --crds DIR (default: none; the bundled CRDs apply)"
    )
    parser.add_argument("--pythonpath", type=Path, help="run servegen from this source tree")
    parser.add_argument("--baseline", type=Path, help="also time publish from this tree")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the raw figures here")
    args = parser.parse_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="servegen-publishbench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    rows: dict[str, Any] = {}
    try:
        repo = prepare(args, workdir)
        rows.update(end_to_end(args, repo, workdir))
        rows.update(in_process(args, repo, workdir))
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report(args, rows))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
