"""Benchmark `servegen watch`: from saving a spec to the updated output (and deploy commit).

A 1,000-spec repository is generated (bench/generate.py; one of the specs is a probe,
specs/bench/watch-probe.yaml), `servegen watch --format json` is started on it and its
initial build awaited (the `start` event). Then, --iterations times, the probe spec is
edited (its `--max-model-len=N` argument gets a new N) and the time is taken from the
write of the spec to

- the updated output file (output/models/watch-probe/base/model-watch-probe.yaml)
  holding the new bytes, polled every --poll-ms (default 1 ms);
- the `batch` event on the watch's stdout (and the batch's own `elapsed_ms`, when the
  event carries it: processing time without file-system notification and debounce).

With --publish the repository is a git repository and watch runs with --publish: the
time is also taken to the new commit on the deploy branch, polled (its loose ref file,
every millisecond) side by side with the output file, since either may come first.
The debounce (--debounce, default 50 ms, as servegen's default) is reported
separately: it is a wait built into every figure. A second table puts each median
next to its target (edit -> output < 300 ms, edit -> deploy commit < 250 ms) and, for
deploy commits, the yardstick of the same run: plain `git commit` of the edited spec.

    python bench/bench_watch.py                      # 1,000 specs, 20 edits
    python bench/bench_watch.py --publish            # also time deploy commits
    python bench/bench_watch.py --specs 200 --iterations 10 --debounce 20

`--driver` chooses how watch runs: `cli` (python -m generator -C REPO watch --debounce MS
--format json --crds CRDS), `api` (a shim in this file driving generator.watch.run_watch
with an IncrementalBuild, printing the same kind of JSON events; no publish), `auto`
(default: cli when generator/commands/watch.py exists, else api).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import importlib.util
import json
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

from generate import generate_repository  # noqa: E402

PROBE = "watch-probe"
PROBE_PATH = "specs/bench/watch-probe.yaml"
PROBE_OUTPUT = f"output/models/{PROBE}/base/model-{PROBE}.yaml"
PROBE_TEXT = """\
# The spec bench/bench_watch.py edits: each edit gives --max-model-len a new value.
kind: kubeai-text
name: {name}
spec:
  url: "hf://TinyLlama/TinyLlama-1.1B-Chat-v1.0"
  engine: VLLM
  features: [TextGeneration]
serve:
  resource_profile: cpu
  args: ["--max-model-len={value}", "--enable-prefix-caching"]
  scaling: {{min_replicas: 1, max_replicas: 2}}
environments:
  prod:
    serve:
      scaling: {{min_replicas: 2, max_replicas: 4}}
