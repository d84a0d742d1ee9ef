"""Benchmark `servegen status` against the stand-in API server (tests/kubeapi.py).

A generated repository (bench/generate.py) is committed, published to a bare remote with
`servegen publish --push`, and the dev environment's rendered objects are applied to the
stand-in server, all ready. Then, in fresh processes:

- `servegen status --env dev --format json`, end to end (median of --runs), twice: with
  the build cache the publish left (a machine that published, or a CI job that restored
  the cache) and with an empty one (a fresh runner without it);
- `servegen status --env dev --wait`: one KubeAI Model is not ready; once every watch
  is open, it is made ready, and the time from that change to the process's exit is
  taken (median of --runs).

    python bench/bench_status.py                 # 1,000 specs
    python bench/bench_status.py --specs 200 --runs 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.generate import generate_repository  # noqa: E402
from generator.pipeline import build  # noqa: E402
from generator.statusplan import environment_plan  # noqa: E402
from tests.cluster import apply_environment  # noqa: E402
from tests.kubeapi import FakeKubeAPI  # noqa: E402


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "core.hooksPath=/dev/null", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def servegen(repo: Path, env: dict[str, str], *args: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "generator", "-C", str(repo), *args]
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--specs", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="servegen-bench-status-") as tmp:
        base = Path(tmp)
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
            "GIT_AUTHOR_NAME": "Bench",
            "GIT_AUTHOR_EMAIL": "bench@example.com",
            "GIT_COMMITTER_NAME": "Bench",
            "GIT_COMMITTER_EMAIL": "bench@example.com",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "PYTHONPATH": str(ROOT),
            "XDG_CACHE_HOME": str(base / "cache"),
        }
        os.environ.update(env)
        remote, repo = base / "remote.git", base / "repo"
        git(base, "init", "-q", "--bare", "-b", "main", str(remote))
        generate_repository(repo, args.specs)
        git(repo, "init", "-q", "-b", "main")
        git(repo, "remote", "add", "origin", str(remote))
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", "specs")
        git(repo, "push", "-q", "origin", "main")  # only merged commits are published
        published = servegen(repo, env, "publish", "--push", "--allow-prune")
        _, err = published.communicate()
        if published.returncode != 0:
            raise SystemExit(f"publish failed: {err.decode()}")
        deploy = git(repo, "rev-parse", "deploy")
        result = build(repo, keep_objects=True)
        with FakeKubeAPI() as api:
            apply_environment(api, result, "dev", deploy)
            env["KUBECONFIG"] = str(api.write_kubeconfig(base / "kubeconfig"))
            plan = environment_plan(result.models, result.config, "dev")
            print(f"{args.specs} specs: {len(plan.models)} models in dev, ", end="")
            print(f"{len(api.objects)} objects, {len(plan.reads)} collections")
            for label, cache in (("the cache publish left", base / "cache"), ("empty", None)):
                once = []
                for run in range(args.runs):
                    empty = base / f"empty-cache-{run}"
                    caching = {**env, "XDG_CACHE_HOME": str(cache or empty)}
                    start = time.perf_counter()
                    proc = servegen(repo, caching, "status", "--env", "dev", "--format", "json")
                    code = proc.wait()
                    once.append(round(time.perf_counter() - start, 2))
                    assert code == 0, proc.stderr.read() if proc.stderr else code
                median = statistics.median(once)
                print(f"status end to end, build cache {label}: median {median:.2f} s of {once}")
            model = next(m for m in plan.models if m.primary and m.primary.kind.kind == "Model")
            assert model.primary is not None
            ref = model.primary
            latencies = []
            for _ in range(args.runs):
                api.set_status(
                    "Model", ref.namespace, ref.name, {"replicas": {"all": 1, "ready": 0}}
                )
                opened = api.watches_opened
                proc = servegen(repo, env, "status", "--env", "dev", "--wait", "--timeout", "300")
                api.wait_for_watches(opened + len(plan.reads), timeout=300)
                start = time.perf_counter()
                api.set_status(
                    "Model", ref.namespace, ref.name, {"replicas": {"all": 1, "ready": 1}}
                )
                code = proc.wait()
                latencies.append(time.perf_counter() - start)
                assert code == 0, proc.stderr.read() if proc.stderr else code
            ms = [round(x * 1000) for x in latencies]
            print(
                f"--wait, from the status change to exit: median {statistics.median(ms)} ms of {ms}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
