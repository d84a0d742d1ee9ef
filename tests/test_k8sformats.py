"""Tests for generator.k8sformats: each Kubernetes string rule, said the same way everywhere."""

from __future__ import annotations

import itertools
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from generator import k8sformats
from generator.check import ManifestChecker
from generator.fields import Annotations, EnvName, Labels, Quantity
from generator.k8sformats import (
    ANNOTATIONS_TOTAL_MAX,
    DNS1035_LABEL,
    DNS1123_LABEL,
    DNS1123_SUBDOMAIN,
    ENV_VAR_NAME,
    LABEL_VALUE,
    PATH_SEGMENT,
    QUALIFIED_NAME,
    Rule,
    name_rule,
    parse_quantity,
    qualified_name_problem,
)
from generator.validate import validate_repository
from tests.objects import deployment, service

K8S = "1.33"


def spec_error(annotation: Any, value: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        TypeAdapter(annotation).validate_python(value)
    return str(caught.value)


def object_messages(obj: dict[str, Any]) -> list[str]:
    return [p.message for p in ManifestChecker(K8S).check([obj]).problems]


# --------------------------------------------------------------------------- the rules


@pytest.mark.parametrize(
    ("kind", "rule"),
    [
        ("Deployment", DNS1123_SUBDOMAIN),
        ("PodDisruptionBudget", DNS1123_SUBDOMAIN),
        ("Service", DNS1035_LABEL),
        ("Namespace", DNS1123_LABEL),
        ("ClusterRole", PATH_SEGMENT),
    ],
)
def test_each_kind_names_its_objects_by_the_api_servers_rule(
    kind: str, rule: k8sformats.Rule
) -> None:
    assert name_rule(kind) is rule


@pytest.mark.parametrize(
    ("rule", "good", "bad"),
    [
        (DNS1123_LABEL, ["a", "8b-chat", "a" * 63], ["A", "a_b", "-a", "a.b", "a" * 64]),
        (DNS1123_SUBDOMAIN, ["a.b-c", "8b"], ["a..b", "A.b", ".a", "a" * 254]),
        (DNS1035_LABEL, ["chat-8b"], ["8b-chat", "a.b"]),
        (PATH_SEGMENT, ["system:auth"], ["a/b", "a%b", ".", ".."]),
        (LABEL_VALUE, ["", "Team_1.x"], ["-a", "a b", "a" * 64]),
    ],
)
def test_rules_take_and_refuse_what_kubernetes_does(
    rule: k8sformats.Rule, good: list[str], bad: list[str]
) -> None:
    assert [v for v in good if not rule.matches(v)] == []
    assert [v for v in bad if rule.matches(v)] == []


def go_env_var_name(name: str) -> bool:
    """apimachinery v0.29-v0.33 IsEnvVarName, as written there: envVarNameFmt, then
    hasChDirPrefix."""
    fmt = re.fullmatch(r"[-._a-zA-Z][-._a-zA-Z0-9]*", name) is not None
    return fmt and name not in (".", "..") and not name.startswith("..")


def test_env_var_names_are_exactly_the_ones_kubernetes_takes() -> None:
    """Every name of up to four characters from the letters that matter: the one-regex
    rule (pydantic's engine has no look-ahead) and the spec's type agree with Go's
    two steps."""
    spec_type = TypeAdapter(EnvName)
    names = ["".join(p) for n in range(1, 5) for p in itertools.product(".-_a1", repeat=n)]
    for name in names:
        try:
            spec_type.validate_python(name)
            taken = True
        except ValidationError:
            taken = False
        assert ENV_VAR_NAME.matches(name) is taken is go_env_var_name(name), name


def test_annotations_may_take_256_kib_together() -> None:
    fits = {"example.com/a": "x" * (ANNOTATIONS_TOTAL_MAX - len("example.com/a"))}
    assert TypeAdapter(Annotations).validate_python(fits) == fits
    over = {**fits, "b": ""}  # one more byte, in a key
    assert "an object's may take at most 262,144 (256 KiB)" in spec_error(Annotations, over)
    multibyte = {"example.com/a": "\u00e9" * (ANNOTATIONS_TOTAL_MAX // 2)}  # bytes, not chars
    assert "annotations take 262,157 bytes" in spec_error(Annotations, multibyte)


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("team", True),
        ("example.com/team", True),
        ("app.kubernetes.io/name", True),
        ("a" * 63, True),
        ("a" * 64, False),
        ("-team", False),
        ("Example.com/team", False),
        ("a/b/c", False),
        (f"{'a' * 254}/team", False),
        ("example.com/", False),
    ],
)
def test_qualified_names(key: str, ok: bool) -> None:
    assert (qualified_name_problem(key) is None) is ok


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("16Gi", 16 << 30),
        ("2Ki", 2048),
        ("1k", 1000),
        ("3M", 3_000_000),
        ("1e9", 10**9),
        ("1.5Gi", 3 << 29),
        ("+1024", 1024),
        (".5", Decimal("0.5")),
        ("500m", Decimal("0.5")),
    ],
)
def test_quantities_have_their_value(text: str, value: int | Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1e9999999999", (1 << 63) - 1),
        ("1.073745e+37", (1 << 63) - 1),
        ("9" * 60 + "Ei", (1 << 63) - 1),
        ("8Ei", (1 << 63) - 1),  # 2^63: one past the largest
        ("7Ei", 7 << 60),
        ("9223372036854775807", (1 << 63) - 1),
        ("1e-9999999999", Decimal("1e-9")),
        ("0.0000000001", Decimal("1e-9")),
        ("1e-9", Decimal("1e-9")),
        ("0e999999999", 0),
        ("0.000Ei", 0),
    ],
)
def test_quantities_beyond_what_kubernetes_holds_are_bounded(
    text: str, value: int | Decimal
) -> None:
    """quantity.go: at least 1n when not zero, at most 2^63-1; an exponent no resource
    can have costs no arithmetic (and raises nothing) either way."""
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "1K", "16GB", "lots", "-1", "1Gib", "1" * 65])
def test_what_is_not_a_quantity_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="is not a quantity"):
        parse_quantity(text)