"""


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def default_crds() -> Path:
    """The CRDs bundled with servegen (what every command validates against by default)."""
    from generator.crds import bundled_dir

    return bundled_dir()


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        [
            "git",
            "-C",
            str(repo),
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@example.com",
            "-c",
            "commit.gpgSign=false",
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def deploy_sha(repo: Path, branch: str) -> str | None:
    """Where the deploy branch points. Read from its loose ref file when there is one:
    polling with a `git` process every millisecond would keep a core of a small machine
    busy, and the watcher being measured would wait for it."""
    loose = repo / ".git" / "refs" / "heads" / branch
    with contextlib.suppress(OSError):
        text = loose.read_text(encoding="ascii").strip()
        if len(text) in (40, 64):  # git moves a ref by renaming a complete file over it
            return text
    done = subprocess.run(
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() or None


# --------------------------------------------------------------------------- the api shim


def shim(root: Path, debounce_ms: int, crds: Path) -> int:
    """Run generator.watch.run_watch and print JSON events, like `watch --format json`."""
    from generator.incremental import IncrementalBuild
    from generator.watch import Event, run_watch

    def emit(event: Event) -> None:
        data: dict[str, Any] = {"type": event.kind}
        if event.message:
            data["message"] = event.message
        result = event.result
        if result is not None:
            data.update(
                elapsed_ms=result.elapsed_ms,
                written=len(result.written),
                removed=len(result.removed),
                rendered=list(result.rendered),
                models=result.models,
                ok=result.ok,
            )
            if not result.ok:
                data["diagnostics"] = [str(d) for d in result.diagnostics[:5]]
        print(json.dumps(data), flush=True)

    stop = threading.Event()
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    build = IncrementalBuild(root, crds=[crds])
    run_watch(build, stop, emit, debounce_ms=debounce_ms)
    return 0


# --------------------------------------------------------------------------- the watcher


@dataclass
class Watch:
    proc: subprocess.Popen[str]
    events: queue.Queue[tuple[float, dict[str, Any]]] = field(default_factory=queue.Queue)
    other: list[str] = field(default_factory=list)  # stdout lines that are not JSON

    def start_reader(self) -> None:
        def read(stream: IO[str]) -> None:
            for line in stream:
                now = time.perf_counter()
                try:
                    event = json.loads(line)
                except ValueError:
                    self.other.append(line.rstrip())
                    continue
                if isinstance(event, dict):
                    self.events.put((now, event))

        assert self.proc.stdout is not None
        threading.Thread(target=read, args=(self.proc.stdout,), daemon=True).start()

    def wait_for(
        self, kind: str, timeout: float, after: float = 0.0
    ) -> tuple[float, dict[str, Any]]:
        """The next event of type `kind` received after `after`; errors are fatal."""
        deadline = time.perf_counter() + timeout
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"no {kind!r} event within {timeout:.0f} s")
            try:
                at, event = self.events.get(timeout=min(left, 0.5))
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise SystemExit(
                        f"watch exited with {self.proc.returncode}: {' | '.join(self.other[-5:])}"
                    ) from None
                continue
            kind_of = event.get("type")
            if kind_of == "error":
                raise SystemExit(f"watch reported an error: {json.dumps(event)[:2000]}")
            if kind_of == kind and at >= after:
                return at, event

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_watch(args: argparse.Namespace, repo: Path, publish: bool, driver: str) -> Watch:
    if driver == "cli":
        command = [
            args.python,
            "-m",
            "generator",
            "-C",
            str(repo),
            "watch",
            "--debounce",
            str(args.debounce),
            "--format",
            "json",
            "--crds",
            str(args.crds),
        ]
        if publish:
            command.append("--publish")
    else:
        command = [
            args.python,
            str(Path(__file__).resolve()),
            "--shim",
            str(repo),
            str(args.debounce),
            str(args.crds),
        ]
    log("starting: " + " ".join(command))
    stderr = None if args.verbose else subprocess.DEVNULL
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, bufsize=1)
    watch = Watch(proc)
    watch.start_reader()
    return watch


# --------------------------------------------------------------------------- measuring


@dataclass
class Sample:
    output_s: float  # write -> output file has the new bytes
    event_s: float | None  # write -> `batch` event read
    batch_ms: float | None  # the batch's own elapsed_ms
    deploy_s: float | None = None  # write -> new deploy commit


def poll_file(path: Path, marker: bytes, started: float, timeout: float, poll: float) -> float:
    while True:
        with contextlib.suppress(OSError):
            if marker in path.read_bytes():
                return time.perf_counter() - started
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"{path} did not get {marker!r} within {timeout:.0f} s")
        time.sleep(poll)


def poll_both(
    args: argparse.Namespace,
    output: Path,
    marker: bytes,
    repo: Path,
    old: str | None,
    started: float,
) -> tuple[float, float, str]:
    """Output file and deploy commit watched side by side (either may come first): the
    output every --poll-ms, the deploy branch's ref every millisecond."""
    output_s: float | None = None
    deploy: tuple[float, str] | None = None
    next_look = started
    while output_s is None or deploy is None:
        now = time.perf_counter()
        if output_s is None and now >= next_look:
            with contextlib.suppress(OSError):
                if marker in output.read_bytes():
                    output_s = now - started
            next_look = now + args.poll_ms / 1000
        if deploy is None:
            sha = deploy_sha(repo, args.branch)
            if sha is not None and sha != old:
                deploy = (now - started, sha)
        if now - started > args.timeout:
            raise TimeoutError(f"no new output and deploy commit within {args.timeout:.0f} s")
        time.sleep(0.001)
    return output_s, deploy[0], deploy[1]


