"""The bundled upstream CRDs: exact copies, used by default, replaceable, refreshable."""

from __future__ import annotations

import functools
import hashlib
import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from generator import crds
from generator.check import ManifestChecker
from generator.cli import main
from generator.crds import bundled, bundled_dir, bundled_files, verify_bundled
from generator.pipeline import build
from tests.conftest import EXAMPLES, REPO_ROOT
from tests.objects import crd

K8S = "1.33"
RENDERED_KINDS = {
    ("kubeai.org", "Model"),
    ("serving.kserve.io", "InferenceService"),
    ("source.toolkit.fluxcd.io", "GitRepository"),
    ("kustomize.toolkit.fluxcd.io", "Kustomization"),
}


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def model(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "kubeai.org/v1",
        "kind": "Model",
        "metadata": {"name": "tiny", "namespace": "llm"},
        "spec": {"url": "hf://org/tiny", "features": ["TextGeneration"], "engine": "VLLM", **spec},
    }


# --------------------------------------------------------------------------- the files


def test_bundled_files_match_their_recorded_sha256() -> None:
    assert verify_bundled() == []
    for entry in bundled():
        data = entry.location.read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry.sha256
        assert len(entry.commit) == 40 and entry.url.endswith(entry.path)
        assert entry.commit in entry.url


