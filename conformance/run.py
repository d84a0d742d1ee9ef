"""Conformance: parse every rendered vLLM command line with the real vLLM releases.

    .venv/bin/python conformance/run.py [--versions 0.10.0 0.33.0] [--cache DIR]
        [--kserve-source DIR] [--json FILE]

For each release, servegen renders examples/ and the corpus in conformance/corpus/ with
that release's GPU and CPU images (spec-pinned images are replaced), and a worker inside
a cached virtualenv holding the real release (conformance/envs.py) replays the image's
entrypoint on each Deployment's args (conformance/vllm_worker.py). A case passes when the
release parses the args, builds its engine configs and serves the model servegen meant.
Specs servegen refuses for a release are listed with the reason instead.

Control cases check that the harness can fail: the pre-fix renderings (a positional
model for the api_server entrypoint, an OTLP endpoint for images without OpenTelemetry)
must be caught by the release itself.

With --kserve-source (a kserve checkout at the release to check, e.g. v0.20.0), the
huggingfaceserve args are parsed with the KServe Hugging Face server's own parser too.
Not part of the test suite: it installs several GB and takes minutes.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import envs  # noqa: E402

from generator.render import render_spec  # noqa: E402
from generator.validate import validate_repository  # noqa: E402
from runtimes.huggingfaceserve import hf_backend_flags, kserve_parsers  # noqa: E402
from runtimes.parser_rules import HELP, ReleaseFlags  # noqa: E402
from runtimes.vllm_engine import parse_version, serve_entrypoint  # noqa: E402

GPU_REPO = "vllm/vllm-openai"
CPU_REPO = "public.ecr.aws/q9t5s3a7/vllm-cpu-release-repo"
# Telemetry specs are rendered once per endpoint form (gRPC plaintext twice, OTLP/HTTP).
OTLP_ENDPOINTS = ("http://otel:4317", "grpc://otel:4317", "http://otel:4318")
SOURCES = {"examples": ROOT / "examples", "corpus": Path(__file__).resolve().parent / "corpus"}
WORKER = Path(__file__).resolve().parent / "vllm_worker.py"


@dataclass
class Case:
    id: str
    entrypoint: str
    args: list[str]
    env: dict[str, str]
    gpus: int
    model: str
    cpu: bool
    expect_ok: bool = True
    control: bool = False
    expect_deprecation: bool = False


@dataclass
class Outcome:
    version: str
    cases: list[Case] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    setup_error: str | None = None


# --- rendering ----------------------------------------------------------------------------


def _yaml() -> YAML:
    yaml = YAML()
    yaml.preserve_quotes = True
    return yaml


def prepare_repo(source: Path, dest: Path, version: str, otlp: str) -> None:
    """A copy of a servegen repository whose vLLM specs use `version`'s images."""
    yaml = _yaml()
    config = yaml.load((source / "servegen.yaml").read_text())
    config.setdefault("vllm", {})
    config["vllm"]["image"] = f"{GPU_REPO}:v{version}"
    config["vllm"]["cpu_image"] = f"{CPU_REPO}:v{version}"
    config.setdefault("telemetry", {})["otlp_endpoint"] = otlp
    config.pop("validation", None)
    dest.mkdir(parents=True)
    with (dest / "servegen.yaml").open("w") as out:
        yaml.dump(config, out)
    specs_dir = config.get("specs", "specs")
    for path in sorted((source / specs_dir).rglob("*.yaml")):
        docs = [d for d in yaml.load_all(path.read_text()) if d is not None]
        vllm_docs = [d for d in docs if str(d.get("kind", "")).startswith("vllmserve-")]
        for doc in vllm_docs:
            doc.get("spec", {}).pop("image", None)
        if vllm_docs:
            target = dest / specs_dir / path.relative_to(source / specs_dir)
            target.parent.mkdir(parents=True, exist_ok=True)
            with target.open("w") as out:
                yaml.dump_all(vllm_docs, out)


def expected_model(url: str) -> str:
    """The model each URL must reach vLLM as (independent of servegen's own mapping)."""
    if url.startswith("hf://"):
        return url[5:].partition("@")[0]
    if url.startswith("pvc://"):
        sub = url[6:].partition("/")[2].strip("/")
        return f"/models/{sub}" if sub else "/models"
    return url