def measure(args: argparse.Namespace, repo: Path, publish: bool, driver: str) -> dict[str, Any]:
    output = repo / PROBE_OUTPUT
    probe = repo / PROBE_PATH
    launched = time.perf_counter()
    watch = start_watch(args, repo, publish, driver)
    samples: list[Sample] = []
    startup: dict[str, Any] = {}
    try:
        at, event = watch.wait_for("start", timeout=args.timeout)
        startup = {"start_event_s": at - launched, "initial_ms": event.get("elapsed_ms")}
        log(f"initial build done: start event {at - launched:.2f} s after launch")
        deploy = None
        if publish:
            _, event = watch.wait_for("publish", timeout=args.timeout)
            deploy = deploy_sha(repo, args.branch)
            startup["first_publish_s"] = time.perf_counter() - launched
            log(f"initial publish: {event.get('message', '')!s:.100} ({deploy})")
        if not output.is_file():
            raise SystemExit(f"{output} was not written by the initial build")
        time.sleep(args.gap)
        for i in range(args.iterations):
            value = 10_000 + i
            text = PROBE_TEXT.format(name=PROBE, value=value).encode()
            marker = f"--max-model-len={value}".encode()
            started = time.perf_counter()
            if args.write_mode == "rename":
                tmp = probe.with_name(f".{probe.name}.tmp")
                tmp.write_bytes(text)
                os.replace(tmp, probe)
            else:
                probe.write_bytes(text)
            deploy_s: float | None = None
            if publish:
                output_s, deploy_s, deploy = poll_both(args, output, marker, repo, deploy, started)
            else:
                output_s = poll_file(output, marker, started, args.timeout, args.poll_ms / 1000)
            at, event = watch.wait_for("batch", timeout=args.timeout, after=started)
            sample = Sample(output_s, at - started, event.get("elapsed_ms"), deploy_s)
            if publish:
                watch.wait_for("publish", timeout=args.timeout, after=started)
            samples.append(sample)
            extra = f", deploy {sample.deploy_s * 1000:.0f} ms" if sample.deploy_s else ""
            batch = f", batch {sample.batch_ms:.0f} ms" if sample.batch_ms is not None else ""
            log(
                f"edit {i + 1}/{args.iterations}: output {output_s * 1000:.0f} ms, event "
                f"{sample.event_s * 1000:.0f} ms{batch}{extra}"
            )
            time.sleep(args.gap)  # let the watcher go idle so edits are separate batches
    finally:
        watch.stop()
    yardstick = plain_git_commits(args, repo) if publish else []
    return {"startup": startup, "samples": samples, "yardstick": yardstick}


def plain_git_commits(args: argparse.Namespace, repo: Path) -> list[float]:
    """The yardstick for a deploy commit: plain git committing the edited spec, in ms."""
    times = []
    for i in range(args.iterations):
        (repo / PROBE_PATH).write_text(PROBE_TEXT.format(name=PROBE, value=20_000 + i))
        started = time.perf_counter()
        git(repo, "commit", "-qm", f"yardstick {i}", "--", PROBE_PATH)
        times.append((time.perf_counter() - started) * 1000)
    return times


# Targets from the issues (medians): watch edit -> output file, and -> deploy commit.
TARGET_OUTPUT_MS = 300
TARGET_DEPLOY_MS = 250


