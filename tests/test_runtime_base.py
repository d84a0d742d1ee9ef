"""The template renderer: values are leaves of the parsed template, never YAML text."""

from __future__ import annotations

import pytest

from generator.errors import RenderError
from runtimes.base import MARK, fill, plain_values


def _placeholder(index: int) -> str:
    return f"{MARK}{index}{MARK}"


def test_fill_puts_values_in_as_whole_nodes() -> None:
    skeleton = {"a": _placeholder(0), "b": [_placeholder(1), "literal"], "c": 3}
    values = ["x\n---\nkind: Secret", {"k": [1, None]}]
    assert fill(skeleton, values) == {"a": values[0], "b": [values[1], "literal"], "c": 3}


def test_fill_makes_a_new_tree() -> None:
    skeleton = {"a": {"b": [_placeholder(0)]}}
    filled = fill(skeleton, ["v"])
    assert skeleton == {"a": {"b": [_placeholder(0)]}}
    assert filled["a"] is not skeleton["a"]


@pytest.mark.parametrize(
    "skeleton",
    [{"name": f"prefix-{_placeholder(0)}"}, [f"{_placeholder(0)}{_placeholder(1)}"], [MARK]],
)
def test_a_value_spliced_into_text_is_refused(skeleton: object) -> None:
    with pytest.raises(RenderError, match="inside other text"):
        fill(skeleton, ["a", "b"])


def test_a_value_as_a_key_is_refused() -> None:
    with pytest.raises(RenderError, match="as a key"):
        fill({_placeholder(0): 1}, ["a"])


def test_plain_values_reads_like_json() -> None:
    values = [("t", 1), {1: 2.5}, None, True, "\u2028"]
    copied = plain_values(values)
    assert copied == [["t", 1], {"1": 2.5}, None, True, "\u2028"]


@pytest.mark.parametrize("value", [float("nan"), object(), {(1, 2): 3}])
def test_plain_values_refuses_what_is_not_plain_data(value: object) -> None:
    with pytest.raises(RenderError, match="not plain data"):
        plain_values([value])