def render_cases(label: str, source: Path, version: str, outcome: Outcome) -> None:
    seen: set[tuple[str, ...]] = set()
    for otlp in OTLP_ENDPOINTS:
        with tempfile.TemporaryDirectory() as tmp:
            repo = Path(tmp) / "repo"
            prepare_repo(source, repo, version, otlp)
            validated = validate_repository(repo)
            for diag in validated.diagnostics:
                if diag.severity == "error":
                    refusal = f"{label}:{Path(diag.path).name}: {diag.json_path}: {diag.message}"
                    if refusal not in outcome.refused:
                        outcome.refused.append(refusal)
            for spec in validated.specs:
                telemetry = any(
                    getattr(getattr(doc, "serve", None), "enable_telemetry", False)
                    for doc in spec.environments.values()
                )
                if otlp != OTLP_ENDPOINTS[0] and not telemetry:
                    continue
                rendered = render_spec(spec, validated.config)
                for env_name, env_render in rendered.environments.items():
                    for obj in env_render.objects:
                        if obj["kind"] != "Deployment":
                            continue
                        case = deployment_case(label, spec, env_name, obj, version)
                        if telemetry:
                            case.id += f" otlp={otlp}"
                        key = (json.dumps([case.entrypoint, case.args, case.env]),)
                        if key not in seen:
                            seen.add(key)
                            outcome.cases.append(case)


def deployment_case(label: str, spec: Any, env: str, obj: Any, version: str) -> Case:
    container = obj["spec"]["template"]["spec"]["containers"][0]
    limits = container.get("resources", {}).get("limits", {})
    image = container["image"]
    return Case(
        id=f"{label}:{spec.name}@{env}",
        # vllm docker/Dockerfile: `vllm serve` from 0.11.1, the api_server module before.
        entrypoint="serve" if serve_entrypoint(parse_version(version)) else "api_server",
        args=list(container["args"]),
        env={e["name"]: e["value"] for e in container.get("env", []) if "value" in e},
        gpus=int(limits.get("nvidia.com/gpu", 0)),
        model=expected_model(spec.base.spec.url),
        cpu=image.startswith(CPU_REPO),
    )


def control_cases(version: str) -> list[Case]:
    """Renderings the fixes replaced; the release itself must reject or misread them."""
    v = parse_version(version)
    api = not serve_entrypoint(v)
    head = ["--served-model-name", "m", "--host", "0.0.0.0", "--port", "8000"]  # noqa: S104
    model = ["--model", "org/model"] if api else ["org/model"]
    entrypoint = "api_server" if api else "serve"

    def control(label: str, args: list[str], expect_ok: bool) -> Case:
        """The model servegen passes, its own flags, then `args`."""
        return Case(
            f"control:{label}",
            entrypoint,
            [*model, *head, *args],
            {},
            1,
            "org/model",
            cpu=False,
            expect_ok=expect_ok,
            control=True,
        )

    otel = v is not None and v >= (0, 17, 0)
    cases = [control("otlp-endpoint", ["--otlp-traces-endpoint", "http://otel:4317"], otel)]
    # What runtimes/vllm_flags.json refuses, the release must refuse: a flag it does not
    # take, an abbreviation of several, a value for a switch, no value for a flag that
    # takes one, a value outside a flag's fixed choices, and words no flag takes.
    refused = (
        ("unknown-flag", ["--max-model-length", "8"]),
        ("ambiguous-flag", ["--max-num", "8"]),
        ("value-for-a-switch", ["--enforce-eager=true"]),
        ("missing-value", ["--max-model-len", "--enforce-eager"]),
        ("value-outside-choices", ["--dtype", "bf16"]),
        ("two-stray-words", ["--enforce-eager", "true", "false"]),
        ("help", ["--hel"]),  # taken for --help: the usage printed, exit status 0
    )
    cases += [control(label, args, False) for label, args in refused]
    # One stray word: `vllm serve` refuses it (its model is the positional); the
    # api_server entrypoint takes it as its positional model name and ignores it.
    cases.append(control("one-stray-word", ["--enforce-eager", "true"], api))
    if not api:
        cases.append(
            Case(
                "control:--model-on-vllm-serve",
                "serve",
                ["--model", "org/model", *head],
                {},
                1,
                "org/model",
                cpu=False,
                control=True,
                expect_deprecation=True,
            )
        )
    if api:
        cases.append(
            Case(
                "control:positional-model-on-api-server",
                "api_server",
                ["org/model", *head],
                {},
                1,
                "org/model",
                cpu=False,
                expect_ok=False,
                control=True,
            )
        )
    return cases


# --- running the release -------------------------------------------------------------------


