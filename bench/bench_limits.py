"""Time the guards and hot paths whose speed used to be asserted in tests.

Speed on a shared machine is not a pass/fail property, so these are measured here and
compared with their targets (median of --repeat runs):

- manifest validation, warm: objects/s (target >= 7,500);
- an alias bomb (9 levels of 9) refused by load_documents (target < 1 s), by
  validate_repository (< 2 s) and by parse_rendered (< 5 s);
- every invalid corpus spec validated (slowest case; target < 5 s);
- read_tree_files of a commit with 2,000 files (target < 10 s);
- write_tree: first write, an up-to-date rewrite and a one-file change of 2,000 files
  (the whole tree is swapped in atomically; no target).

    .venv/bin/python bench/bench_limits.py [--crds DIR] [--repeat 5]
"""

from __future__ import annotations

import argparse
import copy
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generator.check import ManifestChecker  # noqa: E402
from generator.crds import bundled_dir  # noqa: E402
from generator.git import open_repo, read_tree_files  # noqa: E402
from generator.validate import validate_repository  # noqa: E402
from generator.write import write_tree  # noqa: E402
from generator.yamlio import YamlSyntaxError, load_documents, parse_rendered  # noqa: E402
from tests import objects  # noqa: E402
from tests.yamlbombs import bomb  # noqa: E402


def median_s(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def refused(action: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        try:
            action()
        except YamlSyntaxError:
            return
        raise SystemExit("the alias bomb was not refused")

    return run


def throughput(crds: Path, repeat: int) -> float:
    validator = ManifestChecker("1.33", (crds,))
    mix = [
        objects.deployment(),
        objects.service(),
        objects.hpa(),
        objects.kubeai_model(),
        objects.inference_service(),
    ]
    batch = [copy.deepcopy(o) for _ in range(1000) for o in mix]
    validator.check(mix)  # warm-up: compiles the validators
    return len(batch) / median_s(lambda: validator.check(batch), repeat)


def bomb_repo(tmp: Path) -> Path:
    (tmp / "bomb" / "specs").mkdir(parents=True)
    (tmp / "bomb" / "specs" / "bomb.yaml").write_text(bomb(9, 9))
    return tmp / "bomb"


def slowest_corpus_case(tmp: Path) -> float:
    slowest = 0.0
    for case in sorted((ROOT / "tests" / "corpus" / "invalid").glob("*.yaml")):
        repo = tmp / "corpus" / case.stem
        (repo / "specs").mkdir(parents=True)
        shutil.copy(case, repo / "specs" / case.name)
        slowest = max(slowest, median_s(lambda r=repo: validate_repository(r), 1))
    return slowest


def git_repo(tmp: Path) -> Path:
    path = tmp / "many"
    for i in range(2000):
        target = path / f"d{i % 10}/sub{i % 37}/file-{i}.yaml"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f"index: {i}\n".encode())
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "b",
        "GIT_AUTHOR_EMAIL": "b@x",
        "GIT_COMMITTER_NAME": "b",
        "GIT_COMMITTER_EMAIL": "b@x",
    }
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "many"]):
        subprocess.run(["git", *args], cwd=path, env=env, check=True)
    return path


def write_figures(tmp: Path, repeat: int) -> dict[str, float]:
    files = {f"models/m{i:04}/base/obj.yaml": f"i: {i}\n".encode() for i in range(2000)}
    first = []
    for n in range(repeat):
        out = tmp / f"write{n}"
        first.append(median_s(lambda o=out: write_tree(o, files), 1))
    out = tmp / "write0"
    same = median_s(lambda: write_tree(out, files), repeat)
    toggle = iter(range(10**6))
    changed = median_s(
        lambda: write_tree(out, {**files, "README.md": str(next(toggle)).encode()}), repeat
    )
    return {"first": statistics.median(first), "same": same, "one-changed": changed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crds", type=Path, default=bundled_dir())
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.workdir) as name:
        tmp = Path(name)
        text = bomb(9, 9)
        repo = bomb_repo(tmp)
        many = open_repo(git_repo(tmp))
        writes = write_figures(tmp, args.repeat)
        rows = [
            (
                "validation, warm",
                f"{throughput(args.crds, args.repeat):,.0f} objects/s",
                ">= 7,500 objects/s",
            ),
            (
                "alias bomb: load_documents",
                f"{median_s(refused(lambda: load_documents(text)), args.repeat) * 1000:.0f} ms",
                "< 1 s",
            ),
            (
                "alias bomb: validate_repository",
                f"{median_s(lambda: validate_repository(repo), args.repeat) * 1000:.0f} ms",
                "< 2 s",
            ),
            (
                "alias bomb: parse_rendered",
                f"{median_s(refused(lambda: parse_rendered(text)), args.repeat) * 1000:.0f} ms",
                "< 5 s",
            ),
            ("invalid corpus, slowest case", f"{slowest_corpus_case(tmp) * 1000:.0f} ms", "< 5 s"),
            (
                "read_tree_files, 2,000 files",
                f"{median_s(lambda: read_tree_files(many, 'HEAD'), args.repeat) * 1000:.0f} ms",
                "< 10 s",
            ),
            *(
                (f"write_tree, 2,000 files, {k}", f"{v * 1000:.0f} ms", "-")
                for k, v in writes.items()
            ),
        ]
    print("| what | median | target |\n|---|---:|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