def target_rows(runs: dict[str, dict[str, Any]]) -> list[str]:
    """Each measured median next to its target and the same run's yardstick."""
    lines = ["", "| row | median | target | yardstick (same run) |", "|---|---:|---:|---:|"]
    for mode, run in runs.items():
        samples: list[Sample] = run["samples"]
        output = statistics.median(s.output_s * 1000 for s in samples)
        lines.append(
            f"| {mode}: edit -> output file | {output:.0f} ms | < {TARGET_OUTPUT_MS} ms | - |"
        )
        deploys = [s.deploy_s * 1000 for s in samples if s.deploy_s is not None]
        if deploys and run.get("yardstick"):
            yard = f"{statistics.median(run['yardstick']):.0f} ms (`git commit` of the spec)"
            lines.append(
                f"| {mode}: edit -> deploy commit | {statistics.median(deploys):.0f} ms | "
                f"< {TARGET_DEPLOY_MS} ms | {yard} |"
            )
            share = [(s.deploy_s - s.output_s) * 1000 for s in samples if s.deploy_s is not None]
            lines.append(
                f"| {mode}: deploy commit minus output file (negative: the commit came first) | "
                f"{statistics.median(share):.0f} ms | - | {yard} |"
            )
    return lines


# --------------------------------------------------------------------------- the report


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def stats_row(label: str, values: list[float | None]) -> str:
    present = [v for v in values if v is not None]
    if not present:
        return f"| {label} | - | - | - | - |"
    return (
        f"| {label} | {statistics.median(present):.0f} ms | "
        f"{percentile(present, 0.9):.0f} ms | {min(present):.0f} ms | "
        f"{max(present):.0f} ms |"
    )


def report(
    args: argparse.Namespace, driver: str, runs: dict[str, dict[str, Any]], notes: list[str]
) -> str:
    lines = [
        "## servegen watch benchmark",
        "",
        f"{args.specs:,} specs, {args.iterations} edits of one spec, debounce "
        f"{args.debounce} ms (`--debounce`), output polled every {args.poll_ms:g} ms, "
        f"spec written {'in place' if args.write_mode == 'inplace' else 'by rename'}, "
        f"driver `{driver}`.",
        "",
        "| from writing the spec to ... | median | p90 | min | max |",
        "|---|---:|---:|---:|---:|",
    ]
    for mode, run in runs.items():
        samples: list[Sample] = run["samples"]
        suffix = " (watch --publish)" if mode == "publish" else ""
        lines.append(
            stats_row(f"updated output file{suffix}", [s.output_s * 1000 for s in samples])
        )
        lines.append(
            stats_row(
                f"`batch` event on stdout{suffix}",
                [s.event_s * 1000 if s.event_s is not None else None for s in samples],
            )
        )
        lines.append(
            stats_row(
                f"(batch processing, `elapsed_ms` of the event){suffix}",
                [s.batch_ms for s in samples],
            )
        )
        lines.append(
            stats_row(
                f"(wait before processing: output latency - `elapsed_ms`){suffix}",
                [
                    s.output_s * 1000 - s.batch_ms if s.batch_ms is not None else None
                    for s in samples
                ],
            )
        )
        if mode == "publish":
            lines.append(
                stats_row(
                    "new commit on the deploy branch",
                    [s.deploy_s * 1000 if s.deploy_s is not None else None for s in samples],
                )
            )
    lines += target_rows(runs)
    lines.append("")
    for mode, run in runs.items():
        startup = run["startup"]
        initial = startup.get("initial_ms")
        initial_text = f" (initial build {initial:.0f} ms)" if initial is not None else ""
        line = (
            f"- {mode}: `start` event {startup.get('start_event_s', 0):.2f} s after "
            f"launch{initial_text}"
        )
        if "first_publish_s" in startup:
            line += f"; first publish {startup['first_publish_s']:.2f} s after launch"
        lines.append(line)
    lines.append(
        f"- debounce: {args.debounce} ms (`--debounce`). watchfiles yields a batch once no "
        "new event came for `step` = min(10 ms, debounce) ms, or at the latest after "
        "`debounce` ms, so a single save waits about one step plus inotify delivery, not "
        "the whole debounce: that wait is the `output latency - elapsed_ms` row (it also "
        "holds the final file write and the 1 ms polling)."
    )
    for note in notes:
        lines.append(f"- {note}")
    return "\n".join(lines)