def run_worker(python: Path, cases: list[Case], platform: str, otel: bool) -> list[Any]:
    if not cases:
        return []
    with tempfile.TemporaryDirectory() as tmp:
        cases_file, results_file = Path(tmp) / "cases.json", Path(tmp) / "results.json"
        payload = [
            {"id": c.id, "entrypoint": c.entrypoint, "args": c.args, "env": c.env, "gpus": c.gpus}
            for c in cases
        ]
        cases_file.write_text(json.dumps(payload))
        cmd = [str(python), str(WORKER), str(cases_file), str(results_file), platform]
        if not otel:
            cmd.append("--no-opentelemetry")
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        if not results_file.exists():
            raise RuntimeError(f"worker failed: {done.stderr[-2000:]}")
        results: list[Any] = json.loads(results_file.read_text())
        return results


def requires_opentelemetry(python: Path) -> bool:
    """Whether the release requires the OpenTelemetry SDK (so its images ship it)."""
    return any(r.startswith("opentelemetry-sdk") for r in envs.requirements(python, "vllm"))


def our_deprecations(case: Case, result: dict[str, Any]) -> list[str]:
    """Deprecation lines about a flag the case passes (vLLM also warns about its own
    defaults, e.g. 0.10.2 and 0.11.0 on every LoRA config)."""
    names = set()
    for arg in case.args:
        if arg.startswith("-"):
            flag = arg.partition("=")[0]
            names |= {flag, flag.lstrip("-").replace("-", "_")} if "-" in flag[2:] else {flag}
    lines: list[str] = result.get("deprecations") or []
    return [line for line in lines if any(name in line for name in names)]


def passed(case: Case, result: dict[str, Any]) -> bool:
    """Parsed and built as expected, serving the intended model, with a deprecation
    warning about its flags exactly when one is expected."""
    ok = bool(result.get("ok")) and result.get("model") == case.model
    warned = bool(our_deprecations(case, result))
    return ok == case.expect_ok and (not ok or warned == case.expect_deprecation)


def check_version(version: str, cache: Path) -> Outcome:
    outcome = Outcome(version)
    for label, source in SOURCES.items():
        render_cases(label, source, version, outcome)
    outcome.cases += control_cases(version)
    try:
        python = envs.ensure_vllm(cache, version)
        otel = requires_opentelemetry(python)
        for platform, cpu in (("cuda", False), ("cpu", True)):
            chosen = [c for c in outcome.cases if c.cpu == cpu]
            for result in run_worker(python, chosen, platform, otel):
                outcome.results[result["id"]] = result
    except (subprocess.CalledProcessError, RuntimeError, OSError) as exc:
        outcome.setup_error = str(exc)[-1000:]
    return outcome


# --- KServe -------------------------------------------------------------------------------


def kserve_cases() -> list[dict[str, Any]]:
    """Every huggingfaceserve InferenceService of examples/ and the corpus, as server argv."""
    cases: list[dict[str, Any]] = []
    for label, source in SOURCES.items():
        validated = validate_repository(source)
        for spec in validated.specs:
            if spec.runtime.kind != "huggingfaceserve":
                continue
            for env_name, env_render in render_spec(spec, validated.config).environments.items():
                for obj in env_render.objects:
                    if obj["kind"] != "InferenceService":
                        continue
                    model = obj["spec"]["predictor"]["model"]
                    # kserve v0.20.0 config/runtimes/kserve-huggingfaceserver.yaml: the
                    # runtime passes --model_name={{.Name}}; the ISVC's args follow it.
                    argv = [f"--model_name={obj['metadata']['name']}", *model.get("args", [])]
                    case = {"id": f"{label}:{spec.name}@{env_name}", "args": argv}
                    if case not in cases:
                        cases.append(case)
    # Controls: what the server must refuse or drop, so a pass means something.
    hf = ["--model_name=m", "--backend=huggingface", "--task=sequence_classification"]
    cases.append(
        {
            "id": "control:probabilities-with-raw-logits",
            "args": [*hf, "--return_probabilities", "--return_raw_logits"],
            "control": True,
        }
    )
    # What servegen refuses on the Hugging Face backend: dropped by parse_known_args, or
    # an exit (an abbreviation of several flags, the help).
    refused = {
        "unknown-flag": ["--no_such_flag"],
        "dash-spelling": ["--max-model-len=128"],
        "short-flag": ["-x"],
        "after-double-dash": ["--", "--workers=2"],
        "ambiguous-flag": ["--max_l=4"],
        "help": ["--hel"],
    }
    cases += [
        {"id": f"control:{label}", "args": [*hf, *args], "control": True}
        for label, args in refused.items()
    ]
    # And on the vLLM backend (runtimes/kserve_flags.json): dropped, or an exit.
    vllm = ["--model_name=m", "--backend=vllm"]
    refused = {
        "vllm-unknown-flag": ["--gpu-memory-utilisation=0.8"],
        "vllm-json-key": ["--compilation-config.mode=3"],
        "vllm-ambiguous-flag": ["--max-num", "8"],
        "vllm-value-for-a-switch": ["--enforce-eager=true"],
        "vllm-missing-value": ["--max-model-len"],
        "vllm-value-outside-choices": ["--dtype", "bf16"],
    }
    cases += [
        {"id": f"control:{label}", "args": [*vllm, *args], "control": True}
        for label, args in refused.items()
    ]
    return cases


