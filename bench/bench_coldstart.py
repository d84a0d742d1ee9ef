"""Time `servegen validate` of a one-spec repository from a cold cache, in fresh processes.

A fresh CI runner starts with no build cache and no CRD cache: every run pays for the
interpreter, the imports and whatever servegen computes before it can judge one spec.
Each round runs, in this order and with an empty `XDG_CACHE_HOME` for servegen:
`python -c pass`, `python -c 'import pydantic'`, an import of every library validate
needs (pydantic's models, Jinja, ruamel.yaml, jsonschema-rs: the floor no servegen
change can go below) (the yardsticks), an import of what validate imports before it
reads a file (those libraries and servegen's own modules: where servegen's own import
cost shows) and `servegen validate` of a repository holding one spec of each runtime
family in turn. Medians per row.

Bytecode is compiled once beforehand into a private prefix (`PYTHONPYCACHEPREFIX`), as an
installed package has it; `--no-bytecode` measures with compilation on every run.

    .venv/bin/python bench/bench_coldstart.py [--repeat 15] [--importtime] [--instructions]

On a shared machine wall times of a few hundred milliseconds move by tens of percent
between rounds; `--instructions` also counts the instructions of one run of each row
under valgrind's callgrind (when valgrind is installed): a figure that does not depend
on the machine's load, for comparing two trees (`--compare`).
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

ROOT = Path(__file__).resolve().parents[1]
SCAFFOLD = ROOT / "generator" / "scaffold"
PYTHON = sys.executable
SERVEGEN = [PYTHON, "-m", "generator"]
TARGET_S = 0.25
# One spec per runtime family: KubeAI Model, vLLM Deployment, KServe InferenceService.
SPECS = ("tinyllama-chat.yaml", "qwen-chat.yaml", "distilbert-sentiment.yaml")
# What a validate cannot do without: models, templates, YAML with positions, schema checks.
LIBRARIES = "import pydantic.main, pydantic.fields, jinja2, ruamel.yaml, jsonschema_rs"
LIBRARIES_ROW = "`python -c 'import <the libraries validate uses>'`"
# Those libraries and servegen's own modules, as `servegen validate` has them before it
# reads a file (models, dataclasses and patterns defined; templates, the object checker
# and the runtime modules come later, when first used).
MODULES = "import generator.cli, generator.commands.validate"
MODULES_ROW = "`python -c 'import <what validate imports before it reads a file>'`"


def one_spec_repo(parent: Path, spec: str) -> Path:
    repo = parent / Path(spec).stem
    (repo / "specs").mkdir(parents=True)
    shutil.copy(SCAFFOLD / "servegen.yaml", repo / "servegen.yaml")
    shutil.copy(SCAFFOLD / "specs" / spec, repo / "specs" / spec)
    return repo


def timed(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(command)} failed:\n{done.stdout.decode()}{done.stderr.decode()}"
        )
    return elapsed


def instructions(command: list[str], cwd: Path, env: dict[str, str]) -> int | None:
    """Instructions one run of `command` executes (callgrind's `Collected`), or None."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    done = subprocess.run(
        [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", *command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    for line in done.stderr.splitlines():
        if "Collected :" in line:
            return int(line.rsplit(":", 1)[1].strip())
    return None


def count_rows(
    trees: dict[str, Path], repos: list[Path], tmp: Path, env: dict[str, str]
) -> dict[str, int | None]:
    """Instructions of one run per row: the yardsticks, then each tree and spec."""
    cache = tmp / "xdg-count"
    cold = {**env, "XDG_CACHE_HOME": str(cache)}
    counts = {
        "`python -c pass`": instructions([PYTHON, "-c", "pass"], tmp, cold),
        "`python -c 'import pydantic'`": instructions([PYTHON, "-c", "import pydantic"], tmp, cold),
        LIBRARIES_ROW: instructions([PYTHON, "-c", LIBRARIES], tmp, cold),
        MODULES_ROW: instructions([PYTHON, "-c", MODULES], tmp, cold),
    }
    for label, tree in trees.items():
        for spec, repo in zip(SPECS, repos, strict=True):
            shutil.rmtree(cache, ignore_errors=True)
            row = f"`servegen validate`{label}, 1 spec ({spec})"
            counts[row] = instructions(
                [*SERVEGEN, "validate"], repo, {**cold, "PYTHONPATH": str(tree)}
            )
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--no-bytecode", action="store_true")
    parser.add_argument("--importtime", action="store_true", help="print the slowest imports")
    parser.add_argument("--json", type=Path, help="also write each row's times (s) here")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count each row's instructions (one run under valgrind's callgrind)",
    )
    parser.add_argument(
        "--pythonpath",
        type=Path,
        default=ROOT,
        help="the source tree to run (e.g. before a change)",
    )
    parser.add_argument(
        "--compare", type=Path, default=None, help="another source tree, timed in the same rounds"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="servegen-coldstart-") as name:
        tmp = Path(name)
        env = {**os.environ, "PYTHONPATH": str(args.pythonpath)}
        env.pop("SERVEGEN_NO_CACHE", None)
        if args.no_bytecode:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        else:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
        repos = [one_spec_repo(tmp, spec) for spec in SPECS]
        trees = {"": args.pythonpath, **({" before": args.compare} if args.compare else {})}
        rows: dict[str, list[float]] = {
            "`python -c pass`": [],
            "`python -c 'import pydantic'`": [],
            LIBRARIES_ROW: [],
            MODULES_ROW: [],
        }
        cache = tmp / "xdg"
        for label, tree in trees.items():
            for spec, repo in zip(SPECS, repos, strict=True):
                rows[f"`servegen validate`{label}, 1 spec ({spec})"] = []
                tree_env = {**env, "PYTHONPATH": str(tree), "XDG_CACHE_HOME": str(cache)}
                timed([*SERVEGEN, "validate"], repo, tree_env)  # compiles bytecode; must pass
        for _ in range(args.repeat):
            shutil.rmtree(cache, ignore_errors=True)
            cold = {**env, "XDG_CACHE_HOME": str(cache)}
            rows["`python -c pass`"].append(timed([PYTHON, "-c", "pass"], tmp, cold))
            rows["`python -c 'import pydantic'`"].append(
                timed([PYTHON, "-c", "import pydantic"], tmp, cold)
            )
            rows[LIBRARIES_ROW].append(timed([PYTHON, "-c", LIBRARIES], tmp, cold))
            rows[MODULES_ROW].append(timed([PYTHON, "-c", MODULES], tmp, cold))
            for label, tree in trees.items():
                for spec, repo in zip(SPECS, repos, strict=True):
                    shutil.rmtree(cache, ignore_errors=True)
                    rows[f"`servegen validate`{label}, 1 spec ({spec})"].append(
                        timed([*SERVEGEN, "validate"], repo, {**cold, "PYTHONPATH": str(tree)})
                    )
        print(
            f"Medians of {args.repeat} fresh processes, empty cache each time; "
            f"load average {os.getloadavg()[0]:.1f}.\n"
        )
        print("| cold start | median | min | target |\n|---|---:|---:|---:|")
        for label, times in rows.items():
            target = f"< {TARGET_S * 1000:.0f} ms" if "servegen" in label else "yardstick"
            print(
                f"| {label} | {statistics.median(times) * 1000:.0f} ms | "
                f"{min(times) * 1000:.0f} ms | {target} |"
            )
        if args.json:
            args.json.write_text(json.dumps(rows, indent=1))
        if args.instructions:
            counts = count_rows(trees, repos, tmp, env)
            if all(count is None for count in counts.values()):
                print("\n(no instruction counts: valgrind is not installed)")
            else:
                print("\n| cold start, one run | instructions |\n|---|---:|")
                for label, count in counts.items():
                    shown = f"{count / 1e6:,.0f} M" if count is not None else "n/a"
                    print(f"| {label} | {shown} |")
        if args.importtime:
            shutil.rmtree(cache, ignore_errors=True)
            done = subprocess.run(
                [PYTHON, "-X", "importtime", "-m", "generator", "validate"],
                cwd=repos[0],
                env={**env, "XDG_CACHE_HOME": str(cache)},
                capture_output=True,
                text=True,
                check=False,
            )
            lines = [line for line in done.stderr.splitlines() if line.startswith("import time:")]
            parsed = []
            for line in lines[1:]:
                _, self_us, total_us, module = (
                    part.strip() for part in line.replace(":", "|", 1).split("|")
                )
                parsed.append((int(total_us), int(self_us), module))
            print("\n| import (cumulative) | self | total |\n|---|---:|---:|")
            for total, own, module in sorted(parsed, reverse=True)[:25]:
                print(f"| `{module}` | {own / 1000:.1f} ms | {total / 1000:.1f} ms |")


if __name__ == "__main__":
    main()
