"""Whatever a spec author types, in a spec or in servegen.yaml, validate answers 0 or 1 with
positions: never a crash."""

from __future__ import annotations

import re
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from generator import cli
from tests.conftest import EXAMPLES
from tests.fuzzing import fuzzed
from tests.specrepo import empty_spec_repo

SPECS = sorted((EXAMPLES / "specs").rglob("*.yaml"))
CONFIG = EXAMPLES / "servegen.yaml"
NOISE = st.sampled_from(
    [
        ":",
        "- ",
        "[",
        "]",
        "{",
        "}",
        "&a ",
        "*a",
        "!!python/object ",
        "\t",
        "\n",
        "---\n",
        '"',
        "'",
        "#",
        "null",
        "~",
        "-1",
        "1e999",
        "\x00",
        "\ud7ff",
        "\u2028",
        "0x",
        "yes",
        "9" * 4301,  # more digits than int() reads
        "0x" + "f" * 3600,
        "!!int x",
        "²",
        "1e9999999999",
    ]
) | st.text(max_size=6)


@st.composite
def mutated(draw: st.DrawFn, files: Sequence[Path] = SPECS) -> str:
    """An example spec (or one of `files`) with a few random insertions and deletions."""
    text = draw(st.sampled_from(files)).read_text()
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        if draw(st.booleans()):
            text = text[:at] + draw(NOISE) + text[at:]
        else:
            text = text[:at] + text[at + draw(st.integers(1, 12)) :]
    return text


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return empty_spec_repo(tmp_path_factory.mktemp("fuzz"))


@fuzzed(500)
@given(text=mutated())
def test_mutated_specs_never_crash(
    repo: Path, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _validates_without_a_crash(repo, text, capsys)


def _validates_without_a_crash(
    repo: Path, text: str, capsys: pytest.CaptureFixture[str], name: str = "specs/spec.yaml"
) -> None:
    """`text` written as `name`: validate exits 0, or 1 with every error positioned."""
    (repo / name).write_text(text, encoding="utf-8", errors="surrogatepass")
    code = cli.main(["-C", str(repo), "validate"])
    out, err = capsys.readouterr()
    assert code in (0, 1), out + err
    assert "internal error" not in err and "Traceback" not in err
    errors = [line for line in out.splitlines() if ": error: " in line]
    assert (code == 1) is bool(errors), out + err
    assert all(POSITIONED.match(line) for line in errors), out  # a spec's, or servegen.yaml's


POSITIONED = re.compile(r"(servegen\.yaml|specs/[^:]+\.yaml):[0-9]+:[0-9]+: error: ")


@fuzzed(300)
@given(text=mutated([CONFIG]))
def test_mutated_configs_never_crash(
    config_repo: Path, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """servegen.yaml mutated, with every example spec to validate and render under it (a
    port that was not a number reached the render and crashed it)."""
    _validates_without_a_crash(config_repo, text, capsys, "servegen.yaml")


@pytest.fixture(scope="module")
def config_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("fuzz-config")
    shutil.copytree(EXAMPLES / "specs", root / "specs")
    return root


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(["hf://a/b", "s3://b/k", "VLLM", "cpu", "1Gi", ""])
    # Numbers at and past every limit: int32, int64, int()'s 4,300 digits, quantities'
    # 2^63-1 and exponents, digits isdigit() accepts (superscript two; Arabic-Indic one).
    | st.sampled_from([1 << 31, -(1 << 31) - 1, 1 << 63, 10**4299, "9" * 4301, "²", "\u0661"])
    | st.sampled_from(["1e9999999999", "1.073745e+37", "9" * 60 + "Ei", "1e-999999", "-1"]),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(data: object, prefix: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    out = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            out += _paths(value, (*prefix, index))
    return out


def _one_value_replaced(draw: st.DrawFn, value: object, files: Sequence[Path] = SPECS) -> str:
    """An example spec (or one of `files`) as YAML, with the value at one drawn path
    replaced by `value`."""
    from generator.yamlio import dump, parse_rendered

    (data,) = parse_rendered(draw(st.sampled_from(files)).read_text())
    path = draw(st.sampled_from(_paths(data)[1:]))
    node = data
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    return dump(data)


@st.composite
def retyped(draw: st.DrawFn) -> str:
    """An example spec, still valid YAML, with one value replaced by arbitrary data."""
    return _one_value_replaced(draw, draw(JSON_VALUES))


@fuzzed(500)
@given(text=retyped())
def test_retyped_specs_never_crash(
    repo: Path, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _validates_without_a_crash(repo, text, capsys)


# Text that starts as a URL does, made of what splits one into its parts: servegen.yaml
# holds three.
URLISH = st.builds(
    str.__add__,
    st.sampled_from(["http://", "https://", "grpc://", "ssh://"]),
    st.text(alphabet="ab.-:@[]/?#019x", max_size=16),
)


@st.composite
def retyped_config(draw: st.DrawFn) -> str:
    """The examples' servegen.yaml with one value replaced by arbitrary data or a URL."""
    return _one_value_replaced(draw, draw(JSON_VALUES | URLISH), [CONFIG])


@fuzzed(300)
@given(text=retyped_config())
def test_retyped_configs_never_crash(
    config_repo: Path, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _validates_without_a_crash(config_repo, text, capsys, "servegen.yaml")


# Numbers written as YAML text at and past every limit a reader or a check has: int()'s
# 4,300 digits (in decimal, hex and octal), int32 and int64, quantities' 2^63-1 and their
# exponents, tags that do not hold, and digits isdigit() accepts but int() refuses.
EDGES = st.sampled_from(
    [
        "9" * 4301,
        "-" + "9" * 4301,
        "0x" + "f" * 3600,
        "0o" + "7" * 5000,
        "!!int x",
        "!!float x",
        "!!int " + "9" * 4301,
        "²",
        "'²'",
        str(1 << 31),
        str(1 << 63),
        "1e9999999999",
        "'1e9999999999'",
        "'1.073745e+37'",
        "'" + "9" * 60 + "Ei'",
        "'1e-999999'",
    ]
)
_EDGE = "@edge@"  # written quoted by dump(): '@' cannot start a plain scalar


@st.composite
def edged(draw: st.DrawFn) -> str:
    """An example spec with one value replaced by the raw YAML text of an edge number."""
    return _one_value_replaced(draw, _EDGE).replace(f'"{_EDGE}"', draw(EDGES), 1)


@fuzzed(300)
@given(text=edged())
def test_numbers_at_their_limits_never_crash(
    repo: Path, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _validates_without_a_crash(repo, text, capsys)