# Replays huggingfaceserver/__main__.py's module-level parsing (it parses sys.argv when
# imported) for one argv and prints what it parsed and what parse_known_args left over.
# /mnt/models, which the storage initializer fills in the pod, is stood in for by a
# folder holding only a config.json naming the architecture (the server reads it to
# choose the backend); vLLM's platform is pinned as in vllm_worker.py.
KSERVE_PARSE = """
import json, pathlib, runpy, sys, tempfile
sys.path.insert(0, sys.argv[3])
from vllm_worker import use_platform
use_platform("cpu")
model_dir = tempfile.mkdtemp()
pathlib.Path(model_dir, "config.json").write_text(sys.argv[2])
sys.argv = ["huggingfaceserver", f"--model_dir={model_dir}", *json.loads(sys.argv[1])]
try:
    ns = runpy.run_module("huggingfaceserver.__main__", run_name="servegen_conformance")
    args, extra = ns["parser"].parse_known_args()
    flags = sorted(s for s in ns["parser"]._option_string_actions if s.startswith("--"))
    print(json.dumps({"ok": True, "extra": extra, "model_name": args.model_name,
                      "backend": str(args.backend), "flags": flags}))
except SystemExit as exc:
    print(json.dumps({"ok": False, "error": f"exit {exc.code}"}))
"""
# What /mnt/models/config.json says for each backend the examples use.
KSERVE_CONFIGS = {
    "vllm": {"architectures": ["LlamaForCausalLM"], "model_type": "llama"},
    "other": {"architectures": ["BertForSequenceClassification"], "model_type": "bert"},
}


def check_kserve(source: Path, cache: Path) -> dict[str, Any]:
    cases = kserve_cases()
    try:
        python = envs.ensure_kserve(cache, source)
    except (subprocess.CalledProcessError, OSError, RuntimeError) as exc:
        return {"cases": cases, "setup_error": str(exc)[-1000:], "results": []}
    results = []
    for case in cases:
        backend = "vllm" if "--backend=vllm" in case["args"] else "other"
        done = subprocess.run(
            [
                str(python),
                "-c",
                KSERVE_PARSE,
                json.dumps(case["args"]),
                json.dumps(KSERVE_CONFIGS[backend]),
                str(WORKER.parent),
            ],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/bin:/bin", "HOME": str(cache), "HF_HUB_OFFLINE": "1"},
        )
        lines = done.stdout.strip().splitlines()
        try:
            result = json.loads(lines[-1]) if lines else {}
        except json.JSONDecodeError:
            result = {}
        if not result:
            result = {"ok": False, "error": done.stderr.strip().splitlines()[-1:]}
        if result.get("extra"):
            result["ok"] = False  # parse_known_args drops them: the flag has no effect
            result["error"] = f"ignored by the server: {result['extra']}"
        if case.get("control"):
            result["ok"] = not result.get("ok")  # a control passes when the server refuses
            result["control"] = True
        results.append({"id": case["id"], "args": case["args"], **result})
    return {"cases": cases, "results": results, "flags": compare_flags(source, results)}


def compare_flags(source: Path, results: list[dict[str, Any]]) -> dict[str, Any]:
    """Each backend parser's long flags (as a control case on that backend saw them)
    against the list servegen judges `serve.args` by for this release."""
    version = (source / "python" / "VERSION").read_text().strip()
    minor = int(version.split(".")[1])
    listed = kserve_parsers().get(minor, {})
    empty = ("", ReleaseFlags.listed({"flags": [], "switches": [], "valued": [], "choices": {}}))
    lists = {
        "huggingface": ("control:unknown-flag", hf_backend_flags(minor) | HELP),
        "huggingface, listed": ("control:unknown-flag", listed.get("huggingface", empty)[1].flags),
        "vllm": ("control:vllm-unknown-flag", listed.get("vllm", empty)[1].flags),
    }
    compared: dict[str, Any] = {"version": version, "ok": True}
    for backend, (case, ours) in lists.items():
        seen = next((r.get("flags") for r in results if r["id"] == case), None)
        if seen is None:
            compared.update(ok=False, error=f"no parse of the {backend} backend's flags")
            continue
        missing, unknown = sorted(set(seen) - ours), sorted(ours - set(seen))
        compared[backend] = {"count": len(seen), "not_listed": missing, "not_in_parser": unknown}
        compared["ok"] = compared["ok"] and not missing and not unknown
    return compared