@given(st.text(alphabet="0123456789.+-eEkKmMGTPinu ", max_size=8))
def test_specs_accept_exactly_the_quantities_that_have_a_value(text: str) -> None:
    try:
        parse_quantity(text)
    except ValueError:
        parsed = False
    else:
        parsed = True
    try:
        TypeAdapter(Quantity).validate_python(text)
    except ValidationError:
        accepted = False
    else:
        accepted = True
    assert parsed is accepted


# --------------------------------------------------------------------------- one wording


def test_a_bad_name_reads_the_same_in_a_spec_and_in_a_rendered_object(tmp_path: Path) -> None:
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "a.yaml").write_text(
        "kind: kubeai-text\nname: Tiny_Llama\nspec:\n  url: hf://a/b\n"
        "serve: {secrets: [Bad_Secret]}\n"
    )
    messages = [d.message for d in validate_repository(tmp_path).diagnostics]
    assert messages == [
        f"'Tiny_Llama' {DNS1123_LABEL.help}",
        f"'Bad_Secret' {DNS1123_SUBDOMAIN.help}",
    ]
    assert object_messages(deployment("Llama_3")) == [f'"Llama_3" {DNS1123_SUBDOMAIN.help}']
    assert object_messages(service("8b-chat")) == [f'"8b-chat" {DNS1035_LABEL.help}']


def test_a_bad_label_reads_the_same_in_a_spec_and_in_a_rendered_object() -> None:
    assert f"label value 'NLP team' {LABEL_VALUE.help}" in spec_error(Labels, {"o": "NLP team"})
    assert f"label key 'bad key' {QUALIFIED_NAME.help}" in spec_error(Labels, {"bad key": "x"})
    obj = deployment()
    obj["metadata"]["labels"] = {"o": "NLP team", "bad key": "x"}
    assert sorted(object_messages(obj)) == [
        f'"NLP team" {LABEL_VALUE.help}',
        f'key "bad key" {QUALIFIED_NAME.help}',
    ]


@pytest.mark.parametrize("rule", [DNS1123_LABEL, DNS1123_SUBDOMAIN, LABEL_VALUE, QUALIFIED_NAME])
def test_a_final_newline_is_not_part_of_any_name(rule: Rule) -> None:
    """Python's `$` matches before a final newline; the API server's Go regexp does not."""
    assert rule.matches("abc")
    assert not rule.matches("abc\n")


def test_a_quantity_with_a_final_newline_is_refused() -> None:
    with pytest.raises(ValueError, match="is not a quantity"):
        parse_quantity("16Gi\n")
