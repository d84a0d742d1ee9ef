"""List the long flags each vLLM release's image entrypoint takes, from the release itself.

    .venv/bin/python conformance/flags.py [--versions 0.10.0 0.34.0] [--cache DIR]

For each release, inside its cached virtualenv (conformance/envs.py, as run.py makes
them), the entrypoint the image starts is run on a model name and stopped where it
would serve (vllm_worker.py's replay): `vllm serve` from 0.11.1, the api_server module up
to 0.11.0 (runtimes/vllm_engine.py). Every argparse parser it asks to parse is noted,
and the long option strings of the one that reads the server's flags are written to
runtimes/vllm_flags.json, which `servegen validate` checks `serve.args` against
(runtimes/vllm_engine.py, flag_problems). Not part of the test suite: it installs
several GB.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

OUTPUT = ROOT / "runtimes" / "vllm_flags.json"
KSERVE_OUTPUT = ROOT / "runtimes" / "kserve_flags.json"


def entrypoint_flags(entrypoint: str) -> dict[str, Any]:
    """Inside a release's virtualenv: parser_flags() of the parser that reads the
    server's flags, for the entrypoint the image runs."""
    import vllm_worker

    seen: list[argparse.ArgumentParser] = []
    original = argparse.ArgumentParser.parse_known_args

    def noting(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        seen.append(self)
        return original(self, *args, **kwargs)

    argparse.ArgumentParser.parse_known_args = noting  # type: ignore[method-assign]
    vllm_worker.use_platform("cpu")  # option strings do not depend on the platform
    if entrypoint == "serve":
        vllm_worker.parse_serve(["org/model"])
        parser = next(p for p in seen if p.prog.split()[-1:] == ["serve"])
    else:
        vllm_worker.parse_api_server(["--model", "org/model"])
        parser = seen[0]
    return parser_flags(parser)


def kserve_backend_flags(backend: str) -> dict[str, Any]:
    """Inside the KServe virtualenv (envs.ensure_kserve): parser_flags() of the parser
    huggingfaceserver/__main__.py reads the args with on `backend` (KServe's and its own
    flags, then vLLM's make_arg_parser() or the Hugging Face backend's), as run.py
    replays it: for vllm, /mnt/models holds an architecture vLLM serves."""
    import runpy
    import tempfile

    import vllm_worker

    vllm_worker.use_platform("cpu")
    model_dir = tempfile.mkdtemp()
    model = ("LlamaForCausalLM", "llama") if backend == "vllm" else ("BertForMaskedLM", "bert")
    architecture = {"architectures": [model[0]], "model_type": model[1]}
    Path(model_dir, "config.json").write_text(json.dumps(architecture))
    argv = [f"--model_dir={model_dir}", "--model_name=m", f"--backend={backend}"]
    sys.argv = ["huggingfaceserver", *argv]
    found = runpy.run_module("huggingfaceserver.__main__", run_name="servegen_flags")
    return parser_flags(found["parser"])


def parser_flags(parser: argparse.ArgumentParser) -> dict[str, Any]:
    """The long options of `parser`: every one (`flags`), those that take no value
    (`switches`: `--x=1` is refused) and those that take exactly one (`valued`: a
    missing value is refused), and for those of them whose value is kept as written
    (no type conversion), the values argparse takes (`choices`)."""
    actions = {s: a for s, a in parser._option_string_actions.items() if s.startswith("--")}
    as_written = (None, str)
    # Choices drawn from a registry a plugin in a custom image can add to (parsers,
    # model loaders, quantization methods) are not listed: only fixed ones are.
    extensible = {"--load-format", "--quantization"}
    return {
        "flags": sorted(actions),
        "switches": sorted(s for s, a in actions.items() if a.nargs == 0),
        "valued": sorted(s for s, a in actions.items() if a.nargs is None),
        "choices": {
            s: sorted(map(str, a.choices))
            for s, a in sorted(actions.items())
            if a.nargs is None
            and s not in extensible
            and not s.endswith("-parser")
            and a.type in as_written
            and a.choices is not None
            and all(isinstance(c, str) for c in a.choices)
        },
    }


def kserve_release_flags(source: Path, cache: Path) -> dict[str, Any]:
    """What the Hugging Face server of the kserve checkout `source` takes on the vLLM
    backend, and the releases of KServe and vLLM it was listed from."""
    import envs

    python = envs.ensure_kserve(cache, source)
    done = subprocess.run(
        [str(python), __file__, "--worker", "kserve"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "HOME": str(cache), "HF_HUB_OFFLINE": "1"},
    )
    if done.returncode != 0:
        raise RuntimeError(f"KServe {source}: {done.stderr[-2000:]}")
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return {"kserve": (source / "python" / "VERSION").read_text().strip(), **found}


def installed_release() -> dict[str, str | None]:
    """Inside a release's virtualenv: the vllm wheel's version and the git commit it
    was built from (vllm/_version.py, where the release records one)."""
    import vllm._version as built

    return {"version": built.__version__, "commit": getattr(built, "__commit_id__", None)}


def release_flags(version: str, cache: Path) -> dict[str, Any]:
    import envs

    from runtimes.vllm_engine import parse_version, serve_entrypoint

    entrypoint = "serve" if serve_entrypoint(parse_version(version)) else "api_server"
    python = envs.ensure_vllm(cache, version)
    done = subprocess.run(
        [str(python), __file__, "--worker", entrypoint], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"vLLM {version}: {done.stderr[-2000:]}")
    found: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    if found["wheel"]["version"] != version:
        raise RuntimeError(f"vLLM {version}: the virtualenv holds {found['wheel']['version']}")
    return {"entrypoint": entrypoint, **found}


def main() -> None:
    if sys.argv[1:2] == ["--worker"]:
        if sys.argv[2] == "kserve":
            backends = ("huggingface", "vllm")
            flags = {"backends": {backend: kserve_backend_flags(backend) for backend in backends}}
        else:
            flags = entrypoint_flags(sys.argv[2])
        print(json.dumps({"wheel": installed_release(), **flags}))
        return
    import envs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", nargs="*", default=list(envs.VLLM_VERSIONS))
    parser.add_argument("--cache", type=Path, default=envs.DEFAULT_CACHE)
    parser.add_argument(
        "--kserve-source", type=Path, help="a kserve checkout: list its server's flags too"
    )
    options = parser.parse_args()
    options.cache.mkdir(parents=True, exist_ok=True)
    if options.kserve_source is not None:
        listed = kserve_release_flags(options.kserve_source, options.cache)
        minor = ".".join(listed["kserve"].split(".")[:2])
        known = json.loads(KSERVE_OUTPUT.read_text()) if KSERVE_OUTPUT.exists() else {}
        releases = {**known.get("releases", {}), minor: listed}
        kserve_table = {
            "about": "Long flags of the parsers KServe's Hugging Face server reads its args "
            "with, on its Hugging Face and vLLM backends, listed by conformance/flags.py from "
            "the server of a kserve checkout (https://github.com/kserve/kserve, "
            "python/huggingfaceserver) and the vllm wheel its image pins, by KServe minor "
            "release.",
            "releases": dict(sorted(releases.items(), key=lambda item: int(item[0][2:]))),
        }
        KSERVE_OUTPUT.write_text(json.dumps(kserve_table, indent=1) + "\n", encoding="utf-8")
        for backend, found in listed["backends"].items():
            print(f"KServe {listed['kserve']} (vLLM {listed['wheel']['version']}), {backend} "
                  f"backend: {len(found['flags'])} long flags")  # fmt: skip
    if not options.versions:
        return
    releases = {version: release_flags(version, options.cache) for version in options.versions}
    table = {
        "about": "Long flags of each vLLM release's image entrypoint, listed from the "
        "release's own parser by conformance/flags.py: the vllm wheel of each release "
        "from PyPI (https://pypi.org/project/vllm/), its version and source commit as "
        "the wheel records them.",
        "releases": releases,
    }
    OUTPUT.write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    for version, found in releases.items():
        print(f"{version}: {found['entrypoint']}, {len(found['flags'])} long flags")


if __name__ == "__main__":
    main()
