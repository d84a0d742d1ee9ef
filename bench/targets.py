"""Every performance target in one run, each next to its yardstick from that same run.

Runs the four benchmark scripts one after another (bench_cache.py twice: at 10,000
specs, then at 1,000 for the yardstick `kubectl kustomize` gives where it finishes),
each writing its raw figures as JSON, keeps those figures in one file, and turns them
into the README's table of targets (the part between the two `bench/targets.py`
markers):

    python bench/targets.py --workdir /dev/shm/targets --json bench/results/targets.json \\
        --readme README.md
    python bench/targets.py --from-json bench/results/targets.json --readme README.md

The second form only rewrites the table from figures already measured.
tests/test_bench_targets.py checks that the README's table is the one these figures give.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
EN_DASH = "\u2013"  # ranges, as the README writes them
BEGIN = "<!-- bench/targets.py: begin -->"
END = "<!-- bench/targets.py: end -->"

sys.path.insert(0, str(BENCH_DIR))

# The rows of bench_cache.py this table reads, by its names for them.
from bench_cache import (  # noqa: E402
    ADDED,
    COLD,
    CP,
    DIFF,
    GIT_DIFF,
    KUSTOMIZE,
    ONE_CHANGED,
    PUBLISH_FIRST,
    PUBLISH_ONE,
    REMOVED,
    UNCHANGED,
    VALUE_CHANGED,
    WATCH_FIRST,
)
from bench_coldstart import LIBRARIES_ROW, MODULES_ROW  # noqa: E402

Results = dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Row:
    label: str
    now: str
    target: str
    met: bool
    yardstick: str


def _seconds(values: list[float]) -> str:
    return " / ".join(f"{v:.2f}" for v in values) + " s"


def _ms(value: float) -> str:
    return f"{value * 1000:,.0f} ms"


def _cache_row(results: Results, label: str, names: tuple[str, ...], limit: float) -> Row:
    size = results["cache"]["10000"]
    values = [size[name][0] for name in names]
    return Row(
        label, _seconds(values), f"< {limit:g} s", max(values) < limit, _copy_yardstick(results)
    )


def _copy_yardstick(results: Results) -> str:
    return f"`cp -r` of the output {results['cache']['10000'][CP][0]:.2f} s"


def nothing_changed(results: Results) -> Row:
    label = "10,000 specs, nothing changed: `render` / `render --check` / `validate`"
    return _cache_row(results, label, UNCHANGED, 1.5)


def one_changed(results: Results) -> Row:
    label = "10,000 specs, one spec changed, `render`: a comment / a value (its files change)"
    return _cache_row(results, label, (ONE_CHANGED, VALUE_CHANGED), 2.0)


def files_added_or_removed(results: Results) -> Row:
    """Not a row of the issue's table: the commonest change to a large repository, held
    to the limit of one spec changed."""
    label = "10,000 specs, a spec file added / removed, `render` (not in the issue's table)"
    return _cache_row(results, label, (ADDED, REMOVED), 2.0)


def diff_one_change(results: Results) -> Row | None:
    """Not a row of the issue's table: a pull request's `diff` at 10,000 specs, held to
    the limit of one spec changed; None for figures kept before this row existed."""
    size = results["cache"]["10000"]
    if DIFF not in size:
        return None
    seconds, peak = size[DIFF]
    return Row(
        "10,000 specs, `diff --base HEAD~1` of one spec's change (not in the issue's table)",
        f"{seconds:.2f} s ({peak:.0f} MB)",
        "< 2 s",
        seconds < 2.0,
        f"`git diff HEAD~1` {_ms(size[GIT_DIFF][0])}",
    )


def cold_render(results: Results) -> Row:
    label = "10,000 specs, full cold render (empty build cache, tmpfs)"
    row = _cache_row(results, label, (COLD,), 8.0)
    small = results.get("kustomize", {}).get("1000")  # figures kept before it lack it
    if not small:
        return row
    # kubectl kustomize of 10,000 specs' environments takes over ten minutes: the tool
    # that reads servegen's output is timed where it finishes, next to servegen there.
    return dataclasses.replace(
        row,
        yardstick=f"{row.yardstick}; at 1,000 specs, same run: servegen's cold render "
        f"{small[COLD][0]:.2f} s, `kubectl kustomize` of every environment "
        f"{small[KUSTOMIZE][0]:.2f} s",
    )


def publish(results: Results) -> Row:
    rows = results["publish"]
    median = statistics.median(rows["publish"])
    split = (
        f" (render {_ms(statistics.median(rows['render']))}, "
        f"deploy commit {_ms(statistics.median(rows['deploy']))})"
    )
    return Row(
        "1,000 specs, one-spec `publish --push` (local bare remote), fresh process",
        _ms(median) + split,
        "< 500 ms",
        median < 0.5,
        f"`git commit` + `git push` {_ms(statistics.median(rows['yardstick']))}",
    )


def watch_deploy(results: Results) -> Row:
    run = results["watch"]["publish"]
    deploys = [s["deploy_s"] for s in run["samples"] if s.get("deploy_s") is not None]
    median = statistics.median(deploys)
    yardstick = statistics.median(run["yardstick"]) / 1000  # bench_watch.py records ms
    return Row(
        "1,000 specs, `watch --publish`: spec saved → deploy commit",
        f"{_ms(median)} ({len(deploys)} edits)",
        "< 250 ms",
        median < 0.25,
        f"`git commit` of the spec {_ms(yardstick)}",
    )


def cold_validate(results: Results) -> Row:
    rows = results["coldstart"]
    medians = [statistics.median(v) for k, v in rows.items() if k.startswith("`servegen")]
    low, high = min(medians), max(medians)
    same = round(low * 1000) == round(high * 1000)
    now = _ms(low) if same else f"{_ms(low)[:-3]}{EN_DASH}{_ms(high)}"
    pass_ = statistics.median(rows["`python -c pass`"])
    pydantic = statistics.median(rows["`python -c 'import pydantic'`"])
    yardstick = f"`python -c pass` {_ms(pass_)}, `import pydantic` {_ms(pydantic)}"
    libraries = rows.get(LIBRARIES_ROW)  # figures kept before this row existed lack it
    if libraries:
        yardstick += f", importing the libraries it needs {_ms(statistics.median(libraries))}"
    modules = rows.get(MODULES_ROW)  # (likewise)
    if modules:
        yardstick += f", importing those and servegen's modules {_ms(statistics.median(modules))}"
    return Row(
        "`validate`, 1-spec repository, empty cache, fresh process",
        now,
        "< 250 ms",
        high < 0.25,
        yardstick,
    )


def peak_rss(results: Results) -> Row:
    size = results["cache"]["10000"]
    runs = [UNCHANGED, (ONE_CHANGED, VALUE_CHANGED), (ADDED, REMOVED), (COLD,)]
    label = "nothing changed / one spec changed / a file added or removed / cold"
    if WATCH_FIRST in size:  # figures kept before watch's first build was in this row lack it
        runs.append((WATCH_FIRST,))
        label += " / `watch`'s first build"
    peaks = [max(size[name][1] for name in names) for names in runs]
    return Row(
        f"10,000 specs, peak RSS: {label}",
        " / ".join(f"{peak:.0f}" for peak in peaks) + " MB",
        "< 200 MB",
        max(peaks) < 200,
        f"`cp -r` of the output {size[CP][1]:.0f} MB",
    )


def publish_rss(results: Results) -> Row | None:
    """The peak RSS of `publish` at 10,000 specs (and how long it took), the one command
    the row above leaves out; None for figures kept before this row existed."""
    size = results["cache"]["10000"]
    if PUBLISH_FIRST not in size:
        return None
    runs = [size[PUBLISH_FIRST], size[PUBLISH_ONE]]
    return Row(
        "10,000 specs, peak RSS of `publish --push`: a new deploy branch / one spec's "
        "value changed",
        " / ".join(f"{peak:.0f}" for _, peak in runs)
        + f" MB ({_seconds([seconds for seconds, _ in runs])})",
        "< 200 MB",
        max(peak for _, peak in runs) < 200,
        f"`cp -r` of the output {size[CP][1]:.0f} MB",
    )


ROWS: tuple[Callable[[Results], Row | None], ...] = (
    nothing_changed,
    one_changed,
    files_added_or_removed,
    diff_one_change,
    cold_render,
    publish,
    watch_deploy,
    cold_validate,
    peak_rss,
    publish_rss,
)


def table(results: Results) -> str:
    """The README's table: every target, met or not, with its same-run yardstick."""
    machine = results["machine"]
    lines = [
        f"Measured {machine['date']} by `bench/targets.py` on {machine['cpus']} CPUs "
        f"({machine['system']}), load average {machine['load']:.1f} before the run; "
        "every yardstick is from the same run.",
        "",
        "| target | now | limit | met | yardstick, same run |",
        "|---|---:|---:|:-:|---|",
    ]
    for make in ROWS:
        row = make(results)
        if row is None:  # a row the figures predate
            continue
        met = "yes" if row.met else "no"
        lines.append(f"| {row.label} | {row.now} | {row.target} | {met} | {row.yardstick} |")
    return "\n".join(lines)