def test_a_changed_byte_is_caught(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    copy = tmp_path / "crds"
    copy.mkdir()
    for path in bundled_dir().iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    target = copy / "kubeai.org_models.yaml"
    target.write_bytes(target.read_bytes().replace(b"description", b"Description", 1))
    monkeypatch.setattr(crds, "bundled_dir", lambda: copy)
    assert [p.split(":")[0] for p in verify_bundled()] == ["kubeai.org_models.yaml"]


def test_recorded_kinds_and_versions_are_what_the_files_define() -> None:
    for entry in bundled():
        (summary,) = crds.summarize_file(entry.location)
        assert (summary.kind, summary.group, summary.versions) == (
            entry.kind,
            entry.group,
            entry.versions,
        )
    assert {(e.group, e.kind) for e in bundled()} == RENDERED_KINDS


def test_readme_beside_the_files_states_the_same_facts() -> None:
    readme = (bundled_dir() / "README.md").read_text()
    assert "Apache License 2.0" in readme
    for entry in bundled():
        for fact in (entry.file, entry.commit, entry.sha256, entry.release):
            assert fact in readme, fact


def test_the_package_ships_the_crds() -> None:
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    assert '"crds/*.yaml"' in pyproject and '"crds/SOURCES.toml"' in pyproject


def test_nothing_refers_to_files_outside_the_repository() -> None:
    tracked = [
        REPO_ROOT / "README.md",
        REPO_ROOT / ".ci" / "run",
        *(REPO_ROOT / ".github").rglob("*.yml"),
        *(REPO_ROOT / "tests").glob("*.py"),
        *(REPO_ROOT / "bench").glob("*.py"),
    ]
    needles = ("SERVEGEN_CRDS_" + "DIR", "../" + "shared", '"shared" / ' + '"crds"')
    offenders = [
        f"{path.relative_to(REPO_ROOT)}: {needle}"
        for path in tracked
        for needle in needles
        if needle in path.read_text()
    ]
    assert offenders == []


# --------------------------------------------------------------------------- by default


def test_examples_validate_every_custom_resource_with_no_configuration() -> None:
    result = build(EXAMPLES, keep_objects=True)
    assert result.notes == ()  # no "no CRD for ..." note: every kind had its CRD
    kinds = {
        obj["kind"] for m in result.models for e in m.environments.values() for obj in e.objects
    }
    assert kinds >= {"Model", "InferenceService"}


def test_bundled_crds_reject_a_bad_custom_resource() -> None:
    validator = ManifestChecker(K8S, bundled_crds=bundled_files())
    assert validator.check([model()]).problems == ()
    problems = validator.check([model(replicas="two", engin="VLLM")]).problems
    assert {(p.path, p.kind) for p in problems} >= {("spec.engin", "Model")}
    assert validator.check([model()]).skipped_kinds == ()


def _crd(group: str, kind: str, version: str, required: list[str]) -> str:
    spec = {"type": "object", "required": required, "x-kubernetes-preserve-unknown-fields": True}
    return json.dumps(crd(group, kind, version, spec))


def test_a_configured_crd_replaces_the_bundled_one_of_its_kind(tmp_path: Path) -> None:
    mine = tmp_path / "models.json"
    mine.write_text(_crd("kubeai.org", "Model", "v1", required=["owner"]))
    validator = ManifestChecker(K8S, [mine], bundled_crds=bundled_files())
    problems = validator.check([model()]).problems
    assert [(p.path, p.message) for p in problems] == [("spec.owner", "required field is missing")]
    # Nothing of the bundled schema applies any more: an unknown field is fine in mine.
    assert validator.check([model(owner="me", engin="x")]).problems == ()


def test_a_configured_crd_with_other_versions_is_not_mixed_with_the_bundled_one(
    tmp_path: Path,
) -> None:
    mine = tmp_path / "models.json"
    mine.write_text(_crd("kubeai.org", "Model", "v2", required=[]))
    validator = ManifestChecker(K8S, [mine], bundled_crds=bundled_files())
    (problem,) = validator.check([model()]).problems
    assert "does not serve version v1 (served: v2)" in problem.message


# --------------------------------------------------------------------------- servegen crds


def test_crds_lists_kind_group_versions_release_and_sha256(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = run(["-C", str(EXAMPLES), "crds", "--format", "json"], capsys)
    assert code == 0
    rows = json.loads(out)
    by_kind = {row["kind"]: row for row in rows}
    assert by_kind["Model"]["group"] == "kubeai.org"
    assert by_kind["Model"]["versions"] == "v1"
    assert by_kind["Model"]["release"] == "v0.22.1"
    assert by_kind["InferenceService"]["sha256"] == next(
        e.sha256 for e in bundled() if e.kind == "InferenceService"
    )
    assert all(row["used"] and row["source"] == "bundled" for row in rows)
    code, out, _ = run(["-C", str(EXAMPLES), "crds"], capsys)
    assert code == 0 and "kustomize.toolkit.fluxcd.io" in out
    last = out.strip().splitlines()[-1]
    assert last == "servegen: 4 CRDs: 4 in use, 0 replaced by configured ones"


def test_crds_marks_a_bundled_crd_a_configured_one_replaces(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "crds").mkdir()
    (tmp_path / "crds" / "models.json").write_text(_crd("kubeai.org", "Model", "v1", []))
    (tmp_path / "servegen.yaml").write_text("validation:\n  crds: [crds]\n")
    code, out, _ = run(["-C", str(tmp_path), "crds", "--format", "json"], capsys)
    assert code == 0
    rows = {(row["kind"], row["source"]): row["used"] for row in json.loads(out)}
    assert rows[("Model", "bundled")] is False
    assert rows[("Model", str(tmp_path / "crds" / "models.json"))] is True


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A real HTTP server on loopback, serving files from a folder."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(_Quiet, directory=str(folder))
    server = _Server(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        server.server_close()


def test_refresh_fetches_a_crd_over_http_into_the_repository(
    tmp_path: Path, served: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base, www = served
    body = (
        (bundled_dir() / "kubeai.org_models.yaml")
        .read_bytes()
        .replace(b"description: Model resources", b"description: a newer Model", 1)
    )
    (www / "model.yaml").write_bytes(body)
    repo = tmp_path / "repo"
    repo.mkdir()
    code, out, _ = run(["-C", str(repo), "crds", "--refresh", f"{base}/model.yaml"], capsys)
    assert code == 0, out
    fetched = repo / "crds" / "kubeai.org_models.yaml"
    assert fetched.read_bytes() == body
    assert hashlib.sha256(body).hexdigest() in out
    assert "list 'crds' under validation.crds" in out
    # Listed in validation.crds, it replaces the bundled Model CRD.
    (repo / "servegen.yaml").write_text("validation:\n  crds: [crds]\n")
    code, out, _ = run(["-C", str(repo), "crds", "--format", "json"], capsys)
    rows = {(row["kind"], row["source"]): row for row in json.loads(out)}
    assert rows[("Model", "bundled")]["used"] is False
    assert rows[("Model", str(fetched))]["sha256"] == hashlib.sha256(body).hexdigest()
    # Fetched again, the same bytes are left alone.
    code, out, _ = run(["-C", str(repo), "crds", "--refresh", f"{base}/model.yaml"], capsys)
    assert code == 0 and "(unchanged)" in out


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "HTTP 404"),
        (b"kind: ConfigMap\n", "contains no CustomResourceDefinition"),
        (b"a: [unclosed\n", "not a YAML CRD"),
    ],
)
def test_refresh_refuses_what_is_not_a_crd_and_writes_nothing(
    tmp_path: Path,
    served: tuple[str, Path],
    capsys: pytest.CaptureFixture[str],
    content: bytes | None,
    expected: str,
) -> None:
    base, www = served
    (www / "good.yaml").write_bytes((bundled_dir() / "kubeai.org_models.yaml").read_bytes())
    if content is not None:
        (www / "bad.yaml").write_bytes(content)
    urls = ["--refresh", f"{base}/good.yaml", "--refresh", f"{base}/bad.yaml"]
    code, _, err = run(["-C", str(tmp_path), "crds", *urls], capsys)
    assert code == 1
    assert expected in err
    assert not (tmp_path / "crds").exists()  # the good one is not written either


def test_refresh_takes_the_file_name_from_a_checked_crd_name(
    tmp_path: Path, served: tuple[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    base, www = served
    hostile = json.loads(_crd("kubeai.org", "Model", "v1", []))
    hostile["metadata"]["name"] = "../../escape.kubeai.org"
    (www / "hostile.json").write_text(json.dumps(hostile))
    code, _, err = run(["-C", str(tmp_path), "crds", "--refresh", f"{base}/hostile.json"], capsys)
    assert code == 1
    assert "CRD name '../../escape.kubeai.org' is not <spec.names.plural>.<spec.group>" in err
    hostile["spec"]["names"]["plural"] = "../../escape"  # the name the API server wants
    (www / "hostile.json").write_text(json.dumps(hostile))
    code, _, err = run(["-C", str(tmp_path), "crds", "--refresh", f"{base}/hostile.json"], capsys)
    assert code == 1
    assert "'../../escape.kubeai.org' must be a DNS-1123 subdomain" in err
    assert list(tmp_path.rglob("*escape*")) == []


def test_refresh_only_fetches_http_urls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    local = bundled_dir() / "kubeai.org_models.yaml"
    code, _, err = run(["-C", str(tmp_path), "crds", "--refresh", f"file://{local}"], capsys)
    assert code == 1 and "only http:// and https:// URLs" in err


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:80a/crd.yaml", "has the port '80a': a port is a number from 1 to 65535"),
        ("http://127.0.0.1:99999/crd.yaml", "has the port '99999'"),
        ("http://[::1/crd.yaml", "has a '[' or ']' that does not enclose an IPv6 address"),
        ("http:///crd.yaml", "has no host"),
    ],
)
def test_refresh_names_what_is_wrong_with_a_url(
    url: str, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Told, with exit 1, before anything is fetched (it was an internal error)."""
    code, _, err = run(["-C", str(tmp_path), "crds", "--refresh", url], capsys)
    assert code == 1 and message in err, err
    assert "internal error" not in err and not (tmp_path / "crds").exists()


def test_refresh_prints_no_credentials_of_a_url_with_a_bad_port(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "http://alice:s3cret@127.0.0.1:80a/crd.yaml"
    code, _, err = run(["-C", str(tmp_path), "crds", "--refresh", url], capsys)
    assert code == 1 and "a user name or password in the URL is refused" in err
    assert "s3cret" not in err and "alice" not in err


class _Tricks(http.server.BaseHTTPRequestHandler):
    """Redirects, a body sent a byte at a time, and plain CRDs by name, on loopback."""

    bodies: dict[str, bytes] = {}

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path == "/to-ftp":
            self._redirect("ftp://127.0.0.1:1/crd.yaml")
        elif self.path == "/loop":
            self._redirect("/loop")
        elif self.path == "/drip":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(40):
                self.wfile.write(b"#")
                self.wfile.flush()
                time.sleep(0.1)
        else:
            body = self.bodies.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.end_headers()
            self.wfile.write(body or b"")

    def _redirect(self, where: str) -> None:
        self.send_response(302)
        self.send_header("Location", where)
        self.end_headers()


@pytest.fixture
def tricks() -> Iterator[str]:
    server = _Server(("127.0.0.1", 0), _Tricks)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _named(group: str, plural: str) -> bytes:
    body = json.loads(_crd(group, "Widget", "v1", []))
    body["metadata"]["name"] = f"{plural}.{group}"
    body["spec"]["names"]["plural"] = plural
    return json.dumps(body).encode()


def test_refresh_follows_no_redirect_out_of_http(
    tmp_path: Path, tricks: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["-C", str(tmp_path), "crds", "--refresh", f"{tricks}/to-ftp"], capsys)
    assert code == 1 and "redirected to ftp://127.0.0.1:1/crd.yaml, which is not fetched" in err
    code, _, err = run(["-C", str(tmp_path), "crds", "--refresh", f"{tricks}/loop"], capsys)
    assert code == 1 and err.count("\n") == 1 and "HTTP 302" in err  # one line


def test_refresh_gives_up_at_its_deadline_however_the_bytes_trickle(
    tmp_path: Path, tricks: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(crds, "FETCH_TIMEOUT_S", 1)  # each read waits for a byte: 0.1 s
    code, _, err = run(["-C", str(tmp_path), "crds", "--refresh", f"{tricks}/drip"], capsys)
    assert code == 1 and "not fetched within 1 s" in err


def test_refresh_checks_every_crd_before_writing_any(
    tmp_path: Path, tricks: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _Tricks.bodies = {
        "/a": _named("example.com", "widgets"),
        "/same": _named("example.com", "widgets"),
        "/long": _named("example.com", ".".join(c * 63 for c in "wxy") + "." + "z" * 44),
        "/two": _named("example.com", "widgets") + b"\n---\n" + _named("example.com", "gadgets"),
    }
    cases = {
        "/same": "both hold example.com_widgets.yaml",
        "/long": "is too long for a file name",
        "/two": "holds 2 CRDs; fetch one CRD per URL",
    }
    for path, message in cases.items():
        urls = ["--refresh", f"{tricks}/a", "--refresh", f"{tricks}{path}"]
        code, _, err = run(["-C", str(tmp_path), "crds", *urls], capsys)
        assert code == 1 and message in err, (path, err)
        assert not (tmp_path / "crds").exists(), path  # not even the first one


def test_refresh_prints_no_credentials(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = "http://alice:s3cret@127.0.0.1:1/crd.yaml"
    code, _, err = run(["-C", str(tmp_path), "crds", "--refresh", url], capsys)
    assert code == 1 and "a user name or password in the URL is refused" in err
    assert "s3cret" not in err and "alice" not in err
    code, _, err = run(
        ["-C", str(tmp_path), "crds", "--refresh", "http://127.0.0.1:1/c?token=ghp_x"], capsys
    )
    assert code == 1 and "http://127.0.0.1:1/c?..." in err and "ghp_x" not in err


# --------------------------------------------------------------------------- from a cluster


class _ApiServer(http.server.BaseHTTPRequestHandler):
    """The one Kubernetes API call `--from-cluster` makes, over HTTP on loopback:
    GET /apis/apiextensions.k8s.io/v1/customresourcedefinitions/<name>."""

    crds: dict[str, bytes] = {}
    seen: list[tuple[str, str]] = []

    def do_GET(self) -> None:
        prefix = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/"
        self.seen.append((self.path, self.headers.get("Authorization", "")))
        name = self.path.removeprefix(prefix).partition("?")[0]
        body = self.crds.get(name) if self.path.startswith(prefix) else None
        status = 200 if body is not None else 404
        if body is None:
            body = json.dumps(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": "NotFound",
                    "code": 404,
                    "message": f'customresourcedefinitions "{name}" not found',
                }
            ).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_from_cluster_fetches_the_bundled_kinds_from_the_api_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ruamel.yaml import YAML

    live = YAML(typ="safe").load((bundled_dir() / "kubeai.org_models.yaml").read_text())
    live["status"] = {"acceptedNames": {"kind": "Model"}, "storedVersions": ["v1"]}
    _ApiServer.crds = {"models.kubeai.org": json.dumps(live).encode()}
    _ApiServer.seen = []
    server = _Server(("127.0.0.1", 0), _ApiServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": "c", "cluster": {"server": f"http://127.0.0.1:{server.server_port}"}}
                ],
                "users": [{"name": "u", "user": {"token": "t0ken"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    repo = tmp_path / "repo"
    repo.mkdir()
    try:
        code, out, err = run(["-C", str(repo), "crds", "--from-cluster"], capsys)
    finally:
        server.shutdown()
        server.server_close()
    assert code == 0, err
    fetched = repo / "crds" / "kubeai.org_models.json"
    assert json.loads(fetched.read_bytes()) == live
    assert "Model (kubeai.org v1)" in out
    for entry in bundled():
        if entry.kind != "Model":
            assert f"the cluster has no CRD {entry.name}" in err
    assert {auth for _, auth in _ApiServer.seen} == {"Bearer t0ken"}
    assert len(_ApiServer.seen) == len(bundled())
    # The fetched CRD validates like any configured one.
    validator = ManifestChecker(K8S, [repo / "crds"], bundled_crds=bundled_files())
    assert validator.check([model()]).problems == ()
    assert validator.check([model(engin="x")]).problems != ()


def test_from_cluster_without_a_kubeconfig_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    code, _, err = run(["-C", str(tmp_path), "crds", "--from-cluster"], capsys)
    assert code == 3  # cannot reach the cluster, as for `servegen status`
    assert f"no kubeconfig found at {tmp_path / 'missing'}" in err
    assert not (tmp_path / "crds").exists()