def publish_missing(driver: str) -> str | None:
    """Why `watch --publish` cannot be measured, or None when it can."""
    if driver != "cli":
        return "--publish needs the real `servegen watch` command (--driver cli)"
    try:
        module = importlib.import_module("generator.publish")
    except ImportError as exc:
        return f"generator.publish cannot be imported: {exc}"
    if not hasattr(module, "publish_worktree"):
        return "generator.publish has no publish_worktree yet, which `watch --publish` uses"
    return None


def prepare(args: argparse.Namespace, workdir: Path, publish: bool) -> Path:
    repo = workdir / ("repo-publish" if publish else "repo")
    log(f"generating {args.specs} specs in {repo}")
    generate_repository(repo, args.specs - 1, seed=args.seed, force=True)
    probe = repo / PROBE_PATH
    probe.parent.mkdir(parents=True, exist_ok=True)
    probe.write_text(PROBE_TEXT.format(name=PROBE, value=4096), encoding="utf-8")
    if publish:
        (repo / ".gitignore").write_text("output/\n", encoding="utf-8")
        git(repo, "init", "-q", "-b", "main")
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "specs")
    return repo


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--shim"]:
        return shim(Path(argv[1]), int(argv[2]), Path(argv[3]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--specs", type=int, default=1000, help="repository size (default 1000)")
    parser.add_argument("--iterations", type=int, default=20, help="edits (default 20)")
    parser.add_argument("--debounce", type=int, default=50, help="watch --debounce, ms")
    parser.add_argument(
        "--publish", action="store_true", help="also run watch --publish on a git repository"
    )
    parser.add_argument("--publish-only", action="store_true", help="only the --publish run")
    parser.add_argument("--branch", default="deploy", help="deploy branch (servegen.yaml's)")
    parser.add_argument("--driver", choices=["auto", "cli", "api"], default="auto")
    parser.add_argument(
        "--write-mode",
        choices=["inplace", "rename"],
        default="inplace",
        help="save the spec in place, or write a temp file and rename it",
    )
    parser.add_argument("--poll-ms", type=float, default=1.0)
    parser.add_argument("--gap", type=float, default=0.3, help="pause between edits, s")
    parser.add_argument("--crds", type=Path, default=default_crds())
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--timeout", type=float, default=600, help="per wait, seconds")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temp dir)")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--verbose", action="store_true", help="show watch's stderr")
    parser.add_argument("--json", type=Path, help="also write raw samples here")
    args = parser.parse_args(argv)
    if not args.crds.is_dir():
        parser.error(f"CRD folder {args.crds} does not exist (pass --crds)")
    has_cli = importlib.util.find_spec("generator.commands.watch") is not None
    driver = args.driver if args.driver != "auto" else ("cli" if has_cli else "api")
    if driver == "cli" and not has_cli:
        parser.error("generator/commands/watch.py does not exist yet: use --driver api")
    modes = ["publish"] if args.publish_only else ["plain"] + (["publish"] if args.publish else [])
    notes: list[str] = []
    if "publish" in modes:
        missing = publish_missing(driver)
        if missing:
            log(f"--publish skipped: {missing}")
            notes.append(f"publish: not measured ({missing})")
            modes = [m for m in modes if m != "publish"]
    if not modes:
        print("\n".join(notes))
        return 1
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="servegen-watchbench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    runs: dict[str, dict[str, Any]] = {}
    try:
        for mode in modes:
            repo = prepare(args, workdir, publish=mode == "publish")
            runs[mode] = measure(args, repo, publish=mode == "publish", driver=driver)
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report(args, driver, runs, notes))
    if args.json:
        raw = {
            mode: {
                "startup": run["startup"],
                "samples": [s.__dict__ for s in run["samples"]],
                "yardstick": run["yardstick"],  # ms, plain `git commit` of the spec
            }
            for mode, run in runs.items()
        }
        args.json.write_text(json.dumps(raw, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