# --- report -------------------------------------------------------------------------------


def report(outcomes: list[Outcome], kserve: dict[str, Any] | None) -> str:
    lines = [
        "| vLLM | rendered cases | passed | failed | refused by servegen | controls caught |",
        "|---|---|---|---|---|---|",
    ]
    details = []
    for o in outcomes:
        real = [c for c in o.cases if not c.control]
        controls = [c for c in o.cases if c.control]
        if o.setup_error:
            lines.append(f"| {o.version} | {len(real)} | - | - | {len(o.refused)} | - |")
            details.append(f"{o.version}: setup failed: {o.setup_error}")
            continue
        good = [c for c in real if c.id in o.results and passed(c, o.results[c.id])]
        caught = [c for c in controls if c.id in o.results and passed(c, o.results[c.id])]
        lines.append(
            f"| {o.version} | {len(real)} | {len(good)} | {len(real) - len(good)} | "
            f"{len(o.refused)} | {len(caught)}/{len(controls)} |"
        )
        for c in [*real, *controls]:
            r = o.results.get(c.id, {"ok": False, "error": "no result"})
            if not passed(c, r):
                why = (
                    r.get("error")
                    or (r.get("model") != c.model and f"model {r.get('model')!r} not {c.model!r}")
                    or f"deprecations: {our_deprecations(c, r)}"
                )
                details.append(f"{o.version} FAIL {c.id}: {why.splitlines()[-1]}")
        details += [f"{o.version} refused {r}" for r in o.refused]
    if kserve is not None:
        results = kserve.get("results", [])
        k_real = [r for r in results if not r.get("control")]
        k_controls = [r for r in results if r.get("control")]
        ok = sum(1 for r in k_real if r.get("ok"))
        k_caught = sum(1 for r in k_controls if r.get("ok"))
        lines += [
            "",
            "| KServe huggingfaceserver | rendered cases | passed | failed | controls caught |",
            "|---|---|---|---|---|",
            f"| parser | {len(k_real)} | {ok} | {len(k_real) - ok} | "
            f"{k_caught}/{len(k_controls)} |",
        ]
        flags = kserve.get("flags") or {}
        if flags.get("ok"):
            lines.append(
                f"\nThe long flags of KServe {flags['version']}'s parsers are the ones servegen "
                f"lists: {flags['huggingface']['count']} on the Hugging Face backend, "
                f"{flags['vllm']['count']} on the vLLM backend."
            )
        elif flags:
            details.append(f"kserve FAIL flags: {flags}")
        if kserve.get("setup_error"):
            details.append(f"kserve: setup failed: {kserve['setup_error']}")
        details += [
            f"kserve FAIL {r['id']} {r['args']}: {r.get('error')}"
            for r in results
            if not r.get("ok")
        ]
    return "\n".join([*lines, "", *details])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", nargs="*", default=list(envs.VLLM_VERSIONS))
    parser.add_argument("--cache", type=Path, default=envs.DEFAULT_CACHE)
    parser.add_argument("--kserve-source", type=Path, help="a kserve checkout (e.g. v0.20.0)")
    parser.add_argument("--json", type=Path, help="write every case and result here")
    opts = parser.parse_args()
    opts.cache.mkdir(parents=True, exist_ok=True)
    if shutil.which("git") is None:  # pragma: no cover - the project needs git anyway
        print("git is required", file=sys.stderr)
    outcomes = [check_version(v, opts.cache) for v in opts.versions]
    kserve = check_kserve(opts.kserve_source, opts.cache) if opts.kserve_source else None
    print(report(outcomes, kserve))
    if opts.json:
        data = {
            "vllm": [
                {
                    "version": o.version,
                    "setup_error": o.setup_error,
                    "refused": o.refused,
                    "cases": [{**c.__dict__, "result": o.results.get(c.id)} for c in o.cases],
                }
                for o in outcomes
            ],
            "kserve": kserve,
        }
        opts.json.write_text(json.dumps(data, indent=1))
    failed = any(
        o.setup_error or any(not passed(c, o.results.get(c.id, {})) for c in o.cases)
        for o in outcomes
    ) or bool(
        kserve
        and (
            kserve.get("setup_error")
            or not all(r.get("ok") for r in kserve["results"])
            or not kserve.get("flags", {}).get("ok")
        )
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
