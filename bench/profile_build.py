"""Profile one in-process `servegen render` (pipeline.build + write_tree) with cProfile.

    python bench/profile_build.py --specs 1000 [--top 40] [--save /tmp/build.prof]

Generates the repository (bench/generate.py), then profiles build() and the first write
into an empty output folder, and prints the top functions by cumulative and by own time,
each with its share of the profiled wall time. The imports of servegen happen before
profiling starts (see bench_render.py for their cost), but schema loading and CRD
parsing, which happen on first use, are included.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

from generate import generate_repository  # noqa: E402


def default_crds() -> Path:
    """The CRDs bundled with servegen (what every command validates against by default)."""
    from generator.crds import bundled_dir

    return bundled_dir()


def table(stats: pstats.Stats, key: str, top: int, total: float) -> str:
    """Top `top` entries sorted by `key` ('cumulative' or 'tottime') as Markdown."""
    entries = stats.stats  # type: ignore[attr-defined]
    index = 3 if key == "cumulative" else 2
    rows = sorted(entries.items(), key=lambda item: item[1][index], reverse=True)[:top]
    lines = [
        f"| function | calls | own | cumulative | share ({key}) |",
        "|---|---:|---:|---:|---:|",
    ]
    for (filename, line, name), (_cc, calls, own, cumulative, _callers) in rows:
        where = filename
        for prefix in (str(REPO_ROOT) + "/", sys.prefix + "/lib/python3.11/site-packages/"):
            where = where.removeprefix(prefix)
        label = f"`{where}:{line}({name})`" if line else f"`{name}`"
        value = cumulative if key == "cumulative" else own
        lines.append(
            f"| {label} | {calls:,} | {own:.3f} s | {cumulative:.3f} s | {value / total:.1%} |"
        )
    return "\n".join(lines)


def sample(repo: Path, args: argparse.Namespace) -> int:
    """The same run under pyinstrument's sampling profiler; prints its call tree."""
    from pyinstrument import Profiler

    from generator.pipeline import build
    from generator.write import write_tree

    profiler = Profiler(interval=0.0005)
    profiler.start()
    result = build(repo, crds=[args.crds])
    write_tree(repo / "output", result.files)
    profiler.stop()
    print(f"## pyinstrument of build() + first write, {args.specs:,} specs\n")
    print("```")
    print(
        profiler.output_text(
            unicode=False, color=False, show_all=False, short_mode=False, time="percent_of_total"
        )
    )
    print("```")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--specs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--crds", type=Path, default=default_crds())
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--save", type=Path, help="write the raw cProfile data here")
    parser.add_argument(
        "--profiler",
        choices=["cprofile", "pyinstrument"],
        default="cprofile",
        help="cProfile (deterministic, inflates call-heavy code) or "
        "pyinstrument (sampling, pip install pyinstrument; prints a call tree)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        help="parent of the scratch folder, e.g. /dev/shm to leave the disk "
        "out of the profile (default: the system temp dir)",
    )
    args = parser.parse_args(argv)

    from generator.pipeline import build
    from generator.write import write_tree

    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="servegen-profile-", dir=args.workdir))
    try:
        repo = workdir / "repo"
        generate_repository(repo, args.specs, seed=args.seed)
        if args.profiler == "pyinstrument":
            return sample(repo, args)
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        result = build(repo, crds=[args.crds])
        write_tree(repo / "output", result.files)
        profile.disable()
        total = time.perf_counter() - started
        if args.save:
            profile.dump_stats(str(args.save))
        stats = pstats.Stats(profile)
        print(
            f"## cProfile of build() + first write, {args.specs:,} specs "
            f"({total:.2f} s under the profiler)\n"
        )
        print(table(stats, "cumulative", args.top, total))
        print()
        print(table(stats, "tottime", args.top, total))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