def replace_table(readme: str, new_table: str) -> str:
    """`readme` with the text between the markers replaced by `new_table`."""
    start, end = readme.find(BEGIN), readme.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"README: the markers {BEGIN!r} and {END!r} are missing")
    return f"{readme[: start + len(BEGIN)]}\n{new_table}\n{readme[end:]}"


def readme_table(readme: str) -> str:
    """The table now between the markers (what replace_table() put there)."""
    start, end = readme.find(BEGIN), readme.find(END)
    return readme[start + len(BEGIN) : end].strip("\n")


# --- running the scripts ----------------------------------------------------------------------


def _script(name: str, out: Path, *args: str) -> Any:
    command = [sys.executable, str(BENCH_DIR / name), *args, "--json", str(out)]
    print(f"[targets] {' '.join(command[1:])}", file=sys.stderr, flush=True)
    subprocess.run(command, check=True, stdout=sys.stderr)
    return json.loads(out.read_text())


def measure(workdir: Path, repeat: int, iterations: int) -> Results:
    workdir.mkdir(parents=True, exist_ok=True)
    machine = {
        "date": time.strftime("%Y-%m-%d"),
        "cpus": os.cpu_count(),
        "system": f"{platform.system()} {platform.machine()}, Python {platform.python_version()}",
        "load": os.getloadavg()[0],
    }
    repeats = ("--repeat", str(repeat))
    return {
        "machine": machine,
        "cache": _script(
            "bench_cache.py",
            workdir / "cache.json",
            "--sizes",
            "10000",
            *repeats,
            "--workdir",
            str(workdir / "cache"),
        ),
        "publish": _script(
            "bench_publish.py",
            workdir / "publish.json",
            "--specs",
            "1000",
            "--iterations",
            str(iterations),
            "--workdir",
            str(workdir / "publish"),
        ),
        "watch": _script(
            "bench_watch.py",
            workdir / "watch.json",
            "--publish-only",
            "--poll-ms",
            "50",
            "--iterations",
            str(iterations),
            "--workdir",
            str(workdir / "watch"),
        ),
        "coldstart": _script("bench_coldstart.py", workdir / "coldstart.json", *repeats),
        "kustomize": _script(
            "bench_cache.py",
            workdir / "kustomize.json",
            "--sizes",
            "1000",
            "--rows",
            "cold,kustomize",
            *repeats,
            "--workdir",
            str(workdir / "kustomize"),
        ),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temp dir)")
    parser.add_argument("--repeat", type=int, default=3, help="fresh processes per row")
    parser.add_argument("--iterations", type=int, default=10, help="edits to publish and watch")
    parser.add_argument("--json", type=Path, help="keep the figures here")
    parser.add_argument("--from-json", type=Path, help="do not measure: use these figures")
    parser.add_argument("--readme", type=Path, help="rewrite this README's table")
    args = parser.parse_args(argv)
    if args.from_json:
        results = json.loads(args.from_json.read_text())
    else:
        workdir = args.workdir or Path(tempfile.mkdtemp(prefix="servegen-targets-"))
        results = measure(workdir, args.repeat, args.iterations)
    if args.json and not args.from_json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    rendered = table(results)
    print(rendered)
    if args.readme:
        args.readme.write_text(replace_table(args.readme.read_text(), rendered))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
